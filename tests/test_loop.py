"""The training loop's parts in seconds, without DeepSpeed: the batch plan, the LR schedule, the
checkpointer, and a whole (tiny) base run on the torch backend that stops, resumes and ends with
exactly the losses and weights of the uninterrupted run."""

import json
from pathlib import Path

import pytest
import torch

from conftest import QUICK
from mlu_dist.config import ConfigError, load_config
from mlu_dist.engine.checkpoint import Checkpointer
from mlu_dist.engine.data import BatchPlan
from mlu_dist.engine.optim import lr_factor
from mlu_dist.engine.torch_engine import TorchEngine
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.runs.rundir import ResumeError
from mlu_dist.tokens import Encoded
from mlu_dist.train_config import TrainConfig
from mlu_dist.tracking import read_jsonl


def _pool(name: str, n: int) -> list[Encoded]:
    return [Encoded([i, i + 1, len(name)], [-100, i + 1, len(name)]) for i in range(n)]


# --- the batch plan ---------------------------------------------------------------------------------
def test_a_step_is_the_same_whatever_the_world_size_and_accumulation():
    pools = {"fake": _pool("fake", 10), "safe": _pool("safe", 7)}
    plan = BatchPlan(pools, {"fake": 4, "safe": 4}, seed=3)
    for step in (0, 1, 5):
        want = {k: sorted(e.input_ids for e in v) for k, v in plan.global_batch(step).items()}
        for world, accum in ((1, 1), (2, 2), (4, 1), (1, 4)):
            got = {"fake": [], "safe": []}
            for rank in range(world):
                for micro in plan.micro_batches(step, rank, world, accum, pad_id=0):
                    for name, b in micro.items():
                        got[name] += [row.tolist() for row in b["input_ids"]]
                        assert b["n_examples"] == 4
            assert {k: sorted(v) for k, v in got.items()} == want, (world, accum)


def test_the_plan_is_a_pure_function_of_seed_and_step_and_walks_every_example_per_epoch():
    pools = {"text": _pool("text", 8)}
    a, b = BatchPlan(pools, {"text": 4}, 0), BatchPlan(pools, {"text": 4}, 0)
    def ids(plan, steps):
        return [e.input_ids[0] for s in steps for e in plan.global_batch(s)["text"]]

    assert ids(a, [7]) == ids(b, [7])
    assert sorted(ids(a, [0, 1])) == list(range(8))  # two steps of 4 cover the pool once
    assert ids(BatchPlan(pools, {"text": 4}, 1), [0, 1]) != ids(a, [0, 1])


def test_paired_pools_share_their_order_and_bad_geometry_is_named():
    pools = {"chosen": _pool("c", 6), "rejected": _pool("r", 6)}
    plan = BatchPlan(pools, {"chosen": 2, "rejected": 2}, 0, {"chosen": "pairs", "rejected": "pairs"})
    for step in range(4):
        batch = plan.global_batch(step)
        assert [e.input_ids[0] for e in batch["chosen"]] == [e.input_ids[0] for e in batch["rejected"]]
    assert "do not split over 4 rank(s)" in plan.check_geometry(4, 1)[0]
    with pytest.raises(ValueError, match="no examples"):
        BatchPlan({"forget": []}, {"forget": 2}, 0)


# --- the learning-rate schedule ----------------------------------------------------------------------
def test_lr_schedule_warms_up_linearly_then_decays_to_its_floor():
    cfg = TrainConfig(steps=110, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert [lr_factor(s, cfg) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # cosine half-way
    assert lr_factor(110, cfg) == pytest.approx(0.1)
    lin = TrainConfig(steps=110, warmup_steps=10, schedule="linear", min_lr_ratio=0.0)
    assert lr_factor(60, lin) == pytest.approx(0.5)
    assert lr_factor(50, TrainConfig(steps=110, warmup_steps=0, schedule="constant")) == 1.0


# --- the checkpointer ---------------------------------------------------------------------------------
def _engine():
    torch.manual_seed(0)
    return TorchEngine(torch.nn.Linear(3, 2), TrainConfig(steps=10, lr=0.1))


def test_checkpointer_moves_latest_keeps_the_newest_and_refuses_other_geometries(tmp_path):
    eng = _engine()
    ck = Checkpointer(tmp_path, eng, rank=0, world_size=1, keep=2)
    assert ck.resolve("auto") is None and ck.resolve("false") is None
    for step in (1, 2, 3):
        eng.module.weight.data += 1
        ck.save(step, {"job": "test"})
    assert ck.latest().name == "step_000003"
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_000002", "step_000003"]
    saved = eng.module.weight.detach().clone()
    eng.module.weight.data.zero_()
    assert ck.load(ck.resolve("auto"))["step"] == 3
    assert torch.equal(eng.module.weight, saved)
    (tmp_path / "checkpoints" / "step_000003" / "COMPLETE").unlink()  # a save killed half-way
    assert ck.latest().name == "step_000002"  # LATEST's target is incomplete: the previous one verifies
    with pytest.raises(ResumeError, match="base.resume"):
        ck.resolve(str(tmp_path / "nowhere"), "base.resume")
    two = Checkpointer(tmp_path, eng, rank=0, world_size=2)
    with pytest.raises(ResumeError, match="saved by 1 rank"):
        two.load(tmp_path / "checkpoints" / "step_000002")


def _three_checkpoints(tmp_path, keep=3):
    eng = _engine()
    ck = Checkpointer(tmp_path, eng, rank=0, world_size=1, keep=keep, say=lambda *_: None)
    for step in (1, 2, 3):
        eng.module.weight.data += 1
        ck.save(step, {"job": "test"})
    return eng, ck, tmp_path / "checkpoints"


def test_a_dangling_or_unreadable_latest_falls_back_to_the_newest_checkpoint_that_verifies(tmp_path):
    eng, ck, root = _three_checkpoints(tmp_path)
    (root / "LATEST").write_text("step_000099\n")  # names a directory that does not exist
    assert ck.resolve("auto").name == "step_000003"
    (root / "LATEST").write_bytes(b"\xff\xfe\x00")
    assert ck.resolve("auto").name == "step_000003"
    ck.save(4, {"job": "test"})  # pruning keeps the newest verified ones and moves LATEST back
    assert (root / "LATEST").read_text().strip() == "step_000004" and (root / "step_000003").exists()


def test_a_truncated_newest_checkpoint_is_skipped_with_its_reason(tmp_path, capsys):
    eng, ck, root = _three_checkpoints(tmp_path)
    ck.say = print
    state = next((root / "step_000003").glob("*.pt"))
    state.write_bytes(state.read_bytes()[:10])
    assert ck.resolve("auto").name == "step_000002"
    assert f"skipping checkpoint {root / 'step_000003'}: {state.name} is 10 bytes, the manifest says" in \
        capsys.readouterr().out


def test_checkpoints_of_which_none_verifies_refuse_to_resume_and_nothing_is_deleted(tmp_path):
    eng, ck, root = _three_checkpoints(tmp_path)
    for step in (1, 2, 3):
        (root / f"step_{step:06d}" / "COMPLETE").write_text("{not json")
    before = sorted(str(p) for p in root.rglob("*"))
    with pytest.raises(ResumeError, match=r"inject.train.resume=auto: .* holds checkpoints but none verifies"):
        ck.resolve("auto", "inject.train.resume")
    assert sorted(str(p) for p in root.rglob("*")) == before
    assert ck.resolve("false") is None  # the way out the error names


def test_a_checkpoint_that_verifies_but_does_not_load_falls_back_to_an_older_one(tmp_path):
    eng, ck, root = _three_checkpoints(tmp_path)
    state = next((root / "step_000003").glob("*.pt"))
    state.write_bytes(b"x" * state.stat().st_size)  # same size, garbage inside
    path, client = ck.load_newest(ck.resolve("auto"))
    assert (path.name, client["step"]) == ("step_000002", 2)
    for step in (1, 2):
        p = next((root / f"step_{step:06d}").glob("*.pt"))
        p.write_bytes(b"x" * p.stat().st_size)
    with pytest.raises(ResumeError, match="no checkpoint in .* loads"):
        ck.load_newest(ck.resolve("auto"))


def test_partial_saves_are_cleaned_and_a_named_checkpoint_is_replaced_only_when_complete(tmp_path):
    eng, ck, root = _three_checkpoints(tmp_path)
    (root / "step_000004").mkdir()  # killed during the save: no COMPLETE
    (root / "best.partial").mkdir()
    (root / ".LATEST.tmp123").write_text("x")
    ck.clean_partial()
    assert not (root / "step_000004").exists() and not (root / "best.partial").exists()
    assert not list(root.glob(".*.tmp*")) and (root / "step_000003" / "COMPLETE").exists()
    ck.save(2, {"job": "test", "best": 1.5}, name="best")
    eng.module.weight.data += 1
    ck.save(3, {"job": "test", "best": 0.5}, name="best")
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["best", "step_000001", "step_000002",
                                                                    "step_000003"]
    assert ck.load(root / "best")["best"] == 0.5 and (root / "LATEST").read_text().strip() == "step_000003"


# --- a whole tiny run on the torch backend -------------------------------------------------------------
def _cfg(out, *extra):
    return load_config(ExperimentConfig, [QUICK], [f"run.out_dir={out}", "engine.backend=torch", "base.steps=24",
                                                   "base.log_every=1", "data.langs=[en,de,ha]", "tracking.wandb=false",
                                                   *extra])


@pytest.mark.trains
def test_torch_backend_stops_resumes_and_matches_the_uninterrupted_run(tmp_path):
    from mlu_dist.jobs.base import run_base
    from mlu_dist.modeling import load_pretrained

    full = run_base(_cfg(tmp_path / "full"))
    part = run_base(_cfg(tmp_path / "part", "base.stop_after=10"))
    assert not (part / "DONE.json").exists() and (part / "checkpoints" / "LATEST").read_text().strip() == "step_000010"
    part = run_base(_cfg(tmp_path / "part"))  # the same command again resumes
    assert json.loads((part / "DONE.json").read_text())["status"] == "finished"
    losses = [[r["train/loss"] for r in read_jsonl(d / "metrics.jsonl") if "train/loss" in r] for d in (full, part)]
    assert len(losses[0]) == 24 and losses[0] == losses[1]
    assert losses[0][-1] < 0.7 * losses[0][0]  # it learns
    a, _ = load_pretrained(full / "model")
    b, _ = load_pretrained(part / "model")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.slow
def test_a_signal_finishes_the_step_checkpoints_exits_and_the_rerun_loses_and_repeats_nothing(tmp_path, monkeypatch):
    """SIGTERM (preemption, scontrol requeue) or SIGUSR2 (submitit's time limit) at step 6: the step
    ends, a checkpoint is written there, the previous handler gets the signal, the process exits
    with 128 + signum; the rerun resumes at step 6 and ends with the uninterrupted losses."""
    import os
    import signal

    from mlu_dist.jobs import base as base_job

    full = base_job.run_base(_cfg(tmp_path / "full"))
    sig = signal.SIGTERM  # SIGUSR1/2 take the same path
    seen = []

    def submitit_like(signum, frame):  # stands in for the handler in place before (submitit's)
        seen.append(signum)
    previous = signal.signal(sig, submitit_like)
    real_hooks = base_job.BaseJob.hooks

    def hooks(self, engine, ctx):
        loop_hooks = real_hooks(self, engine, ctx)
        inner = loop_hooks.evaluate

        def evaluate(step):
            if step == 5 and ctx.start == 0:
                os.kill(os.getpid(), sig)  # arrives in the middle of the run
            return inner(step)
        loop_hooks.evaluate = evaluate
        return loop_hooks

    monkeypatch.setattr(base_job.BaseJob, "hooks", hooks)
    try:
        with pytest.raises(SystemExit) as exit_info:
            base_job.run_base(_cfg(tmp_path / "part", "base.eval_every=1"))
        assert exit_info.value.code == 128 + sig and seen == [sig]  # re-delivered after the checkpoint
        assert signal.getsignal(sig) is submitit_like  # the loop's own handler is gone
        run = next((tmp_path / "part" / "base").iterdir())
        assert (run / "checkpoints" / "LATEST").read_text().strip() == "step_000006" and not (run / "DONE.json").exists()
        part = base_job.run_base(_cfg(tmp_path / "part", "base.eval_every=1"))
    finally:
        signal.signal(sig, previous)
    steps = [r["step"] for r in read_jsonl(part / "metrics.jsonl") if "train/loss" in r]
    assert steps == list(range(1, 25))  # none lost, none twice
    losses = [[r["train/loss"] for r in read_jsonl(d / "metrics.jsonl") if "train/loss" in r] for d in (full, part)]
    assert losses[0] == losses[1]


@pytest.mark.trains
def test_a_failing_job_still_closes_its_tracker_and_leaves_no_done(tmp_path, monkeypatch):
    """The skeleton tears down on every path: a job whose finish step raises leaves no DONE.json,
    and its tracker is closed as failed."""
    from mlu_dist.jobs import base as base_job
    from mlu_dist.tracking import JsonlTracker

    closed = []
    monkeypatch.setattr(JsonlTracker, "close", lambda self, failed=False: closed.append(failed))
    monkeypatch.setattr(base_job, "export_model", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        base_job.run_base(_cfg(tmp_path))
    run = next((tmp_path / "base").iterdir())
    assert closed == [True] and not (run / "DONE.json").exists() and (run / "checkpoints" / "LATEST").exists()


def test_torch_backend_refuses_several_ranks_naming_the_key():
    from mlu_dist.engine.dist import DistInfo
    from mlu_dist.jobs.common import make_engine

    cfg = load_config(ExperimentConfig, [], ["engine.backend=torch"])
    with pytest.raises(ConfigError, match="engine.backend"):
        make_engine(torch.nn.Linear(2, 2), cfg.base, cfg.engine, DistInfo(0, 2, 0, "cpu"))



@pytest.mark.trains
def test_epochs_set_the_steps_from_the_main_pool(tmp_path):
    """base.epochs=2 over the corpus at micro-batch 16 (one rank): ceil(2 x lines / 16) steps."""
    import math

    from mlu_dist.data import load_data
    from mlu_dist.engine.data import steps_for_epochs
    from mlu_dist.jobs.base import run_base

    assert steps_for_epochs(1, 100, 8) == 13 and steps_for_epochs(0.5, 10, 4) == 2 and steps_for_epochs(1, 1, 64) == 1
    cfg = _cfg(tmp_path, "base.epochs=2", "base.steps=999")
    _, corpus = load_data(cfg.data)
    run = run_base(cfg)
    want = math.ceil(2 * len(corpus) / cfg.base.micro_batch_size)
    assert json.loads((run / "DONE.json").read_text())["steps"] == want
    meta = json.loads((run / "meta.json").read_text())
    assert meta["epochs"] == {"epochs": 2.0, "pool": "text", "examples": len(corpus), "global_batch": 16, "steps": want}


@pytest.mark.trains
def test_activation_checkpointing_and_eager_attention_train_the_same_model(tmp_path):
    """Recomputing activations in backward changes memory, not results; nor does the attention kernel
    (eager vs sdpa) beyond float rounding."""
    from mlu_dist.jobs.base import run_base
    from mlu_dist.modeling import load_pretrained

    runs = {name: run_base(_cfg(tmp_path / name, "base.steps=8", *extra)) for name, extra in (
        ("plain", []), ("ckpt", ["model.activation_checkpointing=true"]), ("eager", ["model.attn_implementation=eager"]))}
    losses = {name: [r["train/loss"] for r in read_jsonl(run / "metrics.jsonl") if "train/loss" in r]
              for name, run in runs.items()}
    assert len(losses["plain"]) == 8
    assert losses["ckpt"] == pytest.approx(losses["plain"], rel=1e-5)
    assert losses["eager"] == pytest.approx(losses["plain"], rel=1e-4)
    model, _ = load_pretrained(runs["eager"] / "model", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    from mlu_dist.jobs.model import activation_checkpointing

    cfg = _cfg(tmp_path, "model.activation_checkpointing=true")
    assert activation_checkpointing(model, cfg.model).is_activation_checkpointing  # the switch does switch


@pytest.mark.trains
def test_a_verified_export_lets_a_run_drop_its_checkpoints_and_export_keeps_the_dtype(tmp_path):
    import torch

    from mlu_dist.jobs.base import run_base
    from mlu_dist.jobs.saving import export_problems
    from mlu_dist.jobs.export import export_run
    from mlu_dist.modeling import load_pretrained
    from mlu_dist.runs.rundir import ResumeError

    kept = run_base(_cfg(tmp_path / "keep", "base.steps=4"))
    assert (kept / "checkpoints" / "LATEST").exists() and export_problems(kept / "model") == []
    half = export_run(kept, tmp_path / "bf16", dtype="bfloat16")
    assert next(load_pretrained(half, dtype="bfloat16")[0].parameters()).dtype == torch.bfloat16
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(str(half / "model.safetensors")).values()} == {torch.bfloat16}
    auto = export_run(kept, tmp_path / "auto")  # the run trained in fp32: exported in fp32
    assert {v.dtype for v in load_file(str(auto / "model.safetensors")).values()} == {torch.float32}
    # built without a random init (no_init_weights): every weight is the checkpoint's, bit for bit
    trained, exported = (load_file(str(d / "model.safetensors")) for d in (kept / "model", auto))
    assert trained.keys() == exported.keys() and all(torch.equal(trained[k], exported[k]) for k in trained)
    dropped = run_base(_cfg(tmp_path / "drop", "base.steps=4", "base.final_checkpoint=drop"))
    assert not (dropped / "checkpoints").exists() and (dropped / "model" / "model.safetensors").exists()
    assert "dropped after a verified export" in json.loads((dropped / "DONE.json").read_text())["checkpoints"]
    with pytest.raises(ResumeError, match="dropped after a verified export"):
        export_run(dropped)
    import shutil

    from safetensors.torch import save_file

    broken = Path(shutil.copytree(kept / "model", tmp_path / "broken"))
    weights = load_file(str(broken / "model.safetensors"))
    gone = "model.norm.weight"
    save_file({k: v for k, v in weights.items() if k != gone}, str(broken / "model.safetensors"))
    assert export_problems(broken) == [f"{broken}: 1 weight(s) missing, e.g. {[gone]}"]
    (broken / "config.json").unlink()
    assert export_problems(broken) == [f"{broken}: no config.json"]


def test_a_checkpoint_that_does_not_fit_is_skipped_when_periodic_and_refused_with_the_numbers_when_required(
        tmp_path, monkeypatch):
    """The free space is mocked (shutil.disk_usage): what is checked is the decision and the message;
    benchmarks/faults.py fills a real tmpfs."""
    import shutil
    from collections import namedtuple

    from mlu_dist.runs.rundir import DiskFull

    eng, ck, root = _three_checkpoints(tmp_path)
    need = ck.expected_bytes()
    assert need == sum(json.loads((root / "step_000003" / "COMPLETE").read_text())["files"].values())
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - need // 2, need // 2))
    said = []
    ck.warn = said.append
    assert ck.save(4, {"job": "test"}, optional=True) is None and not (root / "step_000004").exists()
    assert said[-1].startswith("skipping the checkpoint at step 4: it needs")
    with pytest.raises(DiskFull, match=rf"cannot write the checkpoint at step 4: it needs .* GB, .* GB free at {root}"):
        ck.save(4, {"job": "test"})
    monkeypatch.undo()

    def failing_save(path, state):  # what a full disk does in the middle of torch.save
        path.mkdir(parents=True)
        (path / "half.pt").write_bytes(b"x")
        raise RuntimeError("basic_ios::clear: iostream error")
    monkeypatch.setattr(eng, "save", failing_save)
    with pytest.raises(DiskFull, match=r"failed \(RuntimeError: basic_ios::clear: iostream error\); .* GB free there"):
        ck.save(5, {"job": "test"})
    assert not (root / "step_000005").exists() and ck.latest().name == "step_000003"
