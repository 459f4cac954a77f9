"""Run directories: one per job, holding its resolved config, metadata, metrics and outputs.

A run directory is never silently overwritten: a finished run is reused (cached jobs) or refused,
and a directory written with a different config is refused unless ``run.overwrite`` is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mlu_dist.config import ConfigError, to_dict, to_yaml


@dataclass
class RunConfig:
    """Where a job writes and how it treats an existing run directory."""

    out_dir: str = "runs"
    """Root folder of all run directories."""
    name: str = ""
    """Run directory name under ``out_dir/<job>/``; empty = derived from the config hash."""
    overwrite: bool = False
    """Delete an existing run directory of the same name first (never done silently)."""

    def check(self) -> list[str]:
        return ["name: must be a plain directory name, not a path"] if "/" in self.name or self.name in (".", "..") else []


class ResumeError(RuntimeError):
    """A checkpoint cannot be resumed from (missing, incomplete, or saved by another geometry)."""


class DiskFull(OSError):
    """A checkpoint does not fit the free space where it goes (the message says how much is needed)."""


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: Path):
    """A temp path beside ``path`` (same suffix, so writers that infer a format from it work) that
    replaces ``path`` when the block succeeds; a failed block leaves ``path`` as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: Path):
    """A temp directory beside ``path`` that takes its place when the block succeeds (an exported
    model is whole or absent, never half-written); a failed block leaves ``path`` as it was."""
    path = Path(path)
    tmp, old = path.with_name(f".{path.name}.tmp{os.getpid()}"), path.with_name(f".{path.name}.old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def jsonl_text(rows) -> str:
    """One JSON object per line (what every facts.jsonl is)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def atomic_write_jsonl(path: Path, rows) -> None:
    atomic_write_text(path, jsonl_text(rows))


def config_hash(obj, keep: tuple[str, ...] = (), drop: tuple[str, ...] = ("run",)) -> str:
    """A stable hash of a config's ``keep`` sections (all if empty), without the ``drop`` fields."""
    data = to_dict(obj)
    if keep:
        data = {k: v for k, v in data.items() if k in keep}
    data = _without(data, drop + tuple(k for k in HASH_IF_SET if not _get(data, k)))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


HASH_IF_SET = ("data.groups", "unlearn.retain_balance", "data.qa", "inject.safe_langs", "inject.retain_only")
"""Fields added after runs were made: hashed only when set, so their empty default (the old
behaviour) keeps every existing run directory's name."""


def _get(data: dict, key: str):
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / "DONE.json").exists()


# fields that may change between a run and its resumption
COMPARE_DROP = ("run", "base.resume", "base.stop_after", "base.log_every", "base.eval_every",
                "inject.train.resume", "inject.train.stop_after", "inject.train.log_every", "inject.train.eval_every",
                "unlearn.train.resume", "unlearn.train.stop_after", "unlearn.train.log_every",
                "relearn.attacks", "relearn.controls", "relearn.train.resume", "relearn.train.stop_after",
                "relearn.train.log_every")


def _without(data: dict, keys: tuple[str, ...]) -> dict:
    for key in keys:
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return data


def check_same_config(run_dir: Path, cfg, sections: tuple[str, ...] = ()) -> None:
    """Refuse a run directory written with a different config (``sections`` only, bar resume settings)."""
    saved = Path(run_dir) / "config.yaml"
    if not saved.exists() or getattr(cfg.run, "overwrite", False):
        return
    if not any((Path(run_dir) / name).exists() for name in ("DONE.json", "checkpoints", "metrics.jsonl")):
        return  # nothing was produced under the old config: nothing to lose
    from omegaconf import OmegaConf

    old = _without(_saved_with_defaults(saved, cfg), COMPARE_DROP)
    new = _without(to_dict(cfg), COMPARE_DROP)
    if sections:
        old, new = ({k: v for k, v in d.items() if k in sections} for d in (old, new))
    if old != new:
        raise ConfigError(f"run directory {run_dir} holds a run with a different config. "
                          f"Choose another run.name, or set run.overwrite=true to replace it.")


def _saved_with_defaults(saved: Path, cfg) -> dict:
    """A saved config.yaml with the fields it predates filled with their defaults (a run written
    before a field existed ran as its default says), as the config loader would read it; as written
    when it no longer loads (e.g. a field was removed since: then it differs anyway)."""
    from omegaconf import OmegaConf

    raw = OmegaConf.load(saved)
    try:
        return OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(type(cfg)), raw), resolve=True)
    except Exception:  # omegaconf raises several kinds for a key or type the class no longer has
        return OmegaConf.to_container(raw)


def prepare(run_dir: Path, cfg, is_main: bool = True, sections: tuple[str, ...] = ()) -> Path:
    """Create ``run_dir`` (or accept it if it holds the same config) and write ``config.yaml``."""
    run_dir = Path(run_dir)
    check_same_config(run_dir, cfg, sections)
    if run_dir.exists() and getattr(cfg.run, "overwrite", False) and is_main:
        shutil.rmtree(run_dir)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))
    return run_dir


def write_meta(run_dir: Path, dist_info: dict, extra: dict) -> None:
    """Record where and how the run ran: ranks, batch geometry, seed, versions, Slurm job."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:  # read from package metadata: nothing is imported
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "dist": dist_info,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "versions": {name: installed(name) for name in ("torch", "transformers", "deepspeed")},
    } | extra
    atomic_write_json(Path(run_dir) / "meta.json", meta)


def mark_done(run_dir: Path, info: dict) -> None:
    atomic_write_json(Path(run_dir) / "DONE.json", {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")} | info)
