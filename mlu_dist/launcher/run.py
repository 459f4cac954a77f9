"""Submitting a sweep: decide which cells still need to run, hand them to an executor, keep the manifest.

Re-running a sweep is idempotent: a cell whose run directory holds DONE.json is skipped (the
manifest records each output's hash); failed or missing cells run again; ``force`` reruns cells.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mlu_dist.runs import rundir
from mlu_dist.launcher.plan import Cell, expand, sweep_dir, write_cells
from mlu_dist.launcher.spec import SweepSpec
from mlu_dist.launcher.worker import Worker
from mlu_dist.logs import get_logger

log = get_logger(__name__)


def output_hash(run_dir: Path) -> str | None:
    done = Path(run_dir) / "DONE.json"
    if not done.exists():
        return None
    h = hashlib.sha256(done.read_bytes())
    model = Path(run_dir) / "model" / "model.safetensors"
    if model.exists():
        h.update(str(model.stat().st_size).encode())
    return h.hexdigest()[:16]


class Manifest:
    """``<sweep>/manifest.json``: per cell its stage, run dir, status, job id and output hash."""

    def __init__(self, root: Path):
        self.path = Path(root) / "manifest.json"
        self.cells: dict = json.loads(self.path.read_text()) if self.path.exists() else {}

    def update(self, cell_id: str, **fields) -> None:
        self.cells.setdefault(cell_id, {}).update(fields)

    def save(self) -> None:
        rundir.atomic_write_json(self.path, self.cells)


def pending(cells: list[Cell], force: list[str] = ()) -> list[Cell]:
    """The cells that must run: not finished, or forced; the report whenever anything runs."""
    def attacks_missing(c: Cell) -> bool:  # a run that exported no model (diverged) is never attacked
        return (c.run_dir / "model" / "config.json").exists() and not all(rundir.is_done(o) for o in c.outputs)

    todo = [c for c in cells if c.stage != "report" and (c.id in force or output_hash(c.run_dir) is None
                                                          or attacks_missing(c))]
    report = [c for c in cells if c.stage == "report"]
    if todo or (report and not (report[0].run_dir / "DONE.json").exists()) or "report" in force:
        todo += report
    return todo


def check_fits(spec: SweepSpec, cells: list[Cell]) -> None:
    """Refuse a GPU sweep whose jobs cannot fit their GPUs' memory (`mlu sweep plan --cost`), before
    anything is written or submitted."""
    if not any(getattr(spec.resources, s).gpus_per_node for s in ("base", "inject", "unlearn")):
        return
    from mlu_dist.config import ConfigError
    from mlu_dist.launcher.cost import sweep_cost

    table, problems = sweep_cost(spec, cells)
    if problems:
        raise ConfigError("the sweep's jobs do not fit their GPUs; nothing was submitted:\n" + table)


def submit(spec: SweepSpec, force: list[str] = (), wait: bool = True, wait_lock: bool = False) -> dict:
    """Run (or submit) the sweep's unfinished cells; returns ``{"submitted": [...], "skipped": [...], ...}``.
    One launcher per sweep directory (launcher/lock.py): another one running refuses, or ``wait_lock``."""
    from mlu_dist.launcher.lock import SweepLock

    cells = expand(spec)
    check_fits(spec, cells)
    with SweepLock(sweep_dir(spec), wait=wait_lock):
        return _submit(spec, cells, force, wait)


def _submit(spec: SweepSpec, cells: list[Cell], force: list[str], wait: bool) -> dict:
    root = write_cells(spec, cells)
    first = next(c.config for c in cells if c.stage not in ("translate", "report"))
    tracking = first.tracking
    rundir.atomic_write_json(root / "sweep_flags.json", {
        "evaluate": spec.evaluate,
        "wandb_group": spec.name if tracking.wandb and tracking.mode != "disabled" else None,
        # the report's W&B run goes where the sweep's runs go
        "wandb": {"project": tracking.project, "entity": tracking.entity, "mode": tracking.mode,
                  "tags": list(tracking.tags)}})
    unknown = [f for f in force if f not in {c.id for c in cells}]
    if unknown:
        from mlu_dist.config import ConfigError

        raise ConfigError(f"--force: unknown cell(s) {', '.join(unknown)}; see `mlu sweep plan`")
    for c in cells:
        if c.id in force and c.stage == "translate":  # redo the language: its part (and cache) goes
            import shutil

            shutil.rmtree(c.run_dir, ignore_errors=True)
        if c.id in force and c.stage not in ("translate", "report"):
            c.config.run.overwrite = True
            rundir.atomic_write_text(root / "cells" / f"{c.id}.yaml", c.config_yaml())
    todo = pending(cells, force)
    manifest = Manifest(root)
    for c in cells:
        h = output_hash(c.run_dir) if c.stage != "report" else None
        manifest.update(c.id, stage=c.stage, label=c.label, run_dir=str(c.run_dir),
                        **({"status": "finished", "output_hash": h} if h and c not in todo else {}))
    manifest.save()
    skipped = [c.id for c in cells if c not in todo]
    if not todo:
        return {"submitted": [], "skipped": skipped, "root": str(root)}
    from mlu_dist.launcher.executors import build_executor
    from mlu_dist.launcher.lock import SweepLocked

    executor = build_executor(spec.executor)
    # an earlier launcher (e.g. --no-wait) left jobs in the queue: submitting again would run them twice
    busy = executor.queued({c.id: manifest.cells.get(c.id, {}).get("job_id") for c in todo})
    if busy:
        listed = ", ".join(f"{cid} (job {job})" for cid, job in list(busy.items())[:5])
        raise SweepLocked(f"{len(busy)} cell(s) of this sweep are still queued or running in {spec.executor}: "
                          f"{listed}{', ...' if len(busy) > 5 else ''}; wait for them (mlu sweep status {root}) or "
                          f"cancel them (mlu sweep cancel {root}) before submitting again")
    results = executor.submit(spec, cells, todo, manifest, wait)
    return {"submitted": [c.id for c in todo], "skipped": skipped, "root": str(root), "results": results}


def _cell_cmd(c: Cell, root: Path) -> list[str]:
    cfg = [str(root / "cells" / f"{c.id}.yaml")] if c.config is not None else []
    return [sys.executable, "-m", "mlu_dist.launcher.tasks", c.stage, *cfg, "--root", str(root)]


class LocalExecutor:
    """Cells run here as subprocesses (reused workers), ``local_workers`` at once, in dependency order."""

    in_process = False

    def submit(self, spec: SweepSpec, cells: list[Cell], todo: list[Cell], manifest, wait: bool) -> dict:
        return run_locally(spec, cells, todo, manifest, in_process=self.in_process)

    def queued(self, job_of_cell: dict) -> dict:
        return {}  # nothing outlives the launcher that ran it

    def states(self, job_ids: list[str]) -> dict:
        return {}

    def cancel(self, job_ids: list[str]) -> list[str]:
        return []


class DebugExecutor(LocalExecutor):
    """Cells run in this process, one after another (for breakpoints)."""

    in_process = True


def run_locally(spec: SweepSpec, cells: list[Cell], todo: list[Cell], manifest: Manifest, in_process: bool) -> dict:
    """The local executor (subprocesses, ``local_workers`` at once) and the debug one (in-process)."""
    return _LocalRun(spec, cells, todo, manifest, in_process).run()


class _LocalRun:
    """One pass of the local (or debug) executor over the cells to run, in dependency order."""

    def __init__(self, spec: SweepSpec, cells: list[Cell], todo: list[Cell], manifest: Manifest, in_process: bool):
        self.spec, self.todo, self.manifest, self.in_process = spec, todo, manifest, in_process
        self.root = sweep_dir(spec)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.waiting = list(todo)
        self.running: dict[str, tuple] = {}  # cell id -> (a Popen or a Worker, the cell, its start time)
        self.state: dict[str, str] = {c.id: "finished" for c in cells if c not in todo}
        self.results: dict[str, str] = {}
        self.env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
        self.cpus = os.cpu_count() or 1
        # Injection and unlearning cells run in reused worker processes (launcher/worker.py:
        # Python, torch and DeepSpeed are imported once, not once a cell); spec.local_reuse=false
        # gives every cell a process of its own.
        self.workers: list[Worker] = []
        self.t_start = time.time()

    def threads_for(self, c: Cell) -> str:
        """Parallel cells share the cores: each gets its share of threads (oversubscription is far
        slower). The base model and the report never run beside another cell (everything waits for
        the one, the other waits for everything), so they get them all. Fixed per stage, not by
        timing, so that a rerun computes with the same thread counts. OMP_NUM_THREADS set by the
        user wins."""
        if os.environ.get("OMP_NUM_THREADS"):
            return os.environ["OMP_NUM_THREADS"]
        return str(self.cpus if c.stage in ("base", "report") else max(1, self.cpus // self.spec.local_workers))

    def progress(self) -> str:
        done = sum(1 for c in self.todo if c.id in self.results)
        return f"[sweep {done}/{len(self.todo)} done, {time.time() - self.t_start:.0f} s]"

    def finish(self, c: Cell, status: str, t0: float, timed: bool = True) -> None:
        self.state[c.id] = self.results[c.id] = status
        self.manifest.update(c.id, status=status, seconds=round(time.time() - t0, 1),
                             output_hash=output_hash(c.run_dir))
        self.manifest.save()
        log.info(f"{self.progress()} {c.label}: {status}" + (f" ({time.time() - t0:.0f} s)" if timed else ""))

    def free_worker(self, c: Cell) -> Worker:
        for w in list(self.workers):
            if w.busy is None and w.alive:
                return w
            if not w.alive:  # a cell took it down; a new one takes its place
                w.close()
                self.workers.remove(w)
        w = Worker(self.env | {"OMP_NUM_THREADS": self.threads_for(c)})
        self.workers.append(w)
        return w

    def start(self, c: Cell) -> None:
        log.info(f"{self.progress()} start {c.label}")
        if self.in_process:
            from mlu_dist.launcher.tasks import run_cell

            t0 = time.time()
            cfg = str(self.root / "cells" / f"{c.id}.yaml") if c.config is not None else None
            try:
                out = run_cell(c.stage, cfg, str(self.root))
                status = "finished" if out["status"] != "interrupted" else "interrupted"
            except Exception as exc:  # the debug executor reports and goes on like the others
                status = f"failed ({type(exc).__name__}: {exc})"
            self.finish(c, status, t0, timed=False)
            return
        log_path = self.root / "logs" / f"{c.id}.log"  # an earlier attempt's log is kept
        if self.spec.local_reuse and c.stage not in ("base", "report"):
            proc = self.free_worker(c)
            proc.submit(c.id, _cell_cmd(c, self.root)[3:], str(log_path))
        else:
            with open(log_path, "a") as fh:
                proc = subprocess.Popen(_cell_cmd(c, self.root), stdout=fh, stderr=subprocess.STDOUT,
                                        env=self.env | {"OMP_NUM_THREADS": self.threads_for(c)})
        self.running[c.id] = (proc, c, time.time())
        self.manifest.update(c.id, status="running", pid=proc.pid)
        self.manifest.save()

    def step(self) -> None:
        for cid, (proc, c, t0) in list(self.running.items()):
            rc = proc.poll()
            if rc is not None:
                del self.running[cid]
                self.finish(c, "finished" if rc == 0 else f"failed (exit {rc})", t0)
        for c in list(self.waiting):
            deps = [self.state.get(d) for d in c.deps]
            if any(s is not None and s != "finished" for s in deps) and c.stage != "report":
                self.state[c.id] = self.results[c.id] = "skipped (a dependency failed)"
                self.manifest.update(c.id, status=self.state[c.id])
                self.waiting.remove(c)
                continue
            if not all(s is not None for s in deps) or len(self.running) >= self.spec.local_workers:
                continue
            self.waiting.remove(c)
            self.start(c)

    def run(self) -> dict:
        try:
            while self.waiting or self.running:
                self.step()
                if self.running:
                    time.sleep(0.2)
        finally:
            for w in self.workers:
                w.close()
        return self.results
