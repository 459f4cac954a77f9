"""Configuration of the training engine: the backend and its DeepSpeed ZeRO settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlu_dist.config import check_choice
from mlu_dist.engine.dist import DEFAULT_TIMEOUT_MIN
from mlu_dist.engine.engines import ENGINES

ZERO_STAGES = (0, 1, 2, 3)
OFFLOAD_TARGETS = ("none", "optimizer", "optimizer+params")
OPTIMIZERS = ("torch", "deepspeed")
ENGINE_JOBS = ("base", "inject", "unlearn", "relearn", "eval")
"""Jobs that may have ZeRO settings of their own (``engine.jobs.<job>``)."""


@dataclass
class ZeroConfig:
    """DeepSpeed ZeRO settings. Batch fields of the DeepSpeed config are derived, never set here."""

    stage: int = 0
    """ZeRO stage: 0 (plain data parallel), 1 (optimizer states sharded), 2 (+ gradients), 3 (+ parameters)."""
    offload: str = "none"
    """'none', 'optimizer' (stages 1-3: optimizer states in CPU memory) or 'optimizer+params' (stage 3 only)."""
    optimizer: str = "torch"
    """'torch': torch.optim.AdamW (fused on GPU), nothing to compile. 'deepspeed': DeepSpeed's FusedAdam
    (CPU Adam under offload), JIT-compiled at first use (nvcc + ninja on the node, ~1-2 min) unless
    installed prebuilt (DS_BUILD_FUSED_ADAM=1 / DS_BUILD_CPU_ADAM=1); a JIT build goes to a node-local
    TORCH_EXTENSIONS_DIR when none is set."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Any further DeepSpeed config entries, merged last (e.g. {'zero_optimization': {'overlap_comm': true}})."""

    def check(self) -> list[str]:
        out = check_choice("stage", self.stage, ZERO_STAGES) + check_choice("offload", self.offload, OFFLOAD_TARGETS)
        out += check_choice("optimizer", self.optimizer, OPTIMIZERS)
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
    """DeepSpeed ZeRO settings of every job that has none of its own in ``jobs``."""
    timeout_min: float = DEFAULT_TIMEOUT_MIN
    """Minutes a collective (a barrier, an all-reduce) may wait for the other ranks before the job
    fails. Rank 0 alone merges and writes the exported model and deletes old checkpoints while the
    others wait: torch's and DeepSpeed's default of 10 minutes kills an 8B run at its end."""
    jobs: dict[str, ZeroConfig] = field(default_factory=dict)
    """ZeRO settings of one job, replacing ``zero`` for it: base, inject, unlearn or eval (the
    evaluation's model copy and reference). E.g. the paper's LoRA injection at ZeRO-2 beside
    full-model unlearning at ZeRO-3: engine.zero.stage=3 engine.jobs.inject.stage=2."""

    def zero_for(self, job: str) -> ZeroConfig:
        """The ZeRO settings ``job`` runs with (a relearning attack runs as unlearning does unless
        ``jobs.relearn`` says otherwise)."""
        if job == "relearn" and "relearn" not in self.jobs:
            job = "unlearn"
        return self.jobs.get(job, self.zero)

    def check(self) -> list[str]:
        out = check_choice("backend", self.backend, ENGINES.names())
        if not self.timeout_min > 0:
            out.append(f"timeout_min: must be > 0 minutes (got {self.timeout_min})")
        for job, zero in self.jobs.items():
            out += check_choice("jobs", job, ENGINE_JOBS) + [f"jobs.{job}.{p}" for p in zero.check()]
        for job in ("base", "inject", "unlearn", "relearn"):
            zero = self.zero_for(job)
            if self.backend == "torch" and (zero.stage != 0 or zero.offload != "none"):
                where = f"jobs.{job}" if job in self.jobs else "zero"
                out.append(f"backend: 'torch' runs no ZeRO ({where} sets stage {zero.stage}, offload {zero.offload}); "
                           f"set {where}.stage=0 and {where}.offload=none or use backend=deepspeed")
        return sorted(set(out), key=out.index)
