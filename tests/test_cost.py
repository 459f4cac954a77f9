"""`mlu sweep plan --cost`: the memory model against DeepSpeed's own estimators, the 8B arithmetic,
and a sweep that cannot fit refused before anything is submitted."""

import pytest

from mlu_dist.config import ConfigError, load_config
from mlu_dist.engine.config import ZeroConfig
from mlu_dist.launcher.cost import GB, KNOWN, Arch, job_memory
from mlu_dist.launcher.spec import SweepSpec
from mlu_dist.train_config import LoraConfig, TrainConfig

LLAMA8B = Arch(**KNOWN["meta-llama/Llama-3.1-8B"])


def _states(mem: dict) -> float:
    return mem["weights"] + mem["grads"] + mem["optimizer"] + mem["gather"]


def test_llama_8b_parameter_counts_match_the_published_architecture():
    assert LLAMA8B.params == 8_030_261_248  # Llama-3.1-8B's parameter count
    assert round(LLAMA8B.lora_params(2048, ["q_proj", "k_proj", "v_proj"]) / 1e9, 2) == 1.21  # the paper's adapters


@pytest.mark.parametrize("stage,gpus,nodes,offload", [(3, 8, 2, "none"), (3, 8, 1, "none"), (3, 8, 2, "optimizer"),
                                                       (2, 8, 1, "none"), (2, 4, 1, "optimizer")])
def test_model_states_agree_with_deepspeeds_estimators(stage, gpus, nodes, offload):
    """DeepSpeed 0.19.8's estimators (model states only; no activations, no overhead)."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    n = LLAMA8B.params
    largest = max(LLAMA8B.vocab * LLAMA8B.hidden, LLAMA8B.layer_params)
    if stage == 3:
        ds = estimate_zero3_model_states_mem_needs(n, largest, gpus, nodes, cpu_offload=offload != "none",
                                                   cpu_offload_params=False, zero_init=True)[1]
    else:
        ds = estimate_zero2_model_states_mem_needs(n, gpus, nodes, cpu_offload=offload != "none")[1]
    ours = _states(job_memory(LLAMA8B, TrainConfig(micro_batch_size=1), ZeroConfig(stage=stage, offload=offload),
                              gpus * nodes, 512, False, False))
    assert ours == pytest.approx(ds, rel=0.01), (ours / GB, ds / GB)


def test_lora_freezes_the_base_and_checkpointing_cuts_activations():
    lora = TrainConfig(micro_batch_size=2, lora=LoraConfig(enabled=True, r=2048, alpha=64, targets=["q_proj", "k_proj",
                                                                                                      "v_proj"]))
    mem = job_memory(LLAMA8B, lora, ZeroConfig(stage=2), 4, 1024, False, False)
    assert mem["frozen"] == pytest.approx(2 * LLAMA8B.params) and mem["weights"] < 0.2 * mem["frozen"]
    ckpt = job_memory(LLAMA8B, lora, ZeroConfig(stage=2), 4, 1024, True, False)
    logits = LLAMA8B.logits_bytes([2 * 1024])  # checkpointing keeps the loss's peak as it is
    assert ckpt["activations"] - logits < 0.1 * (mem["activations"] - logits)


def test_a_sweep_that_cannot_fit_is_refused_before_anything_is_written(tmp_path):
    from mlu_dist.launcher.run import submit

    spec = load_config(SweepSpec, ["sweeps/slurm-8b"], [f"out_dir={tmp_path}", "resources.unlearn.gpu_mem_gb=40",
                                                     "axes.inject_langs=[de]", "axes.seeds=[0]"])
    with pytest.raises(ConfigError, match=r"do not fit(.|\n)*DOES NOT FIT: 4 unlearn job\(s\).*40(.|\n)*would fit "
                                          r"with engine.zero.offload=optimizer"):
        submit(spec)
    assert not any(tmp_path.iterdir())


def test_per_job_zero_settings_are_costed_and_named_in_the_fix(tmp_path):
    from mlu_dist.launcher.run import submit

    spec = load_config(SweepSpec, ["sweeps/slurm-8b"], [
        f"out_dir={tmp_path}", "resources.unlearn.gpu_mem_gb=40", "axes.inject_langs=[de]", "axes.seeds=[0]",
        "overrides=[engine.jobs.inject.stage=2,engine.jobs.unlearn.stage=3]"])
    with pytest.raises(ConfigError) as err:
        submit(spec)
    msg = str(err.value)
    rows = {line.split()[0]: line.split()[2] for line in msg.splitlines() if line.startswith(("inject x", "unlearn x"))}
    assert rows == {"inject": "2", "unlearn": "3"}, msg
    assert "would fit with engine.jobs.unlearn.offload=optimizer" in msg
    assert not any(tmp_path.iterdir())


def test_relearning_attacks_are_costed_on_their_cells_resources():
    from mlu_dist.launcher.cost import sweep_cost
    from mlu_dist.launcher.plan import expand

    over = ["axes.inject_langs=[de]", "axes.seeds=[0]", "axes.methods=[npo]", "axes.relearn_attacks=[fake:en]",
            "overrides=[relearn.train.steps=30,engine.jobs.relearn.stage=2]", "resources.unlearn.gpu_mem_gb=96"]
    spec = load_config(SweepSpec, ["sweeps/slurm-8b"], over)
    cells = expand(spec)
    table, problems = sweep_cost(spec, cells)
    rows = [line.split() for line in table.splitlines() if line.startswith(("relearn x", "unlearn x"))]
    attacks = [r for r in rows if r[0] == "relearn"]
    # columns: jobs, count, ZeRO, GPUs, GB/GPU, weights, grads, optim, gather, frozen, ref, acts, steps, GPU-h, disk
    # the 4 attacked NPO runs on the unlearning jobs' 4 GPUs, the injected control on the injection's 8
    assert sorted((r[1], r[3]) for r in attacks) == [("x1", "8"), ("x4", "4")], table
    assert all(r[2] == "2" and r[12] == "30" and r[14] == "0.0" for r in attacks), table  # no export kept
    unlearn = next(r for r in rows if r[0] == "unlearn")
    assert float(unlearn[10]) > 0 and all(float(r[10]) == 0 for r in attacks)  # no NPO reference
    assert not problems
    spec = load_config(SweepSpec, ["sweeps/slurm-8b"], over + ["resources.unlearn.gpu_mem_gb=64"])
    _, problems = sweep_cost(spec, expand(spec))
    # the unlearning jobs themselves fit 64 GB under ZeRO-3; the attacks, under ZeRO-2, do not
    assert len(problems) == 1 and problems[0].startswith("4 relearning attack(s)"), problems
    assert "resources.unlearn.gpu_mem_gb is 64" in problems[0] and "it would fit with" in problems[0]


# --- activations: the planner's per-layer bytes against what autograd really keeps -----------------
def _saved_bytes_per_token(layers: int, lora, dtype, tokens: int = 64) -> float:
    """Bytes of the distinct non-parameter tensors autograd saves in one training forward of a
    GQA Llama (4 heads, 1 KV head), per token."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mlu_dist.jobs.model import apply_lora

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=448, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).to(dtype)
    if lora is not None:
        model = apply_lora(model, TrainConfig(lora=lora), "inject").to(dtype)  # DeepSpeed casts adapters alike
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=torch.randint(0, 512, (1, tokens)))
    return sum(saved.values()) / tokens


@pytest.mark.trains
@pytest.mark.parametrize("dtype_name,act_bytes", [("float32", 4), ("bfloat16", 2)])
@pytest.mark.parametrize("lora", [None, LoraConfig(enabled=True, r=64, alpha=16, dropout=0.1,
                                                   targets=["q_proj", "k_proj", "v_proj"])], ids=["full", "lora"])
def test_layer_activations_are_what_autograd_keeps(dtype_name, act_bytes, lora):
    """One more layer adds exactly the planner's per-layer bytes (CPU: the dropout mask is a float)."""
    import torch

    dtype = getattr(torch, dtype_name)
    measured = _saved_bytes_per_token(3, lora, dtype) - _saved_bytes_per_token(2, lora, dtype)
    arch = Arch(hidden=128, layers=1, heads=4, kv_heads=1, intermediate=448, vocab=512, tied=False)
    planned = arch.layer_activation_bytes(lora, act_bytes, mask_bytes=act_bytes)
    assert planned == pytest.approx(measured, rel=0.02), (planned, measured)


def test_llama_8b_activations_count_the_down_proj_input_norm_copies_and_adapters():
    """Llama-3-8B shapes, bf16, per token and layer: full fine-tuning keeps the fp32 norm copies (2 x 4h)
    and down_proj's input (2I); the paper's LoRA adds ~49 KB of adapter tensors; the loss peak is 12 V
    per token of one forward."""
    h, kv, i, v = 4096, 1024, 14336, 128256
    full = LLAMA8B.layer_activation_bytes(None, 2)
    assert full == 2 * (4 * h + 4 * h) + 2 * (2 * h + 2 * kv) + 4 * 32 + 4 * 2 * i  # 200,832
    lora = LoraConfig(enabled=True, r=2048, alpha=64, dropout=0.1, targets=["q_proj", "k_proj", "v_proj"])
    no_adapters = 2 * 4 * h + 2 * (2 * h + 2 * kv) + 4 * 32 + 3 * 2 * i
    adapters = LLAMA8B.layer_activation_bytes(lora, 2) - no_adapters
    assert adapters == 3 * ((2 + 1) * h + 2 * 2048) == 49_152
    assert LLAMA8B.logits_bytes([1]) == 12 * v
    # two pools of one row each (the paper's fake + safe micro-batch): both log-softmaxes, one transient
    assert LLAMA8B.logits_bytes([1024, 1024]) == 16 * v * 1024


def test_host_ram_under_offload_is_checked_against_mem_gb():
    """Full fine-tuning of 8B at ZeRO-3 with the optimizer offloaded on 4 GPUs per node: each rank's
    16 N / 4 bytes of optimizer state sit in host RAM (4 x 32 GB + 4 x HOST_OVERHEAD_GB per node)."""
    from mlu_dist.launcher.cost import HOST_OVERHEAD_GB, host_memory, sweep_cost
    from mlu_dist.launcher.plan import expand

    train, zero = TrainConfig(), ZeroConfig(stage=3, offload="optimizer")
    assert host_memory(LLAMA8B, train, zero, 4, 4) == pytest.approx(16 * LLAMA8B.params + 4 * HOST_OVERHEAD_GB * GB)
    assert host_memory(LLAMA8B, train, ZeroConfig(stage=3), 4, 4) == 4 * HOST_OVERHEAD_GB * GB
    over = ["axes.inject_langs=[de]", "axes.seeds=[0]", "axes.methods=[npo]", "axes.forget_langs=[en]",
            "overrides=[engine.zero.stage=3,engine.zero.offload=optimizer]"]
    spec = load_config(SweepSpec, ["sweeps/slurm-8b"], over)
    _, problems = sweep_cost(spec, expand(spec))
    assert not problems  # 144.5 GB of host RAM per node fits mem_gb=200
    spec = load_config(SweepSpec, ["sweeps/slurm-8b"], over + ["resources.unlearn.mem_gb=100"])
    _, problems = sweep_cost(spec, expand(spec))
    assert len(problems) == 1 and "144.5 GB of host RAM per node" in problems[0], problems  # the inject jobs fit 400
    assert "resources.unlearn.mem_gb is 100" in problems[0]


_LOSS_PEAK = """
import re, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
from mlu_dist.losses import token_nll_sum
from mlu_dist.objectives import NLLObjective

tokens, pools = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=128256, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False))
for p in model.parameters():
    p.requires_grad_(p is model.model.norm.weight)  # the layers' activations stay out of the figure
batch = {"input_ids": torch.randint(0, 128256, (1, tokens))}
batch |= {"attention_mask": torch.ones_like(batch["input_ids"]), "labels": batch["input_ids"], "n_targets": 1}
engine = type("E", (), {"forward": staticmethod(model)})
read = lambda key: int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
open("/proc/self/clear_refs", "w").write("5")
start = read("VmRSS")
loss, _ = NLLObjective(scale=1.0)(engine, {f"pool{i}": batch for i in range(pools)})
loss.backward()
print(read("VmHWM") - start)
"""


@pytest.mark.slow
@pytest.mark.parametrize("pools", [1, 2])
def test_the_loss_peak_is_the_planners_at_llama3_vocabulary(pools):
    """The training objective's real peak over a 128,256 vocabulary (fp32, CPU: VmHWM of a fresh
    process) against :meth:`Arch.logits_bytes`: 12 V per token for one pool, 4 V more per extra pool."""
    import subprocess
    import sys

    from conftest import ROOT, clean_env

    tokens = 384
    proc = subprocess.run([sys.executable, "-c", _LOSS_PEAK, str(tokens), str(pools)], capture_output=True, text=True,
                          env=clean_env(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = int(proc.stdout.split()[-1])
    planned = Arch(16, 1, 2, 1, 32, 128256, False).logits_bytes([tokens] * pools)
    assert measured == pytest.approx(planned, rel=0.1), (measured / 128256 / tokens, planned / 128256 / tokens)
