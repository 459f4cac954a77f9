"""Token- and sequence-level losses as pure tensor functions, shared by training and unlearning.

Each takes logits / log-probs and returns a tensor; none knows about engines, ranks or batches
beyond its arguments, so each can be checked against known values (see tests/test_losses.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlu_dist.tokens import IGNORE


def token_nll_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token NLL over label positions (labels == IGNORE do not count)."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


def seq_logprob(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence sum of log-probs of the label tokens, and the number of label tokens."""
    labels = labels[:, 1:].to(logits.device)
    mask = labels != IGNORE
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return (logp * mask).sum(-1), mask.sum(-1)


def npo(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-sequence NPO loss -(2/beta) log sigmoid(-beta (log p - log p_ref)); (2/beta) log 2 at p = p_ref."""
    return -2.0 / beta * F.logsigmoid(-beta * (logp - ref_logp))


def simnpo(logp: torch.Tensor, n_tokens: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """Per-sequence SimNPO loss: NPO on the length-normalised log-prob, no reference, margin gamma."""
    return -2.0 / beta * F.logsigmoid(-beta * logp / n_tokens.clamp(min=1) - gamma)


def dpo(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
        beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair DPO loss -log sigmoid(beta * margin) (log 2 when the model equals the reference) and the margin."""
    margin = (chosen - ref_chosen) - (rejected - ref_rejected)
    return -F.logsigmoid(beta * margin), margin


def token_kl(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-position KL(reference || model) over the vocabulary (0 where the two agree)."""
    ref_logits, logits = ref_logits.float(), logits.float()
    return (torch.softmax(ref_logits, -1) * (torch.log_softmax(ref_logits, -1) - torch.log_softmax(logits, -1))).sum(-1)


def masked_mse(hidden: torch.Tensor, target: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean over real tokens of the mean squared difference of hidden states."""
    mask = attention_mask.to(hidden.device).float()
    per_token = ((hidden - target) ** 2).mean(-1) * mask
    return per_token.sum(-1) / mask.sum(-1).clamp(min=1)
