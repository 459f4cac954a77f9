"""Steps every training job shares, as plain functions: model + tokenizer, LoRA, engine, tracker,
export (the skeleton that strings them together is ``jobs/skeleton.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from mlu_dist.config import ConfigError
from mlu_dist.engine.config import EngineConfig
from mlu_dist.engine.dist import DistInfo
from mlu_dist.modeling import ModelConfig, build_tiny_model, load_pretrained, save_pretrained, torch_dtype, train_tokenizer
from mlu_dist.tracking import FanOut, JsonlTracker, NullTracker
from mlu_dist.train_config import TrainConfig

TRAIN_KEYS = {"base": "base", "inject": "inject.train", "unlearn": "unlearn.train"}
"""Where each job's TrainConfig sits in the experiment config (errors name the real dotted key)."""


def say(dist: DistInfo, *msg) -> None:
    """Print on rank 0 only."""
    if dist.is_main:
        print(*msg, flush=True)


def model_and_tokenizer(cfg: ModelConfig, dist: DistInfo, corpus_texts: list[str] | None = None,
                        init_from: str | Path | None = None, seed: int = 0):
    """A model to train: loaded from ``init_from`` / ``cfg.name_or_path``, or a fresh tiny Llama
    whose tokenizer is trained on ``corpus_texts`` (deterministic, so every rank builds the same)."""
    if init_from is not None:
        return load_pretrained(init_from, cfg.dtype, dist.device_type, cfg.attn_implementation)
    if not cfg.is_tiny:
        return load_pretrained(cfg.name_or_path, cfg.dtype, dist.device_type, cfg.attn_implementation)
    if not corpus_texts:
        raise ValueError("a tiny model needs a corpus to train its tokenizer on")
    tokenizer = train_tokenizer(corpus_texts, cfg.vocab_size)
    model = build_tiny_model(cfg, tokenizer, seed=seed).to(torch_dtype(cfg.dtype, dist.device_type))
    return model, tokenizer


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


def make_engine(model, cfg: TrainConfig, engine_cfg: EngineConfig, dist: DistInfo):
    """The configured backend around ``model`` (the engine owns the optimizer and the schedule)."""
    if engine_cfg.backend == "torch":
        if dist.world_size > 1:
            raise ConfigError(f"engine.backend: 'torch' runs one process only, this job has {dist.world_size} "
                              f"ranks; set engine.backend=deepspeed")
        from mlu_dist.engine.torch_engine import TorchEngine

        return TorchEngine(model, cfg, "cuda" if dist.device_type == "cuda" else "cpu")
    from mlu_dist.engine.deepspeed_engine import DeepSpeedEngine

    dtype = next(model.parameters()).dtype
    return DeepSpeedEngine(model, cfg, engine_cfg.zero, dist, dtype)


def make_tracker(run_dir: Path, dist: DistInfo, start_step: int, job: str = "train", experiment=None):
    """Rank 0: metrics.jsonl always, W&B when configured; other ranks log nothing."""
    if not dist.is_main:
        return NullTracker()
    jsonl = JsonlTracker(run_dir, start_step)
    trackers = [jsonl]
    tracking = getattr(experiment, "tracking", None)
    if tracking is not None and tracking.wandb and tracking.mode != "disabled":
        from mlu_dist.config import to_dict
        from mlu_dist.wandb_tracker import WandbTracker

        trackers.append(WandbTracker(run_dir, job, to_dict(experiment), tracking.project, tracking.entity,
                                     tracking.group, tracking.tags, tracking.mode, skip_until=jsonl.last_logged))
    return FanOut(trackers)


def export_model(engine, tokenizer, out_dir: Path, dist: DistInfo, merge_lora: bool = True) -> Path | None:
    """Consolidate the engine's weights into a HF directory (safetensors + tokenizer) on rank 0.

    Every rank must call this (ZeRO-3 gathers parameters collectively)."""
    state = engine.full_state_dict()
    if dist.is_main:
        module = engine.module
        if hasattr(module, "peft_config"):
            if merge_lora:  # LoRA runs at ZeRO 0-2, so the module holds full weights here
                model = module.merge_and_unload()
                save_pretrained(model, tokenizer, out_dir)
            else:
                module.save_pretrained(str(out_dir))
                tokenizer.save_pretrained(str(out_dir))
        else:
            module.save_pretrained(str(out_dir), state_dict=state, safe_serialization=True)
            tokenizer.save_pretrained(str(out_dir))
    engine.barrier()
    return out_dir if dist.is_main else None


def engine_evaluator(engine, tokenizer, facts, split, cfg, dist: DistInfo, **eval_fields):
    """An evaluator on a training engine's model (its forward, KV-cache argument and end ids), with
    ``eval_fields`` replacing fields of the experiment's eval config; under ZeRO-3 at several ranks
    every rank joins every forward."""
    from mlu_dist.eval.generate import cache_kwarg
    from mlu_dist.eval.prompts import end_ids
    from mlu_dist.eval.runner import Evaluator, Rank

    eval_cfg = dataclasses.replace(cfg.eval, **eval_fields)
    lockstep = cfg.engine.zero.stage == 3 and dist.world_size > 1
    return Evaluator(engine.forward, tokenizer, facts, split, eval_cfg, Rank(dist.rank, dist.world_size, lockstep),
                     cfg.model.max_seq_len, cache_kwarg(engine.module), end_ids(tokenizer, engine.module))


def export_problems(model_dir: Path) -> list[str]:
    """What is wrong with an exported HF directory: no config, or weights the architecture needs
    missing from its safetensors files (read from headers, the architecture built on the meta
    device: cheap at 8B)."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        return [f"{model_dir}: no config.json"]
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return [f"{model_dir}: no safetensors weights"]
    saved = set()
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            saved |= set(fh.keys())
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(model_dir)))
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    missing = sorted(set(model.state_dict()) - saved - tied)
    return [f"{model_dir}: {len(missing)} weight(s) missing, e.g. {missing[:3]}"] if missing else []


def save_skeleton(model, tokenizer, run_dir: Path, dist: DistInfo, train_cfg: TrainConfig) -> None:
    """The model's HF config, the tokenizer and the LoRA settings (no weights) in ``run_dir/hf_init``,
    so ``mlu export`` can rebuild the architecture from a checkpoint alone."""
    if dist.is_main:
        import dataclasses
        import json

        out = Path(run_dir) / "hf_init"
        out.mkdir(parents=True, exist_ok=True)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        base.config.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        lora = dataclasses.asdict(train_cfg.lora) if train_cfg.lora.enabled else None
        (out / "mlu_lora.json").write_text(json.dumps(lora) + "\n")
