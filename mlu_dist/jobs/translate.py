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

from mlu_dist import comm
from mlu_dist.runs import rundir
from mlu_dist.data.check import unfit_facts
from mlu_dist.data.importer import MAP_KEYS, import_table, read_mapping
from mlu_dist.data.schema import load_facts
from mlu_dist.data.translate import HFTranslator, TranslateConfig, TranslateError, Translator, translate_language
from mlu_dist.data.translated import assemble, format_coverage
from mlu_dist.engine.dist import DistInfo, ensure_process_group, setup_env
from mlu_dist.langs import order_langs
from mlu_dist.jobs.common import say


def source_records(cfg: TranslateConfig, dist: DistInfo, barrier) -> list[dict]:
    """The one-language source facts, minus those whose keyword is unusable already in the source;
    a raw table is imported into ``<out>/import`` first (again when the mapping changed)."""
    out = Path(cfg.out)
    source = cfg.source
    if cfg.mapping or cfg.map:
        spec = read_mapping(cfg.mapping or None, cfg.map)
        manifest = out / "import" / "dataset.json"
        mapping = {k: spec.column(k) for k in MAP_KEYS if spec.column(k)}
        stale = not manifest.exists() or json.loads(manifest.read_text()).get("mapping") != mapping
        if dist.is_main and stale:
            import_table(cfg.source, out / "import", spec)
        barrier()
        source = str(out / "import")
    facts = load_facts(source)
    if len(facts.langs) != 1:
        raise TranslateError(f"source: '{source}' holds {', '.join(facts.langs)}; translation starts from one language")
    unfit = unfit_facts(facts.records)
    for fid, why in unfit.items():
        say(dist, f"translate: source fact {fid} left out: {why}")
    records = [r for r in facts.records if r["fact_id"] not in unfit]
    if not records:
        raise TranslateError(f"source: no fact of '{source}' has a usable fake keyword (`mlu data check {source}`)")
    saved = out / "source.jsonl"
    text = rundir.jsonl_text(records)
    if saved.exists() and saved.read_text(encoding="utf-8") != text:
        raise TranslateError(f"out: {out} holds the translation of other source facts (source.jsonl differs; the "
                             f"source or its mapping changed): use a new --out directory or delete this one")
    if dist.is_main and not saved.exists():
        out.mkdir(parents=True, exist_ok=True)
        rundir.atomic_write_text(saved, text)
    return records


def check_settings(cfg: TranslateConfig, part: Path, record: bool = False) -> None:
    """A language part is only ever continued or reused with the settings that made it
    (``record``: write them for a part that has none yet)."""
    settings = {"model": cfg.model, "num_beams": cfg.num_beams, "max_tokens": cfg.max_tokens}
    path = part / "settings.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != settings:
            raise TranslateError(f"{part} was translated with {saved}, this run asks for {settings}: use a new --out "
                                 f"directory, or delete {part} to redo this language")
    elif record:
        part.mkdir(parents=True, exist_ok=True)
        rundir.atomic_write_json(path, settings)


def run_translate(cfg: TranslateConfig, translator: Translator | None = None) -> Path:
    """Translate ``cfg.source`` into ``cfg.to``; assemble the dataset when every language is done."""
    from mlu_dist.config import ConfigError

    problems = cfg.problems()
    if problems:
        raise ConfigError("translate config:\n" + "\n".join(f"  - {p}" for p in problems))
    dist = setup_env()
    ensure_process_group(dist)  # ranks only meet at barriers
    barrier = comm.barrier
    out = Path(cfg.out)
    records = source_records(cfg, dist, barrier)
    src = records[0]["lang"]
    manifest = out / "dataset.json"
    known = json.loads(manifest.read_text()).get("langs", []) if manifest.exists() else []
    # a run for some languages adds them to the dataset, never drops the others
    langs = [lang for lang in order_langs([*known, *(cfg.langs or cfg.to)]) if lang != src]
    for lang in cfg.to:
        check_settings(cfg, out / "parts" / lang)
    todo = [lang for lang in cfg.to if not (out / "parts" / lang / "DONE.json").exists() and lang != src]
    for lang in cfg.to:
        if lang not in todo:
            say(dist, f"translate: {lang} already done ({out / 'parts' / lang}); reused")
    if todo and translator is None:
        device = f"cuda:{dist.local_rank}" if dist.device_type == "cuda" else "cpu"
        translator = HFTranslator(cfg.model, device, cfg.num_beams, cfg.batch_size, cfg.max_tokens, cfg.seed)
        translator.check_langs([src] + todo)
    for lang in todo:
        check_settings(cfg, out / "parts" / lang, record=dist.is_main)
    if dist.is_main:
        rundir.atomic_write_json(manifest, {
            "kind": "translated", "source": cfg.source, "model": cfg.model, "num_beams": cfg.num_beams,
            "source_lang": src, "langs": langs, "facts": len(records)})
    for lang in todo:
        say(dist, f"translate: {len(records)} facts {src} -> {lang} on {dist.world_size} rank(s)")
        part = out / "parts" / lang
        got, row = translate_language(records, lang, translator, part, dist.rank, dist.world_size, barrier,
                                      progress=dist.is_main and os.environ.get("MLU_PROGRESS", "1") != "0")
        if dist.is_main:
            rundir.atomic_write_jsonl(part / "facts.jsonl", got)
            rundir.atomic_write_json(part / "coverage.json", row)
            rundir.atomic_write_json(part / "DONE.json", {"facts": len(got), "usable": row["usable"]})
            say(dist, f"translate: {lang}: {row['usable']}/{row['facts']} facts usable (keyword: "
                      f"{row['verbatim']} verbatim, {row['translated']} translated, {row['marked']} marked, "
                      f"{row['failed']} failed)")
        barrier()
    if dist.is_main:
        done = assemble(out, langs)
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
