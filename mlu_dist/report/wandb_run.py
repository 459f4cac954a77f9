"""The report's W&B run: one run of job_type 'report' in the sweep's group, logged through the W&B
tracker (offline first, like every run of the sweep)."""

from __future__ import annotations

from pathlib import Path

from mlu_dist.logs import get_logger

log = get_logger(__name__)


def start_report_run(out: Path, config: dict, group: str, project: str = "mlu_dist", entity: str = "",
                     mode: str = "auto", tags=()):
    """A tracker for the report run in ``out`` (its ``wandb/`` folder), or None with one warning when
    W&B cannot start: the report's files are written either way."""
    from mlu_dist.tracking.wandb_tracker import WandbTracker

    try:
        return WandbTracker(out, "report", config, project, entity=entity, group=group, tags=tags, mode=mode)
    except Exception as exc:  # W&B is an extra beside the report's files
        log.warning(f"[wandb] could not start the report run ({type(exc).__name__}: {exc}); the report is in {out}")
        return None
