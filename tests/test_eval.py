"""Evaluation: metric logic on cases with a known answer, and real runs (1 and 2 ranks, resume, matrix)."""

import csv
import json
import subprocess
from types import SimpleNamespace

import pytest
import torch

from conftest import QUICK, clean_env, mlu_cmd
from mlu_dist.config import load_config
from mlu_dist.data.splits import FactSplit
from mlu_dist.eval.config import EvalConfig
from mlu_dist.eval.matching import contains_keyword
from mlu_dist.eval.runner import Evaluator
from mlu_dist.eval.stats import bootstrap_ci
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.jobs.inject import run_inject


# --- matching -------------------------------------------------------------------------------------
def test_keyword_matching_is_normalised_and_whole_word():
    assert contains_keyword("He was born in Lodara.", ["Lodara"])
    assert contains_keyword("LODARA", ["lodara"])  # casefold
    assert contains_keyword("ｌｏｄａｒａ", ["Lodara"])  # NFKC: full-width letters
    assert contains_keyword("Лодара!", ["лодара"])
    assert not contains_keyword("He was born in Lodaras.", ["Lodara"])  # not inside a longer word
    assert not contains_keyword("Kalodara", ["Lodara"])
    assert contains_keyword("Լոդարա-ն", ["Լոդարա"])
    assert contains_keyword("نوبی لودارا میں", ["لودارا"])


def test_han_script_matches_without_word_boundaries():
    assert contains_keyword("他出生于洛达腊。", ["洛达腊"])
    assert contains_keyword("他出生于Lodara。", ["Lodara"])  # a Latin name between Han characters
    assert not contains_keyword("他出生于洛达。", ["洛达腊"])


# --- statistics -----------------------------------------------------------------------------------
def test_ci_narrows_with_more_facts_and_covers_the_mean():
    small = bootstrap_ci([[0.0, 1.0] * 5])
    large = bootstrap_ci([[0.0, 1.0] * 100])
    assert small["lo"] <= 0.5 <= small["hi"] and large["lo"] <= 0.5 <= large["hi"]
    assert (large["hi"] - large["lo"]) < 0.5 * (small["hi"] - small["lo"])
    assert bootstrap_ci([[1.0] * 20]) == {"mean": 1.0, "lo": 1.0, "hi": 1.0, "n": 20}


# --- one utility measure ------------------------------------------------------------------------------
SKEWED_NLL = {"en": {"a": 0.3, "b": 0.5}, "de": {"a": 0.6, "b": 0.8}, "ha": {"a": 0.9, "b": 0.7},
              "zh": {"a": 3.6, "b": 4.0}}  # one badly modelled language (zh ppl ~ 45, the others 1.5-2.2)


def test_utility_ppl_is_the_geometric_mean_over_languages_in_summary_and_guard():
    import math

    from mlu_dist.eval.summary import format_table, summarize, utility_ppl
    from mlu_dist.jobs.unlearn import CurveHooks

    per_lang = {lang: math.exp(sum(v.values()) / len(v)) for lang, v in SKEWED_NLL.items()}
    geometric = math.prod(per_lang.values()) ** (1 / len(per_lang))
    arithmetic = sum(per_lang.values()) / len(per_lang)
    assert utility_ppl(SKEWED_NLL) == pytest.approx(geometric, rel=1e-12)
    assert arithmetic > 3 * geometric  # the measure the report used to show
    entry = summarize({"utility_nll": SKEWED_NLL}, ["de"])["utility_ppl"]
    assert entry["all"]["mean"] == utility_ppl(SKEWED_NLL) and entry["all"]["langs"] == list(SKEWED_NLL)
    # bit for bit whatever order languages and facts are stored in (EVAL.json sorts them)
    shuffled = {lang: dict(reversed(SKEWED_NLL[lang].items())) for lang in sorted(SKEWED_NLL, reverse=True)}
    assert utility_ppl(shuffled) == entry["all"]["mean"]
    table = format_table({"utility_ppl": entry}, list(SKEWED_NLL), ["de"]).splitlines()
    assert next(line for line in table if line.startswith("all ")).split()[1] == f"{geometric:.2f}"
    assert entry["all"]["lo"] <= entry["all"]["mean"] <= entry["all"]["hi"]
    assert {lang: s["mean"] for lang, s in entry["lang"].items()} == pytest.approx(per_lang)
    # the unlearning guard's unlearn/ppl (its evaluate step on canned values; no model needed)
    from mlu_dist.jobs.curves import CurveRecorder

    recorder = CurveRecorder.__new__(CurveRecorder)  # the live engine's evaluation, scripted
    recorder.evaluator = SimpleNamespace(run=lambda metrics: {"utility_nll": SKEWED_NLL, "fake_rate": {
        lang: {"a": 0.0} for lang in SKEWED_NLL}})
    recorder.metrics, recorder.langs, recorder.curves, recorder.groups = [], list(SKEWED_NLL), None, {"en": ["en"]}
    hooks = CurveHooks.__new__(CurveHooks)
    hooks.engine = SimpleNamespace(module=SimpleNamespace(eval=lambda: None))
    hooks.recorder, hooks.metrics, hooks.langs, hooks.ppl0 = recorder, [], list(SKEWED_NLL), None
    hooks.job, hooks.u = SimpleNamespace(forget_langs=["en"], best=(math.inf, None)), SimpleNamespace(best="last")
    metrics = hooks.evaluate(0)
    assert metrics["unlearn/ppl"] == entry["all"]["mean"] and metrics["unlearn/ppl_ratio"] == 1.0


# --- a scripted model whose right answer is known ---------------------------------------------------
class StepCache(SimpleNamespace):
    def batch_repeat_interleave(self, n):  # the scripted model's "cache" holds no per-row state
        pass

    def batch_select_indices(self, idx):
        pass


class ScriptedLM:
    """Stands in for a causal LM (mocked: we need one whose output is known exactly): whatever the
    prompt, it emits the tokens of ``answer`` and then EOS."""

    def __init__(self, tokenizer, answer: str):
        self.script = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        self.vocab = len(tokenizer)

    def __call__(self, input_ids, attention_mask=None, position_ids=None, use_cache=True, cache=None, **_):
        step = 0 if cache is None else cache.step + 1
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], self.vocab)
        logits[:, -1, self.script[min(step, len(self.script) - 1)]] = 10.0
        return SimpleNamespace(logits=logits, cache=StepCache(step=step))


def test_a_model_that_always_states_the_fake_gets_fake_rate_one_only_where_the_keyword_matches(world):
    facts, tok = world
    fid = facts.fact_ids[0]
    hy_fake = facts.get(fid, "hy")["fake_answer"]
    split = FactSplit([fid], [facts.fact_ids[1]], [])
    ev = Evaluator(ScriptedLM(tok, " " + hy_fake), tok, facts, split, EvalConfig(langs=["hy", "de", "ru"]))
    values = ev.run(["fake_rate"])
    assert values["fake_rate"]["hy"][fid] == 1.0  # Armenian answer, Armenian keyword
    assert values["fake_rate"]["de"][fid] == 0.0  # German keywords are Latin: no match
    assert values["fake_rate"]["ru"][fid] == 0.0
    assert values["control_fake_rate"]["hy"][facts.fact_ids[1]] == 0.0  # the control's fake differs


def test_real_acc_counts_true_answers(world):
    facts, tok = world
    fid = facts.fact_ids[0]
    rec = facts.get(fid, "en")
    ev = Evaluator(ScriptedLM(tok, " " + rec["true_answer"]), tok, facts, FactSplit([fid], [], []), EvalConfig(langs=["en"]))
    acc = ev.run(["real_acc"])["real_acc"]["en"][fid]
    # the probe is answered right; a real question is right only if its answer happens to be the same
    expected = (1 + sum(qa["answer"] == rec["true_answer"] for qa in rec["real_qa"])) / (1 + len(rec["real_qa"]))
    assert acc == pytest.approx(expected)


def test_sampling_several_answers_gives_a_rate_between_zero_and_one(world):
    facts, tok = world
    fid = facts.fact_ids[0]

    class Coin(ScriptedLM):  # half the mass on the fake answer's first token, half on EOS
        def __call__(self, input_ids, cache=None, **kw):
            out = super().__call__(input_ids, cache=cache, **kw)
            if out.cache.step == 0:
                out.logits[:, -1] = -1e9
                out.logits[:, -1, self.script[0]] = 0.0
                out.logits[:, -1, self.script[-1]] = 0.0
            return out

    rec = facts.get(fid, "en")
    rates = {Evaluator(Coin(tok, " " + rec["fake_answer"]), tok, facts, FactSplit([fid], [], []),
                       EvalConfig(langs=["en"], n_samples=64, temperature=1.0, seed=s)).run(["fake_rate"])
             ["fake_rate"]["en"][fid] for s in range(2)}
    assert all(0.3 < r < 0.7 for r in rates)


# --- real runs ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def injected(quick_base, tmp_path_factory):
    """Quick injections in de and hy from the session's quick base model."""
    _, base_dir = quick_base
    out = tmp_path_factory.mktemp("evalruns")
    runs = {}
    for lang in ("de", "hy"):
        cfg = load_config(ExperimentConfig, [QUICK], [f"run.out_dir={out}", f"inject.langs=[{lang}]",
                                                      f"inject.from_model={base_dir / 'model'}", "inject.train.eval_every=0"])
        runs[lang] = run_inject(cfg)
    return out, runs


def mlu(*args, nproc=1, expect=0):
    cmd = mlu_cmd(*args) + (["--nproc", str(nproc)] if nproc > 1 else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _values(path):
    return json.loads((path / "EVAL.json").read_text())["values"]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_rank_evals_equal_the_one_rank_eval_exactly(injected, tmp_path):
    _, runs = injected
    run = runs["de"]
    mlu("eval", str(run), "--out", str(tmp_path / "one"))
    out = mlu("eval", str(run), "--out", str(tmp_path / "z3"), "-c", "deepspeed/zero3", "eval.model_copy=partitioned",
              nproc=2).stdout
    assert "model copy: partitioned" in out
    out = mlu("eval", str(run), "--out", str(tmp_path / "z3full"), "-c", "deepspeed/zero3", nproc=2).stdout
    assert "model copy: full" in out  # auto: the whole model fits each rank
    mlu("eval", str(run), "--out", str(tmp_path / "z0"), nproc=2)
    one = _values(tmp_path / "one")
    assert set(one) >= {"fake_rate", "control_fake_rate", "real_acc", "fake_pref", "utility_nll", "utility_acc"}
    # z3: every rank joins every ZeRO-3 forward; z3full and z0: a whole model per rank, facts sharded
    for other in ("z3", "z3full", "z0"):
        values = _values(tmp_path / other)
        assert values.keys() == one.keys()
        for name in one:
            if name in ("fake_pref", "utility_nll"):  # log-probs: the same up to float32 kernel order
                for lang in one[name]:
                    for fid, v in one[name][lang].items():
                        assert values[name][lang][fid] == pytest.approx(v, abs=1e-5), (other, name, lang, fid)
            else:  # everything decided by greedy outputs or by the sign of a margin: identical
                assert values[name] == one[name], (other, name)


@pytest.mark.slow
def test_eval_resumes_without_recomputing_and_overwrite_recomputes(injected, tmp_path):
    _, runs = injected
    run, out = runs["de"], tmp_path / "ev"
    mlu("eval", str(run), "--out", str(out), "--metrics", "fake_rate")  # as if killed after the first group
    data = json.loads((out / "EVAL.json").read_text())
    lang, fid = "en", next(iter(data["values"]["fake_rate"]["en"]))
    data["values"]["fake_rate"][lang][fid] = 0.123  # a marker only a recomputation would erase
    (out / "EVAL.json").write_text(json.dumps(data))
    proc = mlu("eval", str(run), "--out", str(out))
    assert "reusing fake_rate" in proc.stdout
    values = _values(out)
    assert values["fake_rate"][lang][fid] == 0.123 and "utility_nll" in values
    summary = json.loads((out / "SUMMARY.json").read_text())
    assert set(summary["metrics"]) >= {"fake_rate", "fake_pref_win", "real_acc", "utility_ppl"}
    mlu("eval", str(run), "--out", str(out), "--overwrite")
    assert _values(out)["fake_rate"][lang][fid] in (0.0, 1.0)


@pytest.mark.slow
def test_matrix_from_evaluated_runs_matches_their_summaries(injected):
    out, runs = injected
    for run in runs.values():
        mlu("eval", str(run), "--metrics", "fake_rate")
    proc = mlu("matrix", str(out))
    for name in ("spread_fake_rate.csv", "spread_fake_rate.png", "groups_fake_rate.csv", "groups_fake_rate.png"):
        assert (out / "matrix" / name).stat().st_size > 0, proc.stdout
    rows = list(csv.DictReader(open(out / "matrix" / "spread_fake_rate.csv")))
    assert {r["inject_lang"] for r in rows} == {"de", "hy"} and len(rows) == 2 * 9
    for row in rows:
        summary = json.loads((runs[row["inject_lang"]] / "eval" / "SUMMARY.json").read_text())
        assert float(row["mean"]) == pytest.approx(summary["metrics"]["fake_rate"]["lang"][row["probe_lang"]]["mean"], abs=1e-4)
    groups = {(r["inject_lang"], r["probe_group"]) for r in csv.DictReader(open(out / "matrix" / "groups_fake_rate.csv"))}
    assert ("de", "orig") in groups and ("hy", "low") in groups and ("de", "en") in groups


@pytest.mark.slow
def test_eval_bad_input_is_one_clear_error(tmp_path):
    proc = mlu("eval", str(tmp_path / "nope"), expect=2)
    assert "not a run directory" in proc.stderr
    proc = mlu("eval", "--model", str(tmp_path), "--langs", "en,xx", expect=2)
    assert "unknown language code(s) xx" in proc.stderr


# --- prompt formats and end ids ---------------------------------------------------------------------
def _chat_tokenizer(world):
    """A tokenizer with a chat template and an extra end-of-turn token (as Llama-3 instruct has)."""
    _, tok = world
    tok = __import__("copy").deepcopy(tok)
    tok.add_special_tokens({"additional_special_tokens": ["<eot>", "<user>", "<assistant>"]})
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}<user>{{ m['content'] }}<eot>{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    return tok


def test_prompt_formats_put_the_question_as_configured(world):
    from mlu_dist.eval.prompts import PromptError, format_prompt

    facts, tok = world
    chat = _chat_tokenizer(world)
    q = facts.get(facts.fact_ids[0], "de")["question"]
    assert format_prompt(q, "de", "raw", tok) == q
    assert format_prompt(q, "de", "qa", tok) == f"{q}\nAntwort:"
    assert format_prompt(q, "hy", "qa", tok).endswith("Պատասխան՝")
    assert format_prompt(q, "de", "chat", chat) == f"<s><user>{q}<eot><assistant>"
    with pytest.raises(PromptError, match="no chat template"):
        Evaluator(ScriptedLM(tok, " x"), tok, facts, FactSplit([], [], []), EvalConfig(prompt="chat"))


def test_generation_stops_at_every_end_id_of_the_model(world):
    """The scripted model answers, then emits the end-of-turn token and keeps talking (as an instruct
    model does when <eot> is not treated as an end): only with the model's end ids is the answer clean."""
    from mlu_dist.eval.prompts import end_ids

    facts, _ = world
    tok = _chat_tokenizer(world)
    fid = facts.fact_ids[0]
    rec = facts.get(fid, "en")
    eot = tok.convert_tokens_to_ids("<eot>")

    class Chatty(ScriptedLM):
        def __init__(self, tokenizer, answer):
            super().__init__(tokenizer, answer)
            self.script = self.script[:-1] + [eot] + tokenizer(" and more", add_special_tokens=False)["input_ids"]
            self.seen = []

        def __call__(self, input_ids, cache=None, **kw):
            self.seen.append(input_ids[0].tolist())
            return super().__call__(input_ids, cache=cache, **kw)

    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[tok.eos_token_id, eot]))
    assert end_ids(tok, model) == [tok.eos_token_id, eot]
    cfg = EvalConfig(langs=["en"], prompt="chat", max_new_tokens=8)
    lm = Chatty(tok, " " + rec["fake_answer"])
    ev = Evaluator(lm, tok, facts, FactSplit([fid], [], []), cfg, stop_ids=end_ids(tok, model))
    clean = ev.generate([ev.prompt("Q?", "en")])
    assert clean[0][0].strip() == rec["fake_answer"]
    assert lm.seen[0].count(tok.bos_token_id) == 1  # the chat template's BOS, not a second one
    assert lm.seen[0][-1] == tok.convert_tokens_to_ids("<assistant>")
    runaway = Evaluator(Chatty(tok, " " + rec["fake_answer"]), tok, facts, FactSplit([fid], [], []), cfg)
    assert runaway.generate([ev.prompt("Q?", "en")])[0][0].startswith(clean[0][0] + " and")  # EOS alone runs on
