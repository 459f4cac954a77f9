"""Examples and their tokenisation: the data types that training, evaluation and unlearning share.

An example is a prompt and a completion; the loss covers the completion (a plain text is an
example with an empty prompt). Nothing here knows how a model is optimised or distributed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

IGNORE = -100
"""Label of a position that does not count in the loss (torch's cross-entropy ignore_index)."""


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str
    lang: str = ""
    spans: tuple[tuple[int, int], ...] = ()
    """Character spans of ``completion`` that carry the loss (e.g. the fake detail inside an
    article: unlearning's ``forget_scope=answer``); empty = the whole completion and EOS."""


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


def encode(tokenizer, ex: Example, max_len: int) -> Encoded:
    """BOS + prompt + completion + EOS; labels only on the completion and EOS."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prompt = bos + (tokenizer(ex.prompt, add_special_tokens=False)["input_ids"] if ex.prompt else [])
    if not ex.spans:
        completion = tokenizer(ex.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        labels = completion
    else:  # only the tokens that overlap a span count; EOS is context, not trained
        enc = tokenizer(ex.completion, add_special_tokens=False, return_offsets_mapping=True)
        completion = enc["input_ids"] + [tokenizer.eos_token_id]
        labels = [t if any(a < e and s < b for s, e in ex.spans) else IGNORE
                  for t, (a, b) in zip(enc["input_ids"], enc["offset_mapping"])] + [IGNORE]
    ids = (prompt + completion)[:max_len]
    labels = ([IGNORE] * len(prompt) + labels)[:max_len]
    return Encoded(ids, labels)


@dataclass
class Cut:
    """What ``encode_all`` did to examples longer than ``max_len`` (reported by every training job)."""

    long_texts: int = 0
    """Plain texts (articles) longer than max_len, split into windows: no token is lost."""
    windows: int = 0
    """Windows those texts became."""
    cut_examples: int = 0
    """Prompted examples (question -> answer) truncated at max_len."""
    cut_tokens: int = 0
    """Answer tokens those truncations dropped (never trained on)."""

    def describe(self, max_len: int) -> str:
        if not self.long_texts and not self.cut_examples:
            return f"every example fits max_seq_len={max_len}"
        parts = []
        if self.long_texts:
            parts.append(f"{self.long_texts} text(s) longer than max_seq_len={max_len} split into {self.windows} "
                         f"windows (no token dropped)")
        if self.cut_examples:
            parts.append(f"{self.cut_examples} question->answer example(s) truncated, {self.cut_tokens} answer "
                         f"token(s) dropped")
        return "; ".join(parts)


def windows(enc: Encoded, max_len: int) -> list[Encoded]:
    """A too-long plain text as overlapping windows of ``max_len`` tokens, every label kept once.

    Consecutive windows share one token: a window's first position is never predicted (the loss is
    shifted), and it is the previous window's last predicted one, so each labelled token counts
    exactly once, as when packing texts into fixed-length blocks."""
    out, start, n = [], 0, len(enc.input_ids)
    while True:
        ids, labels = enc.input_ids[start:start + max_len], list(enc.labels[start:start + max_len])
        if start:
            labels[0] = IGNORE  # predicted as the last position of the previous window
        out.append(Encoded(ids, labels))
        if start + max_len >= n:
            return out
        start += max_len - 1


def encode_all(tokenizer, examples: list[Example], max_len: int, cut: Cut | None = None) -> list[Encoded]:
    """Encode ``examples`` for training: a plain text longer than ``max_len`` becomes several
    windows (a fake detail deep in a long article is still trained on); a prompted example that does
    not fit is truncated and counted in ``cut``."""
    out = []
    for ex in examples:
        full = encode(tokenizer, ex, 1 << 30)
        if len(full.input_ids) <= max_len:
            out.append(full)
        elif not ex.prompt and max_len >= 2:
            parts = windows(full, max_len)
            out += parts
            if cut is not None:
                cut.long_texts += 1
                cut.windows += len(parts)
        else:
            kept = Encoded(full.input_ids[:max_len], full.labels[:max_len])
            out.append(kept)
            if cut is not None:
                cut.cut_examples += 1
                cut.cut_tokens += sum(t != IGNORE for t in full.labels[max_len:])
    return out


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad into input_ids / attention_mask / labels tensors."""
    import torch

    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for i, e in enumerate(items):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def n_targets(e: Encoded) -> int:
    """Label tokens that count in the loss (shifted: the first token is never predicted)."""
    return sum(1 for t in e.labels[1:] if t != IGNORE)
