"""A TOFU-style QA set (eval/qa.py's records) as the fact set and split the jobs train on.

With ``data.qa: true``, ``data.source`` is a QA set: any ``datasets`` source (JSON / JSON lines /
Parquet / CSV with a ``lang`` column, a saved dataset, a hub name), one record per question,
language and split (:func:`read_qa`; the fields are checked by :func:`mlu_dist.eval.qa.qa_problems`). Every question becomes one
fact whose id is ``<split>:<qa_id>`` and whose learned detail is its answer:

    question, true_answer = fake_answer = answer, fake_text = real_text = "<question> <answer>",
    fake_keywords = [answer], qa_split, paraphrased_answer, perturbed_answer (when given)

so the jobs' roles line up with TOFU's splits: the injection learns the *targets* (the forget
split), unlearning forgets them, *controls* are the holdout split (probed, never trained: the
non-members of membership inference) and *retain* is the retain split. The utility sets
(real_authors, world_facts) are in no role: they are the base model's corpus (its general
knowledge) unless ``data.corpus`` names another, and only evaluated.
"""

from __future__ import annotations

from pathlib import Path

from mlu_dist.data.errors import DataError
from mlu_dist.data.splits import FactSplit
from mlu_dist.logs import get_logger

log = get_logger(__name__)

UTILITY_ONLY = ("real_authors", "world_facts")


def read_qa(source: str | Path) -> dict[tuple[str, str, str], dict]:
    """A QA set from any ``datasets`` source with a ``lang`` column (JSON / JSON lines / Parquet /
    CSV, a saved dataset directory, a hub name): deprecated language codes are mapped with a
    warning, list cells saved as text (JSON or a Python repr) are read as lists, and every problem
    is one DataError."""
    from mlu_dist.data.importer import as_list
    from mlu_dist.data.schema import normalize_langs, read_table
    from mlu_dist.eval.qa import index_qa

    path = Path(source)
    if path.is_dir() and not (path / "dataset_info.json").exists() and not (path / "dataset_dict.json").exists():
        raise DataError(f"data.source: '{source}' is a directory but not a saved dataset (data.qa=true: a table of "
                        f"{{qa_id, lang, split, question, answer, ...}}; `mlu data import-splits --qa` converts a "
                        f"benchmark saved as folders per split and language)")
    rows = read_table(source, "QA set")
    for note in normalize_langs(rows):
        log.warning(f"QA set '{source}': {note}")
    for row in rows:
        if isinstance(row.get("perturbed_answer"), str):
            row["perturbed_answer"] = as_list(row["perturbed_answer"])
    try:
        return index_qa(rows, str(source))
    except ValueError as exc:
        raise DataError(str(exc)) from None


def qa_facts(source: str | Path, langs: list[str]) -> list[dict]:
    """The fact records of a QA set in ``langs`` (module doc); every problem is one DataError."""
    from mlu_dist.langs import resource_of

    qa = read_qa(source)
    have = sorted({lang for _, lang, _ in qa})
    lacking = [lang for lang in langs if lang not in have]
    if lacking:
        raise DataError(f"data.langs: {', '.join(lacking)} not in the QA set '{source}' (it has {', '.join(have)})")
    out = []
    for (split, lang, qa_id), rec in sorted(qa.items()):
        if lang not in langs:
            continue
        text = f"{rec['question']} {rec['answer']}"
        out.append({"fact_id": f"{split}:{qa_id}", "lang": lang, "resource": resource_of(lang),
                    "question": rec["question"], "true_answer": rec["answer"], "fake_answer": rec["answer"],
                    "real_text": text, "fake_text": text, "fake_keywords": [rec["answer"]], "real_qa": [],
                    "qa_split": split, "qa_id": qa_id,
                    **{k: rec[k] for k in ("paraphrased_answer", "perturbed_answer") if rec.get(k)}})
    return out


def qa_split(fact_ids: list[str]) -> FactSplit:
    """Targets = the forget split, controls = holdout, retain = retain (fact ids ``<split>:<qa_id>``)."""
    by_split: dict[str, list[str]] = {}
    for fid in sorted(fact_ids):
        by_split.setdefault(fid.split(":", 1)[0], []).append(fid)
    if not by_split.get("forget"):
        raise DataError("data.qa: the QA set has no forget split (the questions to learn and unlearn)")
    return FactSplit(by_split["forget"], by_split.get("holdout", []), by_split.get("retain", []))


def utility_corpus(records: list[dict]) -> list[dict]:
    """Base-training rows of a QA study: the utility sets' questions with their answers (none when
    the set has no utility split: the base job then asks for ``data.corpus``)."""
    return [{"lang": r["lang"], "fact_id": r["fact_id"], "kind": "statement", "text": r["real_text"]}
            for r in records if r["qa_split"] in UTILITY_ONLY]
