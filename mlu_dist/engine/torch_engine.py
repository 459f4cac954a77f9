"""A bare single-process PyTorch engine with the DeepSpeed engine's interface.

Used as the baseline of the engine benchmark and for debugging without DeepSpeed; real runs use
:mod:`mlu_dist.engine.deepspeed_engine`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mlu_dist.engine.checkpoint import weight_counts
from mlu_dist.engine.optim import make_optimizer, make_scheduler
from mlu_dist.train_config import TrainConfig


class TorchEngine:
    """Gradient accumulation, clipping, AdamW and the LR schedule in plain PyTorch (world size 1)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, device: str = "cpu"):
        self.module = model.to(device)
        self.device = torch.device(device)
        self.cfg = cfg
        self.optimizer = make_optimizer(model, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.micro_steps = 0
        self.global_steps = 0
        self._grad_norm: float | None = None
        self.zero_stage = 0

    def forward(self, **batch):
        return self.module(**{k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()})

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.cfg.grad_accum).backward()

    def step(self) -> None:
        self.micro_steps += 1
        if self.micro_steps % self.cfg.grad_accum:
            return
        params = [p for p in self.module.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf"))
        self._grad_norm = float(norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_steps += 1

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def grad_norm(self) -> float | None:
        return self._grad_norm

    def save(self, ckpt_dir: Path, client_state: dict) -> None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "global_steps": self.global_steps,
                    "client_state": client_state}, ckpt_dir / "torch_state.pt")

    def load(self, ckpt_dir: Path) -> dict:
        state = torch.load(ckpt_dir / "torch_state.pt", weights_only=False)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.global_steps = state["global_steps"]
        self.micro_steps = self.global_steps * self.cfg.grad_accum
        return state["client_state"]

    def full_state_dict(self) -> dict:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def checkpoint_bytes(self) -> int:
        """Bytes of one ``torch_state.pt``: every weight, and AdamW's two moments (in the weights' dtype)
        of the trainable ones."""
        _, trainable_bytes, frozen_bytes = weight_counts(self.module)
        return 3 * trainable_bytes + frozen_bytes

    def param_numel_per_rank(self) -> list[int]:
        return [sum(p.numel() for p in self.module.parameters())]

    def barrier(self) -> None:
        pass

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        return list(values)

    def close(self) -> None:
        self.optimizer = self.scheduler = None
