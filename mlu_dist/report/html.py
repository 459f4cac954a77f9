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


def render_html(markdown: str, images: list[Path]) -> str:
    """The report as one self-contained page: the Markdown rendered (markdown-it, tables on), ✓/✗
    cells coloured, each measured cell that disagrees with the ↳ paper row beneath it outlined,
    the figures inlined as data URIs."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    by_name = {p.name: p for p in images}
    rows, row = [], None
    for i, tok in enumerate(tokens):
        if tok.type == "tr_open":
            row = (tok, [])
        elif tok.type == "td_open":
            row[1].append((tok, tokens[i + 1].content if tokens[i + 1].type == "inline" else ""))
        elif tok.type == "tr_close":
            rows.append(row)
        elif tok.type == "table_close":
            _mark_cells(rows)
            rows = []
        elif tok.type == "inline":
            for child in tok.children or []:
                if child.type == "image" and child.attrGet("src") in by_name:
                    data = base64.b64encode(by_name[child.attrGet("src")].read_bytes()).decode()
                    child.attrSet("src", f"data:image/png;base64,{data}")
    body = md.renderer.render(tokens, md.options, {})
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>mlu_dist report</title>"
            f"<style>{_CSS}</style></head><body>\n{body}</body></html>\n")


def _mark_cells(rows: list) -> None:
    """CSS classes for one table's body rows ``[(tr token, [(td token, text)])]``: ✓ removed, ✗ kept;
    a ↳ paper row is compared with the measured row above it, cell by cell (agree / differ)."""
    def add(tok, cls):
        tok.attrSet("class", f"{tok.attrGet('class') or ''} {cls}".strip())

    for i, (tr, cells) in enumerate(rows):
        for td, text in cells:
            if text[:1] in ("✓", "✗"):
                add(td, "removed" if text[0] == "✓" else "kept")
        if i and cells and cells[0][1].startswith("↳ paper"):
            add(tr, "paper")
            for (td, text), (ptd, ptext) in zip(rows[i - 1][1][1:], cells[1:]):
                if text[:1] in ("✓", "✗") and ptext[:1] in ("✓", "✗"):
                    verdict = "agree" if text[0] == ptext[0] else "differ"
                    add(td, verdict)
                    add(ptd, verdict)
