"""Fact data: the schema, the loader and the built-in mini-world."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlu_dist.data.schema import DataError, FactSet, load_facts, record_problems
from mlu_dist.data.world import WorldConfig, build_world, mini_world_problems
from mlu_dist.langs import ALL_LANGS, check_langs, unknown_langs, effective_groups, group_problems

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
    groups: dict[str, list[str]] = field(default_factory=dict)
    """Resource groups by name, e.g. {high: [de, fr], low: [jv, ur]} or by script or family; English is
    always its own group. Empty = the paper's high / low for its nine, 'other' for any other language.
    Forget-language sets may name a group (forget_langs=en+low); reports show one column per group."""
    qa: bool = False
    """``source`` is a TOFU-style QA set (forget / retain / holdout / utility splits per language,
    data/qa_study.py): the injection learns the forget split, unlearning forgets it, holdout questions
    are the never-trained controls, and the utility sets are the base corpus unless ``corpus`` is set."""

    def check(self) -> list[str]:
        out = check_langs("langs", self.langs) + group_problems("groups", self.groups, self.langs)
        if self.source == MINI_WORLD:
            out += mini_world_problems([c for c in self.langs if not unknown_langs([c])])
        return out

    def resource_groups(self) -> dict[str, list[str]]:
        """The groups of ``langs`` this experiment reports (declared, then defaults; English aside)."""
        return effective_groups(self.langs, self.groups)



def load_data(cfg: DataConfig) -> tuple[FactSet, list[dict]]:
    """``(facts, base corpus rows {lang, text, ...})`` for the configured source and languages."""
    if cfg.source == MINI_WORLD:
        records, corpus, _ = build_world(cfg.world, cfg.langs)
        return FactSet(records, list(cfg.langs)), corpus
    corpus: list[dict] = []
    if cfg.qa:
        from mlu_dist.data.qa_study import qa_facts, utility_corpus

        facts = FactSet(qa_facts(cfg.source, list(cfg.langs)), list(cfg.langs))
        corpus = [] if cfg.corpus else utility_corpus(facts.records)
    else:
        facts = load_facts(cfg.source, list(cfg.langs))
    if cfg.corpus:
        from mlu_dist.tracking import read_jsonl

        if not Path(cfg.corpus).exists():
            raise DataError(f"data.corpus: file '{cfg.corpus}' does not exist")
        corpus = [row for row in read_jsonl(Path(cfg.corpus)) if row.get("lang") in cfg.langs]
    elif not cfg.qa:  # without a corpus, the true texts themselves are the base-training text
        corpus = [{"lang": r["lang"], "fact_id": r["fact_id"], "kind": "statement", "text": r["real_text"]}
                  for r in facts.records]
    return facts, corpus


def study_split(cfg, fact_ids: list[str]):
    """The target / control / retain split every job of ``cfg`` (an ExperimentConfig) agrees on: the
    QA set's own forget / holdout / retain splits with ``data.qa``, else the seeded split."""
    from mlu_dist.data.splits import split_facts

    if cfg.data.qa:
        from mlu_dist.data.qa_study import qa_split

        return qa_split(fact_ids)
    return split_facts(fact_ids, cfg.inject.n_targets, cfg.inject.n_controls, cfg.inject.split_seed)


__all__ = ["DataConfig", "DataError", "FactSet", "WorldConfig", "build_world", "load_data", "load_facts",
           "record_problems", "study_split", "MINI_WORLD", "mini_world_problems"]
