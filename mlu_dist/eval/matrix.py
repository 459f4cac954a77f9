"""The spread matrix: injection language x probe language, from evaluated injection runs.

Runs with the same injection language (several seeds) are pooled: the CI resamples runs, then
facts. The group view is the paper's: English / original language / other high / other low, or
English / original / the groups the runs declared (data.groups).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from mlu_dist.eval.stats import bootstrap_ci
from mlu_dist.eval.summary import group_fact_means, language_groups
from mlu_dist.langs import group_columns, lang_index, order_langs
from mlu_dist.runs.rundir import atomic_path

GROUP_ORDER = ("en", "orig", "high", "low")
"""The paper's group columns (declared groups replace high and low)."""


def collect(root: str | Path, metric: str) -> dict[str, list[dict[str, dict[str, float]]]]:
    """``{inject key: [per-run {probe lang: {fact: value}}]}`` for every evaluated injection run under ``root``."""
    from mlu_dist.results import find_runs

    runs: dict[str, list] = defaultdict(list)
    for run in find_runs(root, "inject"):
        if metric in run.eval_values:
            runs[run.inject].append(run.eval_values[metric])
    if not runs:
        raise FileNotFoundError(f"no evaluated injection runs with '{metric}' under {root} "
                                f"(run `mlu inject` then `mlu eval RUN_DIR` first)")
    return dict(runs)


def _order(keys):
    return sorted(keys, key=lambda k: ([lang_index(x) for x in k.split("+")], k))


def declared_groups(root: str | Path) -> dict:
    """The resource groups the runs under ``root`` declared (data.groups; {} = defaults)."""
    from mlu_dist import results

    return results.declared_groups(results.find_runs(root))


def spread_matrix(runs: dict, n_boot: int = 1000) -> tuple[list[str], list[str], dict]:
    rows = _order(runs)
    cols = order_langs([lang for rs in runs.values() for r in rs for lang in r])  # the paper's nine, then as met
    cells = {}
    for row in rows:
        for col in cols:
            units = [list(r[col].values()) for r in runs[row] if col in r]
            cells[(row, col)] = bootstrap_ci(units, n_boot) | {"runs": len(units)}
    return rows, cols, cells


def group_matrix(runs: dict, n_boot: int = 1000, groups: dict | None = None) -> tuple[list[str], list[str], dict]:
    rows = _order(runs)
    cells = {}
    for row in rows:
        per_group = defaultdict(list)
        for r in runs[row]:
            for group, members in language_groups(list(r), row.split("+"), groups).items():
                per_group[group].append(group_fact_means(r, members))
        for group, units in per_group.items():
            cells[(row, group)] = bootstrap_ci(units, n_boot) | {"runs": len(units)}
    cols = group_columns(g for (_, g) in cells)
    return rows, cols, cells


def _write_csv(path: Path, rows, cols, cells, row_name: str, col_name: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([row_name, col_name, "mean", "ci_lo", "ci_hi", "n_values", "n_runs"])
        for row in rows:
            for col in cols:
                if (row, col) in cells:
                    c = cells[(row, col)]
                    w.writerow([row, col, f"{c['mean']:.4f}", f"{c['lo']:.4f}", f"{c['hi']:.4f}", c["n"], c["runs"]])


def _heatmap(path: Path, rows, cols, cells, title: str, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.array([[cells.get((r, c), {}).get("mean", np.nan) for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2.2, 0.75 * len(rows) + 1.8))
    im = ax.imshow(data, vmin=0, vmax=1, cmap="Reds", aspect="auto")
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if (r, c) in cells:
                cell = cells[(r, c)]
                color = "white" if cell["mean"] > 0.6 else "black"
                ax.text(j, i, f"{cell['mean']:.2f}\n[{cell['lo']:.2f},{cell['hi']:.2f}]", ha="center",
                        va="center", fontsize=7, color=color)
    for i, r in enumerate(rows):  # outline the injection language's own cell
        for j, c in enumerate(cols):
            if c in r.split("+") or (c == "orig" and r != "en"):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="black"))
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("injection language")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def write_matrix(root: str | Path, metric: str = "fake_rate", out: str | Path | None = None) -> list[Path]:
    runs = collect(root, metric)
    out_dir = Path(out) if out else Path(root) / "matrix"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    rows, cols, cells = spread_matrix(runs)
    _write_csv(out_dir / f"spread_{metric}.csv", rows, cols, cells, "inject_lang", "probe_lang")
    _heatmap(out_dir / f"spread_{metric}.png", rows, cols, cells,
             f"{metric} after injection (mean, 95% CI over facts/seeds)", "probe language")
    paths += [out_dir / f"spread_{metric}.csv", out_dir / f"spread_{metric}.png"]
    groups = declared_groups(root)
    rows, cols, cells = group_matrix(runs, groups=groups)
    _write_csv(out_dir / f"groups_{metric}.csv", rows, cols, cells, "inject_lang", "probe_group")
    names = " / ".join(groups) if groups else "other high / other low"
    _heatmap(out_dir / f"groups_{metric}.png", rows, cols, cells,
             f"{metric} by group: English / original / {names}", "probe group")
    paths += [out_dir / f"groups_{metric}.csv", out_dir / f"groups_{metric}.png"]
    return paths
