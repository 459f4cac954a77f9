"""One skeleton for every training job (base, inject, unlearn): set-up, the loop, and a teardown
that always runs.

A job is a small object (:class:`TrainingJob`): ``setup`` builds its model, data pools, objective
and hooks; ``finish`` evaluates, exports and returns what DONE.json records. The skeleton owns
everything in between and around: the run directory, the HF skeleton, meta.json, the engine, the
resume, the tracker, the loop, the final checkpoint and DONE.json. Every resource (engine,
tracker, a reference model a job registers) is closed on every path, an exception included; the
W&B run of a failed job is marked failed.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from mlu_dist.runs import rundir
from mlu_dist.engine.checkpoint import Checkpointer
from mlu_dist.engine.data import BatchPlan, steps_for_epochs
from mlu_dist.engine.dist import DistInfo
from mlu_dist.engine.loop import LoopHooks, LoopResult, Stop, redeliver, train_loop
from mlu_dist.jobs.common import TRAIN_KEYS, make_engine, make_tracker, say
from mlu_dist.logs import get_logger
from mlu_dist.jobs.saving import save_skeleton
from mlu_dist.objectives import Objective
from mlu_dist.tokens import Encoded
from mlu_dist.train_config import TrainConfig

log = get_logger(__name__)


@dataclass
class HookContext:
    """Where a job's hooks start from."""

    start: int
    """The step the loop starts at (0, or the resumed checkpoint's)."""
    state: dict
    """The client state of the checkpoint resumed from ({} on a fresh start)."""
    checkpointer: Checkpointer
    """Saves named checkpoints (e.g. unlearning's ``best``) with the same guarantees as the others."""


@dataclass
class TrainingSetup:
    """What a job hands the skeleton once its model and data are ready."""

    model: object
    tokenizer: object
    train_cfg: TrainConfig
    pools: dict[str, list[Encoded]]
    """Encoded examples per pool."""
    per_micro: dict[str, int]
    """Examples of each pool per rank per micro-batch."""
    objective: Callable[[float], Objective]
    """``objective(scale)``: the loss, given world size x accumulation steps."""
    desc: str
    """Progress-bar label."""
    hooks: Callable[[object, HookContext], LoopHooks] | None = None
    """``hooks(engine, context)``: in-training evaluation and stop rules (and the job's resumable
    state: ``LoopHooks.checkpoint_state``, given back as ``context.state`` on resume)."""
    meta: dict = field(default_factory=dict)
    """Job-specific fields of meta.json."""
    streams: dict[str, str] | None = None
    """Pools walked in the same order (paired data)."""
    groups: dict[str, list[str]] | None = None
    """Pools drawn equally from each group every step: the group of each example (e.g. its language)."""
    final_checkpoint: bool = True
    """Save a checkpoint when the loop finishes its steps (a relearning attack that keeps no model saves none)."""


@dataclass
class Trained:
    """The state after the loop ended, for the job's ``finish``. The engine and tracker are still open."""

    engine: object
    tracker: object
    result: LoopResult
    dist: DistInfo
    run_dir: Path
    setup: TrainingSetup


class TrainingJob(Protocol):
    name: str
    """base / inject / unlearn: meta.json's and W&B's job type."""
    cfg: object
    """The experiment config (written to the run directory)."""
    run_dir: Path
    sections: tuple[str, ...]
    """Config sections a resumed or reused run must share."""
    step_axes: tuple[str, ...]
    """Key prefixes it logs against its own step (``forget`` for ``forget/de/fake_rate``): trackers
    with step axes (W&B) plot them over ``<name>/step``."""

    def setup(self, dist: DistInfo, resources: ExitStack) -> TrainingSetup: ...

    def finish(self, run: Trained) -> dict: ...


def require_finished(result: LoopResult, what: str) -> None:
    """Raise unless the loop ran all its steps (base training and injection have no early stops)."""
    if result.stop is not Stop.FINISHED:
        raise RuntimeError(f"{what} stopped: {result.reason}")


def _write_meta(job: TrainingJob, setup: TrainingSetup, dist: DistInfo) -> None:
    t = setup.train_cfg
    rundir.write_meta(job.run_dir, dist.as_dict(), {
        "job": job.name, "seed": t.seed, "zero_stage": job.cfg.engine.zero_for(job.name).stage,
        "micro_batch_size": t.micro_batch_size, "grad_accum": t.grad_accum, "per_micro": setup.per_micro,
        "global_batch": {k: v * t.grad_accum * dist.world_size for k, v in setup.per_micro.items()}} | setup.meta)


def _steps_from_epochs(job: TrainingJob, setup: TrainingSetup, dist: DistInfo) -> None:
    """With ``train.epochs`` set, the steps follow from the main pool (the first of per_micro)."""
    t = setup.train_cfg
    if not t.epochs:
        return
    main = next(iter(setup.per_micro))
    per_step = setup.per_micro[main] * t.grad_accum * dist.world_size
    t.steps = steps_for_epochs(t.epochs, len(setup.pools[main]), per_step)
    setup.meta["epochs"] = {"epochs": t.epochs, "pool": main, "examples": len(setup.pools[main]),
                            "global_batch": per_step, "steps": t.steps}
    say(dist, f"{job.name}: {t.epochs:g} epoch(s) of {len(setup.pools[main])} '{main}' examples at {per_step} per "
              f"step = {t.steps} steps")


def _drop_checkpoints(run_dir: Path) -> str:
    """Delete a finished run's checkpoints once its exported model is verified; say what happened."""
    import shutil

    from mlu_dist.jobs.saving import export_problems

    problems = export_problems(run_dir / "model")
    if problems:
        log.warning(f"checkpoints kept: the export did not verify ({'; '.join(problems)})")
        return "kept: export not verified"
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return "dropped after a verified export (train.final_checkpoint=drop)"


def _train(job: TrainingJob, setup: TrainingSetup, dist: DistInfo, resources: ExitStack) -> Trained:
    """Engine, resume, tracker, the loop, and the final checkpoint of a run that finished its steps."""
    from mlu_dist.config import ConfigError

    t = setup.train_cfg
    per_step = {k: v * t.grad_accum * dist.world_size for k, v in setup.per_micro.items()}
    plan = BatchPlan(setup.pools, per_step, t.seed, setup.streams, setup.groups)
    problems = plan.check_geometry(dist.world_size, t.grad_accum)
    if problems:
        raise ConfigError(f"{job.name} batch geometry: " + "; ".join(problems))
    engine = make_engine(setup.model, t, job.cfg.engine, dist, job.name)
    resources.callback(engine.close)
    checkpointer = Checkpointer(job.run_dir, engine, dist.rank, dist.world_size, t.keep_checkpoints)
    start, state = 0, {}
    resume_from = checkpointer.resolve(t.resume, f"{TRAIN_KEYS[job.name]}.resume")
    if resume_from is not None:
        resume_from, state = checkpointer.load_newest(resume_from)
        start = int(state["step"])
        say(dist, f"resumed from {resume_from} (step {start})")
    checkpointer.clean_partial()
    tracker = make_tracker(job.run_dir, dist, start, job.name, job.cfg, job.step_axes)
    resources.push(lambda exc_type, *_: tracker.close(failed=exc_type is not None))
    hooks = setup.hooks(engine, HookContext(start, state, checkpointer)) if setup.hooks else LoopHooks()
    job_state = hooks.checkpoint_state
    hooks.checkpoint_state = lambda: {"job": job.name} | job_state()
    result = train_loop(engine, setup.objective(dist.world_size * t.grad_accum), plan, t, dist, tracker,
                        checkpointer, hooks, start, setup.tokenizer.pad_token_id, setup.desc)
    if result.stop is Stop.FINISHED and result.end_step > result.start_step and setup.final_checkpoint:
        checkpointer.save(result.end_step, hooks.checkpoint_state())
    return Trained(engine, tracker, result, dist, job.run_dir, setup)


def run_training(job: TrainingJob, dist: DistInfo) -> Path:
    """Prepare the run directory, train, let the job finish, write DONE.json; always tear down.
    A run stopped by a signal re-delivers it after the teardown (see engine.loop.GracefulSignals)."""
    with ExitStack() as resources:
        rundir.prepare(job.run_dir, job.cfg, dist.is_main, job.sections)
        setup = job.setup(dist, resources)
        _steps_from_epochs(job, setup, dist)
        save_skeleton(setup.model, setup.tokenizer, job.run_dir, dist, setup.train_cfg)
        if dist.is_main:
            _write_meta(job, setup, dist)
        run = _train(job, setup, dist, resources)
        result = run.result
        if result.interrupted:
            say(dist, f"{job.name}: stopped at step {result.end_step} ({result.reason}); "
                      f"run the same command to resume from {job.run_dir}/checkpoints")
        else:
            info = job.finish(run)
            if dist.is_main and setup.train_cfg.final_checkpoint == "drop":
                info["checkpoints"] = _drop_checkpoints(job.run_dir)
            if dist.is_main:
                rundir.mark_done(job.run_dir, {"status": result.stop.value, "reason": result.reason,
                                               "steps": result.end_step, "seconds": round(result.seconds, 1)} | info)
    if dist.world_size > 1:  # callers read DONE.json next (a sweep cell goes on to its attacks): rank 0 wrote it
        from mlu_dist import comm

        comm.barrier()
    if result.signal is not None:
        redeliver(result.signal)
    return job.run_dir
