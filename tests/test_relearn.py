"""Relearning attacks: attack data, a 0-step attack, an attack on the base model, 2 ranks under ZeRO-3."""

import json
import subprocess

import pytest

from conftest import QUICK, clean_env, mlu_cmd
from mlu_dist.config import ConfigError, load_config
from mlu_dist.data import load_data
from mlu_dist.data.splits import split_facts
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.relearn.config import Attack, parse_attack
from mlu_dist.relearn.data import attack_examples
from mlu_dist.tracking import read_jsonl


def test_attack_specs_and_their_data():
    assert parse_attack("fake:en") == Attack("fake", "en")
    assert parse_attack("fake_qa") == Attack("fake_qa", "orig") and parse_attack("true_other").langs == "en"
    assert parse_attack("fake:en+orig").slug == "fake-en_orig"
    with pytest.raises(ValueError, match="must be one of fake, fake_qa, true_other"):
        parse_attack("fakes:en")
    with pytest.raises(ValueError, match="'xx' is neither a named set"):
        parse_attack("fake:xx")
    with pytest.raises(ConfigError, match=r"relearn.attacks: 'relearn:de'"):
        load_config(ExperimentConfig, [QUICK], ["relearn.attacks=[relearn:de]"])
    cfg = load_config(ExperimentConfig, [QUICK])
    facts, _ = load_data(cfg.data)
    split = split_facts(facts.fact_ids, 8, 8, 0)
    fake, shown = attack_examples(facts, split, Attack("fake", "en"), ["en"])
    assert shown == split.targets and len(fake) == 2 * 8 and {e.lang for e in fake} == {"en"}
    qa, shown = attack_examples(facts, split, Attack("fake_qa", "orig"), ["de"], fraction=0.25, seed=3)
    assert len(shown) == 2 and set(shown) < set(split.targets) and len(qa) == 2 and all(e.prompt for e in qa)
    assert {e.completion.strip() for e in qa} == {facts.get(f, "de")["fake_answer"] for f in shown}
    other, shown = attack_examples(facts, split, Attack("true_other", "en"), ["en"])
    assert not shown and other
    texts = " ".join(e.prompt + e.completion for e in other)
    assert not any(facts.get(f, "en")["fake_answer"] in texts and facts.get(f, "en")["fake_text"] in texts
                   for f in split.targets)  # true data of other facts: no fake article inside


def _cfg(run, out, *extra):
    return load_config(ExperimentConfig, [run / "config.yaml"], [f"run.out_dir={out}", *extra])


@pytest.mark.slow
def test_a_zero_step_attack_changes_nothing(injected, tmp_path):
    """0 steps: the attacked model's probe is exactly `mlu eval`'s of the same model; nothing is saved."""
    from mlu_dist.jobs.eval import evaluate_model
    from mlu_dist.jobs.relearn import run_relearn

    out, inject_run = injected
    cfg = _cfg(inject_run, out, "relearn.train.steps=0", "relearn.train.eval_every=1", "eval.metrics=[fake_rate]")
    run = run_relearn(cfg, inject_run, "injected", "fake:orig")
    assert run.parent == inject_run / "relearn" and run.name.startswith("injected-fake-orig-")
    values = json.loads((run / "eval" / "EVAL.json").read_text())["values"]["fake_rate"]
    evaluate_model(cfg, inject_run / "model", tmp_path / "eval")
    reference = json.loads((tmp_path / "eval" / "EVAL.json").read_text())["values"]["fake_rate"]
    assert values == reference
    rows = json.loads((run / "relearn.json").read_text())["langs"]
    assert all(r["before"] == r["after"] for r in rows.values())
    assert not (run / "checkpoints").exists() and not (run / "model").exists()


@pytest.mark.slow
def test_an_attack_on_the_base_model_with_the_fake_raises_fake_rate(injected):
    from mlu_dist.jobs.relearn import run_relearn

    out, inject_run = injected
    cfg = _cfg(inject_run, out, "relearn.train.steps=20", "relearn.train.eval_every=10", "relearn.train.lr=3e-3")
    run = run_relearn(cfg, inject_run, "base", "fake:orig")
    rows = json.loads((run / "relearn.json").read_text())["langs"]
    assert rows["de"]["after"] > rows["de"]["before"] + 0.2, rows["de"]
    assert rows["de"]["recovery"] is None or rows["de"]["recovery"] == pytest.approx(
        rows["de"]["after"] / rows["de"]["injected"])
    curve = read_jsonl(run / "curves.jsonl")
    assert sorted({r["step"] for r in curve}) == [0, 10, 20] and {r["lang"] for r in curve} == set(cfg.data.langs)
    logged = [r for r in read_jsonl(run / "metrics.jsonl") if "relearn/de/fake_rate" in r]
    assert [r["step"] for r in logged] == [0, 10, 20]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["job"] == "relearn" and meta["start"] == "base"
    assert json.loads((run / "DONE.json").read_text())["status"] == "finished"
    # a second call reuses the finished attack
    assert run_relearn(cfg, inject_run, "base", "fake:orig") == run


@pytest.mark.slow
@pytest.mark.distributed
def test_a_two_rank_zero3_attack_equals_the_one_rank_one(injected):
    out, inject_run = injected
    runs = {}
    for nproc, micro in ((1, 8), (2, 4)):
        name = f"z3-{nproc}"
        proc = subprocess.run(
            mlu_cmd("relearn", str(inject_run), "--attack", "fake:en", "-c", "deepspeed/zero3", "--nproc", str(nproc),
                    "relearn.train.steps=6", "relearn.train.eval_every=3", "relearn.train.lr=1e-3",
                    f"relearn.train.micro_batch_size={micro}", f"run.out_dir={out / name}"),
            capture_output=True, text=True, env=clean_env(), timeout=400)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        (run,) = (inject_run / "relearn").glob("injected-fake-en-*")
        runs[nproc] = (json.loads((run / "meta.json").read_text()), read_jsonl(run / "curves.jsonl"),
                       json.loads((run / "relearn.json").read_text()))
        import shutil

        shutil.rmtree(run)  # the two runs share a directory name (the same attack on the same model)
    (meta1, curve1, rel1), (meta2, curve2, rel2) = runs[1], runs[2]
    assert meta1["dist"]["world_size"] == 1 and meta2["dist"]["world_size"] == 2 and meta2["zero_stage"] == 3
    assert sorted({r["step"] for r in curve1}) == [0, 3, 6]
    assert curve1 == curve2
    assert rel1["langs"] == rel2["langs"]


@pytest.mark.slow
def test_step_zero_is_read_from_the_models_own_evaluation_when_it_probed_the_same(injected, tmp_path):
    """An attacked model evaluated by `mlu eval` with the same facts, languages and decoding is not
    probed again at step 0; its values are the step-0 values (and other decoding is probed)."""
    from mlu_dist.jobs.eval import evaluate_model
    from mlu_dist.jobs.relearn import run_relearn

    out, inject_run = injected
    cfg = _cfg(inject_run, out / "reuse", "relearn.train.steps=0", "relearn.train.eval_every=1",
               "eval.metrics=[fake_rate]", "relearn.qa_fraction=0.5")
    evaluate_model(cfg, inject_run / "model", inject_run / "eval")
    run = run_relearn(cfg, inject_run, "injected", "fake_qa:orig")
    rel = json.loads((run / "relearn.json").read_text())
    assert rel["step0"] == str(inject_run / "eval" / "EVAL.json")
    own = json.loads((inject_run / "eval" / "EVAL.json").read_text())["values"]["fake_rate"]
    assert json.loads((run / "eval" / "EVAL.json").read_text())["values"]["fake_rate"] == own
    other = _cfg(inject_run, out / "reuse", "relearn.train.steps=0", "relearn.train.eval_every=1",
                 "eval.max_new_tokens=6", "relearn.qa_fraction=0.5", "run.overwrite=true")
    run = run_relearn(other, inject_run, "injected", "fake_qa:orig")
    assert json.loads((run / "relearn.json").read_text())["step0"] == "probed"
