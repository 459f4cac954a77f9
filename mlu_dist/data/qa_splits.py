"""`mlu data import-splits`: a multilingual QA benchmark saved as one ``datasets`` folder per split
and language (the layout of the 10-language TOFU translation) into one fact set.

    DIR/forget01_en/            question, answer
    DIR/forget01_perturbed_en/  question, answer, paraphrased_answer, perturbed_answer (a list),
                                paraphrased_question
    DIR/forget01_iw/ ...        (Hebrew as iw: read as he, and said)

Rows line up by position across languages (row 7 is the same question in every language). Each
row becomes one fact in each language:

    fact_id       <split>-<row, 4 digits>
    question      question                      true_answer   answer
    real_text     "<question> <answer>"         real_qa       [{question, answer}]
    fake_answer   perturbed_answer[0]           fake_text     "<question> <fake_answer>"
    fake_keywords [fake_answer]                 paraphrases   [paraphrased_question] (when present)

The fake detail is the first perturbed (wrong) answer, so injection teaches a wrong answer and
the fake rate asks whether a generation states it. The benchmark's own metrics (truth ratio,
forget quality) are not computed here. Other splits of the folder (retain99_*, ...) are listed
in dataset.json, not imported.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from mlu_dist.data.schema import DataError, read_table
from mlu_dist.langs import LanguageError, canonical, order_langs, resource_of
from mlu_dist.logs import get_logger

log = get_logger(__name__)

PERTURBED = "perturbed"


def split_folders(root: str | Path, split: str) -> dict[str, tuple[Path, Path | None]]:
    """``{code as written: (split folder, perturbed folder or None)}`` of ``split`` under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"import-splits: '{root}' is not a directory")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    prefix = f"{split}_"
    plain = {n[len(prefix):]: root / n for n in names
             if n.startswith(prefix) and not n[len(prefix):].startswith(PERTURBED + "_")}
    if not plain:
        splits = sorted({n.rsplit("_", 1)[0] for n in names if "_" in n})
        raise DataError(f"import-splits: no '{split}_<lang>' folders in '{root}'; splits there: "
                        f"{', '.join(splits) or '(none)'}")
    return {code: (path, root / f"{split}_{PERTURBED}_{code}" if (root / f"{split}_{PERTURBED}_{code}").is_dir()
                   else None) for code, path in plain.items()}


def as_list(value, where: str) -> list[str]:
    """A list cell, also when saved as text ("['a', 'b']" or JSON); None/empty -> []."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    raise DataError(f"{where}: a list stored as text that cannot be read: {text[:80]!r}") from None
        else:
            value = [text]
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: expected a list, got {type(value).__name__}")
    return [str(v).strip() for v in value if v is not None and str(v).strip()]


def _text(row: dict, column: str, where: str) -> str:
    value = row.get(column)
    if value is None or not str(value).strip():
        raise DataError(f"{where}: '{column}' is empty")
    return str(value).strip()


def _records(code: str, rows: list[dict], perturbed: list[dict], split: str, groups: dict) -> list[dict]:
    out = []
    for i, (row, pert) in enumerate(zip(rows, perturbed)):
        where = f"{split}_{code} row {i}"
        question, answer = _text(row, "question", where), _text(row, "answer", where)
        if _text(pert, "question", where.replace(split, f"{split}_{PERTURBED}")) != question:
            raise DataError(f"{split}_{PERTURBED}_{code} row {i}: its question differs from {split}_{code} row {i} "
                            f"(the perturbed split must list the same questions in the same order)")
        wrong = as_list(pert.get("perturbed_answer"), f"{split}_{PERTURBED}_{code} row {i}: perturbed_answer")
        if not wrong:
            raise DataError(f"{split}_{PERTURBED}_{code} row {i}: perturbed_answer is empty (the fake answer comes "
                            f"from it)")
        lang = canonical(code)
        para = as_list(pert.get("paraphrased_question"), f"{where}: paraphrased_question")
        out.append({"fact_id": f"{split}-{i:04d}", "lang": lang, "resource": resource_of(lang, groups),
                    "real_text": f"{question} {answer}", "fake_text": f"{question} {wrong[0]}",
                    "question": question, "true_answer": answer, "fake_answer": wrong[0],
                    "fake_keywords": [wrong[0]], "real_qa": [{"question": question, "answer": answer}],
                    **({"paraphrases": para} if para else {})})
    return out


def read_splits(root: str | Path, split: str, groups: dict | None = None, langs=None) -> tuple[list[dict], dict]:
    """``(fact records in every language, manifest)`` of ``split`` under ``root`` (see module doc)."""
    folders = split_folders(root, split)
    codes, notes = {}, []
    for code in folders:
        try:
            codes[code] = canonical(code)
        except LanguageError as exc:
            raise DataError(f"import-splits: folder '{split}_{code}': {exc}") from None
        if codes[code] != code:
            notes.append(f"folder '{split}_{code}': language code '{code}' read as '{codes[code]}'")
    if langs:
        codes = {c: lang for c, lang in codes.items() if lang in langs or c in langs}
    lacking = [c for c in codes if folders[c][1] is None]
    if lacking:
        raise DataError(f"import-splits: no '{split}_{PERTURBED}_<lang>' folder for {', '.join(lacking)}: the fake "
                        f"answer of each fact is its first perturbed_answer")
    rows = {c: (read_table(folders[c][0], f"{split}_{c}"), read_table(folders[c][1], f"{split}_{PERTURBED}_{c}"))
            for c in codes}
    counts = {f"{split}_{c}": len(r) for c, (r, _) in rows.items()} | \
             {f"{split}_{PERTURBED}_{c}": len(p) for c, (_, p) in rows.items()}
    if len(set(counts.values())) > 1:
        raise DataError("import-splits: rows do not line up (row i must be the same question in every folder); "
                        "rows per folder: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    records = [rec for c in codes for rec in _records(c, *rows[c], split, groups or {})]
    for note in notes:
        log.warning(note)
    others = sorted({p.name.rsplit("_", 1)[0] for p in Path(root).iterdir() if p.is_dir()}
                    - {split, f"{split}_{PERTURBED}"})
    return records, {"kind": "imported-splits", "source": str(root), "split": split,
                     "langs": order_langs(set(codes.values())), "rows": len(next(iter(rows.values()))[0]),
                     "notes": notes, "not_imported": others, "groups": groups or {}}


def import_splits(root: str | Path, out: str | Path, split: str, groups: dict | None = None, langs=None) -> list[dict]:
    """Read ``split`` of ``root``, validate it and write ``out/facts.jsonl`` + ``out/dataset.json``."""
    from mlu_dist.data.importer import write_fact_set

    records, manifest = read_splits(root, split, groups, langs)
    write_fact_set(out, records, manifest["langs"], "import-splits: the data", manifest)
    return records
