"""The data of a relearning attack."""

from __future__ import annotations

import math
import random

from mlu_dist.data.splits import FactSplit
from mlu_dist.relearn.config import Attack
from mlu_dist.tokens import Example
from mlu_dist.unlearn.data import fake_examples, retain_examples


def qa_share(targets: list[str], fraction: float, seed: int) -> list[str]:
    """The targets a fake_qa attack trains on: ``ceil(fraction * n)`` of them, drawn by ``seed``."""
    k = max(1, math.ceil(fraction * len(targets)))
    return sorted(random.Random(f"relearn-qa:{seed}").sample(sorted(targets), min(k, len(targets))))


def attack_examples(facts, split: FactSplit, attack: Attack, langs: list[str], fraction: float = 0.25,
                    seed: int = 0) -> tuple[list[Example], list[str]]:
    """``(examples, targets shown)``: the attack's training examples in ``langs`` (resolved from the
    attack's language set) and the target facts whose fake detail they contain."""
    if attack.kind == "fake":
        return [ex for lang in langs for ex in fake_examples(facts, split.targets, lang)], list(split.targets)
    if attack.kind == "fake_qa":
        shown = qa_share(split.targets, fraction, seed)
        return [ex for lang in langs for ex in fake_examples(facts, shown, lang, scope="qa")], shown
    if attack.kind == "true_other":
        return retain_examples(facts, split, langs), []
    raise ValueError(f"unknown attack kind {attack.kind!r}")
