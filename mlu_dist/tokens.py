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


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


def encode(tokenizer, ex: Example, max_len: int) -> Encoded:
    """BOS + prompt + completion + EOS; labels only on the completion and EOS."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prompt = bos + (tokenizer(ex.prompt, add_special_tokens=False)["input_ids"] if ex.prompt else [])
    completion = tokenizer(ex.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt + completion)[:max_len]
    labels = ([IGNORE] * len(prompt) + completion)[:max_len]
    return Encoded(ids, labels)


def encode_all(tokenizer, examples: list[Example], max_len: int) -> list[Encoded]:
    return [encode(tokenizer, ex, max_len) for ex in examples]


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
