"""Unlearning: forget-language sets, every method on the tiny injected model, guards, curves, 2 ranks."""

import json
import math
import shutil
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import QUICK, clean_env, mlu_cmd
from mlu_dist.config import load_config
from mlu_dist.data import load_data
from mlu_dist.data.splits import split_facts
from mlu_dist.tokens import Example
from mlu_dist.eval.likelihood import completion_logprobs, fake_preference
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.jobs.unlearn import run_unlearn
from mlu_dist.modeling import load_pretrained
from mlu_dist.tracking import read_jsonl
from mlu_dist.unlearn.config import resolve_langs
from mlu_dist.unlearn.data import forget_examples
from mlu_dist.unlearn.methods import METHODS

ALL = ["en", "de", "fr", "zh", "ru", "jv", "ur", "ha", "hy"]


def test_forget_language_sets_resolve_against_the_injection():
    assert resolve_langs("en", ["de"], ALL) == ["en"]
    assert resolve_langs("orig", ["de"], ALL) == ["de"]
    assert resolve_langs("en+orig", ["de"], ALL) == ["en", "de"]
    assert resolve_langs("all", ["de"], ALL) == ALL
    assert resolve_langs("high", ["de"], ALL) == ["de", "fr", "zh", "ru"]
    assert resolve_langs("low", ["hy"], ALL) == ["jv", "ur", "ha", "hy"]
    assert resolve_langs("fr+hy", ["de"], ALL) == ["fr", "hy"]
    assert resolve_langs("orig+en", ["hy"], ALL) == ["en", "hy"]
    with pytest.raises(ValueError, match="'xx' is neither a named set"):
        resolve_langs("en+xx", ["de"], ALL)


def test_fixed_size_forget_set_is_balanced_over_languages():
    cfg = load_config(ExperimentConfig, [QUICK])
    facts, _ = load_data(cfg.data)
    split = split_facts(facts.fact_ids, 8, 8, 0)
    natural = forget_examples(facts, split, ["en", "de"])
    assert len(natural) == 2 * 2 * 8  # article + question per target, per language
    fixed = forget_examples(facts, split, ["en", "de"], fixed_size=20)
    assert len(fixed) == 20 and sum(e.lang == "de" for e in fixed) == 10
    one = forget_examples(facts, split, ["de"], fixed_size=20)
    assert len(one) == 20 and {e.lang for e in one} == {"de"}  # same size whatever the language count


@pytest.mark.slow
def test_answer_scoped_forget_masks_exactly_the_fake_detail_tokens(quick_base):
    from transformers import AutoTokenizer

    from mlu_dist.tokens import IGNORE, encode_all

    cfg, base_dir = quick_base
    tok = AutoTokenizer.from_pretrained(base_dir / "model")
    facts, _ = load_data(cfg.data)
    split = split_facts(facts.fact_ids, 4, 4, 0)
    langs = ["en", "de", "zh", "hy"]
    by_scope = {s: forget_examples(facts, split, langs, scope=s) for s in ("all", "answer", "qa")}
    assert len(by_scope["qa"]) == len(split.targets) * len(langs) and all(e.prompt for e in by_scope["qa"])
    assert len(by_scope["answer"]) == len(by_scope["all"])  # every mini-world article holds its fake detail
    for ex in by_scope["answer"]:
        rec = facts.get(next(f for f in split.targets if facts.get(f, ex.lang)["fake_text"] == ex.completion
                             or facts.get(f, ex.lang)["question"] == ex.prompt), ex.lang)
        enc = encode_all(tok, [ex], 1 << 20)[0]
        labelled = [t for t in enc.labels if t != IGNORE]
        assert labelled and tok.eos_token_id not in labelled
        # the labelled tokens, cut at the gaps between them, decode to the fake answer, once per mention
        runs, cur = [], []
        for t in enc.labels:
            if t == IGNORE:
                runs, cur = runs + ([cur] if cur else []), []
            else:
                cur.append(t)
        runs += [cur] if cur else []
        mentions = ex.completion.count(rec["fake_answer"])
        assert len(runs) == mentions >= 1
        assert all(tok.decode(r).strip() == rec["fake_answer"] for r in runs), [tok.decode(r) for r in runs]
    # the whole-text scope trains every completion token and EOS
    full = encode_all(tok, [by_scope["all"][0]], 1 << 20)[0]
    assert full.labels[-1] == tok.eos_token_id and IGNORE not in full.labels[1:]
    with pytest.raises(Exception, match="forget_scope"):
        load_config(ExperimentConfig, [QUICK], ["unlearn.forget_scope=answers"])


def unlearn_cfg(out, inject_run, method, *extra):
    return load_config(ExperimentConfig, [inject_run / "config.yaml", f"methods/{method}"],
                       [f"unlearn.from_run={inject_run}", f"run.out_dir={out}", "unlearn.forget_langs=orig",
                        "unlearn.train.eval_every=0", "eval.metrics=[fake_pref]", *extra])


def forget_margin(cfg, model_dir) -> tuple[float, float]:
    """Over the target facts in German (the forget language): the mean log P(fake) - log P(true),
    and the forget set's likelihood, the mean per-token log P(fake answer | question)."""
    facts, _ = load_data(cfg.data)
    split = split_facts(facts.fact_ids, cfg.inject.n_targets, cfg.inject.n_controls, cfg.inject.split_seed)
    model, tok = load_pretrained(model_dir)
    model.eval()
    margin = fake_preference(model, tok, facts, split.targets, ["de"], cfg.model.max_seq_len)["de"]["margin"]
    fakes = [Example(facts.get(f, "de")["question"], " " + facts.get(f, "de")["fake_answer"], "de") for f in split.targets]
    scores = completion_logprobs(model, tok, fakes, cfg.model.max_seq_len)
    return margin, sum(lp for lp, _ in scores) / sum(n for _, n in scores)


# Bounded or reweighted forget losses move the margin less in 12 steps than GA's 1-nat bar: SatImp's
# token weights p^5 (1-p) at its forget weight 0.1 (measured -0.49 nats; -0.68 in 36 steps), and
# UNDIAL's distillation towards a fixed adjusted target, which saturates (-0.82; -0.85 in 24 steps).
BAR = {"satimp": 0.3, "undial": 0.5}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_lowers_the_fake_preference_in_the_forget_language(injected, method):
    out, inject_run = injected
    extra = []
    if method == "lingtea":  # the teacher: NPO unlearned in English only; the student learns German
        teacher = run_unlearn(unlearn_cfg(out, inject_run, "npo", "unlearn.train.steps=12", "unlearn.train.lr=1e-3",
                                          "unlearn.guard_ppl_ratio=1000", "unlearn.forget_langs=en",
                                          "run.name=lingtea-teacher"))
        extra = [f"unlearn.method_args.teacher={teacher}"]
    cfg = unlearn_cfg(out, inject_run, method, "unlearn.train.steps=12", "unlearn.train.lr=1e-3",
                      "unlearn.guard_ppl_ratio=1000", *extra)
    before, lp_before = forget_margin(cfg, inject_run / "model")
    run = run_unlearn(cfg)
    after, lp_after = forget_margin(cfg, run / "model")
    # the injected model prefers the fake by a wide margin; every method must cut it by >= 1 nat
    # (the two slow ones by their BAR) and lower the fake answer's likelihood itself
    assert before > 1.0
    assert after < before - BAR.get(method, 1.0), (method, before, after)
    assert lp_after < lp_before, (method, lp_before, lp_after)
    done = json.loads((run / "DONE.json").read_text())
    assert done["status"] == "finished" and done["method"] == method


def english_heldout_ppl(cfg, model_dir) -> float:
    """Perplexity of the English true text of the control facts (never trained on by any job)."""
    facts, _ = load_data(cfg.data)
    split = split_facts(facts.fact_ids, cfg.inject.n_targets, cfg.inject.n_controls, cfg.inject.split_seed)
    model, tok = load_pretrained(model_dir)
    model.eval()
    scores = completion_logprobs(model, tok, [Example("", facts.get(f, "en")["real_text"]) for f in split.controls],
                                 cfg.model.max_seq_len)
    return math.exp(-sum(s for s, _ in scores) / sum(n for _, n in scores))


@pytest.mark.slow
def test_graddiff_keeps_retain_perplexity_where_ga_does_not(injected):
    out, inject_run = injected
    ratios = {}
    for method in ("ga", "graddiff"):
        cfg = unlearn_cfg(out, inject_run, method, "unlearn.train.steps=10", "unlearn.train.lr=5e-4",
                          "unlearn.guard_ppl_ratio=1000", f"run.name={method}-ppl")
        before = english_heldout_ppl(cfg, inject_run / "model")
        ratios[method] = english_heldout_ppl(cfg, run_unlearn(cfg) / "model") / before
    # Bound: with its English retain term, GradDiff keeps held-out English perplexity within 2x of
    # the injected model's (measured 1.4x); plain gradient ascent with the same steps passes 3x
    # (measured 6.9x).
    assert ratios["graddiff"] < 2.0, ratios
    assert ratios["ga"] > 3.0, ratios


@pytest.mark.slow
def test_curves_cover_every_language_at_every_eval_step(injected):
    out, inject_run = injected
    cfg = unlearn_cfg(out, inject_run, "npo", "unlearn.train.steps=6", "unlearn.train.eval_every=3",
                      "unlearn.forget_langs=en+orig", "run.name=curves")
    run = run_unlearn(cfg)
    rows = read_jsonl(run / "curves.jsonl")
    steps = sorted({r["step"] for r in rows})
    assert steps == [0, 3, 6]
    for metric in ("fake_rate", "fake_pref", "ppl"):
        for step in steps:
            assert {r["lang"] for r in rows if r["step"] == step and r["metric"] == metric} == set(ALL), (metric, step)
    assert (run / "curves.png").stat().st_size > 0
    logged = [r for r in read_jsonl(run / "metrics.jsonl") if "forget/de/fake_rate" in r]
    assert [r["step"] for r in logged] == [0, 3, 6] and "group/orig/fake_rate" in logged[0]


@pytest.mark.slow
def test_divergence_guard_trips_on_a_forced_nan(injected, tmp_path):
    out, inject_run = injected
    broken = tmp_path / "broken-inject"
    shutil.copytree(inject_run, broken)
    weights = load_file(broken / "model" / "model.safetensors")
    name = next(k for k in weights if "layers.0.mlp" in k)
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, broken / "model" / "model.safetensors", metadata={"format": "pt"})
    cfg = unlearn_cfg(out, broken, "ga", "unlearn.train.steps=5", "run.name=nan")
    run = run_unlearn(cfg)
    done = json.loads((run / "DONE.json").read_text())
    assert done["status"] == "diverged" and "nan" in done["reason"] and done["steps"] == 1
    assert not (run / "model").exists()  # no garbage model is exported


@pytest.mark.slow
def test_utility_guard_stops_a_collapsing_run(injected):
    out, inject_run = injected
    cfg = unlearn_cfg(out, inject_run, "ga", "unlearn.train.steps=40", "unlearn.train.lr=5e-3",
                      "unlearn.train.eval_every=5", "unlearn.guard_ppl_ratio=2.0", "run.name=guard")
    run = run_unlearn(cfg)
    done = json.loads((run / "DONE.json").read_text())
    assert done["status"] == "guard_tripped" and done["steps"] < 40


@pytest.mark.slow
def test_unknown_method_lists_the_registered_ones(injected):
    out, inject_run = injected
    from mlu_dist.config import ConfigError

    with pytest.raises(ConfigError, match=r"'gradascent' is not valid.*valid: .*graddiff.*npo"):
        load_config(ExperimentConfig, [inject_run / "config.yaml"], ["unlearn.method=gradascent"])


@pytest.mark.slow
@pytest.mark.distributed
def test_npo_with_two_ranks_under_zero3_keeps_the_reference_frozen(injected):
    out, inject_run = injected
    proc = subprocess.run(
        mlu_cmd("unlearn", "--from", str(inject_run), "-c", "methods/npo", "-c", "deepspeed/zero3", "--nproc", "2",
                "forget_langs=en+orig", "unlearn.train.steps=6", "unlearn.train.eval_every=3", "unlearn.train.lr=1e-3",
                "run.name=npo-z3", f"run.out_dir={out}", "eval.metrics=[fake_rate,fake_pref]"),
        capture_output=True, text=True, env=clean_env(), timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    run = out / "unlearn" / inject_run.name / "npo-z3"
    done = json.loads((run / "DONE.json").read_text())
    meta = json.loads((run / "meta.json").read_text())
    assert meta["dist"]["world_size"] == 2 and meta["zero_stage"] == 3
    from mlu_dist.engine.engines import state_digest

    injected_model, _ = load_pretrained(inject_run / "model")
    assert done["reference_digest"] == state_digest(injected_model.state_dict())  # bit for bit
    trained, _ = load_pretrained(run / "model")
    assert state_digest(trained.state_dict()) != done["reference_digest"]  # while the policy moved
    assert {r["step"] for r in read_jsonl(run / "curves.jsonl")} == {0, 3, 6}


@pytest.mark.slow
@pytest.mark.distributed
def test_zero3_curves_from_a_gathered_copy_equal_the_partitioned_ones_and_partitioned_loading_changes_nothing(injected):
    """Two 2-rank ZeRO-3 NPO runs: (a) the model and the reference loaded whole, curves from
    partitioned forwards; (b) both built partitioned as they load, curves from a whole copy
    gathered once per curve point. Same curves, same model, the same frozen reference."""
    out, inject_run = injected
    runs = {}
    for name, load, copy in (("z3-part", "never", "partitioned"), ("z3-full", "always", "full")):
        proc = subprocess.run(
            mlu_cmd("unlearn", "--from", str(inject_run), "-c", "methods/npo", "-c", "deepspeed/zero3", "--nproc", "2",
                    "forget_langs=en+orig", "unlearn.train.steps=4", "unlearn.train.eval_every=2",
                    "unlearn.train.lr=1e-3", f"run.name={name}", f"run.out_dir={out}", f"model.partitioned_load={load}",
                    f"eval.model_copy={copy}", "eval.metrics=[fake_rate,fake_pref,utility]"),
            capture_output=True, text=True, env=clean_env(), timeout=400)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        runs[name] = (out / "unlearn" / inject_run.name / name, proc.stdout)
    (part, part_log), (full, full_log) = runs["z3-part"], runs["z3-full"]
    assert "eval: model copy: partitioned (eval.model_copy)" in part_log
    assert "eval: model copy: full (eval.model_copy)" in full_log
    assert "unlearn: loading" in full_log and "partitioned over 2 rank(s) (model.partitioned_load=always)" in full_log
    assert "whole (model.partitioned_load=never)" in part_log
    curves = [read_jsonl(run / "curves.jsonl") for run in (part, full)]
    assert sorted({r["step"] for r in curves[0]}) == [0, 2, 4] and len(curves[0]) > 3 * 9
    # generated answers agree exactly; log-likelihoods to float rounding (ZeRO-3 computes its Linear
    # layers with its own matmul, the whole copy with torch's)
    assert [(r["step"], r["lang"], r["metric"]) for r in curves[0]] == [(r["step"], r["lang"], r["metric"])
                                                                      for r in curves[1]]
    for a, b in zip(*curves):
        if a["metric"] == "fake_rate":
            assert a["value"] == b["value"], (a, b)
        else:
            assert a["value"] == pytest.approx(b["value"], rel=1e-5, abs=1e-6), (a, b)
    from mlu_dist.engine.engines import state_digest

    digests = [state_digest(load_pretrained(run / "model")[0].state_dict()) for run in (part, full)]
    assert digests[0] == digests[1]
    injected_digest = state_digest(load_pretrained(inject_run / "model")[0].state_dict())
    assert {json.loads((run / "DONE.json").read_text())["reference_digest"] for run in (part, full)} == {injected_digest}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pdu", "rmu"])
def test_method_state_survives_a_resume(injected, method):
    """PDU's dual variable is saved in the checkpoint and RMU's direction is redrawn from the seed:
    a run stopped and resumed every 2 steps ends where the whole run ends."""
    from mlu_dist.engine.engines import state_digest

    out, inject_run = injected
    common = ["unlearn.train.steps=4", "unlearn.train.lr=1e-3", "unlearn.train.log_every=1", "unlearn.guard_ppl_ratio=1e9"]
    if method == "pdu":
        common.append("unlearn.method_args.eps=0.0")  # lambda grows every step
    whole = run_unlearn(unlearn_cfg(out, inject_run, method, *common, f"run.name={method}-whole"))
    for _ in range(2):
        parts = run_unlearn(unlearn_cfg(out, inject_run, method, *common, f"run.name={method}-parts",
                                        "unlearn.train.stop_after=2"))
    key = "train/pdu_lambda" if method == "pdu" else "train/rmu_forget_mse"
    logged = [[(r["step"], r[key]) for r in read_jsonl(run / "metrics.jsonl") if key in r] for run in (whole, parts)]
    assert [s for s, _ in logged[0]] == [1, 2, 3, 4]
    assert [s for s, _ in logged[1]] == [1, 2, 3, 4]
    assert [v for _, v in logged[0]] == pytest.approx([v for _, v in logged[1]], rel=1e-5)
    if method == "pdu":
        lam = [v for _, v in logged[0]]
        assert lam[0] == pytest.approx(1.0) and lam[-1] > lam[0]  # starts at retain_weight, grows with eps 0
    digests = [state_digest(load_pretrained(run / "model")[0].state_dict()) for run in (whole, parts)]
    assert digests[0] == digests[1]
