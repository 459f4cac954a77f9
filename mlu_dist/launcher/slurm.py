"""The Slurm executor: submitit job arrays with per-task dependencies. The only submitit import.

[translation array ->] base job -> one injection array -> one unlearning array per injection, each waiting for its own
injection task (``afterok:<array>_<i>``), and a second one for the cells that wait for a teacher
(``afterok`` on the teacher's task) -> report job (``afterany``). Jobs are checkpointable: on
the timeout / preemption signal submitit requeues them, and the requeued job resumes from the run
directory's latest complete checkpoint (``train.resume: auto``), same run dir, same W&B run id.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import submitit

from mlu_dist.launcher.plan import Cell, sweep_dir, unlearn_waves
from mlu_dist.launcher.spec import Resources, SweepSpec
from mlu_dist.logs import get_logger

log = get_logger(__name__)


def export_torch_env() -> None:
    """In a multi-task job, the torch distributed variables from Slurm's (submitit's reading of them).

    sbatch exports the submitting shell's environment: a RANK / MASTER_* left there by an earlier
    torchrun or local run is not this job's (and submitit refuses to export over it), so it goes."""
    import os

    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(key, None)
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


class CellTask(submitit.helpers.Checkpointable):
    """One sweep cell as a Slurm task. Multi-task jobs export the torch distributed environment
    (rank, world size, master address/port) from Slurm before DeepSpeed starts."""

    def __call__(self, stage: str, config: str | None, root: str) -> dict:
        export_torch_env()
        from mlu_dist.launcher.tasks import run_cell

        result = run_cell(stage, config, root)
        from mlu_dist.engine.dist import shutdown

        shutdown()
        return result

    def checkpoint(self, *args, **kwargs):
        # Training saves resumable checkpoints as it goes (train.save_every); the requeued task
        # resumes from the latest complete one.
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def signal_delay_s(res: Resources, save_bytes: float = 0) -> int:
    """Seconds before the time limit that submitit's checkpoint signal comes: a tenth of the limit
    (10-90 s), or long enough to write ``save_bytes`` at ``fs_gb_per_s`` plus a minute for the step in
    flight, whichever is longer; never more than half the limit."""
    save = math.ceil(save_bytes / (res.fs_gb_per_s * 1e9)) + 60 if save_bytes else 0
    return min(max(min(90, max(10, res.time_min * 60 // 10)), save), res.time_min * 60 // 2)


def _save_bytes(cells: list[Cell], stage: str) -> float:
    """The largest checkpoint of a stage's training cells (the planner's count; 0 for an architecture
    the planner cannot read, which then gets the plain delay)."""
    from mlu_dist.launcher.cost import arch_of, checkpoint_bytes, train_of

    sizes = []
    for c in cells:
        try:
            sizes.append(checkpoint_bytes(arch_of(c.config.model), train_of(c.config, stage), c.config.engine.zero_for(stage)))
        except (ValueError, OSError, KeyError):
            pass
    return max(sizes, default=0)


def _params(res: Resources, name: str, after: str = "", save_bytes: float = 0) -> dict:
    # a job whose dependency failed or was cancelled is removed instead of pending forever
    extra = {"dependency": after, "kill-on-invalid-dep": "yes"} if after else {}
    params = dict(name=f"mlu-{name}", nodes=res.nodes, tasks_per_node=res.tasks_per_node,
                  cpus_per_task=res.cpus_per_task, mem_gb=res.mem_gb, timeout_min=res.time_min,
                  slurm_array_parallelism=res.array_parallelism, slurm_additional_parameters=extra,
                  slurm_signal_delay_s=signal_delay_s(res, save_bytes))
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(res, key):
            params[f"slurm_{key}"] = getattr(res, key)
    return params


def _executor(root: Path, res: Resources, name: str, after: str = "", save_bytes: float = 0):
    ex = submitit.AutoExecutor(folder=root / "submitit" / "%j", cluster="slurm")
    ex.update_parameters(**_params(res, name, after, save_bytes))
    return ex


def _args(c: Cell, root: Path) -> tuple:
    return (c.stage, str(root / "cells" / f"{c.id}.yaml") if c.config is not None else None, str(root))


def submit_slurm(spec: SweepSpec, cells: list[Cell], todo: list[Cell], manifest, wait: bool = True) -> dict:
    root = sweep_dir(spec)
    res = spec.resources
    todo_ids = {c.id for c in todo}
    job_of: dict[str, submitit.Job] = {}
    translate = [c for c in cells if c.stage == "translate" and c.id in todo_ids]
    after_data = ""
    if translate:
        jobs = _executor(root, res.translate, f"{spec.name}-translate").map_array(
            CellTask(), *zip(*[_args(c, root) for c in translate]))
        job_of |= {c.id: j for c, j in zip(translate, jobs)}
        after_data = f"afterok:{jobs[0].job_id.split('_')[0]}"
    base = [c for c in cells if c.stage == "base" and c.id in todo_ids]
    if base:
        job_of[base[0].id] = _executor(root, res.base, "base", after_data, _save_bytes(base, "base")).submit(
            CellTask(), *_args(base[0], root))
    injects = [c for c in cells if c.stage == "inject" and c.id in todo_ids]
    if injects:
        after = f"afterok:{job_of[base[0].id].job_id}" if base else after_data
        ex = _executor(root, res.inject, f"{spec.name}-inject", after, _save_bytes(injects, "inject"))
        jobs = ex.map_array(CellTask(), *zip(*[_args(c, root) for c in injects]))
        job_of |= {c.id: j for c, j in zip(injects, jobs)}
    unlearns = [c for c in cells if c.stage == "unlearn" and c.id in todo_ids]
    for inj in [c for c in cells if c.stage == "inject"]:
        for wave in unlearn_waves(unlearns, inj.id):  # the second waits for the first's teachers
            if not wave:
                continue
            waits = sorted({job_of[d].job_id for c in wave for d in c.deps if d in job_of})
            after = f"afterok:{':'.join(waits)}" if waits else ""
            ex = _executor(root, res.unlearn, f"{spec.name}-unlearn", after, _save_bytes(wave, "unlearn"))
            jobs = ex.map_array(CellTask(), *zip(*[_args(c, root) for c in wave]))
            job_of |= {c.id: j for c, j in zip(wave, jobs)}
    report = [c for c in cells if c.stage == "report" and c.id in todo_ids]
    if report:
        before = sorted({j.job_id.split("_")[0] for cid, j in job_of.items()})
        after = f"afterany:{':'.join(before)}" if before else ""
        job_of["report"] = _executor(root, res.report, f"{spec.name}-report", after).submit(CellTask(), *_args(report[0], root))
    for cid, job in job_of.items():
        manifest.update(cid, status="submitted", job_id=job.job_id)
    manifest.save()
    log.info(f"[sweep] submitted {len(job_of)} job(s) to Slurm: " + ", ".join(j.job_id for j in job_of.values()))
    if not wait:
        return {cid: "submitted" for cid in job_of}
    return wait_for(job_of, manifest)


def queued(job_of_cell: dict[str, str | None]) -> dict[str, str]:
    """The cells whose recorded Slurm job is still pending or running: {cell id: job id}."""
    live = _live_ids()
    if not live:
        return {}
    return {cid: job for cid, job in job_of_cell.items() if job and job in live}


def _live_ids() -> set[str] | None:
    """Job and array-task ids Slurm still holds (pending or running), one per task; None if unknown."""
    import subprocess

    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(out.stdout.split()) if out.returncode == 0 else None


def wait_for(job_of: dict, manifest, poll_s: float = 2.0) -> dict:
    """Block until every job ended; record each final state. A job that left the queue without a
    final state in sacct (an array task cancelled while pending) counts as ended, so a cancelled
    sweep never hangs the launcher."""
    results = {}
    pending = dict(job_of)
    while pending:
        live = _live_ids()
        for cid, job in list(pending.items()):
            gone = live is not None and job.job_id not in live
            if not (job.done() or gone):
                continue
            state = job.state
            if not job.done():  # no record to read a result from
                status = f"{state.lower() if state not in ('UNKNOWN', 'PENDING') else 'cancelled'}: left the queue"
            else:
                try:
                    out = job.results()[0]  # rank 0's result (a multi-node job has one per task)
                    status = "finished" if out.get("status") != "interrupted" else "interrupted"
                except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as exc:
                    status = f"{state.lower()}: {str(exc).splitlines()[0][:200]}"
            results[cid] = status
            manifest.update(cid, status=status, slurm_state=state)
            manifest.save()
            log.info(f"[sweep] {cid} ({job.job_id}): {status}")
            del pending[cid]
        if pending:
            time.sleep(poll_s)
    return results


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm's state of each job (sacct: accounting must be on, as submitit needs it anyway)."""
    import subprocess

    if not job_ids:
        return {}
    try:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in out.splitlines():
        if "|" in line:
            jid, state = line.split("|", 1)
            states[jid.strip()] = state.split()[0] if state.strip() else ""
    return states


class SlurmExecutor:
    """Slurm through submitit: job arrays with per-task dependencies (see the module doc)."""

    def submit(self, spec: SweepSpec, cells: list[Cell], todo: list[Cell], manifest, wait: bool) -> dict:
        return submit_slurm(spec, cells, todo, manifest, wait=wait)

    def queued(self, job_of_cell: dict[str, str | None]) -> dict[str, str]:
        return queued(job_of_cell)

    def states(self, job_ids: list[str]) -> dict[str, str]:
        return sacct_states(job_ids)

    def cancel(self, job_ids: list[str]) -> list[str]:
        import subprocess

        ids = sorted({j.split("_")[0] for j in job_ids})
        if ids:
            subprocess.run(["scancel", *ids], check=False)
        return ids
