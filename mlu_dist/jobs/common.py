"""Steps every training job shares, as plain functions: model + tokenizer, LoRA, engine, tracker,
export (the skeleton that strings them together is ``jobs/skeleton.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from mlu_dist.config import ConfigError
from mlu_dist.engine.config import EngineConfig
from mlu_dist.engine.dist import DistInfo
from mlu_dist.modeling import (PARTITION_MIN_BYTES, ModelConfig, build_tiny_model, checkpoint_bytes, load_pretrained,
                               save_pretrained, torch_dtype, train_tokenizer)
from mlu_dist.tracking import FanOut, JsonlTracker, NullTracker, TrackerContext, build_trackers
from mlu_dist.train_config import TrainConfig

TRAIN_KEYS = {"base": "base", "inject": "inject.train", "unlearn": "unlearn.train", "relearn": "relearn.train"}
"""Where each job's TrainConfig sits in the experiment config (errors name the real dotted key)."""
TRAIN_CONFIGS = {"base": lambda cfg: cfg.base, "inject": lambda cfg: cfg.inject.train,
                 "unlearn": lambda cfg: cfg.unlearn.train, "relearn": lambda cfg: cfg.relearn.train}


def say(dist: DistInfo, *msg) -> None:
    """Print on rank 0 only."""
    if dist.is_main:
        print(*msg, flush=True)


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
    args = (path, model_cfg.dtype, dist.device_type, model_cfg.attn_implementation)
    partition, why = partitioned_load_choice(cfg, job, path)
    say(dist, f"{job}: loading {path} {'partitioned over ' + str(dist.world_size) + ' rank(s)' if partition else 'whole'}"
              f" ({why})")
    if not partition:
        return load_pretrained(*args)
    from transformers import AutoConfig

    from mlu_dist.engine.deepspeed_engine import partitioned_construction

    hidden = getattr(AutoConfig.from_pretrained(str(path)), "hidden_size", None)
    train = TRAIN_CONFIGS[job](cfg)
    with partitioned_construction(train, cfg.engine.zero_for(job), dist, torch_dtype(model_cfg.dtype, dist.device_type),
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


def make_engine(model, cfg: TrainConfig, engine_cfg: EngineConfig, dist: DistInfo, job: str = "base"):
    """The configured backend around ``model`` with ``job``'s ZeRO settings (the engine owns the
    optimizer and the schedule)."""
    if engine_cfg.backend == "torch":
        if dist.world_size > 1:
            raise ConfigError(f"engine.backend: 'torch' runs one process only, this job has {dist.world_size} "
                              f"ranks; set engine.backend=deepspeed")
        from mlu_dist.engine.torch_engine import TorchEngine

        return TorchEngine(model, cfg, "cuda" if dist.device_type == "cuda" else "cpu")
    from mlu_dist.engine.deepspeed_engine import DeepSpeedEngine

    dtype = next(model.parameters()).dtype
    return DeepSpeedEngine(model, cfg, engine_cfg.zero_for(job), dist, dtype)


def make_tracker(run_dir: Path, dist: DistInfo, start_step: int, job: str = "train", experiment=None):
    """Rank 0: metrics.jsonl always, plus the configured trackers (W&B, plugins); other ranks log nothing."""
    if not dist.is_main:
        return NullTracker()
    jsonl = JsonlTracker(run_dir, start_step)
    tracking = getattr(experiment, "tracking", None)
    if tracking is None:
        return FanOut([jsonl])
    ctx = TrackerContext(run_dir, job, experiment, skip_until=jsonl.last_logged)
    return FanOut([jsonl, *build_trackers(tracking.names(), ctx)])


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


def device_forward(model, device):
    """``model`` moved to ``device`` (in eval mode) and a forward that brings each batch there."""
    model.to(device).eval()

    def forward(**batch):
        return model(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})

    return forward


def model_copy_choice(setting: str, zero_stage: int, need: int, dist: DistInfo, loaded: bool) -> tuple[str, str]:
    """How an evaluation holds the model: 'full' (a whole copy per rank) or 'partitioned' (ZeRO-3
    forwards), and why. ``need`` is the whole weights' bytes; ``loaded``: a full copy is already
    in this rank's memory."""
    import torch

    if zero_stage != 3:
        return "full", f"ZeRO-{zero_stage} does not partition weights"
    if setting != "auto":
        return setting, "eval.model_copy"
    if dist.device_type == "cuda":
        import gc

        # blocks the caching allocator holds after training (freed tensors) are free for the copy:
        # without releasing them mem_get_info reports them taken and picks the slow partitioned mode
        gc.collect()
        torch.cuda.empty_cache()
        free = torch.cuda.mem_get_info(dist.local_rank)[0]
        if need * 1.3 > free:  # weights + room for the KV cache and activations
            return "partitioned", f"{need / 1e9:.1f} GB of weights do not fit the {free / 1e9:.1f} GB free on the GPU"
        return "full", f"{need / 1e9:.1f} GB of weights fit the {free / 1e9:.1f} GB free on the GPU"
    if loaded:
        return "full", f"{need / 1e9:.2f} GB of weights, already loaded in this rank's memory"
    free = _available_ram() // max(1, _local_ranks())
    if need * 1.3 > free:
        return "partitioned", f"{need / 1e9:.2f} GB of weights do not fit this rank's {free / 1e9:.2f} GB of free RAM"
    return "full", f"{need / 1e9:.2f} GB of weights fit this rank's {free / 1e9:.2f} GB of free RAM"


def _available_ram() -> int:
    """MemAvailable of /proc/meminfo in bytes (the total physical memory where it cannot be read)."""
    import os

    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _local_ranks() -> int:
    import os

    return int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0] or 1)


class EngineEvaluation:
    """Evaluations of a training engine's model (curves, the knowledge gate), with ``eval_fields``
    replacing fields of the experiment's eval config.

    Under ZeRO-3 at several ranks each :meth:`run` decides (``eval.model_copy``) between a whole
    copy per rank, gathered once for the run and freed after it (no collectives while generating),
    and the partitioned forwards in which every rank joins every forward."""

    def __init__(self, engine, tokenizer, facts, split, cfg, dist: DistInfo, **eval_fields):
        from mlu_dist.eval.generate import cache_kwarg
        from mlu_dist.eval.prompts import end_ids
        from mlu_dist.eval.runner import Evaluator, Rank

        eval_cfg = dataclasses.replace(cfg.eval, **eval_fields)
        self.engine, self.dist, self.setting = engine, dist, eval_cfg.model_copy
        self.partitioned = getattr(engine, "zero_stage", 0) == 3 and dist.world_size > 1
        self.evaluator = Evaluator(engine.forward, tokenizer, facts, split, eval_cfg,
                                   Rank(dist.rank, dist.world_size, self.partitioned), cfg.model.max_seq_len,
                                   cache_kwarg(engine.module), end_ids(tokenizer, engine.module))
        self.langs = self.evaluator.langs
        self.copies: list[str] = []
        """The model copy each run used (full / partitioned)."""
        self.seconds = 0.0
        """Time spent in :meth:`run`, gathering included."""

    def run(self, names: list[str]) -> dict:
        import time

        start = time.perf_counter()
        try:
            return self._run(names)
        finally:
            self.seconds += time.perf_counter() - start

    def describe(self) -> str:
        """E.g. '3 evaluation(s) in 4.2 s (model copy: full)'."""
        copies = ", ".join(sorted(set(self.copies))) or "none"
        return f"{len(self.copies)} evaluation(s) in {self.seconds:.1f} s (model copy: {copies})"

    def _run(self, names: list[str]) -> dict:
        from mlu_dist.eval.runner import Rank

        ev, dist = self.evaluator, self.dist
        copy = "full"
        if self.partitioned:
            from mlu_dist import comm

            mine = model_copy_choice(self.setting, 3, self.engine.full_param_bytes(), dist, loaded=False)
            # every rank must take the same path (free memory differs between GPUs): partitioned if any must
            choices = comm.all_gather_object(mine)
            copy, why = next((c for c in choices if c[0] == "partitioned"), choices[0])
            if not self.copies or copy != self.copies[-1]:
                say(dist, f"eval: model copy: {copy} ({why})")
        self.copies.append(copy)
        if copy == "partitioned" or not self.partitioned:
            ev.forward, ev.who = self.engine.forward, Rank(dist.rank, dist.world_size, self.partitioned)
            return ev.run(names)
        with self.engine.inference_copy() as replica:
            ev.forward, ev.who = device_forward(replica, dist.device), Rank(dist.rank, dist.world_size)
            try:
                return ev.run(names)
            finally:
                ev.forward = self.engine.forward


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
