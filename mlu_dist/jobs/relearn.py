"""`mlu relearn RUN`: relearning attacks. Is the fake really forgotten, or does it come back?

An attack fine-tunes a copy of a model for a few steps on attack data (relearn/config.py: the fake
in one language, a share of the fake QA, or true text of other facts only) and re-probes every
language at every eval step (curves.jsonl, ``relearn/<lang>/fake_rate`` on ``relearn/step``). It is
one more objective on the one training loop: the same engine, ranks and ZeRO stage as unlearning
(``engine.jobs.relearn``, else ``engine.jobs.unlearn``). The controls attack the injected (never
unlearned) model and the base model the same way.

Each attack writes ``relearn.json``: per language the fake_rate before and after the attack, right
after the injection, and the recovery ratio (after-attack / after-injection), beside eval/EVAL.json
and eval/SUMMARY.json (bootstrap CIs) of the attacked model.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from mlu_dist.runs import rundir
from mlu_dist.config import ConfigError
from mlu_dist.data import load_data, study_split
from mlu_dist.engine.dist import DistInfo, setup_env
from mlu_dist.engine.loop import LoopHooks
from mlu_dist.eval.summary import summarize
from mlu_dist.jobs.common import say, warn
from mlu_dist.jobs.evaluation import EngineEvaluation
from mlu_dist.jobs.model import activation_checkpointing, apply_lora, pretrained
from mlu_dist.jobs.saving import export_model
from mlu_dist.jobs.curves import CurveRecorder
from mlu_dist.jobs.skeleton import HookContext, Trained, TrainingSetup, require_finished, run_training
from mlu_dist.runs.layout import relearn_run_dir
from mlu_dist.objectives import NLLObjective
from mlu_dist.relearn.config import STARTS, Attack, parse_attack
from mlu_dist.relearn.data import attack_examples
from mlu_dist.tokens import Cut, encode_all
from mlu_dist.unlearn.config import resolve_langs
from mlu_dist.unlearn.curves import plot_curves

if TYPE_CHECKING:
    from mlu_dist.experiment import ExperimentConfig


def attack_sources(run: Path) -> dict[str, Path]:
    """``{start: model directory}`` an attack can start from, given an unlearning or injection run."""
    run = Path(run)
    meta_file = run / "meta.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"'{run}' is not a run directory (no meta.json)")
    meta = json.loads(meta_file.read_text())
    if meta.get("job") == "unlearn":
        inject = Path(meta["from_run"])
        out = {"unlearned": run / "model"}
    elif meta.get("job") == "inject":
        inject, out = run, {}
    else:
        raise FileNotFoundError(f"'{run}' is a {meta.get('job')} run; relearning attacks start from an "
                                f"unlearning or an injection run")
    out["injected"] = inject / "model"
    inject_meta = inject / "meta.json"
    if inject_meta.exists() and Path(json.loads(inject_meta.read_text())["init_from"]).exists():
        out["base"] = Path(json.loads(inject_meta.read_text())["init_from"])  # (a hub id is no start)
    return out


def injection_run(run: Path) -> Path:
    meta = json.loads((Path(run) / "meta.json").read_text())
    return Path(meta["from_run"]) if meta.get("job") == "unlearn" else Path(run)


class AttackHooks:
    """fake_rate in every language at every eval step (the relearning curve)."""

    def __init__(self, job: RelearnJob, engine, ctx: HookContext):
        cfg = job.cfg
        self.job, self.engine = job, engine
        self.recorder = CurveRecorder(job, engine, ctx.start, ["fake_rate"], cfg.relearn.curve_subset)
        self.langs, self.curves, self.evaluator = self.recorder.langs, self.recorder.curves, self.recorder.evaluator
        self.first: dict | None = ctx.state.get("first")  # step-0 values: the model before the attack (resumable)
        self.last: tuple[int, dict] | None = None
        self.step0 = self._own_evaluation() if not ctx.start else None
        self.step0_from = str(job.model_dir.parent / "eval" / "EVAL.json") if self.step0 is not None else "probed"

    def _own_evaluation(self) -> dict | None:
        """The attacked model's own `mlu eval` values, when it probed exactly what step 0 would (same
        model, languages, facts and decoding): step 0 is then read, not generated again. Every rank
        reads the same file, so ranks in ZeRO-3 lockstep take the same path."""
        from mlu_dist.config import to_dict
        from mlu_dist.jobs.eval import DECODING

        job, ev = self.job, self.evaluator.evaluator
        path = job.model_dir.parent / "eval" / "EVAL.json"
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        want = {"model": str(job.model_dir.resolve()), "langs": self.langs, "targets": ev.targets,
                "controls": ev.controls, "decoding": {k: to_dict(job.cfg)["eval"][k] for k in DECODING}}
        if {k: saved.get(k) for k in want} != want or "fake_rate" not in saved.get("values", {}):
            return None
        return {k: saved["values"][k] for k in ("fake_rate", "control_fake_rate") if k in saved["values"]}

    def evaluate(self, step: int) -> dict:
        self.engine.module.eval()
        values = None
        if step == 0 and self.step0 is not None:
            values, self.step0 = self.step0, None
        values, table, _ = self.recorder.record(step, values, written=("fake_rate",))
        if step == 0:
            self.first = values
        self.last = (step, values)
        metrics = {f"relearn/{lang}/fake_rate": table["fake_rate"][lang] for lang in self.langs}
        return metrics | {f"relearn/group/{g}/fake_rate": mean for g, mean in self.recorder.group_means(table).items()}


def _lang_means(values: dict, name: str = "fake_rate", facts: list[str] | None = None) -> dict[str, float]:
    out = {}
    for lang, per_fact in values.get(name, {}).items():
        xs = [v for f, v in per_fact.items() if facts is None or f in facts]
        if xs:
            out[lang] = sum(xs) / len(xs)
    return out


class RelearnJob:
    """Fine-tune a copy of a model on an attack's data; probe every language along the way."""

    name = "relearn"
    sections = ("data", "model", "engine", "base", "inject", "unlearn", "relearn")
    step_axes = ("relearn",)

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, model_dir: Path, start: str, attack: Attack,
                 inject_run: Path):
        self.cfg, self.run_dir, self.model_dir, self.start, self.attack = cfg, run_dir, model_dir, start, attack
        self.inject_run = inject_run
        self.facts, _ = load_data(cfg.data)
        self.split = study_split(cfg, self.facts.fact_ids)
        try:
            self.attack_langs = resolve_langs(attack.langs, list(cfg.inject.langs), list(self.facts.langs),
                                              cfg.data.groups)
        except ValueError as exc:
            raise ConfigError(f"relearn.attacks: '{attack}': {exc}") from None
        r = cfg.relearn
        self.examples, self.shown = attack_examples(self.facts, self.split, attack, self.attack_langs, r.qa_fraction,
                                                    r.train.seed)
        if not self.examples:
            raise ConfigError(f"relearn.attacks: '{attack}' has no data here (no facts of that kind in "
                              f"{', '.join(self.attack_langs)})")

    def setup(self, dist: DistInfo, resources) -> TrainingSetup:
        cfg, t = self.cfg, self.cfg.relearn.train
        self.dist = dist
        model, self.tokenizer = pretrained(self.model_dir, cfg, self.name, dist)
        model = apply_lora(activation_checkpointing(model, cfg.model), t, self.name)
        cut = Cut()
        pools = {"attack": encode_all(self.tokenizer, self.examples, cfg.model.max_seq_len, cut)}
        say(dist, f"relearn: attack {self.attack} ({len(self.examples)} examples, {len(self.shown)} target fact(s) "
                  f"shown) on the {self.start} model {self.model_dir}; {t.steps} steps at lr {t.lr:g}; "
                  f"{dist.world_size} rank(s), ZeRO-{cfg.engine.zero_for(self.name).stage} -> {self.run_dir}")
        meta = {"attack": str(self.attack), "start": self.start, "model": str(self.model_dir),
                "inject_run": str(self.inject_run), "attack_langs": self.attack_langs, "shown_targets": self.shown}
        return TrainingSetup(model, self.tokenizer, t, pools, {"attack": t.micro_batch_size}, NLLObjective,
                             f"relearn[{self.start}:{self.attack}]", self._hooks, meta,
                             final_checkpoint=cfg.relearn.keep_model)

    def _source_fake_rate(self) -> dict[str, float]:
        """Without a step-0 probe (eval_every=0): the attacked model's own evaluation, when it has one."""
        return _summary_fake_rate(self.model_dir.parent / "eval" / "SUMMARY.json")

    def _hooks(self, engine, ctx: HookContext) -> LoopHooks:
        self.hooks = AttackHooks(self, engine, ctx)
        return LoopHooks(evaluate=self.hooks.evaluate, checkpoint_state=lambda: {"first": self.hooks.first})

    def finish(self, run: Trained) -> dict:
        require_finished(run.result, "relearning attack")
        cfg, dist, end = self.cfg, run.dist, run.result.end_step
        last = self.hooks.last
        if last is None or last[0] != end or cfg.relearn.curve_subset:  # the final probe is on every fact
            final = EngineEvaluation(run.engine, self.tokenizer, self.facts, self.split, cfg, dist,
                                     metrics=["fake_rate"], langs=self.hooks.langs)
            run.engine.module.eval()
            values = final.run(["fake_rate"])
        else:
            values = last[1]
        if cfg.relearn.keep_model:
            export_model(run.engine, self.tokenizer, self.run_dir / "model", dist)
        run.engine.close()
        inject_langs = list(cfg.inject.langs)
        summary = summarize(values, inject_langs, cfg.eval.n_boot, cfg.eval.ci_level, cfg.eval.seed,
                            groups=cfg.data.groups)
        before = _lang_means(self.hooks.first) if self.hooks.first else self._source_fake_rate()
        after = _lang_means(values)
        injected = _summary_fake_rate(self.inject_run / "eval" / "SUMMARY.json")
        if not injected:
            warn(dist, f"relearn: {self.inject_run} has no evaluation (eval/SUMMARY.json), so there is no "
                       f"recovery ratio; run `mlu eval {self.inject_run}`, then this attack again with run.overwrite=true")
        hidden = [f for f in self.split.targets if f not in self.shown]
        unseen = _lang_means(values, facts=hidden) if hidden else {}
        langs = {lang: {"before": before.get(lang), "after": after[lang], "injected": injected.get(lang),
                        "recovery": (after[lang] / injected[lang]) if injected.get(lang) else None,
                        **({"after_unseen": unseen[lang]} if lang in unseen else {})}
                 for lang in after}
        info = {"attack": str(self.attack), "start": self.start, "attack_langs": self.attack_langs,
                "step0": self.hooks.step0_from,
                "shown_targets": self.shown, "langs": langs,
                "groups": {g: {"after": s["mean"], "lo": s["lo"], "hi": s["hi"]}
                           for g, s in summary["fake_rate"]["group"].items()}}
        if dist.is_main:
            out = self.run_dir / "eval"
            out.mkdir(parents=True, exist_ok=True)
            rundir.atomic_write_json(out / "EVAL.json", {"values": values, "start": self.start,
                                                         "attack": str(self.attack)})
            rundir.atomic_write_json(out / "SUMMARY.json", {"inject_langs": inject_langs, "langs": list(after),
                                                            "metrics": summary})
            rundir.atomic_write_json(self.run_dir / "relearn.json", info)
            run.tracker.summary({f"final/relearn/{lang}/fake_rate": row["after"] for lang, row in langs.items()})
            if not cfg.relearn.keep_model:
                shutil.rmtree(self.run_dir / "checkpoints", ignore_errors=True)
            if (self.run_dir / "curves.jsonl").exists():
                plot_curves(self.run_dir, metrics=["fake_rate"], forget_langs=self.attack_langs, xlabel="attack step",
                            title=f"relearning attack {self.attack} on the {self.start} model "
                                  f"(injected: {'+'.join(inject_langs)}; solid = attack languages)")
            print(format_recovery(langs, self.start, str(self.attack)))
        return {"attack": str(self.attack), "start": self.start,
                "recovery": {lang: row["recovery"] for lang, row in langs.items()}}


def _summary_fake_rate(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    stats = json.loads(path.read_text())["metrics"].get("fake_rate", {}).get("lang", {})
    return {lang: s["mean"] for lang, s in stats.items()}


def format_recovery(langs: dict, start: str, attack: str) -> str:
    def f(x):
        return "   -" if x is None else f"{x:5.2f}"

    lines = [f"relearn: {attack} on the {start} model: fake_rate per language",
             f"{'lang':<5} {'before':>6} {'after':>6} {'injected':>8} {'recovery':>8}"]
    for lang, row in langs.items():
        lines.append(f"{lang:<5} {f(row['before']):>6} {f(row['after']):>6} {f(row['injected']):>8} "
                     f"{f(row['recovery']):>8}")
    lines.append("recovery = after-attack fake_rate / fake_rate right after the injection")
    return "\n".join(lines)


def run_relearn(cfg: ExperimentConfig, source_run: str | Path, start: str, attack: str | Attack) -> Path:
    """Run one attack (or reuse its finished run); returns its run directory."""
    attack = parse_attack(attack) if isinstance(attack, str) else attack
    dist = setup_env(cfg.engine.timeout_min)
    sources = attack_sources(Path(source_run))
    if start not in sources:
        raise ConfigError(f"relearn start '{start}': {source_run} offers {', '.join(sources)} "
                          f"(valid starts: {', '.join(STARTS)})")
    model_dir = sources[start]
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"the {start} model {model_dir} does not exist (no config.json); did the run finish?")
    cfg = dataclasses.replace(cfg, relearn=dataclasses.replace(cfg.relearn, attacks=[str(attack)]))
    home = Path(source_run) if start == "unlearned" else injection_run(Path(source_run))  # controls: one per injection
    run_dir = relearn_run_dir(cfg, home, start, attack)
    if rundir.is_done(run_dir) and not cfg.run.overwrite:
        rundir.check_same_config(run_dir, cfg, RelearnJob.sections)
        say(dist, f"relearning attack already finished: {run_dir}")
        return run_dir
    return run_training(RelearnJob(cfg, run_dir, model_dir, start, attack, injection_run(Path(source_run))), dist)


def run_attacks(cfg: ExperimentConfig, source_run: str | Path, starts: list[str]) -> list[Path]:
    """Every attack of ``relearn.attacks`` from each of ``starts``."""
    attacks = cfg.relearn.parsed(list(cfg.inject.langs), list(cfg.data.langs), cfg.data.groups)
    return [run_relearn(cfg, source_run, start, attack) for attack in attacks for start in starts]
