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


QA_ROLES = ("forget", "retain", "holdout", "real_authors", "world_facts")


def parse_roles(text: str) -> dict[str, str]:
    """``forget=forget01,retain=retain99,...`` -> ``{role: split folder name}``; unknown roles and a
    missing forget role are one DataError naming the valid ones."""
    roles, problems = {}, []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        role, sep, name = item.partition("=")
        if not sep or not name.strip():
            problems.append(f"'{item}' is not ROLE=SPLIT")
        elif role.strip() not in QA_ROLES:
            problems.append(f"unknown role '{role.strip()}'; valid: {', '.join(QA_ROLES)}")
        else:
            roles[role.strip()] = name.strip()
    if "forget" not in roles and not problems:
        problems.append("a forget role is needed (e.g. forget=forget01)")
    if problems:
        raise DataError("import-splits --qa: " + "; ".join(problems))
    return roles


def _qa_rows(code: str, name: str, role: str, rows: list[dict], perturbed: list[dict] | None) -> list[dict]:
    """One QA record per row of ``<name>_<code>``; paraphrased / perturbed answers from the aligned
    ``<name>_perturbed_<code>`` rows, else from the row itself."""
    out = []
    for i, row in enumerate(rows):
        where = f"{name}_{code} row {i}"
        question, answer = _text(row, "question", where), _text(row, "answer", where)
        extra = row
        if perturbed is not None:
            extra = perturbed[i]
            if _text(extra, "question", f"{name}_{PERTURBED}_{code} row {i}") != question:
                raise DataError(f"{name}_{PERTURBED}_{code} row {i}: its question differs from {where} (the perturbed "
                                f"split must list the same questions in the same order)")
        rec = {"qa_id": f"{name}-{i:04d}", "lang": canonical(code), "split": role, "question": question, "answer": answer}
        if str(extra.get("paraphrased_answer") or "").strip():
            rec["paraphrased_answer"] = str(extra["paraphrased_answer"]).strip()
        wrong = as_list(extra.get("perturbed_answer"), f"{where}: perturbed_answer")
        out.append(rec | ({"perturbed_answer": wrong} if wrong else {}))
    return out


def read_qa_splits(root: str | Path, roles: dict[str, str], langs=None) -> list[dict]:
    """QA set records (eval/qa.py) of every role in ``roles`` (``{forget: "forget01", ...}``) from
    the ``<split>_<lang>/`` folders under ``root``; each split's rows must line up across languages."""
    out = []
    for role, name in roles.items():
        folders = split_folders(root, name)
        try:
            codes = {c: canonical(c) for c in folders}
        except LanguageError as exc:
            raise DataError(f"import-splits: a '{name}_<lang>' folder: {exc}") from None
        codes = {c: lang for c, lang in codes.items() if not langs or lang in langs or c in langs}
        rows = {c: read_table(folders[c][0], f"{name}_{c}") for c in codes}
        pert = {c: read_table(folders[c][1], f"{name}_{PERTURBED}_{c}") if folders[c][1] else None for c in codes}
        counts = {f"{name}_{c}": len(r) for c, r in rows.items()} | \
                 {f"{name}_{PERTURBED}_{c}": len(p) for c, p in pert.items() if p is not None}
        if len(set(counts.values())) > 1:
            raise DataError("import-splits: rows do not line up (row i must be the same question in every folder); "
                            "rows per folder: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
        out += [rec for c in codes for rec in _qa_rows(c, name, role, rows[c], pert[c])]
    return out


def import_qa_splits(root: str | Path, out: str | Path, roles: dict[str, str], langs=None) -> list[dict]:
    """Read the roles' splits, check them as a QA set (every problem at once) and write ``out/qa.jsonl``."""
    from mlu_dist.eval.qa import qa_problems
    from mlu_dist.runs.rundir import atomic_write_text

    records = read_qa_splits(root, roles, langs)
    problems = qa_problems(records)
    if problems:
        raise DataError(f"import-splits --qa: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out) / "qa.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return records
