"""`mlu unlearn --from INJECT_RUN`: unlearn the injected fake with a method and a forget-language set.

The run starts from the injection run's model (never re-injects), records per-language forgetting
curves on every rank's behalf (curves.jsonl, curves.png), stops on a target, a utility collapse or
a diverging loss, keeps the best checkpoint by the configured criterion, and ends with the same
EVAL.json / SUMMARY.json as `mlu eval`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from mlu_dist import rundir
from mlu_dist.data import load_data
from mlu_dist.data.splits import split_facts
from mlu_dist.engine.dist import setup_env
from mlu_dist.engine.loop import LoopHooks
from mlu_dist.eval.generate import cache_kwarg
from mlu_dist.eval.runner import Evaluator, Rank
from mlu_dist.eval.summary import language_groups
from mlu_dist.jobs.common import apply_lora, encode_all, export_model, save_skeleton, say, train
from mlu_dist.modeling import load_pretrained
from mlu_dist.unlearn.config import resolve_langs
from mlu_dist.unlearn.curves import CurveWriter, plot_curves
from mlu_dist.unlearn.data import forget_examples, refusal_pairs, retain_examples
from mlu_dist.unlearn.methods import METHODS, Context

if TYPE_CHECKING:
    from mlu_dist.experiment import ExperimentConfig


def unlearn_run_dir(cfg: ExperimentConfig) -> Path:
    """``runs/unlearn/<injection run>/<method>-<forget set>-<hash>`` (or ``run.name``)."""
    digest = rundir.config_hash(cfg, keep=("data", "model", "base", "inject", "unlearn"), drop=rundir.COMPARE_DROP)
    u = cfg.unlearn
    name = cfg.run.name or f"{u.method}-{u.forget_langs.replace('+', '_')}-{digest[:8]}"
    return Path(cfg.run.out_dir) / "unlearn" / Path(u.from_run).name / name


def _check_from_run(path: str) -> Path:
    if not path:
        raise FileNotFoundError("unlearning needs an injection run: mlu unlearn --from runs/inject/<run>")
    run = Path(path)
    if not (run / "model" / "config.json").exists():
        raise FileNotFoundError(f"'{run}' holds no finished injection (no model/config.json)")
    return run


def run_unlearn(cfg: ExperimentConfig) -> Path:
    dist = setup_env()
    u = cfg.unlearn
    from_run = _check_from_run(u.from_run)
    run_dir = unlearn_run_dir(cfg)
    sections = ("data", "model", "engine", "base", "inject", "unlearn")
    if rundir.is_done(run_dir) and not cfg.run.overwrite:
        rundir.check_same_config(run_dir, cfg, sections)
        say(dist, f"unlearning already finished: {run_dir} (run.overwrite=true redoes it)")
        return run_dir
    facts, _ = load_data(cfg.data)
    split = split_facts(facts.fact_ids, cfg.inject.n_targets, cfg.inject.n_controls, cfg.inject.split_seed)
    from mlu_dist.config import ConfigError

    try:
        forget_langs = resolve_langs(u.forget_langs, list(cfg.inject.langs), list(facts.langs))
        retain_langs = resolve_langs(u.retain_langs, list(cfg.inject.langs), list(facts.langs))
    except ValueError as exc:
        raise ConfigError(f"unlearn.forget_langs / retain_langs: {exc}") from None
    method = METHODS[u.method]()
    if method.needs_retain and u.retain_weight <= 0:
        raise ConfigError(f"unlearn.retain_weight: method '{u.method}' needs retain data; set it > 0 "
                          f"(configs/methods/{u.method}.yaml does)")
    rundir.prepare(run_dir, cfg, dist.is_main, sections)
    train_cfg = u.train
    model, tokenizer = load_pretrained(from_run / "model", cfg.model.dtype, dist.device_type)
    model = apply_lora(model, train_cfg)
    save_skeleton(model, tokenizer, run_dir, dist, train_cfg)

    examples = {"forget": forget_examples(facts, split, forget_langs, u.fixed_forget_size, train_cfg.seed),
                "retain": retain_examples(facts, split, retain_langs)}
    chosen, rejected = refusal_pairs(facts, split, forget_langs)
    examples |= {"idk": chosen, "chosen": chosen, "rejected": rejected}
    wanted = method.wants(u)
    per_micro = {name: train_cfg.micro_batch_size for name in wanted}
    pools = {name: encode_all(tokenizer, examples[name], cfg.model.max_seq_len) for name in wanted}
    say(dist, f"unlearn: {u.method} on {'+'.join(forget_langs)} ({len(examples['forget'])} forget examples"
              f"{', retain ' + '+'.join(retain_langs) if 'retain' in wanted else ''}) from {from_run}; "
              f"{dist.world_size} rank(s), ZeRO-{cfg.engine.zero.stage} -> {run_dir}")
    ref = None
    if method.needs_reference:
        from mlu_dist.engine.deepspeed_engine import InferenceEngine

        ref_model, _ = load_pretrained(from_run / "model", cfg.model.dtype, dist.device_type)
        ref = InferenceEngine(ref_model, cfg.engine.zero, dist, next(ref_model.parameters()).dtype)
    if dist.is_main:
        rundir.write_meta(run_dir, dist.as_dict(), {
            "job": "unlearn", "method": u.method, "forget_langs": forget_langs, "retain_langs": retain_langs,
            "from_run": str(from_run), "zero_stage": cfg.engine.zero.stage, "seed": train_cfg.seed,
            "global_batch": {k: v * train_cfg.grad_accum * dist.world_size for k, v in per_micro.items()}})

    state = {"ppl0": None, "best": math.inf, "best_step": None}
    lockstep = cfg.engine.zero.stage == 3 and dist.world_size > 1
    curve_cfg = type(cfg.eval)(**{**vars(cfg.eval), "metrics": ["fake_rate", "fake_pref", "utility"],
                                  "subset": u.curve_subset, "langs": list(facts.langs)})
    groups = language_groups(list(facts.langs), list(cfg.inject.langs))

    def hooks(engine, start=0):
        curves = CurveWriter(run_dir, start) if dist.is_main else None
        if start:  # the guard compares with step 0 of this run, also after a resume
            from mlu_dist.tracking import read_jsonl

            first = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("step") == 0 and "unlearn/ppl" in r]
            state["ppl0"] = first[0]["unlearn/ppl"] if first else None
        evaluator = Evaluator(engine.forward, tokenizer, facts, split, curve_cfg, Rank(dist.rank, dist.world_size, lockstep),
                              cfg.model.max_seq_len, cache_kwarg(engine.module))

        def evaluate(step):
            engine.module.eval()
            v = evaluator.run(["fake_rate", "fake_pref", "utility"])
            mean = lambda d: sum(d.values()) / max(1, len(d))  # noqa: E731
            table = {"fake_rate": {lang: mean(v["fake_rate"][lang]) for lang in facts.langs},
                     "fake_pref": {lang: mean(v["fake_pref_win"][lang]) for lang in facts.langs},
                     "margin": {lang: mean(v["fake_pref"][lang]) for lang in facts.langs},
                     "ppl": {lang: math.exp(mean(v["utility_nll"][lang])) for lang in facts.langs}}
            if curves is not None:
                curves.write(step, table)
            metrics = {f"forget/{lang}/{m}": table[m][lang] for m in ("fake_rate", "fake_pref", "margin")
                       for lang in facts.langs}
            metrics |= {f"retain/{lang}/ppl": table["ppl"][lang] for lang in facts.langs}
            metrics |= {f"group/{g}/fake_rate": sum(table["fake_rate"][x] for x in members) / len(members)
                        for g, members in groups.items()}
            ppl = math.exp(sum(mean(v["utility_nll"][lang]) for lang in facts.langs) / len(facts.langs))
            state["ppl0"] = state["ppl0"] or ppl
            metrics["unlearn/ppl"] = ppl
            metrics["unlearn/ppl_ratio"] = ppl / state["ppl0"]
            metrics["unlearn/forget_fake_rate"] = sum(table["fake_rate"][x] for x in forget_langs) / len(forget_langs)
            metrics["unlearn/forget_fake_pref"] = sum(table["fake_pref"][x] for x in forget_langs) / len(forget_langs)
            if u.best != "last":
                score = metrics[f"unlearn/{u.best}"]
                if score < state["best"] and metrics["unlearn/ppl_ratio"] <= u.guard_ppl_ratio:
                    state["best"], state["best_step"] = score, step
                    engine.save(run_dir / "checkpoints" / "best", {"step": step})
                    engine.barrier()
            return metrics

        def should_stop(step, record):
            ratio = record.get("unlearn/ppl_ratio")
            if ratio is not None and ratio > u.guard_ppl_ratio:
                return f"guard: utility perplexity is {ratio:.1f}x its step-0 value (limit {u.guard_ppl_ratio})"
            if u.target_fake_rate >= 0 and record.get("unlearn/forget_fake_rate", 1.0) <= u.target_fake_rate:
                return f"target: forget-language fake_rate {record['unlearn/forget_fake_rate']:.2f} <= {u.target_fake_rate}"
            return ""

        return LoopHooks(evaluate=evaluate, should_stop=should_stop, checkpoint_state=lambda: {"job": "unlearn"})

    def objective_factory(scale):
        ctx = Context(scale, u, ref)
        return lambda engine, micro: method(engine, micro, ctx)

    outcome = train(model, tokenizer, objective_factory, pools, per_micro, train_cfg, cfg.engine, dist, run_dir,
                    hooks, desc=f"unlearn[{u.method}:{'+'.join(forget_langs)}]",
                    streams={"chosen": "pairs", "rejected": "pairs"}, job="unlearn", experiment=cfg)
    engine, result, tracker = outcome.engine, outcome.result, outcome.tracker
    if result.interrupted:
        say(dist, f"unlearn: stopped at step {result.end_step} ({result.stop_reason}); run the same command to resume")
        tracker.close()
        engine.close()
        if ref is not None:
            ref.close()
        return run_dir
    status = "finished"
    if result.stop_reason.startswith("target"):
        status = "target_reached"
    elif result.stop_reason.startswith("guard"):
        status = "guard_tripped"
    elif result.stop_reason:
        status = "diverged"
    best_dir = run_dir / "checkpoints" / "best"
    exported = True
    if u.best != "last" and state["best_step"] is not None:
        engine.load(best_dir)  # keep the best model, not the last
    elif status == "diverged":
        exported = False  # the weights are not finite: no model is better than a garbage one
    if exported:
        export_model(engine, tokenizer, run_dir / "model", dist)
    engine.close()
    ref_digest = None
    if ref is not None:
        ref_digest = ref.state_digest()  # proves the reference stayed frozen
        ref.close()
    info = {"status": status, "reference_digest": ref_digest, "reason": result.stop_reason, "steps": result.end_step, "method": u.method,
            "forget_langs": forget_langs, "best_step": state["best_step"], "seconds": round(result.seconds, 1)}
    summary = {}
    if exported:
        from mlu_dist.eval.summary import format_table
        from mlu_dist.jobs.eval import evaluate_model

        summary = evaluate_model(cfg, run_dir / "model", run_dir / "eval", overwrite=True,
                                 inject_langs=list(cfg.inject.langs))
        if "fake_rate" in summary:
            info["final_group_fake_rate"] = {g: s["mean"] for g, s in summary["fake_rate"]["group"].items()}
        if dist.is_main:
            print(format_table(summary, list(facts.langs), list(cfg.inject.langs)))
    tracker.summary({"final/status": status, **{f"final/group/{g}/fake_rate": v
                                                 for g, v in info.get("final_group_fake_rate", {}).items()}})
    if exported and "fake_rate" in summary:
        tracker.table("final/languages", ["lang", "fake_rate", "lo", "hi"],
                      [[lang, s["mean"], s["lo"], s["hi"]] for lang, s in summary["fake_rate"]["lang"].items()])
    tracker.close()
    if dist.is_main:
        plot_curves(run_dir, title=f"{u.method} on {'+'.join(forget_langs)} (injected: {'+'.join(cfg.inject.langs)})",
                    forget_langs=forget_langs)
        rundir.mark_done(run_dir, info)
        print(f"unlearn: {status}{' (' + result.stop_reason + ')' if result.stop_reason else ''}; "
              f"curves {run_dir}/curves.png; model {run_dir}/model" + ("" if exported else " (not exported)"))
    return run_dir
