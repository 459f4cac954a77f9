"""TOFU's QA metrics (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs") as pure
functions of answer log-probabilities: no model, no torch.

An answer's score is ``(sum log-prob, n tokens)`` given its question, as
:func:`mlu_dist.eval.likelihood.completion_logprobs` returns it. Where TOFU's paper and its code
(and open-unlearning's ``src/evals/metrics/``) differ, these follow the code, because the published
numbers come from it; each function says where.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

Score = tuple[float, int]
"""(sum of the answer's token log-probs, number of answer tokens)."""


def avg_nll(score: Score) -> float:
    """Mean negative log-likelihood per answer token."""
    lp, n = score
    if n < 1:
        raise ValueError(f"an answer scored over {n} tokens has no probability (was it cut by max_len?)")
    return -lp / n


def normalised_prob(score: Score) -> float:
    """TOFU's answer probability: P(a|q)^(1/|a|) = exp(-mean token NLL)."""
    return math.exp(-avg_nll(score))


def truth_ratio(paraphrased: Score, perturbed: Sequence[Score], mean: str = "geometric") -> float:
    """Truth ratio R = P(perturbed) / P(paraphrased), probabilities length-normalised.

    ``mean="geometric"`` (default; TOFU's code and open-unlearning): the perturbed answers' mean
    NLL is averaged first, i.e. their normalised probabilities are averaged geometrically.
    ``mean="arithmetic"``: the paper's formula, the arithmetic mean of those probabilities. Below 1
    the model prefers the paraphrased (right) answer; near 1 it cannot tell right from wrong."""
    if not perturbed:
        raise ValueError("truth_ratio needs at least one perturbed answer")
    para = avg_nll(paraphrased)
    if mean == "geometric":
        return math.exp(para - sum(avg_nll(s) for s in perturbed) / len(perturbed))
    if mean == "arithmetic":
        return sum(normalised_prob(s) for s in perturbed) / len(perturbed) / math.exp(-para)
    raise ValueError(f"truth_ratio: mean must be 'geometric' or 'arithmetic', got {mean!r}")


def truth_ratio_score(ratios: Sequence[float], split: str) -> float:
    """TOFU's aggregate of per-question truth ratios, in [0, 1], higher = better:
    ``forget`` split: mean of min(R, 1/R) (best when right and wrong answers are equally likely);
    any other split (retain, real authors, world facts): mean of max(0, 1 - R) (best when the
    right answer is much likelier)."""
    if not ratios:
        raise ValueError("truth_ratio_score needs at least one ratio")
    if split == "forget":
        return sum(min(r, 1 / r) for r in ratios) / len(ratios)
    return sum(max(0.0, 1 - r) for r in ratios) / len(ratios)


def forget_quality(unlearned_ratios: Sequence[float], retain_ratios: Sequence[float]) -> float:
    """TOFU's forget quality: the p-value of the two-sample Kolmogorov-Smirnov test between the
    unlearned and the retain model's truth ratios on the forget split (high = indistinguishable
    from a model that never saw the forget set). KS is invariant to R -> 1/R, so TOFU's code,
    which tests 1/R, gives the same value."""
    if not unlearned_ratios or not retain_ratios:
        raise ValueError("forget_quality needs truth ratios from both the unlearned and the retain model")
    from scipy.stats import ks_2samp

    return float(ks_2samp(list(unlearned_ratios), list(retain_ratios)).pvalue)


def options_probability(right: Score, wrong: Sequence[Score]) -> float:
    """TOFU's probability on the real-authors and world-facts sets: the right answer's normalised
    probability over the sum of it and the wrong options' (multiple choice by likelihood)."""
    p = normalised_prob(right)
    return p / (p + sum(normalised_prob(s) for s in wrong))


def model_utility(values: Mapping[str, float]) -> float:
    """TOFU's model utility: the harmonic mean of its parts (probability, ROUGE-L recall and truth
    ratio score on each utility set: retain, real authors, world facts). A part at 0 makes it 0."""
    if not values:
        raise ValueError("model_utility needs at least one value")
    bad = {k: v for k, v in values.items() if not 0 <= v <= 1 or math.isnan(v)}
    if bad:
        raise ValueError(f"model_utility: every part must be in [0, 1], got {bad}")
    if any(v == 0 for v in values.values()):
        return 0.0
    return len(values) / sum(1 / v for v in values.values())
