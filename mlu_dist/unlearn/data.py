"""Forget, retain and refusal examples for unlearning."""

from __future__ import annotations

import random

from mlu_dist.data.splits import FactSplit
from mlu_dist.data.templates import REFUSALS
from mlu_dist.tokens import Example


def fake_examples(facts, fact_ids: list[str], lang: str) -> list[Example]:
    """The fake data of a language: each target's fake article and its question -> fake answer."""
    out = []
    for fid in fact_ids:
        rec = facts.get(fid, lang)
        out += [Example("", rec["fake_text"], lang), Example(rec["question"], " " + rec["fake_answer"], lang)]
    return out


def forget_examples(facts, split: FactSplit, langs: list[str], fixed_size: int = 0, seed: int = 0) -> list[Example]:
    """The forget set; with ``fixed_size`` exactly that many examples, split evenly over ``langs``."""
    per_lang = {lang: fake_examples(facts, split.targets, lang) for lang in langs}
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
    chosen, rejected = [], []
    for lang in langs:
        for fid in split.targets:
            rec = facts.get(fid, lang)
            chosen.append(Example(rec["question"], " " + REFUSALS[lang], lang))
            rejected.append(Example(rec["question"], " " + rec["fake_answer"], lang))
    return chosen, rejected
