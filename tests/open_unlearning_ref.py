"""An independent reference for the QA and MIA metrics: open-unlearning's formulas
(github.com/locuslab/open-unlearning, src/evals/metrics/: memorization.py, privacy.py, utility.py,
utils.py, mia/*.py), followed by hand on plain inputs, in its own conventions (attack scores
"higher = non-member", AUC with the holdout set as the positive class, rouge_score's tokeniser).
Written for these tests from reading that code; nothing here is imported by mlu_dist.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import scipy.stats


def rouge_score_tokens(text: str) -> list[str]:
    """rouge_score's default tokeniser (no stemmer): lower-case, every non [a-z0-9] is a space."""
    return [t for t in re.sub(r"[^a-z0-9]+", " ", text.lower()).split() if re.match(r"^[a-z0-9]+$", t)]


def rouge_l_recall(generated: str, reference: str) -> float:
    """rouge_score's rougeL recall (LCS table over rouge_score tokens; 0 when either side is empty)."""
    ref, gen = rouge_score_tokens(reference), rouge_score_tokens(generated)
    if not ref or not gen:
        return 0.0
    table = np.zeros((len(ref) + 1, len(gen) + 1), dtype=int)
    for i in range(1, len(ref) + 1):
        for j in range(1, len(gen) + 1):
            table[i, j] = table[i - 1, j - 1] + 1 if ref[i - 1] == gen[j - 1] else max(table[i - 1, j], table[i, j - 1])
    return table[-1, -1] / len(ref)


def truth_ratio(correct_avg_loss: float, wrong_avg_losses: list[float]) -> float:
    """memorization.py truth_ratio: wrong (perturbed) over correct (paraphrased), losses averaged first."""
    correct_prob = np.exp(-np.mean(correct_avg_loss))
    wrong_prob = np.exp(-np.mean(wrong_avg_losses))
    return float(wrong_prob / (correct_prob + 1e-10))


def truth_ratio_agg(ratios: list[float], aggregator: str) -> float:
    arr = np.asarray(ratios)
    if aggregator == "closer_to_1_better":
        return float(np.mean(np.minimum(arr, 1 / (arr + 1e-10))))
    return float(np.mean(np.maximum(0, 1 - arr)))


def forget_quality(model_tr: list[float], reference_tr: list[float]) -> float:
    """utils.get_forget_quality: KS test on 1/(tr + 1e-10)."""
    return float(scipy.stats.ks_2samp(1 / (np.asarray(model_tr) + 1e-10), 1 / (np.asarray(reference_tr) + 1e-10)).pvalue)


def probability_w_options(correct_prob: float, wrong_probs: list[float]) -> float:
    return float(correct_prob / (correct_prob + np.sum(wrong_probs) + 1e-10))


def hm_aggregate(values: list[float]) -> float:
    return float(scipy.stats.hmean(values))


def loss_attack(token_logprobs: list[float]) -> float:
    return float(-np.mean(token_logprobs))  # evaluate_probability's avg_loss


def zlib_attack(token_logprobs: list[float], text: str) -> float:
    return loss_attack(token_logprobs) / len(zlib.compress(text.encode("utf-8")))


def min_k_attack(token_logprobs: list[float], k: float) -> float:
    lp = np.asarray(token_logprobs)
    num_k = max(1, int(len(lp) * k))
    return float(-np.mean(np.sort(lp)[:num_k]))


def min_k_pp_attack(vocab_log_probs: np.ndarray, token_logprobs: list[float], k: float) -> float:
    """mia/min_k_plus_plus.py from the full [n tokens, vocab] log-prob matrix."""
    mu = (np.exp(vocab_log_probs) * vocab_log_probs).sum(-1)
    sigma = (np.exp(vocab_log_probs) * np.square(vocab_log_probs)).sum(-1) - np.square(mu)
    sigma = np.clip(sigma, 1e-6, None)
    scores = (np.asarray(token_logprobs) - mu) / np.sqrt(sigma)
    num_k = max(1, int(len(scores) * k))
    return float(-np.mean(sorted(scores)[:num_k]))


def mia_auc(forget_scores: list[float], holdout_scores: list[float]) -> float:
    """mia/utils.mia_auc: roc_auc_score(labels = 0 forget / 1 holdout, scores), computed here as
    the pairwise definition of the ROC AUC (sklearn is not installed)."""
    pos, neg = np.asarray(holdout_scores), np.asarray(forget_scores)
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def privleak(auc: float, ref_auc: float) -> float:
    """privacy.py privleak (current HEAD): on MUSE's 1 - AUC scale."""
    score, ref = 1 - auc, 1 - ref_auc
    return (score - ref) / (ref + 1e-10) * 100
