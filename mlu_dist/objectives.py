"""Training objectives: what the one loop minimises. Base training and injection use
:class:`NLLObjective`; unlearning methods (``unlearn/methods.py``) are objectives too.

An objective is ``objective(engine, micro_batch) -> (loss, metrics)``: ``engine.forward`` is the
model call, ``micro_batch`` maps pool names to tensors (see ``engine/data.py::BatchPlan``), and
``metrics`` are this micro-batch's contributions to step-level means (summed over micro-batches
and ranks). Objectives know nothing else of the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class Objective(Protocol):
    def __call__(self, engine, micro_batch: dict) -> tuple[torch.Tensor, dict[str, float]]: ...


@dataclass
class NLLObjective:
    """Causal-LM loss over every pool, each pool a token-mean over the whole global batch.

    ``scale`` = world size x accumulation steps undoes the engine's averaging, so the gradient is
    that of the global token-mean whatever the geometry (the basis of world-size invariance).
    """

    scale: float
    weights: dict[str, float] = field(default_factory=dict)

    def __call__(self, engine, micro_batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        from mlu_dist.losses import token_nll_sum

        total = None
        metrics = {}
        for name, b in micro_batch.items():
            out = engine.forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            part = token_nll_sum(out.logits, b["labels"].to(out.logits.device)) / b["n_targets"]
            metrics[f"train/loss_{name}"] = part.item()
            weighted = part * self.weights.get(name, 1.0)
            total = weighted if total is None else total + weighted
        metrics["train/loss"] = total.item()
        return total * self.scale, metrics
