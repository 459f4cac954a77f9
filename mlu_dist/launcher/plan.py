"""Expand a sweep spec into cells and a job graph: base once, an injection per language x seed,
an unlearning run per injection x method x forget setting, and one report."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from mlu_dist.runs import rundir
from mlu_dist.config import ConfigError, load_config, resolve_config_path, to_yaml, validate
from mlu_dist.data.translate import TranslateConfig
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.launcher.spec import STAGES, SweepSpec
from mlu_dist.logs import get_logger

log = get_logger(__name__)


@dataclass
class Cell:
    stage: str  # translate / base / inject / unlearn / report
    id: str  # deterministic: a hash of the cell's resolved config
    label: str
    config: ExperimentConfig | TranslateConfig | None
    run_dir: Path
    deps: list[str] = field(default_factory=list)  # ids of the cells this one waits for
    outputs: list[Path] = field(default_factory=list)
    """Further run directories the cell makes (its relearning attacks): finished only when each holds DONE.json."""

    def config_yaml(self) -> str:
        return to_yaml(self.config) if self.config is not None else ""


def sweep_dir(spec: SweepSpec) -> Path:
    return Path(spec.out_dir) / spec.name


def forget_set(spec: str, inject_lang: str, cfg) -> tuple[str, ...]:
    """The languages of forget setting ``spec`` for an injection in ``inject_lang``; a setting that
    names no language, set or declared group is one ConfigError."""
    from mlu_dist.unlearn.config import resolve_langs

    try:
        return tuple(resolve_langs(spec, inject_lang.split("+"), list(cfg.data.langs), cfg.data.groups))
    except ValueError as exc:
        raise ConfigError(f"axes.forget_langs: '{spec}': {exc}") from None


def expand(spec: SweepSpec) -> list[Cell]:
    from mlu_dist.runs.layout import base_run_dir, inject_run_dir, relearn_run_dir, study_hash
    from mlu_dist.relearn.config import parse_attack

    root = sweep_dir(spec)
    common = [f"tracking.group={spec.name}"] + list(spec.overrides) + [f"run.out_dir={root}"]
    translate = translate_cells(spec, load_config(ExperimentConfig, spec.configs, common))
    if translate:
        common.append(f"data.source={translate[0].config.out}")
    base_cfg = load_config(ExperimentConfig, spec.configs, common)
    base = Cell("base", "base-" + rundir.config_hash(base_cfg, keep=("data", "model", "base"))[:10], "base",
                base_cfg, base_run_dir(base_cfg), [c.id for c in translate])
    # injections that start from a given model (a pretrained 8B, say) need no base training
    cells = translate + ([] if base_cfg.inject.from_model else [base])
    injects, unlearns = [], []
    axes = spec.axes
    attacks = [parse_attack(a) for a in axes.relearn_attacks]
    attack_list = f"relearn.attacks=[{','.join(str(a) for a in attacks)}]"
    for seed in spec.axes.seeds:
        if spec.retain_model:
            injects.append(retain_cell(spec, common, seed, [c.id for c in cells if c.stage == "base"]))
        for lang in spec.axes.inject_langs:
            unlearned = not axes.unlearn_langs or lang in axes.unlearn_langs
            over = common + [f"inject.langs=[{lang.replace('+', ',')}]", f"inject.split_seed={seed}",
                             f"inject.train.seed={seed}", f"unlearn.train.seed={seed}", f"relearn.train.seed={seed}",
                             attack_list if unlearned else "relearn.attacks=[]"]
            cfg = load_config(ExperimentConfig, spec.configs, over)
            digest = study_hash(cfg, ("data", "model", "base", "inject"))[:10]
            cfg.run.name = f"{lang}-s{seed}-{digest}"
            cell = Cell("inject", f"inject-{lang}-s{seed}-{digest}", f"inject {lang} seed {seed}", cfg,
                        inject_run_dir(cfg), [c.id for c in cells if c.stage == "base"] or [c.id for c in translate])
            if unlearned and cfg.relearn.controls:  # the same attacks on the injected and the base model
                starts = ("injected", "base") if not cfg.inject.from_model or Path(cfg.inject.from_model).exists() \
                    else ("injected",)
                cell.outputs = [relearn_run_dir(cfg, cell.run_dir, start, a) for a in cfg.relearn.parsed(
                    list(cfg.inject.langs), list(cfg.data.langs), cfg.data.groups) for start in starts]
            injects.append(cell)
            if unlearned:
                unlearns += unlearn_cells(spec, cell, cfg, over, attack_list, lang)
    report = Cell("report", "report", "report", None, root / "report", [c.id for c in unlearns] or [c.id for c in injects])
    return cells + injects + unlearns + [report]


def unlearn_cells(spec: SweepSpec, inj: Cell, cfg: ExperimentConfig, over: list[str], attack_list: str,
                  lang: str) -> list[Cell]:
    """The unlearning cells of injection ``inj`` (in ``lang``, a language or a '+'-joined set): each
    method x forget scope x forget setting (settings naming the same languages planned once) and,
    for a method that distils a teacher, the sweep's teacher cell, which that method's cells wait for."""
    from mlu_dist.unlearn.methods import METHODS

    axes = spec.axes
    cells: dict[str, Cell] = {}  # by id: a teacher the grid also holds is one cell
    for method, scope in ((m, s) for m in axes.methods for s in axes.forget_scopes):
        method_cfg = _method_config(spec, inj, over, method, scope, attack_list)
        teacher = None
        if METHODS[method].teacher_args:
            teacher, teacher_lang = teacher_cell(spec, inj, cfg, over, scope, attack_list, lang)
            cells.setdefault(teacher.id, teacher)
            method_cfg.unlearn.method_args |= METHODS[method].teacher_args(teacher.run_dir, teacher_lang)
        planned: dict[tuple[str, ...], str] = {}
        for forget in axes.forget_langs:
            # settings that name the same languages for this injection (en / orig / en+orig for an
            # English injection) would be the same run: plan it once. A distilling method's run is
            # set by its students, the forget languages besides the teacher's.
            langs = forget_set(forget, lang, cfg)
            key = tuple(x for x in langs if x != teacher_lang) if teacher else langs
            if teacher and not key:
                log.info("sweep: %s %s <- %s: the forget set is the teacher's language only, nothing to distil: "
                         "not planned", method, forget, inj.label)
                continue
            if key in planned:
                if teacher:
                    log.info("sweep: %s %s <- %s: distils into the same languages as %s: not planned", method,
                             forget, inj.label, planned[key])
                continue
            planned[key] = forget
            ucell = _unlearn_cell(inj, method_cfg, forget, scope, lang)
            ucell.deps += [teacher.id] if teacher else []
            cells.setdefault(ucell.id, ucell)
    return list(cells.values())


def teacher_cell(spec: SweepSpec, inj: Cell, cfg: ExperimentConfig, over: list[str], scope: str, attack_list: str,
                 lang: str) -> tuple[Cell, str]:
    """The sweep's teacher run for injection ``inj`` (in ``lang``; same seed, forget scope ``scope``)
    and its one forget language."""
    t = spec.teacher
    langs = forget_set(t.forget_langs, lang, cfg)
    if len(langs) != 1:
        raise ConfigError(f"teacher.forget_langs: '{t.forget_langs}' names {len(langs)} languages for the {lang} "
                          f"injection ({', '.join(langs)}); a teacher is unlearned in one: en, orig or a language code")
    method_cfg = _method_config(spec, inj, over, t.method, scope, attack_list)
    return _unlearn_cell(inj, method_cfg, t.forget_langs, scope, lang), langs[0]


def _method_config(spec: SweepSpec, inj: Cell, over: list[str], method: str, scope: str, attack_list: str
                   ) -> ExperimentConfig:
    """One config load per method and scope (its forget settings are copies of it)."""
    attacked = not spec.axes.relearn_methods or method in spec.axes.relearn_methods
    return load_config(ExperimentConfig, [*spec.configs, *method_files(method)],
                       over + [f"unlearn.method={method}", f"unlearn.from_run={inj.run_dir}",
                               f"unlearn.forget_scope={scope}", attack_list if attacked else "relearn.attacks=[]"])


def _unlearn_cell(inj: Cell, method_cfg: ExperimentConfig, forget: str, scope: str, lang: str) -> Cell:
    """The cell unlearning ``inj`` (in ``lang``) with ``method_cfg`` in forget setting ``forget``."""
    from mlu_dist.runs.layout import relearn_run_dir, study_hash, unlearn_run_dir

    ucfg = copy.deepcopy(method_cfg)
    ucfg.unlearn.forget_langs = forget
    validate(ucfg)
    u = ucfg.unlearn
    udigest = study_hash(ucfg, ("data", "model", "base", "inject", "unlearn"))[:10]
    scoped = scope != "all"  # the default scope keeps its cells' names: adding a scope reuses them
    name = f"{u.method}-{forget.replace('+', '_')}" + (f"-{scope}" if scoped else "")
    ucfg.run.name = f"{name}-{udigest}"
    seed = ucfg.inject.split_seed
    ucell = Cell("unlearn", f"unlearn-{lang}-s{seed}-{name}-{udigest}",
                 f"unlearn {u.method} {forget}{' ' + scope if scoped else ''} <- {lang} s{seed}", ucfg,
                 unlearn_run_dir(ucfg), [inj.id])
    ucell.outputs = [relearn_run_dir(ucfg, ucell.run_dir, "unlearned", a)
                     for a in ucfg.relearn.parsed(list(ucfg.inject.langs), list(ucfg.data.langs), ucfg.data.groups)]
    return ucell


def retain_cell(spec: SweepSpec, common: list[str], seed: int, after: list[str]) -> Cell:
    """The seed's retain model: the first injection's fine-tuning with ``inject.retain_only`` (no
    fake data), trained once and shared by every cell of the seed as the reference."""
    from mlu_dist.runs.layout import inject_run_dir, study_hash

    lang = spec.axes.inject_langs[0]
    cfg = load_config(ExperimentConfig, spec.configs, common + [
        f"inject.langs=[{lang.replace('+', ',')}]", "inject.retain_only=true", f"inject.split_seed={seed}",
        f"inject.train.seed={seed}", "relearn.attacks=[]"])
    digest = study_hash(cfg, ("data", "model", "base", "inject"))[:10]
    cfg.run.name = f"retain-s{seed}-{digest}"
    return Cell("inject", f"inject-retain-s{seed}-{digest}", f"retain model seed {seed}", cfg, inject_run_dir(cfg),
                after)


def method_files(method: str) -> list[str]:
    """The method's shipped settings (configs/methods/<name>.yaml), or none for a method without a
    file (a plugin's: its Settings defaults apply, ``unlearn.method_args`` overrides them)."""
    try:
        resolve_config_path(f"methods/{method}")
    except ConfigError:
        return []
    return [f"methods/{method}"]


def _source_lang(t: TranslateConfig) -> str:
    """The language of a translation's source: the mapping's, a fact file's first record's, else en."""
    if t.mapping or t.map:
        from mlu_dist.data.importer import read_mapping

        return read_mapping(t.mapping or None, t.map).lang
    path = Path(t.source) / "facts.jsonl" if Path(t.source).is_dir() else Path(t.source)
    if path.suffix == ".jsonl" and path.exists():
        with open(path, encoding="utf-8") as fh:
            return json.loads(fh.readline()).get("lang", "en")
    return "en"


def translate_cells(spec: SweepSpec, cfg: ExperimentConfig) -> list[Cell]:
    """One translate cell per language of data.langs other than the source's, when the sweep makes
    its data (``spec.translate.source``); its run dir is that language's part. The cell id carries
    the translation settings: other settings are other cells (and refused in the same directory)."""
    t = spec.translate
    if not t.source:
        return []
    out = t.out or str(sweep_dir(spec) / "data")
    src = _source_lang(t)
    langs = [lang for lang in cfg.data.langs if lang != src]
    # paths as the jobs will see them, wherever Slurm starts them
    source = str(Path(t.source).resolve()) if Path(t.source).exists() else t.source
    mapping = str(resolve_config_path(t.mapping).resolve()) if t.mapping else ""
    settings = {k: getattr(t, k) for k in ("source", "mapping", "model", "num_beams", "max_tokens")}
    digest = hashlib.sha256(json.dumps(settings | {"map": list(t.map)}, sort_keys=True).encode()).hexdigest()[:8]
    cells = []
    for lang in langs:
        tcfg = TranslateConfig(**{**vars(t), "source": source, "mapping": mapping, "to": [lang], "langs": langs,
                                  "out": out})
        cells.append(Cell("translate", f"translate-{lang}-{digest}", f"translate {src}->{lang}", tcfg,
                          Path(out) / "parts" / lang))
    return cells


def jobs_of(cells: list[Cell]) -> list[dict]:
    """How the cells become Slurm jobs: a translation array (when the sweep makes its data), one
    base job, one injection array, one unlearning array per injection (each depending on its own
    injection task) and a second one for cells that wait for a teacher, one report job."""
    by_stage = {s: [c for c in cells if c.stage == s] for s in STAGES}
    jobs = [{"name": "translate", "cells": [c.id for c in by_stage["translate"]], "array": True, "after": []}] \
        if by_stage["translate"] else []
    first = ["translate"] if by_stage["translate"] else []
    if by_stage["base"]:
        jobs.append({"name": "base", "cells": [c.id for c in by_stage["base"]], "array": False, "after": first})
    jobs.append({"name": "inject", "cells": [c.id for c in by_stage["inject"]], "array": True,
                 "after": ["base"] if by_stage["base"] else first})
    for i, inj in enumerate(by_stage["inject"]):
        first, then = unlearn_waves(by_stage["unlearn"], inj.id)
        if first:
            jobs.append({"name": f"unlearn[{inj.id}]", "cells": [c.id for c in first], "array": True,
                         "after": [f"inject_{i}"]})
        if then:
            jobs.append({"name": f"unlearn[{inj.id}+]", "cells": [c.id for c in then], "array": True,
                         "after": [f"unlearn[{inj.id}]"]})
    jobs.append({"name": "report", "cells": ["report"], "array": False,
                 "after": [j["name"] for j in jobs if j["name"].startswith("unlearn")] or ["inject"]})
    return jobs


def unlearn_waves(unlearns: list[Cell], inject_id: str) -> tuple[list[Cell], list[Cell]]:
    """An injection's unlearning cells as two arrays: those that wait only for the injection, then
    those that also wait for a cell of the first (a distilling method's teacher)."""
    mine = [c for c in unlearns if c.deps and c.deps[0] == inject_id]
    return [c for c in mine if len(c.deps) == 1], [c for c in mine if len(c.deps) > 1]


def format_plan(spec: SweepSpec, cells: list[Cell]) -> str:
    lines = [f"sweep '{spec.name}' -> {sweep_dir(spec)}  (executor: {spec.executor})", "", "cells:"]
    for c in cells:
        lines.append(f"  {c.stage:<8} {c.id:<52} {c.run_dir}")
        if c.outputs:
            names = sorted({o.name.rsplit("-", 1)[0] for o in c.outputs})
            lines.append(f"  {'':<8} + {len(c.outputs)} relearning attack(s): {', '.join(names)}")
    counts = {s: sum(c.stage == s for c in cells) for s in STAGES if s != "translate" or any(c.stage == s for c in cells)}
    lines += ["", "jobs (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + "):"]
    for job in jobs_of(cells):
        kind = f"array of {len(job['cells'])}" if job["array"] else "job"
        after = f"  after: {', '.join(job['after'])}" if job["after"] else ""
        lines.append(f"  {job['name']:<40} {kind}{after}")
    lines += ["", "the same with plain sbatch (slurm/sbatch/mlu-cell.sbatch; $JOB_translate / $JOB_base / $JOB_inject "
                  "= the job ids sbatch printed, $JOB_inject_i = <inject array id>_i, $JOB_unlearn[<inject>] = that "
                  "injection's first unlearning array):"]
    res = spec.resources
    root = sweep_dir(spec)
    for job in jobs_of(cells):
        stage = job["name"].split("[")[0]
        r = getattr(res, stage)
        opts = [f"--nodes={r.nodes}", f"--ntasks-per-node={r.tasks_per_node}", f"--cpus-per-task={r.cpus_per_task}",
                f"--mem={int(r.mem_gb * 1024)}M", f"--time={r.time_min}"]
        opts += [f"--gpus-per-node={r.gpus_per_node}"] if r.gpus_per_node else []
        opts += [f"--{k}={getattr(r, k)}" for k in ("partition", "account", "qos", "constraint") if getattr(r, k)]
        if job["array"]:
            opts.insert(0, f"--array=0-{len(job['cells']) - 1}%{r.array_parallelism}")
        if job["after"]:
            kind = "afterany" if stage == "report" else "afterok"
            opts.append(f"--dependency={kind}:" + ":".join(f"$JOB_{a}" for a in job["after"]))
        after_cell = job["name"][len("unlearn["):-1] if stage == "unlearn" else ""
        lines.append(f"  sbatch {' '.join(opts)} slurm/sbatch/mlu-cell.sbatch {root} {stage} {after_cell}".rstrip())
    lines += ["", "dependency edges:"]
    for c in cells:
        for d in c.deps[:3]:
            lines.append(f"  {d} -> {c.id}")
        if len(c.deps) > 3:
            lines.append(f"  ... and {len(c.deps) - 3} more -> {c.id}")
    return "\n".join(lines)


def write_cells(spec: SweepSpec, cells: list[Cell]) -> Path:
    """Each cell's resolved config as a YAML file (what the jobs read) and the cell table."""
    root = sweep_dir(spec)
    (root / "cells").mkdir(parents=True, exist_ok=True)
    for c in cells:
        if c.config is not None:
            path = root / "cells" / f"{c.id}.yaml"
            text = c.config_yaml()
            if not path.exists() or path.read_text() != text:
                rundir.atomic_write_text(path, text)
    table = [{"id": c.id, "stage": c.stage, "label": c.label, "run_dir": str(c.run_dir), "deps": c.deps,
              **({"outputs": [str(o) for o in c.outputs]} if c.outputs else {})} for c in cells]
    rundir.atomic_write_json(root / "cells.json", table)
    rundir.atomic_write_text(root / "sweep.yaml", to_yaml(spec))
    return root


def load_cells(root: Path) -> list[dict]:
    return json.loads((Path(root) / "cells.json").read_text())
