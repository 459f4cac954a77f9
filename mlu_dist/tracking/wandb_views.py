"""W&B workspaces and reports from a dashboard plan (``mlu_dist/dashboard.py``): the only module
that imports ``wandb_workspaces``.

Building the library's objects and dumping their pydantic models needs no network (report run
sets are left without entity/project offline: the library looks a project's id up on the server
when a run set names one). Saving them (``Workspace.save``, ``Report.save``) needs the W&B API.
"""

from __future__ import annotations

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws
from wandb_workspaces import expr

CONTEXT = "#d9d9d9"
"""Lines of the workspace's other runs in a panel: W&B draws every run of the view in every panel,
so the panel's own runs are coloured and the rest light grey."""


def _panel(p: dict, context: bool):
    if p["kind"] == "media":
        return wr.MediaBrowser(title=p["title"], media_keys=list(p["keys"]), num_columns=len(p["keys"]),
                               layout=wr.Layout(w=24, h=10))
    colours = {s: v["color"] for s, v in p["series"].items()}
    if context:
        colours |= {f"{rid}:{key}": CONTEXT for rid in p["context"] for key in p["y"]}
    return wr.LinePlot(title=p["title"], x=p["x"], y=list(p["y"]), title_x=p["x"],
                       range_y=tuple(p["range_y"]) if p.get("range_y") else (None, None),
                       line_colors=colours, line_titles={s: v["title"] for s, v in p["series"].items()},
                       line_marks={s: v["mark"] for s, v in p["series"].items()}, legend_position="east")


def workspace(definition: dict, entity: str, project: str) -> ws.Workspace:
    """The saved view: runs of the sweep's group and job types, one section per injection language."""
    w = definition["workspace"]
    sections = [ws.Section(name=s["name"], is_open=True, panels=[_panel(p, context=True) for p in s["panels"]],
                           layout_settings=ws.SectionLayoutSettings(columns=s["columns"], rows=s["rows"]))
                for s in w["sections"]]
    filters = [expr.Metric("Group") == w["group"], expr.Metric("JobType").isin(list(w["job_types"]))]
    return ws.Workspace(entity=entity, project=project, name=w["name"], sections=sections,
                        settings=ws.WorkspaceSettings(max_runs=w["max_runs"], tooltip_number_of_runs="all_runs"),
                        runset_settings=ws.RunsetSettings(filters=filters,
                                                          order=[expr.Ordering(expr.Metric("Name"))]))


def report(definition: dict, entity: str, project: str) -> wr.Report:
    """The report: headings, Markdown (report.md's tables) and panel grids, each with its own run set
    (the runs its panels draw, by id). ``entity``/``project`` empty: run sets name no project."""
    blocks = []
    for b in definition["report"]["blocks"]:
        if b["kind"] == "h2":
            blocks.append(wr.H2(text=b["text"]))
        elif b["kind"] == "h3":
            blocks.append(wr.H3(text=b["text"]))
        elif b["kind"] == "markdown":
            blocks.append(wr.MarkdownBlock(text=b["text"]))
        elif b["kind"] == "panels":
            runset = wr.Runset(entity=entity, project=project, name=b["name"],
                               filters=[expr.Metric("ID").isin(list(b["runs"]))])
            blocks.append(wr.PanelGrid(runsets=[runset], panels=[_panel(p, context=False) for p in b["panels"]]))
        else:
            raise ValueError(f"unknown report block kind {b['kind']!r} (h2, h3, markdown, panels)")
    r = definition["report"]
    return wr.Report(project=project or definition["project"], entity=entity, title=r["title"],
                     description=r["description"], blocks=blocks, width="fluid")


def serialise(definition: dict) -> dict:
    """The workspace and report as the library's own models (``View``, ``ReportViewspec``), JSON-ready,
    built without any network."""
    view = workspace(definition, definition["entity"], definition["project"])._to_model()
    spec = report(definition, "", "")._to_model()
    spec.project.entity_name = definition["entity"]
    return {"wandb_workspaces": _version(), "workspace": view.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "report": spec.model_dump(by_alias=True, exclude_none=True, mode="json")}


def load(serialised: dict) -> tuple[ws.Workspace, wr.Report]:
    """The library's objects back from :func:`serialise`'s dump (its models validate it)."""
    from wandb_workspaces.reports.v2 import internal as report_models
    from wandb_workspaces.workspaces import internal as view_models

    view = view_models.View.model_validate(serialised["workspace"])
    spec = report_models.ReportViewspec.model_validate(serialised["report"])
    return ws.Workspace._from_model(view), wr.Report._from_model(spec)


def save(definition: dict, entity: str, project: str, previous: dict | None = None) -> dict:
    """Create (or, with ``previous`` ids from an earlier push to the same project, update) the
    workspace and the report in W&B; returns their ids and URLs. Needs network and a key."""
    previous = previous or {}
    view = workspace(definition, entity, project)
    if previous.get("workspace"):
        view._internal_name, view._internal_id = previous["workspace"]["name"], previous["workspace"]["id"]
    view.save()
    rep = report(definition, entity, project)
    if previous.get("report"):
        rep.id = previous["report"]["id"]
    rep.save()
    return {"entity": entity, "project": project,
            "workspace": {"name": view._internal_name, "id": view._internal_id, "url": view.url},
            "report": {"id": rep.id, "url": rep.url}}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wandb-workspaces")
    except PackageNotFoundError:
        return "unknown"
