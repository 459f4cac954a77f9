"""P2: injection steps/s of the mlu_dist engine vs a bare PyTorch loop and vs HF Trainer + DeepSpeed.

One process, one rank, the same model, the same batches, the same DeepSpeed config (ZeRO-0 on CPU).
Prints the ratios and writes them to benchmarks/results/engine.json. Run:

    .venv/bin/python benchmarks/bench_engine.py [--steps 60] [--model default|quick]

``--smoke`` runs the same code at the quick model for 2 steps and writes to a temporary file (or
``--out``): it checks that the script still runs, not the speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from mlu_dist.config import load_config  # noqa: E402
from mlu_dist.data import load_data  # noqa: E402
from mlu_dist.data.splits import split_facts  # noqa: E402
from mlu_dist.engine.data import BatchPlan  # noqa: E402
from mlu_dist.tokens import collate, encode_all  # noqa: E402
from mlu_dist.engine.dist import setup_env  # noqa: E402
from mlu_dist.engine.loop import train_loop  # noqa: E402
from mlu_dist.objectives import NLLObjective  # noqa: E402
from mlu_dist.experiment import ExperimentConfig  # noqa: E402
from mlu_dist.jobs.common import make_engine  # noqa: E402
from mlu_dist.inject.data import injection_pools  # noqa: E402
from mlu_dist.modeling import build_tiny_model, train_tokenizer  # noqa: E402
from mlu_dist.tracking import NullTracker  # noqa: E402
from smoke import smoke_out  # noqa: E402


def setup(args):
    files = [ROOT / "configs/experiments/quick.yaml"] if args.model == "quick" else []
    cfg = load_config(ExperimentConfig, files, [f"inject.train.steps={args.steps}", "inject.train.eval_every=0",
                                                "inject.train.log_every=1000000"])
    facts, corpus = load_data(cfg.data)
    tok = train_tokenizer([r["text"] for r in corpus], cfg.model.vocab_size)
    split = split_facts(facts.fact_ids, cfg.inject.n_targets, cfg.inject.n_controls, 0)
    examples = injection_pools(facts, split, cfg.inject)
    # one pool holding the whole injection mix, so every variant sees the same batches
    mixed = encode_all(tok, examples["fake"] + examples["safe"], cfg.model.max_seq_len)
    return cfg, tok, mixed


def fresh_model(cfg, tok):
    return build_tiny_model(cfg.model, tok, seed=0)


def bench_mlu(cfg, tok, pool, dist, backend: str):
    cfg.engine.backend = backend
    train_cfg = cfg.inject.train
    engine = make_engine(fresh_model(cfg, tok), train_cfg, cfg.engine, dist)
    plan = BatchPlan({"text": pool}, {"text": train_cfg.micro_batch_size}, seed=0)
    t0 = time.perf_counter()
    result = train_loop(engine, NLLObjective(1.0), plan, train_cfg, dist, NullTracker(), pad_id=tok.pad_token_id,
                        desc=f"mlu[{backend}]")
    seconds = time.perf_counter() - t0
    loss = result.history[-1]["train/loss"]
    engine.close()
    return train_cfg.steps / seconds, loss


def bench_bare(cfg, tok, pool):
    """A loop anyone would write: collate, forward, mean loss, backward, clip, AdamW, schedule."""
    from mlu_dist.engine.optim import lr_factor

    train_cfg = cfg.inject.train
    model = fresh_model(cfg, tok)
    opt = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, betas=tuple(train_cfg.betas), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, train_cfg))
    plan = BatchPlan({"text": pool}, {"text": train_cfg.micro_batch_size}, seed=0)
    model.train()
    t0 = time.perf_counter()
    for step in range(train_cfg.steps):
        batch = collate(plan.global_batch(step)["text"], tok.pad_token_id)
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    return train_cfg.steps / seconds, out.loss.item()


def bench_hf_trainer(cfg, tok, pool, dist):
    """HF Trainer with the DeepSpeed config our engine builds (same batch, same optimizer settings)."""
    from transformers import Trainer, TrainingArguments

    from mlu_dist.engine.deepspeed_engine import build_ds_config

    train_cfg = cfg.inject.train
    ds = build_ds_config(train_cfg, cfg.engine.zero, 1, "cpu")
    ds["optimizer"] = {"type": "AdamW", "params": {"lr": train_cfg.lr, "betas": list(train_cfg.betas), "eps": 1e-8,
                                                   "weight_decay": 0.0, "torch_adam": True}}
    plan = BatchPlan({"text": pool}, {"text": train_cfg.micro_batch_size}, seed=0)
    order = [e for s in range(train_cfg.steps) for e in plan.global_batch(s)["text"]]

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(order)

        def __getitem__(self, i):
            return order[i]

    out_dir = tempfile.mkdtemp()
    targs = TrainingArguments(output_dir=out_dir, per_device_train_batch_size=train_cfg.micro_batch_size,
                              max_steps=train_cfg.steps, learning_rate=train_cfg.lr, lr_scheduler_type="constant",
                              warmup_steps=0, max_grad_norm=train_cfg.grad_clip, logging_steps=10**6,
                              save_strategy="no", report_to=[], use_cpu=True, deepspeed=ds,
                              adam_beta1=train_cfg.betas[0], adam_beta2=train_cfg.betas[1], adam_epsilon=1e-8,
                              weight_decay=0.0, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    trainer = Trainer(model=fresh_model(cfg, tok), args=targs, train_dataset=Rows(),
                      data_collator=lambda items: {k: v for k, v in collate(items, tok.pad_token_id).items()})
    # Trainer shuffles with its own sampler; our rows are already in plan order, so keep them
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(Rows())
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    return train_cfg.steps / seconds, result.training_loss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--model", choices=["default", "quick"], default="default")
    ap.add_argument("--out", help="where to write the JSON (default: benchmarks/results/engine.json)")
    ap.add_argument("--smoke", action="store_true", help="2 steps of the quick model, JSON to a temporary file")
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.model = 2, "quick"
    args.out = smoke_out(args.out, args.smoke, "engine.json")
    dist = setup_env()
    cfg, tok, pool = setup(args)
    # warm-up: DeepSpeed's first use JIT-builds an op; keep that out of the timings
    warm = load_config(ExperimentConfig, [], [f"inject.train.steps={1 if args.smoke else 3}",
                                              "inject.train.log_every=1000000"])
    warm.model = cfg.model
    bench_mlu(warm, tok, pool, dist, "deepspeed")
    results = {}
    for name, fn in (("bare_torch", lambda: bench_bare(cfg, tok, pool)),
                     ("mlu_deepspeed", lambda: bench_mlu(cfg, tok, pool, dist, "deepspeed")),
                     ("hf_trainer_deepspeed", lambda: bench_hf_trainer(cfg, tok, pool, dist))):
        sps, loss = fn()
        results[name] = {"steps_per_s": round(sps, 3), "final_loss": round(float(loss), 4)}
        print(f"{name:<22} {sps:7.2f} steps/s  (loss {loss:.3f})", flush=True)
    ratios = {"mlu_vs_bare": results["mlu_deepspeed"]["steps_per_s"] / results["bare_torch"]["steps_per_s"],
              "mlu_vs_hf_trainer": results["mlu_deepspeed"]["steps_per_s"] / results["hf_trainer_deepspeed"]["steps_per_s"]}
    print(f"P2 mlu engine / bare torch loop : {ratios['mlu_vs_bare']:.2f}x  (goal >= 0.9x)")
    print(f"P2 mlu engine / HF Trainer + DS : {ratios['mlu_vs_hf_trainer']:.2f}x  (goal >= 1.0x)")
    n_params = sum(p.numel() for p in fresh_model(cfg, tok).parameters())
    record = {"benchmark": "P2", "model": args.model, "n_params": n_params, "steps": args.steps,
              "micro_batch_size": cfg.inject.train.micro_batch_size, "results": results,
              "ratios": {k: round(v, 3) for k, v in ratios.items()}, "torch_threads": torch.get_num_threads()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    from mlu_dist.engine.dist import shutdown

    shutdown()


if __name__ == "__main__":
    main()
