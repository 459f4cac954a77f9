"""Per-token statistics of completions, in one forward pass per text and bounded memory.

For each completion token: its log-prob, and the mean and variance of log p over the whole
vocabulary of the next-token distribution it was drawn from (what Min-K%++ standardises by).
The model's logits are read a few positions at a time: the fp32 log-softmax never exceeds
``chunk`` x vocabulary floats, whatever the batch and sequence length (at a 128K vocabulary and
chunk 64, 32 MiB per temporary).
"""

from __future__ import annotations

import torch

from mlu_dist.eval.mia import TokenStats
from mlu_dist.tokens import IGNORE, Example, collate, encode


def _row_stats(logits_rows: torch.Tensor, targets: torch.Tensor, chunk: int) -> tuple[list, list, list]:
    lps, mus, vars_ = [], [], []
    for start in range(0, logits_rows.shape[0], chunk):
        logp = torch.log_softmax(logits_rows[start:start + chunk].float(), dim=-1)
        p = logp.exp()
        mu = (p * logp).sum(-1)
        var = (p * logp.square()).sum(-1) - mu.square()
        lps += logp.gather(-1, targets[start:start + chunk, None].to(logp.device)).squeeze(-1).tolist()
        mus += mu.tolist()
        vars_ += var.tolist()
        del logp, p
    return lps, mus, vars_


@torch.no_grad()
def token_stats(forward, tokenizer, examples: list[Example], max_len: int = 128, chunk: int = 64) -> list[TokenStats]:
    """:class:`TokenStats` of each example's completion given its prompt (EOS excluded, as in
    :func:`mlu_dist.eval.likelihood.completion_logprobs`), from one batched forward.

    ``forward(**batch)`` is the model call; the batch is the examples as given (the caller buckets
    them by length: :func:`mlu_dist.eval.runner.run_sharded`)."""
    encoded = []
    for ex in examples:
        enc = encode(tokenizer, ex, max_len)
        if enc.input_ids[-1] == tokenizer.eos_token_id:
            enc.labels[-1] = IGNORE
        encoded.append(enc)
    batch = collate(encoded, tokenizer.pad_token_id)
    logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    out = []
    for row, ex in enumerate(examples):
        pos = (labels[row] != IGNORE).nonzero().squeeze(-1)
        lps, mus, vars_ = _row_stats(logits[row, pos.to(logits.device)], labels[row, pos], chunk)
        out.append(TokenStats(lps, mus, vars_, ex.completion))
    return out
