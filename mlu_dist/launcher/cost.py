"""What a sweep will cost before it runs: per-GPU memory of every training job, GPU-hours, disk.

Pure arithmetic on the architecture (no torch, nothing downloaded): the tiny model's fields, a
local model directory's config.json, or a known hub architecture (Llama-3.1-8B). Mixed precision
as DeepSpeed runs it on GPUs, counted the way DeepSpeed's own estimators count model states
(`estimate_zero2/3_model_states_mem_needs`; a test checks the agreement), bytes per parameter:

- trained weights: bf16 weights 2 and bf16 gradients 2, plus 16 of optimizer state (fp32
  master weights, Adam's two moments, fp32 gradient partition). ZeRO-1 shards the 16, ZeRO-2
  the gradients too, ZeRO-3 all 18 (and needs a gather buffer of 4 x the largest layer's
  parameters). Optimizer offload moves the 16 (and under ZeRO-2 the gradients) to CPU RAM,
  parameter offload the weights too;
- frozen weights (the base under LoRA, the NPO/KL/DPO reference): 2, sharded only by ZeRO-3;
- activations per token and layer, what autograd keeps (``a`` bytes per activation value: 2 in
  bf16, 4 in fp32; sdpa/flash attention: no score matrix stored; checked tensor by tensor in
  tests/test_cost.py). Every RMSNorm keeps an fp32 copy of its input (4h); attention keeps q, k, v
  and its output (o_proj's input), a(2h + 2kv_dim). Full fine-tuning: per norm also the
  normalised input and output (2ah, for the norm's and the next linear's weight gradients), and
  SwiGLU's gate, silu(gate), up and down_proj's input (4aI). LoRA (frozen base linears keep no
  input): SwiGLU 3aI, and per adapted projection of input width d the dropout mask (1 byte on
  GPUs, a float on CPU), the dropout output a d and lora_A's output a r (49 KB per token and
  layer for Llama-3-8B's q/k/v at r = 2048 in bf16). Activation checkpointing keeps a h per
  layer plus one layer recomputed;
- the training loss's logits peak, 12 V bytes per token of one forward (measured on CPU, fp32): the
  fp32 log-softmax kept for backward (4 V) and, in the backward, its gradient and the logits' fp32
  gradient (8 V); in bf16 the logits, their fp32 copy and the log-softmax (10 V) peak lower. A
  micro-batch of several data pools (injection: fake + safe; unlearning: forget + retain) makes one
  forward per pool and keeps every pool's log-softmax until the backward, where the 8 V transient
  is the largest pool's. Evaluation runs bounded (eval/likelihood.py): at most
  ``LOGITS_BUDGET`` of fp32-counted logits per forward plus two log-softmax slices;
- a fixed 2 GB per GPU for the CUDA context, NCCL buffers and allocator slack;
- host RAM per node: what offload moves to CPU for each of the node's ranks plus
  ``HOST_OVERHEAD_GB`` per rank (the process, pinned buffers, the loader), against ``mem_gb``.

Training FLOPs: 6 N per token for full fine-tuning; with LoRA 4 N (forward + activation
gradients through the frozen base) + 6 N_lora. GPU-hours = FLOPs / (peak x MFU); tokens are
steps x global batch x max_seq_len (an upper bound: shorter texts are padded less). Evaluation:
2 N per token of every probe (curve points and the final evaluation; see ``eval_tokens``) at
``EVAL_MFU``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

GB = 1e9
OVERHEAD_GB = 2.0

KNOWN = {  # public configs of architectures the shipped configs name (no download needed)
    "meta-llama/Llama-3.1-8B": dict(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336,
                                    vocab=128256, tied=False),
}
KNOWN["meta-llama/Llama-3.1-8B-Instruct"] = KNOWN["meta-llama/Llama-3.1-8B"]


@dataclass(frozen=True)
class Arch:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool

    @property
    def kv_dim(self) -> int:
        return self.hidden * self.kv_heads // self.heads

    @property
    def layer_params(self) -> int:
        h, i = self.hidden, self.intermediate
        return 2 * h * h + 2 * h * self.kv_dim + 3 * h * i + 2 * h

    @property
    def params(self) -> int:
        embed = self.vocab * self.hidden
        return embed * (1 if self.tied else 2) + self.layers * self.layer_params + self.hidden

    def _linear_shapes(self) -> dict[str, tuple[int, int]]:
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def lora_params(self, r: int, targets) -> int:
        shapes = self._linear_shapes()
        return self.layers * sum(r * sum(shapes[t]) for t in targets if t in shapes)

    def layer_activation_bytes(self, lora=None, act_bytes: int = 2, mask_bytes: int = 1) -> float:
        """Bytes autograd keeps per token in one layer (module doc); ``lora``: the LoraConfig, None
        for full fine-tuning; ``mask_bytes``: one dropout mask value (bool on GPUs, a float on CPU)."""
        h, kv, i, a = self.hidden, self.kv_dim, self.intermediate, act_bytes
        attention = a * (2 * h + 2 * kv) + 4 * self.heads  # q, k, v, output (= o_proj's input), logsumexp
        if lora is None:
            return 2 * (4 * h + 2 * a * h) + attention + 4 * a * i
        shapes = self._linear_shapes()
        adapters = sum((a + (mask_bytes if lora.dropout > 0 else 0)) * shapes[t][0] + a * lora.r
                       for t in lora.targets if t in shapes)
        return 2 * 4 * h + attention + 3 * a * i + adapters

    def logits_bytes(self, pool_tokens) -> float:
        """The training loss's peak over the vocabulary (module doc) for forwards of ``pool_tokens``
        tokens each (one per data pool, all graphs alive until the backward): every pool's fp32
        log-softmax, and the largest pool's two fp32 gradients in the backward."""
        return 4 * self.vocab * sum(pool_tokens) + 8 * self.vocab * max(pool_tokens)

    def activation_bytes(self, pool_tokens, checkpointing: bool, lora=None, act_bytes: int = 2,
                         mask_bytes: int = 1) -> float:
        """Activations of one micro-batch whose pools have ``pool_tokens`` tokens each."""
        per_layer = self.layer_activation_bytes(lora, act_bytes, mask_bytes)
        kept = act_bytes * self.hidden * self.layers + per_layer if checkpointing else per_layer * self.layers
        return kept * sum(pool_tokens) + self.logits_bytes(pool_tokens)


def arch_of(model_cfg) -> Arch:
    """The architecture of a ModelConfig: tiny fields, a local config.json, or a known hub name."""
    if model_cfg.is_tiny:
        return Arch(model_cfg.hidden_size, model_cfg.num_layers, model_cfg.num_heads, model_cfg.num_heads,
                    model_cfg.intermediate_size, model_cfg.vocab_size, True)
    path = Path(model_cfg.name_or_path) / "config.json"
    if path.exists():
        c = json.loads(path.read_text())
        return Arch(c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                    c.get("num_key_value_heads", c["num_attention_heads"]), c["intermediate_size"], c["vocab_size"],
                    bool(c.get("tie_word_embeddings", False)))
    if model_cfg.name_or_path in KNOWN:
        return Arch(**KNOWN[model_cfg.name_or_path])
    raise ValueError(f"model.name_or_path: no config.json at '{model_cfg.name_or_path}' and not a known architecture "
                     f"({', '.join(KNOWN)}); give a local model directory")


def job_memory(arch: Arch, train, zero, gpus: int, seq_len: int, checkpointing: bool, reference: bool,
               param_bytes: int = 2, overhead: float = OVERHEAD_GB * GB, mask_bytes: int = 1,
               pool_rows: tuple[int, ...] = ()) -> dict:
    """Per-GPU bytes of one training job, by component (see the module doc). ``param_bytes``: 2 for
    bf16 mixed precision (GPUs), 4 for fp32 (CPU runs; the 16 bytes of optimizer state are the same:
    DeepSpeed keeps its own fp32 partition, two moments and an fp32 gradient partition either way);
    ``overhead``: the process's fixed share (the CUDA context on a GPU); ``mask_bytes``: see
    :meth:`Arch.layer_activation_bytes`; ``pool_rows``: rows of each data pool's forward in one
    micro-batch (default: one pool of ``micro_batch_size``)."""
    stage, offload, p = zero.stage, zero.offload, param_bytes
    n, lora = arch.params, train.lora.enabled
    trained = arch.lora_params(train.lora.r, train.lora.targets) if lora else n
    shard = gpus if stage == 3 else 1
    largest = max(arch.vocab * arch.hidden, arch.layer_params)
    out = {"weights": p * trained / shard,
           "grads": 0.0 if stage == 3 or stage == 2 and "optimizer" in offload
           else p * trained / (gpus if stage == 2 else 1),
           "optimizer": 0.0 if "optimizer" in offload else 16 * trained / (gpus if stage >= 1 else 1),
           "gather": 4 * largest if stage == 3 else 0.0,
           "frozen": p * n / shard if lora else 0.0,
           "reference": p * n / shard if reference else 0.0,
           "activations": arch.activation_bytes([r * seq_len for r in pool_rows or (train.micro_batch_size,)],
                                                checkpointing, train.lora if lora else None, p, mask_bytes),
           "overhead": overhead}
    if "params" in offload:
        out["weights"] = out["frozen"] = out["reference"] = 0.0
    out["total"] = sum(out.values())
    return out


HOST_OVERHEAD_GB = 4.0
"""Host RAM of one GPU rank beside what offload puts there: the Python process, pinned transfer
buffers, the data and tokenizer, a loading shard."""


def host_memory(arch: Arch, train, zero, gpus: int, ranks_per_node: int, param_bytes: int = 2) -> float:
    """Host RAM bytes per node: each of the node's ranks holds its share of what offload moves to CPU
    (the 16 optimizer bytes per trained parameter, sharded over the ``gpus``; with parameter offload
    its ZeRO-3 shard of the weights and the frozen base too) plus ``HOST_OVERHEAD_GB``."""
    n, lora = arch.params, train.lora.enabled
    trained = arch.lora_params(train.lora.r, train.lora.targets) if lora else n
    per_rank = 16 * trained / gpus if "optimizer" in zero.offload else 0.0
    if "params" in zero.offload:
        per_rank += param_bytes * (trained + (n if lora else 0)) / gpus
    return ranks_per_node * (per_rank + HOST_OVERHEAD_GB * GB)


def eval_memory(arch: Arch, max_len: int, batch_size: int, param_bytes: int = 2,
                overhead: float = OVERHEAD_GB * GB) -> dict:
    """Per-rank bytes of an evaluation holding the whole model (ZeRO 0-2): the weights and the bounded
    likelihood pass (eval/likelihood.py): rows per forward capped by its logits budget, the logits in
    the model's dtype and two fp32 log-softmax slices. Generation keeps only the last position's
    logits and a KV cache of 2 x layers x kv_dim values per token (small beside these)."""
    from mlu_dist.eval.likelihood import LOGSOFTMAX_CHUNK, logit_rows

    rows = min(batch_size, logit_rows(max_len, arch.vocab))
    out = {"weights": param_bytes * arch.params,
           "logits": rows * max_len * arch.vocab * param_bytes + 2 * LOGSOFTMAX_CHUNK, "overhead": overhead}
    out["total"] = sum(out.values())
    return out


def export_memory(arch: Arch, param_bytes: int = 2, overhead: float = OVERHEAD_GB * GB) -> dict:
    """Bytes of ``mlu export`` (one process): the checkpoint's consolidated state dict and the model it
    is loaded into (LoRA merged in place)."""
    out = {"state": param_bytes * arch.params, "model": param_bytes * arch.params, "overhead": overhead}
    out["total"] = sum(out.values())
    return out


def train_flops(arch: Arch, train, tokens: float) -> float:
    if train.lora.enabled:
        return (4 * arch.params + 6 * arch.lora_params(train.lora.r, train.lora.targets)) * tokens
    return 6 * arch.params * tokens


def checkpoint_bytes(arch: Arch, train, zero) -> int:
    """One resumable checkpoint of the job, all ranks together (bf16 weights; the engine's own count,
    engine/ckpt_size.py): under LoRA the adapters with their optimizer state, and the frozen base only
    at ZeRO-3 (at 0-2 it is reloaded from the starting model: engine.checkpoint.frozen_base_source)."""
    from mlu_dist.engine.ckpt_size import ds_checkpoint_bytes

    trained = arch.lora_params(train.lora.r, train.lora.targets) if train.lora.enabled else arch.params
    frozen = arch.params if train.lora.enabled and zero.stage >= 3 else 0
    return ds_checkpoint_bytes(trained, 2 * trained, 2 * frozen, zero.stage, mixed=True)


def disk_bytes(arch: Arch, train, zero) -> dict:
    """The export, the checkpoint kept after the run (none when dropped), one checkpoint (``one``), and
    while it runs the ``keep_checkpoints`` newest plus the one being written (``running``, not left
    behind)."""
    ckpt = checkpoint_bytes(arch, train, zero)
    return {"export": 2 * arch.params, "checkpoint": 0 if train.final_checkpoint == "drop" else ckpt,
            "one": ckpt, "running": ckpt * (train.keep_checkpoints + 1)}


def suggest(arch: Arch, train, zero, gpus: int, seq_len: int, checkpointing: bool, reference: bool,
            limit: float, key: str = "engine.zero", pool_rows: tuple[int, ...] = ()) -> str:
    """The first change (in order of cost) that makes the job fit, or '' if none found; ``key`` is
    where the job's ZeRO settings are (engine.zero, or engine.jobs.<job>)."""
    from dataclasses import replace

    tries = []
    if not checkpointing:
        tries.append(("model.activation_checkpointing=true", zero, True))
    if zero.stage < 3 and not train.lora.enabled:
        tries.append((f"{key}.stage=3", replace(zero, stage=3), True))
    if train.lora.enabled and zero.stage < 2:
        tries.append((f"{key}.stage=2", replace(zero, stage=2), True))
    tries.append((f"{key}.offload=optimizer", replace(zero, offload="optimizer"), True))
    if zero.stage == 3 or not train.lora.enabled:
        tries.append((f"{key}.stage=3 {key}.offload=optimizer+params",
                      replace(zero, stage=3, offload="optimizer+params"), True))
    for what, z, ckpt in tries:
        if job_memory(arch, train, z, gpus, seq_len, ckpt, reference, pool_rows=pool_rows)["total"] <= limit:
            return what
    return ""


MFU = 0.35
"""Assumed model-FLOPs utilisation for GPU-hours (torchtitan measures 33-39 % for Llama-3.1-8B on H100)."""


def train_of(cfg, job: str):
    """The TrainConfig of ``job`` in the experiment config ``cfg``."""
    return {"base": cfg.base, "inject": cfg.inject.train, "unlearn": cfg.unlearn.train, "relearn": cfg.relearn.train}[job]


def _pool_examples(cell) -> int | None:
    """Examples in the job's main pool, from the config alone (None: not known before the data)."""
    cfg = cell.config
    if cell.stage == "inject":
        return cfg.inject.n_targets * len(cfg.inject.langs) * (2 if cfg.inject.fake_qa else 1)
    if cell.stage == "unlearn":
        from mlu_dist.unlearn.config import resolve_langs

        forget = resolve_langs(cfg.unlearn.forget_langs, list(cfg.inject.langs), list(cfg.data.langs),
                               cfg.data.groups)
        return cfg.inject.n_targets * len(forget) * 2
    return None


def pool_rows(cfg, job: str) -> tuple[int, ...]:
    """Rows of each data pool's forward in one micro-batch of ``job`` under the experiment config
    ``cfg``: the injection's fake and English safe shares, an unlearning method's pools (forget,
    retain, ...) each a whole micro-batch."""
    train = train_of(cfg, job)
    if job == "inject":
        from mlu_dist.inject.data import per_micro_batch

        return tuple(per_micro_batch(train.micro_batch_size, cfg.inject.fake_fraction, True).values())
    if job == "unlearn":
        from mlu_dist.unlearn.methods import METHODS, wanted_pools

        return (train.micro_batch_size,) * len(wanted_pools(METHODS[cfg.unlearn.method], cfg.unlearn.retain_weight))
    return (train.micro_batch_size,)


def cell_cost(cell, res, job: str | None = None) -> dict:
    """Memory per GPU, GPU-hours and disk of one training cell under its stage's resources; with
    ``job="relearn"``, of one of its relearning attacks (they run inside the cell's job, on its
    resources, with ``engine.zero_for("relearn")``; no reference model; an export only with
    ``relearn.keep_model``)."""
    from mlu_dist.unlearn.methods import METHODS

    job = job or cell.stage
    cfg, train = cell.config, train_of(cell.config, job)
    arch = arch_of(cfg.model)
    ranks = res.nodes * res.tasks_per_node
    gpus = res.nodes * res.gpus_per_node
    # under LoRA the reference is the trained model with its adapters off (engine/adapter_reference.py)
    reference = job == "unlearn" and METHODS[cfg.unlearn.method].needs_reference and not train.lora.enabled
    ckpt, seq = cfg.model.activation_checkpointing, cfg.model.max_seq_len
    zero = cfg.engine.zero_for(job)
    rows = pool_rows(cfg, job)
    mem = job_memory(arch, train, zero, max(gpus, 1), seq, ckpt, reference, pool_rows=rows)
    steps = train.steps
    if job != "relearn" and train.epochs and _pool_examples(cell):
        main = max(1, round(train.micro_batch_size * cfg.inject.fake_fraction)) if cell.stage == "inject" \
            else train.micro_batch_size
        steps = math.ceil(train.epochs * _pool_examples(cell) / (main * train.grad_accum * ranks))
    tokens = steps * train.micro_batch_size * train.grad_accum * ranks * seq
    disk = disk_bytes(arch, train, zero)
    if job == "relearn" and not cfg.relearn.keep_model:
        disk |= {"export": 0, "checkpoint": 0}
    out = {"gpus": gpus, "memory": mem, "steps": steps, "tokens": tokens, "disk": disk,
           "params": arch.params, "trained": arch.lora_params(train.lora.r, train.lora.targets)
           if train.lora.enabled else arch.params}
    if gpus:
        out["gpu_hours"] = train_flops(arch, train, tokens) / (res.gpu_tflops * 1e12 * MFU) / 3600
        if job != "base":
            out["eval_gpu_hours"] = 2 * arch.params * eval_tokens(cell, job, steps) / (res.gpu_tflops * 1e12 * EVAL_MFU) / 3600
        limit = res.gpu_mem_gb * GB
        out["host"] = host_memory(arch, train, zero, max(gpus, 1), res.tasks_per_node)
        out["host_fits"] = out["host"] <= res.mem_gb * GB
        out["fits"] = mem["total"] <= limit
        if not out["fits"]:
            key = f"engine.jobs.{job}" if job in cfg.engine.jobs else "engine.zero"
            out["suggest"] = suggest(arch, train, zero, gpus, seq, ckpt, reference, limit, key, rows)
    return out


PROMPT_TOKENS = 64
"""Assumed tokens of one probe prompt (a question in a template) when costing evaluation."""
EVAL_MFU = 0.05
"""Assumed model-FLOPs utilisation of generation (token-by-token decoding is memory-bound)."""


def eval_tokens(cell, job: str, steps: int) -> float:
    """Tokens a training job's evaluations process: its curve points (step 0, every ``eval_every``, the
    last; ``curve_subset`` facts each) and its final evaluation on every fact, in every language, each
    probe ``PROMPT_TOKENS`` + ``max_new_tokens`` per sample (generation; scoring passes are shorter)."""
    cfg = cell.config
    train = train_of(cfg, job)
    langs = len(cfg.eval.langs or cfg.data.langs)
    targets, controls = cfg.inject.n_targets, cfg.inject.n_controls
    subset = {"unlearn": cfg.unlearn.curve_subset, "relearn": cfg.relearn.curve_subset}.get(job, 0)
    per_point = min(subset, targets) + min(subset, controls) if subset else targets + controls
    points = steps // train.eval_every + 1 if train.eval_every else 0
    prompts = (points * per_point + targets + controls) * langs * cfg.eval.n_samples
    return prompts * (PROMPT_TOKENS + cfg.eval.max_new_tokens)


def sweep_cost(spec, cells) -> tuple[str, list[str]]:
    """The cost table of a sweep's training jobs (cells that cost the same share a row) and the jobs
    that cannot fit (empty when all do)."""
    groups: dict[tuple, list] = {}
    jobs = [(c, c.stage) for c in cells if c.stage in ("base", "inject", "unlearn")]
    jobs += [(c, "relearn") for c in cells if c.stage in ("inject", "unlearn") for _ in c.outputs]
    for c, job in jobs:
        res = getattr(spec.resources, c.stage)
        cost = cell_cost(c, res, job)
        zero = c.config.engine.zero_for(job)
        cost["zero"] = f"{zero.stage}" + {"none": "", "optimizer": "+opt", "optimizer+params": "+all"}[zero.offload]
        key = (job, cost["zero"], cost["gpus"], round(cost["memory"]["total"] / GB, 1), cost["steps"],
               round(cost.get("gpu_hours", 0.0), 2), cost.get("fits"), cost.get("host_fits"), cost.get("suggest", ""))
        groups.setdefault(key, []).append((c, cost, res))
    head = (f"{'jobs':<16} {'ZeRO':>4} {'GPUs':>4} {'GB/GPU':>7} {'weights':>8} {'grads':>6} {'optim':>6} {'gather':>6} "
            f"{'frozen':>7} {'ref':>5} {'acts':>6} {'steps':>6} {'GPU-h':>7} {'disk GB':>8}  fits  one ckpt GB  "
            f"ckpt GB while running  host GB/node")
    rows, problems = [head], []
    total_h = total_disk = peak_running = eval_h = 0.0
    for (stage, *_), members in groups.items():
        c, cost, res = members[0]
        m = {k: v / GB for k, v in cost["memory"].items()}
        disk = (cost["disk"]["export"] + cost["disk"]["checkpoint"]) / GB
        total_disk += disk * len(members)
        peak_running = max(peak_running, cost["disk"]["running"] / GB)
        total_h += cost.get("gpu_hours", 0.0) * len(members)
        eval_h += cost.get("eval_gpu_hours", 0.0) * len(members)
        fits = "-" if not cost["gpus"] else "yes" if cost["fits"] else f"NO (> {res.gpu_mem_gb:g} GB)"
        rows.append(f"{f'{stage} x{len(members)}':<16} {cost['zero']:>4} {cost['gpus']:>4} {m['total']:>7.1f} {m['weights']:>8.1f} "
                    f"{m['grads']:>6.1f} {m['optimizer']:>6.1f} {m['gather']:>6.1f} {m['frozen']:>7.1f} {m['reference']:>5.1f} "
                    f"{m['activations']:>6.1f} {cost['steps']:>6} {cost.get('gpu_hours', 0.0):>7.2f} {disk:>8.1f}  {fits}"
                    f"  {cost['disk']['one'] / GB:>11.1f}  {cost['disk']['running'] / GB:>21.1f}"
                    f"  {cost.get('host', 0.0) / GB:>12.1f}")
        if cost["gpus"] and not cost["fits"]:
            fix = f"; it would fit with {cost['suggest']}" if cost.get("suggest") else "; nothing tried fits"
            what = f"{stage} job(s) (e.g. {c.id})" if stage != "relearn" else f"relearning attack(s) (e.g. in {c.id})"
            problems.append(f"{len(members)} {what} need {m['total']:.1f} GB per GPU, "
                            f"resources.{c.stage}.gpu_mem_gb is {res.gpu_mem_gb:g}{fix}")
        if cost["gpus"] and not cost["host_fits"]:
            problems.append(f"{len(members)} {stage} job(s) (e.g. {c.id}) need {cost['host'] / GB:.1f} GB of host RAM per "
                            f"node ({res.tasks_per_node} ranks: offloaded states + {HOST_OVERHEAD_GB:g} GB each), "
                            f"resources.{c.stage}.mem_gb is {res.mem_gb:g}; raise it or offload less")
    first = next((c for c in cells if c.stage in ("base", "inject", "unlearn")), None)
    if first is not None:
        a = arch_of(first.config.model)
        rows.insert(0, f"model: {a.params / 1e9:.2f} B parameters ({first.config.model.name_or_path}); "
                       f"GB/GPU = weights + grads + optimizer + gather + frozen + reference + activations + "
                       f"{OVERHEAD_GB:g} GB overhead")
    rows += ["", f"sweep total: {total_h:.1f} GPU-hours of training at {MFU:.0%} MFU, {eval_h:.1f} GPU-hours of "
                 f"evaluation (2N per token, {PROMPT_TOKENS}-token prompts + eval.max_new_tokens per sample, at "
                 f"{EVAL_MFU:.0%} MFU for memory-bound decoding), "
                 f"{total_disk:.0f} GB of disk (exports + kept checkpoints); a running job's checkpoints take up to "
                 f"{peak_running:.0f} GB (keep_checkpoints + the one being written)"]
    rows += [f"DOES NOT FIT: {p}" for p in problems]
    return "\n".join(rows), problems
