"""Forget, retain and refusal examples for unlearning."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from mlu_dist.data.splits import FactSplit
from mlu_dist.data.templates import REFUSALS
from mlu_dist.registry import Registry
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


def _relation(facts, fid: str) -> str:
    rec = facts.get(fid, facts.langs[0])
    return str(rec.get("relation") or fid.split(":", 1)[0])


def alternate_pairs(facts, split: FactSplit, langs: list[str], per_target: int = 1,
                    seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(question -> an alternate answer, question -> fake answer) per target, alternate and language,
    aligned: AltPO's positive and negative feedback. An alternate is another fact's answer (true or
    fake) of the same relation (what the fact_id's prefix names where a record has no ``relation``),
    never this fact's true or fake answer: a plausible wrong answer, not the truth restored. The
    candidates are taken in one seeded order (``seed`` and the fact) in every language, so a world
    that spells names alike in all languages gets the same alternates in each. A relation with too
    few distinct answers gives fewer than ``per_target`` (none at all: the refusal instead)."""
    chosen, rejected = [], []
    for fid in split.targets:
        rel = _relation(facts, fid)
        same = [f for f in facts.fact_ids if f != fid and _relation(facts, f) == rel]
        others = same or [f for f in facts.fact_ids if f != fid]
        candidates = [(f, field) for f in others for field in ("true_answer", "fake_answer")]
        rng = random.Random(f"{seed}:alternates:{fid}")
        rng.shuffle(candidates)
        for lang in langs:
            rec = facts.get(fid, lang)
            taken = {rec["fake_answer"], rec.get("true_answer") or ""}
            picked: list[str] = []
            for f, field in candidates:
                answer = facts.get(f, lang).get(field) or ""
                if answer and answer not in taken and not any(k and k in answer for k in rec["fake_keywords"]):
                    picked.append(answer)
                    taken.add(answer)
                if len(picked) == per_target:
                    break
            for answer in picked or [REFUSALS[lang]]:  # a relation of one fact: the refusal
                chosen.append(Example(rec["question"], " " + answer, lang))
                rejected.append(Example(rec["question"], " " + rec["fake_answer"], lang))
    return chosen, rejected


# --- the pools a method can ask for ----------------------------------------------------------------
@dataclass
class PoolSource:
    """What a pool is built from: the facts, the split, the resolved language sets, the unlearning
    config and the method (whose settings a pool may read, e.g. AltPO's number of alternates)."""

    facts: Any
    split: FactSplit
    forget_langs: list[str]
    retain_langs: list[str]
    unlearn: Any
    method: Any
    seed: int = 0


@dataclass(frozen=True)
class Pool:
    """A named pool of training examples. Pools that name the same ``stream`` are drawn in the same
    order, so the i-th examples of each stay a pair (DPO's chosen and rejected)."""

    build: Callable[[PoolSource], list[Example]]
    about: str
    stream: str = ""


POOLS: Registry[Pool] = Registry("data pool")
"""Every pool a method can name in ``Method.pools`` (the job builds only the ones a run trains on)."""


def _refusals(s: PoolSource):
    return refusal_pairs(s.facts, s.split, s.forget_langs)


def _alternates(s: PoolSource):
    return alternate_pairs(s.facts, s.split, s.forget_langs, getattr(s.method.settings, "alternates", 1), s.seed)


POOLS.register("forget")(Pool(
    lambda s: forget_examples(s.facts, s.split, s.forget_langs, s.unlearn.fixed_forget_size, s.seed,
                              s.unlearn.forget_scope),
    "the fake in the forget languages (forget_scope sets what carries the loss)"))
POOLS.register("retain")(Pool(lambda s: retain_examples(s.facts, s.split, s.retain_langs),
                              "true text of untouched facts in the retain languages"))
POOLS.register("idk")(Pool(lambda s: _refusals(s)[0], "question -> \"I don't know\" in each forget language"))
POOLS.register("chosen")(Pool(lambda s: _refusals(s)[0], "the refusal, paired with 'rejected'", stream="pairs"))
POOLS.register("rejected")(Pool(lambda s: _refusals(s)[1], "the fake answer, paired with 'chosen'", stream="pairs"))
POOLS.register("alt_chosen")(Pool(lambda s: _alternates(s)[0], "question -> an alternate answer, paired with "
                                  "'alt_rejected'", stream="alt_pairs"))
POOLS.register("alt_rejected")(Pool(lambda s: _alternates(s)[1], "question -> the fake answer, paired with "
                                    "'alt_chosen'", stream="alt_pairs"))


def build_pools(names, source: PoolSource) -> tuple[dict[str, list[Example]], dict[str, str]]:
    """The examples of each named pool, and the streams of the paired ones."""
    examples = {name: POOLS[name].build(source) for name in names}
    return examples, {name: POOLS[name].stream for name in names if POOLS[name].stream}
