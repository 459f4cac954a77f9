"""The fault matrix: every fault a cluster throws at a run, N trials each, and what came of it.

Each trial runs the quick base training (`mlu base`, 30 steps, a checkpoint every 5, a metric row
every step) in its own directory, injects one fault, runs the same command again, and compares the
run with an uninterrupted one:

  recovered   the rerun finished (or the fault was refused with a clear error and nothing lost)
  lost        steps computed again after the fault (fault step - resumed step)
  duplicated  steps logged twice in metrics.jsonl
  deviation   max |loss - uninterrupted loss| over all steps (0 where the engine is deterministic)

Faults: kill one rank of a 2-rank ZeRO-3 run (DeepSpeed), SIGTERM (preemption), SIGKILL, SIGKILL
during a save, a truncated checkpoint shard, a dangling checkpoints/LATEST, a full disk (a small
tmpfs, mounted only when root), a torn metrics.jsonl line, two launchers on one sweep, and a W&B
outage (a well-formed key, a server that does not answer). Prints the table and writes
benchmarks/results/faults.json.

    .venv/bin/python benchmarks/faults.py [--trials 3] [--only sigterm,torn_jsonl]

``--smoke`` runs one trial of the torn metrics line (single-process, no timing races) on a 12-step
run with a checkpoint every 3, and writes to a temporary file (or ``--out``): it checks that the script still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from smoke import smoke_out  # noqa: E402



def base_args(steps: int, save_every: int) -> list[str]:
    return ["base", "-c", "experiments/quick", "engine.backend=torch", f"base.steps={steps}",
            f"base.save_every={save_every}", "base.log_every=1", "data.langs=[en,de,ha]", "tracking.wandb=false",
            "base.warmup_steps=2"]


# the trial run's length; --smoke shortens it (rebinding these once, before any trial)
STEPS, SAVE_EVERY = 30, 5
BASE = base_args(STEPS, SAVE_EVERY)
DS = ["engine.backend=deepspeed", "-c", "deepspeed/zero3", "--nproc", "2"]


def env(**extra) -> dict:
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "WANDB_SERVICE")
    out = {k: v for k, v in os.environ.items() if k not in drop}
    return out | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "DS_ACCELERATOR": "cpu",
                  "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)} | extra


def mlu(*args) -> list[str]:
    return [sys.executable, "-m", "mlu_dist.cli", *args]


def run(args, out: Path, timeout=600, **env_extra) -> subprocess.CompletedProcess:
    return subprocess.run(mlu(*args, f"run.out_dir={out}"), capture_output=True, text=True, env=env(**env_extra),
                          timeout=timeout, cwd=ROOT)


def run_dir(out: Path) -> Path:
    return next((out / "base").iterdir())


def rows(out: Path) -> list[dict]:
    from mlu_dist.tracking import read_jsonl

    return [r for r in read_jsonl(run_dir(out) / "metrics.jsonl") if "train/loss" in r]


def start(args, out: Path, **env_extra) -> subprocess.Popen:
    return subprocess.Popen(mlu(*args, f"run.out_dir={out}"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env(**env_extra), cwd=ROOT, start_new_session=True)


def wait_for_step(proc, out: Path, step: int, timeout=300) -> int:
    """Block until the run logged ``step`` (or ended); returns the last logged step."""
    deadline = time.time() + timeout
    last = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            last = max((r["step"] for r in rows(out)), default=0)
        except (StopIteration, FileNotFoundError, ValueError):
            last = 0
        if last >= step:
            return last
        time.sleep(0.05)
    return last


def compare(out: Path, reference: dict[int, float], fault_step: int, resumed: int | None) -> dict:
    logged = [r["step"] for r in rows(out)]
    loss = {r["step"]: r["train/loss"] for r in rows(out)}
    done = (run_dir(out) / "DONE.json").exists()
    return {"recovered": done and sorted(set(logged)) == list(range(1, STEPS + 1)),
            "lost": max(0, fault_step - resumed) if resumed is not None else fault_step,
            "duplicated": len(logged) - len(set(logged)),
            "deviation": max((abs(loss[s] - reference[s]) for s in reference if s in loss), default=float("nan"))}


def resumed_step(text: str) -> int:
    import re

    found = re.findall(r"resumed from \S+ \(step (\d+)\)", text)
    return int(found[-1]) if found else 0


def rerun(args, out: Path, reference, fault_step: int) -> dict:
    proc = run(args, out)
    return compare(out, reference, fault_step, resumed_step(proc.stdout)) | {"rc": proc.returncode}


# --- the faults: each returns the trial's row -----------------------------------------------------
def signal_mid_run(sig, reference=None):
    def trial(out: Path, rng: random.Random) -> dict:
        at = rng.randint(3, STEPS - 3)
        args = BASE
        proc = start(args, out)
        step = wait_for_step(proc, out, at)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=120)
        return rerun(args, out, reference(), step)
    return trial


def kill_a_rank(out: Path, rng: random.Random) -> dict:
    args = BASE + DS
    at = rng.randint(3, STEPS - 3)
    proc = start(args, out)
    step = wait_for_step(proc, out, at, timeout=600)
    workers = subprocess.run(["pgrep", "-f", f"run.out_dir={out}"], capture_output=True, text=True).stdout.split()
    children = [int(p) for p in workers if int(p) != proc.pid]
    victim = max(children)  # the last-started process: a rank, not the launcher
    t0 = time.time()
    os.kill(victim, signal.SIGKILL)
    proc.wait(timeout=300)
    ended = round(time.time() - t0, 1)
    return rerun(args, out, REFS["ds"], step) | {"note": f"the job ended {ended} s after the kill"}


def sigkill_during_save(out: Path, rng: random.Random) -> dict:
    args = [a if a != f"base.save_every={SAVE_EVERY}" else "base.save_every=1" for a in BASE]
    proc = start(args, out)
    wait_for_step(proc, out, rng.randint(3, STEPS - 3))
    ckpts = run_dir(out) / "checkpoints"
    deadline = time.time() + 30
    while time.time() < deadline:  # kill while a step directory has no COMPLETE yet
        if any(not (p / "COMPLETE").exists() for p in ckpts.glob("step_*")):
            break
        time.sleep(0.001)
    step = max((r["step"] for r in rows(out)), default=0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return rerun(args, out, REFS["torch"], step)


def stopped_then(damage):
    def trial(out: Path, rng: random.Random) -> dict:
        at = rng.choice(range(2 * SAVE_EVERY, STEPS - 2, SAVE_EVERY))
        run(BASE + [f"base.stop_after={at}"], out)
        damage(run_dir(out) / "checkpoints", run_dir(out))
        return rerun(BASE, out, REFS["torch"], at)
    return trial


def truncate_shard(ckpts: Path, _run: Path) -> None:
    newest = sorted(ckpts.glob("step_*"))[-1]
    biggest = max((f for f in newest.rglob("*") if f.is_file() and f.name != "COMPLETE"), key=lambda f: f.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])


def dangle_latest(ckpts: Path, _run: Path) -> None:
    (ckpts / "LATEST").write_text("step_999999\n")


def tear_jsonl(_ckpts: Path, run: Path) -> None:
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 99, "train/lo')


def disk_full(out: Path, rng: random.Random) -> dict:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return {"skipped": "needs root to mount a tmpfs"}
    mnt = out / "small"
    mnt.mkdir(parents=True)
    size_kb = 6000 + rng.randint(0, 2000)  # room for a few checkpoints of the quick model, not all
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mnt)]).returncode:
        return {"skipped": "mount -t tmpfs failed"}
    try:
        proc = run(BASE + ["base.keep_checkpoints=50"], mnt)
        text = proc.stdout + proc.stderr
        refused = proc.returncode == 2 and "GB free at" in text and "Traceback" not in text
        skipped = text.count("skipping the checkpoint at step")
        if proc.returncode == 0:
            return compare(mnt, REFS["torch"], 0, 0) | {"note": f"fit ({skipped} periodic saves skipped)"}
        moved = out / "moved"
        shutil.copytree(mnt, moved)  # the user frees space: here, the run moves to a larger disk
        row = rerun(BASE + ["base.keep_checkpoints=50"], moved, REFS["torch"], STEPS)
        return row | {"recovered": refused and row["recovered"], "note": f"refused clearly: {refused}, "
                                                                          f"{skipped} periodic saves skipped"}
    finally:
        subprocess.run(["umount", str(mnt)])


def two_launchers(out: Path, rng: random.Random) -> dict:
    spec = ["sweep", str(ROOT / "configs" / "sweeps" / "test.yaml"), f"out_dir={out}", "name=twice", "executor=debug",
            "axes.inject_langs=[de]", "axes.forget_langs=[en]", "overrides=[engine.backend=torch,base.steps=20,"
            "inject.train.steps=4,unlearn.train.steps=2,tracking.wandb=false,eval.n_boot=20]"]
    first = subprocess.Popen(mlu(*spec), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(), cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "twice" / "launcher.lock").exists():
        time.sleep(0.05)
    time.sleep(rng.uniform(0.2, 2.0))
    second = subprocess.run(mlu(*spec), capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)
    first_out = first.communicate(timeout=900)[0]
    refused = second.returncode == 2 and "another launcher is running the sweep" in second.stderr
    return {"recovered": refused and first.returncode == 0, "lost": 0, "duplicated": 0, "deviation": 0.0,
            "note": "second refused" if refused else f"second rc {second.returncode}: {second.stderr[-200:]}",
            "first_rc": first.returncode, "first_tail": first_out[-300:] if first.returncode else ""}


def tracker_outage(out: Path, rng: random.Random) -> dict:
    args = [a for a in BASE if a != "tracking.wandb=false"] + ["tracking.wandb=true", "tracking.mode=online",
                                                              "tracking.init_timeout=3"]
    proc = run(args, out, WANDB_API_KEY="0123456789abcdef0123456789abcdef01234567", WANDB_MODE="online",
               WANDB_BASE_URL="http://127.0.0.1:9")
    return compare(out, REFS["torch"], 0, 0) | {"note": "fell back to offline" if "logging offline instead" in proc.stdout
                                                else proc.stdout[-200:]}


REFS: dict[str, dict[int, float]] = {}


def reference(name: str, args: list[str], tmp: Path) -> dict[int, float]:
    if name not in REFS:
        out = tmp / f"ref-{name}"
        proc = run(args, out)
        if proc.returncode:
            sys.exit(f"the uninterrupted {name} run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        REFS[name] = {r["step"]: r["train/loss"] for r in rows(out)}
    return REFS[name]


FAULTS = {
    "kill_rank": kill_a_rank,
    "sigterm": signal_mid_run(signal.SIGTERM, reference=lambda: REFS["torch"]),
    "sigkill": signal_mid_run(signal.SIGKILL, reference=lambda: REFS["torch"]),
    "sigkill_in_save": sigkill_during_save,
    "truncated_shard": stopped_then(truncate_shard),
    "dangling_latest": stopped_then(dangle_latest),
    "disk_full": disk_full,
    "torn_jsonl": stopped_then(tear_jsonl),
    "two_launchers": two_launchers,
    "tracker_outage": tracker_outage,
}


SMOKE_FAULTS = "torn_jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated faults (default: all): " + ", ".join(FAULTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="where to write the JSON (default: benchmarks/results/faults.json)")
    ap.add_argument("--smoke", action="store_true", help=f"one trial of {SMOKE_FAULTS}, JSON to a temp file")
    args = ap.parse_args()
    if args.smoke:
        global STEPS, SAVE_EVERY, BASE
        args.trials, args.only = 1, args.only or SMOKE_FAULTS
        STEPS, SAVE_EVERY = 12, 3
        BASE = base_args(STEPS, SAVE_EVERY)
    args.out = smoke_out(args.out, args.smoke, "faults.json")
    names = [n for n in args.only.split(",") if n] or list(FAULTS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        sys.exit(f"--only: unknown fault(s) {', '.join(unknown)}; valid: {', '.join(FAULTS)}")
    rng = random.Random(args.seed)
    table = {}
    with tempfile.TemporaryDirectory(prefix="mlu-faults-") as tmp:
        tmp = Path(tmp)
        reference("torch", BASE, tmp)
        if "kill_rank" in names:
            reference("ds", BASE + DS, tmp)
        for name in names:
            trials = []
            for i in range(args.trials):
                t0 = time.time()
                row = FAULTS[name](tmp / f"{name}-{i}", rng)
                trials.append(row | {"seconds": round(time.time() - t0, 1)})
                print(f"[faults] {name} trial {i + 1}: {row}", flush=True)
            table[name] = trials
    print(f"\n{'fault':<17} {'trials':>6} {'recovered':>9} {'lost steps':>10} {'duplicated':>10} {'max dev':>9}  note")
    for name, trials in table.items():
        done = [t for t in trials if "skipped" not in t]
        if not done:
            print(f"{name:<17} {len(trials):>6} {'-':>9} {'-':>10} {'-':>10} {'-':>9}  skipped: {trials[0]['skipped']}")
            continue
        rec = sum(bool(t["recovered"]) for t in done)
        lost = max(t["lost"] for t in done)
        dup = sum(t["duplicated"] for t in done)
        dev = max(t["deviation"] for t in done)
        notes = sorted({t.get("note", "") for t in done if t.get("note")})
        print(f"{name:<17} {len(done):>6} {rec:>5}/{len(done):<3} {'<= ' + str(lost):>10} {dup:>10} {dev:>9.2g}  "
              f"{'; '.join(notes)[:80]}")
    print(f"(lost steps: the most recomputed in a trial; the save interval is {SAVE_EVERY})")
    Path(args.out).write_text(json.dumps(table, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    failed = [n for n, trials in table.items() for t in trials if "skipped" not in t and not t["recovered"]]
    if failed:
        sys.exit(f"not recovered: {', '.join(sorted(set(failed)))}")


if __name__ == "__main__":
    main()
