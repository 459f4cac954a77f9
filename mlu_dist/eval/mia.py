"""Membership-inference attacks on a language model's token log-probabilities: pure functions.

Every score here is a *membership score*: higher = more likely the text was trained on. (open-
unlearning's attacks return the opposite sign, "higher = non-member", and compute the AUC with the
holdout set as the positive class; the two conventions give the same AUC.)

- ``loss``   minus the mean token NLL (Yeom et al. 2018);
- ``zlib``   minus the mean token NLL over the zlib-compressed length of the text in bytes
             (Carlini et al. 2021; as open-unlearning, loss / len(zlib.compress(utf-8)));
- ``min_k``  the mean of the k % lowest token log-probs (Shi et al. 2024, Min-K% Prob);
- ``min_k_pp`` the same over token log-probs standardised by the next-token distribution's mean and
             standard deviation of log-probs (Zhang et al. 2025, Min-K%++).

The AUC of members vs non-members is the Mann-Whitney U statistic over n1*n2 (ties count 1/2).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Sequence

ATTACKS = ("loss", "zlib", "min_k", "min_k_pp")


@dataclass
class TokenStats:
    """What the attacks need of one text: per scored token its log-prob, and the mean and variance
    of log p over the vocabulary of the distribution it was drawn from (for Min-K%++)."""

    logprobs: list[float]
    mu: list[float]
    var: list[float]
    text: str


def _lowest_k_mean(values: Sequence[float], k: float) -> float:
    if not 0 < k <= 1:
        raise ValueError(f"k is a fraction in (0, 1], got {k}")
    if not values:
        raise ValueError("a text with no scored tokens has no membership score")
    n = max(1, int(len(values) * k))  # open-unlearning's and the papers' rounding (down, at least 1)
    return sum(sorted(values)[:n]) / n


def loss_score(s: TokenStats) -> float:
    if not s.logprobs:
        raise ValueError("a text with no scored tokens has no membership score")
    return sum(s.logprobs) / len(s.logprobs)


def zlib_score(s: TokenStats) -> float:
    return loss_score(s) / len(zlib.compress(s.text.encode("utf-8")))


def min_k_score(s: TokenStats, k: float = 0.4) -> float:
    return _lowest_k_mean(s.logprobs, k)


def min_k_pp_score(s: TokenStats, k: float = 0.4, min_var: float = 1e-6) -> float:
    """Min-K%++: (log p(x_t) - mu_t) / sigma_t per token, mean of the lowest k %. The variance is
    clamped at ``min_var`` (open-unlearning's 1e-6) for a next-token distribution that is one-hot."""
    z = [(lp - m) / math.sqrt(max(v, min_var)) for lp, m, v in zip(s.logprobs, s.mu, s.var)]
    return _lowest_k_mean(z, k)


def attack_score(attack: str, s: TokenStats, k: float = 0.4) -> float:
    """The membership score of ``attack`` (one of :data:`ATTACKS`) for one text."""
    if attack == "loss":
        return loss_score(s)
    if attack == "zlib":
        return zlib_score(s)
    if attack == "min_k":
        return min_k_score(s, k)
    if attack == "min_k_pp":
        return min_k_pp_score(s, k)
    raise KeyError(f"unknown attack '{attack}'; known: {', '.join(ATTACKS)}")


def outranked_share(score: float, others: Sequence[float]) -> float:
    """Share of ``others`` a member's ``score`` beats (ties 1/2): averaged over the members, the AUC."""
    if not others:
        raise ValueError("no non-member scores to compare with")
    return sum(1.0 if score > o else 0.5 if score == o else 0.0 for o in others) / len(others)


def auc(members: Sequence[float], non_members: Sequence[float]) -> float:
    """P(a member scores above a non-member) + 1/2 P(tie): 0.5 = the attack cannot tell them apart,
    1 = it always can (scipy's Mann-Whitney U / n1 n2)."""
    if not members or not non_members:
        raise ValueError("the AUC needs member and non-member scores")
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(list(members), list(non_members)).statistic) / (len(members) * len(non_members))


def privacy_leakage(auc_unlearned: float, auc_retain: float) -> float:
    """MUSE's PrivLeak (Shi et al. 2024), in %: the forget-vs-holdout AUC of the unlearned model
    relative to the retain model's, on MUSE's AUC scale (1 - ours), as open-unlearning computes it:
    ``((1 - auc) - (1 - auc_retain)) / (1 - auc_retain) * 100``. Near 0 = as private as a model that
    never saw the data; strongly negative = under-unlearned (members still stand out); positive =
    over-unlearned (the forget set now looks *less* familiar than unseen text)."""
    if not 0 <= auc_retain < 1:
        raise ValueError(f"privacy_leakage: the retain model's AUC must be in [0, 1), got {auc_retain}")
    return ((1 - auc_unlearned) - (1 - auc_retain)) / (1 - auc_retain) * 100
