"""P1 at scale: `mlu eval` under ZeRO-3 at 2 ranks, partitioned forwards vs a full model copy per rank.

Partitioned = every forward (every generated token) all-gathers the weights, and ranks must step
together; full = each rank holds the whole model and evaluates its share of the probes alone,
meeting the others only to gather results (what `eval.model_copy=auto` picks when the model fits).
The same probes, the same quick injected model; the script checks that the values are identical
(greedy decisions) or equal to 1e-5 (log-probs), then prints the time ratio and writes
benchmarks/results/eval_zero3.json. Timings include each command's start-up (~10 s).

    .venv/bin/python benchmarks/bench_eval_zero3.py [--run runs/inject/<run>]

``--smoke`` makes the smallest injection (benchmarks/smoke.py) unless ``--run`` is given, generates
4 tokens per answer and writes to a temporary file (or ``--out``): it checks that the script still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from smoke import SMOKE_INJECTION, SMOKE_NEW_TOKENS, smoke_out  # noqa: E402


def mlu(*args) -> tuple[float, float | None]:
    """(wall seconds of the command, seconds the evaluation itself reported)"""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mlu_dist.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    if proc.returncode:
        sys.exit(proc.stdout[-2000:] + proc.stderr[-4000:])
    inner = re.search(r"eval: metrics computed in ([0-9.]+) s", proc.stdout)
    return time.perf_counter() - start, float(inner.group(1)) if inner else None


def close(a: dict, b: dict) -> bool:
    for name in a:
        for lang in a[name]:
            for fid, v in a[name][lang].items():
                if abs(v - b[name][lang][fid]) > (1e-5 if name in ("fake_pref", "utility_nll") else 0):
                    return False
    return a.keys() == b.keys()


def curves(run: Path, tmp: Path) -> dict:
    """Seconds of the curve evaluations of the same short NPO run (4 steps, a point every 2) per mode."""
    out = {}
    for mode in ("partitioned", "full"):
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
        env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
        proc = subprocess.run([sys.executable, "-m", "mlu_dist.cli", "unlearn", "--from", str(run), "-c", "methods/npo",
                               "-c", "deepspeed/zero3", "--nproc", "2", "unlearn.train.steps=4",
                               "unlearn.train.eval_every=2", f"eval.model_copy={mode}", f"run.out_dir={tmp}",
                               f"run.name=curves-{mode}"], capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode:
            sys.exit(proc.stdout[-2000:] + proc.stderr[-4000:])
        found = re.search(r"unlearn: curves: (\d+) evaluation\(s\) in ([0-9.]+) s", proc.stdout)
        out[mode] = {"points": int(found.group(1)), "seconds": float(found.group(2))}
    ratio = out["partitioned"]["seconds"] / out["full"]["seconds"]
    print(f"unlearning curves, ZeRO-3, 2 ranks: {out['partitioned']['points']} points in "
          f"{out['partitioned']['seconds']:.1f} s partitioned vs {out['full']['seconds']:.1f} s gathered once per "
          f"point -> {ratio:.2f}x")
    return out | {"speedup": round(ratio, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="an injection run (default: a quick one made here)")
    ap.add_argument("--curves", action="store_true",
                    help="also time the forgetting curves of a 2-rank ZeRO-3 unlearning run in both modes")
    ap.add_argument("--out", help="where to write the JSON (default: benchmarks/results/eval_zero3.json)")
    ap.add_argument("--smoke", action="store_true", help="the smallest injection, 4-token answers, JSON to a temp file")
    args = ap.parse_args()
    args.out = smoke_out(args.out, args.smoke, "eval_zero3.json")
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-z3-"))
    run = Path(args.run) if args.run else None
    if run is None:
        mlu("inject", "-c", "experiments/quick", f"run.out_dir={tmp}", "run.name=de", "inject.train.eval_every=0",
            "tracking.wandb=false", *(SMOKE_INJECTION if args.smoke else []))
        run = tmp / "inject" / "de"
    small = [f"eval.max_new_tokens={SMOKE_NEW_TOKENS}", "eval.n_boot=10"] if args.smoke else []
    times, inner, values = {}, {}, {}
    for mode in ("partitioned", "full"):
        out = tmp / mode
        times[mode], inner[mode] = mlu("eval", str(run), "--out", str(out), "-c", "deepspeed/zero3", "--nproc", "2",
                                       f"eval.model_copy={mode}", *small)
        values[mode] = json.loads((out / "EVAL.json").read_text())["values"]
    same = close(values["partitioned"], values["full"])
    ratio = times["partitioned"] / times["full"]
    eval_ratio = inner["partitioned"] / inner["full"]
    print(f"mlu eval, ZeRO-3, 2 ranks: evaluation {inner['partitioned']:.1f} s partitioned vs {inner['full']:.1f} s "
          f"with a full copy per rank -> {eval_ratio:.2f}x; whole command {times['partitioned']:.1f} s vs "
          f"{times['full']:.1f} s -> {ratio:.2f}x; values identical: {same}")
    result = {"eval_partitioned_s": inner["partitioned"], "eval_full_s": inner["full"], "eval_speedup": round(eval_ratio, 2),
              "command_partitioned_s": round(times["partitioned"], 2), "command_full_s": round(times["full"], 2),
              "command_speedup": round(ratio, 2), "identical": same, "run": str(run)}
    if args.curves:
        result["curves"] = curves(run, tmp)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    if not same:
        sys.exit("values differ")


if __name__ == "__main__":
    main()
