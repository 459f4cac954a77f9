"""`mlu`: the one command line of mlu_dist.

    mlu demo [--quick]                  the whole study on the mini-world: inject, spread, unlearn, report
    mlu world --out DIR                 write the mini-world dataset (see the format to produce)
    mlu data import|translate|check     your own / the paper's data: import a table, translate it, check it
    mlu base [-c FILE]... [key=value]...  train the base model on the true world (cached)
    mlu inject [...]                    inject fake facts in language(s) X
    mlu relearn RUN                     relearning attack on an unlearned model: does the fake come back?
    mlu export RUN_DIR                  checkpoint -> HF model directory
    mlu sync DIR...                     upload offline W&B runs (each said uploaded / failed and why), then dashboards
    mlu dashboard SWEEP_DIR             the sweep's W&B workspace + report as code (saved offline, pushed when online)

Every job takes YAML files (``-c``, merged in order; a name like ``deepspeed/zero3`` means
``configs/deepspeed/zero3.yaml``) and then ``key=value`` overrides; ``--show-fields`` lists every
key with its default and meaning; ``--nproc N`` runs N local ranks through torchrun.

The commands form a table (``HANDLERS``): each has its parser in ``cli/parser.py`` and its
handler here or in ``cli/jobs.py``, ``cli/data.py`` (`mlu data`), ``cli/sync.py`` (W&B).
"""

from __future__ import annotations

import sys

from mlu_dist.cli.jobs import run_eval_command, run_job, run_relearn_command, run_sweep_command
from mlu_dist.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def _world(args, argv) -> int:
    from mlu_dist.config import load_config
    from mlu_dist.data.world import write_world
    from mlu_dist.experiment import ExperimentConfig

    cfg = load_config(ExperimentConfig, args.config, args.overrides)
    out = write_world(cfg.data.world, args.out, cfg.data.langs)
    print(f"wrote {out}/facts.jsonl, corpus.jsonl, world.json")
    return 0


def _demo(args, argv) -> int:
    from mlu_dist.demo import run_demo

    return run_demo(args.quick, args.seeds, args.out, args.workers, args.overrides, args.plan)


def _matrix(args, argv) -> int:
    from mlu_dist.eval.matrix import write_matrix

    paths = write_matrix(args.dir, args.metric, args.out)
    print("\n".join(f"wrote {p}" for p in paths))
    return 0


def _report(args, argv) -> int:
    from mlu_dist.report import write_report

    out = write_report(args.dir, args.threshold, args.out, after=args.after)
    print((out / "report.md").read_text().split("## Utility")[0])
    print(f"report: {out}/report.html")
    return 0


def _sync(args, argv) -> int:
    from mlu_dist.cli.sync import sync_command

    return sync_command(args.paths, args.project, args.entity, args.timeout)


def _dashboard(args, argv) -> int:
    from mlu_dist.cli.sync import dashboard_command

    return dashboard_command(args.dir, args.project, args.entity, args.offline)


def _export(args, argv) -> int:
    from mlu_dist.jobs.export import export_run

    out = export_run(args.run_dir, args.out, args.checkpoint, merge_lora=not args.no_merge_lora, dtype=args.dtype)
    print(f"exported {out}")
    return 0


# command -> handler(args, argv); the jobs (base, inject, unlearn) go to run_job
HANDLERS = {"world": _world, "demo": _demo, "eval": run_eval_command, "relearn": run_relearn_command,
            "sweep": lambda args, argv: run_sweep_command(args), "matrix": _matrix, "report": _report,
            "sync": _sync, "dashboard": _dashboard, "export": _export}


def _log_level(argv: list[str]) -> list[str]:
    """Take ``-q/--quiet`` and ``-v/--verbose`` from anywhere on the line (``mlu sweep run X -q`` as
    well as ``mlu -q sweep run X``) and set the level for this process and every one it starts."""
    from mlu_dist.logs import set_level

    quiet, verbose = ("-q", "--quiet"), ("-v", "--verbose")
    asked = {a for a in argv if a in quiet + verbose}
    if asked & set(quiet) and asked & set(verbose):
        print("mlu: error: --quiet and --verbose contradict each other; give one", file=sys.stderr)
        raise SystemExit(2)
    if asked:
        set_level("quiet" if asked & set(quiet) else "verbose")
    return [a for a in argv if a not in asked]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = _log_level(argv)
    from mlu_dist.plugins import PluginError, load_plugins

    try:  # a plugin's methods, metrics, trackers and executors must be registered before configs load
        load_plugins()
    except PluginError as exc:
        print(f"mlu: error: {exc}", file=sys.stderr)
        return 2
    if argv[:1] == ["data"]:  # its own parser: --map key=column is no config override
        from mlu_dist.cli.data import main as data_main

        return data_main(argv[1:])
    parser = build_parser()
    # key=value overrides may stand anywhere (between -c options too); argparse gets the rest
    overrides = [a for a in argv[1:] if "=" in a and not a.startswith("-")]
    rest = [a for i, a in enumerate(argv) if i == 0 or a not in overrides]
    args, unknown = parser.parse_known_args(rest)
    if args.command == "sweep":  # `mlu sweep plan --cost FILE`: positionals may follow the flags
        args.target += [a for a in unknown if not a.startswith("-")]
        unknown = [a for a in unknown if a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = overrides
    if args.command is None:
        parser.print_help()
        return 0
    from mlu_dist.config import ConfigError
    from mlu_dist.data.schema import DataError
    from mlu_dist.launcher.lock import SweepLocked
    from mlu_dist.runs.rundir import DiskFull, ResumeError

    try:
        return HANDLERS.get(args.command, lambda a, v: run_job(a.command, a, v))(args, argv)
    except (ConfigError, DataError, ResumeError, SweepLocked, DiskFull, FileNotFoundError) as exc:
        print(f"mlu {args.command}: error: {exc}", file=sys.stderr)
        return 2
