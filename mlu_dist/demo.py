"""`mlu demo`: the whole study on the mini-world through the local sweep executor.

base (cached) -> injections (en, de, ha) -> spread matrix -> GA and NPO in the paper's four forget
settings -> report, then the grid in the terminal. Nothing here is special-cased: it is the sweep
``configs/sweeps/demo.yaml`` (or ``demo-quick.yaml``) run by the same launcher a cluster uses, so
a demo that was interrupted resumes where it stopped when run again.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from mlu_dist.config import load_config
from mlu_dist.launcher.plan import expand, format_plan
from mlu_dist.launcher.run import submit
from mlu_dist.launcher.spec import SweepSpec


def demo_spec(quick: bool, seeds: list[int] | None, out_dir: str | None, workers: int | None,
              overrides: list[str]) -> SweepSpec:
    over = list(overrides)
    if seeds:
        over.append(f"axes.seeds=[{','.join(str(s) for s in seeds)}]")
    if out_dir:
        over.append(f"out_dir={out_dir}")
    if workers:
        over.append(f"local_workers={workers}")
    return load_config(SweepSpec, ["sweeps/demo-quick" if quick else "sweeps/demo"], over)


def _group_table(csv_path: Path) -> str:
    """The spread matrix in the paper's view: rows = injection language, columns = probe group."""
    rows: dict[str, dict[str, str]] = {}
    cols: list[str] = []
    with open(csv_path) as fh:
        for r in csv.DictReader(fh):
            row, col = r["inject_lang"], r["probe_group"]
            rows.setdefault(row, {})[col] = f"{float(r['mean']):.2f} [{float(r['ci_lo']):.2f},{float(r['ci_hi']):.2f}]"
            cols += [col] if col not in cols else []
    head = f"{'inject':<8}" + "".join(f"{c:>18}" for c in cols)
    return "\n".join([head] + [f"{row:<8}" + "".join(f"{cells.get(c, '–'):>18}" for c in cols)
                               for row, cells in rows.items()])


def run_demo(quick: bool = False, seeds: list[int] | None = None, out_dir: str | None = None,
             workers: int | None = None, overrides: list[str] = (), plan_only: bool = False) -> int:
    spec = demo_spec(quick, seeds, out_dir, workers, list(overrides))
    cells = expand(spec)
    if plan_only:
        print(format_plan(spec, cells))
        return 0
    counts = {s: sum(c.stage == s for c in cells) for s in ("base", "inject", "unlearn", "report")}
    root = Path(spec.out_dir) / spec.name
    print(f"[demo] {'quick ' if quick else ''}study -> {root}\n"
          f"[demo] {counts['base']} base, {counts['inject']} injections ({', '.join(spec.axes.inject_langs)}; "
          f"seeds {', '.join(map(str, spec.axes.seeds))}), {counts['unlearn']} unlearning runs "
          f"({', '.join(spec.axes.methods)} x {', '.join(spec.axes.forget_langs)}), 1 report; "
          f"{spec.local_workers} at a time. Finished cells are reused.", flush=True)
    t0 = time.time()
    out = submit(spec)
    failed = [c for c, s in out.get("results", {}).items() if s != "finished"]
    report = root / "report"
    spread = report / "groups_fake_rate.csv"
    if spread.exists():
        print("\n## Spread after injection: fake_rate by probe group (mean [95% CI])\n")
        print(_group_table(spread))
    grid = json.loads((report / "grid.json").read_text()) if (report / "grid.json").exists() else {}
    if grid.get("rows"):
        from mlu_dist.report import grid_markdown

        print("\n## The paper's grid\n")
        print(grid_markdown(grid["rows"], grid["threshold"]).strip())
    if grid.get("paper"):
        from mlu_dist.report import agreement_line

        print(f"\n[demo] against the paper: {agreement_line(grid['paper'])}")
    print(f"\n[demo] {len(out['submitted'])} cell(s) ran, {len(out['skipped'])} reused, "
          f"{time.time() - t0:.0f} s wall")
    if failed:
        print(f"[demo] not finished: {', '.join(failed)} (logs: {root}/logs/; run the demo again to resume)")
    print(f"[demo] report: {report}/report.html (report.md, grid.json, spread_*.png, curves_*.png)")
    print(f"[demo] W&B runs were logged offline into each run directory; upload them with:  mlu sync {root}")
    return 1 if failed else 0

