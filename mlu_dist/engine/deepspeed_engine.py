"""The DeepSpeed engine: ZeRO stages 0-3, CPU offload, checkpoints, consolidated export.

This is the only module that imports ``deepspeed``. On CPU it uses gloo, on GPU NCCL; the optimizer
is ``torch.optim.AdamW`` (fused on GPU), which needs no op compilation, unless
``engine.zero.optimizer=deepspeed`` asks for DeepSpeed's JIT-built FusedAdam / CPU Adam.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
from pathlib import Path

import torch

from mlu_dist import comm
from mlu_dist.engine.checkpoint import frozen_base_source, weight_counts
from mlu_dist.engine.ckpt_size import ds_checkpoint_bytes
from mlu_dist.engine.config import ZeroConfig
from mlu_dist.engine.dist import DistInfo
from mlu_dist.engine.engines import state_digest
from mlu_dist.engine.op_lock import load_op_under_lock
from mlu_dist.engine.optim import make_optimizer, make_scheduler, param_groups
from mlu_dist.train_config import TrainConfig
from mlu_dist.logs import get_logger

log = get_logger(__name__)


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build_ds_config(cfg: TrainConfig, zcfg: ZeroConfig, world_size: int, device_type: str,
                    dtype: torch.dtype = torch.float32, hidden_size: int | None = None) -> dict:
    """The DeepSpeed config of a run; batch fields are derived from ``cfg`` so they cannot disagree.

    Communication buckets are sized from the model's hidden size (as HF's "auto" does): DeepSpeed's
    fixed defaults (5e8 elements) allocate ~2 GB per rank whatever the model, more than a small
    model's whole training state.
    """
    zero: dict = {"stage": zcfg.stage}
    if hidden_size and zcfg.stage >= 2:
        zero["reduce_bucket_size"] = hidden_size * hidden_size
        zero["allgather_bucket_size"] = max(hidden_size * hidden_size, 10**6)
    if zcfg.stage == 2 and device_type == "cuda":
        # DeepSpeed overlaps gradient reduction with the backward only at stage 3 by default; the
        # paper's LoRA recipe runs at stage 2 (CPU runs keep the default: gloo gains nothing)
        zero["overlap_comm"] = True
    if zcfg.stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # else saved HF weights are placeholders
        if hidden_size:
            zero["stage3_prefetch_bucket_size"] = int(0.9 * hidden_size * hidden_size)
            zero["stage3_param_persistence_threshold"] = 10 * hidden_size
    pin = device_type == "cuda"
    if zcfg.offload in ("optimizer", "optimizer+params"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
    if zcfg.offload == "optimizer+params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": pin}
    ds = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.micro_batch_size * cfg.grad_accum * world_size,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": zero,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
        # a torch optimizer with offload is allowed (DeepSpeed would demand its own CPU Adam)
        "zero_force_ds_cpu_optimizer": False,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
    }
    if zcfg.optimizer == "deepspeed":
        # DeepSpeed picks its fused Adam (or CPU Adam under offload) for this block: JIT-built unless prebuilt.
        ds["optimizer"] = {"type": "AdamW", "params": {"lr": cfg.lr, "betas": list(cfg.betas), "eps": 1e-8,
                                                       "weight_decay": cfg.weight_decay}}
    return _deep_merge(ds, dict(zcfg.extra))


def preload_comm_op() -> None:
    """Build or load DeepSpeed's CPU shared-memory comm op under the lock of :func:`load_op_under_lock`."""
    import deepspeed.ops  # noqa: F401  (fills deepspeed.ops.__compatible_ops__)
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not _shm_verdict(builder):
        return
    load_op_under_lock(builder)


def preload_adam_op(zcfg: ZeroConfig, dist: DistInfo) -> None:
    """When DeepSpeed's own Adam is asked for and not installed prebuilt, JIT-build it before
    ``deepspeed.initialize`` does: into a node-local extensions dir (a shared home would have every
    rank of every node build into one folder behind one lock) and under :func:`load_op_under_lock`."""
    import os

    from deepspeed.accelerator import get_accelerator
    from deepspeed.git_version_info import installed_ops

    if zcfg.optimizer != "deepspeed":
        return
    name = "CPUAdamBuilder" if zcfg.offload != "none" or dist.device_type == "cpu" else "FusedAdamBuilder"
    builder = get_accelerator().create_op_builder(name)
    if builder is None or installed_ops.get(builder.name):
        return  # prebuilt at install: nothing to compile
    if "TORCH_EXTENSIONS_DIR" not in os.environ:
        local = Path(os.environ.get("SLURM_TMPDIR") or os.environ.get("TMPDIR") or "/tmp") / f"torch_extensions-{os.getuid()}"
        os.environ["TORCH_EXTENSIONS_DIR"] = str(local)
        log.info(f"engine.zero.optimizer=deepspeed: building {builder.name} into node-local {local} "
                 f"(set TORCH_EXTENSIONS_DIR to choose; install with DS_BUILD_OPS=1 to skip the build)")
    load_op_under_lock(builder)


_SHM_VERDICT: dict[str, bool] = {}


def _shm_verdict(builder) -> bool:
    """DeepSpeed's own verdict on the shm op, as it was before a 1-rank process overrode it."""
    import deepspeed.ops

    return _SHM_VERDICT.setdefault(builder.NAME, deepspeed.ops.__compatible_ops__.get(builder.NAME, False))


def _shm_op_wanted(wanted: bool) -> None:
    """Whether DeepSpeed's TorchBackend may load its CPU shared-memory comm op in this process.

    A single CPU rank has nothing to all-reduce, yet DeepSpeed builds the op at every start: on a
    fresh machine (or a new virtualenv) that is a minute of C++ compilation before the first
    step. One rank marks the op incompatible for this process (DeepSpeed then uses plain
    torch.distributed, which one rank never calls across processes); several ranks restore
    DeepSpeed's own verdict and use it."""
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None:
        return
    deepspeed.ops.__compatible_ops__[builder.NAME] = _shm_verdict(builder) and wanted


def _init_comm(dist: DistInfo) -> None:
    import deepspeed

    if dist.device_type == "cpu":
        _shm_op_wanted(dist.world_size > 1)
        if dist.world_size > 1:
            preload_comm_op()
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if dist.device_type == "cuda" else "gloo", timeout=dist.timeout)


@contextlib.contextmanager
def partitioned_construction(cfg: TrainConfig, zcfg: ZeroConfig, dist: DistInfo, dtype: torch.dtype,
                             hidden_size: int | None = None):
    """While the block runs, ``from_pretrained`` builds models partitioned by ZeRO-3 as it loads
    them: rank 0 reads the checkpoint, every rank keeps only its shard (no full copy per rank).

    The ZeRO-3 settings are the ones the job's engine is built with (same derived DeepSpeed
    config), and the process group is started first (zero.Init needs it)."""
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    _init_comm(dist)
    ds = build_ds_config(cfg, zcfg, dist.world_size, dist.device_type, dtype, hidden_size)
    keep_alive = HfDeepSpeedConfig(ds)  # transformers holds only a weak reference
    try:
        yield keep_alive
    finally:
        unset_hf_deepspeed_config()
        del keep_alive
        gc.collect()


class DeepSpeedEngine:
    """A thin wrapper so the training loop sees one interface for both backends."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, zcfg: ZeroConfig, dist: DistInfo,
                 dtype: torch.dtype = torch.float32):
        import deepspeed
        from deepspeed.utils import logger as ds_logger

        ds_logger.setLevel(logging.WARNING)
        _init_comm(dist)
        self.cfg, self.dist = cfg, dist
        self.zero_stage = zcfg.stage
        hidden = getattr(getattr(model, "config", None), "hidden_size", None)
        self.ds_config = build_ds_config(cfg, zcfg, dist.world_size, dist.device_type, dtype, hidden)
        preload_adam_op(zcfg, dist)
        optimizer = None if "optimizer" in self.ds_config else make_optimizer(model, cfg, dist.device_type == "cuda")
        self._engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            model_parameters=param_groups(model, cfg.weight_decay) if optimizer is None else None,
            lr_scheduler=lambda opt: make_scheduler(opt, cfg),
            config=self.ds_config,
        )
        self.module = self._engine.module
        self.frozen_base = frozen_base_source(self.module, self.zero_stage)

    @property
    def global_steps(self) -> int:
        return self._engine.global_steps

    def forward(self, **batch):
        device = self._engine.device
        return self._engine(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})

    def backward(self, loss: torch.Tensor) -> None:
        self._engine.backward(loss)

    def step(self) -> None:
        self._engine.step()

    def lr(self) -> float:
        return float(self._engine.get_lr()[0])

    def grad_norm(self) -> float | None:
        norm = self._engine.get_global_grad_norm()
        return None if norm is None else float(norm)

    def save(self, ckpt_dir: Path, client_state: dict) -> None:
        self._engine.save_checkpoint(str(ckpt_dir.parent), tag=ckpt_dir.name, client_state=client_state,
                                     save_latest=False, exclude_frozen_parameters=self.frozen_base is not None)

    def load(self, ckpt_dir: Path) -> dict:
        """Restore ``ckpt_dir``; a LoRA checkpoint without the frozen base loads over the base this
        module was built from (the module state is then not strict: the base's keys are absent)."""
        path, client_state = self._engine.load_checkpoint(str(ckpt_dir.parent), tag=ckpt_dir.name,
                                                          load_module_strict=self.frozen_base is None)
        if path is None:
            raise FileNotFoundError(f"DeepSpeed found no loadable checkpoint in {ckpt_dir}")
        return client_state or {}

    def full_state_dict(self) -> dict | None:
        """The consolidated weights on rank 0 (None elsewhere); every rank must call it under ZeRO-3."""
        import deepspeed

        module = self.module
        if self.zero_stage == 3:
            with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
                state = {k: v.detach().clone().cpu() for k, v in module.state_dict().items()} if self.dist.is_main else None
            return state
        return {k: v.detach().clone().cpu() for k, v in module.state_dict().items()} if self.dist.is_main else None

    @contextlib.contextmanager
    def inference_copy(self):
        """A whole, frozen copy of the module on this rank's device while the block runs (ZeRO-3).

        Generating under ZeRO-3 gathers every layer again for every token; this copy is filled by
        one gather per parameter and then runs with no collectives at all. It is freed on exit,
        so training never holds it."""
        import deepspeed
        from transformers import AutoModelForCausalLM
        from transformers.initialization import no_init_weights

        module, device = self.module, self._engine.device
        dtype = next(module.parameters()).dtype
        with torch.device(device), no_init_weights():
            replica = AutoModelForCausalLM.from_config(copy.deepcopy(module.config), dtype=dtype)
        replica.requires_grad_(False).eval()
        mine = dict(replica.named_parameters(remove_duplicate=False))
        with torch.no_grad():
            for name, param in module.named_parameters(remove_duplicate=False):
                with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                    mine[name].copy_(param.data)
            buffers = dict(replica.named_buffers())
            for name, buf in module.named_buffers():
                buffers[name].copy_(buf)
        try:
            yield replica
        finally:
            del replica, mine, buffers
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

    def checkpoint_bytes(self) -> int:
        """Bytes of one checkpoint of this engine, all ranks together (see :func:`ds_checkpoint_bytes`)."""
        mixed = self.ds_config["bf16"]["enabled"] or self.ds_config["fp16"]["enabled"]
        trainable, trainable_bytes, frozen_bytes = weight_counts(self.module)
        frozen_bytes = tied_frozen_bytes(self.module) if self.frozen_base else frozen_bytes
        return ds_checkpoint_bytes(trainable, trainable_bytes, frozen_bytes, self.zero_stage, mixed)

    def full_param_bytes(self) -> int:
        """Bytes of the whole weights (all ranks' shards together under ZeRO-3)."""
        return full_param_bytes(self.module)

    def param_numel_per_rank(self) -> list[int]:
        """How many parameter elements each rank holds (ZeRO-3 shards them)."""
        return comm.gather_counts(local_param_numel(self.module))

    def barrier(self) -> None:
        comm.barrier()

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        return comm.all_reduce_sum(values)

    def close(self) -> None:
        """Tear down in the order that avoids gloo's SIGABRT at exit under ZeRO-3 (FACTS.md)."""
        if self._engine is not None:
            self._engine.destroy()
        self._engine = self.optimizer = self.scheduler = self.module = None
        gc.collect()


def full_param_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's whole weights, also when ZeRO-3 holds only this rank's shard."""
    return sum(getattr(p, "ds_numel", p.numel()) * p.element_size() for p in module.parameters())


def tied_frozen_bytes(module: torch.nn.Module) -> int:
    """Bytes of the frozen weights ``save_checkpoint(exclude_frozen_parameters=True)`` still writes: it
    drops each parameter under its first name only, so a tied copy (an lm_head tied to the input
    embeddings) stays in the module state."""
    first = {name for name, _ in module.named_parameters()}
    return sum(p.numel() * p.element_size() for name, p in module.named_parameters(remove_duplicate=False)
               if not p.requires_grad and name not in first)


def local_param_numel(module: torch.nn.Module) -> int:
    """Parameter elements this rank holds (its shard under ZeRO-3, everything otherwise)."""
    return sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in module.parameters())


class InferenceEngine:
    """A frozen model under DeepSpeed, no optimizer: partitioned under ZeRO-3 (every rank must then
    join every forward), a plain replica otherwise. Used for evaluation and reference models."""

    def __init__(self, model: torch.nn.Module, zcfg: ZeroConfig, dist: DistInfo, dtype: torch.dtype = torch.float32):
        import deepspeed
        from deepspeed.utils import logger as ds_logger

        ds_logger.setLevel(logging.WARNING)
        _init_comm(dist)
        model.requires_grad_(False)
        self.dist = dist
        self.zero_stage = 3 if zcfg.stage == 3 else 0
        stage = ZeroConfig(stage=self.zero_stage, offload="optimizer+params" if zcfg.offload == "optimizer+params" else "none")
        hidden = getattr(getattr(model, "config", None), "hidden_size", None)
        ds = build_ds_config(TrainConfig(micro_batch_size=1), stage, dist.world_size, dist.device_type, dtype, hidden)
        ds.pop("optimizer", None)
        ds["zero_optimization"].pop("offload_optimizer", None)
        self._engine, *_ = deepspeed.initialize(model=model, config=ds)
        self.module = self._engine.module
        self.module.eval()

    def forward(self, **batch):
        device = self._engine.device
        return self._engine(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})

    def state_digest(self) -> str | None:
        """sha256 of the full weights on rank 0 (every rank must call it under ZeRO-3)."""
        import deepspeed

        params = list(self.module.parameters())
        ctx = deepspeed.zero.GatheredParameters(params, modifier_rank=None) if self.zero_stage == 3 else None
        if ctx is not None:
            ctx.__enter__()
        digest = state_digest(self.module.state_dict()) if self.dist.is_main else None
        if ctx is not None:
            ctx.__exit__(None, None, None)
        return digest

    def close(self) -> None:
        if self._engine is not None:
            self._engine.destroy()
        self._engine = self.module = None
        gc.collect()


class DeepSpeedBackend:
    """The ``deepspeed`` entry of ``ENGINES`` (mlu_dist.engine.engines): ZeRO stages 0-3."""

    partitioned_construction = staticmethod(partitioned_construction)
    full_param_bytes = staticmethod(full_param_bytes)

    def training(self, model, cfg: TrainConfig, zcfg: ZeroConfig, dist: DistInfo, dtype: torch.dtype) -> DeepSpeedEngine:
        return DeepSpeedEngine(model, cfg, zcfg, dist, dtype)

    def frozen(self, model, zcfg: ZeroConfig, dist: DistInfo, dtype: torch.dtype) -> InferenceEngine:
        return InferenceEngine(model, zcfg, dist, dtype)

    def owns_checkpoint(self, ckpt_dir: Path) -> bool:
        return any(ckpt_dir.glob("mp_rank_*_model_states.pt")) or any(ckpt_dir.glob("zero_pp_rank_*"))

    def consolidate(self, ckpt_dir: Path) -> dict:
        """A full fp32 state dict from a checkpoint of any ZeRO stage: ZeRO's shards are merged by
        DeepSpeed's own reader; a stage-0 checkpoint holds the whole module in its model-states file."""
        if any(ckpt_dir.glob("*optim_states.pt")) and any(ckpt_dir.glob("zero_pp_rank_*")):
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            return get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir.parent), tag=ckpt_dir.name)
        states = sorted(ckpt_dir.glob("mp_rank_*_model_states.pt"))
        return torch.load(states[0], weights_only=False, map_location="cpu")["module"]
