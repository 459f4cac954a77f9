"""`mlu data translate` (and a sweep's translate cells): a fact set into the other languages.

Every rank loads the MT model and translates its share of each language's segments
(data/translate.py); rank 0 writes the language's part (``parts/<lang>/facts.jsonl``,
``coverage.json``, ``DONE.json``). A finished part is reused; an interrupted one resumes from its
segment cache. When every language of the dataset is done, the dataset is assembled:
``facts.jsonl`` (facts whose keyword failed anywhere dropped) and ``coverage.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlu_dist import rundir
from mlu_dist.data.importer import import_table, read_mapping
from mlu_dist.data.schema import load_facts
from mlu_dist.data.translate import (HFTranslator, TranslateConfig, TranslateError, Translator, assemble,
                                     format_coverage, translate_language)
from mlu_dist.engine.dist import DistInfo, setup_env
from mlu_dist.jobs.common import say


def _barrier(dist: DistInfo):
    if dist.world_size == 1:
        return lambda: None
    import torch.distributed as tdist

    if not tdist.is_initialized():  # only barriers travel: gloo works beside any device
        tdist.init_process_group("gloo", rank=dist.rank, world_size=dist.world_size)
    return tdist.barrier


def source_records(cfg: TranslateConfig, dist: DistInfo, barrier) -> list[dict]:
    """The one-language source facts; a raw table is imported into ``<out>/import`` first (once)."""
    out = Path(cfg.out)
    source = cfg.source
    if cfg.mapping or cfg.map:
        spec = read_mapping(cfg.mapping or None, cfg.map)
        if dist.is_main and not (out / "import" / "facts.jsonl").exists():
            import_table(cfg.source, out / "import", spec)
        barrier()
        source = str(out / "import")
    facts = load_facts(source)
    if len(facts.langs) != 1:
        raise TranslateError(f"source: '{source}' holds {', '.join(facts.langs)}; translation starts from one language")
    records = facts.records
    saved = out / "source.jsonl"
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if saved.exists() and saved.read_text(encoding="utf-8") != text:
        raise TranslateError(f"out: {out} holds the translation of other source facts (source.jsonl differs); "
                             f"use a new directory or delete it")
    if dist.is_main and not saved.exists():
        out.mkdir(parents=True, exist_ok=True)
        rundir.atomic_write_text(saved, text)
    return records


def run_translate(cfg: TranslateConfig, translator: Translator | None = None) -> Path:
    """Translate ``cfg.source`` into ``cfg.to``; assemble the dataset when every language is done."""
    from mlu_dist.config import ConfigError

    problems = cfg.problems()
    if problems:
        raise ConfigError("translate config:\n" + "\n".join(f"  - {p}" for p in problems))
    dist = setup_env()
    barrier = _barrier(dist)
    out = Path(cfg.out)
    records = source_records(cfg, dist, barrier)
    src = records[0]["lang"]
    langs = list(cfg.langs or cfg.to)
    todo = [lang for lang in cfg.to if not (out / "parts" / lang / "DONE.json").exists() and lang != src]
    for lang in cfg.to:
        if lang not in todo:
            say(dist, f"translate: {lang} already done ({out / 'parts' / lang}); reused")
    if todo and translator is None:
        device = f"cuda:{dist.local_rank}" if dist.device_type == "cuda" else "cpu"
        translator = HFTranslator(cfg.model, device, cfg.num_beams, cfg.batch_size, cfg.max_tokens, cfg.seed)
        translator.check_langs([src] + todo)
    if dist.is_main:
        rundir.atomic_write_json(out / "dataset.json", {
            "kind": "translated", "source": cfg.source, "model": cfg.model, "num_beams": cfg.num_beams,
            "source_lang": src, "langs": langs, "facts": len(records)})
    for lang in todo:
        say(dist, f"translate: {len(records)} facts {src} -> {lang} on {dist.world_size} rank(s)")
        part = out / "parts" / lang
        got, row = translate_language(records, lang, translator, part, dist.rank, dist.world_size, barrier,
                                      progress=dist.is_main and os.environ.get("MLU_PROGRESS", "1") != "0")
        if dist.is_main:
            rundir.atomic_write_text(part / "facts.jsonl",
                                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in got))
            rundir.atomic_write_json(part / "coverage.json", row)
            rundir.atomic_write_json(part / "DONE.json", {"facts": len(got), "usable": row["usable"]})
            say(dist, f"translate: {lang}: {row['usable']}/{row['facts']} facts usable (keyword: "
                      f"{row['verbatim']} verbatim, {row['translated']} translated, {row['marked']} marked, "
                      f"{row['failed']} failed)")
        barrier()
    if dist.is_main:
        done = assemble(out, [lang for lang in langs if lang != src])
        if done is None:
            say(dist, "translate: other languages of the dataset are not done yet; it is assembled when they are")
        else:
            kept, summary = done
            print(format_coverage(summary["langs"]))
            print(f"dataset: {out}/facts.jsonl ({summary['facts_kept']} facts x {len(langs) + 1} languages; "
                  f"{len(summary['dropped'])} dropped: {', '.join(summary['dropped']) or 'none'}); "
                  f"coverage: {out}/coverage.json")
    barrier()
    return out
