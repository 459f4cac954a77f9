"""`mlu dashboard` and `mlu sync`: what goes to W&B, and whether it got there, said truthfully.

Exit codes: 0 done (for `mlu dashboard`: written, and pushed when W&B could be reached), 1 some
upload or push failed (each named with its reason), 2 the dashboard cannot be built (named keys
missing), 3 nothing was attempted: the W&B server cannot be reached or there is no API key here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mlu_dist.tracking.dashboard import FILE

NOT_ATTEMPTED = 3


def readiness(url: str) -> list[str]:
    """Why nothing can be uploaded from here (empty when the server answers and a key is set)."""
    from mlu_dist.tracking.wandb_tracker import credentials_source, unreachable

    problems = []
    why = unreachable(url)
    if why:
        problems.append(f"the W&B server {url} cannot be reached: {why}")
    if not credentials_source(url):
        problems.append(f"no W&B API key for {url} on this machine: log in with `wandb login` (or set WANDB_API_KEY)")
    return problems


def push_dashboard(path: Path, project: str = "", entity: str = "") -> dict:
    """Push a saved definition (workspace + report); a second push to the same project updates the
    views the first one created (their ids are kept in ``dashboard.pushed.json``, no secrets)."""
    from mlu_dist.runs.rundir import atomic_write_json
    from mlu_dist.tracking.wandb_tracker import default_entity
    from mlu_dist.tracking.wandb_views import save

    definition = json.loads(Path(path).read_text())
    entity = entity or definition["entity"] or default_entity()
    project = project or definition["project"]
    pushed = Path(path).with_name("dashboard.pushed.json")
    previous = json.loads(pushed.read_text()) if pushed.exists() else {}
    if (previous.get("entity"), previous.get("project")) != (entity, project):
        previous = {}
    out = save(definition, entity, project, previous)
    atomic_write_json(pushed, out)
    return out


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def dashboard_command(sweep_dir: str, project: str = "", entity: str = "", offline: bool = False) -> int:
    """Build, check and save the sweep's dashboard; push it when W&B can be reached from here."""
    from mlu_dist.tracking.dashboard import DashboardError, describe, write_dashboard
    from mlu_dist.tracking.wandb_tracker import base_url, is_uploaded, offline_runs

    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"'{root}' is not a directory (give a sweep directory, e.g. runs/demo)")
    try:
        path, definition = write_dashboard(root, project, entity)
    except DashboardError as exc:
        print(f"mlu dashboard: error: {exc}", file=sys.stderr)
        return 2
    print(describe(definition))
    print(f"definition saved: {path}")
    if offline:
        print(f"not pushed (--offline); `mlu sync {root}` uploads the runs and then pushes it, where W&B can be "
              f"reached")
        return 0
    url = base_url()
    problems = readiness(url)
    if problems:
        print("not pushed: " + "; ".join(problems))
        print(f"it is ready to push: `mlu sync {root}` (the runs, then the dashboard) from a machine with network")
        return 0
    waiting = [f for f in offline_runs([root]) if not is_uploaded(f)]
    if waiting:
        print(f"note: {len(waiting)} offline run(s) are not uploaded yet; `mlu sync {root}` uploads them")
    try:
        out = push_dashboard(path, project, entity)
    except Exception as exc:  # the server said no: the definition stays saved
        print(f"mlu dashboard: push to {url} failed ({_first_line(exc)}); the definition is saved: {path}",
              file=sys.stderr)
        return 1
    print(f"workspace: {out['workspace']['url']}\nreport:    {out['report']['url']}")
    return 0


def sync_command(paths: list[str], project: str = "", entity: str = "", timeout: float = 1800.0) -> int:
    """Upload the offline runs under ``paths`` (each reported: uploaded / already uploaded / failed
    and why), then push each sweep's saved dashboard whose runs are all up."""
    from mlu_dist.tracking.wandb_tracker import base_url, is_uploaded, offline_runs, sync

    roots = [Path(p) for p in paths]
    missing = [str(p) for p in roots if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no such path(s): {', '.join(missing)}")
    folders = offline_runs(roots)
    dashboards = sorted({d for r in roots for d in [r / FILE, *r.rglob(str(FILE))] if d.is_file()})
    if not folders and not dashboards:
        print(f"mlu sync: no offline W&B run and no dashboard under {', '.join(map(str, roots))}: nothing to upload")
        return 0
    url = base_url()
    problems = readiness(url)
    if problems:
        done = sum(map(is_uploaded, folders))
        print("mlu sync: nothing uploaded:\n" + "".join(f"  - {p}\n" for p in problems), end="")
        print(f"  ready to push: {len(folders) - done} offline W&B run(s)"
              + (f" ({done} more already uploaded)" if done else "") + f" under {', '.join(map(str, roots))}")
        for d in dashboards:
            print(f"  ready to push: the dashboard {d} (after its runs)")
        print(f"  run `mlu sync {' '.join(map(str, roots))}` again where {url} can be reached and you are logged in "
              f"(e.g. a login node)")
        return NOT_ATTEMPTED
    results = sync(folders, project, entity, timeout)
    for r in results:
        print(f"  {r['status']:<16} {r['folder']}" + (f": {r['reason']}" if r["reason"] else ""))
    failed = [r for r in results if r["status"] == "failed"]
    counts = {s: sum(r["status"] == s for r in results) for s in ("uploaded", "already uploaded")}
    print(f"mlu sync: {counts['uploaded']} uploaded, {counts['already uploaded']} already uploaded, "
          f"{len(failed)} failed, of {len(results)} offline W&B run(s)")
    if any(w in r["reason"].lower() for r in failed for w in ("401", "403", "api key", "not logged in", "auth")):
        print("  the server refused the credentials: log in again with `wandb login --relogin` (or set WANDB_API_KEY)")
    bad = len(failed)
    for d in dashboards:
        behind = [r for r in failed if d.parent.parent in r["folder"].parents]
        if behind:
            print(f"  dashboard {d} not pushed: {len(behind)} of its runs did not upload")
            bad += 1
            continue
        try:
            out = push_dashboard(d, project, entity)
            print(f"  dashboard pushed: workspace {out['workspace']['url']}, report {out['report']['url']}")
        except Exception as exc:  # reported, the others go on
            print(f"  dashboard {d} failed to push: {_first_line(exc)}")
            bad += 1
    return 1 if bad else 0
