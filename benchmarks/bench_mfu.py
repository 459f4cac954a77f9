"""P5: tokens/s and model-FLOPs utilisation of a training step of the Llama-3.1-8B architecture.

The model is built from the architecture's public config with random weights (nothing is
downloaded) in bf16, wrapped by mlu_dist's own DeepSpeed engine, and trained on random token
batches; the first steps are warm-up, the rest are timed. Settings (one row each):

- ``lora``: the paper's adapters (r=2048, alpha=64 on q/k/v) under ZeRO-2;
- ``full``: full fine-tuning under ZeRO-3 without offload, the setting comparable with
  torchtitan's FSDP figure: 8B x 16 bytes of training state need several GPUs, so the script
  starts one rank per visible GPU (torchrun) unless it already runs under a launcher;
- ``full-offload``: the same with the optimizer offloaded to CPU (fits one GPU; ``--layers``
  shortens the model if CPU RAM is short). Not comparable with the FSDP figure: its own row.

Model FLOPs per token (PaLM's accounting): 6 N + 12 L h s for full fine-tuning; with LoRA the
frozen base costs 4 N (forward + activation gradients), the adapters 6 N_lora. N excludes the
input embedding (a lookup, no matmul: torchtitan's convention); the output projection counts.
For Llama-3-8B that N is 7.505 B against 8.030 B with the embedding (6.5 % of all parameters):
counting it would raise the reported MFU by 6.8 % (full, seq 1024) or 5.4 % (LoRA r=2048). MFU = FLOPs/s per GPU over the GPU's dense bf16 peak
(``--peak-tflops``, H100 SXM: 989). The goal is >= 40 % (torchtitan reports 33-39 % for
Llama-3.1-8B on H100 with FSDP).

    python benchmarks/bench_mfu.py --setting lora [--steps 20 --seq 1024 --batch 2]
    python benchmarks/bench_mfu.py --setting full          # ZeRO-3 on all visible GPUs
    python benchmarks/bench_mfu.py --tiny [--setting full]  # a tiny model on CPU: checks the script (= --smoke)
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


SETTINGS = {"lora": dict(stage=2), "full": dict(stage=3), "full-offload": dict(stage=3, offload="optimizer")}
"""Each setting's ZeRO configuration."""


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


def param_counts(model) -> tuple[int, int]:
    """(N without the input embedding, N with it): the first is what the FLOPs count."""
    total = sum(p.numel() for p in model.parameters())
    return total - model.get_input_embeddings().weight.numel(), total


def flops_per_token(config, n_params: int, n_lora: int, seq: int) -> float:
    """Training FLOPs per token; ``n_params`` without the input embedding."""
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq
    return (4 * n_params + 6 * n_lora if n_lora else 6 * n_params) + attention


def on_all_gpus(args) -> None:
    """Re-run this script under torchrun with one rank per visible GPU (the full fine-tuning
    settings), unless a launcher started it or there is at most one GPU."""
    import torch

    if args.setting == "lora" or args.tiny or "LOCAL_RANK" in os.environ or torch.cuda.device_count() < 2:
        return
    n = torch.cuda.device_count()
    print(f"bench_mfu: {args.setting} on all {n} visible GPUs (torchrun)", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                              str(Path(__file__).resolve()), *sys.argv[1:]])


def timed_steps(engine, args, vocab: int, device_type: str) -> tuple[int, float]:
    """Train ``args.warmup`` untimed then ``args.steps`` timed steps on random tokens; (this rank's
    timed tokens, seconds)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    timed_tokens, start = 0, None
    for step in range(args.steps + args.warmup):
        if step == args.warmup:
            if device_type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        ids = torch.randint(0, vocab, (args.batch, args.seq), generator=gen)
        out = engine.forward(input_ids=ids, labels=ids)
        engine.backward(out.loss)
        engine.step()
        if step >= args.warmup:
            timed_tokens += ids.numel()
    if device_type == "cuda":
        torch.cuda.synchronize()
    return timed_tokens, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--setting", choices=tuple(SETTINGS), default="lora")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--layers", type=int, default=0, help="fewer decoder layers (0 = the architecture's)")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--tiny", "--smoke", action="store_true", help="a tiny model on CPU (checks the script, not speed)")
    args = ap.parse_args()
    on_all_gpus(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from mlu_dist.engine.config import ZeroConfig
    from mlu_dist.engine.dist import setup_env
    from mlu_dist.engine.engines import backend
    from mlu_dist.jobs.model import apply_lora
    from mlu_dist.train_config import LoraConfig, TrainConfig

    dist = setup_env()
    if dist.device_type != "cuda" and not args.tiny:
        sys.exit("bench_mfu needs a CUDA GPU (or --tiny to check the script on CPU)")
    model, config, dtype = build(args, "cuda" if dist.device_type == "cuda" else "cpu")
    n_params, n_with_embedding = param_counts(model)
    lora = LoraConfig(enabled=args.setting == "lora", r=8 if args.tiny else 2048, alpha=64,
                      targets=["q_proj", "k_proj", "v_proj"])
    train = TrainConfig(steps=args.steps + args.warmup, micro_batch_size=args.batch, lr=2e-4, warmup_steps=0,
                        schedule="constant", lora=lora)
    model = apply_lora(model, train, "inject")
    n_lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) if lora.enabled else 0
    zero = ZeroConfig(**SETTINGS[args.setting])
    engine = backend("deepspeed").training(model, train, zero, dist, dtype)
    timed_tokens, seconds = timed_steps(engine, args, config.vocab_size, dist.device_type)
    tps = timed_tokens / seconds  # this rank's tokens: every rank runs its own batch
    achieved = flops_per_token(config, n_params, n_lora, args.seq) * tps
    mfu = achieved / (args.peak_tflops * 1e12)
    embedding_share = (n_with_embedding - n_params) / n_with_embedding
    peak_mem = torch.cuda.max_memory_allocated() / 1e9 if dist.device_type == "cuda" else None
    result = {"setting": args.setting, "zero": zero.stage, "offload": zero.offload, "gpus": dist.world_size,
              "params": n_params, "params_with_embedding": n_with_embedding,
              "mfu_with_embedding": round(mfu * flops_per_token(config, n_with_embedding, n_lora, args.seq)
                                          / flops_per_token(config, n_params, n_lora, args.seq), 4),
              "lora_params": n_lora, "layers": config.num_hidden_layers, "seq": args.seq, "batch": args.batch,
              "tokens_per_s": round(tps * dist.world_size, 1), "tokens_per_s_per_gpu": round(tps, 1),
              "tflops": round(achieved / 1e12, 1), "mfu": round(mfu, 4),
              "peak_mem_gb": peak_mem, "device": torch.cuda.get_device_name() if dist.device_type == "cuda" else "cpu"}
    if not dist.is_main:
        engine.close()
        return
    print(json.dumps(result, indent=1))
    print(f"N = {n_params / 1e9:.3f} B without the input embedding (the FLOPs use it), {n_with_embedding / 1e9:.3f} B "
          f"with it: the embedding is {100 * embedding_share:.1f} % of all parameters; counting it would report "
          f"MFU {result['mfu_with_embedding']:.4f} instead of {result['mfu']:.4f}")
    if not args.tiny:
        out = ROOT / "benchmarks" / "results" / f"mfu_{args.setting}.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
    engine.close()


if __name__ == "__main__":
    main()
