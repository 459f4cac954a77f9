"""LoRA checkpoints hold the adapters, their optimizer state and the client state, never the frozen
base: a LoRA injection on the torch backend (in-process, one rank) stops, resumes from such a
checkpoint and ends with the uninterrupted run's losses and weights; `mlu export` from it merges the
adapters into the base its manifest names and equals the run's own model. The DeepSpeed ZeRO-2
version with 2 ranks is in tests/test_engine.py."""

import json

import pytest
import torch

from conftest import QUICK
from mlu_dist.config import load_config
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.tracking import read_jsonl

STEPS = 8


def _inject(base_dir, out, *extra):
    from mlu_dist.jobs.inject import run_inject

    return run_inject(load_config(ExperimentConfig, [QUICK], [
        f"run.out_dir={out}", "engine.backend=torch", "tracking.wandb=false", "inject.langs=[de]",
        f"inject.from_model={base_dir}", f"inject.train.steps={STEPS}", "inject.train.log_every=1",
        "inject.train.eval_every=0", "inject.train.lr=1e-2", "inject.train.lora.enabled=true",
        "inject.train.lora.targets=[q_proj,v_proj]", *extra]))


def _weights_bytes(model_dir) -> int:
    return sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))


@pytest.fixture(scope="module")
def lora_runs(quick_base, tmp_path_factory):
    """An uninterrupted LoRA injection and the same stopped at step 4 and resumed."""
    base_dir = quick_base[1] / "model"
    out = tmp_path_factory.mktemp("lora")
    full = _inject(base_dir, out / "full")
    part = _inject(base_dir, out / "part", f"inject.train.stop_after={STEPS // 2}")
    stopped = part / "checkpoints" / "step_000004"
    manifest = json.loads((stopped / "COMPLETE").read_text())  # read before the resumed run prunes it
    part = _inject(base_dir, out / "part")
    return base_dir, full, part, manifest


@pytest.mark.slow
def test_a_lora_checkpoint_holds_the_adapters_and_names_its_base(lora_runs):
    base_dir, full, _, manifest = lora_runs
    assert manifest["frozen_base"] == str(base_dir.resolve())
    ckpt = full / "checkpoints" / (full / "checkpoints" / "LATEST").read_text().strip()
    saved = torch.load(ckpt / "torch_state.pt", weights_only=False)["model"]
    assert saved and all("lora_" in k for k in saved), sorted(saved)[:5]
    written = sum(json.loads((ckpt / "COMPLETE").read_text())["files"].values())
    assert written < 0.5 * _weights_bytes(base_dir), (written, _weights_bytes(base_dir))


@pytest.mark.slow
def test_the_resumed_lora_run_ends_as_the_uninterrupted_one(lora_runs):
    from mlu_dist.modeling import load_pretrained

    _, full, part, _ = lora_runs
    losses = [[r["train/loss"] for r in read_jsonl(d / "metrics.jsonl") if "train/loss" in r] for d in (full, part)]
    assert len(losses[0]) == STEPS and losses[0] == losses[1]
    a, _ = load_pretrained(full / "model")
    b, _ = load_pretrained(part / "model")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.slow
def test_export_from_the_adapter_only_checkpoint_equals_the_finished_model(lora_runs, tmp_path):
    from mlu_dist.jobs.export import export_run
    from mlu_dist.modeling import load_pretrained

    base_dir, _, part, _ = lora_runs
    exported, _ = load_pretrained(export_run(part, tmp_path / "export"))
    finished, _ = load_pretrained(part / "model")
    base, _ = load_pretrained(base_dir)
    got, want, start = exported.state_dict(), finished.state_dict(), base.state_dict()
    assert sorted(got) == sorted(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    changed = [k for k in start if not torch.equal(start[k], want[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed), changed  # the merge happened


@pytest.mark.slow
def test_the_estimate_is_what_a_lora_checkpoint_writes_and_another_base_is_refused(lora_runs, tmp_path):
    from mlu_dist.engine.checkpoint import RANK_FILE_BYTES, Checkpointer, _checkpoint_bytes
    from mlu_dist.engine.torch_engine import TorchEngine
    from mlu_dist.jobs.model import apply_lora
    from mlu_dist.modeling import load_pretrained
    from mlu_dist.runs.rundir import ResumeError
    from mlu_dist.train_config import TrainConfig

    base_dir = lora_runs[0]
    cfg = TrainConfig(steps=2)
    cfg.lora.enabled, cfg.lora.targets = True, ["q_proj", "v_proj"]
    model = apply_lora(load_pretrained(base_dir)[0], cfg)
    engine = TorchEngine(model, cfg)
    engine.backward(model(input_ids=torch.tensor([[1, 2, 3, 4]]), labels=torch.tensor([[1, 2, 3, 4]])).loss)
    engine.step()
    ck = Checkpointer(tmp_path, engine, rank=0, world_size=1)
    need = ck.expected_bytes()
    saved = ck.save(1, {})
    written = _checkpoint_bytes(saved)
    assert written <= need < written + RANK_FILE_BYTES + 20_000, (need, written)
    assert need < 0.5 * _weights_bytes(base_dir)
    meta = json.loads((saved / "COMPLETE").read_text())
    (saved / "COMPLETE").write_text(json.dumps(meta | {"frozen_base": str(tmp_path / "another")}))
    with pytest.raises(ResumeError, match="frozen base"):
        ck.load(saved)
