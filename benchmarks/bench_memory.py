"""P3: per-rank bytes of parameters + gradients + optimizer state, ZeRO-0 vs ZeRO-3, 2 ranks.

Launches itself on 2 gloo ranks (torchrun). Each rank builds the same model, takes two optimizer
steps, and after the second backward (gradients alive, before the step frees them) counts the
bytes of every distinct tensor storage reachable from the model's parameters (data, ZeRO shard,
gradient) and from the optimizer (states, flat fp32 partitions, gradient buffers). Prints the
ratio and writes benchmarks/results/memory.json.

    .venv/bin/python benchmarks/bench_memory.py [--hidden 256 --layers 4]

``--smoke`` measures a 1-layer, 32-wide model in fp32 and writes to a temporary file (or ``--out``):
it checks that the script still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from smoke import smoke_out  # noqa: E402


def reachable_bytes(model, optimizer) -> int:
    import torch

    seen: set[int] = set()
    total = 0

    def add(t):
        nonlocal total
        if not torch.is_tensor(t):
            return
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key and key not in seen:
            seen.add(key)
            total += storage.nbytes()

    def walk(obj, depth, visited):
        if depth > 5 or id(obj) in visited:
            return
        visited.add(id(obj))
        if torch.is_tensor(obj):
            add(obj)
            if obj.grad is not None:
                add(obj.grad)
            return
        if isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1, visited)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, depth + 1, visited)
        elif isinstance(obj, torch.optim.Optimizer) or type(obj).__module__.startswith("deepspeed"):
            for v in vars(obj).values():
                walk(v, depth + 1, visited)

    for p in model.parameters():
        add(p.data)
        if p.grad is not None:
            add(p.grad)
        if hasattr(p, "ds_tensor"):
            add(p.ds_tensor)
    walk(optimizer, 0, set())
    return total


def measure(stage: int, dtype_name: str, args) -> dict:
    import torch

    from mlu_dist.engine.config import ZeroConfig
    from mlu_dist.train_config import TrainConfig
    from mlu_dist.engine.deepspeed_engine import DeepSpeedEngine
    from mlu_dist.engine.dist import setup_env
    from mlu_dist.modeling import ModelConfig, build_tiny_model

    dist = setup_env()

    class Tok:  # build_tiny_model needs only these
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

        def __len__(self):
            return args.vocab

    mcfg = ModelConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 3,
                       num_layers=args.layers, num_heads=4)
    dtype = getattr(torch, dtype_name)
    model = build_tiny_model(mcfg, Tok(), seed=0).to(dtype)
    n_params = sum(p.numel() for p in model.parameters())
    tcfg = TrainConfig(steps=2, micro_batch_size=4, lr=1e-3, warmup_steps=0)
    engine = DeepSpeedEngine(model, tcfg, ZeroConfig(stage=stage), dist, dtype)
    gen = torch.Generator().manual_seed(dist.rank)
    measured = 0
    for _ in range(2):
        ids = torch.randint(3, args.vocab, (4, 32), generator=gen)
        loss = engine.forward(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        measured = reachable_bytes(engine.module, engine.optimizer)
        engine.step()
    engine.close()
    return {"stage": stage, "dtype": dtype_name, "rank": dist.rank, "n_params": n_params, "bytes": measured,
            "bytes_per_param": measured / n_params}


def worker(args):
    import torch

    record = {"benchmark": "P3", "world_size": 2, "ratios": {}, "per_rank": {}}
    for dtype in args.dtypes.split(","):
        by_stage = {stage: measure(stage, dtype, args) for stage in (0, 3)}
        ratio = by_stage[3]["bytes"] / by_stage[0]["bytes"]
        record["ratios"][dtype] = round(ratio, 4)
        record["per_rank"][dtype] = by_stage
        record["n_params"] = by_stage[0]["n_params"]
        if int(os.environ["RANK"]) == 0:
            print(f"{dtype}: model {by_stage[0]['n_params'] / 1e6:.2f}M params, 2 ranks (gloo), AdamW")
            for s in (0, 3):
                r = by_stage[s]
                print(f"  ZeRO-{s}: {r['bytes'] / 2**20:8.1f} MiB per rank ({r['bytes_per_param']:.1f} bytes/param)")
            print(f"  P3 ZeRO-3 / ZeRO-0 per-rank bytes ({dtype}): {ratio:.3f}x  (goal <= 0.55x)", flush=True)
    if int(os.environ["RANK"]) == 0:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--dtypes", default="float32,bfloat16", help="parameter dtypes to measure (comma list)")
    ap.add_argument("--out", help="where to write the JSON (default: benchmarks/results/memory.json)")
    ap.add_argument("--smoke", action="store_true", help="a 1-layer, 32-wide model in fp32, JSON to a temp file")
    args, _ = ap.parse_known_args()
    if args.smoke:
        args.hidden, args.layers, args.vocab, args.dtypes = 32, 1, 256, "float32"
    if "RANK" not in os.environ:
        env = os.environ | {"DS_ACCELERATOR": "cpu", "PYTHONPATH": str(ROOT)}
        port = free_port() if args.smoke else 29517  # a smoke run may share the machine with other tests
        out = smoke_out(args.out, args.smoke, "memory.json")  # chosen once: the ranks must agree
        sys.exit(subprocess.call([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                                  f"--master_port={port}", __file__, *sys.argv[1:], "--out", out], env=env))
    worker(args)


if __name__ == "__main__":
    main()
