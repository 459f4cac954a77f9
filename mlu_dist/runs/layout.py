"""Where every job's run directory is: a pure function of the config (no torch, no job code), so
the sweep planner and the jobs agree on it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlu_dist.runs import rundir

if TYPE_CHECKING:
    from mlu_dist.experiment import ExperimentConfig


def base_run_dir(cfg: ExperimentConfig) -> Path:
    """``runs/base/<hash of data + model + base>``: shared by every study on the same world and model."""
    from mlu_dist.data.world import FORMAT_VERSION

    digest = rundir.config_hash(cfg, keep=("data", "model", "base"),
                                drop=("base.resume", "base.stop_after", "base.log_every", "base.eval_every"))
    return Path(cfg.run.out_dir) / "base" / f"{digest}-w{FORMAT_VERSION}"


def study_hash(cfg: ExperimentConfig, keep: tuple[str, ...]) -> str:
    """The hash of a job's config sections and the world's format version (a run made under an older
    format, e.g. another tokenizer, is never reused)."""
    import hashlib

    from mlu_dist.data.world import FORMAT_VERSION

    digest = rundir.config_hash(cfg, keep=keep, drop=rundir.COMPARE_DROP)
    return hashlib.sha256(f"{digest}:w{FORMAT_VERSION}".encode()).hexdigest()[:12]


def inject_run_dir(cfg: ExperimentConfig) -> Path:
    """``runs/inject/<langs>-<hash of data + model + base + inject>`` (or ``run.name``)."""
    digest = study_hash(cfg, ("data", "model", "base", "inject"))
    return Path(cfg.run.out_dir) / "inject" / (cfg.run.name or f"{'+'.join(cfg.inject.langs)}-{digest}")


def unlearn_run_dir(cfg: ExperimentConfig) -> Path:
    """``runs/unlearn/<injection run>/<method>-<forget set>-<hash>`` (or ``run.name``)."""
    digest = study_hash(cfg, ("data", "model", "base", "inject", "unlearn"))
    u = cfg.unlearn
    name = cfg.run.name or f"{u.method}-{u.forget_langs.replace('+', '_')}-{digest[:8]}"
    return Path(cfg.run.out_dir) / "unlearn" / Path(u.from_run).name / name


RELEARN_DROP = ("relearn.attacks", "relearn.controls", "relearn.train.resume", "relearn.train.stop_after",
                "relearn.train.log_every")


def relearn_run_dir(cfg: ExperimentConfig, source_run: Path, start: str, attack) -> Path:
    """``<source run>/relearn/<start>-<attack>-<hash of relearn>``: an attack lives beside the model it
    attacked (an unlearning run; the injection run for the injected and base controls)."""
    digest = rundir.config_hash(cfg, keep=("relearn",), drop=RELEARN_DROP)[:8]
    return Path(source_run) / "relearn" / f"{start}-{attack.slug}-{digest}"
