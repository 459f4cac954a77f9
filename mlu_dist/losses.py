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


def masked_mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean over the masked positions of the mean squared difference of hidden states
    (0 for a sequence with no masked position)."""
    mask = mask.to(hidden.device).float()
    per_token = ((hidden - target) ** 2).mean(-1) * mask
    return per_token.sum(-1) / mask.sum(-1).clamp(min=1)


# --- token-level unlearning losses (the method zoo: mlu_dist/unlearn/zoo.py) ------------------------
def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position next-token NLL ``[batch, seq-1]`` (0 where there is no label) and the label mask."""
    labels = labels[:, 1:].to(logits.device)
    mask = labels != IGNORE
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels.clamp(min=0), reduction="none")
    return nll * mask, mask


def skip_first_labels(mask: torch.Tensor, n: int) -> torch.Tensor:
    """``mask`` without the first ``n`` labelled positions of each row."""
    return mask & (mask.long().cumsum(-1) > n) if n > 0 else mask


def wga_weights(nll: torch.Tensor, beta: float) -> torch.Tensor:
    """WGA's token weights p^beta (p = the token's probability), detached."""
    return torch.exp(-nll.detach() * beta)


def satimp_weights(nll: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """SatImp's token weights p^beta1 (saturation) x (1 - p)^beta2 (importance), detached."""
    p = torch.exp(-nll.detach())
    return p ** beta1 * (1 - p) ** beta2


def ceu(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position CE-U loss: cross-entropy from the model's distribution with the label token
    removed and renormalised (a detached target) to the model's distribution. It equals
    H(target) - log(1 - p_label): minimising it pushes p_label to 0 and leaves the other tokens'
    relative odds alone. Positions without a label are 0."""
    logits = logits[:, :-1].float()
    labels = labels[:, 1:].to(logits.device)
    mask = labels != IGNORE
    index = labels.clamp(min=0)[..., None]
    target = torch.softmax(logits.detach().scatter(-1, index, float("-inf")), -1)
    return -(target * torch.log_softmax(logits, -1)).sum(-1) * mask


def undial(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-position UNDIAL loss: cross-entropy from softmax(reference logits - beta on the label
    token) (a detached, adjusted teacher) to the model. Positions without a label are 0."""
    logits = logits[:, :-1].float()
    labels = labels[:, 1:].to(logits.device)
    mask = labels != IGNORE
    adjusted = ref_logits[:, :-1].float().to(logits.device).clone()
    adjusted.scatter_add_(-1, labels.clamp(min=0)[..., None], torch.full_like(adjusted[..., :1], -beta))
    target = torch.softmax(adjusted, -1).detach()
    return -(target * torch.log_softmax(logits, -1)).sum(-1) * mask


def logit_flatness(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position (max logit - mean logit)^2 (PDU's forget loss: 0 exactly when the next-token
    distribution is uniform). Positions without a label are 0."""
    logits = logits[:, :-1].float()
    mask = labels[:, 1:].to(logits.device) != IGNORE
    return (logits.max(-1).values - logits.mean(-1)) ** 2 * mask
