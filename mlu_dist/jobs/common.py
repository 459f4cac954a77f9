"""Steps every training job shares: model + tokenizer, engine, resume, the loop, export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mlu_dist.engine.checkpoint import Checkpointer
from mlu_dist.engine.config import EngineConfig, TrainConfig
from mlu_dist.engine.data import BatchPlan, Encoded, Example, encode
from mlu_dist.engine.dist import DistInfo
from mlu_dist.engine.loop import LoopHooks, LoopResult, Objective, train_loop
from mlu_dist.modeling import ModelConfig, build_tiny_model, load_pretrained, save_pretrained, torch_dtype, train_tokenizer
from mlu_dist.tracking import FanOut, JsonlTracker, NullTracker


def say(dist: DistInfo, *msg) -> None:
    """Print on rank 0 only."""
    if dist.is_main:
        print(*msg, flush=True)


def model_and_tokenizer(cfg: ModelConfig, dist: DistInfo, corpus_texts: list[str] | None = None,
                        init_from: str | Path | None = None, seed: int = 0):
    """A model to train: loaded from ``init_from`` / ``cfg.name_or_path``, or a fresh tiny Llama
    whose tokenizer is trained on ``corpus_texts`` (deterministic, so every rank builds the same)."""
    if init_from is not None:
        return load_pretrained(init_from, cfg.dtype, dist.device_type)
    if not cfg.is_tiny:
        return load_pretrained(cfg.name_or_path, cfg.dtype, dist.device_type)
    if not corpus_texts:
        raise ValueError("a tiny model needs a corpus to train its tokenizer on")
    tokenizer = train_tokenizer(corpus_texts, cfg.vocab_size)
    model = build_tiny_model(cfg, tokenizer, seed=seed).to(torch_dtype(cfg.dtype, dist.device_type))
    return model, tokenizer


def apply_lora(model, cfg: TrainConfig):
    """Wrap ``model`` with peft LoRA adapters; unknown target modules are a clear error."""
    if not cfg.lora.enabled:
        return model
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    linear = sorted({name.split(".")[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)})
    missing = [t for t in cfg.lora.targets if t not in linear]
    if missing:
        from mlu_dist.config import ConfigError

        raise ConfigError(f"train.lora.targets: no Linear module named {', '.join(missing)} in this model; "
                          f"valid: {', '.join(linear)}")
    peft_cfg = PeftLoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                              target_modules=list(cfg.lora.targets), task_type="CAUSAL_LM")
    return get_peft_model(model, peft_cfg)


def make_engine(model, cfg: TrainConfig, engine_cfg: EngineConfig, dist: DistInfo):
    if engine_cfg.backend == "torch":
        if dist.world_size > 1:
            from mlu_dist.config import ConfigError

            raise ConfigError("train.backend=torch runs one process only; use backend=deepspeed for several ranks")
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


def encode_all(tokenizer, examples: list[Example], max_len: int) -> list[Encoded]:
    return [encode(tokenizer, ex, max_len) for ex in examples]


@dataclass
class TrainOutcome:
    result: LoopResult
    engine: object
    checkpointer: Checkpointer
    tracker: object  # still open: the job logs its final summary, then closes it


def train(model, tokenizer, objective_factory, pools: dict[str, list[Encoded]], per_micro: dict[str, int],
          cfg: TrainConfig, engine_cfg: EngineConfig, dist: DistInfo, run_dir: Path, hooks_factory=None,
          desc: str = "train", streams: dict[str, str] | None = None, job: str = "train",
          experiment=None) -> TrainOutcome:
    """Set up the engine, resume if a checkpoint exists, run the loop, save the final checkpoint.

    ``per_micro`` is each pool's examples per rank per micro-batch; ``objective_factory(scale)`` and
    ``hooks_factory(engine, start_step)`` build what needs the geometry or the engine.
    """
    from mlu_dist.config import ConfigError

    per_step = {k: v * cfg.grad_accum * dist.world_size for k, v in per_micro.items()}
    plan = BatchPlan(pools, per_step, cfg.seed, streams)
    problems = plan.check_geometry(dist.world_size, cfg.grad_accum)
    if problems:
        raise ConfigError("; ".join(problems))
    engine = make_engine(model, cfg, engine_cfg, dist)
    checkpointer = Checkpointer(run_dir, engine, dist.rank, dist.world_size, cfg.keep_checkpoints)
    start = 0
    resume_from = checkpointer.resolve(cfg.resume)
    if resume_from is not None:
        client = checkpointer.load(resume_from)
        start = int(client["step"])
        say(dist, f"resumed from {resume_from} (step {start})")
    tracker = make_tracker(run_dir, dist, start, job, experiment)
    hooks = hooks_factory(engine, start) if hooks_factory else LoopHooks()
    objective: Objective = objective_factory(dist.world_size * cfg.grad_accum)
    result = train_loop(engine, objective, plan, cfg, dist, tracker, checkpointer, hooks, start,
                        tokenizer.pad_token_id, desc)
    if not result.interrupted and not result.stop_reason and result.end_step > result.start_step:
        checkpointer.save(result.end_step, hooks.checkpoint_state())
    return TrainOutcome(result, engine, checkpointer, tracker)


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


def dtype_of(cfg: ModelConfig, dist: DistInfo) -> torch.dtype:
    return torch_dtype(cfg.dtype, dist.device_type)


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
