"""Per-token statistics of completions, in one forward pass per text and bounded memory.

For each completion token: its log-prob, and the mean and variance of log p over the whole
vocabulary of the next-token distribution it was drawn from (what Min-K%++ standardises by).
Rows per forward are capped so that one forward's logits stay within ``LOGITS_BUDGET`` (as
eval/likelihood.py caps them); only the scored positions' logits are then read, a block at a
time: each fp32 temporary (log-softmax, probabilities) holds at most ``max_floats`` numbers
(default 4 Mi = 16 MiB: 32 positions at a 128K vocabulary), whatever the batch and sequence length.
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


LOGITS_BUDGET = 1 << 30
"""Bytes one forward's logits may take, counted at 4 bytes per value: caps the rows per forward."""


def _one_forward(forward, tokenizer, encoded, examples, max_floats: int) -> list[TokenStats]:
    batch = collate(encoded, tokenizer.pad_token_id)
    logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    rows, cols = (labels != IGNORE).nonzero(as_tuple=True)  # row-major: each example's tokens in order
    step = max(1, max_floats // logits.shape[-1])
    lps, mus, vars_ = [], [], []
    for start in range(0, len(rows), step):
        r, c = rows[start:start + step], cols[start:start + step]
        got = _stats(logits[r.to(logits.device), c.to(logits.device)], labels[r, c])
        lps.extend(got[0]), mus.extend(got[1]), vars_.extend(got[2])
    out, at = [], 0
    for n, ex in zip((labels != IGNORE).sum(-1).tolist(), examples):
        out.append(TokenStats(lps[at:at + n], mus[at:at + n], vars_[at:at + n], ex.completion))
        at += n
    return out


@torch.no_grad()
def token_stats(forward, tokenizer, examples: list[Example], max_len: int = 128, max_floats: int = 1 << 22,
                vocab_size: int | None = None, logits_budget: int = LOGITS_BUDGET) -> list[TokenStats]:
    """:class:`TokenStats` of each example's completion given its prompt (EOS excluded, as in
    :func:`mlu_dist.eval.likelihood.completion_logprobs`): one forward per text, batched.

    ``forward(**batch)`` is the model call; the caller buckets examples by length
    (:func:`mlu_dist.eval.runner.run_sharded`). At most ``logits_budget // (max_len x vocab x 4)``
    rows go into one forward (``vocab_size`` defaults to ``len(tokenizer)``; the cut depends only on
    the arguments, never on the texts). The scored positions are then read ``max_floats // vocab``
    at a time, so each fp32 temporary holds at most ``max_floats`` numbers (16 MiB by default)."""
    encoded = []
    for ex in examples:
        enc = encode(tokenizer, ex, max_len)
        if enc.input_ids[-1] == tokenizer.eos_token_id:
            enc.labels[-1] = IGNORE
        encoded.append(enc)
    rows = max(1, logits_budget // (max_len * (vocab_size or len(tokenizer)) * 4))
    out: list[TokenStats] = []
    for start in range(0, len(examples), rows):
        out += _one_forward(forward, tokenizer, encoded[start:start + rows], examples[start:start + rows], max_floats)
    return out
