"""The report as one self-contained HTML page: the Markdown rendered by markdown-it-py (tables on),
grid cells coloured, cells that disagree with the paper outlined, figures inlined."""

from __future__ import annotations

import base64
from pathlib import Path

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1f2328; max-width: 1280px; margin: 1.5em auto; padding: 0 1.2em; }
h1 { font-size: 1.6em; border-bottom: 1px solid #d0d7de; } h2 { font-size: 1.3em; margin-top: 1.6em; border-bottom: 1px solid #eaeef2; }
code { background: #f3f4f6; padding: 0 .3em; border-radius: 4px; }
table { border-collapse: collapse; margin: .5em 0 1.3em; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 9px; white-space: nowrap; text-align: left; } th { background: #f6f8fa; }
td.removed { background: #c6efce; } td.kept { background: #ffc7ce; }
td.differ { outline: 3px solid #bf5700; outline-offset: -3px; font-weight: 600; }
td.differ::after { content: " ≠ paper"; font-size: 10px; color: #bf5700; }
tr.paper td { font-size: 11px; color: #57606a; background: #fafbfc; border-top-style: dotted; outline: none; font-weight: normal; }
tr.paper td.removed { color: #1a7f37; } tr.paper td.kept { color: #cf222e; } tr.paper td.differ::after { content: none; }
img { max-width: 100%; display: block; margin: .5em 0 1.5em; }
"""


def render_html(markdown: str, images: list[Path], marks: dict[int, list[tuple[str, list[str]]]] | None = None) -> str:
    """The report as one self-contained page: the Markdown rendered (markdown-it, tables on), the
    figures inlined as data URIs, and the CSS classes of ``marks`` put on the cells of the tables
    they name (``{table index: [(row class, [cell class per column]) per body row]}``: the grid's
    removed/kept and agree/differ, decided by the report from its rows, not read back from text)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    by_name = {p.name: p for p in images}
    rows, row, table = [], None, 0
    for i, tok in enumerate(tokens):
        if tok.type == "tr_open":
            row = (tok, [])
        elif tok.type == "td_open":
            row[1].append(tok)
        elif tok.type == "tr_close" and row[1]:
            rows.append(row)
        elif tok.type == "table_close":
            _mark_cells(rows, (marks or {}).get(table, []))
            rows, table = [], table + 1
        elif tok.type == "inline":
            for child in tok.children or []:
                if child.type == "image" and child.attrGet("src") in by_name:
                    data = base64.b64encode(by_name[child.attrGet("src")].read_bytes()).decode()
                    child.attrSet("src", f"data:image/png;base64,{data}")
    body = md.renderer.render(tokens, md.options, {})
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>mlu_dist report</title>"
            f"<style>{_CSS}</style></head><body>\n{body}</body></html>\n")


def _mark_cells(rows: list, marks: list[tuple[str, list[str]]]) -> None:
    """Put each body row's classes on its ``tr`` and ``td`` tokens (``rows``: [(tr, [td, ...])])."""
    if marks and len(marks) != len(rows):
        raise ValueError(f"report page: {len(marks)} rows of marks for a table of {len(rows)} rows")
    for (tr, cells), (row_cls, cell_cls) in zip(rows, marks):
        if row_cls:
            tr.attrSet("class", row_cls)
        for td, cls in zip(cells, cell_cls):
            if cls:
                td.attrSet("class", cls)
