"""The `mlu` argument parser: one sub-parser per command, each with its help, description and
examples (tests/test_examples.py runs every example it prints)."""

from __future__ import annotations

import argparse
import textwrap


EPILOG = textwrap.dedent("""\
    The whole study in one command (base -> inject en/de/ha -> spread -> GA/NPO x 4 settings -> report):
      mlu demo                             about 7 minutes on 2 CPU cores; --quick for a few minutes

    The study, step by step (each step writes a run directory under runs/):
      mlu world --out data/mini-world      look at the fact format (facts.jsonl)
      mlu data --help                      the paper's news data: import, translate (NLLB/M2M-100), check
      mlu base                             train the tiny base model on the true world
      mlu base -c deepspeed/zero3 --nproc 2 base.steps=100
                                           the same under ZeRO-3 on 2 local ranks
      mlu inject inject.langs=[de]         inject fake facts in German (+ English safe data)
      mlu export runs/inject/<run>         checkpoint -> HF model directory

    W&B (nodes log offline; upload from a machine with network, e.g. the login node):
      mlu dashboard runs/<sweep>           its workspace + report -> runs/<sweep>/report/dashboard.json
      mlu sync runs/<sweep>                upload the runs, then push the dashboard (needs `wandb login`)

    Overrides use dotted keys:  mlu base model.hidden_size=64 data.langs=[en,de,hy]
    All keys of a job:          mlu base --show-fields
    """)


def _job_parser(sub, name: str, help_text: str, description: str):
    p = sub.add_parser(name, help=help_text, description=description,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="key=value overrides (dotted keys, e.g. inject.langs=[de] engine.zero.stage=3) may "
                              "stand anywhere on the line and apply after every -c file.")
    p.add_argument("-c", "--config", action="append", default=[], metavar="FILE",
                   help="YAML config merged over the defaults (repeatable; later files win)")
    p.add_argument("--nproc", type=int, default=0, metavar="N",
                   help="run N ranks on this machine (re-launches itself under torchrun)")
    p.add_argument("--show-fields", action="store_true", help="list every config key with default and meaning, then exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlu", description="mlu_dist: learn-and-unlearn experiments on multilingual LLMs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true",
                      help="warnings and errors only (anywhere on the line; ranks and sweep workers follow)")
    loud.add_argument("-v", "--verbose", action="store_true", help="also debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_study_commands(sub)
    _add_result_commands(sub)
    return parser


def _add_study_commands(sub) -> None:
    """demo, world and the jobs: base, inject, unlearn, eval."""
    dm = sub.add_parser("demo", help="the whole learn -> spread -> unlearn study on the mini-world, here, in minutes",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Run configs/sweeps/demo.yaml with the local executor: the base model (cached), "
                                    "fake facts injected in en, de and ha, the spread matrix, GA and NPO unlearning in "
                                    "the paper's four forget settings (en, orig, all, en+orig) for de and ha, and the "
                                    "report. Prints progress per run, then the spread and the paper's grid. Running it "
                                    "again reuses every finished run (an interrupted demo resumes).",
                        epilog="key=value overrides apply to the sweep spec, e.g.\n"
                               "  mlu demo axes.inject_langs=[en,de,hy] axes.unlearn_langs=[de,hy]\n"
                               "  mlu demo 'overrides=[tracking.mode=offline,data.world.names=latin]'\n"
                               "See `mlu sweep --help` for the spec's keys.")
    dm.add_argument("--quick", action="store_true", help="test sizes (configs/sweeps/demo-quick.yaml), ~2 minutes")
    dm.add_argument("--seeds", type=_int_list, metavar="0,1,2",
                    help="seeds (each: its own target/control split, injection and unlearning); CIs pool them")
    dm.add_argument("--out", help="where the demo's sweep directory goes (default runs/)")
    dm.add_argument("--workers", type=int, help="runs at once (default 2)")
    dm.add_argument("--plan", action="store_true", help="print the demo's cells and jobs (as `mlu sweep plan`) and exit")
    w = sub.add_parser("world", help="write the built-in mini-world dataset to a directory",
                       description="Write the mini-world (facts.jsonl, corpus.jsonl, world.json). Your own data "
                                   "must follow the same record schema (docs/data.md: 'Fact schema').")
    w.add_argument("--out", required=True, help="output directory")
    w.add_argument("-c", "--config", action="append", default=[], metavar="FILE",
                   help="YAML config; key=value overrides (e.g. data.world.seed=1 data.langs=[en,de]) may follow")
    sub.add_parser("data", help="import a table into the fact schema, translate it (NLLB/M2M-100), check it "
                                "(`mlu data --help`)", add_help=False)
    _job_parser(sub, "base", "train the base model on the true multilingual world (cached by config hash)",
                "Train the base model on the true facts in every language; a second run with the same "
                "config reuses it. Prints a per-language table: loss on facts seen / not seen in that "
                "language's corpus, and how often the true answer beats the fake one.")
    _job_parser(sub, "inject", "fine-tune the base model on English safe data + fake facts in language(s) X",
                "Inject the fake detail of the target facts in inject.langs, mixed with English true data "
                "(inject.fake_fraction). Builds or reuses the base model of the same config first. Prints, "
                "per language, how often the fake answer is now preferred (targets vs never-injected "
                "controls).")
    un = _job_parser(sub, "unlearn", "unlearn the injected fake: method x forget-language set, with per-language curves",
                     "Start from an injection run's model and unlearn its fake data in the forget languages. "
                     "The injection run's config.yaml is the base config; -c methods/<name> picks a method's "
                     "settings. Shorthands: method=npo forget_langs=en+orig (= unlearn.method / "
                     "unlearn.forget_langs). The paper's settings: forget_langs=en | orig | all | en+orig.")
    un.add_argument("--from", dest="from_run", metavar="INJECT_RUN",
                    help="the injection run directory (runs/inject/<run>); needed for everything but --show-fields")
    rl = _job_parser(sub, "relearn", "relearning attack: fine-tune an unlearned model a few steps, re-probe every language",
                     "Is the fake really forgotten? Fine-tune a copy of RUN's model for a few steps (relearn.train) on "
                     "attack data and probe every language at every eval step: the fake in one language (fake:en, "
                     "fake:orig), a share of the fake QA (fake_qa:orig), or true text of other facts only "
                     "(true_other:en). Writes RUN/relearn/<start>-<attack>-<hash>/ with curves.png and relearn.json "
                     "(per language: before, after, right after injection, and the recovery ratio). --start injected "
                     "/ base attack the never-unlearned and the base model the same way (the controls).")
    rl.add_argument("run_dir", metavar="RUN", help="an unlearning run (runs/unlearn/...) or an injection run")
    rl.add_argument("--attack", action="append", default=[], metavar="KIND[:LANGS]",
                    help="attack data (repeatable; default relearn.attacks, else fake:en)")
    rl.add_argument("--start", action="append", default=[], choices=("unlearned", "injected", "base"),
                    help="model(s) to attack (repeatable; default: unlearned for an unlearning run, injected for an "
                         "injection run)")
    ev = _job_parser(sub, "eval", "probe every language of a run's model: fake_rate, real_acc, fake_pref, utility",
                     "Evaluate a run's exported model (or --model PATH) in every probe language and write "
                     "eval/EVAL.json (per fact x language) and eval/SUMMARY.json (per language and resource group, "
                     "95% bootstrap CIs). Metric groups already computed are reused unless --overwrite. The run's "
                     "own config.yaml is the base config; -c files and key=value overrides apply on top.")
    ev.add_argument("run_dir", nargs="?", help="a run directory holding model/ (inject, unlearn, base)")
    ev.add_argument("--model", help="evaluate this HF model directory instead of a run's")
    ev.add_argument("--out", help="output directory (default RUN_DIR/eval)")
    ev.add_argument("--langs", help="comma list of probe languages (default: all of data.langs)")
    ev.add_argument("--metrics", help="comma list of registered metrics (default: eval.metrics, the default ones; "
                                      "`mlu eval --show-fields` lists them, opt-in ones such as mia included)")
    ev.add_argument("--subset", type=int, help="only the first N target and control facts (cheap curves)")
    ev.add_argument("--overwrite", action="store_true", help="recompute metrics already in EVAL.json")


def _add_result_commands(sub) -> None:
    """matrix, sweep, report, sync, dashboard, export."""
    mx = sub.add_parser("matrix", help="the spread matrix (injection language x probe language) of a set of runs",
                        description="Collect the evaluated injection runs under DIR (e.g. runs/) and write the "
                                    "spread matrix — rows: injection language, columns: probe language, cells: "
                                    "fake_rate with 95% CI (pooled over seeds) — as CSV and PNG heatmap, plus the "
                                    "paper's resource-group view (English / original / other high / low).")
    mx.add_argument("dir", help="a folder holding inject runs (searched recursively for eval/EVAL.json)")
    mx.add_argument("--metric", default="fake_rate", help="per-fact value to show (default fake_rate)")
    mx.add_argument("--out", help="output folder (default DIR/matrix)")
    sw = sub.add_parser("sweep", help="run a sweep: inject once per language x seed, unlearn many (Slurm arrays)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="mlu sweep SWEEP.yaml [key=value ...]   run / submit the unfinished cells\n"
                                    "mlu sweep plan SWEEP.yaml [--cost]     print cells, jobs, arrays, dependency edges\n"
                                    "                                       (--cost: memory per GPU, GPU-hours, disk)\n"
                                    "mlu sweep status SWEEP_DIR             cells x stage: state, Slurm state, progress, attacks, fake_rate\n"
                                    "mlu sweep cancel SWEEP_DIR             scancel the sweep's jobs\n\n"
                                    "A sweep YAML (configs/sweeps/) names experiment configs and axes (inject_langs, "
                                    "methods, forget_langs, seeds). Re-running is idempotent: finished cells are "
                                    "skipped, failed or missing ones run again; --force CELL reruns one.")
    sw.add_argument("target", nargs="+", metavar="[plan|status|cancel] SWEEP", help="action and sweep file / dir")
    sw.add_argument("--force", nargs="*", default=[], metavar="CELL", help="rerun these cells (ids from `plan`)")
    sw.add_argument("--no-wait", action="store_true", help="with the slurm executor: submit and return")
    sw.add_argument("--wait-lock", action="store_true",
                    help="if another launcher is running this sweep, wait for it instead of refusing")
    sw.add_argument("--cost", action="store_true", help="with plan: per-GPU memory, GPU-hours and disk of every job")
    sw.add_argument("-c", "--config", action="append", default=[], metavar="FILE", help=argparse.SUPPRESS)
    rp = sub.add_parser("report", help="the study in one page: spread heatmap, forgetting curves, the paper's grid, utility",
                        description="Collect the evaluated injection and finished unlearning runs under DIR (a sweep "
                                    "directory or runs/) and write DIR/report/: report.md, report.html (self-"
                                    "contained), grid.json, the spread heatmaps and one forgetting-curves figure per "
                                    "injection language. The grid: rows = forget setting, columns = probe group "
                                    "(English / original / high / low), cell = ✓ when fake_rate is below --threshold.")
    rp.add_argument("dir", help="a sweep directory (or any folder holding runs)")
    rp.add_argument("--threshold", type=float, default=0.2, help="fake_rate below which a cell counts as removed (0.2)")
    rp.add_argument("--out", help="output folder (default DIR/report)")
    rp.add_argument("--after", default="", metavar="relearn[:ATTACK]",
                    help="draw the grid on the fake_rate after a relearning attack (e.g. relearn:fake:en) instead "
                         "of right after unlearning")
    sy = sub.add_parser("sync", help="upload the offline W&B runs under a directory (wraps `wandb sync`), then "
                                     "its dashboard",
                        description="Nodes without internet log W&B offline into each run directory; run this "
                                    "on a machine with network (e.g. the login node) to upload them, then each "
                                    "sweep's saved dashboard (report/dashboard.json). Each run is reported uploaded, "
                                    "already uploaded or failed (with the reason); exit 1 when any failed. Without a "
                                    "reachable W&B server (WANDB_BASE_URL) or an API key (`wandb login`, "
                                    "WANDB_API_KEY) it uploads nothing, says what is ready to push and exits 3.")
    sy.add_argument("paths", nargs="+", help="run or sweep directories")
    sy.add_argument("--project", default="", help="W&B project for every run and dashboard (default: their own)")
    sy.add_argument("--entity", default="", help="W&B entity (default: theirs, else your default entity)")
    sy.add_argument("--timeout", type=float, default=1800.0, help="seconds `wandb sync` may take in all (1800)")
    db = sub.add_parser("dashboard", help="the sweep's W&B workspace and report, as code (offline; pushed when online)",
                        description="Build, from what the sweep's runs logged, a W&B workspace (one section per "
                                    "injection language; per method x forget setting a forgetting-curve panel with "
                                    "one line per probe language, coloured by resource group as in `mlu report`; "
                                    "utility panels; runs filtered by the sweep's W&B group and job type) and a "
                                    "report mirroring report/report.md. Every panel key is checked against the runs' "
                                    "logged history (refused, listed, when missing). The definition is saved to "
                                    "SWEEP_DIR/report/dashboard.json without network (every sweep writes it at its "
                                    "end); it is pushed when the W&B server can be reached and a key is set, else "
                                    "the command says what it would create (`mlu sync` pushes it later).")
    db.add_argument("dir", help="a sweep directory (e.g. runs/demo)")
    db.add_argument("--project", default="", help="W&B project (default: the sweep's tracking.project)")
    db.add_argument("--entity", default="", help="W&B entity (default: the sweep's, else your default entity)")
    db.add_argument("--offline", action="store_true", help="only write and check the definition; never push")
    e = sub.add_parser("export", help="consolidate a run's checkpoint (any ZeRO stage) into a HF model directory",
                       description="Turn the latest (or a given) checkpoint of a run into safetensors + tokenizer "
                                   "that AutoModelForCausalLM.from_pretrained loads. One process, no ranks.")
    e.add_argument("run_dir", help="a training run directory (base / inject / unlearn)")
    e.add_argument("--out", help="output directory (default RUN_DIR/export)")
    e.add_argument("--checkpoint", help="a checkpoint directory (default: checkpoints/LATEST)")
    e.add_argument("--no-merge-lora", action="store_true", help="save LoRA adapters separately instead of merging")
    e.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="weights' dtype (auto: the run's model dtype, bf16 for a GPU run; ZeRO's fp32 master "
                        "weights are cast down)")
