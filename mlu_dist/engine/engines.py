"""The engine as jobs see it: two Protocols and a registry of backends.

A :class:`TrainingEngine` owns a model being trained (optimizer, schedule, checkpoints, the
consolidated state); a :class:`FrozenEngine` runs a model without gradients (reference models,
evaluation under ZeRO-3). An :class:`EngineBackend` builds both and knows its own checkpoint
files. Backends are registered in :data:`ENGINES` by ``"module:Class"`` so that choosing one
imports it (DeepSpeed is imported only when the DeepSpeed backend is used). Jobs import this
module only; nothing outside a backend's module branches on its name.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager, Protocol, runtime_checkable

from mlu_dist.registry import Registry

if TYPE_CHECKING:
    import torch

    from mlu_dist.engine.config import EngineConfig, ZeroConfig
    from mlu_dist.engine.dist import DistInfo
    from mlu_dist.train_config import TrainConfig


@runtime_checkable
class FrozenEngine(Protocol):
    """A model run without gradients. When ``zero_stage`` is 3 its weights are partitioned and every
    rank must join every forward."""

    module: torch.nn.Module
    zero_stage: int

    def forward(self, **batch): ...

    def state_digest(self) -> str | None:
        """sha256 of the full weights on rank 0, None elsewhere (collective under ZeRO-3)."""

    def close(self) -> None: ...


@runtime_checkable
class TrainingEngine(Protocol):
    """A model being trained: the engine owns the optimizer, the LR schedule and the checkpoints."""

    module: torch.nn.Module
    zero_stage: int
    """3 when the weights are partitioned over the ranks (forwards are then collective)."""
    frozen_base: str | None
    """Where the frozen base its checkpoints leave out comes from (LoRA, see
    ``checkpoint.frozen_base_source``); None when they hold every weight."""

    @property
    def global_steps(self) -> int: ...

    def forward(self, **batch): ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> None:
        """One micro-step; the optimizer steps at the end of each gradient-accumulation cycle."""

    def lr(self) -> float: ...

    def grad_norm(self) -> float | None: ...

    def save(self, ckpt_dir: Path, client_state: dict) -> None:
        """Write one checkpoint into ``ckpt_dir`` (every rank calls it)."""

    def load(self, ckpt_dir: Path) -> dict:
        """Restore ``ckpt_dir``; returns the client state saved with it."""

    def full_state_dict(self) -> dict | None:
        """The consolidated weights on rank 0, None elsewhere (collective under ZeRO-3)."""

    def inference_copy(self) -> ContextManager[torch.nn.Module]:
        """A whole, frozen module on this rank's device while the block runs (no collectives)."""

    def checkpoint_bytes(self) -> int:
        """Bytes of one checkpoint, all ranks together."""

    def full_param_bytes(self) -> int:
        """Bytes of the whole weights (all shards together)."""

    def param_numel_per_rank(self) -> list[int]:
        """Parameter elements each rank holds."""

    def barrier(self) -> None: ...

    def all_reduce_sum(self, values: list[float]) -> list[float]: ...

    def close(self) -> None: ...


class EngineBackend(Protocol):
    """What a registered backend provides besides the engines themselves."""

    def training(self, model: torch.nn.Module, cfg: TrainConfig, zcfg: ZeroConfig, dist: DistInfo,
                 dtype: torch.dtype) -> TrainingEngine: ...

    def frozen(self, model: torch.nn.Module, zcfg: ZeroConfig, dist: DistInfo, dtype: torch.dtype) -> FrozenEngine: ...

    def partitioned_construction(self, cfg: TrainConfig, zcfg: ZeroConfig, dist: DistInfo, dtype: torch.dtype,
                                 hidden_size: int | None) -> ContextManager:
        """While the block runs, ``from_pretrained`` builds models already partitioned over the ranks."""

    def full_param_bytes(self, module: torch.nn.Module) -> int:
        """Bytes of a module's whole weights, also when this rank holds only its shard."""

    def owns_checkpoint(self, ckpt_dir: Path) -> bool:
        """Whether ``ckpt_dir`` holds this backend's checkpoint files."""

    def consolidate(self, ckpt_dir: Path) -> dict:
        """The full model state dict of one of this backend's checkpoints, in one process (no ranks)."""


ENGINES: Registry = Registry("engine backend")
"""Engine backends by ``engine.backend`` name; each entry is a class implementing :class:`EngineBackend`."""
ENGINES.register("deepspeed")("mlu_dist.engine.deepspeed_engine:DeepSpeedBackend")
ENGINES.register("torch")("mlu_dist.engine.torch_engine:TorchBackend")


def backend(name: str) -> EngineBackend:
    """The backend registered as ``name``, ready to use."""
    return ENGINES.load(name)()


def build_engine(model, cfg: TrainConfig, engine_cfg: EngineConfig, dist: DistInfo, job: str = "base") -> TrainingEngine:
    """The configured backend's training engine around ``model`` with ``job``'s ZeRO settings."""
    dtype = next(model.parameters()).dtype
    return backend(engine_cfg.backend).training(model, cfg, engine_cfg.zero_for(job), dist, dtype)


def frozen_engine(model, engine_cfg: EngineConfig, dist: DistInfo, job: str) -> FrozenEngine:
    """The configured backend's frozen engine around ``model`` with ``job``'s ZeRO settings."""
    dtype = next(model.parameters()).dtype
    return backend(engine_cfg.backend).frozen(model, engine_cfg.zero_for(job), dist, dtype)


def consolidate_checkpoint(ckpt_dir: Path) -> dict | None:
    """The full model state dict of a checkpoint written by any registered backend; None when no
    backend recognises the files."""
    for name in ENGINES.order():
        owner = backend(name)
        if owner.owns_checkpoint(ckpt_dir):
            return owner.consolidate(ckpt_dir)
    return None


@contextlib.contextmanager
def whole_module(module: torch.nn.Module):
    """``module`` itself in eval mode and without gradients while the block runs (a backend that never
    partitions its weights has nothing to copy); its training mode comes back after."""
    import torch

    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(training)


def state_digest(state: dict) -> str:
    """A sha256 over a state dict's names and exact bytes."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()
