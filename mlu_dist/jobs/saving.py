"""What a training job writes besides checkpoints: the exported HF model (consolidated from the
engine, LoRA merged) and its check, and the run's skeleton (tokenizer and config before training)."""

from __future__ import annotations

from pathlib import Path

import torch

from mlu_dist.engine.dist import DistInfo
from mlu_dist.modeling import save_pretrained
from mlu_dist.train_config import TrainConfig


def export_model(engine, tokenizer, out_dir: Path, dist: DistInfo, merge_lora: bool = True) -> Path | None:
    """Consolidate the engine's weights into a HF directory (safetensors + tokenizer) on rank 0.

    Every rank must call this (ZeRO-3 gathers parameters collectively)."""
    from mlu_dist.runs.rundir import atomic_dir

    state = engine.full_state_dict()
    if dist.is_main:
        module = engine.module
        if hasattr(module, "peft_config") and merge_lora:  # LoRA runs at ZeRO 0-2: the module holds full weights
            save_pretrained(module.merge_and_unload(), tokenizer, out_dir)
        else:  # whole (temp dir renamed into place) or not at all
            with atomic_dir(out_dir) as tmp:
                if hasattr(module, "peft_config"):
                    module.save_pretrained(str(tmp))
                else:
                    module.save_pretrained(str(tmp), state_dict=state, safe_serialization=True)
                tokenizer.save_pretrained(str(tmp))
    engine.barrier()
    return out_dir if dist.is_main else None


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
