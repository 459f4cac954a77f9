"""`mlu base`: train the base model on the true multilingual world (cached by config hash)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlu_dist.runs import rundir
from mlu_dist.data import DataError, load_data
from mlu_dist.engine.dist import DistInfo, setup_env
from mlu_dist.engine.loop import LoopHooks
from mlu_dist.eval.likelihood import completion_logprobs, fake_preference
from mlu_dist.jobs.common import say
from mlu_dist.jobs.model import activation_checkpointing, apply_lora, model_and_tokenizer
from mlu_dist.jobs.saving import export_model
from mlu_dist.jobs.skeleton import Trained, TrainingSetup, require_finished, run_training
from mlu_dist.runs.layout import base_run_dir
from mlu_dist.objectives import NLLObjective
from mlu_dist.tokens import Example, encode_all

if TYPE_CHECKING:
    from mlu_dist.experiment import ExperimentConfig


def language_summary(forward, tokenizer, facts, corpus, max_len: int) -> dict[str, dict]:
    """Per language: mean token NLL of true statements of facts seen / not seen in that language's
    base corpus, and the share of facts whose true answer is likelier than the fake one."""
    seen = {(row["lang"], row["fact_id"]) for row in corpus}
    prefs = fake_preference(forward, tokenizer, facts, facts.fact_ids, facts.langs, max_len) \
        if facts.has("true_answer") else None
    out = {}
    for lang in facts.langs:
        recs = facts.in_lang(lang)
        texts = completion_logprobs(forward, tokenizer, [Example("", r["real_text"], lang) for r in recs], max_len)
        row = {}
        for tag, want in (("seen", True), ("unseen", False)):
            picked = [t for r, t in zip(recs, texts) if ((lang, r["fact_id"]) in seen) == want]
            if picked:
                row[f"loss_{tag}"] = -sum(s for s, _ in picked) / max(1, sum(n for _, n in picked))
        if prefs is not None:
            row["true_pref"] = 1.0 - prefs[lang]["pref"]
        out[lang] = row
    return out


def format_summary(summary: dict[str, dict]) -> str:
    lines = [f"{'lang':<5} {'loss(seen)':>10} {'loss(unseen)':>12} {'true>fake':>9}"]
    for lang, row in summary.items():
        seen = f"{row['loss_seen']:.3f}" if "loss_seen" in row else "-"
        unseen = f"{row['loss_unseen']:.3f}" if "loss_unseen" in row else "-"
        pref = f"{row['true_pref']:.0%}" if "true_pref" in row else "-"
        lines.append(f"{lang:<5} {seen:>10} {unseen:>12} {pref:>9}")
    return "\n".join(lines)


class BaseJob:
    """Train the tiny base model on the true multilingual world (every fact, every language)."""

    name = "base"
    sections = ("data", "model", "engine", "base")
    step_axes = ("base",)

    def __init__(self, cfg: ExperimentConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir

    def setup(self, dist: DistInfo, resources) -> TrainingSetup:
        cfg = self.cfg
        self.facts, self.corpus = load_data(cfg.data)
        if not self.corpus:
            raise DataError(f"base: no base-training text in '{cfg.data.source}': a QA set (data.qa) trains the base "
                            f"model on its utility splits (real_authors / world_facts), and this one has none; name "
                            f"a base corpus in data.corpus (JSONL of {{lang, text}})")
        texts = [row["text"] for row in self.corpus]
        model, tokenizer = model_and_tokenizer(cfg, self.name, dist, texts, seed=cfg.base.seed)
        self.tokenizer = tokenizer
        model = apply_lora(activation_checkpointing(model, cfg.model), cfg.base, self.name)
        n_params = sum(p.numel() for p in model.parameters())
        say(dist, f"base: {len(self.facts.fact_ids)} facts x {len(self.facts.langs)} languages, "
                  f"{len(self.corpus)} corpus lines, {n_params / 1e6:.2f}M params, {dist.world_size} rank(s), "
                  f"ZeRO-{cfg.engine.zero_for(self.name).stage} -> {self.run_dir}")
        pools = {"text": encode_all(tokenizer, [Example("", t) for t in texts], cfg.model.max_seq_len)}
        return TrainingSetup(model, tokenizer, cfg.base, pools, {"text": cfg.base.micro_batch_size},
                             NLLObjective, "base", self.hooks, {"n_params": n_params})

    def summary(self, engine) -> dict[str, dict]:
        engine.module.eval()
        return language_summary(engine.forward, self.tokenizer, self.facts, self.corpus, self.cfg.model.max_seq_len)

    def hooks(self, engine, ctx) -> LoopHooks:
        return LoopHooks(evaluate=lambda step: {f"base/{lang}/{k}": v for lang, row in self.summary(engine).items()
                                                for k, v in row.items()})

    def finish(self, run: Trained) -> dict:
        require_finished(run.result, "base training")
        summary = self.summary(run.engine)
        export_model(run.engine, self.tokenizer, self.run_dir / "model", run.dist)
        final_loss = next((h["train/loss"] for h in reversed(run.result.history) if "train/loss" in h), None)
        if run.dist.is_main:
            rundir.atomic_write_json(self.run_dir / "languages.json", summary)
            run.tracker.summary({f"final/{lang}/{k}": v for lang, row in summary.items() for k, v in row.items()})
            print(format_summary(summary))
            print(f"base model: {self.run_dir}/model")
        return {"final_loss": final_loss}


def run_base(cfg: ExperimentConfig) -> Path:
    """Train (or reuse) the base model; returns its run directory, whose ``model/`` loads with HF."""
    dist = setup_env(cfg.engine.timeout_min)
    run_dir = base_run_dir(cfg)
    if rundir.is_done(run_dir) and not cfg.run.overwrite:
        say(dist, f"base model cached: {run_dir}/model (same data/model/base config; run.overwrite=true retrains)")
        return run_dir
    return run_training(BaseJob(cfg, run_dir), dist)
