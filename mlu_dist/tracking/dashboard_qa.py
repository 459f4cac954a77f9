"""The dashboard's part for a QA study (``data.qa``): the per-language TOFU tables read from
``report/qa.json`` (the rows ``mlu report`` wrote) and the report run's two figures, the
forget-quality vs model-utility scatter and the MIA AUC heatmap."""

from __future__ import annotations

import json
from pathlib import Path

FIGURES = ("qa_tradeoff", "qa_mia_heatmap")
"""The QA report's figures, as the report run logged them (``report/<name>``)."""


def qa_media(report_run) -> list[str]:
    """The QA figures' keys the report run logged (none without a report run)."""
    return [f"report/{name}" for name in FIGURES if report_run is not None and report_run.has(f"report/{name}", media=True)]


def _media_panel(report_run, keys: list[str]) -> dict:
    return {"kind": "media", "title": "forget quality vs model utility per language; MIA AUC (min-k) per probe language",
            "keys": keys, "runs": [report_run.id], "context": []}


def qa_section(report_run) -> dict | None:
    """A workspace section with the QA report's figures, or None when the report run logged none."""
    keys = qa_media(report_run)
    if not keys:
        return None
    return {"name": "QA report", "panels": [_media_panel(report_run, keys)], "columns": 1, "rows": 1}


def qa_blocks(root: Path, report_run) -> list[dict]:
    """Report blocks: per probe language the TOFU-style table (from ``report/qa.json``), then the two
    figures of the report run; [] when the sweep is no QA study."""
    from mlu_dist.report.qa import qa_markdown

    path = Path(root) / "report" / "qa.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text())
    blocks = [{"kind": "h2", "text": "TOFU-style QA tables per probe language"},
              {"kind": "markdown", "text": "References first (finetuned, retain), then each method x forget setting "
                                           "in the sweep's order. forget quality: KS-test p-value against the retain "
                                           "model; MIA AUC: forget vs holdout (0.5 = no trace of membership).\n\n"
                                           + qa_markdown(rows)}]
    keys = qa_media(report_run)
    if keys:
        blocks += [{"kind": "h2", "text": "Trade-off and membership inference"},
                   {"kind": "panels", "name": "the report run", "runs": [report_run.id],
                    "panels": [_media_panel(report_run, keys)]}]
    return blocks
