"""`mlu data import`: a tabular dataset (one row per fact, one language) into the fact schema.

A *column mapping* says which column holds which schema field. It comes from a small YAML file
(``configs/mappings/news-truthful.yaml``) and/or ``--map key=column`` pairs; the keys are:

    fact_id        id column (empty: the row number, as <id_prefix>-000)
    real_text      the true article
    fake_text      the same article with the fake detail
    fake_keywords  the fake detail's keyword(s): a string, a list, or a JSON list in a string
    question       the question probing the fake detail
    fake_answer    the fake answer to it (empty: the first fake keyword)
    true_answer    the true answer to it (empty: none; news data has none)
    real_qa        a column of question/answer pairs about the real article: a list of objects,
                   of [question, answer] pairs, or either as a JSON string
    real_qa.question / real_qa.answer   the keys of one pair's object (default question / answer)
    real_question / real_answer          one more real-information probe, added to real_qa
    paraphrases    other phrasings of the question (held-out probes, never trained on): a string,
                   a list, or a JSON list in a string
    cloze          text prefixes the model completes with the fake detail (held-out probes), likewise

Rows become records of ``lang`` (default en) with the resource group filled in; the output
directory gets ``facts.jsonl`` and ``dataset.json`` (where it came from and how it was mapped).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

from mlu_dist.data.schema import DataError, read_table, record_problems
from mlu_dist.langs import LanguageError, alias_note, canonical, group_problems, resource_of
from mlu_dist.logs import get_logger

log = get_logger(__name__)

MAP_KEYS: dict[str, str] = {
    "fact_id": "", "real_text": "", "fake_text": "", "fake_keywords": "", "question": "",
    "fake_answer": "", "true_answer": "", "real_qa": "", "real_qa.question": "question",
    "real_qa.answer": "answer", "real_question": "", "real_answer": "", "paraphrases": "", "cloze": "",
}
"""Mapping keys and their defaults (empty = no column)."""
REQUIRED_KEYS = ("real_text", "fake_text", "fake_keywords", "question")


@dataclass
class ImportSpec:
    """How rows of a table become fact records."""

    columns: dict[str, str] = field(default_factory=dict)
    """Mapping key -> column name (keys: see the module doc)."""
    lang: str = "en"
    """Language of the rows."""
    id_prefix: str = "fact"
    """Prefix of generated fact ids when no fact_id column is mapped."""
    note: str = ""
    """Free text kept in dataset.json (e.g. 'column names not confirmed')."""
    groups: dict[str, list[str]] = field(default_factory=dict)
    """Declared resource groups ({name: [codes]}); each record's ``resource`` is its language's group
    (default: the paper's high / low, 'other' for languages outside its nine)."""

    def column(self, key: str) -> str:
        return self.columns.get(key, "") or MAP_KEYS[key]


def read_mapping(path: str | Path | None, pairs: list[str] | None = None) -> ImportSpec:
    """The mapping of a YAML file (``map:``, ``lang:``, ``id_prefix:``, ``note:``) with ``key=column``
    pairs on top; unknown keys are an error that lists the valid ones."""
    spec = ImportSpec()
    if path:
        import yaml

        from mlu_dist.config import ConfigError, resolve_config_path

        try:  # a path, or a name under configs/ (mappings/news-truthful)
            path = resolve_config_path(path)
        except (ConfigError, FileNotFoundError):
            raise DataError(f"--mapping: file '{path}' does not exist") from None
        raw = yaml.safe_load(Path(path).read_text()) or {}
        unknown = sorted(set(raw) - {"map", "lang", "id_prefix", "note", "groups"})
        if unknown:
            raise DataError(f"mapping file '{path}': unknown key(s) {', '.join(unknown)}; valid: map, lang, "
                            f"id_prefix, note, groups")
        spec = ImportSpec(dict(raw.get("map") or {}), str(raw.get("lang", "en")), raw.get("id_prefix", "fact"),
                          raw.get("note", ""), dict(raw.get("groups") or {}))
    for pair in pairs or []:
        for item in [p for p in pair.split(",") if p.strip()]:
            key, sep, column = item.partition("=")
            if not sep:
                raise DataError(f"--map: '{item}' is not key=column")
            spec.columns[key.strip()] = column.strip()
    unknown = sorted(k for k in spec.columns if k not in MAP_KEYS)
    if unknown:
        raise DataError(f"mapping: unknown key(s) {', '.join(unknown)}; valid: {', '.join(MAP_KEYS)}")
    lacking = [k for k in REQUIRED_KEYS if not spec.column(k)]
    if lacking:
        raise DataError(f"mapping: no column given for {', '.join(lacking)} (e.g. --map {lacking[0]}=<column>)")
    spec.lang = mapping_lang(spec.lang)
    bad = group_problems("mapping groups", spec.groups)
    if bad:
        raise DataError("; ".join(bad))
    return spec


def mapping_lang(code: str) -> str:
    """The canonical form of a mapping's language (a deprecated code is said on stderr and mapped)."""
    try:
        note = alias_note(code)
    except LanguageError as exc:
        raise DataError(f"mapping: {exc}") from None
    if note:
        log.warning(f"mapping: {note}")
    return canonical(code)


def as_list(value):
    """A list cell as a list, also when saved as JSON or as a Python repr ("['a', 'b']")."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            pass
        try:
            parsed = ast.literal_eval(value.strip())
            return parsed if isinstance(parsed, list) else value
        except (ValueError, SyntaxError):
            pass
    return value


def _keywords(value) -> list[str]:
    value = as_list(value)
    items = value if isinstance(value, list) else [value]
    return [str(k).strip() for k in items if k is not None and str(k).strip()]


def _qa_pairs(value, q_key: str, a_key: str, where: str) -> list[dict]:
    value = as_list(value)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError(f"{where}: real_qa must be a list of question/answer pairs, got {type(value).__name__}")
    out = []
    for item in value:
        if isinstance(item, dict):
            if q_key not in item or a_key not in item:
                raise DataError(f"{where}: a real_qa pair has keys {sorted(item)}; the mapping expects "
                                f"real_qa.question={q_key!r} and real_qa.answer={a_key!r}")
            q, a = item[q_key], item[a_key]
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            q, a = item
        else:
            raise DataError(f"{where}: a real_qa item is neither an object nor a [question, answer] pair: {item!r:.80}")
        if str(q).strip() and str(a).strip():
            out.append({"question": str(q).strip(), "answer": str(a).strip()})
    return out


def to_records(rows: list[dict], spec: ImportSpec) -> list[dict]:
    """Fact records of ``rows``; a mapped column the table lacks is one error naming the columns it has."""
    have = list(rows[0]) if rows else []
    mapped = {k: spec.column(k) for k in MAP_KEYS if spec.column(k) and "." not in k}
    missing = {k: c for k, c in mapped.items() if c not in have}
    if missing:
        wanted = ", ".join(f"{k}={c!r}" for k, c in missing.items())
        raise DataError(f"import: mapped column(s) not in the data: {wanted}; the data has the columns: "
                        f"{', '.join(have) or '(none: empty table)'}")
    records = []
    for i, row in enumerate(rows):
        where = f"row {i}"
        keywords = _keywords(row[mapped["fake_keywords"]])
        qa = _qa_pairs(row[mapped["real_qa"]], spec.column("real_qa.question"), spec.column("real_qa.answer"),
                       where) if "real_qa" in mapped else []

        def text(key):  # a value of 0 is a value (an id, a number answer), None is none
            value = row[mapped[key]] if key in mapped else None
            return "" if value is None else str(value).strip()

        if text("real_question") and text("real_answer"):
            qa.append({"question": text("real_question"), "answer": text("real_answer")})
        records.append({
            "fact_id": text("fact_id") or f"{spec.id_prefix}-{i:03d}", "lang": spec.lang,
            "resource": resource_of(spec.lang, spec.groups), "real_text": text("real_text"),
            "fake_text": text("fake_text"), "question": text("question"), "true_answer": text("true_answer"),
            "fake_answer": text("fake_answer") or (keywords[0] if keywords else ""),
            "fake_keywords": keywords, "real_qa": qa,
            **{name: _keywords(row[mapped[name]]) for name in ("paraphrases", "cloze") if name in mapped},
        })
    return records


def import_table(source: str | Path, out: str | Path, spec: ImportSpec, limit: int = 0) -> list[dict]:
    """Read ``source``, map it, validate it and write ``out/facts.jsonl`` + ``out/dataset.json``."""
    rows = read_table(source, "the table to import")
    if limit:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"import: '{source}' has no rows")
    records = to_records(rows, spec)
    write_fact_set(out, records, [spec.lang], "import: the mapped data", {
        "kind": "imported", "source": str(source), "rows": len(rows), "langs": [spec.lang],
        "mapping": {k: spec.column(k) for k in MAP_KEYS if spec.column(k)}, "note": spec.note})
    return records


def write_fact_set(out: str | Path, records: list[dict], langs: list[str], what: str, manifest: dict) -> None:
    """Validate ``records`` (every problem in one DataError naming ``what``), then write
    ``out/facts.jsonl`` and ``out/dataset.json`` (atomically)."""
    from mlu_dist.runs import rundir

    problems = record_problems(records, langs)
    if problems:
        raise DataError(f"{what} has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_jsonl(out / "facts.jsonl", records)
    rundir.atomic_write_json(out / "dataset.json", manifest)
