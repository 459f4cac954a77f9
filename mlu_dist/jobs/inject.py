"""`mlu inject`: fine-tune the base model on English safe data plus fake data in language(s) X.

This is the paper's injection mix: every batch holds a ``fake_fraction`` share of fake articles
(and, by default, question -> fake answer pairs) of the target facts in the injection language(s),
and English true text of untouched facts for the rest (``inject/data.py``). The run dir ends with
an exported model, a checkpoint and ``spread.json``: per language, how often the fake answer is
now preferred.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from mlu_dist.runs import rundir
from mlu_dist.data import DataError, load_data, study_split
from mlu_dist.data.check import check_records
from mlu_dist.engine.dist import DistInfo, setup_env
from mlu_dist.engine.loop import LoopHooks, Stop
from mlu_dist.eval import knowledge
from mlu_dist.eval.likelihood import completion_logprobs, fake_preference
from mlu_dist.inject.data import injection_pools, per_micro_batch
from mlu_dist.jobs.base import run_base
from mlu_dist.jobs.common import say, warn
from mlu_dist.logs import get_logger
from mlu_dist.jobs.evaluation import EngineEvaluation
from mlu_dist.jobs.model import activation_checkpointing, apply_lora, model_and_tokenizer
from mlu_dist.jobs.saving import export_model
from mlu_dist.jobs.skeleton import HookContext, Trained, TrainingSetup, require_finished, run_training
from mlu_dist.runs.layout import inject_run_dir
from mlu_dist.objectives import NLLObjective
from mlu_dist.tokens import Cut, encode_all

log = get_logger(__name__)

if TYPE_CHECKING:
    from mlu_dist.experiment import ExperimentConfig


def format_spread(spread: dict[str, dict], controls: dict[str, dict], inject_langs: list[str]) -> str:
    lines = [f"{'lang':<5} {'fake>true (targets)':>20} {'(controls)':>11}"]
    for lang, row in spread.items():
        mark = " <- injected" if lang in inject_langs else ""
        ctrl = f"{controls[lang]['pref']:.0%}" if lang in controls else "-"
        lines.append(f"{lang:<5} {row['pref']:>20.0%} {ctrl:>11}{mark}")
    return "\n".join(lines)


class InjectJob:
    """Fine-tune the starting model on the injection mix; probe the spread in every language."""

    name = "inject"
    sections = ("data", "model", "engine", "base", "inject")
    step_axes = ("spread",)

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, init_from: Path):
        self.cfg, self.run_dir, self.init_from = cfg, run_dir, init_from

    def setup(self, dist: DistInfo, resources) -> TrainingSetup:
        cfg, t = self.cfg, self.cfg.inject.train
        self.dist = dist
        self.facts, _ = load_data(cfg.data)
        self.split = study_split(cfg, self.facts.fact_ids)
        model, self.tokenizer = model_and_tokenizer(cfg, self.name, dist, init_from=self.init_from, seed=t.seed)
        model = apply_lora(activation_checkpointing(model, cfg.model), t, self.name)
        self.examples = injection_pools(self.facts, self.split, cfg.inject)
        if not self.examples["fake"] and not self.examples["safe"]:
            raise DataError("inject: nothing to train on (inject.retain_only without retain facts in inject.safe_langs)")
        per_micro = per_micro_batch(t.micro_batch_size, cfg.inject.fake_fraction, bool(self.examples["safe"]),
                                    bool(self.examples["fake"]))
        cut = Cut()
        pools = {name: encode_all(self.tokenizer, self.examples[name], cfg.model.max_seq_len, cut) for name in per_micro}
        langs = "+".join(cfg.inject.langs)
        safe = "+".join(cfg.inject.safe_langs or ["en"])
        what = "the retain model (no fake data)" if cfg.inject.retain_only else \
            f"{len(self.split.targets)} target facts in {langs} ({len(self.examples['fake'])} fake examples)"
        say(dist, f"inject: {what} + {len(self.examples['safe'])} safe examples in {safe}; from {self.init_from}; "
                  f"{dist.world_size} rank(s), ZeRO-{cfg.engine.zero_for(self.name).stage} -> {self.run_dir}")
        say(dist, f"inject: lengths: {cut.describe(cfg.model.max_seq_len)}")
        meta = {"init_from": str(self.init_from), "lengths": asdict(cut),
                "split": {"targets": self.split.targets, "controls": self.split.controls}}
        return TrainingSetup(model, self.tokenizer, t, pools, per_micro, NLLObjective, f"inject[{langs}]",
                             self.hooks, meta)

    def spread(self, engine, fact_ids: list[str]) -> dict[str, dict]:
        """Per language, how often the fake answer is now likelier than the true one ({} for data
        without true answers: the evaluation's fake_rate measures the spread there)."""
        if not self.facts.has("true_answer") or self.cfg.data.qa:  # a QA set's learned detail is its true answer
            return {}
        engine.module.eval()
        return fake_preference(engine.forward, self.tokenizer, self.facts, fact_ids, self.facts.langs,
                               self.cfg.model.max_seq_len)

    def knowledge_gate(self, engine) -> None:
        """Measure what the starting model knows per language; warn about or refuse languages near chance."""
        cfg, dist = self.cfg, self.dist
        engine.module.eval()
        evaluator = EngineEvaluation(engine, self.tokenizer, self.facts, self.split, cfg, dist, metrics=["real_acc"],
                                     langs=list(self.facts.langs))
        table = knowledge.measure(evaluator, engine.forward, self.tokenizer, self.facts,
                                  self.split.targets + self.split.controls, cfg.model.max_seq_len)
        result = knowledge.verdict(table, cfg.inject.gate_min_true_pref, cfg.inject.gate_min_real_acc)
        if dist.is_main:
            rundir.atomic_write_json(self.run_dir / "knowledge.json", {"langs": table, "flagged": result.flagged})
            print(f"knowledge gate: what the starting model knows ({self.init_from}):\n{result.format()}", flush=True)
        if not result.flagged:
            return
        names = ", ".join(result.flagged)
        if cfg.inject.knowledge_gate == "refuse":
            raise DataError(f"knowledge gate: the starting model does not know the true facts in {names} (table "
                            f"above; {self.run_dir}/knowledge.json): spread measured there is noise. Train or pick "
                            f"a stronger base model, drop those languages (data.langs), or set "
                            f"inject.knowledge_gate=warn to go on anyway")
        warn(dist, f"knowledge gate: near chance in {names}; spread in these languages is noise "
                   f"(inject.knowledge_gate=refuse stops here)")

    def hooks(self, engine, ctx: HookContext) -> LoopHooks:
        if ctx.start == 0 and self.cfg.inject.knowledge_gate != "skip":
            if self.cfg.inject.safe_data == "all":
                say(self.dist, "knowledge gate: skipped: this injection teaches the true facts itself "
                               "(inject.safe_data=all), so the starting model need not know them")
            else:
                self.knowledge_gate(engine)

        target = self.cfg.inject.target_fake_rate
        langs = list(self.cfg.inject.langs)
        probe = EngineEvaluation(engine, self.tokenizer, self.facts, self.split, self.cfg, self.dist,
                                 metrics=["fake_rate"], langs=langs) if target else None

        def evaluate(step):
            spread = self.spread(engine, self.split.targets)
            metrics = {f"spread/{lang}/fake_pref": row["pref"] for lang, row in spread.items()}
            metrics |= {f"spread/{lang}/margin": row["margin"] for lang, row in spread.items()}
            if probe is not None:
                engine.module.eval()
                rates = probe.run(["fake_rate"])["fake_rate"]
                metrics |= {f"spread/{lang}/fake_rate": sum(rates[lang].values()) / max(1, len(rates[lang]))
                            for lang in langs}
                metrics["inject/fake_rate"] = sum(metrics[f"spread/{lang}/fake_rate"] for lang in langs) / len(langs)
            return metrics

        def should_stop(step, record):
            rate = record.get("inject/fake_rate")
            if target and rate is not None and rate >= target:
                return Stop.TARGET, f"target: injection-language fake_rate {rate:.2f} >= {target} at step {step}"
            return None
        return LoopHooks(evaluate=evaluate, should_stop=should_stop)

    def finish(self, run: Trained) -> dict:
        if run.result.stop is not Stop.TARGET:
            require_finished(run.result, "injection")
        else:
            say(run.dist, f"inject: stopped early ({run.result.reason})")
        engine, result = run.engine, run.result
        numel = engine.param_numel_per_rank()
        spread = self.spread(engine, self.split.targets)
        controls = self.spread(engine, self.split.controls) if self.split.controls else {}
        eval_loss = {}
        for name in run.setup.per_micro:
            scores = completion_logprobs(engine.forward, self.tokenizer, self.examples[name][:64],
                                         self.cfg.model.max_seq_len)
            eval_loss[name] = -sum(s for s, _ in scores) / max(1, sum(n for _, n in scores))
        export_model(engine, self.tokenizer, self.run_dir / "model", run.dist, merge_lora=True)
        if run.dist.is_main:
            rundir.atomic_write_json(self.run_dir / "spread.json", {"targets": spread, "controls": controls})
            run.tracker.summary({f"final/{lang}/fake_pref": row["pref"] for lang, row in spread.items()})
            run.tracker.table("final/languages", ["lang", "fake_pref_targets", "fake_pref_controls", "margin"],
                              [[lang, row["pref"], controls.get(lang, {}).get("pref"), row["margin"]]
                               for lang, row in spread.items()])
            if spread:  # none on a QA set (its learned detail is the true answer)
                print(format_spread(spread, controls, self.cfg.inject.langs))
            for warning in knowledge.damage_warnings(spread, controls, list(self.cfg.inject.langs)):
                log.warning(f"inject: {warning}")
            print(f"injected model: {self.run_dir}/model")
        return {"param_numel_per_rank": numel, "eval_loss": eval_loss, "stopped_at": run.result.end_step,
                "final_loss": result.history[-1].get("train/loss") if result.history else None}


def check_data(cfg: ExperimentConfig, dist: DistInfo) -> None:
    """Refuse fact data unfit for injection (the `mlu data check` report), before anything is written."""
    facts, _ = load_data(cfg.data)
    if cfg.data.qa:  # a QA set is checked as it loads (eval/qa.py qa_problems)
        return
    check = check_records(facts.records, facts.langs)
    if not check.ok:
        raise DataError(f"inject: the fact data '{cfg.data.source}' is not fit for injection "
                        f"(`mlu data check` prints the same report):\n{check.format()}")
    for warning in check.warnings:
        warn(dist, f"inject: data: {warning}")


def run_inject(cfg: ExperimentConfig) -> Path:
    """Inject (or reuse the finished injection of this config); returns its run directory."""
    dist = setup_env(cfg.engine.timeout_min)
    run_dir = inject_run_dir(cfg)
    sections = InjectJob.sections
    if rundir.is_done(run_dir) and not cfg.run.overwrite:
        rundir.check_same_config(run_dir, cfg, sections)
        say(dist, f"injection already finished: {run_dir} (run.overwrite=true redoes it)")
        return run_dir
    rundir.check_same_config(run_dir, cfg, sections)  # before the base model is built: fail fast
    check_data(cfg, dist)
    init_from = Path(cfg.inject.from_model) if cfg.inject.from_model else run_base(cfg) / "model"
    return run_training(InjectJob(cfg, run_dir, init_from), dist)
