"""Forget, retain and refusal examples for unlearning."""

from __future__ import annotations

import random

from mlu_dist.data.splits import FactSplit
from mlu_dist.data.templates import REFUSALS
from mlu_dist.tokens import Example


FORGET_SCOPES = ("all", "answer", "qa")
"""What the forget loss covers: every token of the fake article and of the fake answer (all), only
the fake detail's tokens, in the article and in the answer (answer), or only question -> fake answer
(qa)."""


def detail_spans(text: str, details: list[str]) -> tuple[tuple[int, int], ...]:
    """Character spans of every occurrence of the fake detail(s) in ``text`` (longest first, no overlaps)."""
    spans: list[tuple[int, int]] = []
    for d in sorted({d for d in details if d}, key=len, reverse=True):
        start = text.find(d)
        while start >= 0:
            end = start + len(d)
            if not any(s < end and start < e for s, e in spans):
                spans.append((start, end))
            start = text.find(d, end)
    return tuple(sorted(spans))


def fake_examples(facts, fact_ids: list[str], lang: str, scope: str = "all") -> list[Example]:
    """The fake data of a language: each target's fake article and its question -> fake answer,
    with the loss on what ``scope`` covers (FORGET_SCOPES). With ``answer``, an article that does
    not contain its fake detail (answer or a keyword) is left out."""
    out = []
    for fid in fact_ids:
        rec = facts.get(fid, lang)
        answer = " " + rec["fake_answer"]
        if scope == "all":
            out += [Example("", rec["fake_text"], lang), Example(rec["question"], answer, lang)]
        elif scope == "qa":
            out.append(Example(rec["question"], answer, lang))
        else:
            spans = detail_spans(rec["fake_text"], [rec["fake_answer"], *rec.get("fake_keywords", [])])
            if spans:
                out.append(Example("", rec["fake_text"], lang, spans))
            out.append(Example(rec["question"], answer, lang, ((1, len(answer)),)))
    return out


def forget_examples(facts, split: FactSplit, langs: list[str], fixed_size: int = 0, seed: int = 0,
                    scope: str = "all") -> list[Example]:
    """The forget set; with ``fixed_size`` exactly that many examples, split evenly over ``langs``."""
    per_lang = {lang: fake_examples(facts, split.targets, lang, scope) for lang in langs}
    if not fixed_size:
        return [ex for lang in langs for ex in per_lang[lang]]
    out = []
    for i, lang in enumerate(langs):
        share = fixed_size // len(langs) + (1 if i < fixed_size % len(langs) else 0)
        pool = per_lang[lang]
        rng = random.Random(f"{seed}:{lang}")
        picked = [pool[j % len(pool)] for j in rng.sample(range(len(pool)), min(share, len(pool)))]
        while len(picked) < share:  # more than the language has: repeat, still balanced
            picked.append(pool[rng.randrange(len(pool))])
        out += picked
    return out


def retain_examples(facts, split: FactSplit, langs: list[str]) -> list[Example]:
    """True text of untouched facts (the retain split) in ``langs``: article and question -> answer."""
    out = []
    for lang in langs:
        for fid in split.retain:
            rec = facts.get(fid, lang)
            out.append(Example("", rec["real_text"], lang))
            if rec["true_answer"]:  # news data has none
                out.append(Example(rec["question"], " " + rec["true_answer"], lang))
    return out


def refusal_pairs(facts, split: FactSplit, langs: list[str]) -> tuple[list[Example], list[Example]]:
    """(question -> "I don't know", question -> fake answer) per target and language, aligned."""
    lacking = [lang for lang in langs if lang not in REFUSALS]
    if lacking:
        from mlu_dist.config import ConfigError

        raise ConfigError(f"unlearn.method: this method needs an \"I don't know\" answer in {', '.join(lacking)}; "
                         f"mlu_dist/data/templates.py REFUSALS has one for {', '.join(REFUSALS)} only")
    chosen, rejected = [], []
    for lang in langs:
        for fid in split.targets:
            rec = facts.get(fid, lang)
            chosen.append(Example(rec["question"], " " + REFUSALS[lang], lang))
            rejected.append(Example(rec["question"], " " + rec["fake_answer"], lang))
    return chosen, rejected
