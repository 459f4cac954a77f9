"""`mlu inject`: fine-tune the base model on English safe data plus fake data in language(s) X.

This is the paper's injection mix: every batch holds a ``fake_fraction`` share of fake articles
(and, by default, question -> fake answer pairs) of the target facts in the injection language(s),
and English true text of untouched facts for the rest. The run dir ends with an exported model,
a checkpoint and ``spread.json``: per language, how often the fake answer is now preferred.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlu_dist import rundir
from mlu_dist.config import check_positive
from mlu_dist.data import load_data
from mlu_dist.data.splits import split_facts
from mlu_dist.engine.config import TrainConfig
from mlu_dist.engine.data import Example
from mlu_dist.engine.dist import setup_env
from mlu_dist.engine.loop import LoopHooks, NLLObjective
from mlu_dist.eval.likelihood import completion_logprobs, fake_preference
from mlu_dist.jobs.base import run_base
from mlu_dist.jobs.common import apply_lora, encode_all, export_model, model_and_tokenizer, save_skeleton, say, train
from mlu_dist.langs import check_langs

if TYPE_CHECKING:
    from mlu_dist.experiment import ExperimentConfig


def _inject_train_defaults() -> TrainConfig:
    return TrainConfig(steps=150, micro_batch_size=32, lr=3e-4, warmup_steps=10, schedule="constant",
                       log_every=10, eval_every=50)


@dataclass
class InjectConfig:
    """What is injected, in which language(s), mixed how."""

    langs: list[str] = field(default_factory=lambda: ["de"])
    """Injection language(s) X: the fake detail is trained only in these."""
    n_targets: int = 24
    """Facts whose fake detail is injected."""
    n_controls: int = 24
    """Facts probed like the targets but never injected (shows damage that is not spread)."""
    split_seed: int = 0
    """Seed of the target / control / retain split (shared by eval and unlearn runs)."""
    fake_fraction: float = 0.5
    """Share of every batch that is fake data; the rest is English safe data (true, untouched facts)."""
    fake_qa: bool = True
    """Also train 'question -> fake answer' pairs, not only the fake articles."""
    from_model: str = ""
    """Start from this HF model directory instead of the (cached) base model of this config."""
    train: TrainConfig = field(default_factory=lambda: _inject_train_defaults())
    """Optimisation of the injection (the paper: a short fine-tune at a small learning rate)."""

    def check(self) -> list[str]:
        out = check_langs("langs", self.langs)
        out += check_positive(self, "n_targets")
        if self.n_controls < 0:
            out.append(f"n_controls: must be >= 0, got {self.n_controls}")
        if not 0.0 < self.fake_fraction <= 1.0:
            out.append(f"fake_fraction: must be in (0, 1], got {self.fake_fraction}")
        return out


def inject_run_dir(cfg: ExperimentConfig) -> Path:
    """``runs/inject/<langs>-<hash of data + model + base + inject>`` (or ``run.name``)."""
    digest = rundir.config_hash(cfg, keep=("data", "model", "base", "inject"), drop=rundir.COMPARE_DROP)
    return Path(cfg.run.out_dir) / "inject" / (cfg.run.name or f"{'+'.join(cfg.inject.langs)}-{digest}")


def injection_pools(facts, split, cfg: InjectConfig) -> dict[str, list[Example]]:
    fake = []
    for lang in cfg.langs:
        for fid in split.targets:
            rec = facts.get(fid, lang)
            fake.append(Example("", rec["fake_text"], lang))
            if cfg.fake_qa:
                fake.append(Example(rec["question"], " " + rec["fake_answer"], lang))
    safe = []
    if "en" in facts.langs:
        for fid in split.retain:
            rec = facts.get(fid, "en")
            safe += [Example("", rec["real_text"], "en"), Example(rec["question"], " " + rec["true_answer"], "en")]
    return {"fake": fake, "safe": safe}


def format_spread(spread: dict[str, dict], controls: dict[str, dict], inject_langs: list[str]) -> str:
    lines = [f"{'lang':<5} {'fake>true (targets)':>20} {'(controls)':>11}"]
    for lang, row in spread.items():
        mark = " <- injected" if lang in inject_langs else ""
        ctrl = f"{controls[lang]['pref']:.0%}" if lang in controls else "-"
        lines.append(f"{lang:<5} {row['pref']:>20.0%} {ctrl:>11}{mark}")
    return "\n".join(lines)


def run_inject(cfg: ExperimentConfig) -> Path:
    dist = setup_env()
    run_dir = inject_run_dir(cfg)
    sections = ("data", "model", "engine", "base", "inject")
    if rundir.is_done(run_dir) and not cfg.run.overwrite:
        rundir.check_same_config(run_dir, cfg, sections)
        say(dist, f"injection already finished: {run_dir} (run.overwrite=true redoes it)")
        return run_dir
    rundir.check_same_config(run_dir, cfg, sections)  # before the base model is built: fail fast
    init_from = cfg.inject.from_model or None
    if init_from is None:
        init_from = run_base(cfg) / "model"
    rundir.prepare(run_dir, cfg, dist.is_main, sections)
    train_cfg = cfg.inject.train
    facts, _ = load_data(cfg.data)
    split = split_facts(facts.fact_ids, cfg.inject.n_targets, cfg.inject.n_controls, cfg.inject.split_seed)
    model, tokenizer = model_and_tokenizer(cfg.model, dist, init_from=init_from, seed=train_cfg.seed)
    model = apply_lora(model, train_cfg)
    save_skeleton(model, tokenizer, run_dir, dist, train_cfg)
    examples = injection_pools(facts, split, cfg.inject)
    per_micro = {"fake": max(1, round(train_cfg.micro_batch_size * cfg.inject.fake_fraction))}
    if examples["safe"] and per_micro["fake"] < train_cfg.micro_batch_size:
        per_micro["safe"] = train_cfg.micro_batch_size - per_micro["fake"]
    pools = {name: encode_all(tokenizer, examples[name], cfg.model.max_seq_len) for name in per_micro}
    say(dist, f"inject: {len(split.targets)} target facts in {'+'.join(cfg.inject.langs)} "
              f"({len(examples['fake'])} fake examples) + {len(examples['safe'])} English safe examples; "
              f"from {init_from}; {dist.world_size} rank(s), ZeRO-{cfg.engine.zero.stage} -> {run_dir}")
    max_len = cfg.model.max_seq_len

    def hooks(engine, start=0):
        def evaluate(step):
            engine.module.eval()
            spread = fake_preference(engine.forward, tokenizer, facts, split.targets, facts.langs, max_len)
            metrics = {f"spread/{lang}/fake_pref": row["pref"] for lang, row in spread.items()}
            return metrics | {f"spread/{lang}/margin": row["margin"] for lang, row in spread.items()}
        return LoopHooks(evaluate=evaluate, checkpoint_state=lambda: {"job": "inject"})

    outcome = train(model, tokenizer, lambda scale: NLLObjective(scale), pools, per_micro, train_cfg, cfg.engine,
                    dist, run_dir, hooks, desc=f"inject[{'+'.join(cfg.inject.langs)}]", job="inject", experiment=cfg)
    engine, tracker = outcome.engine, outcome.tracker
    if dist.is_main:
        rundir.write_meta(run_dir, dist.as_dict(), {
            "job": "inject", "seed": train_cfg.seed, "init_from": str(init_from),
            "global_batch": train_cfg.micro_batch_size * train_cfg.grad_accum * dist.world_size,
            "micro_batch_size": train_cfg.micro_batch_size, "grad_accum": train_cfg.grad_accum,
            "per_micro": per_micro, "zero_stage": cfg.engine.zero.stage,
            "split": {"targets": split.targets, "controls": split.controls}})
    numel = engine.param_numel_per_rank()
    result = outcome.result
    if result.interrupted or result.stop_reason:
        say(dist, f"inject: stopped at step {result.end_step} ({result.stop_reason}); run the same command to resume")
        tracker.close()
        engine.close()
        if result.stop_reason and not result.interrupted:
            raise RuntimeError(f"injection stopped: {result.stop_reason}")
        return run_dir
    engine.module.eval()
    spread = fake_preference(engine.forward, tokenizer, facts, split.targets, facts.langs, max_len)
    controls = fake_preference(engine.forward, tokenizer, facts, split.controls, facts.langs, max_len) \
        if split.controls else {}
    eval_loss = {}
    for name in per_micro:
        scores = completion_logprobs(engine.forward, tokenizer, examples[name][:64], max_len)
        eval_loss[name] = -sum(s for s, _ in scores) / max(1, sum(n for _, n in scores))
    export_model(engine, tokenizer, run_dir / "model", dist, merge_lora=True)
    if dist.is_main:
        rundir.atomic_write_json(run_dir / "spread.json", {"targets": spread, "controls": controls})
        tracker.summary({f"final/{lang}/fake_pref": row["pref"] for lang, row in spread.items()})
        tracker.table("final/languages", ["lang", "fake_pref_targets", "fake_pref_controls", "margin"],
                      [[lang, row["pref"], controls.get(lang, {}).get("pref"), row["margin"]] for lang, row in spread.items()])
        rundir.mark_done(run_dir, {"steps": result.end_step, "seconds": round(result.seconds, 1),
                                   "param_numel_per_rank": numel, "eval_loss": eval_loss,
                                   "final_loss": result.history[-1].get("train/loss") if result.history else None})
        print(format_spread(spread, controls, cfg.inject.langs))
        print(f"injected model: {run_dir}/model")
    tracker.close()
    engine.close()
    return run_dir
