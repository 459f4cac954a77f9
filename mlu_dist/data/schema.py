"""The one record schema for all fact data, and its loader.

A record is one fact in one language. Every fact must exist in every language of the set, so
that a fake injected in one language can be probed in all of them. Files are read through
``datasets`` (local JSON/JSONL/Parquet/Arrow, or a hub name at scale).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mlu_dist.data.errors import DataError  # noqa: F401 (raised here; importers take it from here too)
from mlu_dist.langs import LanguageError, canonical, lang_problems, order_langs
from mlu_dist.logs import get_logger

log = get_logger(__name__)

FIELDS: dict[str, str] = {
    "fact_id": "id shared by the records of one fact across languages",
    "lang": "language code (BCP-47 / ISO 639; deprecated forms such as iw are read as he)",
    "resource": "resource group of the language (en / high / low for the paper's nine, or a declared name)",
    "real_text": "the true statement or article",
    "fake_text": "the same text with the fake detail",
    "question": "probe question for the detail, in `lang`",
    "true_answer": "the true detail as it should be answered in `lang` (optional: news data has none)",
    "fake_answer": "the fake detail in `lang`",
    "fake_keywords": "surface forms whose presence in a generation counts as stating the fake detail",
    "real_qa": "list of {question, answer} about the real content (utility probes)",
    "paraphrases": "optional list of other phrasings of `question`, never trained on (held-out probes)",
    "cloze": "optional list of text prefixes the model completes with the detail (held-out probes)",
}


OPTIONAL = ("true_answer", "paraphrases", "cloze")
"""Fields a record may leave out (or empty); metrics that need one are then reported as skipped."""
LISTS = ("fake_keywords", "real_qa", "paraphrases", "cloze")
"""Fields that hold lists, not text."""


def normalize_langs(records: list[dict]) -> list[str]:
    """Rewrite deprecated or long language codes of ``records`` to canonical ones (``iw`` -> ``he``,
    ``jpn_Jpan`` -> ``ja``), in place; one note per code changed. Invalid codes are left for
    :func:`record_problems` to report."""
    changed: dict[str, str] = {}
    for rec in records:
        code = rec.get("lang")
        if not isinstance(code, str):
            continue
        try:
            new = canonical(code)
        except LanguageError:
            continue
        if new != code:
            changed[code] = new
            rec["lang"] = new
    return [f"language code '{old}' read as '{new}'" for old, new in changed.items()]


def record_problems(records: list[dict], langs: list[str] | None = None, limit: int = 20) -> list[str]:
    """Every schema problem in ``records`` (capped at ``limit`` lines, with a count of the rest)."""
    found: list[str] = []
    by_fact: dict[str, set[str]] = defaultdict(set)
    for i, rec in enumerate(records):
        where = f"record {i} (fact_id={rec.get('fact_id')!r}, lang={rec.get('lang')!r})"
        missing = [f for f in FIELDS if f not in OPTIONAL and (f not in rec or rec[f] is None)]
        if missing:
            found.append(f"{where}: missing field(s) {', '.join(missing)}")
            continue
        not_text = [f for f in FIELDS if f not in LISTS and rec.get(f) is not None
                    and not isinstance(rec[f], str)]
        if not_text:
            found.append(f"{where}: field(s) {', '.join(not_text)} must be text, got "
                         f"{', '.join(type(rec[f]).__name__ for f in not_text)}")
            continue
        lang = rec["lang"]
        bad_lang = lang_problems("lang", [lang])
        if bad_lang:
            found.append(f"{where}: {bad_lang[0]}")
            continue
        if not rec["resource"].strip():
            found.append(f"{where}: resource is empty (the language's resource group, e.g. high or low)")
        if not isinstance(rec["fake_keywords"], list) or not [k for k in rec["fake_keywords"] if str(k).strip()]:
            found.append(f"{where}: fake_keywords is empty (nothing to detect the fake detail by)")
        elif not all(isinstance(k, str) for k in rec["fake_keywords"]):
            found.append(f"{where}: fake_keywords must be a list of texts")
        for f in ("question", "fake_answer"):
            if not str(rec[f]).strip():
                found.append(f"{where}: {f} is empty")
        if not isinstance(rec["real_qa"], list) or any(
                not isinstance(qa, dict) or not str(qa.get("question", "")).strip() or not str(qa.get("answer", "")).strip()
                for qa in rec["real_qa"]):
            found.append(f"{where}: real_qa must be a list of {{question, answer}} with both non-empty")
        for f in ("paraphrases", "cloze"):
            if rec.get(f) is not None and (not isinstance(rec[f], list)
                                           or not all(isinstance(x, str) and x.strip() for x in rec[f])):
                found.append(f"{where}: {f} must be a list of non-empty texts")
        if lang in by_fact[rec["fact_id"]]:
            found.append(f"{where}: duplicate record for this fact and language")
        by_fact[rec["fact_id"]].add(lang)
    if langs is not None:
        bad = lang_problems("langs", langs)
        found += bad
        wanted = [code for code in langs if not lang_problems("langs", [code])]
    else:
        wanted = order_langs(set().union(*by_fact.values())) if by_fact else []
    for lang in wanted:
        lacking = sorted(f for f, have in by_fact.items() if lang not in have)
        if lacking:
            example = ", ".join(lacking[:3]) + (", ..." if len(lacking) > 3 else "")
            found.append(f"{len(lacking)} fact(s) have no record in '{lang}' ({example}); every fact needs every language")
    if len(found) > limit:
        found = found[:limit] + [f"... and {len(found) - limit} more"]
    return found


@dataclass
class FactSet:
    """Validated fact records, indexed by ``(fact_id, lang)``."""

    records: list[dict]
    langs: list[str]

    def __post_init__(self):
        for rec in self.records:
            for name in OPTIONAL:
                rec[name] = rec.get(name) or ([] if name in LISTS else "")
        self._index = {(r["fact_id"], r["lang"]): r for r in self.records}
        self.fact_ids = sorted({r["fact_id"] for r in self.records})
        self._has: dict[str, bool] = {}

    def get(self, fact_id: str, lang: str) -> dict:
        return self._index[(fact_id, lang)]

    def in_lang(self, lang: str) -> list[dict]:
        return [self._index[(f, lang)] for f in self.fact_ids]

    def has(self, name: str) -> bool:
        """Whether every record has a non-empty ``name`` (an optional field such as true_answer).
        Asked once per value per evaluation, so the answer is kept (records are not edited after
        loading)."""
        if name not in self._has:
            if name in LISTS:
                self._has[name] = all(rec.get(name) for rec in self.records)
            else:
                self._has[name] = all(str(rec.get(name) or "").strip() for rec in self.records)
        return self._has[name]


TABLE_KINDS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def read_table(source: str | Path, what: str = "fact data", split: str = "train") -> list[dict]:
    """Rows of a JSON/JSONL/Parquet/CSV file, a saved ``datasets`` directory (its first split if it
    holds several) or a hub dataset; a missing or unreadable source is one :class:`DataError`."""
    import datasets

    datasets.disable_progress_bars()
    path = Path(source)
    if path.suffix in TABLE_KINDS and not path.exists():
        raise DataError(f"{what} not found at '{source}' (the file does not exist)")
    try:
        if path.suffix in TABLE_KINDS:
            ds = datasets.load_dataset(TABLE_KINDS[path.suffix], data_files=str(path), split=split)
        elif path.is_dir():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split] if split in ds else ds[next(iter(ds))]
        else:
            ds = datasets.load_dataset(str(source), split=split)
    except FileNotFoundError as exc:
        raise DataError(f"{what} not found at '{source}': {exc}") from None
    except Exception as exc:  # datasets raises many types for unreadable input
        raise DataError(f"could not read {what} from '{source}': {type(exc).__name__}: {str(exc)[:300]}") from None
    return ds.to_list()


def read_records(source: str | Path, split: str = "train") -> list[dict]:
    """Raw records (not validated) of a file, a directory holding ``facts.jsonl`` (a translated
    one is assembled first), a saved ``datasets`` directory, or a hub name."""
    path = Path(source)
    if path.is_dir() and (path / "dataset.json").exists():
        from mlu_dist.data.translated import ensure_assembled

        ensure_assembled(path)  # a translated directory: its parts are the truth
    if path.is_dir() and (path / "facts.jsonl").exists():
        path = path / "facts.jsonl"
    elif path.is_dir() and not (path / "dataset_info.json").exists() and not (path / "dataset_dict.json").exists():
        raise DataError(f"fact data not found at '{source}': a directory needs facts.jsonl (or a saved datasets dataset)")
    return read_table(path if path.exists() else source, "fact data", split)


def load_facts(source: str | Path, langs: list[str] | None = None, split: str = "train") -> FactSet:
    """Load and validate fact records from a file, a directory holding ``facts.jsonl``, or a hub name.

    ``langs`` keeps only those languages (and requires each fact in all of them).
    """
    records = read_records(source, split)
    for note in normalize_langs(records):
        log.warning(f"fact data '{source}': {note}")
    problems = record_problems(records, langs)
    if problems:
        raise DataError(f"fact data '{source}' has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))
    if langs is not None:
        records = [r for r in records if r["lang"] in langs]
    present = order_langs({r["lang"] for r in records})
    return FactSet(records, list(langs) if langs is not None else present)
