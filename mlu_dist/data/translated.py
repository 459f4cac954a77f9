"""A translated dataset directory: one part per target language (``parts/<lang>/``, each finished
by its own task), assembled into ``facts.jsonl`` + ``coverage.json`` when the last one is done or when
the data is next read. Light on purpose: reading a fact set must not import the translation models."""

from __future__ import annotations

import json
from pathlib import Path

from mlu_dist.data.errors import DataError
from mlu_dist.langs import lang_index


def format_coverage(coverage: dict[str, dict]) -> str:
    lines = [f"{'lang':<5} {'facts':>6} {'verbatim':>9} {'translated':>11} {'marked':>7} {'failed':>7} {'usable':>7}"]
    for lang in sorted(coverage, key=lambda code: (not coverage[code].get("source"), lang_index(code), code)):
        r = coverage[lang]
        if r.get("source"):
            lines.append(f"{lang:<5} {r['facts']:>6} {'(source language)':>36} {r['usable']:>7}")
            continue
        lines.append(f"{lang:<5} {r['facts']:>6} {r['verbatim']:>9} {r['translated']:>11} {r['marked']:>7} "
                     f"{r['failed']:>7} {r['usable']:>7}")
    return "\n".join(lines)


def assemble(out_dir: Path, langs: list[str]) -> tuple[list[dict], dict] | None:
    """The dataset of a translated directory: source records + every language's part, minus the
    facts whose keyword failed in any language. None while a language's part is not finished.

    Writes ``facts.jsonl`` and ``coverage.json`` (idempotent: any finishing task may call it)."""
    from mlu_dist.runs import rundir
    from mlu_dist.tracking import read_jsonl

    out_dir = Path(out_dir)
    parts = {}
    for lang in langs:
        part = out_dir / "parts" / lang
        if not (part / "DONE.json").exists():
            return None
        parts[lang] = (list(read_jsonl(part / "facts.jsonl")), json.loads((part / "coverage.json").read_text()))
    source = list(read_jsonl(out_dir / "source.jsonl"))
    dropped = sorted({fid for _, row in parts.values() for fid in row["failed_ids"]})
    keep = [r for r in source if r["fact_id"] not in dropped]
    for lang in langs:
        keep += [r for r in parts[lang][0] if r["fact_id"] not in dropped]
    src = source[0]["lang"]
    coverage = {src: {"source": True, "facts": len(source), "usable": len(source) - len(dropped)}}
    coverage |= {lang: row for lang, (_, row) in parts.items()}
    summary = {"langs": coverage, "dropped": dropped, "facts_kept": len(source) - len(dropped)}
    rundir.atomic_write_jsonl(out_dir / "facts.jsonl", keep)
    rundir.atomic_write_json(out_dir / "coverage.json", summary)
    return keep, summary


def ensure_assembled(out_dir: Path) -> None:
    """Make a translated directory's ``facts.jsonl`` current: assembled when it is missing or older
    than a finished part (a task killed after its part was done, parts added later). A directory
    with unfinished languages is one error naming them."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / "dataset.json").read_text())
    if manifest.get("kind") != "translated":
        return
    langs = manifest["langs"]
    facts = out_dir / "facts.jsonl"
    done = [out_dir / "parts" / lang / "DONE.json" for lang in langs]
    if facts.exists() and all(d.exists() and d.stat().st_mtime <= facts.stat().st_mtime for d in done):
        return
    if assemble(out_dir, langs) is None:
        lacking = [lang for lang, d in zip(langs, done) if not d.exists()]
        raise DataError(f"fact data '{out_dir}': the translation is not finished for {', '.join(lacking)} "
                        f"(run `mlu data translate` again with the same --out to resume)")
