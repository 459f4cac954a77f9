"""`mlu export RUN_DIR`: a checkpoint (any ZeRO stage, LoRA or not) -> a HF model directory.

Runs in one process with no ranks: the backend that wrote the checkpoint consolidates it from the
files (ZeRO shards included). A LoRA checkpoint holding adapters only is merged into the frozen base
its manifest names.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from mlu_dist.engine.checkpoint import Checkpointer
from mlu_dist.engine.engines import ENGINES, consolidate_checkpoint
from mlu_dist.runs.rundir import ResumeError, atomic_dir


def _state_from_checkpoint(ckpt: Path) -> dict:
    state = consolidate_checkpoint(ckpt)  # the backend that wrote the files reads them
    if state is None:
        raise ResumeError(f"{ckpt} holds no model state (no checkpoint files of any backend: {', '.join(ENGINES.names())})")
    return state


def _base_model(config, base: str | None, ckpt: Path):
    """The model the checkpoint's weights load into: the frozen base itself in fp32 (LoRA merges in
    fp32 and is cast once) when the checkpoint holds adapters only, else an uninitialised skeleton."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    if base:
        if Path(base).is_absolute() and not Path(base).exists():
            raise ResumeError(f"checkpoint {ckpt} holds LoRA adapters only; their frozen base {base} is gone")
        return AutoModelForCausalLM.from_pretrained(base, config=copy.deepcopy(config), dtype=torch.float32)
    with no_init_weights():  # every weight comes from the checkpoint: a random 8B init is minutes for nothing
        return AutoModelForCausalLM.from_config(config)


def export_run(run_dir: str | Path, out: str | Path | None = None, checkpoint: str | Path | None = None,
               merge_lora: bool = True, dtype: str = "auto") -> Path:
    """Write ``out`` (default ``RUN_DIR/export``) as safetensors + tokenizer in ``dtype`` ('auto' =
    the dtype the run trained its model in, from hf_init); returns it."""
    from transformers import AutoConfig, AutoTokenizer

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory '{run_dir}' does not exist")
    skeleton = run_dir / "hf_init"
    if not (skeleton / "config.json").exists():
        raise FileNotFoundError(f"{run_dir} has no hf_init/ (model config + tokenizer); is it a training run dir?")
    ckpt = Checkpointer(run_dir, None, 0, 1).resolve(str(checkpoint) if checkpoint else "auto", "--checkpoint")
    if ckpt is None:
        done = run_dir / "DONE.json"
        if done.exists() and "dropped" in str(json.loads(done.read_text()).get("checkpoints", "")):
            raise ResumeError(f"{run_dir}: its checkpoints were dropped after a verified export "
                              f"(train.final_checkpoint=drop); the model is {run_dir / 'model'}")
        raise ResumeError(f"{run_dir} has no complete checkpoint to export (checkpoints/LATEST missing)")
    state = _state_from_checkpoint(ckpt)
    config = AutoConfig.from_pretrained(str(skeleton))
    # the run's own dtype (bf16 on GPU): consolidated ZeRO states are fp32 master weights
    saved_dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    base = json.loads((ckpt / "COMPLETE").read_text()).get("frozen_base")
    model = _base_model(config, base, ckpt)
    lora_file = skeleton / "mlu_lora.json"
    lora = json.loads(lora_file.read_text()) if lora_file.exists() else None
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                                 target_modules=list(lora["targets"]), task_type="CAUSAL_LM"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if base:  # an adapter-only checkpoint: the base's weights came from the base itself
        trained = {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
        missing = [k for k in missing if k in trained]
    if missing or unexpected:
        raise ResumeError(f"checkpoint {ckpt} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if hasattr(model, "peft_config") and merge_lora:
        model = model.merge_and_unload()
    target = getattr(torch, dtype) if dtype != "auto" else saved_dtype if isinstance(saved_dtype, torch.dtype) \
        else getattr(torch, str(saved_dtype)) if saved_dtype else torch.float32
    model = model.to(target)
    out = Path(out) if out else run_dir / "export"
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(skeleton)).save_pretrained(str(tmp))
    return out
