"""What the report's sections share: the names of the settings and probe groups, an EVAL.json
value pooled over runs, the injected model's evaluation behind an unlearning run, and tables
whose columns line up in a terminal."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from mlu_dist.results import record_at

SETTINGS = ("en", "orig", "all", "en+orig")
SETTING_NAMES = {"en": "English", "orig": "original", "all": "multilingual", "en+orig": "English+original"}
GROUPS = ("en", "orig", "high", "low")
GROUP_NAMES = {"en": "English", "orig": "original", "high": "high-resource", "low": "low-resource"}


def aligned(table: list[list[str]]) -> list[str]:
    """A pipe table whose columns line up in a terminal (``table[0]`` is the header)."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]

    def line(row):
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |"

    return [line(table[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in table[1:]]


def eval_values(eval_dirs: list[Path], name: str) -> dict[str, dict[str, float]]:
    """``{lang: {fact: value}}`` of one EVAL.json value, several runs (seeds) pooled as more facts."""
    pooled = defaultdict(dict)
    for i, d in enumerate(eval_dirs):
        path = Path(d) / "EVAL.json"
        by_lang = json.loads(path.read_text())["values"].get(name, {}) if path.exists() else {}
        for lang, facts in by_lang.items():
            pooled[lang] |= {f"{i}:{fact}": v for fact, v in facts.items()}
    return dict(pooled)


def before_dir(run: dict) -> Path:
    """The evaluation of the injected model an unlearning run started from."""
    return Path(record_at(run["run"]).get("unlearn.from_run")) / "eval"
