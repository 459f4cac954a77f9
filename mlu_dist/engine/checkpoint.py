"""The one owner of resumable state: engine (model/optimizer/scheduler), step, RNG, run id.

Layout: ``<run>/checkpoints/step_000100/`` (engine files, ``rng_rank<r>.pt``, ``COMPLETE``) and
``<run>/checkpoints/LATEST`` naming the newest complete one. LATEST is replaced atomically only
after every rank finished writing, so a job killed mid-save resumes from the previous checkpoint.
The data position needs no saving: the batch plan is a pure function of the step.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from mlu_dist.rundir import ResumeError, atomic_write_text


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


class Checkpointer:
    def __init__(self, run_dir: Path, engine, rank: int, world_size: int, keep: int = 2):
        self.root = Path(run_dir) / "checkpoints"
        self.engine, self.rank, self.world_size, self.keep = engine, rank, world_size, keep

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        pointer = self.root / "LATEST"
        if not pointer.exists():
            return None
        path = self.root / pointer.read_text().strip()
        return path if (path / "COMPLETE").exists() else None

    def resolve(self, resume: str, key: str = "resume") -> Path | None:
        """Map a resume setting (auto / false / a path; ``key`` names it in errors, e.g.
        ``inject.train.resume``) to the checkpoint to load, or None."""
        if str(resume).lower() in ("false", "no", "none", ""):
            return None
        if resume == "auto":
            return self.latest()
        path = Path(resume)
        if path.is_dir() and (path / "LATEST").exists():
            path = path / (path / "LATEST").read_text().strip()
        elif path.is_dir() and (path / "checkpoints" / "LATEST").exists():
            path = path / "checkpoints" / (path / "checkpoints" / "LATEST").read_text().strip()
        if not (path / "COMPLETE").exists():
            raise ResumeError(f"{key}={resume!r}: no complete checkpoint there "
                              f"(expected a step_* directory holding COMPLETE, or a run dir with checkpoints/LATEST)")
        return path

    def save(self, step: int, client_state: dict) -> Path:
        """Save on every rank; returns the checkpoint directory."""
        path = self.root / f"step_{step:06d}"
        self.engine.save(path, {"step": step, "world_size": self.world_size} | client_state)
        torch.save(_rng_state(), path / f"rng_rank{self.rank}.pt")
        self.engine.barrier()
        if self.rank == 0:
            atomic_write_text(path / "COMPLETE", json.dumps({"step": step, "world_size": self.world_size}) + "\n")
            atomic_write_text(self.root / "LATEST", path.name + "\n")
            self._prune(keep_also=path)
        self.engine.barrier()
        return path

    def load(self, path: Path) -> dict:
        """Restore engine and RNG state on every rank; returns the client state (with ``step``)."""
        meta = json.loads((path / "COMPLETE").read_text())
        if meta["world_size"] != self.world_size:
            raise ResumeError(f"checkpoint {path} was saved by {meta['world_size']} rank(s); this job has "
                              f"{self.world_size}. Resume with the same world size (or export and start anew).")
        client = self.engine.load(path)
        rng = path / f"rng_rank{self.rank}.pt"
        if rng.exists():
            _set_rng_state(torch.load(rng, weights_only=False))
        return client

    def _prune(self, keep_also: Path) -> None:
        done = sorted(p for p in self.root.glob("step_*") if (p / "COMPLETE").exists())
        for old in done[:-self.keep]:
            if old != keep_also:
                shutil.rmtree(old, ignore_errors=True)
