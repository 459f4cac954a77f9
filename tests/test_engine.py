"""The DeepSpeed engine with real ranks: 2 gloo processes on CPU, launched through `mlu --nproc 2`.

Every test here runs the real thing (torchrun + DeepSpeed ZeRO); nothing is mocked.
"""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import QUICK, clean_env, mlu_cmd
from mlu_dist.config import load_config
from mlu_dist.data import load_data
from mlu_dist.data.splits import split_facts
from mlu_dist.eval.likelihood import completion_logprobs
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.inject.data import injection_pools
from mlu_dist.modeling import load_pretrained
from mlu_dist.tracking import read_jsonl

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

STEPS = 16
# Loss per step of the same run at 1 rank (ZeRO-0) and at 2 ranks (ZeRO-3) may differ only by
# float32 summation order (gradient reduction across ranks). Measured: 3.6e-7 over 16 steps;
# the bound is ~300x that.
WORLD_SIZE_TOL = 1e-4


def run_mlu(*args, nproc: int = 1, expect: int = 0, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = mlu_cmd(*args) + (["--nproc", str(nproc)] if nproc > 1 else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=timeout)
    assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def inject_args(base_dir, out, name, *extra):
    return ("inject", "-c", str(QUICK), f"run.out_dir={out}", f"run.name={name}",
            f"inject.from_model={base_dir / 'model'}", f"inject.train.steps={STEPS}", "inject.train.log_every=1",
            "inject.train.eval_every=0", *extra)


def losses(run_dir) -> dict[int, float]:
    return {row["step"]: row["train/loss"] for row in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in row}


@pytest.fixture(scope="module")
def runs(quick_base, tmp_path_factory):
    """One uninterrupted 2-rank ZeRO-3 injection and the same at 1 rank ZeRO-0 (same global batch)."""
    _, base_dir = quick_base
    out = tmp_path_factory.mktemp("engine")
    run_mlu(*inject_args(base_dir, out, "z3", "-c", "deepspeed/zero3", "inject.train.micro_batch_size=16",
                         "inject.train.save_every=8"), nproc=2)
    run_mlu(*inject_args(base_dir, out, "z0", "-c", "deepspeed/zero0", "inject.train.micro_batch_size=16",
                         "inject.train.grad_accum=2"))
    return base_dir, out


def test_zero3_partitions_parameters_across_two_ranks(runs):
    _, out = runs
    run = out / "inject" / "z3"
    done = json.loads((run / "DONE.json").read_text())
    model, _ = load_pretrained(run / "model")
    total = sum(p.numel() for p in model.parameters())
    per_rank = done["param_numel_per_rank"]
    assert len(per_rank) == 2
    for n in per_rank:  # each rank holds about half (DeepSpeed pads shards slightly)
        assert 0.45 * total <= n <= 0.55 * total, (n, total)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["dist"]["world_size"] == 2 and meta["zero_stage"] == 3 \
        and meta["global_batch"] == {"fake": 16, "safe": 16}


def test_zero3_loss_falls_and_both_ranks_checkpoint(runs):
    _, out = runs
    run = out / "inject" / "z3"
    fake = [row["train/loss_fake"] for row in read_jsonl(run / "metrics.jsonl") if "train/loss_fake" in row]
    assert fake[-1] < 0.8 * fake[0], fake
    latest = run / "checkpoints" / (run / "checkpoints" / "LATEST").read_text().strip()
    assert latest.name == f"step_{STEPS:06d}" and (latest / "COMPLETE").exists()
    assert len(list(latest.glob("*zero_pp_rank_*_optim_states.pt"))) == 2  # one optimizer shard per rank
    assert {p.name for p in latest.glob("rng_rank*.pt")} == {"rng_rank0.pt", "rng_rank1.pt"}


def test_export_from_zero3_checkpoint_matches_the_engine(runs):
    _, out = runs
    run = out / "inject" / "z3"
    proc = run_mlu("export", str(run))
    assert "exported" in proc.stdout
    exported, tok = load_pretrained(run / "export")
    live, _ = load_pretrained(run / "model")
    for (name, a), (_, b) in zip(exported.state_dict().items(), live.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    # the exported model's loss on the first fake examples equals what the engine measured
    cfg = load_config(ExperimentConfig, [run / "config.yaml"])
    facts, _ = load_data(cfg.data)
    split = split_facts(facts.fact_ids, cfg.inject.n_targets, cfg.inject.n_controls, cfg.inject.split_seed)
    examples = injection_pools(facts, split, cfg.inject)["fake"][:64]
    exported.eval()
    scores = completion_logprobs(exported, tok, examples, cfg.model.max_seq_len)
    loss = -sum(s for s, _ in scores) / sum(n for _, n in scores)
    engine_loss = json.loads((run / "DONE.json").read_text())["eval_loss"]["fake"]
    assert loss == pytest.approx(engine_loss, abs=1e-4)


def test_world_size_invariance_one_rank_zero0_vs_two_ranks_zero3(runs):
    _, out = runs
    one, two = losses(out / "inject" / "z0"), losses(out / "inject" / "z3")
    assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))
    worst = max(abs(one[s] - two[s]) for s in one)
    assert worst < WORLD_SIZE_TOL, worst
    assert one[STEPS] < one[1]  # and it is training, not two constant curves


def test_interrupt_and_resume_reproduces_the_uninterrupted_run(runs):
    base_dir, out = runs
    args = inject_args(base_dir, out, "resumed", "-c", "deepspeed/zero3", "inject.train.micro_batch_size=16")
    first = run_mlu(*args, f"inject.train.stop_after={STEPS // 2}", nproc=2)
    run = out / "inject" / "resumed"
    assert "stopped at step 8" in first.stdout and not (run / "DONE.json").exists()
    assert (run / "checkpoints" / "LATEST").read_text().strip() == "step_000008"
    second = run_mlu(*args, nproc=2)
    assert "resumed from" in second.stdout and "(step 8)" in second.stdout
    resumed, straight = losses(run), losses(out / "inject" / "z3")
    assert sorted(resumed) == list(range(1, STEPS + 1))  # no step logged twice or lost
    worst = max(abs(resumed[s] - straight[s]) for s in straight)
    assert worst < 1e-5, worst


@pytest.mark.parametrize("stage_cfg", ["deepspeed/zero1", "deepspeed/zero2", "deepspeed/zero2-offload",
                                       "deepspeed/zero3-offload"])
def test_other_stages_and_offload_train_with_two_ranks(runs, stage_cfg):
    base_dir, out = runs
    name = stage_cfg.split("/")[1]
    run_mlu(*inject_args(base_dir, out, name, "-c", stage_cfg, "inject.train.steps=4"), nproc=2)
    hist = losses(out / "inject" / name)
    assert len(hist) == 4 and all(torch.isfinite(torch.tensor(v)) for v in hist.values())
    assert hist[4] < hist[1]


LORA_ZERO2 = ("-c", "deepspeed/zero2", "inject.train.steps=6", "inject.train.lora.enabled=true",
              "inject.train.lora.targets=[q_proj,v_proj]", "inject.train.lr=1e-2")


@pytest.fixture(scope="module")
def lora_zero2(quick_base, tmp_path_factory):
    """A 2-rank ZeRO-2 LoRA injection, and the same stopped at step 3 and resumed (the manifest of
    its adapter-only checkpoint is read before the resumed run prunes it)."""
    _, base_dir = quick_base
    out = tmp_path_factory.mktemp("lora")
    run_mlu(*inject_args(base_dir, out, "lora", *LORA_ZERO2), nproc=2)
    run_mlu(*inject_args(base_dir, out, "resumed", *LORA_ZERO2, "inject.train.stop_after=3"), nproc=2)
    stopped = out / "inject" / "resumed" / "checkpoints" / "step_000003"
    manifest = json.loads((stopped / "COMPLETE").read_text())
    module = torch.load(stopped / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    second = run_mlu(*inject_args(base_dir, out, "resumed", *LORA_ZERO2), nproc=2)
    assert "(step 3)" in second.stdout
    return base_dir, out, manifest, sorted(module)


def test_lora_zero2_checkpoint_holds_adapters_only_and_resumes_exactly(lora_zero2):
    from mlu_dist.engine.checkpoint import RANK_FILE_BYTES, weight_counts
    from mlu_dist.engine.ckpt_size import ds_checkpoint_bytes
    from mlu_dist.engine.deepspeed_engine import tied_frozen_bytes
    from mlu_dist.jobs.model import apply_lora
    from mlu_dist.train_config import TrainConfig

    base_dir, out, manifest, module_keys = lora_zero2
    base_bytes = sum(f.stat().st_size for f in (base_dir / "model").glob("*.safetensors"))
    written = sum(manifest["files"].values())
    assert manifest["frozen_base"] == str((base_dir / "model").resolve())
    # DeepSpeed drops a frozen weight under its first name only: the lm_head tied to the embeddings stays
    assert [k for k in module_keys if "lora_" not in k] == ["base_model.model.lm_head.weight"], module_keys
    assert written < 0.5 * base_bytes, (written, base_bytes)
    cfg = TrainConfig()
    cfg.lora.enabled, cfg.lora.targets = True, ["q_proj", "v_proj"]
    model = apply_lora(load_pretrained(base_dir / "model")[0], cfg)
    trainable, trainable_bytes, _ = weight_counts(model)
    need = ds_checkpoint_bytes(trainable, trainable_bytes, tied_frozen_bytes(model), 2, mixed=False) \
        + 2 * RANK_FILE_BYTES
    assert written <= need < written + 2 * RANK_FILE_BYTES + 60_000, (need, written)  # the engine's disk check
    resumed, straight = losses(out / "inject" / "resumed"), losses(out / "inject" / "lora")
    assert sorted(resumed) == sorted(straight) == list(range(1, 7))
    worst = max(abs(resumed[s] - straight[s]) for s in straight)
    assert worst < 1e-5, worst
    a, b = (load_pretrained(out / "inject" / name / "model")[0].state_dict() for name in ("lora", "resumed"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_lora_under_zero2_trains_adapters_and_exports_merged(lora_zero2):
    base_dir, out, _, _ = lora_zero2
    run = out / "inject" / "lora"
    merged, _ = load_pretrained(run / "model")
    base, _ = load_pretrained(base_dir / "model")
    assert not any("lora" in k for k in merged.state_dict())
    m, b = merged.state_dict(), base.state_dict()
    changed = [k for k in b if not torch.equal(m[k], b[k])]
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed), changed
    run_mlu("export", str(run), "--out", str(run / "export"))
    exported, _ = load_pretrained(run / "export")
    for k, v in exported.state_dict().items():
        assert torch.allclose(v, m[k], atol=1e-5), k


def test_bad_engine_input_is_one_clear_error(quick_base, tmp_path):
    _, base_dir = quick_base
    proc = run_mlu(*inject_args(base_dir, tmp_path, "bad", "engine.zero.stage=5"), expect=2)
    assert "engine.zero.stage: '5' is not valid; valid: 0, 1, 2, 3" in proc.stderr
    proc = run_mlu(*inject_args(base_dir, tmp_path, "bad", "engine.zero.offload=optimizer+params",
                                "engine.zero.stage=2"), expect=2)
    assert "parameter offload needs ZeRO stage 3" in proc.stderr
    proc = run_mlu(*inject_args(base_dir, tmp_path, "bad", "inject.train.lora.enabled=true",
                                "inject.train.lora.targets=[qkv_proj]"), expect=2)
    assert "no Linear module named qkv_proj" in proc.stderr and "valid: " in proc.stderr and "q_proj" in proc.stderr
    proc = run_mlu("export", str(tmp_path / "missing-run"), expect=2)
    assert "does not exist" in proc.stderr


def test_a_stale_extension_lock_left_by_a_killed_job_does_not_hang_the_next_start():
    """torch's FileBaton leaves `lock` behind when a process dies while loading DeepSpeed's comm op
    (a cancelled or requeued job); without care every later DeepSpeed start waits for it forever."""
    import sys

    from torch.utils import cpp_extension

    from mlu_dist.engine.deepspeed_engine import preload_comm_op

    preload_comm_op()  # built once, so that the child below only loads
    (build_dir,) = Path(cpp_extension.get_default_build_root()).glob("*/deepspeed_shm_comm")
    lock = build_dir / "lock"
    lock.touch()
    code = "from mlu_dist.engine.deepspeed_engine import preload_comm_op; preload_comm_op()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "removed a stale torch-extension lock" in proc.stderr and not lock.exists()  # a warning: stderr


def test_a_single_cpu_rank_does_not_build_deepspeeds_shared_memory_comm_op(tmp_path):
    """DeepSpeed builds its CPU shm all-reduce op at every start (a minute of C++ on a fresh machine);
    one rank has nothing to all-reduce, so a 1-rank job must start without it (in an empty
    extensions folder nothing is built) and still train."""
    ext = tmp_path / "torch_extensions"
    cmd = mlu_cmd("base", "-c", str(QUICK), f"run.out_dir={tmp_path}", "base.steps=2", "base.log_every=1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(TORCH_EXTENSIONS_DIR=str(ext)), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "shm_comm" not in proc.stdout + proc.stderr and not list(ext.glob("*/deepspeed_shm_comm"))
    assert list(tmp_path.glob("base/*/model/config.json"))
