"""`mlu eval`: probe every language of a model and write eval/EVAL.json + eval/SUMMARY.json.

Metric groups already in EVAL.json (same facts, languages and decoding settings) are reused, so
an interrupted evaluation resumes; ``--overwrite`` recomputes everything.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlu_dist.runs import rundir
from mlu_dist.config import to_dict
from mlu_dist.data import load_data, study_split
from mlu_dist.engine.dist import ensure_process_group, setup_env
from mlu_dist.engine.engines import backend, frozen_engine
from mlu_dist.eval.generate import cache_kwarg
from mlu_dist.eval.metrics import METRICS, value_names
from mlu_dist.eval.prompts import end_ids
from mlu_dist.eval.runner import Evaluator, Rank
from mlu_dist.eval.summary import format_table, summarize
from mlu_dist.jobs.common import say
from mlu_dist.jobs.evaluation import device_forward, model_copy_choice
from mlu_dist.modeling import load_pretrained

if TYPE_CHECKING:
    from mlu_dist.experiment import ExperimentConfig

DECODING = ("max_new_tokens", "n_samples", "temperature", "seed", "subset", "prompt")


def _identity(cfg: ExperimentConfig, langs: list[str], split, model_path: Path) -> dict:
    """What must match for stored values to be reused."""
    n = cfg.eval.subset or None
    return {"model": str(Path(model_path).resolve()), "langs": langs, "targets": split.targets[:n],
            "controls": split.controls[:n], "decoding": {k: to_dict(cfg)["eval"][k] for k in DECODING}}


def evaluate_model(cfg: ExperimentConfig, model_path: Path, out_dir: Path, overwrite: bool = False,
                   inject_langs: list[str] | None = None) -> dict:
    """Evaluate ``model_path`` on the configured facts; returns the summary (every rank)."""
    dist = setup_env(cfg.engine.timeout_min)
    facts, _ = load_data(cfg.data)
    langs = list(cfg.eval.langs) or list(facts.langs)
    split = study_split(cfg, facts.fact_ids)
    identity = _identity(cfg, langs, split, model_path)
    eval_file = Path(out_dir) / "EVAL.json"
    stored: dict = {}
    skipped: dict[str, str] = {}  # values the data cannot support, with the reason
    notes: dict[str, str] = {}
    if eval_file.exists() and not overwrite:
        saved = json.loads(eval_file.read_text())
        if {k: saved.get(k) for k in identity} == identity:
            stored, skipped, notes = saved["values"], saved.get("skipped", {}), saved.get("notes", {})
        else:
            say(dist, f"eval: {eval_file} was made with other facts/languages/decoding; recomputing")
    todo = [g for g in cfg.eval.metrics if not all(name in stored or name in skipped for name in value_names(g))]
    reused = [g for g in cfg.eval.metrics if g not in todo]
    if reused:
        say(dist, f"eval: reusing {', '.join(reused)} from {eval_file}")
    if todo:
        model, tokenizer = load_pretrained(model_path, cfg.model.dtype, dist.device_type, cfg.model.attn_implementation)
        zero = cfg.engine.zero_for("eval")
        whole = backend(cfg.engine.backend).full_param_bytes(model)
        copy, why = model_copy_choice(cfg.eval.model_copy, zero.stage, whole, dist, loaded=True)
        if dist.world_size > 1 and zero.stage == 3:  # every rank takes the same path: partitioned if any must
            from mlu_dist import comm

            ensure_process_group(dist)
            choices = comm.all_gather_object((copy, why))
            copy, why = next((c for c in choices if c[0] == "partitioned"), choices[0])
        say(dist, f"eval: model copy: {copy} ({why})")
        lockstep = copy == "partitioned" and dist.world_size > 1
        engine = None
        if copy == "partitioned":
            engine = frozen_engine(model, cfg.engine, dist, "eval")
            forward, module = engine.forward, engine.module
        else:  # a whole model per rank, on its device: ranks only meet to gather the results
            ensure_process_group(dist)
            forward, module = device_forward(model, dist.device), model
        evaluator = Evaluator(forward, tokenizer, facts, split, cfg.eval, Rank(dist.rank, dist.world_size, lockstep),
                              cfg.model.max_seq_len, cache_kwarg(module), end_ids(tokenizer, module))
        say(dist, f"eval: {', '.join(todo)} on {len(evaluator.targets)} target + {len(evaluator.controls)} control "
                  f"facts x {len(langs)} languages ({dist.world_size} rank(s){', ZeRO-3' if lockstep else ''})")
        # metrics computed from the probe pass alone share it; a metric with work of its own is a
        # step of its own. Every step is saved as it completes, so a killed eval resumes from there.
        steps = [[g for g in todo if not METRICS[g].own_pass]] + [[g] for g in todo if METRICS[g].own_pass]
        started = time.perf_counter()
        for step in [s for s in steps if s]:
            stored |= evaluator.run(step)
            skipped |= evaluator.skipped
            notes |= evaluator.notes
            if dist.is_main:
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                rundir.atomic_write_json(eval_file, identity | {"values": stored, "skipped": skipped, "notes": notes})
        say(dist, f"eval: metrics computed in {time.perf_counter() - started:.1f} s")
        if engine is not None:
            engine.close()
    values = {name: stored[name] for g in cfg.eval.metrics for name in value_names(g) if name in stored}
    summary = summarize(values, inject_langs, cfg.eval.n_boot, cfg.eval.ci_level, cfg.eval.seed,
                        groups=cfg.data.groups)
    if dist.is_main:
        for name, why in skipped.items():
            say(dist, f"eval: {name} skipped: {why}")
        extra = {"skipped": skipped, "notes": notes} if skipped or notes else {}  # mini-world SUMMARY unchanged
        rundir.atomic_write_json(Path(out_dir) / "SUMMARY.json", {"inject_langs": inject_langs or [],
                                                                  "langs": langs, "metrics": summary} | extra)
    return summary


def run_eval(cfg: ExperimentConfig, run_dir: str | None = None, model: str | None = None, out: str | None = None,
             overwrite: bool = False) -> Path:
    """Evaluate a run's exported model (``run_dir``) or any model directory (``model``)."""
    if run_dir is None and model is None:
        raise FileNotFoundError("give a run directory or --model PATH")
    model_path = Path(model) if model else Path(run_dir) / "model"
    if not (model_path / "config.json").exists() and (model or Path(run_dir).exists()):
        raise FileNotFoundError(f"no model at {model_path} (config.json missing); did the run finish?")
    if run_dir is not None and not Path(run_dir).exists():
        raise FileNotFoundError(f"run directory '{run_dir}' does not exist")
    if out:
        out_dir = Path(out)
    elif run_dir is not None:
        out_dir = Path(run_dir) / "eval"
    else:
        out_dir = Path(cfg.run.out_dir) / "eval" / (cfg.run.name or rundir.config_hash(cfg, keep=("data", "eval")))
    inject_langs = None
    meta = Path(run_dir) / "meta.json" if run_dir is not None else None
    if meta is not None and meta.exists() and json.loads(meta.read_text()).get("job") in ("inject", "unlearn"):
        inject_langs = list(cfg.inject.langs)
    summary = evaluate_model(cfg, model_path, out_dir, overwrite, inject_langs)
    dist = setup_env(cfg.engine.timeout_min)
    if dist.is_main:
        langs = list(cfg.eval.langs) or list(cfg.data.langs)
        print(format_table(summary, langs, inject_langs))
        print(f"eval: {out_dir}/EVAL.json, {out_dir}/SUMMARY.json")
    return out_dir
