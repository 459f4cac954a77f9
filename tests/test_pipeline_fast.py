"""The whole study in seconds, in this process, without DeepSpeed: a sweep run by the debug
executor on the torch backend (base -> injections -> eval -> GA unlearning -> report), then
export, status and the pure DeepSpeed config. The same code paths the real runs take, at a size
that keeps `pytest -m "not slow"` covering every job, the launcher and the report."""

import json

import pytest

from mlu_dist.config import load_config
from mlu_dist.launcher.run import submit
from mlu_dist.launcher.spec import SweepSpec

OVERRIDES = ["engine.backend=torch", "data.langs=[en,de,ha]", "tracking.wandb=false", "base.steps=20",
             "inject.train.steps=6", "inject.train.eval_every=3", "unlearn.train.steps=4", "unlearn.train.eval_every=2",
             "eval.n_boot=50"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("fast")
    spec = load_config(SweepSpec, ["sweeps/test"], [f"out_dir={out}", "executor=debug", "axes.inject_langs=[de]",
                                                     "axes.methods=[ga]", "axes.forget_langs=[en,orig]"])
    spec.overrides = list(spec.overrides) + OVERRIDES
    result = submit(spec)
    return out / spec.name, result


@pytest.mark.trains
def test_a_debug_sweep_runs_every_stage_and_reports(sweep):
    root, result = sweep
    assert all(status == "finished" for status in result["results"].values()), result["results"]
    runs = sorted((root / "unlearn").glob("*/*/DONE.json"))
    assert len(runs) == 2
    for done in runs:
        run = done.parent
        info = json.loads(done.read_text())
        assert info["status"] in ("finished", "guard_tripped") and info["steps"] >= 2
        summary = json.loads((run / "eval" / "SUMMARY.json").read_text())["metrics"]
        assert {"fake_rate", "control_fake_rate", "fake_pref", "real_acc", "utility_ppl"} <= set(summary)
        steps = {json.loads(line)["step"] for line in (run / "curves.jsonl").read_text().splitlines()}
        assert steps == {0, 2, 4} or info["status"] != "finished"
        assert (run / "curves.png").exists()
    grid = json.loads((root / "report" / "grid.json").read_text())
    assert {r["setting"] for r in grid["rows"]} == {"en", "orig"}
    assert (root / "report" / "spread_fake_rate.csv").exists() and "real_acc before → after" in \
        (root / "report" / "report.md").read_text()


@pytest.mark.trains
def test_export_and_status_of_the_sweep(sweep, tmp_path):
    from mlu_dist.jobs.export import export_run
    from mlu_dist.launcher.status import status_table
    from mlu_dist.modeling import load_pretrained

    root, _ = sweep
    inject_run = next((root / "inject").iterdir())
    out = export_run(inject_run, tmp_path / "export")
    exported, _ = load_pretrained(out)
    trained, _ = load_pretrained(inject_run / "model")
    assert all((a == b).all() for a, b in zip(exported.state_dict().values(), trained.state_dict().values()))
    table, rows = status_table(root)
    assert len(rows) == 5 and "finished" in table


def test_deepspeed_config_is_derived_from_the_job():
    import torch

    from mlu_dist.engine.config import ZeroConfig
    from mlu_dist.engine.deepspeed_engine import build_ds_config
    from mlu_dist.train_config import TrainConfig

    t = TrainConfig(micro_batch_size=4, grad_accum=2)
    ds = build_ds_config(t, ZeroConfig(stage=3, offload="optimizer+params"), 8, "cpu", torch.bfloat16, 64)
    assert ds["train_batch_size"] == 4 * 2 * 8 and ds["gradient_accumulation_steps"] == 2
    assert ds["bf16"]["enabled"] and ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu" and "optimizer" not in ds
    assert ds["zero_optimization"]["reduce_bucket_size"] == 64 * 64
    extra = build_ds_config(t, ZeroConfig(stage=2, extra={"zero_optimization": {"overlap_comm": True}}), 1, "cuda")
    assert extra["zero_optimization"] == extra["zero_optimization"] | {"stage": 2, "overlap_comm": True}
    assert "optimizer" not in extra  # on GPU the default is torch's fused AdamW: nothing to JIT-build
    asked = build_ds_config(t, ZeroConfig(stage=2, optimizer="deepspeed"), 1, "cuda")
    assert asked["optimizer"]["type"] == "AdamW"  # DeepSpeed's own (JIT-built) Adam only when asked


@pytest.mark.trains
def test_an_unlearning_run_resumed_at_every_eval_boundary_keeps_the_same_best_model(sweep):
    """The best-so-far score and step live in the checkpoint: a run stopped and resumed at every
    evaluation keeps the same best checkpoint as the uninterrupted run (the torch backend)."""
    from mlu_dist.engine.engines import state_digest
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.jobs.unlearn import run_unlearn
    from mlu_dist.modeling import load_pretrained
    from mlu_dist.tracking import read_jsonl

    root, _ = sweep
    inject_run = next((root / "inject").iterdir())
    common = [f"unlearn.from_run={inject_run}", f"run.out_dir={root}", "unlearn.best=forget_fake_pref",
              "unlearn.train.steps=8", "unlearn.train.eval_every=2", "unlearn.train.save_every=2",
              "unlearn.train.lr=3e-3", "unlearn.guard_ppl_ratio=1e9", "eval.metrics=[fake_rate,fake_pref]"]
    whole = run_unlearn(load_config(ExperimentConfig, [inject_run / "config.yaml"], common + ["run.name=whole"]))
    for _ in range(4):  # 4 processes of 2 steps each: a stop and a resume at every evaluation
        parts = run_unlearn(load_config(ExperimentConfig, [inject_run / "config.yaml"],
                                        common + ["run.name=parts", "unlearn.train.stop_after=2"]))
    done = [json.loads((run / "DONE.json").read_text()) for run in (whole, parts)]
    prefs = [r["unlearn/forget_fake_pref"] for r in read_jsonl(whole / "metrics.jsonl") if "unlearn/forget_fake_pref" in r]
    assert done[0]["best_step"] == done[1]["best_step"] == 2 * prefs.index(min(prefs))
    digests = [state_digest(load_pretrained(run / "model")[0].state_dict()) for run in (whole, parts)]
    assert digests[0] == digests[1]
    assert read_jsonl(whole / "curves.jsonl") == read_jsonl(parts / "curves.jsonl")
