"""A TOFU-style QA set (eval/qa.py's records) as the fact set and split the jobs train on.

With ``data.qa: true``, ``data.source`` is a QA set (JSON list or JSON lines, one record per
question, language and split; see :func:`mlu_dist.eval.qa.load_qa`). Every question becomes one
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

UTILITY_ONLY = ("real_authors", "world_facts")


def qa_facts(source: str | Path, langs: list[str]) -> list[dict]:
    """The fact records of a QA set in ``langs`` (module doc); every problem is one DataError."""
    from mlu_dist.eval.qa import load_qa
    from mlu_dist.langs import resource_of

    if not Path(source).is_file():
        raise DataError(f"data.source: '{source}' is not a QA set file (data.qa=true: a JSON list or JSON lines "
                        f"of {{qa_id, lang, split, question, answer, ...}})")
    try:
        qa = load_qa(source)
    except ValueError as exc:
        raise DataError(str(exc)) from None
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
