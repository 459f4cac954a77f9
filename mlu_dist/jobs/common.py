"""Steps every training job shares: where its TrainConfig sits, the engine and tracker factories,
rank-0 messages. The model is ``jobs/model.py``, what a job writes ``jobs/saving.py``, evaluation of
the live engine ``jobs/evaluation.py``; ``jobs/skeleton.py`` strings them together."""

from __future__ import annotations

from pathlib import Path


from mlu_dist.engine.config import EngineConfig
from mlu_dist.engine.dist import DistInfo
from mlu_dist.engine.engines import TrainingEngine, build_engine
from mlu_dist.logs import get_logger
from mlu_dist.tracking import FanOut, JsonlTracker, NullTracker, TrackerContext, build_trackers
from mlu_dist.train_config import TrainConfig

log = get_logger(__name__)

TRAIN_KEYS = {"base": "base", "inject": "inject.train", "unlearn": "unlearn.train", "relearn": "relearn.train"}
"""Where each job's TrainConfig sits in the experiment config (errors name the real dotted key)."""
TRAIN_CONFIGS = {"base": lambda cfg: cfg.base, "inject": lambda cfg: cfg.inject.train,
                 "unlearn": lambda cfg: cfg.unlearn.train, "relearn": lambda cfg: cfg.relearn.train}


def say(dist: DistInfo, *msg) -> None:
    """Log on rank 0 only (the ``mlu_dist.jobs`` logger; ``--quiet`` hides it)."""
    if dist.is_main:
        log.info(" ".join(str(m) for m in msg))


def warn(dist: DistInfo, *msg) -> None:
    """A warning, from rank 0 only (every rank would say the same); stderr, shown under ``--quiet``."""
    if dist.is_main:
        log.warning(" ".join(str(m) for m in msg))


def make_engine(model, cfg: TrainConfig, engine_cfg: EngineConfig, dist: DistInfo, job: str = "base") -> TrainingEngine:
    """The configured backend around ``model`` with ``job``'s ZeRO settings (the engine owns the
    optimizer and the schedule)."""
    return build_engine(model, cfg, engine_cfg, dist, job)


def make_tracker(run_dir: Path, dist: DistInfo, start_step: int, job: str = "train", experiment=None,
                 step_axes: tuple[str, ...] = ()):
    """Rank 0: metrics.jsonl always, plus the configured trackers (W&B, plugins); other ranks log nothing."""
    if not dist.is_main:
        return NullTracker()
    jsonl = JsonlTracker(run_dir, start_step)
    tracking = getattr(experiment, "tracking", None)
    if tracking is None:
        return FanOut([jsonl])
    ctx = TrackerContext(run_dir, job, experiment, skip_until=jsonl.last_logged, step_axes=tuple(step_axes))
    return FanOut([jsonl, *build_trackers(tracking.names(), ctx)])
