"""A bare single-process PyTorch backend implementing the engine Protocols (mlu_dist.engine.engines).

Used as the baseline of the engine benchmark and for debugging without DeepSpeed; real runs use
:mod:`mlu_dist.engine.deepspeed_engine`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from mlu_dist.config import ConfigError
from mlu_dist.engine.checkpoint import frozen_base_source, weight_counts
from mlu_dist.engine.engines import state_digest, whole_module
from mlu_dist.engine.optim import make_optimizer, make_scheduler
from mlu_dist.train_config import TrainConfig


def whole_param_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's weights (one process holds them all)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


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
        self.frozen_base = frozen_base_source(model, 0)

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
        torch.save({"model": self._saved_weights(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "global_steps": self.global_steps,
                    "client_state": client_state}, ckpt_dir / "torch_state.pt")

    def load(self, ckpt_dir: Path) -> dict:
        state = torch.load(ckpt_dir / "torch_state.pt", weights_only=False)
        loaded = self.module.load_state_dict(state["model"], strict=self.frozen_base is None)
        lost = sorted(set(loaded.missing_keys) & self._names(trainable=True))
        if lost or loaded.unexpected_keys:
            raise RuntimeError(f"{ckpt_dir}: weights missing {lost[:5]}, unexpected {loaded.unexpected_keys[:5]}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.global_steps = state["global_steps"]
        self.micro_steps = self.global_steps * self.cfg.grad_accum
        return state["client_state"]

    def _names(self, trainable: bool) -> set[str]:
        return {n for n, p in self.module.named_parameters(remove_duplicate=False) if p.requires_grad == trainable}

    def _saved_weights(self) -> dict:
        """The module state a checkpoint holds: all of it, or under LoRA everything but the frozen base."""
        state = self.module.state_dict()
        if self.frozen_base is None:
            return state
        frozen = self._names(trainable=False)
        return {k: v for k, v in state.items() if k not in frozen}

    def full_state_dict(self) -> dict:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def inference_copy(self):
        """The module itself, frozen for the block: one process holds the whole weights already."""
        return whole_module(self.module)

    def full_param_bytes(self) -> int:
        return whole_param_bytes(self.module)

    def checkpoint_bytes(self) -> int:
        """Bytes of one ``torch_state.pt``: every weight (the trainable ones only under LoRA), and AdamW's
        two moments (in the weights' dtype) of the trainable ones."""
        _, trainable_bytes, frozen_bytes = weight_counts(self.module)
        return 3 * trainable_bytes + (0 if self.frozen_base else frozen_bytes)

    def param_numel_per_rank(self) -> list[int]:
        return [sum(p.numel() for p in self.module.parameters())]

    def barrier(self) -> None:
        pass

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        return list(values)

    def close(self) -> None:
        self.optimizer = self.scheduler = None


class TorchFrozenEngine:
    """A frozen model in one process: weights whole, eval mode, no gradients."""

    zero_stage = 0

    def __init__(self, model: torch.nn.Module, device: str = "cpu", is_main: bool = True):
        self.module = model.requires_grad_(False).to(device).eval()
        self.device, self.is_main = torch.device(device), is_main

    def forward(self, **batch):
        with torch.no_grad():
            return self.module(**{k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()})

    def state_digest(self) -> str | None:
        return state_digest(self.module.state_dict()) if self.is_main else None

    def close(self) -> None:
        self.module = None


class TorchBackend:
    """The ``torch`` entry of ``ENGINES`` (mlu_dist.engine.engines): one process, no ZeRO."""

    @staticmethod
    def _device(dist) -> str:
        return "cuda" if dist.device_type == "cuda" else "cpu"

    def training(self, model, cfg: TrainConfig, zcfg, dist, dtype) -> TorchEngine:
        if dist.world_size > 1:
            raise ConfigError(f"engine.backend: 'torch' runs one process only, this job has {dist.world_size} "
                              f"ranks; set engine.backend=deepspeed")
        return TorchEngine(model, cfg, self._device(dist))

    def frozen(self, model, zcfg, dist, dtype) -> TorchFrozenEngine:
        return TorchFrozenEngine(model, self._device(dist), dist.is_main)

    def partitioned_construction(self, cfg, zcfg, dist, dtype, hidden_size=None):
        """Nothing to set up: this backend never partitions, models load whole."""
        return contextlib.nullcontext()

    full_param_bytes = staticmethod(whole_param_bytes)

    def owns_checkpoint(self, ckpt_dir: Path) -> bool:
        return (ckpt_dir / "torch_state.pt").exists()

    def consolidate(self, ckpt_dir: Path) -> dict:
        return torch.load(ckpt_dir / "torch_state.pt", weights_only=False, map_location="cpu")["model"]
