"""Batched log-likelihood of completions given prompts (the cheap, smooth view of a fact).

Memory bound: a forward's logits are [rows x max_len x V]. At Llama-3's V = 128,256 one 1,024-token
row is 525 MB in fp32, so a 64-row batch with its fp32 copy and a full log-softmax would need ~100 GB.
Here ``rows`` is capped so that one forward's logits stay within ``LOGITS_BUDGET`` (counted at 4 bytes
per value, whatever the dtype), and the log-softmax is taken over ``LOGSOFTMAX_CHUNK``-sized slices of
positions, so the transient peak is  rows x max_len x V x 4  +  2 x LOGSOFTMAX_CHUNK  bytes.
"""

from __future__ import annotations

import torch

from mlu_dist.tokens import Example, collate, encode

LOGITS_BUDGET = 1 << 30
"""Bytes one forward's logits may take (fp32-counted); caps the rows per forward."""
LOGSOFTMAX_CHUNK = 64 << 20
"""Bytes of one fp32 log-softmax slice (the transient copy is made slice by slice)."""


def logit_rows(max_len: int, vocab_size: int, budget: int = LOGITS_BUDGET) -> int:
    """Rows per forward whose fp32 logits [rows x max_len x vocab_size] fit ``budget`` bytes (at least 1).

    Depends only on its arguments, never on the texts, so ranks in ZeRO-3 lockstep cut alike."""
    return max(1, budget // (max_len * vocab_size * 4))


def label_logprobs(logits: torch.Tensor, labels: torch.Tensor, chunk_bytes: int | None = None) -> torch.Tensor:
    """``log_softmax(logits.float())`` at ``labels`` ([rows x positions]; labels < 0 give garbage, mask them).

    Taken over slices of positions so that the fp32 copy and the log-softmax never exist for the whole
    [rows x positions x V] tensor at once; each value is computed exactly as by one full log-softmax."""
    rows, positions, vocab = logits.shape
    width = max(1, (chunk_bytes or LOGSOFTMAX_CHUNK) // (rows * vocab * 4))
    index = labels.clamp(min=0).unsqueeze(-1)
    out = torch.empty(rows, positions, dtype=torch.float32, device=logits.device)
    for s in range(0, positions, width):
        logp = torch.log_softmax(logits[:, s:s + width].float(), dim=-1)
        out[:, s:s + width] = logp.gather(-1, index[:, s:s + width]).squeeze(-1)
        del logp
    return out


@torch.no_grad()
def completion_logprobs(forward, tokenizer, examples: list[Example], max_len: int = 128,
                        batch_size: int = 64, vocab_size: int | None = None,
                        budget: int = LOGITS_BUDGET) -> list[tuple[float, int]]:
    """``(sum log-prob, n tokens)`` of each example's completion (EOS excluded) given its prompt.

    ``forward(**batch)`` is the model call (an engine's forward under ZeRO-3, so every rank must call
    this with the same examples). Examples are length-bucketed for speed; results keep input order.
    At most ``logit_rows(max_len, vocab_size, budget)`` rows go into one forward (``vocab_size``
    defaults to ``len(tokenizer)``); see the module's memory bound.
    """
    batch_size = min(batch_size, logit_rows(max_len, vocab_size or len(tokenizer), budget))
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
        logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:].to(logits.device)
        mask = labels != -100
        picked = label_logprobs(logits[:, :-1], labels) * mask
        del logits
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

