"""Fact data: the schema, the loader and the built-in mini-world."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlu_dist.data.schema import DataError, FactSet, load_facts, record_problems
from mlu_dist.data.world import WorldConfig, build_world
from mlu_dist.langs import ALL_LANGS, check_langs

MINI_WORLD = "mini-world"


@dataclass
class DataConfig:
    """Which facts and texts a job uses."""

    source: str = MINI_WORLD
    """'mini-world' (generated from ``world``), or fact records: a JSONL/JSON/Parquet file, a directory
    holding facts.jsonl, a saved ``datasets`` directory, or a hub dataset name."""
    corpus: str = ""
    """Base-training text for a non-mini-world source: a JSONL file of {lang, text} rows."""
    langs: list[str] = field(default_factory=lambda: list(ALL_LANGS))
    """Languages to use; every fact must exist in all of them."""
    world: WorldConfig = field(default_factory=WorldConfig)
    """Mini-world generator settings (used when source = mini-world)."""

    def check(self) -> list[str]:
        return check_langs("langs", self.langs)


def load_data(cfg: DataConfig) -> tuple[FactSet, list[dict]]:
    """``(facts, base corpus rows {lang, text, ...})`` for the configured source and languages."""
    if cfg.source == MINI_WORLD:
        records, corpus, _ = build_world(cfg.world, cfg.langs)
        return FactSet(records, list(cfg.langs)), corpus
    facts = load_facts(cfg.source, list(cfg.langs))
    corpus: list[dict] = []
    if cfg.corpus:
        from mlu_dist.tracking import read_jsonl

        if not Path(cfg.corpus).exists():
            raise DataError(f"data.corpus: file '{cfg.corpus}' does not exist")
        corpus = [row for row in read_jsonl(Path(cfg.corpus)) if row.get("lang") in cfg.langs]
    else:  # without a corpus, the true texts themselves are the base-training text
        corpus = [{"lang": r["lang"], "fact_id": r["fact_id"], "kind": "statement", "text": r["real_text"]}
                  for r in facts.records]
    return facts, corpus


__all__ = ["DataConfig", "DataError", "FactSet", "WorldConfig", "build_world", "load_data", "load_facts",
           "record_problems", "MINI_WORLD"]
