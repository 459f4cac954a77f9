"""docs/extending.md's example, run as written: one method class and one metric class, and
everything downstream picks them up (config checks, the objective, the evaluator, SUMMARY, the
table, the curves) with no edit elsewhere."""

import math
import re

import pytest
import torch

from conftest import ROOT
from mlu_dist.data import DataConfig, load_data
from mlu_dist.data.splits import FactSplit
from mlu_dist.data.templates import REFUSALS
from mlu_dist.eval.metrics import METRICS
from mlu_dist.unlearn.methods import METHODS


@pytest.fixture
def example(monkeypatch):
    """The docs/extending.md block executed, with the registries restored afterwards (other tests see the shipped ones)."""
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    monkeypatch.setattr(METRICS, "_items", dict(METRICS._items))
    text = (ROOT / "docs" / "extending.md").read_text()
    code = re.search(r"<!-- test: extending -->\s*```python\n(.*?)```", text, flags=re.S).group(1)
    assert 10 <= len(code.strip().splitlines()) <= 60
    namespace = {"__name__": "readme_example"}
    exec(compile(code, "docs/extending.md", "exec"), namespace)
    return namespace


def test_the_new_method_is_configurable_and_its_loss_is_npo_plus_kl(example):
    from mlu_dist.config import load_config
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.unlearn.methods import Context, unlearning_objective
    from test_losses import _pool, tiny_engine

    cfg = load_config(ExperimentConfig, [], ["unlearn.method=npo_kl", "unlearn.method_args={beta: 0.2}",
                                             "unlearn.retain_weight=1"])
    method = METHODS["npo_kl"](cfg.unlearn.settings())
    assert method.settings.beta == 0.2 and method.needs_reference
    eng = tiny_engine()
    with torch.no_grad():
        loss, metrics = unlearning_objective(method, Context(1.0, 1.0, 1.0, eng))(eng, {"forget": _pool(1), "retain": _pool(2)})
    # at theta = theta_ref: NPO gives (2/beta) log 2 and the KL retain term 0
    assert loss.item() == pytest.approx(2 / 0.2 * math.log(2), rel=1e-4)
    assert metrics["train/retain_kl"] == pytest.approx(0.0, abs=1e-5)


def test_the_new_metric_reaches_eval_summary_table_and_curves(example):
    from mlu_dist.eval.config import EvalConfig
    from mlu_dist.eval.runner import Evaluator
    from mlu_dist.eval.summary import format_table, summarize
    from mlu_dist.modeling import train_tokenizer
    from mlu_dist.unlearn.curves import curve_table
    from test_eval import ScriptedLM

    assert "refusal_rate" in EvalConfig().metrics  # on by default once registered
    cfg = DataConfig(langs=["en", "de"])
    cfg.world.n_people, cfg.world.n_towns, cfg.world.n_companies, cfg.world.n_rivers = 6, 4, 3, 3
    facts, corpus = load_data(cfg)
    tok = train_tokenizer([r["text"] for r in corpus], 600)
    split = FactSplit(facts.fact_ids[:3], facts.fact_ids[3:5], [])
    ev = Evaluator(ScriptedLM(tok, " " + REFUSALS["de"]), tok, facts, split, EvalConfig(langs=["en", "de"]))
    values = ev.run(["fake_rate", "refusal_rate"])
    assert set(values["refusal_rate"]["de"].values()) == {1.0} and set(values["refusal_rate"]["en"].values()) == {0.0}
    summary = summarize(values, ["de"])
    assert summary["refusal_rate"]["lang"]["de"]["mean"] == 1.0
    assert "refusal" in format_table(summary, ["en", "de"], ["de"]).splitlines()[0]
    table, keys = curve_table(values, ["en", "de"])
    assert table["refusal_rate"] == {"en": 0.0, "de": 1.0} and ("refusal_rate", "forget") in keys


def test_unlearning_criteria_come_from_the_metric_registry(example, monkeypatch):
    """`unlearn.best` takes each bounded, lower-is-better forgetting curve of the registry: the docs'
    refusal_rate (higher is better) does not join; a plugin metric that lowers does, with no edit
    to the unlearning code; the guard watches the one value marked guard=True."""
    from mlu_dist.config import ConfigError, load_config
    from mlu_dist.eval.metrics import Metric, Value, guard_value
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.unlearn.config import best_criteria

    assert best_criteria() == ("last", "forget_fake_rate", "forget_fake_pref")
    assert guard_value().name == "utility_nll"
    with pytest.raises(ConfigError, match=r"unlearn.best: 'forget_leak_rate' is not valid.*forget_fake_pref"):
        load_config(ExperimentConfig, [], ["unlearn.best=forget_leak_rate"])

    @METRICS.register("leak_rate")
    class LeakRate(Metric):
        values = (Value("leak_rate", "leak", lower_is_better=True, curve="leak_rate", bounded=True),)
        on_curves = True

    assert best_criteria()[-1] == "forget_leak_rate"
    cfg = load_config(ExperimentConfig, [], ["unlearn.best=forget_leak_rate"])
    assert cfg.unlearn.best == "forget_leak_rate" and "leak_rate" in cfg.eval.metrics  # defaults follow the registry
    monkeypatch.setattr(LeakRate, "values", (Value("leak_rate", "leak", True, curve="leak_rate", guard=True),))
    with pytest.raises(RuntimeError, match="exactly one curve value must carry guard=True"):
        guard_value()
