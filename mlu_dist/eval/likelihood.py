"""Batched log-likelihood of completions given prompts (the cheap, smooth view of a fact)."""

from __future__ import annotations

import torch

from mlu_dist.tokens import Example, collate, encode


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
        labels = batch["labels"][:, 1:].to(logits.device)
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        mask = labels != -100
        picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        sums, counts = picked.sum(-1).tolist(), mask.sum(-1).tolist()
        for j, i in enumerate(idx):
            out[i] = (sums[j], int(counts[j]))
    return out


def fake_preference(forward, tokenizer, facts, fact_ids: list[str], langs: list[str], max_len: int = 128,
                    batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Per language: share of ``fact_ids`` whose fake answer is likelier than the true one
    (length-normalised log-probs given the question) and the mean margin log P(fake) - log P(true)."""
    examples, keys = [], []
    for lang in langs:
        for fid in fact_ids:
            rec = facts.get(fid, lang)
            examples += [Example(rec["question"], " " + rec["fake_answer"], lang),
                         Example(rec["question"], " " + rec["true_answer"], lang)]
            keys.append(lang)
    scores = completion_logprobs(forward, tokenizer, examples, max_len, batch_size)
    out: dict[str, dict[str, float]] = {lang: {"pref": 0.0, "margin": 0.0, "n": 0} for lang in langs}
    for i, lang in enumerate(keys):
        (fake_lp, fake_n), (true_lp, true_n) = scores[2 * i], scores[2 * i + 1]
        margin = fake_lp / max(fake_n, 1) - true_lp / max(true_n, 1)
        row = out[lang]
        row["pref"] += margin > 0
        row["margin"] += margin
        row["n"] += 1
    for row in out.values():
        n = max(row["n"], 1)
        row["pref"] /= n
        row["margin"] /= n
    return out

