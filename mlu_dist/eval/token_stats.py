"""Per-token statistics of completions, in one forward pass per text and bounded memory.

For each completion token: its log-prob, and the mean and variance of log p over the whole
vocabulary of the next-token distribution it was drawn from (what Min-K%++ standardises by).
Only the scored positions' logits are read, a block at a time: each fp32 temporary (log-softmax,
probabilities) holds at most ``max_floats`` numbers (default 4 Mi = 16 MiB: 32 positions at a
128K vocabulary), whatever the batch and sequence length.
"""

from __future__ import annotations

import torch

from mlu_dist.eval.mia import TokenStats
from mlu_dist.tokens import IGNORE, Example, collate, encode


def _stats(logits_rows: torch.Tensor, targets: torch.Tensor) -> tuple[list, list, list]:
    logp = torch.log_softmax(logits_rows.float(), dim=-1)
    p = logp.exp()
    mu = (p * logp).sum(-1)
    var = (p * logp.square()).sum(-1) - mu.square()
    return logp.gather(-1, targets[:, None].to(logp.device)).squeeze(-1).tolist(), mu.tolist(), var.tolist()


@torch.no_grad()
def token_stats(forward, tokenizer, examples: list[Example], max_len: int = 128,
                max_floats: int = 1 << 22) -> list[TokenStats]:
    """:class:`TokenStats` of each example's completion given its prompt (EOS excluded, as in
    :func:`mlu_dist.eval.likelihood.completion_logprobs`), from one batched forward.

    ``forward(**batch)`` is the model call; the batch is the examples as given (the caller buckets
    them by length: :func:`mlu_dist.eval.runner.run_sharded`). The scored positions of the whole
    batch are read ``max_floats // vocabulary`` at a time (at least one), so each fp32 temporary
    holds at most ``max_floats`` numbers (16 MiB by default) whatever the batch and sequence length."""
    encoded = []
    for ex in examples:
        enc = encode(tokenizer, ex, max_len)
        if enc.input_ids[-1] == tokenizer.eos_token_id:
            enc.labels[-1] = IGNORE
        encoded.append(enc)
    batch = collate(encoded, tokenizer.pad_token_id)
    logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    rows, cols = (labels != IGNORE).nonzero(as_tuple=True)  # row-major: each example's tokens in order
    step = max(1, max_floats // logits.shape[-1])
    lps, mus, vars_ = [], [], []
    for start in range(0, len(rows), step):
        r, c = rows[start:start + step], cols[start:start + step]
        got = _stats(logits[r.to(logits.device), c.to(logits.device)], labels[r, c])
        lps, mus, vars_ = lps + got[0], mus + got[1], vars_ + got[2]
    out, at = [], 0
    for n, ex in zip((labels != IGNORE).sum(-1).tolist(), examples):
        out.append(TokenStats(lps[at:at + n], mus[at:at + n], vars_[at:at + n], ex.completion))
        at += n
    return out
