"""`mlu report SWEEP_DIR`: the study in one place — spread heatmap, forgetting curves, the paper's
grid and utility — as Markdown + PNG files and one self-contained HTML page."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

from mlu_dist.langs import LANGUAGES
from mlu_dist.rundir import atomic_path, atomic_write_text
from mlu_dist.tracking import read_jsonl

SETTINGS = ("en", "orig", "all", "en+orig")
SETTING_NAMES = {"en": "English", "orig": "original", "all": "multilingual", "en+orig": "English+original"}
GROUPS = ("en", "orig", "high", "low")
GROUP_NAMES = {"en": "English", "orig": "original", "high": "high-resource", "low": "low-resource"}
GROUP_COLOURS = {"en": "black", "high": "tab:blue", "low": "tab:orange"}


def _runs(root: Path, job: str) -> list[Path]:
    out = []
    for meta in sorted(Path(root).rglob("meta.json")):
        try:
            if json.loads(meta.read_text()).get("job") == job:
                out.append(meta.parent)
        except (OSError, json.JSONDecodeError):
            continue
    return out


def collect(root: Path) -> dict:
    """``{(inject_lang, method, setting): [per-run dict]}`` for every finished unlearning run."""
    found = defaultdict(list)
    for run in _runs(root, "unlearn"):
        summary, done = run / "eval" / "SUMMARY.json", run / "DONE.json"
        if not (summary.exists() and done.exists()):
            continue
        cfg = OmegaConf.load(run / "config.yaml")
        key = ("+".join(cfg.inject.langs), cfg.unlearn.method, cfg.unlearn.forget_langs)
        found[key].append({"run": run, "summary": json.loads(summary.read_text())["metrics"],
                           "done": json.loads(done.read_text())})
    return dict(found)


def _pooled_groups(runs: list[dict], inject: list[str], metric: str = "fake_rate") -> dict:
    """Group stats pooled over several runs (seeds): the bootstrap resamples runs, then facts."""
    from mlu_dist.eval.stats import bootstrap_ci
    from mlu_dist.eval.summary import group_fact_means, language_groups

    units = defaultdict(list)
    for r in runs:
        by_lang = json.loads((r["run"] / "eval" / "EVAL.json").read_text())["values"][metric]
        for group, members in language_groups(list(by_lang), inject).items():
            units[group].append(group_fact_means(by_lang, members))
    return {g: bootstrap_ci(u) for g, u in units.items()}


def paper_grid(found: dict, threshold: float) -> list[dict]:
    """Rows of the paper's grid: per injection language, method and forget setting, each probe
    group's fake_rate (mean, 95% CI) after unlearning and whether it is below ``threshold``.
    One run: its SUMMARY.json (CI over facts). Several seeds: pooled, CI over seeds and facts."""
    rows = []
    for (inj, method, setting), runs in sorted(found.items()):
        if any("fake_rate" not in r["summary"] for r in runs):
            continue
        groups = runs[0]["summary"]["fake_rate"]["group"] if len(runs) == 1 else \
            _pooled_groups(runs, inj.split("+"))
        cells = {}
        for group in GROUPS:
            stats = groups.get(group)
            if stats:
                cells[group] = {"mean": stats["mean"], "lo": stats["lo"], "hi": stats["hi"],
                                "removed": stats["mean"] < threshold}
        statuses = [r["done"].get("status", "finished") for r in runs]
        tripped = sum(s == "guard_tripped" for s in statuses)
        rows.append({"inject": inj, "method": method, "setting": setting, "cells": cells, "runs": len(runs),
                     "guard_tripped": tripped,
                     "status": "guard_tripped" if tripped else statuses[0]})
    return rows


def grid_markdown(rows: list[dict], threshold: float) -> str:
    seeds = sorted({r.get("runs", 1) for r in rows})
    over = "facts" if seeds == [1] else f"{'/'.join(map(str, seeds))} seeds and their facts"
    lines = [f"✓ = fake_rate after unlearning below {threshold:.2f} (mean [95% CI] over {over}); "
             "settings where a run's utility guard tripped are marked (!)", ""]
    for inj in sorted({r["inject"] for r in rows}):
        for method in sorted({r["method"] for r in rows if r["inject"] == inj}):
            lines += [f"**injected in {inj}, unlearned with {method}**", "",
                      "| forget setting | " + " | ".join(GROUP_NAMES[g] for g in GROUPS) + " |",
                      "|---|" + "---|" * len(GROUPS)]
            mine = {r["setting"]: r for r in rows if r["inject"] == inj and r["method"] == method}
            for setting in sorted(mine, key=lambda s: SETTINGS.index(s) if s in SETTINGS else 99):
                r = mine[setting]
                tripped = r.get("guard_tripped", int(r["status"] == "guard_tripped"))
                flag = "" if not tripped else (" (!)" if r.get("runs", 1) == 1 else f" (!{tripped}/{r['runs']})")
                cells = []
                for g in GROUPS:
                    c = r["cells"].get(g)
                    cells.append("–" if c is None else
                                 f"{'✓' if c['removed'] else '✗'} {c['mean']:.2f} [{c['lo']:.2f},{c['hi']:.2f}]")
                lines.append(f"| {SETTING_NAMES.get(setting, setting)}{flag} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def curves_figure(found: dict, inject: str, out: Path) -> Path | None:
    """One panel per method x forget setting, one line per language, colour by resource group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(k for k in found if k[0] == inject)
    if not keys:
        return None
    methods = sorted({k[1] for k in keys})
    settings = sorted({k[2] for k in keys}, key=lambda s: SETTINGS.index(s) if s in SETTINGS else 99)
    fig, axes = plt.subplots(len(methods), len(settings), figsize=(3.6 * len(settings), 2.9 * len(methods)),
                             squeeze=False, sharey=True)
    for i, method in enumerate(methods):
        for j, setting in enumerate(settings):
            ax = axes[i][j]
            runs = found.get((inject, method, setting))
            if runs:  # several seeds: the mean curve
                rows = [r for run in runs for r in read_jsonl(run["run"] / "curves.jsonl") if r["metric"] == "fake_rate"]
                for lang in sorted({r["lang"] for r in rows}, key=list(LANGUAGES).index):
                    by_step = defaultdict(list)
                    for r in rows:
                        if r["lang"] == lang:
                            by_step[r["step"]].append(r["value"])
                    pts = sorted((step, sum(v) / len(v)) for step, v in by_step.items())
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=2.5, lw=1.3,
                            color=GROUP_COLOURS[LANGUAGES[lang].resource], alpha=0.85,
                            ls="-" if lang == inject else "--")
                    if pts:
                        ax.annotate(lang, pts[-1], fontsize=6, xytext=(2, 0), textcoords="offset points")
            ax.set_title(f"{method}: forget {SETTING_NAMES.get(setting, setting)}", fontsize=8)
            ax.set_ylim(-0.05, 1.05)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("fake_rate")
            if i == len(methods) - 1:
                ax.set_xlabel("unlearning step")
    fig.suptitle(f"Forgetting curves, fake injected in {inject} (black = en, blue = high, orange = low; "
                 f"solid = injection language)", fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return out


def utility_markdown(found: dict, root: Path) -> str:
    """Every value a registered metric marks ``in_report`` (real_acc and utility perplexity), before
    (the injection) and after unlearning, averaged over languages (and over seeds when there are several)."""
    from mlu_dist.eval.metrics import all_values

    shown = [v.summary_key for v in all_values() if v.in_report]
    lines = ["| injection | method | setting | " + " | ".join(f"{name} before → after" for name in shown) + " | status |",
             "|---|---|---|" + "---|" * len(shown) + "---|"]

    def mean(summary, name):
        stats = summary.get(name, {}).get("lang", {})
        return sum(s["mean"] for s in stats.values()) / len(stats) if stats else float("nan")

    def avg(xs):
        return sum(xs) / len(xs) if xs else float("nan")

    for (inj, method, setting), runs in sorted(found.items()):
        befores = []
        for r in runs:
            before_file = Path(OmegaConf.load(r["run"] / "config.yaml").unlearn.from_run) / "eval" / "SUMMARY.json"
            befores.append(json.loads(before_file.read_text())["metrics"] if before_file.exists() else {})
        statuses = sorted({r["done"].get("status", "") for r in runs})
        cells = [f"{avg([mean(b, n) for b in befores]):.2f} → {avg([mean(r['summary'], n) for r in runs]):.2f}"
                 for n in shown]
        lines.append(f"| {inj} | {method} | {setting} | " + " | ".join(cells) + f" | {', '.join(statuses)} |")
    return "\n".join(lines)


def log_to_wandb(out: Path, rows: list[dict], images: list[Path], group: str, project: str = "mlu_dist",
                 entity: str = "", mode: str = "auto", tags=()) -> None:
    """The report's figures and grid as a W&B run of job_type 'report' in the sweep's group."""
    from mlu_dist.wandb_tracker import WandbTracker

    try:
        tracker = WandbTracker(out, "report", {"threshold": json.loads((out / "grid.json").read_text())["threshold"]},
                               project, entity=entity, group=group, tags=tags, mode=mode)
    except Exception as exc:  # the report's files are written; W&B is an extra
        print(f"[wandb] could not start the report run ({type(exc).__name__}: {exc}); the report is in {out}")
        return
    tracker.table("report/grid", ["inject", "method", "setting", *GROUPS],
                  [[r["inject"], r["method"], r["setting"],
                    *[(f"{'✓' if r['cells'][g]['removed'] else '✗'} {r['cells'][g]['mean']:.2f}" if g in r["cells"] else "")
                      for g in GROUPS]] for r in rows])
    tracker.images({p.stem: p for p in images})
    tracker.close()


def write_report(root: str | Path, threshold: float = 0.2, out: str | Path | None = None,
                 wandb_group: str | None = None, wandb_settings: dict | None = None) -> Path:
    """Write ``out`` (default ROOT/report): report.md/.html, grid.json and figures; with
    ``wandb_group``, also a W&B run in that group (``wandb_settings``: the sweep's tracking
    project, entity, mode and tags)."""
    root = Path(root)
    out = Path(out) if out else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    images = []
    try:
        from mlu_dist.eval.matrix import write_matrix

        images += [p for p in write_matrix(root, "fake_rate", out) if p.suffix == ".png"]
    except FileNotFoundError:
        pass  # no evaluated injections
    found = collect(root)
    if not found and not images:
        raise FileNotFoundError(f"nothing to report under {root}: no evaluated injection or finished unlearning run")
    rows = paper_grid(found, threshold)
    for inj in sorted({k[0] for k in found}):
        fig = curves_figure(found, inj, out / f"curves_{inj}.png")
        if fig:
            images.append(fig)
    grid_md = grid_markdown(rows, threshold)
    md = ["# mlu_dist report", "", f"Source: `{root}`", "", "## The paper's grid", "", grid_md,
          "## Utility", "", utility_markdown(found, root) if found else "(no unlearning runs)", "",
          "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in images]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    atomic_write_text(out / "grid.json", json.dumps({"threshold": threshold, "rows": rows}, indent=1) + "\n")
    atomic_write_text(out / "report.html", _html("\n".join(md), images))
    if wandb_group:
        log_to_wandb(out, rows, images, wandb_group, **(wandb_settings or {}))
    return out


def _html(markdown: str, images: list[Path]) -> str:
    """A self-contained page: the Markdown as preformatted text, the figures inlined."""
    import html as h

    body = [f"<pre style='font-size:13px'>{h.escape(markdown)}</pre>"]
    for p in images:
        data = base64.b64encode(p.read_bytes()).decode()
        body.append(f"<h3>{h.escape(p.stem)}</h3><img style='max-width:100%' src='data:image/png;base64,{data}'>")
    return "<!doctype html><meta charset='utf-8'><title>mlu_dist report</title>" + "".join(body)
