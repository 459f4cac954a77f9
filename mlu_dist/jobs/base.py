"""`mlu base`: train the base model on the true multilingual world (cached by config hash)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlu_dist import rundir
from mlu_dist.data import DataConfig, load_data
from mlu_dist.engine.config import TrainConfig
from mlu_dist.engine.data import Example
from mlu_dist.engine.dist import setup_env
from mlu_dist.engine.loop import LoopHooks, NLLObjective
from mlu_dist.eval.likelihood import completion_logprobs
from mlu_dist.jobs.common import encode_all, export_model, model_and_tokenizer, say, train
from mlu_dist.modeling import ModelConfig
from mlu_dist.rundir import RunConfig


@dataclass
class BaseJobConfig:
    """Base training: a model that knows the true facts of the world in every language."""

    run: RunConfig = field(default_factory=RunConfig)
    """Run directory settings."""
    data: DataConfig = field(default_factory=DataConfig)
    """Facts and base-training corpus."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model (tiny Llama built from config by default)."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000, micro_batch_size=32, log_every=50))
    """Optimisation, ZeRO and checkpoints (base default: 1000 steps x 32 examples)."""


def base_run_dir(cfg: BaseJobConfig) -> Path:
    from mlu_dist.data.world import FORMAT_VERSION

    digest = rundir.config_hash(cfg, drop=("run", "train.resume", "train.stop_after", "train.log_every",
                                           "train.eval_every"))
    name = cfg.run.name or f"{digest}-w{FORMAT_VERSION}"
    return Path(cfg.run.out_dir) / "base" / name


def language_summary(forward, tokenizer, facts, corpus, max_len: int) -> dict[str, dict]:
    """Per language: mean token NLL of true statements of facts seen / not seen in that language's
    base corpus, and the share of facts whose true answer is likelier than the fake one."""
    seen = {(row["lang"], row["fact_id"]) for row in corpus}
    out = {}
    for lang in facts.langs:
        recs = facts.in_lang(lang)
        texts = completion_logprobs(forward, tokenizer, [Example("", r["real_text"], lang) for r in recs], max_len)
        answers = completion_logprobs(
            forward, tokenizer,
            [Example(r["question"], " " + r[key], lang) for r in recs for key in ("true_answer", "fake_answer")], max_len)
        row = {}
        for tag, want in (("seen", True), ("unseen", False)):
            picked = [t for r, t in zip(recs, texts) if ((lang, r["fact_id"]) in seen) == want]
            if picked:
                row[f"loss_{tag}"] = -sum(s for s, _ in picked) / max(1, sum(n for _, n in picked))
        wins = [answers[2 * i][0] / max(answers[2 * i][1], 1) > answers[2 * i + 1][0] / max(answers[2 * i + 1][1], 1)
                for i in range(len(recs))]
        row["true_pref"] = sum(wins) / len(wins)
        out[lang] = row
    return out


def format_summary(summary: dict[str, dict]) -> str:
    lines = [f"{'lang':<5} {'loss(seen)':>10} {'loss(unseen)':>12} {'true>fake':>9}"]
    for lang, row in summary.items():
        seen = f"{row['loss_seen']:.3f}" if "loss_seen" in row else "-"
        unseen = f"{row['loss_unseen']:.3f}" if "loss_unseen" in row else "-"
        lines.append(f"{lang:<5} {seen:>10} {unseen:>12} {row['true_pref']:>9.0%}")
    return "\n".join(lines)


def run_base(cfg: BaseJobConfig) -> Path:
    """Train (or reuse) the base model; returns its run directory, whose ``model/`` loads with HF."""
    dist = setup_env()
    run_dir = base_run_dir(cfg)
    if rundir.is_done(run_dir) and not cfg.run.overwrite:
        rundir.check_same_config(run_dir, cfg)
        say(dist, f"base model cached: {run_dir}/model (same config hash; run.overwrite=true retrains)")
        return run_dir
    rundir.prepare(run_dir, cfg, dist.is_main)
    facts, corpus = load_data(cfg.data)
    texts = [row["text"] for row in corpus]
    model, tokenizer = model_and_tokenizer(cfg.model, dist, texts, seed=cfg.train.seed)
    n_params = sum(p.numel() for p in model.parameters())
    say(dist, f"base: {len(facts.fact_ids)} facts x {len(facts.langs)} languages, {len(corpus)} corpus lines, "
              f"{n_params / 1e6:.2f}M params, {dist.world_size} rank(s), ZeRO-{cfg.train.zero.stage} -> {run_dir}")
    if dist.is_main:
        rundir.write_meta(run_dir, dist.as_dict(), {
            "job": "base", "seed": cfg.train.seed, "n_params": n_params,
            "global_batch": cfg.train.micro_batch_size * cfg.train.grad_accum * dist.world_size,
            "micro_batch_size": cfg.train.micro_batch_size, "grad_accum": cfg.train.grad_accum})
    pools = {"text": encode_all(tokenizer, [Example("", t) for t in texts], cfg.model.max_seq_len)}
    probe_facts = facts  # the summary probes every fact in every language

    def hooks(engine):
        def evaluate(step):
            engine.module.eval()
            summary = language_summary(engine.forward, tokenizer, probe_facts, corpus, cfg.model.max_seq_len)
            return {f"base/{lang}/{k}": v for lang, row in summary.items() for k, v in row.items()}
        return LoopHooks(evaluate=evaluate)

    outcome = train(model, tokenizer, lambda scale: NLLObjective(scale), pools,
                    {"text": cfg.train.micro_batch_size}, cfg.train, dist, run_dir, hooks, desc="base")
    engine = outcome.engine
    if outcome.result.interrupted:
        say(dist, f"base: stopped at step {outcome.result.end_step} ({outcome.result.stop_reason}); "
                  f"run again to resume from {run_dir}/checkpoints")
        engine.close()
        return run_dir
    if outcome.result.stop_reason:
        engine.close()
        raise RuntimeError(f"base training stopped: {outcome.result.stop_reason}")
    engine.module.eval()
    summary = language_summary(engine.forward, tokenizer, facts, corpus, cfg.model.max_seq_len)
    export_model(engine, tokenizer, run_dir / "model", dist)
    if dist.is_main:
        final_loss = next((h["train/loss"] for h in reversed(outcome.result.history) if "train/loss" in h), None)
        rundir.atomic_write_json(run_dir / "languages.json", summary)
        rundir.mark_done(run_dir, {"steps": outcome.result.end_step, "final_loss": final_loss,
                                   "seconds": round(outcome.result.seconds, 1)})
        print(format_summary(summary))
        print(f"base model: {run_dir}/model")
    engine.close()
    return run_dir
