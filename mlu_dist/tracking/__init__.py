"""Metric trackers: a Protocol, a no-op default, local JSONL (always on) and a fan-out.

Only rank 0 gets real trackers; every other rank gets :class:`NullTracker`. Metric keys put the
axis first (``train/loss``, ``forget/de/fake_rate``) so dashboards can glob them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from dataclasses import dataclass, field
from typing import Protocol

from mlu_dist.config import check_choice
from mlu_dist.registry import Registry
from mlu_dist.logs import get_logger

log = get_logger(__name__)

WANDB_MODES = ("auto", "online", "offline", "disabled")


@dataclass
class TrackingConfig:
    """Where metrics go besides the run directory's metrics.jsonl (always written)."""

    wandb: bool = True
    """Log to Weights & Biases too (offline unless a key and network are there; see mode)."""
    mode: str = "auto"
    """auto (WANDB_MODE if set, else online with an API key, offline without), online, offline, disabled."""
    project: str = "mlu_dist"
    """W&B project."""
    entity: str = ""
    """W&B entity (team or user; empty = your default)."""
    group: str = ""
    """W&B group (sweeps set it to the sweep name)."""
    tags: list[str] = field(default_factory=list)
    """W&B tags."""
    init_timeout: float = 60.0
    """Seconds an online W&B start may take before the run falls back to offline (training goes on
    either way: a W&B failure never stops a job, it only degrades to offline or metrics.jsonl)."""

    trackers: list[str] = field(default_factory=list)
    """Further registered trackers (e.g. a plugin's) beside metrics.jsonl and W&B; see tracking.TRACKERS."""

    def names(self) -> list[str]:
        """The trackers a run starts besides metrics.jsonl."""
        return (["wandb"] if self.wandb and self.mode != "disabled" else []) + list(self.trackers)

    def check(self) -> list[str]:
        unknown = [f"trackers: unknown tracker '{t}'; registered: {', '.join(TRACKERS.names())}"
                   for t in self.trackers if t not in TRACKERS]
        out = unknown + check_choice("mode", self.mode, WANDB_MODES)
        return out + ([] if self.init_timeout > 0 else [f"init_timeout: must be > 0, got {self.init_timeout}"])


@dataclass
class TrackerContext:
    """What a tracker is built from: the run, the job and the whole resolved experiment config."""

    run_dir: Path
    job: str
    experiment: object
    """The ExperimentConfig (its ``tracking`` section says project, group, tags, mode)."""
    skip_until: int = -1
    """Steps a previous process of this run already logged (a resumed run must not log them twice)."""
    step_axes: tuple[str, ...] = ()
    """Key prefixes the job logs against ``<job>/step`` (``forget``, ``group``, ...), as it declares them."""


# Trackers besides metrics.jsonl (always written). A tracker is a callable TrackerContext -> Tracker;
# a new one (MLflow, TensorBoard, ...) is one module that registers it (see docs/extending.md).
TRACKERS: Registry = Registry("tracker")
TRACKERS.register("wandb")("mlu_dist.tracking.wandb_tracker:build_wandb_tracker")  # by path: wandb is heavy


def build_trackers(names: list[str], ctx: TrackerContext) -> list:
    """Each named tracker, built; one that fails to start is skipped with one line (tracking never
    kills training: metrics.jsonl is there either way)."""
    out = []
    for name in names:
        try:
            out.append(TRACKERS.load(name)(ctx))
        except Exception as exc:  # noqa: BLE001 - any tracker failure degrades to metrics.jsonl
            detail = str(exc).splitlines()[0] if str(exc) else ""
            log.warning(f"[{name}] could not start ({type(exc).__name__}: {detail}); this run logs to "
                        f"{Path(ctx.run_dir) / 'metrics.jsonl'} without it")
    return out


class Tracker(Protocol):
    def log(self, metrics: dict, step: int) -> None: ...
    def summary(self, metrics: dict) -> None: ...
    def table(self, key: str, columns: list[str], rows: list[list]) -> None: ...
    def close(self, failed: bool = False) -> None: ...


class NullTracker:
    def log(self, metrics: dict, step: int) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def table(self, key: str, columns: list[str], rows: list[list]) -> None:
        pass

    def close(self, failed: bool = False) -> None:
        pass


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them visible
    return value


class JsonlTracker:
    """Appends one JSON object per ``log`` call to ``metrics.jsonl``; ``summary`` goes to ``summary.json``."""

    def __init__(self, run_dir: Path, start_step: int = 0):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.last_logged = max((r.get("step", 0) for r in read_jsonl(self.path)), default=-1)
        self.summary_path = Path(run_dir) / "summary.json"
        if self.path.exists():
            self._truncate_after(start_step)  # a resumed run re-logs the steps after its checkpoint
        self._summary: dict = json.loads(self.summary_path.read_text()) if self.summary_path.exists() else {}

    def _truncate_after(self, step: int) -> None:
        keep_rows(self.path, lambda row: bool(step) and row.get("step", 0) <= step)

    def log(self, metrics: dict, step: int) -> None:
        append_jsonl(self.path, [{"step": step} | {k: _clean(v) for k, v in metrics.items()}])

    def summary(self, metrics: dict) -> None:
        from mlu_dist.runs.rundir import atomic_write_json

        self._summary |= {k: _clean(v) for k, v in metrics.items()}
        atomic_write_json(self.summary_path, self._summary)

    def table(self, key: str, columns: list[str], rows: list[list]) -> None:
        from mlu_dist.runs.rundir import atomic_write_json

        atomic_write_json(self.path.with_name(key.replace("/", "_") + ".table.json"), {"columns": columns, "rows": rows})

    def close(self, failed: bool = False) -> None:
        pass


class FanOut:
    def __init__(self, trackers: list):
        self.trackers = trackers

    def log(self, metrics: dict, step: int) -> None:
        for t in self.trackers:
            t.log(metrics, step)

    def summary(self, metrics: dict) -> None:
        for t in self.trackers:
            t.summary(metrics)

    def table(self, key: str, columns: list[str], rows: list[list]) -> None:
        for t in self.trackers:
            t.table(key, columns, rows)

    def close(self, failed: bool = False) -> None:
        for t in self.trackers:
            t.close(failed)


def _parse_lines(text: str, path: Path) -> tuple[list[dict], bool]:
    """The rows of a JSONL text and whether it needs repair: a torn last line (a write killed
    half-way: no final newline, or not JSON) or a damaged line elsewhere, each left out with a
    warning when it is not JSON."""
    lines = text.split("\n")
    tail = lines.pop()  # text after the last newline: empty unless the last write was cut
    rows, damaged = [], bool(tail.strip())
    for i, line in enumerate(lines + [tail]):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            damaged = True
            log.warning(f"{path}: line {i + 1} is not JSON (a write cut short); left out")
    return rows, damaged


def read_jsonl(path: Path) -> list[dict]:
    """Every row of a JSONL file; a torn last line (a write killed half-way) is left out."""
    path = Path(path)
    if not path.exists():
        return []
    return _parse_lines(path.read_text(encoding="utf-8"), path)[0]


def append_jsonl(path: Path, rows: list[dict]) -> None:
    """Append rows in one write; a torn last line left by a killed writer is cut off first, so
    the file never holds a row glued to a fragment."""
    path = Path(path)
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as fh:
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                keep_rows(path, lambda row: True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()


def keep_rows(path: Path, keep) -> None:
    """Rewrite a JSONL file with only the rows for which ``keep(row)`` holds, to a temp file renamed
    over it (a kill never loses the history); a torn last line is dropped. No rewrite when
    nothing changes."""
    from mlu_dist.runs.rundir import atomic_write_text

    path = Path(path)
    if not path.exists():
        return
    rows, torn = _parse_lines(path.read_text(encoding="utf-8"), path)
    kept = [r for r in rows if keep(r)]
    if len(kept) == len(rows) and not torn:
        return
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
