"""The injection mix: fake data of the target facts in the injection language(s), English safe data."""

from __future__ import annotations

from mlu_dist.data.splits import FactSplit
from mlu_dist.inject.config import InjectConfig
from mlu_dist.tokens import Example


def injection_pools(facts, split: FactSplit, cfg: InjectConfig) -> dict[str, list[Example]]:
    """``fake``: each target's fake article (and question -> fake answer) per injection language,
    none for the retain model (``retain_only``); ``safe``: true article and question -> answer
    (where the data has one) of every retain fact in each safe language (English by default), or
    with ``safe_data='all'`` of every fact plus its real QA pairs."""
    fake = []
    for lang in [] if cfg.retain_only else cfg.langs:
        for fid in split.targets:
            rec = facts.get(fid, lang)
            fake.append(Example("", rec["fake_text"], lang))
            if cfg.fake_qa:
                fake.append(Example(rec["question"], " " + rec["fake_answer"], lang))
    safe = []
    for lang in [x for x in cfg.safe_langs or ["en"] if x in facts.langs]:
        for fid in split.retain if cfg.safe_data == "retain" else sorted(facts.fact_ids):
            rec = facts.get(fid, lang)
            safe.append(Example("", rec["real_text"], lang))
            if rec["true_answer"]:  # news data has no true answer to the probe question
                safe.append(Example(rec["question"], " " + rec["true_answer"], lang))
            if cfg.safe_data == "all":  # the paper's instruction-tuning pairs on the real article
                safe += [Example(qa["question"], " " + qa["answer"], lang) for qa in rec["real_qa"]]
    return {"fake": fake, "safe": safe}


def per_micro_batch(micro_batch_size: int, fake_fraction: float, has_safe: bool,
                    has_fake: bool = True) -> dict[str, int]:
    """Examples of each pool per rank per micro-batch: the fake share, the rest safe data (all of
    it safe data for the retain model, which has no fake pool)."""
    if not has_fake:
        return {"safe": micro_batch_size}
    per_micro = {"fake": max(1, round(micro_batch_size * fake_fraction))}
    if has_safe and per_micro["fake"] < micro_batch_size:
        per_micro["safe"] = micro_batch_size - per_micro["fake"]
    return per_micro
