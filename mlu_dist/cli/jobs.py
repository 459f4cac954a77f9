"""The handlers of the commands that run jobs: each loads the saved config (a run's, or the
injection's for `unlearn`) + `-c` files + key=value overrides strictly, then runs in this process or
re-launches itself under torchrun for `--nproc N`."""

from __future__ import annotations

import os

from mlu_dist.relaunch import relaunch, strip_nproc


JOBS = {  # command -> (module, function taking the ExperimentConfig)
    "base": ("mlu_dist.jobs.base", "run_base"),
    "inject": ("mlu_dist.jobs.inject", "run_inject"),
    "unlearn": ("mlu_dist.jobs.unlearn", "run_unlearn"),
}


def method_fields() -> list[str]:
    """The settings each unlearning method takes under unlearn.method_args, with defaults and docs."""
    from mlu_dist.config import describe
    from mlu_dist.unlearn.methods import METHODS

    lines = ["", "# unlearn.method_args: the settings of each method (keys not given keep these defaults)"]
    for name in METHODS.order():
        fields = describe(METHODS[name].Settings(), "unlearn.method_args.")
        lines += [f"[{name}] {line}" for line in fields] or [f"[{name}] (no settings)"]
    return lines


def run_job(name: str, args, argv: list[str]) -> int:
    import importlib

    from mlu_dist.config import describe, load_config, to_yaml
    from mlu_dist.experiment import ExperimentConfig

    if args.show_fields:
        print("\n".join(describe(ExperimentConfig()) + method_fields()))
        return 0
    files, overrides = list(args.config), list(args.overrides)
    if name == "unlearn":
        from pathlib import Path

        if not args.from_run:
            raise FileNotFoundError("mlu unlearn needs --from INJECT_RUN (an injection run directory, runs/inject/<run>)")

        from mlu_dist.unlearn.config import UnlearnConfig

        saved = Path(args.from_run) / "config.yaml"
        if not saved.exists():
            raise FileNotFoundError(f"--from {args.from_run}: not an injection run directory (no config.yaml)")
        files.insert(0, saved)
        short = {f for f in UnlearnConfig.__dataclass_fields__}
        overrides = [f"unlearn.{o}" if o.split("=", 1)[0] in short else o for o in overrides]
        overrides.append(f"unlearn.from_run={args.from_run}")
        # the injection's own run.name names the injection, not this run (a user's run.name= wins)
        if not any(o.startswith("run.name=") for o in overrides):
            overrides.insert(0, "run.name=''")
    cfg = load_config(ExperimentConfig, files, overrides)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    if args.nproc and args.nproc > 1 and "TORCHELASTIC_RUN_ID" not in os.environ:  # not yet under torchrun
        return relaunch(strip_nproc(argv), args.nproc)
    module_name, fn_name = JOBS[name]
    getattr(importlib.import_module(module_name), fn_name)(cfg)
    from mlu_dist.engine.dist import shutdown

    shutdown()
    return 0


def run_relearn_command(args, argv: list[str]) -> int:
    import json
    from pathlib import Path

    from mlu_dist.config import describe, load_config
    from mlu_dist.experiment import ExperimentConfig

    if args.show_fields:
        print("\n".join(line for line in describe(ExperimentConfig()) if line.startswith(("relearn.", "engine."))))
        return 0
    run = Path(args.run_dir)
    if not (run / "config.yaml").exists():
        raise FileNotFoundError(f"'{run}' is not a run directory (no config.yaml)")
    overrides = list(args.overrides)
    if args.attack:
        overrides.append(f"relearn.attacks=[{','.join(args.attack)}]")
    if not any(o.startswith("run.overwrite=") for o in overrides):
        overrides.append("run.overwrite=false")  # a forced sweep cell's saved config must not redo finished attacks
    cfg = load_config(ExperimentConfig, [run / "config.yaml", *args.config], overrides)
    if not cfg.relearn.attacks:
        cfg.relearn.attacks = ["fake:en"]
    if args.print_config:
        from mlu_dist.config import to_yaml

        print(to_yaml(cfg), end="")
        return 0
    if args.nproc and args.nproc > 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return relaunch(strip_nproc(argv), args.nproc)
    job = json.loads((run / "meta.json").read_text()).get("job") if (run / "meta.json").exists() else None
    starts = args.start or ["unlearned" if job == "unlearn" else "injected"]
    from mlu_dist.jobs.relearn import run_attacks

    dirs = run_attacks(cfg, run, starts)
    from mlu_dist.engine.dist import shutdown, setup_env

    if setup_env().is_main:
        print("\n".join(f"relearn: {d}" for d in dirs))
    shutdown()
    return 0


def run_sweep_command(args) -> int:
    from pathlib import Path

    from mlu_dist.config import load_config

    action, rest = (args.target[0], args.target[1:]) if args.target[0] in ("plan", "status", "cancel") \
        else ("run", args.target)
    if len(rest) != 1:
        raise FileNotFoundError("usage: mlu sweep [plan|status|cancel] SWEEP.yaml|SWEEP_DIR")
    if action in ("status", "cancel"):
        from mlu_dist.launcher.status import cancel, status_table

        root = Path(rest[0])
        if not (root / "cells.json").exists():
            raise FileNotFoundError(f"'{root}' is not a sweep directory (no cells.json)")
        if action == "cancel":
            ids = cancel(root)
            print(f"cancelled Slurm job(s): {', '.join(ids) or 'none'}")
        print(status_table(root)[0])
        return 0
    from mlu_dist.launcher.plan import expand, format_plan
    from mlu_dist.launcher.run import submit
    from mlu_dist.launcher.spec import SweepSpec

    spec = load_config(SweepSpec, [rest[0]], args.overrides)
    if action == "plan":
        cells = expand(spec)
        print(format_plan(spec, cells))
        if args.cost:
            from mlu_dist.launcher.cost import sweep_cost

            print("\ncost (per training job; see mlu_dist/launcher/cost.py for what is counted):")
            print(sweep_cost(spec, cells)[0])
        return 0
    out = submit(spec, force=list(args.force), wait=not args.no_wait, wait_lock=args.wait_lock)
    print(f"[sweep] {len(out['submitted'])} cell(s) run/submitted, {len(out['skipped'])} already finished -> {out['root']}")
    failed = [c for c, s in out.get("results", {}).items() if s not in ("finished", "submitted")]
    if failed:
        print(f"[sweep] not finished: {', '.join(failed)}")
    return 1 if failed else 0


def run_eval_command(args, argv: list[str]) -> int:
    from pathlib import Path

    from mlu_dist.config import describe, load_config
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.jobs.eval import run_eval

    if args.show_fields:
        print("\n".join(line for line in describe(ExperimentConfig()) if line.startswith(("eval.", "data.", "engine."))))
        return 0
    files = list(args.config)
    if args.run_dir:
        saved = Path(args.run_dir) / "config.yaml"
        if not saved.exists():
            raise FileNotFoundError(f"'{args.run_dir}' is not a run directory (no config.yaml)")
        files.insert(0, saved)
    overrides = list(args.overrides)
    if args.langs:
        overrides.append(f"eval.langs=[{args.langs}]")
    if args.metrics:
        overrides.append(f"eval.metrics=[{args.metrics}]")
    if args.subset is not None:
        overrides.append(f"eval.subset={args.subset}")
    cfg = load_config(ExperimentConfig, files, overrides)
    if args.nproc and args.nproc > 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return relaunch(strip_nproc(argv), args.nproc)
    run_eval(cfg, args.run_dir, args.model, args.out, args.overwrite)
    from mlu_dist.engine.dist import shutdown

    shutdown()
    return 0
