"""The evaluation metrics: each a registered class, so adding one is one class here (or in your
own module) and ``eval.metrics``, EVAL.json / SUMMARY.json, the terminal table, the forgetting
curves and the report pick it up.

A metric declares the per-fact *values* it produces (how each is shown, summarised and drawn, and
its direction), what it needs of the shared *probe pass* (every probe question of the target and
control facts, in every language, run once for all metrics of an evaluation: generated answers
and/or scores of the fake and true answers), and ``compute``, which turns that pass (plus any
work of its own through the evaluator) into ``{value: {lang: {fact_id: number}}}``.

This module imports no torch: configs check metric names against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from mlu_dist.eval.matching import contains_keyword
from mlu_dist.registry import Registry

if TYPE_CHECKING:
    from mlu_dist.eval.runner import Evaluator, ProbeRecord


@dataclass(frozen=True)
class Value:
    """One per-fact value of a metric."""

    name: str
    """Key in EVAL.json (and in SUMMARY.json unless ``summary_name`` is set)."""
    label: str
    """Column label in tables; empty = not shown in the terminal table."""
    lower_is_better: bool
    """Direction: True for what unlearning should lower (fake_rate), False for what it should keep."""
    summary_name: str = ""
    """Name in SUMMARY.json when it differs (utility_nll is summarised as utility_ppl)."""
    transform: Callable[[float], float] | None = None
    """Applied to the mean and CI bounds in SUMMARY.json and on the curves (exp: NLL -> perplexity)."""
    curve: str = ""
    """Name on the per-language forgetting curves and W&B keys (empty = not on the curves)."""
    curve_axis: str = "forget"
    """W&B key prefix of the curve: forget/<lang>/<curve> or retain/<lang>/<curve>."""
    bounded: bool = False
    """A rate in [0, 1] (drawn in the curves figure on a shared 0-1 axis)."""
    in_report: bool = False
    """Shown in the report's before -> after table of every unlearning setting."""
    requires: tuple[str, ...] = ()
    """Optional record fields (data/schema.py OPTIONAL) it cannot be computed without; on a fact set
    lacking one (news data has no true_answer) the value is skipped, with the reason in SUMMARY.json."""
    guard: bool = False
    """The utility measure the unlearning guard watches: its value over all languages (after
    ``transform``) as a ratio to step 0 (``unlearn/ppl_ratio``). One curve value carries it."""

    @property
    def summary_key(self) -> str:
        return self.summary_name or self.name


@dataclass(frozen=True)
class ProbeNeeds:
    """What a metric needs of the shared probe pass."""

    generate: bool = False
    """Generated answers to each probe question."""
    score: bool = False
    """Log-probabilities of the fake and the true answer to each probe question."""
    controls: bool = False
    """The control facts too, not only the targets."""


class Metric:
    """A registered metric (a structural base: subclasses share no behaviour through it)."""

    values: tuple[Value, ...] = ()
    probe: ProbeNeeds = ProbeNeeds()
    own_pass: bool = False
    """It runs model work of its own besides the probe pass (saved as its own step of `mlu eval`)."""
    on_curves: bool = False
    """Computed at every curve point of an unlearning run."""
    default: bool = True
    """In ``eval.metrics`` by default; False = opt-in (named in the list), so that adding it
    changes no existing EVAL.json / SUMMARY.json."""

    def needs(self, ev: Evaluator) -> ProbeNeeds:
        """What it needs of the probe pass on the evaluator's data (``probe`` unless overridden)."""
        return self.probe

    def compute(self, probe: list[ProbeRecord], ev: Evaluator) -> dict[str, dict[str, dict[str, float]]]:
        raise NotImplementedError


METRICS: Registry[type[Metric]] = Registry("metric")


def default_metrics() -> list[str]:
    """The metrics ``eval.metrics`` lists by default: every registered one not marked opt-in."""
    return [name for name in METRICS.order() if METRICS[name].default]


def curve_values() -> list[Value]:
    """Every value drawn on the forgetting curves, in registry order."""
    return [v for name in METRICS.order() if METRICS[name].on_curves for v in METRICS[name].values if v.curve]


def forget_criteria() -> dict[str, Value]:
    """What an unlearning run can stop on or keep its best model by: ``forget_<curve>``, the mean
    over the forget languages of each bounded, lower-is-better forgetting curve (``forget_fake_rate``,
    ``forget_fake_pref``; a plugin metric's curve joins by declaring the same)."""
    return {f"forget_{v.curve}": v for v in curve_values()
            if v.curve_axis == "forget" and v.bounded and v.lower_is_better}


def guard_value() -> Value:
    """The curve value the utility guard watches (``guard=True``; utility_nll)."""
    found = [v for v in curve_values() if v.guard]
    if len(found) != 1:
        raise RuntimeError(f"exactly one curve value must carry guard=True, found {[v.name for v in found]}")
    return found[0]


def hit_rate(samples: list[str], keywords) -> float:
    """Share of generated samples that contain one of ``keywords`` (normalised, whole word)."""
    return sum(contains_keyword(s, keywords) for s in samples) / len(samples)


def per_lang(names, langs) -> dict[str, dict[str, dict[str, float]]]:
    return {name: {lang: {} for lang in langs} for name in names}


@METRICS.register("fake_rate")
class FakeRate(Metric):
    """Share of generated answers that state the fake detail (its keyword), on targets and on
    never-injected controls (damage that is not spread)."""

    values = (Value("fake_rate", "fake_rate", True, curve="fake_rate", bounded=True),
              Value("control_fake_rate", "ctrl_fake", True))
    probe = ProbeNeeds(generate=True, controls=True)
    on_curves = True

    def compute(self, probe, ev):
        out = per_lang(("fake_rate", "control_fake_rate"), ev.langs)
        for r in probe:
            name = "fake_rate" if r.kind == "target" else "control_fake_rate"
            out[name][r.lang][r.fact_id] = hit_rate(r.answers, r.record["fake_keywords"])
        return out


@METRICS.register("fake_pref")
class FakePreference(Metric):
    """log P(fake) - log P(true) of the answers, length-normalised (``fake_pref``), and whether the
    fake is the likelier one (``fake_pref_win``; on controls too)."""

    values = (Value("fake_pref_win", "fake>true", True, curve="fake_pref", bounded=True, requires=("true_answer",)),
              Value("fake_pref", "", True, curve="margin", requires=("true_answer",)),
              Value("control_fake_pref_win", "ctrl>true", True, requires=("true_answer",)))
    probe = ProbeNeeds(score=True, controls=True)
    on_curves = True

    def compute(self, probe, ev):
        out = per_lang(("fake_pref", "fake_pref_win", "control_fake_pref_win"), ev.langs)
        for r in probe:
            (fake_lp, fake_n), (true_lp, true_n) = r.scores
            margin = fake_lp / max(fake_n, 1) - true_lp / max(true_n, 1)
            if r.kind == "target":
                out["fake_pref"][r.lang][r.fact_id] = margin
                out["fake_pref_win"][r.lang][r.fact_id] = float(margin > 0)
            else:
                out["control_fake_pref_win"][r.lang][r.fact_id] = float(margin > 0)
        return out


@METRICS.register("paraphrase")
class ParaphraseProbes(Metric):
    """The fake_rate of the targets on held-out phrasings, never trained on: other questions
    (``para_fake_rate``: the record's ``paraphrases``, put as ``eval.prompt`` says) and cloze
    prefixes the model completes (``cloze_fake_rate``: ``cloze``, always as plain text). Beside
    ``fake_rate`` (the trained question) they show whether a model forgot the sentence or the fact."""

    values = (Value("para_fake_rate", "para_fake", True, requires=("paraphrases",)),
              Value("cloze_fake_rate", "cloze_fake", True, requires=("cloze",)))
    own_pass = True

    def compute(self, probe, ev):
        keys, prompts = [], []
        for value, field in (("para_fake_rate", "paraphrases"), ("cloze_fake_rate", "cloze")):
            if not ev.available(value):
                continue
            for lang in ev.langs:
                for fid in ev.targets:
                    for text in ev.facts.get(fid, lang)[field]:
                        keys.append((value, lang, fid))
                        prompts.append(ev.prompt(text, lang) if field == "paraphrases" else text)
        hits: dict[tuple, list[float]] = {}
        for key, answers in zip(keys, ev.generate(prompts) if prompts else []):
            hits.setdefault(key, []).append(hit_rate(answers, ev.facts.get(key[2], key[1])["fake_keywords"]))
        out = per_lang(("para_fake_rate", "cloze_fake_rate"), ev.langs)
        for (value, lang, fid), h in hits.items():
            out[value][lang][fid] = sum(h) / len(h)
        return out


@METRICS.register("real_acc")
class RealAccuracy(Metric):
    """Share of right answers over the probe question (its true answer) and the fact's real
    questions (QA pairs about the true information). Without true answers (news data) it is the
    real questions alone, and the evaluation notes so."""

    values = (Value("real_acc", "real_acc", False, in_report=True),)
    probe = ProbeNeeds(generate=True)
    own_pass = True

    def needs(self, ev):
        # the probe question's answer is scored against the true answer: without one, not asked
        return self.probe if ev.facts.has("true_answer") else ProbeNeeds()

    def compute(self, probe, ev):
        with_probe = ev.facts.has("true_answer")
        if not with_probe:
            ev.note("real_acc", "real questions (real_qa) only: the data has no true_answer, so the probe "
                                "question's answer is not scored")
        hits = {(r.lang, r.fact_id): [hit_rate(r.answers, [r.record["true_answer"]])] if with_probe else []
                for r in probe if r.kind == "target"}
        keys, prompts = [], []
        for lang in ev.langs:
            for fid in ev.targets:
                for qa in ev.facts.get(fid, lang)["real_qa"]:
                    keys.append((lang, fid, qa["answer"]))
                    prompts.append(ev.prompt(qa["question"], lang))
        for (lang, fid, answer), answers in zip(keys, ev.generate(prompts) if prompts else []):
            hits.setdefault((lang, fid), []).append(hit_rate(answers, [answer]))
        out = per_lang(("real_acc",), ev.langs)
        for (lang, fid), h in hits.items():
            if h:
                out["real_acc"][lang][fid] = sum(h) / len(h)
        return out


@METRICS.register("utility")
class Utility(Metric):
    """Knowledge the injection never touched, on the control facts: accuracy of the answers
    (``utility_acc``) and perplexity of their true articles (``utility_nll``, summarised as ppl)."""

    values = (Value("utility_acc", "util_acc", False, requires=("true_answer",)),
              Value("utility_nll", "util_ppl", True, summary_name="utility_ppl", transform=math.exp,
                    curve="ppl", curve_axis="retain", in_report=True, guard=True))
    probe = ProbeNeeds(generate=True, controls=True)
    own_pass = True
    on_curves = True

    def compute(self, probe, ev):
        from mlu_dist.tokens import Example

        out = per_lang(("utility_acc", "utility_nll"), ev.langs)
        for r in probe:
            if r.kind == "control" and ev.available("utility_acc"):
                out["utility_acc"][r.lang][r.fact_id] = hit_rate(r.answers, [r.record["true_answer"]])
        keys, examples = [], []
        for lang in ev.langs:
            for fid in ev.controls:
                keys.append((lang, fid))
                examples.append(Example("", ev.facts.get(fid, lang)["real_text"], lang))
        for (lang, fid), (lp, n) in zip(keys, ev.score(examples)):
            out["utility_nll"][lang][fid] = -lp / max(n, 1)
        return out


@METRICS.register("mia")
class MembershipInference(Metric):
    """Membership inference per language (opt-in): can an attacker tell the injected target facts
    from the never-injected controls by the model's likelihood of their fake statement
    (``fake_text``)? One value per attack (eval/mia.py: LOSS, zlib, Min-K%, Min-K%++, k = 40 %):
    per target fact, the share of the same language's controls it outranks, so that the mean over
    targets is the attack's AUC (0.5 = no trace of membership; 1 = every target stands out). In a
    language the fake was never injected in, an AUC above 0.5 is membership that spread there."""

    values = tuple(Value(f"mia_auc_{attack}", label, True) for attack, label in (
        ("loss", "mia_loss"), ("zlib", ""), ("min_k", ""), ("min_k_pp", "mia_mink++")))
    own_pass = True
    default = False
    k = 0.4
    """Min-K%'s share of lowest-probability tokens (open-unlearning's TOFU default)."""

    def compute(self, probe, ev):
        from mlu_dist.eval.mia import ATTACKS, attack_score, outranked_share
        from mlu_dist.eval.sharding import run_sharded
        from mlu_dist.eval.token_stats import token_stats
        from mlu_dist.tokens import Example

        if not ev.targets or not ev.controls:
            raise ValueError("the mia metric compares target with control facts: it needs inject.n_targets > 0 and "
                             "inject.n_controls > 0")
        keys, texts = [], []
        for lang in ev.langs:
            for kind, fids in (("target", ev.targets), ("control", ev.controls)):
                keys += [(kind, lang, fid) for fid in fids]
                texts += [Example("", ev.facts.get(fid, lang)["fake_text"], lang) for fid in fids]
        stats = run_sharded(texts, lambda e: len(e.completion), ev.cfg.batch_size,
                            lambda batch: token_stats(ev.forward, ev.tok, batch, ev.max_len), ev.who)
        out = per_lang([f"mia_auc_{a}" for a in ATTACKS], ev.langs)
        for attack in ATTACKS:
            scores = {key: attack_score(attack, s, self.k) for key, s in zip(keys, stats)}
            for lang in ev.langs:
                controls = [scores[("control", lang, fid)] for fid in ev.controls]
                for fid in ev.targets:
                    out[f"mia_auc_{attack}"][lang][fid] = outranked_share(scores[("target", lang, fid)], controls)
        return out


QA_VALUES = ("rouge", "prob", "truth_ratio", "options_prob", "mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_pp")


@METRICS.register("qa")
class QABenchmark(Metric):
    """TOFU's per-question values on a QA study's every split (opt-in; ``data.qa``): ROUGE-L recall
    of the greedy answer, length-normalised answer probability, truth ratio (paraphrased vs
    perturbed answers), options probability and each membership score, from two batched passes per
    question (eval/qa.py). The per-language table (forget quality, model utility, MIA AUC forget vs
    holdout, privacy leakage against the retain model) is computed from these values by the report."""

    values = tuple(Value(f"qa_{name}", "", name.startswith("mia_"), requires=("qa_split",)) for name in QA_VALUES)
    own_pass = True
    default = False

    def compute(self, probe, ev):
        from mlu_dist.eval.qa import score_qa

        qa = {(r["qa_split"], r["lang"], r["qa_id"]): {"qa_id": r["qa_id"], "lang": r["lang"], "split": r["qa_split"],
                                                         "question": r["question"], "answer": r["true_answer"],
                                                         **{k: r[k] for k in ("paraphrased_answer", "perturbed_answer")
                                                            if r.get(k)}}
              for r in ev.facts.records if r["lang"] in ev.langs}
        out = per_lang([f"qa_{name}" for name in QA_VALUES], ev.langs)
        for (split, lang, qa_id), values in score_qa(ev, qa).items():
            for name, v in values.items():
                out[f"qa_{name}"][lang][f"{split}:{qa_id}"] = v
        return out


def value_spec(name: str) -> Value:
    """The :class:`Value` named ``name`` (an EVAL.json key) among the registered metrics."""
    for metric in METRICS.names():
        for v in METRICS[metric].values:
            if v.name == name:
                return v
    raise KeyError(f"no registered metric produces a value named '{name}'")


def value_names(metric: str) -> tuple[str, ...]:
    return tuple(v.name for v in METRICS[metric].values)


def all_values() -> list[Value]:
    """Every value of every registered metric, in registration order."""
    return [v for name in METRICS.order() for v in METRICS[name].values]
