"""TOFU-style QA fact sets, scored per language: the field's table (ROUGE-L recall, probability,
truth ratio, forget quality, model utility) and membership inference forget vs holdout.

A QA record is one question in one language of one split::

    {"qa_id": "q07", "lang": "ja", "split": "forget", "question": "...", "answer": "...",
     "paraphrased_answer": "...", "perturbed_answer": ["...", ...]}        # the last two optional

Splits: ``forget`` (to unlearn), ``retain`` (trained, kept), ``holdout`` (never trained: the
non-members of membership inference), and the utility sets ``real_authors`` / ``world_facts``.
Every question of a split must exist in every language of the set.

Forward passes per question: one prompt pass shared by greedy decoding (ROUGE) and the scoring of
the paraphrased and perturbed answers from its KV cache (truth ratio), plus one pass over
question + answer that yields the probability and every membership score at once
(eval/token_stats.py). TOFU's own evaluation runs one pass per answer (2 + n perturbed) and
regenerates for ROUGE.
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from pathlib import Path

from mlu_dist.eval import mia, tofu
from mlu_dist.eval.rouge import rouge_l_recall

SPLITS = ("forget", "retain", "holdout", "real_authors", "world_facts")
UTILITY_SPLITS = ("retain", "real_authors", "world_facts")
REQUIRED = ("qa_id", "lang", "split", "question", "answer")


def qa_problems(records: list[dict]) -> list[str]:
    """Every problem of a QA set: missing fields, unknown splits, wrong types, unaligned languages."""
    out, ids = [], defaultdict(set)
    for i, rec in enumerate(records):
        missing = [f for f in REQUIRED if not isinstance(rec.get(f), str) or not rec[f]]
        if missing:
            out.append(f"record {i}: missing or empty field(s) {', '.join(missing)}")
            continue
        if rec["split"] not in SPLITS:
            out.append(f"record {i}: unknown split '{rec['split']}'; valid: {', '.join(SPLITS)}")
        pert = rec.get("perturbed_answer")
        if pert is not None and (not isinstance(pert, list) or not all(isinstance(p, str) for p in pert)):
            out.append(f"record {i}: perturbed_answer must be a list of texts")
        ids[rec["split"], rec["lang"]].add(rec["qa_id"])
    langs = sorted({lang for _, lang in ids})
    for split in sorted({s for s, _ in ids}):
        every = set().union(*(ids.get((split, lang), set()) for lang in langs))
        for lang in langs:
            lacking = sorted(every - ids.get((split, lang), set()))
            if lacking:
                out.append(f"split {split}: language {lang} lacks {len(lacking)} question(s), e.g. {lacking[:3]}")
    return out


def load_qa(path: str | Path) -> dict[tuple[str, str, str], dict]:
    """A QA set from a JSON list or JSON-lines file: ``{(split, lang, qa_id): record}``; every
    problem is reported in one ``ValueError``. (A QA study reads any ``datasets`` source through
    ``mlu_dist.data.qa_study``.)"""
    text = Path(path).read_text(encoding="utf-8")
    records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
    return index_qa(records, str(path))


def index_qa(records: list[dict], source: str) -> dict[tuple[str, str, str], dict]:
    """``{(split, lang, qa_id): record}`` of checked QA records; every problem in one ``ValueError``."""
    problems = qa_problems(records)
    if problems:
        raise ValueError(f"{source}: {len(problems)} problem(s) in the QA set:\n  " + "\n  ".join(problems))
    return {(r["split"], r["lang"], r["qa_id"]): r for r in records}


def question_values(rec: dict, generated: str, answer: mia.TokenStats, candidates: list[tuple[float, int]],
                    k: float = 0.4) -> dict[str, float]:
    """Every per-question value: rouge, prob, truth_ratio and options_prob (when the record has
    paraphrased / perturbed answers) and the membership score of each attack (``mia_<attack>``)."""
    score = (sum(answer.logprobs), len(answer.logprobs))
    out = {"rouge": rouge_l_recall(generated, rec["answer"]), "prob": tofu.normalised_prob(score)}
    perturbed = candidates[1:] if rec.get("paraphrased_answer") else candidates
    if rec.get("perturbed_answer"):
        out["options_prob"] = tofu.options_probability(score, perturbed)
        if rec.get("paraphrased_answer"):
            out["truth_ratio"] = tofu.truth_ratio(candidates[0], perturbed)
    out |= {f"mia_{a}": mia.attack_score(a, answer, k) for a in mia.ATTACKS}
    return out


def _candidates(rec: dict) -> list[str]:
    return [" " + t for t in ([rec["paraphrased_answer"]] if rec.get("paraphrased_answer") else [])
            + list(rec.get("perturbed_answer") or [])]


def score_qa(ev, qa: dict[tuple[str, str, str], dict], splits=SPLITS, k: float = 0.4) -> dict:
    """``{(split, lang, qa_id): values}`` for the questions of ``splits`` in the evaluator's
    languages, with ``ev`` an :class:`mlu_dist.eval.runner.Evaluator` (its model, tokenizer,
    prompt style, decoding settings and ranks). Two batched passes per question (module doc)."""
    from mlu_dist.eval.generate import probe
    from mlu_dist.eval.sharding import run_sharded
    from mlu_dist.eval.token_stats import token_stats
    from mlu_dist.tokens import Example

    if ev.who.lockstep:
        raise ValueError("QA evaluation needs a whole model per rank (eval.model_copy=full), not ZeRO-3 lockstep")
    if ev.cfg.prompt == "chat":  # the answer pass encodes BOS + prompt itself; a chat template carries its own
        raise ValueError("QA evaluation supports eval.prompt=raw or qa, not chat (not implemented yet)")
    keys = sorted(key for key in qa if key[0] in splits and key[1] in ev.langs)
    cfg = ev.cfg

    def batch_fn(batch):
        recs = [qa[key] for key in batch]
        prompts = [ev.prompt(r["question"], r["lang"]) for r in recs]
        cands = [_candidates(r) for r in recs]
        width = max(len(c) for c in cands)
        padded = [c + [" " + r["answer"]] * (width - len(c)) for c, r in zip(cands, recs)] if width else None
        answers, scores = probe(ev.forward, ev.tok, prompts, padded, True, cfg.max_new_tokens, 1, 0.0,
                                cfg.seed + zlib.crc32(prompts[0].encode()), None, ev.cache_kw, ev.stop_ids,
                                add_bos=cfg.prompt != "chat")
        stats = token_stats(ev.forward, ev.tok, [Example(p, " " + r["answer"], r["lang"]) for p, r in zip(prompts, recs)],
                            ev.max_len)
        return [question_values(r, a[0], s, (sc or [])[:len(c)], k)
                for r, a, s, sc, c in zip(recs, answers, stats, scores or [None] * len(recs), cands)]

    values = run_sharded(keys, lambda key: len(qa[key]["question"]), cfg.batch_size, batch_fn, ev.who)
    return dict(zip(keys, values))


def values_from_eval(eval_values: dict) -> dict:
    """``{(split, lang, qa_id): values}`` back from EVAL.json's ``qa_*`` values (the ``qa`` metric's
    ``{qa_<name>: {lang: {"<split>:<qa_id>": value}}}``)."""
    out: dict = defaultdict(dict)
    for key, by_lang in eval_values.items():
        if not key.startswith("qa_"):
            continue
        for lang, by_id in by_lang.items():
            for fid, v in by_id.items():
                split, _, qa_id = fid.partition(":")
                out[split, lang, qa_id][key[3:]] = v
    return dict(out)


def _by_split(values: dict, split: str, lang: str, name: str) -> list[float]:
    return [v[name] for (s, lg, _), v in sorted(values.items()) if s == split and lg == lang and name in v]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _utility_parts(values: dict, lang: str) -> dict[str, float]:
    """TOFU's model-utility parts present in the data: per utility split, probability (options
    probability on real_authors / world_facts), ROUGE-L recall and the truth-ratio score."""
    parts = {}
    for split in UTILITY_SPLITS:
        prob = _by_split(values, split, lang, "prob" if split == "retain" else "options_prob")
        rouge, ratios = _by_split(values, split, lang, "rouge"), _by_split(values, split, lang, "truth_ratio")
        if prob:
            parts[f"{split}_prob"] = _mean(prob)
        if rouge:
            parts[f"{split}_rouge"] = _mean(rouge)
        if ratios:
            parts[f"{split}_truth_ratio"] = tofu.truth_ratio_score(ratios, split)
    return parts


def tofu_table(values: dict, langs: list[str], retain_model: dict | None = None) -> dict[str, dict[str, float]]:
    """Per language, TOFU's row: forget ROUGE / probability / truth-ratio score, model utility (and
    its parts), MIA AUC forget vs holdout per attack; with the retain model's values (the same
    fine-tuning without the forget split) also forget quality and privacy leakage per attack (NaN
    where the retain model's own AUC is 1: MUSE's ratio is undefined there)."""
    table = {}
    for lang in langs:
        row: dict[str, float] = {}
        for name in ("rouge", "prob"):
            if got := _by_split(values, "forget", lang, name):
                row[f"forget_{name}"] = _mean(got)
        ratios = _by_split(values, "forget", lang, "truth_ratio")
        if ratios:
            row["forget_truth_ratio"] = tofu.truth_ratio_score(ratios, "forget")
        parts = _utility_parts(values, lang)
        if parts:
            row["model_utility"] = tofu.model_utility(parts)
            row |= {f"mu/{k}": v for k, v in parts.items()}
        if retain_model is not None and ratios:
            row["forget_quality"] = tofu.forget_quality(ratios, _by_split(retain_model, "forget", lang, "truth_ratio"))
        for attack in mia.ATTACKS:
            name = f"mia_{attack}"
            forget, holdout = _by_split(values, "forget", lang, name), _by_split(values, "holdout", lang, name)
            if forget and holdout:
                row[f"mia_auc_{attack}"] = mia.auc(forget, holdout)
                if retain_model is not None:
                    ref = mia.auc(_by_split(retain_model, "forget", lang, name),
                                  _by_split(retain_model, "holdout", lang, name))
                    # undefined when the retain model already separates them perfectly (MUSE divides by 1 - AUC)
                    row[f"privleak_{attack}"] = mia.privacy_leakage(row[f"mia_auc_{attack}"], ref) if ref < 1 \
                        else float("nan")
        table[lang] = row
    return table


def format_tofu_table(table: dict[str, dict[str, float]], columns: tuple[str, ...] = (
        "forget_rouge", "forget_prob", "forget_truth_ratio", "forget_quality", "model_utility", "mia_auc_min_k",
        "privleak_min_k")) -> str:
    """The per-language table as text (a column absent from every row is left out)."""
    cols = [c for c in columns if any(c in row for row in table.values())]
    lines = [f"{'lang':<6}" + "".join(f"{c:>20}" for c in cols)]
    for lang, row in table.items():
        lines.append(f"{lang:<6}" + "".join(f"{row[c]:>20.4g}" if c in row else f"{'-':>20}" for c in cols))
    return "\n".join(lines)
