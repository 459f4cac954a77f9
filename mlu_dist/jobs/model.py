"""The model a job trains: built or loaded (whole, or partitioned under ZeRO-3), activation
checkpointing, LoRA adapters."""

from __future__ import annotations

from pathlib import Path

import torch

from mlu_dist.config import ConfigError
from mlu_dist.engine.dist import DistInfo
from mlu_dist.engine.engines import backend
from mlu_dist.jobs.common import TRAIN_CONFIGS, TRAIN_KEYS, say
from mlu_dist.modeling import (PARTITION_MIN_BYTES, ModelConfig, build_tiny_model, checkpoint_bytes, load_pretrained,
                               torch_dtype, train_tokenizer)
from mlu_dist.train_config import TrainConfig


def model_and_tokenizer(cfg, job: str, dist: DistInfo, corpus_texts: list[str] | None = None,
                        init_from: str | Path | None = None, seed: int = 0):
    """A model for ``job`` to train: loaded from ``init_from`` / ``cfg.model.name_or_path`` (see
    :func:`pretrained`), or a fresh tiny Llama whose tokenizer is trained on ``corpus_texts``
    (deterministic, so every rank builds the same)."""
    model_cfg = cfg.model
    if init_from is not None:
        return pretrained(init_from, cfg, job, dist)
    if not model_cfg.is_tiny:
        return pretrained(model_cfg.name_or_path, cfg, job, dist)
    if not corpus_texts:
        raise ValueError("a tiny model needs a corpus to train its tokenizer on")
    tokenizer = train_tokenizer(corpus_texts, model_cfg.vocab_size)
    model = build_tiny_model(model_cfg, tokenizer, seed=seed).to(torch_dtype(model_cfg.dtype, dist.device_type))
    return model, tokenizer


def lazy_whole_load() -> bool:
    """Whether transformers loads a whole model lazily: from version 5 its weights are memory-mapped
    from the checkpoint (page cache shared by the ranks of a node) instead of a copy per rank."""
    import transformers

    return int(transformers.__version__.split(".")[0]) >= 5


def partitioned_load_choice(cfg, job: str, path: str | Path, lazy: bool | None = None) -> tuple[bool, str]:
    """Whether ``job`` loads ``path`` partitioned (ZeRO-3 only, see model.partitioned_load), and why.
    ``lazy``: whether a whole load is memory-mapped (default: :func:`lazy_whole_load`)."""
    zero, setting = cfg.engine.zero_for(job), cfg.model.partitioned_load
    if cfg.engine.backend != "deepspeed" or zero.stage != 3:
        return False, f"ZeRO-{zero.stage} keeps whole weights on every rank"
    if setting != "auto":
        return setting == "always", f"model.partitioned_load={setting}"
    if lazy_whole_load() if lazy is None else lazy:
        return False, ("transformers >= 5 memory-maps a whole checkpoint (no copy per rank; zero.Init costs more: "
                       "benchmarks/bench_partitioned_load.py)")
    size = checkpoint_bytes(path)
    if size is None:
        return True, "a hub checkpoint under ZeRO-3"
    big = size >= PARTITION_MIN_BYTES
    return big, (f"{size / 1e9:.2f} GB checkpoint {'>=' if big else '<'} {PARTITION_MIN_BYTES / 1e9:g} GB "
                 f"(model.partitioned_load=auto)")


def pretrained(path: str | Path, cfg, job: str, dist: DistInfo):
    """``(model, tokenizer)`` from a HF directory or hub name for ``job``; under ZeRO-3 built
    partitioned as it loads when :func:`partitioned_load_choice` says so (no full copy per rank)."""
    model_cfg = cfg.model
    torch.manual_seed(TRAIN_CONFIGS[job](cfg).seed)  # LoRA's first adapters and dropout masks follow the run's seed
    args = (path, model_cfg.dtype, dist.device_type, model_cfg.attn_implementation)
    partition, why = partitioned_load_choice(cfg, job, path)
    say(dist, f"{job}: loading {path} {'partitioned over ' + str(dist.world_size) + ' rank(s)' if partition else 'whole'}"
              f" ({why})")
    if not partition:
        return load_pretrained(*args)
    from transformers import AutoConfig

    hidden = getattr(AutoConfig.from_pretrained(str(path)), "hidden_size", None)
    train = TRAIN_CONFIGS[job](cfg)
    with backend(cfg.engine.backend).partitioned_construction(train, cfg.engine.zero_for(job), dist, torch_dtype(model_cfg.dtype, dist.device_type),
                                  hidden):
        return load_pretrained(*args)


def activation_checkpointing(model, cfg: ModelConfig):
    """Recompute activations in backward when ``model.activation_checkpointing`` (non-reentrant, so
    frozen inputs under LoRA need nothing extra)."""
    if cfg.activation_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model


def apply_lora(model, cfg: TrainConfig, job: str = "base"):
    """Wrap ``model`` with peft LoRA adapters; unknown target modules are a clear error naming the key."""
    if not cfg.lora.enabled:
        return model
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    linear = sorted({name.split(".")[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)})
    missing = [t for t in cfg.lora.targets if t not in linear]
    if missing:
        raise ConfigError(f"{TRAIN_KEYS[job]}.lora.targets: no Linear module named {', '.join(missing)} in this model; "
                          f"valid: {', '.join(linear)}")
    peft_cfg = PeftLoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                              target_modules=list(cfg.lora.targets), task_type="CAUSAL_LM")
    return get_peft_model(model, peft_cfg)
