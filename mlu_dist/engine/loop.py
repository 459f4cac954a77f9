"""The one training loop: base training, injection and unlearning differ only in objective and data
(objectives: ``mlu_dist/objectives.py``). It ends for one of the reasons in :class:`Stop`."""

from __future__ import annotations

import enum
import math
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable

from tqdm.auto import tqdm

from mlu_dist.engine.data import BatchPlan
from mlu_dist.engine.dist import DistInfo
from mlu_dist.objectives import Objective
from mlu_dist.train_config import TrainConfig
from mlu_dist.logs import get_logger, quiet

log = get_logger(__name__)


class Stop(str, enum.Enum):
    """Why the loop ended. The value is the status a finished run records in DONE.json."""

    FINISHED = "finished"
    """All configured steps ran."""
    INTERRUPTED = "interrupted"
    """``stop_after`` (or a time-limited job) ended it early with a checkpoint: run again to resume."""
    TARGET = "target_reached"
    """A job's target was met (e.g. the forget-language fake_rate fell to unlearn.target_fake_rate)."""
    GUARD = "guard_tripped"
    """A job's guard tripped (e.g. utility perplexity grew past unlearn.guard_ppl_ratio)."""
    DIVERGED = "diverged"
    """The loss stopped being finite."""


class GracefulSignals:
    """SIGTERM (Slurm preemption, ``scontrol requeue``, ``scancel`` with a grace time, a node
    drain), SIGUSR1 and SIGUSR2 (submitit's time-limit signal) only set a flag while the loop runs:
    the loop finishes its step, every rank agrees, a checkpoint is written, the handlers in place
    before are restored, and once the run is torn down :func:`redeliver` hands the signal to
    whoever had it before (submitit requeues the job) or exits with 128 + the signal number.
    Main thread only (elsewhere signals cannot be caught)."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))

    def __init__(self, say=None):
        self.caught: int | None = None
        self.previous: dict = {}
        self.say = say or log.warning

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._catch)
        return self

    def _catch(self, signum, frame) -> None:
        if self.caught is None:
            self.say(f"caught {signal.Signals(signum).name}: finishing this step, then a checkpoint and exit")
        self.caught = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)



def redeliver(signum: int) -> None:
    """After the checkpoint and teardown: the signal's own handler has its turn (submitit's requeue
    on its time-limit signal, its log line on SIGTERM), then the process exits with 128 + signum."""
    handler = signal.getsignal(signum)
    if callable(handler):
        handler(signum, None)
    raise SystemExit(128 + signum)


@dataclass
class LoopResult:
    start_step: int
    end_step: int
    history: list[dict]
    stop: Stop = Stop.FINISHED
    reason: str = ""
    """A human-readable sentence on why the loop stopped (empty when it finished)."""
    seconds: float = 0.0
    signal: int | None = None
    """The signal that interrupted the loop (it is re-delivered once the run is torn down)."""

    @property
    def interrupted(self) -> bool:
        return self.stop is Stop.INTERRUPTED


@dataclass
class LoopHooks:
    """Optional callbacks. ``evaluate(step) -> metrics`` runs on every rank (ZeRO-3 needs all);
    ``should_stop(step, metrics) -> (Stop, reason) | None`` ends the run early when it returns a pair."""

    evaluate: Callable[[int], dict] | None = None
    should_stop: Callable[[int, dict], tuple[Stop, str] | None] | None = None
    checkpoint_state: Callable[[], dict] = dict


def train_loop(engine, objective: Objective, plan: BatchPlan, cfg: TrainConfig, dist: DistInfo,
               tracker, checkpointer=None, hooks: LoopHooks | None = None, start_step: int = 0,
               pad_id: int = 0, desc: str = "train") -> LoopResult:
    with GracefulSignals() as signals:
        return _loop(engine, objective, plan, cfg, dist, tracker, checkpointer, hooks or LoopHooks(), start_step,
                     pad_id, desc, signals)


def _loop(engine, objective, plan, cfg, dist, tracker, checkpointer, hooks, start_step, pad_id, desc,
          signals: GracefulSignals) -> LoopResult:
    history: list[dict] = []
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=start_step, desc=desc, disable=not dist.is_main or quiet(), dynamic_ncols=True,
               mininterval=1.0)
    step = start_step
    result = LoopResult(start_step, start_step, history)

    def finish(stop=Stop.FINISHED, reason=""):
        bar.close()
        result.end_step, result.stop, result.reason = step, stop, reason
        result.seconds = time.time() - t0
        return result

    if start_step == 0 and hooks.evaluate is not None and cfg.eval_every:
        metrics = hooks.evaluate(0)
        tracker.log(metrics, 0)
    while step < cfg.steps:
        engine.module.train()
        sums: dict[str, float] = {}
        for micro in plan.micro_batches(step, dist.rank, dist.world_size, cfg.grad_accum, pad_id):
            loss, metrics = objective(engine, micro)
            engine.backward(loss)
            engine.step()
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
        sums["_signal"] = float(signals.caught is not None)  # rides on the step's one all-reduce
        keys = sorted(sums)
        reduced = dict(zip(keys, engine.all_reduce_sum([sums[k] for k in keys])))
        signalled = reduced.pop("_signal") > 0
        step += 1
        record = reduced | {"train/lr": engine.lr()}
        after_step = getattr(objective, "after_step", None)
        if after_step is not None:  # e.g. PDU's dual update, from the step's reduced metrics
            after_step(step, record)
        norm = engine.grad_norm()
        if norm is not None:
            record["train/grad_norm"] = norm
        bar.update(1)
        if dist.is_main:
            bar.set_postfix(loss=f"{reduced.get('train/loss', float('nan')):.3f}", refresh=False)
        if step % cfg.log_every == 0 or step == cfg.steps:
            tracker.log(record, step)
        history.append({"step": step} | record)
        if hooks.evaluate is not None and cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
            eval_metrics = hooks.evaluate(step)
            tracker.log(eval_metrics, step)
            record |= eval_metrics
        stopped = None
        if not math.isfinite(reduced.get("train/loss", 0.0)):
            stopped = (Stop.DIVERGED, f"loss is {reduced.get('train/loss')} at step {step}")
        elif hooks.should_stop is not None:
            stopped = hooks.should_stop(step, record)
        if stopped:
            return finish(*stopped)
        if signalled and step < cfg.steps:  # every rank agrees on the same step
            if checkpointer is not None:
                checkpointer.save(step, hooks.checkpoint_state())
            result.signal = signals.caught or signal.SIGTERM
            name = signal.Signals(result.signal).name
            return finish(Stop.INTERRUPTED, f"{name}: checkpoint at step {step}")
        if checkpointer is not None and cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            checkpointer.save(step, hooks.checkpoint_state(), optional=True)
        if cfg.stop_after and step - start_step >= cfg.stop_after and step < cfg.steps:
            if checkpointer is not None:
                checkpointer.save(step, hooks.checkpoint_state())
            return finish(Stop.INTERRUPTED, f"stop_after={cfg.stop_after}")
    return finish()
