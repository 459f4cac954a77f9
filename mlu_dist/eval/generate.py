"""Batched generation with a KV cache: left-padded prompts, one prefill, then token by token.

For ``n`` samples per prompt the prompt is encoded once and its cache repeated, instead of
re-encoding it ``n`` times. ``forward`` is the model call (an engine's forward under ZeRO-3);
``all_done(flag) -> bool`` lets ranks that must step together agree on stopping.
"""

from __future__ import annotations

import inspect

import torch


def cache_kwarg(module) -> str:
    """The KV-cache argument of this model's forward: ``cache`` (transformers 5) or ``past_key_values``."""
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@torch.no_grad()
def generate(forward, tokenizer, prompts: list[str], max_new_tokens: int = 12, n: int = 1,
             temperature: float = 0.0, seed: int = 0, all_done=None, cache_kw: str = "cache") -> list[list[str]]:
    """``n`` completions for each prompt (greedy when ``temperature == 0``), EOS stripped."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = [bos + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = forward(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
    past, logits = _cache_of(out), out.logits[:, -1].float()
    next_pos = positions[:, -1:] + 1
    if n > 1:
        past.batch_repeat_interleave(n)
        mask, logits, next_pos = (t.repeat_interleave(n, dim=0) for t in (mask, logits, next_pos))
    rows = logits.shape[0]
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.zeros((rows, 0), dtype=torch.long)
    done = torch.zeros(rows, dtype=torch.bool)
    eos = tokenizer.eos_token_id
    for _ in range(max_new_tokens):
        if temperature > 0:
            probs = torch.softmax(logits.cpu() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        else:
            nxt = logits.argmax(-1).cpu()
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eos
        finished = bool(done.all())
        if all_done is not None:
            finished = all_done(finished)
        if finished:
            break
        mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype)], dim=1)
        out = forward(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos, use_cache=True,
                      **{cache_kw: past})
        past, logits = _cache_of(out), out.logits[:, -1].float()
        next_pos = next_pos + 1
    texts = []
    for row in tokens.tolist():
        if eos in row:
            row = row[:row.index(eos)]
        texts.append(tokenizer.decode([t for t in row if t != pad], skip_special_tokens=True))
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]
