"""Optimisation settings of one training job (base, inject or unlearn): steps, batch geometry,
learning-rate schedule, LoRA, checkpoints. Plain configuration: the engine reads it, and so do the
job configs that embed it, without importing the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlu_dist.config import check_choice, check_positive

SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class LoraConfig:
    """Low-rank adapters (peft). Off unless ``enabled``."""

    enabled: bool = False
    """Train LoRA adapters instead of all weights."""
    r: int = 8
    """Adapter rank."""
    alpha: int = 16
    """Scaling numerator (scale = alpha / r)."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Names of the Linear modules to adapt (leaf names, e.g. q_proj, k_proj, v_proj, o_proj, gate_proj)."""

    def check(self) -> list[str]:
        if not self.enabled:
            return []
        out = check_positive(self, "r", "alpha")
        if not self.targets:
            out.append("targets: at least one module name is needed")
        return out


@dataclass
class TrainConfig:
    """Optimisation of one training job of the shared loop (base, inject or unlearn)."""

    steps: int = 600
    """Optimizer steps (ignored when ``epochs`` > 0)."""
    epochs: float = 0.0
    """Passes over the job's main pool (inject: the fake examples; unlearn: the forget set; base: the
    corpus). When > 0 it sets the steps: ceil(epochs x pool size / that pool's global batch)."""
    micro_batch_size: int = 16
    """Examples per rank per forward pass."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step. Global batch = micro_batch_size * grad_accum * world size."""
    lr: float = 3e-3
    """Peak learning rate."""
    warmup_steps: int = 30
    """Linear warm-up steps."""
    schedule: str = "cosine"
    """LR decay after warm-up: constant, linear or cosine (to min_lr_ratio * lr)."""
    min_lr_ratio: float = 0.1
    """Final LR as a fraction of the peak (linear/cosine)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 = off)."""
    seed: int = 0
    """Seed for data order, initialisation and dropout."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapters."""
    log_every: int = 10
    """Log training metrics every N steps."""
    eval_every: int = 0
    """Run the job's evaluation every N steps (0 = only at the end)."""
    save_every: int = 0
    """Save a resumable checkpoint every N steps (0 = only at the end)."""
    final_checkpoint: str = "keep"
    """After a finished run's export is verified: 'keep' its checkpoints (resumable, `mlu export`
    can redo the export) or 'drop' them (at 8B a checkpoint with optimizer state is ~110 GB beside a
    16 GB export; the 8B configs drop)."""
    keep_checkpoints: int = 2
    """How many step checkpoints to keep (oldest deleted first; the final one is always kept)."""
    resume: str = "auto"
    """'auto' (continue from the run dir's latest complete checkpoint if any), 'false', or a checkpoint path."""
    stop_after: int = 0
    """Stop (as if interrupted) after this many steps of this process, leaving a checkpoint; 0 = off.
    For tests and for splitting a long run into time-limited jobs."""

    def check(self) -> list[str]:
        out = check_positive(self, "steps", "micro_batch_size", "grad_accum", "lr")
        out += check_choice("schedule", self.schedule, SCHEDULES)
        if not 0 <= self.min_lr_ratio <= 1:
            out.append(f"min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        if len(self.betas) != 2:
            out.append(f"betas: need two values, got {list(self.betas)}")
        for n in ("warmup_steps", "log_every", "eval_every", "save_every", "stop_after", "grad_clip", "epochs"):
            if getattr(self, n) < 0:
                out.append(f"{n}: must be >= 0, got {getattr(self, n)}")
        out += check_choice("final_checkpoint", self.final_checkpoint, ("keep", "drop"))
        if self.keep_checkpoints < 1:
            out.append(f"keep_checkpoints: must be >= 1, got {self.keep_checkpoints}")
        return out
