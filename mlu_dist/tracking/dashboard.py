"""`mlu dashboard SWEEP_DIR`: the study as a W&B workspace and report, defined as code.

A *plan* (plain JSON) is made from what the sweep's runs actually logged: one workspace section per
injection language (its spread while injecting, one forgetting-curve panel per method x forget
setting with one line per probe language coloured by resource group as in ``mlu report``, any
relearning attacks, utility), and a report that mirrors ``report/report.md``. Every key a panel
names is checked against the history of every run it draws (the ``.wandb`` files, else
``metrics.jsonl``); a missing key is refused, listed. Panels exist only for what the sweep ran.

Nodes have no network: the plan and the library's own serialised models (``wandb_views.py``, the
only module that imports ``wandb_workspaces``) are written to ``report/dashboard.json``, built
without any network; ``mlu sync`` or ``mlu dashboard`` pushes them where W&B can be reached.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mlu_dist.langs import group_columns, group_label, lang_colour, lang_index, unknown_langs
from mlu_dist.results import RunRecord, find_runs, method_label, record_at
from mlu_dist.report import GROUPS, SETTING_NAMES, SETTINGS
from mlu_dist.tracking.dashboard_qa import qa_blocks, qa_section

FORMAT = "mlu_dist-dashboard/1"
FILE = Path("report") / "dashboard.json"
# hex of mlu report's matplotlib colours (W&B takes CSS colours; tab:* are matplotlib's own names)
HEX = {"black": "#000000", "tab:blue": "#1f77b4", "tab:orange": "#ff7f0e", "tab:green": "#2ca02c",
       "tab:red": "#d62728", "tab:purple": "#9467bd", "tab:brown": "#8c564b", "tab:pink": "#e377c2",
       "tab:olive": "#bcbd22", "tab:cyan": "#17becf", "tab:gray": "#7f7f7f"}
"""matplotlib's tab10 colours as W&B takes them (the report's curves and the dashboard agree)."""


class DashboardError(ValueError):
    """The dashboard cannot be built as asked (missing keys, no runs), with what is wrong."""


@dataclass
class LoggedRun:
    """One run of the sweep as W&B knows it: id, job type, cell and the history keys it logged."""

    run_dir: Path
    job: str
    id: str
    keys: set[str]
    source: str
    """Where ``keys`` were read: the run's ``.wandb`` file(s), or ``metrics.jsonl`` when it has none."""
    group: str = ""
    project: str = ""
    entity: str = ""
    inject: str = ""
    method: str = ""
    setting: str = ""
    seed: int = 0
    langs: list[str] = field(default_factory=list)
    groups: dict = field(default_factory=dict)
    """The resource groups the run declared (data.groups; empty = the defaults)."""
    start: str = ""
    """Relearning attacks: the model attacked (unlearned, injected, base)."""
    attack: str = ""
    qa: bool = False
    """A run of a QA study (data.qa)."""

    def has(self, key: str, media: bool = False) -> bool:
        return key in self.keys or (media and any(k.startswith(key + "/") for k in self.keys))


def _jsonl_keys(path: Path, job: str) -> set[str]:
    from mlu_dist.tracking import read_jsonl

    keys = {k for row in read_jsonl(path) for k in row}
    return (keys - {"step"}) | ({f"{job}/step"} if "step" in keys else set())


def _cell(run: LoggedRun, record: RunRecord) -> None:
    """Fill in the run's cell from the results index (and, for an attack, its directory's name)."""
    run.inject = record.inject
    run.seed = record.seed
    run.langs = [x for x in (record.get("eval.langs", []) or record.get("data.langs", []) or [])
                 if not unknown_langs([x])]
    run.groups = record.groups
    run.qa = bool(record.get("data.qa", False))
    if run.job in ("unlearn", "relearn"):
        run.method = method_label(str(record.get("unlearn.method")), str(record.get("unlearn.forget_scope", "all")))
        run.setting = str(record.get("unlearn.forget_langs"))
    if run.job == "relearn":
        run.start, run.attack = record.run_dir.name.split("-", 1)[0], ",".join(record.get("relearn.attacks", []) or [])
        if run.start != "unlearned":
            run.method = run.setting = ""
    if not run.group:
        run.group, run.project = str(record.get("tracking.group")), str(record.get("tracking.project"))
        run.entity = str(record.get("tracking.entity"))


def read_run(run_dir: Path, job: str) -> LoggedRun:
    """What one run logged: the union of its ``.wandb`` files' history keys (a requeued run has one
    folder per process), else its ``metrics.jsonl``."""
    from mlu_dist.tracking.wandb_tracker import read_offline_run, run_id

    folders = sorted(p for p in Path(run_dir).glob("wandb/*run-*") if p.is_dir())
    if folders:
        logged = [read_offline_run(f) for f in folders]
        keys = {k for r in logged for row in r["history"] for k in row}
        where = logged[-1]["run"]
        folder_id = re.sub(r"^(offline-)?run-\d{8}_\d{6}-", "", folders[-1].name)  # [offline-]run-<time>-<id>
        run = LoggedRun(Path(run_dir), job, where.get("id") or folder_id, keys,
                        ".wandb", where.get("group", ""), where.get("project", ""), where.get("entity", ""))
    else:
        run = LoggedRun(Path(run_dir), job, run_id(run_dir, job), _jsonl_keys(Path(run_dir) / "metrics.jsonl", job),
                        "metrics.jsonl")
    _cell(run, record_at(run_dir) if job != "report" else RunRecord(Path(run_dir), job))
    return run


def sweep_runs(root: Path) -> list[LoggedRun]:
    """Every run under ``root`` (the results index; the report run lives in report/)."""
    runs = [read_run(record.run_dir, record.job) for record in find_runs(root)]
    report = Path(root) / "report"
    if list(report.glob("wandb/*run-*")):
        runs.append(read_run(report, "report"))
    return runs


def _lang_order(langs) -> list[str]:
    return sorted(set(langs), key=lambda x: (lang_index(x), x))


def colour(lang: str, groups: dict | None = None) -> str:
    """The colour of a probe language's line: its resource group's, as in ``mlu report``'s curves."""
    name = lang_colour(lang, groups)
    return HEX.get(name) or name


def _setting_name(setting: str) -> str:
    return SETTING_NAMES.get(setting, setting)


def curve_panel(title: str, step: str, prefix: str, metric: str, cell: list[LoggedRun], others: list[LoggedRun],
                inject: str, range_y=(0.0, 1.0)) -> dict:
    """A line plot of ``<prefix>/<lang>/<metric>`` against ``step``: one line per probe language of
    the cell's runs (colour by resource group, solid = injection language), other runs grey."""
    langs = _lang_order(lang for r in cell for lang in r.langs)
    y = [f"{prefix}/{lang}/{metric}" for lang in langs]
    seeds = len({r.seed for r in cell}) > 1
    series = {f"{r.id}:{prefix}/{lang}/{metric}": {
        "color": colour(lang, r.groups), "title": f"{lang} (seed {r.seed})" if seeds else lang,
        "mark": "solid" if lang in inject.split("+") else "dashed"} for r in cell for lang in r.langs}
    return {"kind": "line", "title": title, "x": step, "y": y, "runs": [r.id for r in cell], "series": series,
            "context": [r.id for r in others if r not in cell and any(r.has(k) for k in y)],
            "range_y": list(range_y) if range_y else None}


def run_panel(title: str, step: str, key: str, runs: list[LoggedRun], others: list[LoggedRun]) -> dict:
    """One key of several runs (utility): one line per run, titled by its method and setting."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    series = {f"{r.id}:{key}": {"color": palette[i % len(palette)], "mark": "solid",
                                "title": f"{r.method} {_setting_name(r.setting)} (seed {r.seed})"}
              for i, r in enumerate(runs)}
    return {"kind": "line", "title": title, "x": step, "y": [key], "runs": [r.id for r in runs], "series": series,
            "context": [r.id for r in others if r not in runs and r.has(key)], "range_y": None}


def _cells(runs: list[LoggedRun]) -> list[tuple[tuple[str, str], list[LoggedRun]]]:
    by = defaultdict(list)
    for r in runs:
        by[(r.method, r.setting)].append(r)
    order = lambda ms: (ms[0], SETTINGS.index(ms[1]) if ms[1] in SETTINGS else 99, ms[1])  # noqa: E731
    return [(k, sorted(by[k], key=lambda r: r.seed)) for k in sorted(by, key=order)]


def _curved(runs: list[LoggedRun]) -> list[LoggedRun]:
    """The unlearning runs with forgetting curves (a QA study's log them only when they evaluated
    while training)."""
    return [r for r in runs if r.job == "unlearn" and (not r.qa or any(k.startswith("forget/") for k in r.keys))]


def _section(inject: str, runs: list[LoggedRun]) -> dict:
    """The workspace section of one injection language (only what its runs logged)."""
    mine = [r for r in runs if r.inject == inject]
    unlearned = _curved(mine)
    attacks = [r for r in mine if r.job == "relearn" and any(k.startswith("relearn/") for k in r.keys)]
    panels = []
    for r in sorted((r for r in mine if r.job == "inject" and any(k.startswith("spread/") for k in r.keys)),
                    key=lambda r: r.seed):
        panels.append(curve_panel(f"injecting in {inject} (seed {r.seed}): fake preference", "inject/step", "spread",
                                  "fake_pref", [r], [x for x in runs if x.job == "inject"], inject, range_y=None))
    for (method, setting), cell in _cells(unlearned):
        panels.append(curve_panel(f"{method}: forget {_setting_name(setting)}", "unlearn/step", "forget",
                                  "fake_rate", cell, [x for x in runs if x.job == "unlearn"], inject))
    by_attack = defaultdict(list)
    for r in attacks:
        by_attack[(r.start, r.method, r.setting, r.attack)].append(r)
    for (start, method, setting, attack), cell in sorted(by_attack.items()):
        model = f"{method}: forget {_setting_name(setting)}" if start == "unlearned" else f"{start} model"
        panels.append(curve_panel(f"{model}, then relearning {attack}", "relearn/step", "relearn", "fake_rate",
                                  cell, [x for x in runs if x.job == "relearn"], inject))
    if unlearned:
        others = [x for x in runs if x.job == "unlearn"]
        panels.append(run_panel("utility: perplexity ÷ step 0 (the guard's ratio)", "unlearn/step",
                                "unlearn/ppl_ratio", unlearned, others))
        panels.append(run_panel("utility: perplexity (all languages)", "unlearn/step", "unlearn/ppl", unlearned,
                                others))
    return {"name": f"injected in {inject}", "panels": panels,
            "columns": max(1, min(4, len({r.setting for r in unlearned}) or 3)),
            "rows": len({r.method for r in unlearned}) + 1}


def reproduced_text(grid: dict) -> str:
    """What reproduced and what did not, from ``grid.json``: per setting where the fake was removed
    and where it survived, and, where the grid carries the paper's expectation, how many cells agree."""
    paper = grid.get("paper") or {}
    lines = [f"✓ = fake_rate after unlearning below {grid.get('threshold', 0.2):.2f}."]
    if paper.get("cells"):
        lines += ["", f"**{paper['agree']}/{paper['cells']} grid cells agree with the paper** "
                      f"({paper.get('source', '')})."]
    lines.append("")
    def order(r):
        return _inject_order(r["inject"]), r["method"], SETTINGS.index(r["setting"]) if r["setting"] in SETTINGS else 99

    for r in sorted(grid.get("rows", []), key=order):
        cells = r.get("cells", {})
        cols = group_columns([*GROUPS, *cells])
        removed = [group_label(g) for g in cols if g in cells and cells[g]["removed"]]
        kept = [group_label(g) for g in cols if g in cells and not cells[g]["removed"]]
        line = (f"- **{r['inject']} · {r['method']} · forget {_setting_name(r['setting'])}**: removed in "
                f"{', '.join(removed) or 'no probe group'}; survives in {', '.join(kept) or 'none'}")
        if r.get("paper_cells"):
            differ = [group_label(g) for g in cols if g in cells and cells[g].get("agrees") is False]
            line += f"; {r['paper_agree']}/{r['paper_cells']} as the paper expects"
            line += f" (not in {', '.join(differ)})" if differ else ""
        if r.get("guard_tripped"):
            line += f"; the utility guard tripped in {r['guard_tripped']}/{r.get('runs', 1)} run(s)"
        lines.append(line)
    return "\n".join(lines)


def _report(root: Path, runs: list[LoggedRun], group: str, project: str) -> dict:
    """The report: report.md's text and tables, its spread figures (the report run's images) and the
    forgetting curves as live W&B panels, one panel grid (its own run set) per method x setting."""
    from mlu_dist.report import collect, grid_markdown, utility_markdown

    grid_file = root / "report" / "grid.json"
    grid = json.loads(grid_file.read_text()) if grid_file.exists() else {}
    unlearned = _curved(runs)
    blocks = [{"kind": "markdown", "text": (
        f"The sweep `{group}` in W&B: {len({r.inject for r in runs if r.job == 'inject'})} injection(s), "
        f"{sum(r.job == 'unlearn' for r in runs)} unlearning run(s). Text and tables are `mlu report`'s (`report/report.md`), "
        f"the curves are the runs' own W&B histories (colour by resource group: en black, high blue, low orange; "
        f"solid = the injection language). Built by `mlu dashboard {root}`.")}]
    if grid:
        blocks += [{"kind": "h2", "text": "What reproduced"}, {"kind": "markdown", "text": reproduced_text(grid)}]
    if grid.get("rows"):
        blocks += [{"kind": "h2", "text": "The paper's grid"},
                   {"kind": "markdown", "text": grid_markdown(grid["rows"], grid["threshold"])}]
    report_run = next((r for r in runs if r.job == "report"), None)
    qa = qa_blocks(root, report_run)
    blocks += qa
    media = [f"report/{n}" for n in ("spread_fake_rate", "groups_fake_rate") if report_run and report_run.has(
        f"report/{n}", media=True)]
    if media:
        blocks += [{"kind": "h2", "text": "Spread after injection"},
                   {"kind": "panels", "name": "the report run", "runs": [report_run.id], "panels": [
                       {"kind": "media", "title": "fake_rate: injection x probe language, and by probe group",
                        "keys": media, "runs": [report_run.id]}]}]
    if unlearned:
        blocks.append({"kind": "h2", "text": "Forgetting curves"})
    for inject in sorted({r.inject for r in unlearned}, key=_inject_order):
        blocks.append({"kind": "h3", "text": f"injected in {inject}"})
        for (method, setting), cell in _cells([r for r in unlearned if r.inject == inject]):
            name = f"{inject} · {method} · forget {_setting_name(setting)}"
            blocks.append({"kind": "panels", "name": name, "runs": [r.id for r in cell], "panels": [
                curve_panel(f"{method}: forget {_setting_name(setting)}", "unlearn/step", "forget", "fake_rate",
                            cell, [], inject),
                run_panel("utility: perplexity ÷ step 0", "unlearn/step", "unlearn/ppl_ratio", cell, [])]})
    found = collect(root) if unlearned and not qa else {}
    if found:
        blocks += [{"kind": "h2", "text": "Utility"}, {"kind": "markdown", "text": utility_markdown(found, root)}]
    return {"title": f"mlu_dist: {group}"[:128], "description": f"Learn-and-unlearn sweep {group} ({project})",
            "blocks": blocks}


def _inject_order(inject: str) -> tuple:
    return tuple(lang_index(x) for x in inject.split("+"))


def plan(root: str | Path, project: str = "", entity: str = "") -> tuple[dict, list[LoggedRun]]:
    """The dashboard of a sweep directory, from what its runs logged; ``project``/``entity`` override
    the sweep's tracking settings. Returns the plan and the runs it was made from."""
    root = Path(root)
    flags_file = root / "sweep_flags.json"
    flags = json.loads(flags_file.read_text()) if flags_file.exists() else {}
    runs = sweep_runs(root)
    groups = sorted({r.group for r in runs if r.group}, key=[r.group for r in runs].count)
    group = flags.get("wandb_group") or (groups[-1] if groups else "")
    if not group:
        raise DashboardError(f"{root}: no W&B group to show (no sweep_flags.json, and no run under it logged to "
                             f"W&B with a group); the dashboard selects a sweep's runs by their W&B group")
    notes = [f"left out: {r.run_dir} (W&B group '{r.group}', not '{group}')" for r in runs if r.group != group]
    mine = [r for r in runs if r.group == group]
    early = [r for r in mine if r.job in ("unlearn", "relearn") and f"{r.job}/step" not in r.keys]
    notes += [f"left out: {r.run_dir} (no curve point logged yet)" for r in early]
    mine = [r for r in mine if r not in early]
    w = flags.get("wandb") or {}
    project = project or w.get("project") or next((r.project for r in mine if r.project), "") or "mlu_dist"
    entity = entity or w.get("entity") or next((r.entity for r in mine if r.entity), "")
    sections = [_section(i, mine) for i in sorted({r.inject for r in mine if r.inject}, key=_inject_order)]
    sections = [s for s in sections if s["panels"]] + [s for s in [qa_section(next(
        (r for r in mine if r.job == "report"), None))] if s]
    drawn = {rid for s in sections for p in s["panels"] for rid in p["runs"] + p["context"]}
    if not drawn:
        raise DashboardError(f"{root}: nothing to show: no injection or unlearning run of W&B group '{group}' "
                             f"logged curves, no QA report figures (found {len(runs)} run(s))")
    job_types = sorted({r.job for r in mine if r.id in drawn})
    workspace = {"name": f"mlu_dist {group}", "group": group, "job_types": job_types,
                 "max_runs": max(10, sum(r.job in job_types for r in mine)), "sections": sections}
    listed = [{"id": r.id, "job": r.job, "run_dir": str(r.run_dir), "keys_from": r.source, "inject": r.inject,
               "method": r.method, "setting": r.setting, "seed": r.seed, "start": r.start, "attack": r.attack}
              for r in mine]
    return {"format": FORMAT, "sweep": str(root), "group": group, "project": project, "entity": entity,
            "runs": listed, "notes": notes, "workspace": workspace, "report": _report(root, mine, group, project)}, mine


def panels(definition: dict):
    """``(where, panel)`` for every panel of the workspace and of the report."""
    for s in definition["workspace"]["sections"]:
        for p in s["panels"]:
            yield f"workspace section '{s['name']}'", p
    for b in definition["report"]["blocks"]:
        for p in b.get("panels", []) if b["kind"] == "panels" else []:
            yield f"report panel grid '{b['name']}'", p


def check(definition: dict, runs: list[LoggedRun]) -> None:
    """Every key of every panel is in the history of every run the panel draws; else DashboardError
    listing each panel, run and missing key."""
    by_id = {r.id: r for r in runs}
    problems = []
    for where, p in panels(definition):
        need = [p["x"], *p["y"]] if p["kind"] == "line" else list(p["keys"])
        for rid in p["runs"]:
            r = by_id.get(rid)
            lacking = need if r is None else [k for k in need if not r.has(k, media=p["kind"] == "media")]
            if lacking:
                at = "not a run of this sweep" if r is None else f"{r.run_dir}, keys read from its {r.source}"
                problems.append(f"{where}, panel '{p['title']}': run {rid} ({at}) never logged {', '.join(lacking)}")
    if problems:
        raise DashboardError(f"{len(problems)} panel/run pair(s) name keys that were never logged; no dashboard "
                             f"written:\n  - " + "\n  - ".join(problems))


def write_dashboard(root: str | Path, project: str = "", entity: str = "") -> tuple[Path, dict]:
    """Plan, check and write ``ROOT/report/dashboard.json`` (the plan plus the library's serialised
    workspace and report, made offline); returns its path and the plan."""
    from mlu_dist.runs.rundir import atomic_write_json

    try:
        from mlu_dist.tracking.wandb_views import serialise
    except ImportError as exc:
        raise DashboardError(f"the dashboard needs the wandb-workspaces package ({exc}); install it with "
                             f"`pip install wandb-workspaces` (a dependency of mlu_dist)") from None
    definition, runs = plan(root, project, entity)
    check(definition, runs)
    definition["library"] = serialise(definition)
    out = Path(root) / FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, definition)
    return out, definition


def describe(definition: dict) -> str:
    """What the dashboard creates in W&B, in words."""
    w, r = definition["workspace"], definition["report"]
    where = f"{definition['entity'] or '<your default entity>'}/{definition['project']}"
    lines = [f"workspace '{w['name']}' in {where}: runs of W&B group '{w['group']}', job types "
             f"{', '.join(w['job_types'])}"]
    for s in w["sections"]:
        titles = "; ".join(p["title"] for p in s["panels"])
        lines.append(f"  section '{s['name']}' ({len(s['panels'])} panels): {titles}")
    grids = [b for b in r["blocks"] if b["kind"] == "panels"]
    heads = [b["text"] for b in r["blocks"] if b["kind"] == "h2"]
    lines.append(f"report '{r['title']}' in {where}: {', '.join(heads)} ({len(grids)} panel grid(s))")
    return "\n".join(lines + [f"  note: {n}" for n in definition.get("notes", [])])
