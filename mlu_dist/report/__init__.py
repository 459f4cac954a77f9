"""`mlu report SWEEP_DIR`: the study in one place — spread heatmap, forgetting curves, the paper's
grid and utility — as Markdown + PNG files and one self-contained HTML page."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from mlu_dist.langs import group_columns, group_label, lang_colour, lang_index
from mlu_dist.report.html import render_html
from mlu_dist.report.qa import qa_runs, write_qa_report
from mlu_dist.report.ranking import ranking_markdown, ranking_rows
from mlu_dist.report.tables import (GROUP_NAMES, GROUPS, SETTING_NAMES, SETTINGS, aligned, before_dir,
                                    eval_values)
from mlu_dist.results import find_runs, pooled_groups, record_at
from mlu_dist.report.relearn import (after_attack, collect_attacks, phrasing_markdown, relearn_markdown,
                                     relearn_rows)
from mlu_dist.runs.rundir import atomic_path, atomic_write_text
from mlu_dist.tracking import read_jsonl


GROUP_COLOURS = {"en": "black", "high": "tab:blue", "low": "tab:orange"}


def grid_groups(rows: list[dict]) -> list[str]:
    """The grid's group columns: the paper's four, or en, orig and the groups the runs declared."""
    seen = group_columns(g for r in rows for g in r["cells"])
    return list(GROUPS) if set(seen) <= set(GROUPS) else seen


PAPER = "Lu & Koehn, arXiv 2406.13748, Figure 1"
# The paper's finding per forget setting and probe group: is the fake removed there (✓) or not (✗)?
PAPER_EXPECTED = {
    "en": {"en": True, "orig": False, "high": True, "low": False},
    "orig": {"en": False, "orig": True, "high": False, "low": True},
    "all": {"en": False, "orig": False, "high": False, "low": False},
    "en+orig": {"en": True, "orig": True, "high": True, "low": True},
}


def collect(root: Path) -> dict:
    """``{(inject_lang, method, setting): [per-run dict]}`` for every finished, evaluated unlearning run."""
    found = defaultdict(list)
    for run in find_runs(root, "unlearn"):
        if run.summary is None or run.done is None:
            continue
        found[(run.inject, run.method_label, run.setting)].append(
            {"run": run.run_dir, "summary": run.summary, "done": run.done, "groups": run.groups})
    return dict(found)


def _pooled_groups(runs: list[dict], inject: list[str], metric: str = "fake_rate") -> dict:
    return pooled_groups([record_at(r["run"]) for r in runs], inject, metric)


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
        # the paper's figure is of a non-English injection: without an "orig" group it says nothing
        expected = PAPER_EXPECTED.get(setting, {}) if "orig" in groups else {}
        for group in group_columns(groups):
            stats = groups.get(group)
            if stats:
                cells[group] = {"mean": stats["mean"], "lo": stats["lo"], "hi": stats["hi"],
                                "removed": stats["mean"] < threshold}
                if group in expected:
                    cells[group] |= {"paper_removed": expected[group],
                                     "agrees": cells[group]["removed"] == expected[group]}
        statuses = [r["done"].get("status", "finished") for r in runs]
        tripped = sum(s == "guard_tripped" for s in statuses)
        compared = [c["agrees"] for c in cells.values() if "agrees" in c]
        rows.append({"inject": inj, "method": method, "setting": setting, "cells": cells, "runs": len(runs),
                     "guard_tripped": tripped, "status": "guard_tripped" if tripped else statuses[0],
                     "paper_agree": sum(compared), "paper_cells": len(compared)})
    return rows


def paper_agreement(rows: list[dict]) -> dict:
    """How many grid cells agree with the paper's expected mark: overall and per injection x method."""
    by = defaultdict(lambda: [0, 0])
    for r in rows:
        by[(r["inject"], r["method"])][0] += r.get("paper_agree", 0)
        by[(r["inject"], r["method"])][1] += r.get("paper_cells", 0)
    return {"source": PAPER, "expected": PAPER_EXPECTED,
            "agree": sum(a for a, _ in by.values()), "cells": sum(n for _, n in by.values()),
            "by": [{"inject": i, "method": m, "agree": a, "cells": n} for (i, m), (a, n) in sorted(by.items())]}


def agreement_line(agreement: dict) -> str:
    """'12/16 cells agree with the paper (...)', the grid's headline."""
    if not agreement["cells"]:
        return f"no cell can be compared with the paper ({PAPER}: non-English injections, its four forget settings)"
    parts = ", ".join(f"{b['inject']}/{b['method']} {b['agree']}/{b['cells']}" for b in agreement["by"] if b["cells"])
    return f"{agreement['agree']}/{agreement['cells']} cells agree with the paper ({parts})"


def grid_markdown(rows: list[dict], threshold: float) -> str:
    seeds = sorted({r.get("runs", 1) for r in rows})
    over = "facts" if seeds == [1] else f"{'/'.join(map(str, seeds))} seeds and their facts"
    lines = [f"✓ = fake_rate after unlearning below {threshold:.2f} (mean [95% CI] over {over}); settings where "
             f"a run's utility guard tripped are marked (!). Under each setting, the ↳ paper row holds the marks "
             f"the paper expects ({PAPER}): forgetting in English removes the fake in English and the "
             "high-resource languages, not in the original and low-resource ones; in the original language the "
             "reverse; multilingual forgetting removes it nowhere; English + original everywhere. "
             "≠ marks a measured cell that disagrees with it.", "",
             f"**{agreement_line(paper_agreement(rows))}**", ""]
    for title, table, _ in grid_tables(rows):
        lines += [title, ""] + aligned(table) + [""]
    return "\n".join(lines)


def grid_tables(rows: list[dict]) -> list[tuple[str, list[list[str]], list[tuple[str, list[str]]]]]:
    """The grid's tables, one per injection and method: its title, the table (header first) and,
    per body row, the row's and each cell's CSS classes (removed/kept, agree/differ with the paper;
    the page colours cells from these, never from the text)."""
    out = []
    cols = grid_groups(rows)
    for inj in sorted({r["inject"] for r in rows}):
        for method in sorted({r["method"] for r in rows if r["inject"] == inj}):
            mine = {r["setting"]: r for r in rows if r["inject"] == inj and r["method"] == method}
            agree, compared = (sum(r.get(k, 0) for r in mine.values()) for k in ("paper_agree", "paper_cells"))
            title = (f"**injected in {inj}, unlearned with {method}**"
                     + (f": {agree}/{compared} cells agree with the paper" if compared else ""))
            table = [["forget setting", *(GROUP_NAMES.get(g) or group_label(g) for g in cols), "agree"]]
            classes = []
            for setting in sorted(mine, key=lambda s: SETTINGS.index(s) if s in SETTINGS else 99):
                body, marks = _grid_rows(mine[setting], cols)
                table += body
                classes += marks
            out.append((title, table, classes))
    return out


def _grid_rows(r: dict, cols=GROUPS) -> tuple[list[list[str]], list[tuple[str, list[str]]]]:
    """A setting's measured row and, when the paper has an expectation, its ↳ paper row beneath;
    with each row's CSS classes."""
    tripped = r["guard_tripped"] if "guard_tripped" in r else int(r.get("status") == "guard_tripped")
    flag = "" if not tripped else (" (!)" if r.get("runs", 1) == 1 else f" (!{tripped}/{r['runs']})")
    measured, paper = [f"{SETTING_NAMES.get(r['setting'], r['setting'])}{flag}"], ["↳ paper"]
    m_cls, p_cls = [""], [""]
    for g in cols:
        c = r["cells"].get(g)
        measured.append("–" if c is None else
                        f"{'✓' if c['removed'] else '✗'} {c['mean']:.2f} [{c['lo']:.2f},{c['hi']:.2f}]")
        paper.append("–" if c is None or "paper_removed" not in c else
                     ("✓" if c["paper_removed"] else "✗") + ("" if c["agrees"] else " ≠"))
        verdict = "" if c is None or "paper_removed" not in c else (" agree" if c["agrees"] else " differ")
        m_cls.append("" if c is None else ("removed" if c["removed"] else "kept") + verdict)
        p_cls.append("" if not verdict else ("removed" if c["paper_removed"] else "kept") + verdict)
    if not r.get("paper_cells"):
        return [measured + [""]], [("", m_cls + [""])]
    return ([measured + [f"{r['paper_agree']}/{r['paper_cells']}"], paper + [""]],
            [("", m_cls + [""]), ("paper", p_cls + [""])])


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
                for lang in sorted({r["lang"] for r in rows}, key=lambda x: (lang_index(x), x)):
                    by_step = defaultdict(list)
                    for r in rows:
                        if r["lang"] == lang:
                            by_step[r["step"]].append(r["value"])
                    pts = sorted((step, sum(v) / len(v)) for step, v in by_step.items())
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=2.5, lw=1.3,
                            color=lang_colour(lang, runs[0].get("groups")), alpha=0.85,
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


def _in_order(found: dict) -> list:
    """``found``'s items by injection, method, then the paper's setting order."""
    return sorted(found.items(), key=lambda kv: (kv[0][0], kv[0][1], SETTINGS.index(kv[0][2])
                                                  if kv[0][2] in SETTINGS else 99, kv[0][2]))


def _guard_ratio(run_dir: Path) -> float | None:
    """``unlearn/ppl_ratio`` at the run's last curve point (what its guard last compared)."""
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "unlearn/ppl_ratio" in r]
    return rows[-1]["unlearn/ppl_ratio"] if rows else None


def utility_markdown(found: dict, root: Path) -> str:
    """Every value a registered metric marks ``in_report`` (real_acc and utility perplexity), before
    (the injection) and after unlearning, over all languages as :func:`over_languages` computes it
    (utility_ppl: the geometric mean over languages, the guard's measure), seeds pooled; each
    setting's status and its guard's last ratio to step 0; then utility perplexity per language."""
    from mlu_dist.eval.metrics import all_values
    from mlu_dist.eval.summary import over_languages

    shown = [v for v in all_values() if v.in_report]
    lines = ["Over all languages: the mean over languages of each language's mean (every language weighs the "
             "same); utility_ppl is the geometric mean over languages of per-language perplexity, exactly the "
             "guard's unlearn/ppl. before = the injected model, after = the unlearned one; guard ratio = "
             "unlearn/ppl at the last curve point ÷ step 0 (the guard's check), per seed.", "",
             "| injection | method | setting | " + " | ".join(f"{v.summary_key} before → after" for v in shown)
             + " | status | guard ratio |", "|---|---|---|" + "---|" * len(shown) + "---|---|"]
    for (inj, method, setting), runs in _in_order(found):
        after, before = [r["run"] / "eval" for r in runs], [before_dir(r) for r in runs]
        cells = []
        for v in shown:
            b, a = (eval_values(dirs, v.name) for dirs in (before, after))
            cells.append(" → ".join(f"{over_languages(x, transform=v.transform):.2f}" if x else "nan" for x in (b, a)))
        statuses = sorted({r["done"].get("status", "") for r in runs})
        ratios = ", ".join("–" if x is None else f"{x:.2f}×" for x in map(_guard_ratio, (r["run"] for r in runs)))
        lines.append(f"| {inj} | {method} | {setting} | " + " | ".join(cells) + f" | {', '.join(statuses)} | {ratios} |")
    return "\n".join(lines + ["", _utility_by_language(found, [v for v in shown if v.name == "utility_nll"])])


def _utility_by_language(found: dict, specs: list) -> str:
    """Utility perplexity per language beside the all-languages value: each injected model, then
    every unlearned one."""
    from mlu_dist.eval.summary import language_means, over_languages

    if not specs:
        return ""
    spec, models = specs[0], {}
    for (inj, method, setting), runs in _in_order(found):
        models.setdefault(f"{inj} injected (before)", [before_dir(r) for r in runs])
    for (inj, method, setting), runs in _in_order(found):
        models[f"{inj} · {method} · {setting}"] = [r["run"] / "eval" for r in runs]
    table = {name: eval_values(dirs, spec.name) for name, dirs in models.items()}
    langs = sorted({lang for by_lang in table.values() for lang in by_lang}, key=lambda x: (lang_index(x), x))
    lines = [f"**{spec.summary_key} per language** (all = their geometric mean)", "",
             "| model | all | " + " | ".join(langs) + " |", "|---|---|" + "---|" * len(langs)]
    for name, by_lang in table.items():
        if by_lang:
            means = language_means(by_lang)
            lines.append(f"| {name} | {over_languages(by_lang, transform=spec.transform):.2f} | "
                         + " | ".join(f"{(spec.transform or float)(means[lang]):.2f}" if lang in means else "–" for lang in langs)
                         + " |")
    return "\n".join(lines)


def log_to_wandb(out: Path, rows: list[dict], images: list[Path], group: str, project: str = "mlu_dist",
                 entity: str = "", mode: str = "auto", tags=()) -> None:
    """The report's figures and grid as a W&B run of job_type 'report' in the sweep's group."""
    from mlu_dist.report.wandb_run import start_report_run

    tracker = start_report_run(out, {"threshold": json.loads((out / "grid.json").read_text())["threshold"]}, group,
                               project, entity, mode, tags)
    if tracker is None:
        return
    cols = grid_groups(rows)
    tracker.table("report/grid", ["inject", "method", "setting", *cols],
                  [[r["inject"], r["method"], r["setting"],
                    *[(f"{'✓' if r['cells'][g]['removed'] else '✗'} {r['cells'][g]['mean']:.2f}" if g in r["cells"] else "")
                      for g in cols]] for r in rows])
    tracker.images({p.stem: p for p in images})
    tracker.close()


def write_report(root: str | Path, threshold: float = 0.2, out: str | Path | None = None,
                 wandb_group: str | None = None, wandb_settings: dict | None = None, after: str = "") -> Path:
    """Write ``out`` (default ROOT/report): report.md/.html, grid.json and figures; with
    ``wandb_group``, also a W&B run in that group (``wandb_settings``: the sweep's tracking
    project, entity, mode and tags). ``after='relearn:ATTACK'`` draws the grid on the fake_rate
    after that relearning attack instead of right after unlearning."""
    root = Path(root)
    out = Path(out) if out else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    if qa_runs(root):  # a QA study (data.qa): its TOFU tables and figures, not the fact-set grid
        return write_qa_report(root, out, wandb_group, wandb_settings)
    images = []
    try:
        from mlu_dist.eval.matrix import write_matrix

        images += [p for p in write_matrix(root, "fake_rate", out) if p.suffix == ".png"]
    except FileNotFoundError:
        pass  # no evaluated injections
    found = collect(root)
    if not found and not images:
        raise FileNotFoundError(f"nothing to report under {root}: no evaluated injection or finished unlearning run")
    attacks = collect_attacks(root)
    grid_found, grid_note = found, ""
    if after:
        attack = after.partition(":")[2] or next((k[4].split(" (")[0] for k in sorted(attacks) if k[3] == "unlearned"), "")
        if not after.startswith("relearn") or not attack:
            raise FileNotFoundError(f"--after {after}: no relearning attack on an unlearned model under {root} "
                                    f"(use --after relearn:ATTACK, e.g. relearn:fake:en)")
        grid_found = after_attack(found, attack)
        if not grid_found:
            found_attacks = sorted({k[4].split(" (")[0] for k in attacks if k[3] == "unlearned"})
            raise FileNotFoundError(f"--after {after}: no unlearning run under {root} was attacked with "
                                    f"'{attack}'; attacks found: {', '.join(found_attacks) or 'none'}")
        grid_note = f"Drawn on the fake_rate **after the relearning attack {attack}** (not right after unlearning)."
    rows = paper_grid(grid_found, threshold)
    for inj in sorted({k[0] for k in found}):
        fig = curves_figure(found, inj, out / f"curves_{inj}.png")
        if fig:
            images.append(fig)
    grid_md = grid_markdown(rows, threshold)
    md = ["# mlu_dist report", "", f"Source: `{root}`", "", "## The paper's grid", "",
          *([grid_note, ""] if grid_note else []), grid_md,
          "## Methods ranked: fake gone in every group vs utility kept", "",
          ranking_markdown(ranking_rows(rows, grid_found)) if rows else "(no unlearning runs)", "",
          "## Relearning attacks", "", relearn_markdown(relearn_rows(attacks)), "",
          "## Held-out phrasings", "", phrasing_markdown(found) if found else "(no unlearning runs)", "",
          "## Utility", "", utility_markdown(found, root) if found else "(no unlearning runs)", "",
          "## Figures", ""] + [line for p in images for line in (f"### {p.stem}", "", f"![{p.stem}]({p.name})", "")]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    atomic_write_text(out / "grid.json", json.dumps({"threshold": threshold, "after": after or "unlearning",
                                                      "paper": paper_agreement(rows), "rows": rows}, indent=1) + "\n")
    atomic_write_text(out / "relearn.json", json.dumps(relearn_rows(attacks), indent=1, default=str) + "\n")
    marks = {i: classes for i, (_, _, classes) in enumerate(grid_tables(rows))}  # the grid's tables come first
    atomic_write_text(out / "report.html", render_html("\n".join(md), images, marks))
    if wandb_group:
        log_to_wandb(out, rows, images, wandb_group, **(wandb_settings or {}))
    return out
