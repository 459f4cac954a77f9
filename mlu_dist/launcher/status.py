"""`mlu sweep status` and `mlu sweep cancel`: the executor's job states, progress and latest fake_rate."""

from __future__ import annotations

from pathlib import Path

from mlu_dist.launcher.plan import load_cells
from mlu_dist.launcher.run import Manifest
from mlu_dist.results import RunRecord
from mlu_dist.tracking import read_jsonl


def sweep_executor(root: Path):
    """The executor the sweep in ``root`` was run with (its saved sweep.yaml), ready to ask."""
    from omegaconf import OmegaConf

    from mlu_dist.launcher.executors import build_executor

    saved = Path(root) / "sweep.yaml"
    name = OmegaConf.load(saved).get("executor", "local") if saved.exists() else "local"
    return build_executor(name)


def _progress(run_dir: Path) -> str:
    rows = read_jsonl(run_dir / "metrics.jsonl")
    steps = [r["step"] for r in rows if "train/loss" in r]
    cfg = run_dir / "config.yaml"
    return f"step {steps[-1]}" if steps else ("-" if not cfg.exists() else "started")


def _fake_rate(run_dir: Path) -> str:
    summary = RunRecord(run_dir, "").summary
    if summary:
        m = summary.get("fake_rate")
        if m:
            return " ".join(f"{g}={s['mean']:.2f}" for g, s in m["group"].items())
    rows = [r for r in read_jsonl(run_dir / "curves.jsonl") if r["metric"] == "fake_rate"]
    if rows:
        last = max(r["step"] for r in rows)
        vals = [r["value"] for r in rows if r["step"] == last]
        return f"mean={sum(vals) / len(vals):.2f} @{last}"
    return "-"


def _newest(run_dirs: list[Path]) -> Path:
    """The attack run that was written to last (the one in progress), or the first if none started."""
    started = [d for d in run_dirs if (d / "metrics.jsonl").exists() and not (d / "DONE.json").exists()]
    return max(started, key=lambda d: (d / "metrics.jsonl").stat().st_mtime) if started else run_dirs[0]


def status_table(root: Path) -> tuple[str, list[dict]]:
    cells = load_cells(root)
    manifest = Manifest(root).cells
    jobs = [m["job_id"] for m in manifest.values() if m.get("job_id")]
    states = sweep_executor(root).states(jobs)
    rows = []
    for c in cells:
        m = manifest.get(c["id"], {})
        run_dir = Path(c["run_dir"])
        outputs = [Path(o) for o in c.get("outputs", [])]
        attacked = sum((o / "DONE.json").exists() for o in outputs)
        # a run that exported no model (it diverged) is never attacked, as in `pending`
        attacks_due = attacked < len(outputs) and (run_dir / "model" / "config.json").exists()
        trained = (run_dir / "DONE.json").exists()
        done = trained and not attacks_due
        slurm = states.get(m.get("job_id", ""), m.get("slurm_state", ""))
        status = "finished" if done else (m.get("status") or "not run")
        if trained and attacks_due and status == "finished":  # the manifest predates the attacks
            status = "attacks pending"
        if slurm in ("CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL") and not done:
            status = slurm.lower()
        progress = "-" if c["stage"] == "report" else _progress(run_dir)
        if trained and attacks_due:
            progress = f"attack {_progress(_newest(outputs))}"
        rows.append({"id": c["id"], "stage": c["stage"], "status": status, "slurm": slurm or "-",
                     "job": m.get("job_id", "-"), "progress": progress,
                     "attacks": f"{attacked}/{len(outputs)}" if outputs else "-",
                     "fake_rate": _fake_rate(run_dir) if c["stage"] != "report" else "-"})
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    head = "  ".join(k.ljust(widths[k]) for k in rows[0])
    lines = [head, "-" * len(head)] + ["  ".join(str(r[k]).ljust(widths[k]) for k in r) for r in rows]
    return "\n".join(lines), rows


def cancel(root: Path) -> list[str]:
    manifest = Manifest(root).cells
    return sweep_executor(root).cancel([m["job_id"] for m in manifest.values() if m.get("job_id")])
