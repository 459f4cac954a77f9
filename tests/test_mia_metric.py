"""Membership inference on the fact sets: the per-token pass (bounded memory, same numbers as a
full-vocabulary computation) and the registered, opt-in ``mia`` metric on a model whose members
are known exactly."""

from types import SimpleNamespace

import pytest
import torch

from mlu_dist.data.splits import FactSplit
from mlu_dist.eval import mia
from mlu_dist.eval.config import EvalConfig
from mlu_dist.eval.likelihood import completion_logprobs
from mlu_dist.eval.runner import Evaluator
from mlu_dist.eval.summary import summarize
from mlu_dist.eval.token_stats import token_stats
from mlu_dist.tokens import Example, encode


@pytest.fixture(scope="module")
def tiny_lm(world):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = world
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(cfg).eval()


def test_token_stats_equal_a_full_vocabulary_computation_in_any_batch(world, tiny_lm):
    facts, tok = world
    examples = [Example("", facts.get(fid, lang)["fake_text"], lang) for fid, lang in zip(facts.fact_ids, ("de", "hy"))]
    examples.append(Example("Q?", " answer", "en"))
    batched = token_stats(tiny_lm, tok, examples, max_floats=3 * len(tok))  # 3 positions per block
    sums = completion_logprobs(tiny_lm, tok, examples)
    for ex, s, (lp, n) in zip(examples, batched, sums):
        alone = token_stats(tiny_lm, tok, [ex])[0]
        assert len(s.logprobs) == n and sum(s.logprobs) == pytest.approx(lp, abs=1e-4)  # likelihood.py's numbers
        assert s.logprobs == pytest.approx(alone.logprobs, abs=1e-5)  # padding changes nothing
        ids = torch.tensor([encode(tok, ex, 128).input_ids])
        logp = torch.log_softmax(tiny_lm(input_ids=ids).logits[0, -len(s.mu) - 2:-2].double(), -1)
        mu = (logp.exp() * logp).sum(-1)
        var = (logp.exp() * logp ** 2).sum(-1) - mu ** 2
        assert s.mu == pytest.approx(mu.tolist(), abs=1e-4) and s.var == pytest.approx(var.tolist(), abs=1e-4)
        assert s.text == ex.completion


class Memorizer:
    """Stands in for a causal LM whose training set is known exactly (mocked: a real model's members
    are never this clean): it predicts the next token with logit 10 wherever the prefix (past BOS)
    is one of the memorised texts', and is uniform elsewhere."""

    def __init__(self, tok, texts):
        self.vocab, self.table = len(tok), {}
        for text in texts:
            ids = encode(tok, Example("", text), 128).input_ids
            self.table.update({tuple(ids[:t + 1]): ids[t + 1] for t in range(1, len(ids) - 1)})

    def __call__(self, input_ids, attention_mask=None, **_):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for b, row in enumerate(input_ids.tolist()):
            for t in range(len(row)):
                nxt = self.table.get(tuple(row[:t + 1]))
                if nxt is not None:
                    logits[b, t, nxt] = 10.0
        return SimpleNamespace(logits=logits)


def test_mia_finds_the_members_only_in_the_language_they_were_learned_in(world):
    facts, tok = world
    targets, controls = facts.fact_ids[:4], facts.fact_ids[4:9]
    lm = Memorizer(tok, [facts.get(fid, "de")["fake_text"] for fid in targets])
    ev = Evaluator(lm, tok, facts, FactSplit(targets, controls, []), EvalConfig(langs=["de", "en", "hy"], batch_size=3))
    values = ev.run(["mia"])
    assert sorted(values) == [f"mia_auc_{a}" for a in sorted(mia.ATTACKS)]
    for attack in mia.ATTACKS:
        assert sum(values[f"mia_auc_{attack}"]["de"].values()) / len(targets) == 1.0, attack
    for attack in ("loss", "min_k"):  # Armenian texts share no prefix with German ones: uniform, all tie
        assert all(v == 0.5 for v in values[f"mia_auc_{attack}"]["hy"].values()), attack
    # the per-fact values average to the attack's AUC, and SUMMARY.json's per-language mean is it
    stats = token_stats(lm, tok, [Example("", facts.get(f, "hy")["fake_text"]) for f in targets + controls])
    zlib_scores = [mia.zlib_score(s) for s in stats]
    direct = mia.auc(zlib_scores[:len(targets)], zlib_scores[len(targets):])
    summary = summarize(values, ["de"])
    assert summary["mia_auc_zlib"]["lang"]["hy"]["mean"] == pytest.approx(direct)
    assert summary["mia_auc_loss"]["lang"]["de"]["mean"] == 1.0


def test_mia_is_opt_in_and_needs_controls(world):
    facts, tok = world
    assert EvalConfig().metrics == ["fake_rate", "fake_pref", "paraphrase", "real_acc", "utility"]
    assert EvalConfig(metrics=["mia"]).check() == []
    ev = Evaluator(Memorizer(tok, []), tok, facts, FactSplit(facts.fact_ids[:2], [], []), EvalConfig(langs=["en"]))
    with pytest.raises(ValueError, match="n_controls"):
        ev.run(["mia"])


def test_token_stats_caps_rows_per_forward_and_floats_per_block(world, tiny_lm, monkeypatch):
    import mlu_dist.eval.token_stats as ts

    facts, tok = world
    seen, real = [], ts._stats
    monkeypatch.setattr(ts, "_stats", lambda rows, targets: seen.append(rows.shape) or real(rows, targets))
    examples = [Example("", facts.get(fid, "de")["fake_text"]) for fid in facts.fact_ids[:4]]
    budget = 5 * len(tok)
    stats = token_stats(tiny_lm, tok, examples, max_floats=budget)
    assert all(rows * vocab <= budget for rows, vocab in seen) and len(seen) > 1
    assert sum(rows for rows, _ in seen) == sum(len(s.logprobs) for s in stats)  # every scored token, once
    calls = []
    capped = token_stats(lambda **kw: calls.append(kw["input_ids"].shape[0]) or tiny_lm(**kw), tok, examples,
                         max_len=32, logits_budget=2 * 32 * len(tok) * 4)  # logits of 2 rows per forward
    assert calls == [2, 2]
    for a, b in zip(capped, token_stats(tiny_lm, tok, examples, 32)):  # the same numbers as one forward
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5) and a.var == pytest.approx(b.var, abs=1e-5)


@pytest.mark.slow
def test_mlu_eval_writes_mia_per_language_only_when_asked(injected, tmp_path):
    """A real injection through `mlu eval`: the opt-in metric reaches EVAL.json, SUMMARY.json and the
    terminal table; the default metric list leaves both files as they were."""
    import json
    import subprocess

    from conftest import clean_env, mlu_cmd

    _, run = injected

    def mlu_eval(out, metrics):
        proc = subprocess.run(mlu_cmd("eval", str(run), "--out", str(out), "--metrics", metrics), capture_output=True,
                              text=True, env=clean_env(), timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout, json.loads((out / "SUMMARY.json").read_text())["metrics"]

    stdout, summary = mlu_eval(tmp_path / "with", "fake_rate,mia")
    assert "mia_loss" in next(line for line in stdout.splitlines() if line.startswith("lang "))  # the table's head
    for attack in mia.ATTACKS:
        by_lang = summary[f"mia_auc_{attack}"]["lang"]
        assert set(by_lang) == set(summary["fake_rate"]["lang"]) and all(0 <= s["mean"] <= 1 for s in by_lang.values())
    _, plain = mlu_eval(tmp_path / "without", "fake_rate")
    assert set(plain) == {"fake_rate", "control_fake_rate"}
    assert plain["fake_rate"] == summary["fake_rate"]  # asking for mia changes no other value
