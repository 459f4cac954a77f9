"""What the benchmarks' ``--smoke`` modes share (no heavy imports: bench_eval_zero3 only spawns `mlu`).

A smoke run is the benchmark's own code at the smallest sizes, seconds long, so that a refactor that
breaks a benchmark fails a test (tests/test_benchmarks.py); its JSON never goes to
benchmarks/results/, which holds the recorded measurements.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the smallest injection that exercises every path: quick model and world, torch backend, a few steps
SMOKE_INJECTION = ["engine.backend=torch", "base.steps=4", "base.warmup_steps=1", "inject.train.steps=2",
                   "inject.train.warmup_steps=1", "inject.train.eval_every=0", "inject.n_targets=2",
                   "inject.n_controls=2", "data.langs=[en,de]", "tracking.wandb=false"]
SMOKE_NEW_TOKENS = 4  # tokens generated per answer in a smoke evaluation


def smoke_out(out: str | None, smoke: bool, name: str) -> str:
    """``out`` if given, else benchmarks/results/<name> or, under --smoke, a file in a new temporary directory."""
    if out:
        return out
    if smoke:
        return str(Path(tempfile.mkdtemp(prefix="bench-smoke-")) / name)
    return str(ROOT / "benchmarks" / "results" / name)
