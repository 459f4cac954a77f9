"""One index of run directories: every reader of results (the report, the relearning tables, the
spread matrix, the dashboard, `mlu sweep status`) finds runs and reads their cell here.

A run directory is one with ``meta.json`` (its ``job``) and ``config.yaml``. Its record says which
cell it is — injection languages, method, forget scope and setting, seed, attack — and loads
``config.yaml``, ``DONE.json``, ``eval/SUMMARY.json`` and ``eval/EVAL.json`` only when asked, once.
A new table or figure is one function over :func:`find_runs`; nothing parses another module's
Markdown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path


def _read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when it is missing or torn (a run killed while writing)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class RunRecord:
    """One run directory and the cell it belongs to."""

    run_dir: Path
    job: str
    """base / inject / unlearn / relearn (meta.json's ``job``)."""
    meta: dict = field(default_factory=dict, repr=False)

    @cached_property
    def config(self):
        """The run's resolved config (an OmegaConf tree; empty when config.yaml is missing)."""
        from omegaconf import OmegaConf

        path = self.run_dir / "config.yaml"
        return OmegaConf.load(path) if path.exists() else OmegaConf.create()

    def get(self, key: str, default=None):
        """A dotted config value (``unlearn.method``), or ``default`` when the config lacks it."""
        from omegaconf import OmegaConf

        value = OmegaConf.select(self.config, key, default=default)
        return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value

    @property
    def done(self) -> dict | None:
        """DONE.json (why the run ended), or None while it has not finished."""
        return _read_json(self.run_dir / "DONE.json")

    @cached_property
    def summary(self) -> dict | None:
        """eval/SUMMARY.json's ``metrics`` (per language and group, with CIs), or None."""
        data = _read_json(self.run_dir / "eval" / "SUMMARY.json")
        return data.get("metrics") if data else None

    @cached_property
    def eval_values(self) -> dict:
        """eval/EVAL.json's ``values``: ``{metric: {lang: {fact id: value}}}`` ({} when not evaluated)."""
        data = _read_json(self.run_dir / "eval" / "EVAL.json")
        return data.get("values", {}) if data else {}

    @property
    def inject(self) -> str:
        """The injection languages joined by '+' ('' for a base run)."""
        return "+".join(self.get("inject.langs", []) or [])

    @property
    def attack_start(self) -> str:
        """For a relearning attack: the model attacked (unlearned / injected / base)."""
        return self.meta.get("start", "")

    @property
    def unlearned(self) -> bool:
        """An unlearning run, or an attack on an unlearned model: method and setting name its cell."""
        return self.job == "unlearn" or (self.job == "relearn" and self.attack_start == "unlearned")

    @property
    def method(self) -> str:
        return str(self.get("unlearn.method", "")) if self.unlearned else ""

    @property
    def scope(self) -> str:
        return str(self.get("unlearn.forget_scope", "all")) if self.unlearned else ""

    @property
    def setting(self) -> str:
        """The forget-language setting (``en``, ``orig``, ``en+orig``, a group ...)."""
        return str(self.get("unlearn.forget_langs", "")) if self.unlearned else ""

    @property
    def method_label(self) -> str:
        """The method as every table and panel names it: ``npo``, or ``npo[answer]`` for another
        forget scope (its own row, never pooled with the default scope as if it were a seed)."""
        return method_label(self.method, self.scope)

    @property
    def seed(self) -> int:
        return int(self.get("inject.split_seed", 0) or 0)

    @property
    def groups(self) -> dict:
        """The resource groups the run's data declared ({} = the defaults)."""
        return self.get("data.groups", None) or {}


def method_label(method: str, scope: str = "all") -> str:
    """``npo`` for the default forget scope, ``npo[answer]`` for another."""
    return method if scope in ("all", "", None) else f"{method}[{scope}]"


def find_runs(root: str | Path, job: str | None = None, finished: bool = False) -> list[RunRecord]:
    """Every run directory under ``root`` (of ``job`` when given; with ``finished``, only those with
    DONE.json), in path order. Unreadable meta.json files are skipped: a run killed while starting."""
    out = []
    for meta_file in sorted(Path(root).rglob("meta.json")):
        meta = _read_json(meta_file)
        if not meta or not meta.get("job") or (job and meta["job"] != job):
            continue
        run = RunRecord(meta_file.parent, meta["job"], meta)
        if not (run.run_dir / "config.yaml").exists() or (finished and run.done is None):
            continue
        out.append(run)
    return out


def declared_groups(runs: list[RunRecord]) -> dict:
    """The resource groups the first run that declares any declared ({} = the defaults)."""
    return next((r.groups for r in runs if r.groups), {})


def record_at(run_dir: str | Path) -> RunRecord:
    """The record of one run directory named by path (its job from meta.json, '' if unreadable)."""
    meta = _read_json(Path(run_dir) / "meta.json") or {}
    return RunRecord(Path(run_dir), meta.get("job", ""), meta)


def pooled_groups(runs: list[RunRecord], inject: list[str], metric: str = "fake_rate") -> dict:
    """Per probe group, ``metric`` pooled over runs (seeds) with a 95 % CI: the bootstrap resamples
    runs, then facts. Runs without the metric are left out. Every pooled table uses this."""
    from collections import defaultdict

    from mlu_dist.eval.stats import bootstrap_ci
    from mlu_dist.eval.summary import group_fact_means, language_groups

    units = defaultdict(list)
    for run in runs:
        by_lang = run.eval_values.get(metric)
        if not by_lang:
            continue
        for group, members in language_groups(list(by_lang), inject, run.groups).items():
            units[group].append(group_fact_means(by_lang, members))
    return {g: bootstrap_ci(u) for g, u in units.items()}
