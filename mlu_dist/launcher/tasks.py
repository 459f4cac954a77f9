"""What one job of a sweep runs: a cell, given its stage and its config file.

Every executor ends up here (the local one through ``python -m mlu_dist.launcher.tasks``), so a
cell runs the same way on a laptop and on a cluster node.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlu_dist.logs import get_logger

log = get_logger(__name__)


def run_cell(stage: str, config_path: str | None, root: str) -> dict:
    """Run one cell; returns ``{"stage", "run_dir", "status"}``."""
    import os

    # A job owns its W&B service. An inherited WANDB_SERVICE (the launcher was started from a
    # process with W&B active) would attach every job to that one service, and a requeued job
    # would find its own run id still "in use" there.
    os.environ.pop("WANDB_SERVICE", None)
    from mlu_dist.plugins import load_plugins

    load_plugins()  # MLU_PLUGINS reaches workers and Slurm jobs through the environment
    from mlu_dist.config import load_config
    from mlu_dist.experiment import ExperimentConfig

    if stage == "report":
        from mlu_dist.report import write_report

        try:
            spec = json.loads((Path(root) / "sweep_flags.json").read_text()) if (Path(root) / "sweep_flags.json").exists() else {}
            out = write_report(Path(root), wandb_group=spec.get("wandb_group"), wandb_settings=spec.get("wandb"))
        except FileNotFoundError as exc:  # nothing evaluated yet: nothing to draw
            return {"stage": stage, "run_dir": str(Path(root) / "report"), "status": f"skipped: {exc}"}
        if spec.get("wandb_group"):
            _write_dashboard(Path(root))
        (out / "DONE.json").write_text(json.dumps({"files": sorted(p.name for p in out.iterdir())}) + "\n")
        return {"stage": stage, "run_dir": str(out), "status": "finished"}
    if stage == "translate":
        from mlu_dist.data.translate import TranslateConfig
        from mlu_dist.jobs.translate import run_translate

        tcfg = load_config(TranslateConfig, [config_path])
        run_translate(tcfg)
        part = Path(tcfg.out) / "parts" / tcfg.to[0]
        return {"stage": stage, "run_dir": str(part),
                "status": "finished" if (part / "DONE.json").exists() else "interrupted"}
    cfg = load_config(ExperimentConfig, [config_path])
    if stage == "base":
        from mlu_dist.jobs.base import run_base

        run_dir = run_base(cfg)
    elif stage == "inject":
        from mlu_dist.jobs.inject import run_inject

        run_dir = run_inject(cfg)
        evaluate = json.loads((Path(root) / "sweep_flags.json").read_text()).get("evaluate", True) \
            if (Path(root) / "sweep_flags.json").exists() else True
        if evaluate and (run_dir / "DONE.json").exists():
            from mlu_dist.jobs.eval import evaluate_model

            evaluate_model(cfg, run_dir / "model", run_dir / "eval", inject_langs=list(cfg.inject.langs))
        if cfg.relearn.attacks and cfg.relearn.controls and (run_dir / "DONE.json").exists():
            from mlu_dist.jobs.relearn import run_attacks

            local_base = not cfg.inject.from_model or Path(cfg.inject.from_model).exists()
            run_attacks(cfg, run_dir, ["injected", "base"] if local_base else ["injected"])
    elif stage == "unlearn":
        from mlu_dist.jobs.unlearn import run_unlearn

        run_dir = run_unlearn(cfg)
        if cfg.relearn.attacks and (run_dir / "DONE.json").exists() and (run_dir / "model" / "config.json").exists():
            from mlu_dist.jobs.relearn import run_attacks

            run_attacks(cfg, run_dir, ["unlearned"])
    else:
        from mlu_dist.launcher.spec import STAGES

        raise ValueError(f"unknown stage {stage!r}; valid: {', '.join(STAGES)}")
    done = Path(run_dir) / "DONE.json"
    status = json.loads(done.read_text()).get("status", "finished") if done.exists() else "interrupted"
    return {"stage": stage, "run_dir": str(run_dir), "status": status}


def _write_dashboard(root: Path) -> None:
    """The sweep's W&B dashboard definition (report/dashboard.json, no network), an extra: a sweep
    never fails because of it."""
    try:
        from mlu_dist.tracking.dashboard import write_dashboard

        path, _ = write_dashboard(root)
        log.info(f"[dashboard] {path} (pushed by `mlu sync {root}` where W&B can be reached)")
    except Exception as exc:  # the report is written; the dashboard can be rebuilt with `mlu dashboard`
        (root / "report" / "dashboard.json").unlink(missing_ok=True)  # an older one would describe other runs
        first = str(exc).splitlines()[0] if str(exc) else ""
        log.warning(f"[dashboard] not written ({type(exc).__name__}: {first}); `mlu dashboard {root}` tells more")


def run_argv(argv=None) -> int:
    """Run the cell ``argv`` names; its exit code (3: interrupted). The process group stays up (a
    local worker runs its next cell in it; DeepSpeed keeps its groups)."""
    ap = argparse.ArgumentParser(description="Run one cell of a sweep (used by the local executor and sbatch).")
    ap.add_argument("stage")
    ap.add_argument("config", nargs="?")
    ap.add_argument("--root", required=True)
    args = ap.parse_args(argv)
    result = run_cell(args.stage, args.config, args.root)
    print(json.dumps(result), flush=True)
    return 0 if result["status"] != "interrupted" else 3


def main(argv=None) -> int:
    try:
        return run_argv(argv)
    finally:
        from mlu_dist.engine.dist import shutdown

        shutdown()


if __name__ == "__main__":
    sys.exit(main())
