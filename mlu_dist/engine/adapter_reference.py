"""The frozen reference of a LoRA run: the trained model itself with its adapters switched off.

Under LoRA the base weights never change, so "the model before unlearning" is the same module with
the adapters disabled: no second copy of the weights (at 8B a 16 GB stage-0 replica per GPU). LoRA
runs at ZeRO 0-2 (ZeRO-3 + LoRA is refused), so every rank holds the whole module and can call it
directly, outside DeepSpeed's engine (no gradients, no collectives).
"""

from __future__ import annotations

import contextlib

import torch


class AdapterReference:
    """``forward`` = the base model's forward: adapters disabled, eval mode (no dropout), no grad."""

    shares_trained_weights = True
    """Its weights are the trained module's: read them before anything merges LoRA into that module."""

    def __init__(self, peft_model: torch.nn.Module, is_main: bool = True):
        if not hasattr(peft_model, "disable_adapter"):
            raise TypeError("AdapterReference needs a peft model (train.lora.enabled); got "
                            f"{type(peft_model).__name__}")
        self.module, self.is_main = peft_model, is_main

    @contextlib.contextmanager
    def _as_base(self):
        training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad(), self.module.disable_adapter():
                yield
        finally:
            self.module.train(training)

    def forward(self, **batch):
        device = next(self.module.parameters()).device
        with self._as_base():
            return self.module(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})

    def base_state(self) -> dict:
        """The base weights under the plain model's names (what a separate reference copy would hold)."""
        state = self.module.get_base_model().state_dict()
        return {k.replace(".base_layer.", "."): v for k, v in state.items() if "lora_" not in k}

    def state_digest(self) -> str | None:
        """sha256 of the base weights on rank 0 (the digest a separate reference copy gives), None elsewhere."""
        from mlu_dist.engine.engines import state_digest

        return state_digest(self.base_state()) if self.is_main else None

    def close(self) -> None:
        """Nothing to free: the weights belong to the trained model."""
