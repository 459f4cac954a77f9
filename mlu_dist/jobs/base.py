"""`mlu base`: train the base model on the true multilingual world (cached by config hash)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlu_dist import rundir
from mlu_dist.data import load_data
from mlu_dist.engine.data import Example
from mlu_dist.engine.dist import setup_env
from mlu_dist.engine.loop import LoopHooks, NLLObjective
from mlu_dist.eval.likelihood import completion_logprobs, fake_preference
from mlu_dist.jobs.common import apply_lora, encode_all, export_model, model_and_tokenizer, save_skeleton, say, train

if TYPE_CHECKING:
    from mlu_dist.experiment import ExperimentConfig


def base_run_dir(cfg: ExperimentConfig) -> Path:
    """``runs/base/<hash of data + model + base>``: shared by every study on the same world and model."""
    from mlu_dist.data.world import FORMAT_VERSION

    digest = rundir.config_hash(cfg, keep=("data", "model", "base"),
                                drop=("base.resume", "base.stop_after", "base.log_every", "base.eval_every"))
    return Path(cfg.run.out_dir) / "base" / f"{digest}-w{FORMAT_VERSION}"


def language_summary(forward, tokenizer, facts, corpus, max_len: int) -> dict[str, dict]:
    """Per language: mean token NLL of true statements of facts seen / not seen in that language's
    base corpus, and the share of facts whose true answer is likelier than the fake one."""
    seen = {(row["lang"], row["fact_id"]) for row in corpus}
    prefs = fake_preference(forward, tokenizer, facts, facts.fact_ids, facts.langs, max_len)
    out = {}
    for lang in facts.langs:
        recs = facts.in_lang(lang)
        texts = completion_logprobs(forward, tokenizer, [Example("", r["real_text"], lang) for r in recs], max_len)
        row = {}
        for tag, want in (("seen", True), ("unseen", False)):
            picked = [t for r, t in zip(recs, texts) if ((lang, r["fact_id"]) in seen) == want]
            if picked:
                row[f"loss_{tag}"] = -sum(s for s, _ in picked) / max(1, sum(n for _, n in picked))
        row["true_pref"] = 1.0 - prefs[lang]["pref"]
        out[lang] = row
    return out


def format_summary(summary: dict[str, dict]) -> str:
    lines = [f"{'lang':<5} {'loss(seen)':>10} {'loss(unseen)':>12} {'true>fake':>9}"]
    for lang, row in summary.items():
        seen = f"{row['loss_seen']:.3f}" if "loss_seen" in row else "-"
        unseen = f"{row['loss_unseen']:.3f}" if "loss_unseen" in row else "-"
        lines.append(f"{lang:<5} {seen:>10} {unseen:>12} {row['true_pref']:>9.0%}")
    return "\n".join(lines)


def run_base(cfg: ExperimentConfig) -> Path:
    """Train (or reuse) the base model; returns its run directory, whose ``model/`` loads with HF."""
    dist = setup_env()
    run_dir = base_run_dir(cfg)
    if rundir.is_done(run_dir) and not cfg.run.overwrite:
        say(dist, f"base model cached: {run_dir}/model (same data/model/base config; run.overwrite=true retrains)")
        return run_dir
    rundir.prepare(run_dir, cfg, dist.is_main, sections=("data", "model", "engine", "base"))
    facts, corpus = load_data(cfg.data)
    texts = [row["text"] for row in corpus]
    train_cfg = cfg.base
    model, tokenizer = model_and_tokenizer(cfg.model, dist, texts, seed=train_cfg.seed)
    model = apply_lora(model, train_cfg)
    save_skeleton(model, tokenizer, run_dir, dist, train_cfg)
    n_params = sum(p.numel() for p in model.parameters())
    say(dist, f"base: {len(facts.fact_ids)} facts x {len(facts.langs)} languages, {len(corpus)} corpus lines, "
              f"{n_params / 1e6:.2f}M params, {dist.world_size} rank(s), ZeRO-{cfg.engine.zero.stage} -> {run_dir}")
    if dist.is_main:
        rundir.write_meta(run_dir, dist.as_dict(), {
            "job": "base", "seed": train_cfg.seed, "n_params": n_params, "zero_stage": cfg.engine.zero.stage,
            "global_batch": train_cfg.micro_batch_size * train_cfg.grad_accum * dist.world_size,
            "micro_batch_size": train_cfg.micro_batch_size, "grad_accum": train_cfg.grad_accum})
    pools = {"text": encode_all(tokenizer, [Example("", t) for t in texts], cfg.model.max_seq_len)}
    probe_facts = facts  # the summary probes every fact in every language

    def hooks(engine, start=0):
        def evaluate(step):
            engine.module.eval()
            summary = language_summary(engine.forward, tokenizer, probe_facts, corpus, cfg.model.max_seq_len)
            return {f"base/{lang}/{k}": v for lang, row in summary.items() for k, v in row.items()}
        return LoopHooks(evaluate=evaluate)

    outcome = train(model, tokenizer, lambda scale: NLLObjective(scale), pools,
                    {"text": train_cfg.micro_batch_size}, train_cfg, cfg.engine, dist, run_dir, hooks, desc="base",
                    job="base", experiment=cfg)
    engine, tracker = outcome.engine, outcome.tracker
    if outcome.result.interrupted:
        say(dist, f"base: stopped at step {outcome.result.end_step} ({outcome.result.stop_reason}); "
                  f"run again to resume from {run_dir}/checkpoints")
        tracker.close()
        engine.close()
        return run_dir
    if outcome.result.stop_reason:
        tracker.close()
        engine.close()
        raise RuntimeError(f"base training stopped: {outcome.result.stop_reason}")
    engine.module.eval()
    summary = language_summary(engine.forward, tokenizer, facts, corpus, cfg.model.max_seq_len)
    export_model(engine, tokenizer, run_dir / "model", dist)
    if dist.is_main:
        final_loss = next((h["train/loss"] for h in reversed(outcome.result.history) if "train/loss" in h), None)
        rundir.atomic_write_json(run_dir / "languages.json", summary)
        tracker.summary({f"final/{lang}/{k}": v for lang, row in summary.items() for k, v in row.items()})
        rundir.mark_done(run_dir, {"steps": outcome.result.end_step, "final_loss": final_loss,
                                   "seconds": round(outcome.result.seconds, 1)})
        print(format_summary(summary))
        print(f"base model: {run_dir}/model")
    tracker.close()
    engine.close()
    return run_dir
