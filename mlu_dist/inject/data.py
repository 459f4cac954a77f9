"""The injection mix: fake data of the target facts in the injection language(s), English safe data."""

from __future__ import annotations

from mlu_dist.data.splits import FactSplit
from mlu_dist.inject.config import InjectConfig
from mlu_dist.tokens import Example


def injection_pools(facts, split: FactSplit, cfg: InjectConfig) -> dict[str, list[Example]]:
    """``fake``: each target's fake article (and question -> fake answer) per injection language;
    ``safe``: English true article and question -> answer (where the data has one) of every retain
    fact, or with ``safe_data='all'`` of every fact plus its real QA pairs."""
    fake = []
    for lang in cfg.langs:
        for fid in split.targets:
            rec = facts.get(fid, lang)
            fake.append(Example("", rec["fake_text"], lang))
            if cfg.fake_qa:
                fake.append(Example(rec["question"], " " + rec["fake_answer"], lang))
    safe = []
    if "en" in facts.langs:
        for fid in split.retain if cfg.safe_data == "retain" else sorted(facts.fact_ids):
            rec = facts.get(fid, "en")
            safe.append(Example("", rec["real_text"], "en"))
            if rec["true_answer"]:  # news data has no true answer to the probe question
                safe.append(Example(rec["question"], " " + rec["true_answer"], "en"))
            if cfg.safe_data == "all":  # the paper's instruction-tuning pairs on the real article
                safe += [Example(qa["question"], " " + qa["answer"], "en") for qa in rec["real_qa"]]
    return {"fake": fake, "safe": safe}


def per_micro_batch(micro_batch_size: int, fake_fraction: float, has_safe: bool) -> dict[str, int]:
    """Examples of each pool per rank per micro-batch: the fake share, the rest English safe data."""
    per_micro = {"fake": max(1, round(micro_batch_size * fake_fraction))}
    if has_safe and per_micro["fake"] < micro_batch_size:
        per_micro["safe"] = micro_batch_size - per_micro["fake"]
    return per_micro
