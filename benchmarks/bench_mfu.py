"""P5: tokens/s and model-FLOPs utilisation of a training step of the Llama-3.1-8B architecture.

The model is built from the architecture's public config with random weights (nothing is
downloaded) in bf16, wrapped by mlu_dist's own DeepSpeed engine, and trained on random token
batches; the first steps are warm-up, the rest are timed. Two settings:

- ``lora``: the paper's adapters (r=2048, alpha=64 on q/k/v) under ZeRO-2;
- ``full``: full fine-tuning under ZeRO-3 with optimizer offload (one GPU cannot hold 8B x 16
  bytes of training state; ``--layers`` shortens the model if CPU RAM is short).

Model FLOPs per token (PaLM's accounting): 6 N + 12 L h s for full fine-tuning; with LoRA the
frozen base costs 4 N (forward + activation gradients), the adapters 6 N_lora. MFU = FLOPs/s
over the GPU's dense bf16 peak (``--peak-tflops``, H100 SXM: 989). The goal is >= 40 %
(torchtitan reports 33-39 % for Llama-3.1-8B on H100 with FSDP).

    python benchmarks/bench_mfu.py --setting lora [--steps 20 --seq 1024 --batch 2]
    python benchmarks/bench_mfu.py --tiny        # a few-layer model on CPU: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LLAMA_8B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                intermediate_size=14336, vocab_size=128256, rope_theta=500000.0, tie_word_embeddings=False,
                max_position_embeddings=8192)
TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=256, vocab_size=1024, tie_word_embeddings=False, max_position_embeddings=512)


def build(args, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    arch = dict(TINY if args.tiny else LLAMA_8B)
    if args.layers:
        arch["num_hidden_layers"] = args.layers
    config = LlamaConfig(**arch, attn_implementation="sdpa")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    with torch.device(device if args.setting == "lora" else "cpu"):  # ZeRO-3 partitions from the CPU copy
        torch.set_default_dtype(dtype)
        model = LlamaForCausalLM(config)
        torch.set_default_dtype(torch.float32)
    return model, config, dtype


def flops_per_token(config, n_params: int, n_lora: int, seq: int) -> float:
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq
    return (4 * n_params + 6 * n_lora if n_lora else 6 * n_params) + attention


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--setting", choices=("lora", "full"), default="lora")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--layers", type=int, default=0, help="fewer decoder layers (0 = the architecture's)")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--tiny", action="store_true", help="a tiny model on CPU (checks the script, not speed)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from mlu_dist.engine.config import ZeroConfig
    from mlu_dist.engine.deepspeed_engine import DeepSpeedEngine
    from mlu_dist.engine.dist import setup_env
    from mlu_dist.jobs.model import apply_lora
    from mlu_dist.train_config import LoraConfig, TrainConfig

    dist = setup_env()
    if dist.device_type != "cuda" and not args.tiny:
        sys.exit("bench_mfu needs a CUDA GPU (or --tiny to check the script on CPU)")
    model, config, dtype = build(args, "cuda" if dist.device_type == "cuda" else "cpu")
    n_params = sum(p.numel() for p in model.parameters())
    lora = LoraConfig(enabled=args.setting == "lora", r=8 if args.tiny else 2048, alpha=64,
                      targets=["q_proj", "k_proj", "v_proj"])
    train = TrainConfig(steps=args.steps + args.warmup, micro_batch_size=args.batch, lr=2e-4, warmup_steps=0,
                        schedule="constant", lora=lora)
    model = apply_lora(model, train, "inject")
    n_lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) if lora.enabled else 0
    zero = ZeroConfig(stage=2) if lora.enabled else ZeroConfig(stage=3, offload="optimizer")
    engine = DeepSpeedEngine(model, train, zero, dist, dtype)
    gen = torch.Generator().manual_seed(0)
    timed_tokens, start = 0, None
    for step in range(args.steps + args.warmup):
        if step == args.warmup:
            if dist.device_type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        ids = torch.randint(0, config.vocab_size, (args.batch, args.seq), generator=gen)
        out = engine.forward(input_ids=ids, labels=ids)
        engine.backward(out.loss)
        engine.step()
        if step >= args.warmup:
            timed_tokens += ids.numel()
    if dist.device_type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tps = timed_tokens / seconds
    achieved = flops_per_token(config, n_params, n_lora, args.seq) * tps
    mfu = achieved / (args.peak_tflops * 1e12)
    peak_mem = torch.cuda.max_memory_allocated() / 1e9 if dist.device_type == "cuda" else None
    result = {"setting": args.setting, "zero": zero.stage, "offload": zero.offload, "params": n_params,
              "lora_params": n_lora, "layers": config.num_hidden_layers, "seq": args.seq, "batch": args.batch,
              "tokens_per_s": round(tps, 1), "tflops": round(achieved / 1e12, 1), "mfu": round(mfu, 4),
              "peak_mem_gb": peak_mem, "device": torch.cuda.get_device_name() if dist.device_type == "cuda" else "cpu"}
    print(json.dumps(result, indent=1))
    if not args.tiny:
        out = ROOT / "benchmarks" / "results" / f"mfu_{args.setting}.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
    engine.close()


if __name__ == "__main__":
    main()
