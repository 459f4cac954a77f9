"""The one owner of resumable state: engine (model/optimizer/scheduler), step, RNG, job state.

Layout: ``<run>/checkpoints/step_000100/`` (engine files, ``rng_rank<r>.pt``, ``COMPLETE``) and
``<run>/checkpoints/LATEST`` naming the newest complete one. ``COMPLETE`` is written last, after
every rank finished, and is the checkpoint's manifest: step, world size and the size of every
file. A checkpoint *verifies* when COMPLETE is readable and every listed file is there with its
size. Resuming takes the newest checkpoint that verifies (and loads); LATEST is a hint, never
trusted blindly: a dangling or unreadable one falls back the same way. Pruning never deletes the
newest verified checkpoint. The data position needs no saving: the batch plan is a pure function
of the step. A LoRA checkpoint leaves the frozen base out (:func:`frozen_base_source`); its manifest
names the base it was trained over, and a resume over another base is refused.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from mlu_dist import comm
from mlu_dist.runs.rundir import DiskFull, ResumeError, atomic_write_text
from mlu_dist.logs import get_logger

log = get_logger(__name__)

PARTIAL = ".partial"
"""Suffix of a named checkpoint being written (``best.partial`` becomes ``best`` when complete)."""
TRASH = ".pruned-"
"""Prefix of a pruned checkpoint being deleted in the background."""
RANK_FILE_BYTES = 64 << 10
"""Allowance per rank for the small files a checkpoint holds besides weights (RNG state, pickles)."""


def weight_counts(module) -> tuple[int, int, int]:
    """``(trainable elements, their weight bytes, frozen weight bytes)`` of a module's whole weights
    (full sizes also where ZeRO-3 holds only this rank's shard)."""
    trainable = trainable_bytes = frozen_bytes = 0
    for p in module.parameters():
        n = getattr(p, "ds_numel", p.numel())
        if p.requires_grad:
            trainable, trainable_bytes = trainable + n, trainable_bytes + n * p.element_size()
        else:
            frozen_bytes += n * p.element_size()
    return trainable, trainable_bytes, frozen_bytes


def frozen_base_source(module, zero_stage: int) -> str | None:
    """Where a LoRA model's frozen base was loaded from (a directory, resolved, or a hub name) when
    its checkpoints leave the base out: they then hold the adapters, their optimizer state and the
    client state, and resume and export take the base from there. None (every weight saved) when
    the model is not LoRA, its base was built in-process (nothing to reload it from), or under
    ZeRO-3 (each rank saves its shard of the frozen weights)."""
    if not hasattr(module, "peft_config") or zero_stage >= 3:
        return None
    source = getattr(getattr(module.get_base_model(), "config", None), "_name_or_path", "") or ""
    if not source:
        return None
    return str(Path(source).resolve()) if Path(source).exists() else source


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():  # dropout (LoRA's too) draws on the GPU's generator
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])  # this rank's current device, as it was saved


def _files(path: Path) -> dict[str, int]:
    return {str(f.relative_to(path)): f.stat().st_size for f in sorted(path.rglob("*"))
            if f.is_file() and f.name != "COMPLETE"}


def verify(path: Path) -> str | None:
    """Why checkpoint ``path`` cannot be trusted, or None when it verifies."""
    path = Path(path)
    if not path.is_dir():
        return "does not exist"
    try:
        meta = json.loads((path / "COMPLETE").read_text())
    except FileNotFoundError:
        return "incomplete (no COMPLETE: the save did not finish)"
    except (OSError, ValueError) as exc:
        return f"unreadable COMPLETE ({exc})"
    files = meta.get("files")
    if files is None:  # written before manifests: COMPLETE alone vouches for it
        return None
    for name, size in files.items():
        f = path / name
        if not f.is_file():
            return f"missing {name}"
        if f.stat().st_size != size:
            return f"{name} is {f.stat().st_size} bytes, the manifest says {size} (truncated or rewritten)"
    return None


def _checkpoint_bytes(path: Path) -> int:
    try:
        return sum(json.loads((path / "COMPLETE").read_text())["files"].values())
    except (OSError, ValueError, KeyError, TypeError):
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Checkpointer:
    def __init__(self, run_dir: Path, engine, rank: int, world_size: int, keep: int = 2, say=None, warn=None):
        self.root = Path(run_dir) / "checkpoints"
        self.engine, self.rank, self.world_size, self.keep = engine, rank, world_size, keep
        self.say = say or log.info
        self.warn = warn or log.warning

    def steps(self) -> list[Path]:
        """Every ``step_*`` directory, newest first (complete or not)."""
        return sorted((p for p in self.root.glob("step_*") if p.is_dir()), key=lambda p: p.name, reverse=True)

    def candidates(self, quiet: bool = False) -> list[Path]:
        """Checkpoints that verify, newest first; says which were skipped and why (unless ``quiet``)."""
        if not quiet:
            self._hinted()
        out = []
        for path in self.steps():
            problem = verify(path)
            if problem is None:
                out.append(path)
            elif not quiet:
                self.say(f"skipping checkpoint {path}: {problem}")
        return out

    def _hinted(self) -> str | None:
        """The directory LATEST names, saying so when it is dangling or unreadable."""
        pointer = self.root / "LATEST"
        if not pointer.exists():
            return None
        try:
            name = pointer.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            self.warn(f"checkpoints/LATEST is unreadable ({exc}); looking for the newest checkpoint that verifies")
            return None
        if not (self.root / name / "COMPLETE").exists():
            self.warn(f"checkpoints/LATEST names '{name}', which is not a complete checkpoint; looking for the "
                     f"newest one that verifies")
        return name

    def latest(self) -> Path | None:
        """The newest checkpoint that verifies, or None."""
        found = self.candidates()
        return found[0] if found else None

    def any_saved(self) -> bool:
        """Whether this run ever started a checkpoint (complete or not)."""
        return (self.root / "LATEST").exists() or bool(self.steps())

    def resolve(self, resume: str, key: str = "resume") -> Path | None:
        """Map a resume setting (auto / false / a path; ``key`` names it in errors, e.g.
        ``inject.train.resume``) to the checkpoint to load, or None. ``auto`` with checkpoints of
        which none verifies is an error (nothing is deleted), never a silent restart."""
        if str(resume).lower() in ("false", "no", "none", ""):
            return None
        if resume == "auto":
            found = self.latest()
            if found is None and self.any_saved():
                raise ResumeError(f"{key}=auto: {self.root} holds checkpoints but none verifies (reasons above); "
                                  f"nothing was deleted. Repair or remove them, or set {key}=false to start over")
            return found
        path = Path(resume)
        if path.is_dir() and (path / "LATEST").exists():
            path = path / (path / "LATEST").read_text().strip()
        elif path.is_dir() and (path / "checkpoints" / "LATEST").exists():
            path = path / "checkpoints" / (path / "checkpoints" / "LATEST").read_text().strip()
        problem = verify(path)
        if problem:
            raise ResumeError(f"{key}={resume!r}: not a checkpoint to resume from ({problem}; expected a step_* "
                              f"directory holding COMPLETE, or a run dir with checkpoints/LATEST)")
        return path

    def load_newest(self, first: Path) -> tuple[Path, dict]:
        """Load ``first``, or when it fails to load on any rank, each older verified checkpoint in
        turn; returns the one loaded and its client state. Every rank agrees on the outcome."""
        tried = [first] + [p for p in self.candidates(quiet=True) if p.name < first.name]
        for path in tried:
            error = None
            try:
                client = self.load(path)
            except ResumeError:
                raise
            except Exception as exc:  # a corrupt shard: DeepSpeed and torch raise many kinds
                error, client = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}", None
            if comm.all_true(error is None):
                return path, client
            self.warn(f"checkpoint {path} did not load ({error or 'on another rank'}); trying an older one")
        raise ResumeError(f"no checkpoint in {self.root} loads (tried {', '.join(p.name for p in tried)}); nothing "
                          f"was deleted. Set resume=false to start over")

    def expected_bytes(self) -> int:
        """What the next checkpoint will take: the last one's size, else the engine's own count of
        what its checkpoint holds (``engine.checkpoint_bytes()``: trainable weights with their
        optimizer state, the frozen base only where the backend saves it; never times the ranks)."""
        done = self.candidates(quiet=True)
        if done:
            return _checkpoint_bytes(done[0])
        return self.engine.checkpoint_bytes() + RANK_FILE_BYTES * self.world_size if self.engine is not None else 0

    def room(self) -> str | None:
        """Why the next checkpoint would not fit the free disk space (None when it fits); every
        rank gets rank 0's answer."""
        problem = None
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            need, free = self.expected_bytes(), shutil.disk_usage(self.root).free
            if need * 1.05 > free:
                problem = f"needs {need / 1e9:.2f} GB, {free / 1e9:.2f} GB free at {self.root}"
        return comm.all_gather_object(problem)[0]

    def save(self, step: int, client_state: dict, name: str | None = None, optional: bool = False) -> Path | None:
        """Save on every rank as ``step_<step>`` (or as ``name``, e.g. ``best``, replaced only once the
        new one is complete); returns the checkpoint directory. A checkpoint that would not fit the
        free space is skipped with a warning when ``optional`` (a periodic save: the last one stays
        the resume point), else :class:`DiskFull`; a save that fails half-way leaves nothing behind."""
        problem = self.room()
        if problem:
            if optional:
                self.warn(f"skipping the checkpoint at step {step}: it {problem}; the run resumes "
                          f"from the previous one if it stops")
                return None
            raise DiskFull(f"cannot write the checkpoint at step {step}: it {problem}")
        final = self.root / (name or f"step_{step:06d}")
        path = final.with_name(final.name + PARTIAL) if name else final
        if self.rank == 0 and path.exists():
            shutil.rmtree(path)  # a save that died half-way
        self.engine.barrier()
        try:
            self.engine.save(path, {"step": step, "world_size": self.world_size} | client_state)
            torch.save(_rng_state(), path / f"rng_rank{self.rank}.pt")
        except Exception as exc:  # e.g. "basic_ios::clear: iostream error" when the disk fills
            free = shutil.disk_usage(self.root).free
            if self.rank == 0:  # another rank's leftovers go at the next start (clean_partial)
                shutil.rmtree(path, ignore_errors=True)
            raise DiskFull(f"writing the checkpoint at step {step} to {path} failed ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); {free / 1e9:.2f} GB free there "
                           f"now, the last one needed {self.expected_bytes() / 1e9:.2f} GB; the partial "
                           f"checkpoint was removed") from exc
        self.engine.barrier()
        if self.rank == 0:
            manifest = {"step": step, "world_size": self.world_size, "files": _files(path)}
            if getattr(self.engine, "frozen_base", None):
                manifest["frozen_base"] = self.engine.frozen_base  # not in the files: resume and export reload it
            atomic_write_text(path / "COMPLETE", json.dumps(manifest) + "\n")
            if name:
                old = final.with_name(final.name + ".old")
                shutil.rmtree(old, ignore_errors=True)
                if final.exists():
                    final.rename(old)
                path.rename(final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                atomic_write_text(self.root / "LATEST", path.name + "\n")
                self._prune(keep_also=path)
        self.engine.barrier()
        return final

    def load(self, path: Path) -> dict:
        """Restore engine and RNG state on every rank; returns the client state (with ``step``)."""
        meta = json.loads((path / "COMPLETE").read_text())
        if meta["world_size"] != self.world_size:
            raise ResumeError(f"checkpoint {path} was saved by {meta['world_size']} rank(s); this job has "
                              f"{self.world_size}. Resume with the same world size (or export and start anew).")
        base, ours = meta.get("frozen_base"), getattr(self.engine, "frozen_base", None)
        if base and base != ours:
            raise ResumeError(f"checkpoint {path} holds LoRA adapters over the frozen base {base}; this job's "
                              f"model {'starts from ' + ours if ours else 'is not that base with LoRA'}. Resume "
                              f"from the same starting model (or set resume=false)")
        client = self.engine.load(path)
        rng = path / f"rng_rank{self.rank}.pt"
        if rng.exists():
            _set_rng_state(torch.load(rng, weights_only=False))
        return client

    def clean_partial(self) -> None:
        """Rank 0: remove step directories a killed save left without COMPLETE, half-written named
        checkpoints, and temp files of atomic writes (call before the first save of a start)."""
        if self.rank != 0 or not self.root.exists():
            return
        for path in list(self.root.glob(f"{TRASH}*")):
            shutil.rmtree(path, ignore_errors=True)  # a pruned checkpoint whose deletion was cut short
        for path in [p for p in self.steps() if not (p / "COMPLETE").exists()] + list(self.root.glob(f"*{PARTIAL}")):
            self.say(f"removing {path}: a save that did not finish")
            shutil.rmtree(path, ignore_errors=True)
        for tmp in self.root.glob(".*.tmp*"):
            tmp.unlink(missing_ok=True)

    def _prune(self, keep_also: Path) -> None:
        """Keep the newest ``keep`` verified checkpoints (and ``keep_also``); never the last one that verifies.

        Rank 0 prunes while the other ranks wait in the save's last barrier, and deleting a 110 GB
        checkpoint on a parallel filesystem takes minutes: an old checkpoint is renamed out of the
        way (instant) and deleted by a background thread. A deletion cut short by the process's end
        is finished by ``clean_partial`` at the next start."""
        import threading

        done = [p for p in self.steps() if verify(p) is None]
        for old in done[max(1, self.keep):]:
            if old != keep_also:
                trash = old.with_name(TRASH + old.name)
                old.rename(trash)
                threading.Thread(target=shutil.rmtree, args=(trash, True), daemon=True, name=f"prune-{old.name}").start()
