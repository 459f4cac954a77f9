"""The report of a QA study (``data.qa``): per language the TOFU-style table — the finetuned and
retain reference rows beside each method x forget setting — the forget-quality vs model-utility
scatter per language and the membership-inference AUC heatmap (model x probe language).

Rows come from the runs' EVAL.json ``qa_*`` values (the ``qa`` metric), found through
:func:`mlu_dist.results.find_runs`; forget quality and privacy leakage of every run of a seed are
measured against that seed's retain model (``inject.retain_only``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from mlu_dist.eval.qa import tofu_table, values_from_eval
from mlu_dist.report.tables import SETTINGS
from mlu_dist.results import RunRecord, find_runs

COLUMNS = (("forget_rouge", "forget ROUGE"), ("forget_prob", "forget prob"), ("forget_truth_ratio", "forget TR"),
           ("forget_quality", "forget quality"), ("model_utility", "model utility"),
           ("mia_auc_min_k", "MIA AUC (min-k)"), ("privleak_min_k", "priv. leak (min-k)"))
OTHER_ATTACKS = (("mia_auc_loss", "MIA AUC (loss)"), ("mia_auc_zlib", "MIA AUC (zlib)"),
                 ("mia_auc_min_k_pp", "MIA AUC (min-k++)"))
"""Columns the W&B tables add (they scroll); the Markdown tables show Min-K% only."""
ROLE_ORDER = {"finetuned": 0, "retain": 1, "unlearned": 2}


def qa_runs(root: str | Path) -> list[RunRecord]:
    """The finished injection and unlearning runs of a QA study under ``root`` with QA values."""
    return [r for r in find_runs(root, finished=True)
            if r.job in ("inject", "unlearn") and r.get("data.qa") and any(k.startswith("qa_") for k in r.eval_values)]


def _role(run: RunRecord) -> tuple[str, str]:
    """``(role, label)``: the retain or finetuned reference, or the unlearned method x setting."""
    if run.job == "inject":
        return ("retain", "retain") if run.get("inject.retain_only") else ("finetuned", f"finetuned [{run.inject}]")
    return "unlearned", f"{run.method_label} {run.setting} [{run.inject}]"


def _axes(root: Path) -> dict:
    """The sweep's axes (``ROOT/sweep.yaml``, written by the sweep), or {} outside a sweep."""
    from omegaconf import OmegaConf

    path = Path(root) / "sweep.yaml"
    if not path.exists():
        return {}
    return OmegaConf.to_container(OmegaConf.load(path)).get("axes") or {}


def row_order(root: Path):
    """The rows' sort key: references first (finetuned, retain), then the sweep's axis order —
    injection, method, forget setting as the sweep file lists them (settings outside it in the
    paper's order) — then seed."""
    axes = _axes(root)

    def index(values: list, value, fallback=()) -> tuple:
        values = [str(v) for v in values or []]
        order = values + [v for v in fallback if v not in values]
        return (order.index(str(value)), "") if str(value) in order else (len(order), str(value))

    def key(run: RunRecord) -> tuple:
        role = ROLE_ORDER[_role(run)[0]]
        if run.job == "inject":
            return role, index(axes.get("inject_langs"), run.inject), (0, ""), (0, ""), run.seed
        return (role, index(axes.get("inject_langs"), run.inject), index(axes.get("methods"), run.method),
                index(axes.get("forget_langs"), run.setting, SETTINGS), run.method_label, run.seed)
    return key


def qa_rows(root: str | Path) -> list[dict]:
    """One row per run and probe language: the run's cell (role, label, seed) and its TOFU row, with
    forget quality and privacy leakage against the seed's retain model where the sweep trained one.
    Rows follow the sweep's axis order (:func:`row_order`)."""
    runs = qa_runs(root)
    if not runs:
        raise FileNotFoundError(f"no evaluated QA run under {root} (data.qa=true and eval.metrics=[qa])")
    values = {r.run_dir: values_from_eval(r.eval_values) for r in runs}
    retain = {r.seed: values[r.run_dir] for r in runs if r.job == "inject" and r.get("inject.retain_only")}
    rows = []
    for run in sorted(runs, key=row_order(Path(root))):
        role, label = _role(run)
        langs = list(run.get("eval.langs") or run.get("data.langs"))
        for lang, row in tofu_table(values[run.run_dir], langs, retain.get(run.seed)).items():
            rows.append({"lang": lang, "role": role, "label": label, "seed": run.seed, "run_dir": str(run.run_dir),
                         **row})
    return rows


def _cell(v) -> str:
    return "–" if _missing(v) else f"{v:.3g}"


def qa_tables(rows: list[dict], columns=COLUMNS) -> dict[str, tuple[list[str], list[list]]]:
    """Per probe language, the TOFU-style table: its header and one row per model (references
    first, then the rows' order), the values of ``columns`` as numbers (None where undefined)."""
    seeds = len({r["seed"] for r in rows}) > 1
    header = ["model", *(name for _, name in columns)]
    tables = {}
    for lang in dict.fromkeys(r["lang"] for r in rows):
        tables[lang] = header, [[r["label"] + (f" s{r['seed']}" if seeds else ""),
                                 *(None if _missing(r.get(key)) else r[key] for key, _ in columns)]
                                for r in rows if r["lang"] == lang]
    return tables


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def qa_markdown(rows: list[dict]) -> str:
    """Per probe language, the TOFU-style table (references first)."""
    out = []
    for lang, (header, body) in qa_tables(rows).items():
        out += [f"### {lang}", "", "| " + " | ".join(header) + " |", "|---|" + "---|" * (len(header) - 1)]
        out += ["| " + " | ".join([label, *map(_cell, values)]) + " |" for label, *values in body]
        out.append("")
    return "\n".join(out)


def qa_figures(rows: list[dict], out: Path, attack: str = "min_k") -> list[Path]:
    """The forget-quality vs model-utility scatter per language (where the retain model gives forget
    quality) and the MIA AUC heatmap (model x probe language)."""
    from mlu_dist.eval.qa_figures import plot_mia_heatmap, plot_tradeoff

    images = []
    points = [{"lang": r["lang"], "label": r["label"], "forget_quality": r["forget_quality"],
               "model_utility": r["model_utility"], **({"reference": r["role"]} if r["role"] != "unlearned" else {})}
              for r in rows if "forget_quality" in r and "model_utility" in r]
    if points:
        images.append(plot_tradeoff(points, out / "qa_tradeoff.png"))
    key = f"mia_auc_{attack}"
    summaries: dict[str, dict] = {}
    for r in rows:
        if key in r:
            name = r["label"] + (f" s{r['seed']}" if len({x['seed'] for x in rows}) > 1 else "")
            summaries.setdefault(name, {key: {"lang": {}}})[key]["lang"][r["lang"]] = {"mean": r[key]}
    if summaries:
        images.append(plot_mia_heatmap(summaries, out / "qa_mia_heatmap.png", attack,
                                       title=f"MIA AUC per probe language ({attack})"))
    return images


def log_qa_to_wandb(out: Path, rows: list[dict], images: list[Path], group: str, project: str = "mlu_dist",
                    entity: str = "", mode: str = "auto", tags=()) -> None:
    """The QA report as a W&B run of job_type 'report' in the sweep's group: per probe language its
    TOFU table with every attack's AUC (``report/qa/<lang>``) and the two figures
    (``report/qa_tradeoff``, ``report/qa_mia_heatmap``)."""
    from mlu_dist.report.wandb_run import start_report_run

    tracker = start_report_run(out, {"study": "qa", "columns": [key for key, _ in COLUMNS]}, group, project, entity,
                               mode, tags)
    if tracker is None:
        return
    for lang, (header, body) in qa_tables(rows, COLUMNS + OTHER_ATTACKS).items():
        tracker.table(f"report/qa/{lang}", header, body)
    tracker.images({p.stem: p for p in images})
    tracker.close()


def write_qa_report(root: Path, out: Path, wandb_group: str | None = None, wandb_settings: dict | None = None) -> Path:
    """``out``/report.md and report.html of a QA study (its tables and figures); ``out/qa.json``
    holds the rows. With ``wandb_group``, also the report's W&B run (:func:`log_qa_to_wandb`)."""
    from mlu_dist.report.html import render_html
    from mlu_dist.runs.rundir import atomic_write_text

    rows = qa_rows(root)
    images = qa_figures(rows, out)
    atomic_write_text(out / "qa.json", json.dumps(rows, indent=1, default=str) + "\n")
    md = ["# mlu_dist report", "", f"Source: `{root}`", "", "## TOFU-style QA tables per probe language", "",
          "forget ROUGE / prob / TR: ROUGE-L recall, answer probability and truth-ratio score on the forget split; "
          "forget quality: KS-test p-value of the forget truth ratios against the retain model's; model utility: "
          "harmonic mean over the utility sets; MIA AUC: forget vs holdout (0.5 = no trace of membership); "
          "privacy leakage: relative to the retain model's AUC (0 = as the retain model).", "",
          qa_markdown(rows), "## Figures", ""]
    md += [line for p in images for line in (f"### {p.stem}", "", f"![{p.stem}]({p.name})", "")]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    atomic_write_text(out / "report.html", render_html("\n".join(md), images))
    if wandb_group:
        log_qa_to_wandb(out, rows, images, wandb_group, **(wandb_settings or {}))
    return out
