"""Configuration of the training engine: the backend and its DeepSpeed ZeRO settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlu_dist.config import check_choice

ZERO_STAGES = (0, 1, 2, 3)
OFFLOAD_TARGETS = ("none", "optimizer", "optimizer+params")
BACKENDS = ("deepspeed", "torch")


@dataclass
class ZeroConfig:
    """DeepSpeed ZeRO settings. Batch fields of the DeepSpeed config are derived, never set here."""

    stage: int = 0
    """ZeRO stage: 0 (plain data parallel), 1 (optimizer states sharded), 2 (+ gradients), 3 (+ parameters)."""
    offload: str = "none"
    """'none', 'optimizer' (stages 1-3: optimizer states in CPU memory) or 'optimizer+params' (stage 3 only)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Any further DeepSpeed config entries, merged last (e.g. {'zero_optimization': {'overlap_comm': true}})."""

    def check(self) -> list[str]:
        out = check_choice("stage", self.stage, ZERO_STAGES) + check_choice("offload", self.offload, OFFLOAD_TARGETS)
        if self.offload == "optimizer" and self.stage == 0:
            out.append("offload: optimizer offload needs ZeRO stage 1, 2 or 3 (got stage 0)")
        if self.offload == "optimizer+params" and self.stage != 3:
            out.append(f"offload: parameter offload needs ZeRO stage 3 (got stage {self.stage})")
        batch_keys = {"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"}
        clash = sorted(batch_keys & set(self.extra))
        if clash:
            out.append(f"extra: {', '.join(clash)} are derived from train.micro_batch_size / grad_accum; set those instead")
        return out


@dataclass
class EngineConfig:
    """How every training job of an experiment runs: the backend and its ZeRO settings.

    Results do not depend on these (see the world-size invariance test), so cached runs are shared
    across them."""

    backend: str = "deepspeed"
    """'deepspeed' (every real run) or 'torch' (a bare single-process loop, for benchmarks and debugging)."""
    zero: ZeroConfig = field(default_factory=ZeroConfig)
    """DeepSpeed ZeRO settings."""

    def check(self) -> list[str]:
        out = check_choice("backend", self.backend, BACKENDS)
        if self.backend == "torch" and (self.zero.stage != 0 or self.zero.offload != "none"):
            out.append("backend: 'torch' runs no ZeRO; set zero.stage=0 and zero.offload=none or use backend=deepspeed")
        return out
