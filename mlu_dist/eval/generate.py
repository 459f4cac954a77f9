"""Probing a batch of questions: one prompt pass (left-padded, KV cache), then
- decoding answers token by token (greedy, or ``n`` samples that share the prompt's cache), and/or
- scoring candidate answers (fake and true) from the same cache, so fake_pref costs one short pass.

``forward`` is the model call (an engine's forward under ZeRO-3); ``all_done(flag) -> bool`` lets
ranks that must step together agree on when decoding stops.
"""

from __future__ import annotations

import copy
import inspect

import torch

from mlu_dist.eval.likelihood import label_logprobs


def cache_kwarg(module) -> str:
    """The KV-cache argument of this model's forward: ``cache`` (transformers 5) or ``past_key_values``."""
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _prefill(forward, tokenizer, prompts, add_bos=True):
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and add_bos else []
    ids = [bos + x for x in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = forward(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    return _cache_of(out), out.logits[:, -1].float(), mask, positions[:, -1:] + 1


def _score(forward, tokenizer, cache, logits, mask, next_pos, candidates, cache_kw, lockstep):
    k = len(candidates[0])
    if any(len(c) != k for c in candidates):
        raise ValueError("every prompt needs the same number of candidates")
    pad = tokenizer.pad_token_id
    first = torch.log_softmax(logits, dim=-1).repeat_interleave(k, dim=0)
    cache.batch_repeat_interleave(k)
    cand = tokenizer([c for row in candidates for c in row], add_special_tokens=False)["input_ids"]
    length = max(len(c) for c in cand)
    cand_ids = torch.tensor([c + [pad] * (length - len(c)) for c in cand])
    cand_mask = torch.tensor([[1] * len(c) + [0] * (length - len(c)) for c in cand])
    total = first.gather(-1, cand_ids[:, :1].to(first.device)).squeeze(-1).cpu()
    # One-token candidates are scored by the prompt pass alone; ranks in ZeRO-3 lockstep still run
    # the forward so that every rank makes the same collective calls.
    if length > 1 or lockstep:
        full_mask = torch.cat([mask.repeat_interleave(k, dim=0), cand_mask], dim=1)
        pos = next_pos.repeat_interleave(k, dim=0) + torch.arange(length)
        out = forward(input_ids=cand_ids, attention_mask=full_mask, position_ids=pos, use_cache=True,
                      **{cache_kw: cache})
    if length > 1:
        # sliced log-softmax: the same values without a full fp32 [rows x length x V] copy
        logits = out.logits
        rest = label_logprobs(logits[:, :-1], cand_ids[:, 1:].to(logits.device)).cpu() * cand_mask[:, 1:]
        total = total + rest.sum(-1)
    flat = list(zip(total.tolist(), cand_mask.sum(-1).tolist()))
    return [flat[i * k:(i + 1) * k] for i in range(len(candidates))]


def _decode(forward, tokenizer, cache, logits, mask, next_pos, n, max_new_tokens, temperature, seed, all_done,
            cache_kw, stop_ids):
    pad = tokenizer.pad_token_id
    stop = torch.tensor(stop_ids)
    prompts = logits.shape[0]
    if n > 1:
        cache.batch_repeat_interleave(n)
        mask, logits, next_pos = (t.repeat_interleave(n, dim=0) for t in (mask, logits, next_pos))
    rows = logits.shape[0]
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.full((rows, max_new_tokens), pad, dtype=torch.long)
    alive = torch.arange(rows)  # rows still generating; finished ones leave the batch (and the cache)
    for step in range(max_new_tokens):
        if temperature > 0:
            nxt = torch.multinomial(torch.softmax(logits.cpu() / temperature, dim=-1), 1, generator=gen).squeeze(-1)
        else:
            nxt = logits.argmax(-1).cpu()
        tokens[alive, step] = nxt
        keep = ~torch.isin(nxt, stop)
        finished = not bool(keep.any()) or step == max_new_tokens - 1
        if all_done is not None:
            finished = all_done(finished)
        if finished:
            break
        # (a rank whose rows are all done keeps stepping them while others in lockstep are not;
        # what they generate after EOS is cut off below)
        if bool(keep.any()) and not bool(keep.all()):
            idx = keep.nonzero().squeeze(-1)
            cache.batch_select_indices(idx.to(logits.device))
            alive, nxt, mask, next_pos = alive[idx], nxt[idx], mask[idx], next_pos[idx]
        mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype)], dim=1)
        out = forward(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos, use_cache=True,
                      **{cache_kw: cache})
        cache, logits = _cache_of(out), out.logits[:, -1].float()
        next_pos = next_pos + 1
    texts = []
    ends = set(stop_ids)
    for row in tokens.tolist():
        row = row[:next((i for i, t in enumerate(row) if t in ends), len(row))]
        texts.append(tokenizer.decode([t for t in row if t != pad], skip_special_tokens=True))
    return [texts[i * n:(i + 1) * n] for i in range(prompts)]


@torch.no_grad()
def probe(forward, tokenizer, prompts: list[str], candidates: list[list[str]] | None = None, generate: bool = True,
          max_new_tokens: int = 12, n: int = 1, temperature: float = 0.0, seed: int = 0, all_done=None,
          cache_kw: str = "cache", stop_ids: list[int] | None = None, add_bos: bool = True):
    """``(answers, scores)``: ``n`` generated answers per prompt (None unless ``generate``) and
    ``(sum log-prob, n tokens)`` per candidate (None unless ``candidates``), from one prompt pass.

    Answers end at any of ``stop_ids`` (default: the tokenizer's EOS); ``add_bos=False`` for prompts
    whose text already starts with it (a chat template's)."""
    stop_ids = list(stop_ids or [tokenizer.eos_token_id])
    cache, logits, mask, next_pos = _prefill(forward, tokenizer, prompts, add_bos)
    scores = answers = None
    if candidates is not None:
        scores = _score(forward, tokenizer, copy.deepcopy(cache) if generate else cache, logits, mask, next_pos,
                        candidates, cache_kw, lockstep=all_done is not None)
    if generate:
        answers = _decode(forward, tokenizer, cache, logits, mask, next_pos, n, max_new_tokens, temperature, seed,
                          all_done, cache_kw, stop_ids)
    return answers, scores

