"""Partitioned loading under ZeRO-3: peak RSS per rank, whole copy per rank vs built partitioned.

Saves a randomly initialised Llama-architecture model (no weights can be downloaded here), then
launches itself on 2 gloo ranks (torchrun) twice per size: ``model.partitioned_load=never`` (every
rank loads the whole checkpoint, then DeepSpeed partitions it) and ``always`` (transformers builds
the model under zero.Init: rank 0 reads the checkpoint, every rank keeps its shard). Each rank
reports its peak RSS (ru_maxrss) before loading, after loading and after the ZeRO-3 engine is
built, and the parameter elements it holds. Prints the table and writes
benchmarks/results/partitioned_load.json.

    .venv/bin/python benchmarks/bench_partitioned_load.py [--sizes small,large]

``--smoke`` loads a 2-layer, 64-wide model (size ``tiny``) and writes to a temporary file (or
``--out``): it checks that the script still runs, not the memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from smoke import smoke_out  # noqa: E402

SIZES = {  # hidden, layers, intermediate, heads, vocab
    "small": (640, 12, 1792, 10, 32000),   # ~81 M parameters, 0.33 GB in fp32
    "large": (1024, 24, 2816, 16, 32000),  # ~341 M parameters, 1.36 GB in fp32
    "tiny": (64, 2, 192, 4, 1024),         # ~0.2 M parameters: --smoke
}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_now() -> dict:
    """This process's resident memory now, in MB: anonymous, file-backed (page cache shared by every
    process that maps the same checkpoint) and Pss (shared pages split between their users)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    out = {k: int(status[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile")}
    rollup = Path("/proc/self/smaps_rollup").read_text().splitlines()
    out["Pss"] = next(int(line.split()[1]) / 1024 for line in rollup if line.startswith("Pss:"))
    return out


def save_model(size: str, out: Path) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    hidden, layers, inter, heads, vocab = SIZES[size]
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, tie_word_embeddings=True,
                         max_position_embeddings=256)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out), safe_serialization=True)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2},
                                                                              unk_token="<unk>")),
                                  unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>")
    tok.save_pretrained(str(out))
    return sum(p.numel() for p in model.parameters())


def worker(model_dir: str, mode: str) -> None:
    from mlu_dist.config import load_config
    from mlu_dist.engine.deepspeed_engine import _init_comm, local_param_numel
    from mlu_dist.engine.dist import setup_env, shutdown
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.jobs.common import make_engine
    from mlu_dist.jobs.model import pretrained

    dist = setup_env()
    cfg = load_config(ExperimentConfig, [], ["engine.zero.stage=3", f"model.partitioned_load={mode}",
                                             f"model.name_or_path={model_dir}", "inject.train.micro_batch_size=1"])
    _init_comm(dist)  # the same process group in both modes before the baseline
    before = peak_mb()
    model, _ = pretrained(model_dir, cfg, "inject", dist)
    after_load, held, now_load = peak_mb(), local_param_numel(model), memory_now()
    engine = make_engine(model, cfg.inject.train, cfg.engine, dist, "inject")
    after_engine, now_engine = peak_mb(), memory_now()
    row = {"rank": dist.rank, "mode": mode, "before_mb": before, "after_load_mb": after_load,
           "after_engine_mb": after_engine, "params_held": held, "now_after_load": now_load,
           "now_after_engine": now_engine}
    print("ROW " + json.dumps(row), flush=True)
    engine.close()
    shutdown()


def run_mode(model_dir: Path, mode: str) -> list[dict]:
    from mlu_dist.engine.dist import free_port

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           __file__, "--worker", str(model_dir), mode]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    # the ranks share one stdout: two rows can land on one line, so read each object where it starts
    decoder = json.JSONDecoder()
    rows = [decoder.raw_decode(proc.stdout, m.end())[0] for m in re.finditer(r"ROW (?=\{)", proc.stdout)]
    return sorted(rows, key=lambda r: r["rank"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,large")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", help="where to write the JSON (default: benchmarks/results/partitioned_load.json)")
    parser.add_argument("--smoke", action="store_true", help="the tiny size only, JSON to a temp file")
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if args.smoke:
        args.sizes = "tiny"
    results = []
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            n = save_model(size, Path(tmp) / "model")
            ckpt = sum(f.stat().st_size for f in (Path(tmp) / "model").glob("*.safetensors"))
            for mode in ("never", "always"):
                for r in run_mode(Path(tmp) / "model", mode):
                    results.append({"size": size, "params": n, "checkpoint_mb": ckpt / 2**20} | r)
    print("peak: growth of ru_maxrss over the process before loading; anon/file/pss: resident MB after loading")
    print(f"{'size':<6} {'params':>7} {'ckpt MB':>8} {'mode':<7} {'rank':>4} {'held M':>7} {'load +MB':>9} "
          f"{'engine +MB':>10} {'peak MB':>8} {'anon':>6} {'file':>6} {'pss':>6}")
    for r in results:
        now = r["now_after_load"]
        print(f"{r['size']:<6} {r['params'] / 1e6:>6.1f}M {r['checkpoint_mb']:>8.0f} {r['mode']:<7} {r['rank']:>4} "
              f"{r['params_held'] / 1e6:>7.1f} {r['after_load_mb'] - r['before_mb']:>9.0f} "
              f"{r['after_engine_mb'] - r['before_mb']:>10.0f} {r['after_engine_mb']:>8.0f} {now['RssAnon']:>6.0f} "
              f"{now['RssFile']:>6.0f} {now['Pss']:>6.0f}")
    by = {(r["size"], r["mode"], r["rank"]): r for r in results}
    for size in args.sizes.split(","):
        for rank in (0, 1):
            whole, part = by[(size, "never", rank)], by[(size, "always", rank)]
            grow = lambda r: r["after_engine_mb"] - r["before_mb"]  # noqa: E731
            print(f"{size} rank {rank}: peak growth partitioned / whole = {grow(part):.0f} / {grow(whole):.0f} MB "
                  f"= {grow(part) / grow(whole):.2f}x")
    out = Path(smoke_out(args.out, args.smoke, "partitioned_load.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
