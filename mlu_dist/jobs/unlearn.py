"""`mlu unlearn --from INJECT_RUN`: unlearn the injected fake with a method and a forget-language set.

The run starts from the injection run's model (never re-injects), records per-language forgetting
curves on every rank's behalf (curves.jsonl, curves.png), stops on a target, a utility collapse or
a diverging loss, keeps the best checkpoint by the configured criterion, and ends with the same
EVAL.json / SUMMARY.json as `mlu eval`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from mlu_dist.runs import rundir
from mlu_dist.config import ConfigError
from mlu_dist.data import load_data, study_split
from mlu_dist.engine.checkpoint import verify
from mlu_dist.engine.dist import DistInfo, setup_env
from mlu_dist.engine.engines import frozen_engine
from mlu_dist.engine.loop import LoopHooks, Stop
from mlu_dist.eval.metrics import METRICS, forget_criteria, guard_value
from mlu_dist.eval.summary import over_languages
from mlu_dist.jobs.common import say
from mlu_dist.jobs.model import activation_checkpointing, apply_lora, pretrained
from mlu_dist.jobs.saving import export_model
from mlu_dist.jobs.curves import CurveRecorder
from mlu_dist.jobs.skeleton import HookContext, Trained, TrainingSetup, run_training
from mlu_dist.runs.layout import unlearn_run_dir
from mlu_dist.runs.rundir import ResumeError
from mlu_dist.tokens import Cut, encode_all
from mlu_dist.unlearn.config import resolve_langs
from mlu_dist.unlearn.curves import plot_curves
from mlu_dist.unlearn.data import PoolSource, build_pools
from mlu_dist.unlearn.methods import METHODS, Context, unlearning_objective, wanted_pools

if TYPE_CHECKING:
    from mlu_dist.experiment import ExperimentConfig


def _check_from_run(path: str) -> Path:
    if not path:
        raise FileNotFoundError("unlearning needs an injection run: mlu unlearn --from runs/inject/<run>")
    run = Path(path)
    if not (run / "model" / "config.json").exists():
        raise FileNotFoundError(f"'{run}' holds no finished injection (no model/config.json)")
    return run


class CurveHooks:
    """At every eval step: the curve metrics in every language (curves.jsonl + tracker), the utility
    guard, the target rule and the best checkpoint."""

    def __init__(self, job: UnlearnJob, engine, ctx: HookContext):
        cfg = job.cfg
        self.job, self.engine, self.u, self.checkpointer = job, engine, cfg.unlearn, ctx.checkpointer
        # resumable state lives in the checkpoint: the guard's step-0 perplexity, the best so far
        self.ppl0 = ctx.state.get("ppl0")
        if ctx.start and self.ppl0 is None:  # a checkpoint from before the state was saved
            from mlu_dist.tracking import read_jsonl

            first = [r for r in read_jsonl(job.run_dir / "metrics.jsonl") if r.get("step") == 0 and "unlearn/ppl" in r]
            self.ppl0 = first[0]["unlearn/ppl"] if first else None
        job.ctx.state.update(ctx.state.get("method_state") or {})  # e.g. PDU's dual variable
        best = ctx.state.get("best")
        if best is not None:
            job.best = (float(best["score"]), best["step"])
        self.metrics = [m for m in METRICS.order() if METRICS[m].on_curves]
        self.recorder = CurveRecorder(job, engine, ctx.start, self.metrics, self.u.curve_subset)
        self.langs, self.curves, self.evaluator = self.recorder.langs, self.recorder.curves, self.recorder.evaluator

    def loop_hooks(self) -> LoopHooks:
        return LoopHooks(evaluate=self.evaluate, should_stop=self.should_stop, checkpoint_state=self.state)

    def state(self) -> dict:
        """What a resumed run needs to continue exactly (saved in every checkpoint)."""
        score, step = self.job.best
        return {"ppl0": self.ppl0, "best": None if step is None else {"score": score, "step": step},
                "method_state": dict(self.job.ctx.state)}

    def evaluate(self, step: int) -> dict:
        self.engine.module.eval()
        values, table, keys = self.recorder.record(step)
        metrics = {f"{axis}/{lang}/{curve}": table[curve][lang] for curve, axis in keys for lang in self.langs}
        metrics |= {f"group/{g}/fake_rate": mean for g, mean in self.recorder.group_means(table).items()}
        guard = guard_value()
        ppl = over_languages(values[guard.name], self.langs, guard.transform)
        self.ppl0 = self.ppl0 or ppl
        forget = self.job.forget_langs
        metrics |= {"unlearn/ppl": ppl, "unlearn/ppl_ratio": ppl / self.ppl0}
        for name, value in forget_criteria().items():
            if value.curve in table:  # a curve the data allows (news has no true answers: no fake_pref)
                metrics[f"unlearn/{name}"] = sum(table[value.curve][x] for x in forget) / len(forget)
        self._keep_best(step, metrics)
        return metrics

    def _keep_best(self, step: int, metrics: dict) -> None:
        if self.u.best == "last":
            return
        score = metrics[f"unlearn/{self.u.best}"]
        if score < self.job.best[0] and metrics["unlearn/ppl_ratio"] <= self.u.guard_ppl_ratio:
            self.job.best = (score, step)
            self.checkpointer.save(step, {"job": self.job.name} | self.state(), name="best")

    def should_stop(self, step: int, record: dict) -> tuple[Stop, str] | None:
        ratio = record.get("unlearn/ppl_ratio")
        if ratio is not None and ratio > self.u.guard_ppl_ratio:
            return Stop.GUARD, f"guard: utility perplexity is {ratio:.1f}x its step-0 value (limit {self.u.guard_ppl_ratio})"
        rate = record.get("unlearn/forget_fake_rate", 1.0)
        if self.u.target_fake_rate >= 0 and rate <= self.u.target_fake_rate:
            return Stop.TARGET, f"target: forget-language fake_rate {rate:.2f} <= {self.u.target_fake_rate}"
        return None


class UnlearnJob:
    """Unlearn the fake of an injection run's targets in the forget languages."""

    name = "unlearn"
    sections = ("data", "model", "engine", "base", "inject", "unlearn")

    @property
    def step_axes(self) -> tuple[str, ...]:
        """``group`` and every curve axis of the registered curve metrics (``forget``, ``retain``; a
        plugin metric's own axis too)."""
        return ("group", *dict.fromkeys(v.curve_axis for m in METRICS.order() if METRICS[m].on_curves
                                        for v in METRICS[m].values if v.curve))

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, from_run: Path):
        """Resolves the language sets and the method first, so bad input fails before any file is written."""
        self.cfg, self.run_dir, self.from_run, u = cfg, run_dir, from_run, cfg.unlearn
        self.facts, _ = load_data(cfg.data)
        self.split = study_split(cfg, self.facts.fact_ids)
        try:
            self.forget_langs = resolve_langs(u.forget_langs, list(cfg.inject.langs), list(self.facts.langs),
                                              cfg.data.groups)
            self.retain_langs = resolve_langs(u.retain_langs, list(cfg.inject.langs), list(self.facts.langs),
                                              cfg.data.groups)
        except ValueError as exc:
            raise ConfigError(f"unlearn.forget_langs / retain_langs: {exc}") from None
        self.method = METHODS[u.method](u.settings())
        model_config = json.loads((from_run / "model" / "config.json").read_text())
        problems = self.method.check_model(model_config)
        if problems:
            raise ConfigError(f"unlearn.method '{u.method}': " + "; ".join(problems))
        if self.method.needs_retain and u.retain_weight <= 0:
            raise ConfigError(f"unlearn.retain_weight: method '{u.method}' needs retain data; set it > 0 "
                              f"(configs/methods/{u.method}.yaml does)")
        criterion = forget_criteria().get(u.best)
        missing = [f for f in (criterion.requires if criterion else ()) if not self.facts.has(f)]
        if missing:
            usable = [n for n, v in forget_criteria().items() if all(self.facts.has(f) for f in v.requires)]
            raise ConfigError(f"unlearn.best: {u.best} needs {', '.join(missing)}, which this fact data has none of; "
                              f"use best={' or '.join(['last', *usable])}")
        self.best = (math.inf, None)  # (score, step) of the best checkpoint

    def setup(self, dist: DistInfo, resources) -> TrainingSetup:
        cfg, u, t = self.cfg, self.cfg.unlearn, self.cfg.unlearn.train
        self.dist = dist
        model, self.tokenizer = pretrained(self.from_run / "model", cfg, self.name, dist)
        model = apply_lora(activation_checkpointing(model, cfg.model), t, self.name)
        wanted = wanted_pools(self.method, u.retain_weight)
        source = PoolSource(self.facts, self.split, self.forget_langs, self.retain_langs, u, self.method, t.seed)
        examples, streams = build_pools(wanted, source)
        cut = Cut()
        pools = {name: encode_all(self.tokenizer, examples[name], cfg.model.max_seq_len, cut) for name in wanted}
        groups = {"retain": [ex.lang for ex in examples["retain"]]} if u.retain_balance and "retain" in wanted else None
        forget = "+".join(self.forget_langs)
        sizes = ", ".join(f"{len(examples[name])} {name}" for name in wanted)
        say(dist, f"unlearn: {u.method} on {forget} ({sizes} examples, scope {u.forget_scope}"
                  f"{', retain ' + '+'.join(self.retain_langs) if 'retain' in wanted else ''}"
                  f"{' (balanced per language)' if groups else ''}) from {self.from_run}; "
                  f"{dist.world_size} rank(s), ZeRO-{cfg.engine.zero_for(self.name).stage} -> {self.run_dir}")
        say(dist, f"unlearn: lengths: {cut.describe(cfg.model.max_seq_len)}")
        self.ref = None
        if self.method.needs_reference and t.lora.enabled:  # the base is frozen: it is the reference
            from mlu_dist.engine.adapter_reference import AdapterReference

            self.ref = AdapterReference(model, dist.is_main)
        elif self.method.needs_reference:
            ref_model, _ = pretrained(self.method.reference_dir(self.from_run), cfg, self.name, dist)
            self.ref = frozen_engine(ref_model, cfg.engine, dist, self.name)
            resources.callback(self.ref.close)
        meta = {"method": u.method, "forget_langs": self.forget_langs, "forget_scope": u.forget_scope, "retain_langs": self.retain_langs,
                "from_run": str(self.from_run), "lengths": asdict(cut)}
        self.ctx = Context(1.0, u.forget_weight, u.retain_weight, self.ref, seed=t.seed)
        return TrainingSetup(
            model, self.tokenizer, t, pools, per_micro={name: t.micro_batch_size for name in wanted},
            objective=self._objective, desc=f"unlearn[{u.method}:{forget}]", hooks=self._curve_hooks,
            meta=meta, streams=streams, groups=groups)

    def _objective(self, scale: float):
        self.ctx.scale = scale
        return unlearning_objective(self.method, self.ctx)

    def _curve_hooks(self, engine, ctx: HookContext) -> LoopHooks:
        self.curves = CurveHooks(self, engine, ctx)
        return self.curves.loop_hooks()

    def finish(self, run: Trained) -> dict:
        u, result, engine = self.cfg.unlearn, run.result, run.engine
        say(run.dist, f"unlearn: curves: {self.curves.evaluator.describe()}")
        best_step = self.best[1]
        exported = result.stop is not Stop.DIVERGED or (u.best != "last" and best_step is not None)
        # a LoRA reference is the trained module's base: hash it before the export merges LoRA into it
        early = getattr(self.ref, "shares_trained_weights", False)
        ref_digest = self.ref.state_digest() if early else None
        if u.best != "last" and best_step is not None:  # keep the best model, not the last
            best = self.run_dir / "checkpoints" / "best"
            problem = verify(best)
            if problem:
                raise ResumeError(f"the best checkpoint {best} (step {best_step}) cannot be used: {problem}")
            engine.load(best)
        if exported:  # a diverged run's weights are not finite: no model beats a garbage one
            export_model(engine, self.tokenizer, self.run_dir / "model", run.dist)
        engine.close()  # free the training state before the evaluation loads the model again
        info = {"method": u.method, "forget_langs": self.forget_langs, "best_step": best_step,
                "reference_digest": None}
        if self.ref is not None:
            info["reference_digest"] = ref_digest if early else self.ref.state_digest()  # proves it stayed frozen
            self.ref.close()
        summary = self._final_eval(run, info) if exported else {}
        run.tracker.summary({"final/status": result.stop.value, **{f"final/group/{g}/fake_rate": v
                                                                    for g, v in info.get("final_group_fake_rate", {}).items()}})
        if "fake_rate" in summary:
            run.tracker.table("final/languages", ["lang", "fake_rate", "lo", "hi"],
                              [[lang, s["mean"], s["lo"], s["hi"]] for lang, s in summary["fake_rate"]["lang"].items()])
        if run.dist.is_main:
            plot_curves(self.run_dir, title=f"{u.method} on {'+'.join(self.forget_langs)} "
                                            f"(injected: {'+'.join(self.cfg.inject.langs)})", forget_langs=self.forget_langs)
            print(f"unlearn: {result.stop.value}{' (' + result.reason + ')' if result.reason else ''}; "
                  f"curves {self.run_dir}/curves.png; model {self.run_dir}/model" + ("" if exported else " (not exported)"))
        return info

    def _final_eval(self, run: Trained, info: dict) -> dict:
        from mlu_dist.eval.summary import format_table
        from mlu_dist.jobs.eval import evaluate_model

        summary = evaluate_model(self.cfg, self.run_dir / "model", self.run_dir / "eval", overwrite=True,
                                 inject_langs=list(self.cfg.inject.langs))
        if "fake_rate" in summary:
            info["final_group_fake_rate"] = {g: s["mean"] for g, s in summary["fake_rate"]["group"].items()}
        if run.dist.is_main:
            print(format_table(summary, list(self.facts.langs), list(self.cfg.inject.langs)))
        return summary


def run_unlearn(cfg: ExperimentConfig) -> Path:
    """Unlearn (or reuse the finished unlearning run of this config); returns its run directory."""
    dist = setup_env(cfg.engine.timeout_min)
    from_run = _check_from_run(cfg.unlearn.from_run)
    run_dir = unlearn_run_dir(cfg)
    if rundir.is_done(run_dir) and not cfg.run.overwrite:
        rundir.check_same_config(run_dir, cfg, UnlearnJob.sections)
        say(dist, f"unlearning already finished: {run_dir} (run.overwrite=true redoes it)")
        return run_dir
    return run_training(UnlearnJob(cfg, run_dir, from_run), dist)
