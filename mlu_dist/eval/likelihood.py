"""Batched log-likelihood of completions given prompts (the cheap, smooth view of a fact)."""

from __future__ import annotations

import torch

from mlu_dist.engine.data import Example, collate, encode


@torch.no_grad()
def completion_logprobs(forward, tokenizer, examples: list[Example], max_len: int = 128,
                        batch_size: int = 64) -> list[tuple[float, int]]:
    """``(sum log-prob, n tokens)`` of each example's completion (EOS excluded) given its prompt.

    ``forward(**batch)`` is the model call (an engine's forward under ZeRO-3, so every rank must call
    this with the same examples). Examples are length-bucketed for speed; results keep input order.
    """
    encoded = []
    for ex in examples:
        enc = encode(tokenizer, ex, max_len)
        enc.labels[-1] = -100 if enc.input_ids[-1] == tokenizer.eos_token_id else enc.labels[-1]
        encoded.append(enc)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = collate([encoded[i] for i in idx], tokenizer.pad_token_id)
        logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        labels = batch["labels"][:, 1:]
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        mask = labels != -100
        picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        sums, counts = picked.sum(-1).tolist(), mask.sum(-1).tolist()
        for j, i in enumerate(idx):
            out[i] = (sums[j], int(counts[j]))
    return out
