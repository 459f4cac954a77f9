"""The report: the grid over several seeds, the paper's expected marks, one utility measure and the
rendered HTML page, on run directories written here with known per-fact values (the aggregation
and rendering are what is tested; real runs feed it in test_demo and test_sweep)."""

import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from mlu_dist.report import collect, grid_markdown, paper_grid, write_report

LANGS = ["en", "de", "fr", "zh", "ru", "jv", "ur", "ha", "hy"]
HIGH, LOW = ("fr", "zh", "ru"), ("jv", "ur", "ha", "hy")


def _eval_dir(d, values: dict):
    from mlu_dist.eval.summary import summarize

    d.mkdir(parents=True)
    (d / "EVAL.json").write_text(json.dumps({"values": values}))
    (d / "SUMMARY.json").write_text(json.dumps({"metrics": summarize(values, ["de"], n_boot=200)}))


def _facts(per_lang: dict[str, list[float]]) -> dict:
    return {lang: {f"f{i}": v for i, v in enumerate(vals)} for lang, vals in per_lang.items()}


def _run(root, seed: int, per_lang: dict[str, list[float]], status: str = "finished", setting: str = "en",
         method: str = "ga", extra: dict | None = None, ppl_ratio: float | None = None):
    run = root / "unlearn" / f"de-s{seed}" / f"{method}-{setting}"
    run.mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"job": "unlearn"}))
    (run / "DONE.json").write_text(json.dumps({"status": status}))
    (run / "config.yaml").write_text(f"inject:\n  langs: [de]\n  split_seed: {seed}\nunlearn:\n  method: {method}\n"
                                     f"  forget_langs: {setting}\n"
                                     f"  from_run: {root}/inject/de-s{seed}\n")
    _eval_dir(run / "eval", {"fake_rate": _facts(per_lang)} | (extra or {}))
    if ppl_ratio is not None:
        (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "unlearn/ppl_ratio": 1.0}) + "\n"
                                           + json.dumps({"step": 10, "unlearn/ppl_ratio": ppl_ratio}) + "\n")
    return run


def test_seeds_are_pooled_with_a_ci_over_seeds_and_facts(tmp_path):
    zeros, ones = [0.0] * 10, [1.0] * 10
    _run(tmp_path, 0, {lang: (ones if lang == "de" else zeros) for lang in LANGS})
    _run(tmp_path, 1, {lang: (ones if lang in ("de", "en") else zeros) for lang in LANGS}, status="guard_tripped")
    _run(tmp_path, 2, {lang: (ones if lang == "de" else zeros) for lang in LANGS})
    (row,) = paper_grid(collect(tmp_path), threshold=0.2)
    assert row["runs"] == 3 and row["guard_tripped"] == 1
    en, orig, high = row["cells"]["en"], row["cells"]["orig"], row["cells"]["high"]
    assert orig["mean"] == 1.0 and not orig["removed"] and high["mean"] == 0.0 and high["removed"]
    assert en["mean"] == pytest.approx(1 / 3) and not en["removed"]
    # one seed in three disagrees: the interval spans it (a CI over facts alone would be [1/3, 1/3]-ish)
    assert en["lo"] == 0.0 and en["hi"] == 1.0
    md = grid_markdown([row], 0.2)
    assert "over 3 seeds and their facts" in md and "| English (!1/3) | ✗ 0.33 [0.00,1.00]" in md


def test_the_page_colours_grid_cells_from_the_rows_not_from_their_text(tmp_path):
    """report.html takes removed/kept and agree/differ from the grid's rows: a cell whose row says
    kept is coloured kept even if its text were edited to a tick."""
    from mlu_dist.report import grid_tables
    from mlu_dist.report.html import render_html

    _run(tmp_path, 0, {lang: ([1.0] * 10 if lang == "de" else [0.0] * 10) for lang in LANGS})
    (row,) = paper_grid(collect(tmp_path), threshold=0.2)
    md = grid_markdown([row], 0.2)
    (title, table, classes), = grid_tables([row])
    assert len(classes) == len(table) - 1 and classes[1][0] == "paper"
    page = _Page()
    page.feed(render_html(md.replace("✗", "✓"), [], {0: classes}))
    measured = page.tables[0][1]
    assert [c[0] for c in measured[1:5]] == classes[0][1][1:5]
    assert any(cls.startswith("kept") for cls, _ in measured) and all(t.strip()[:1] != "✗" for _, t in measured)
    with pytest.raises(ValueError, match="2 rows of marks for a table of 1 rows"):
        render_html("| a |\n|---|\n| b |\n", [], {0: classes})


def test_one_run_shows_its_own_summary(tmp_path):
    vals = [1.0, 0.0, 0.0, 1.0, 0.0]
    _run(tmp_path, 0, {lang: vals for lang in LANGS})
    (row,) = paper_grid(collect(tmp_path), threshold=0.5)
    summary = json.loads(next(tmp_path.rglob("SUMMARY.json")).read_text())["metrics"]["fake_rate"]["group"]
    assert row["runs"] == 1 and row["cells"]["en"] == {**{k: summary["en"][k] for k in ("mean", "lo", "hi")},
                                                        "removed": True, "paper_removed": True, "agrees": True}
    assert "(mean [95% CI] over facts)" in grid_markdown([row], 0.5)


def test_the_sweeps_report_run_goes_to_the_sweeps_wandb_project(tmp_path, monkeypatch):
    """The report job reads the sweep's tracking settings (sweep_flags.json) and its offline W&B run
    carries them (real wandb client, offline)."""
    from mlu_dist.launcher.tasks import run_cell
    from mlu_dist.tracking.wandb_tracker import read_offline_run

    monkeypatch.delenv("WANDB_MODE", raising=False)
    _run(tmp_path, 0, {lang: [0.0, 1.0] for lang in LANGS})
    (tmp_path / "sweep_flags.json").write_text(json.dumps({
        "evaluate": True, "wandb_group": "my-sweep",
        "wandb": {"project": "lab-project", "entity": "", "mode": "offline", "tags": ["paper"]}}))
    assert run_cell("report", None, str(tmp_path))["status"] == "finished"
    run = read_offline_run(next((tmp_path / "report" / "wandb").glob("offline-run-*")))
    assert run["run"]["project"] == "lab-project" and run["run"]["group"] == "my-sweep"
    assert run["run"]["tags"] == ["paper"]


# --- the paper's expected marks, one utility measure, the rendered page ----------------------------------
# fake_rate per probe group after unlearning (1 = kept, 0 = removed), chosen so that 11 of the 16 cells
# agree with the paper: en 4/4, orig 2/4 (nothing removed), all 4/4, en+orig 1/4 (only en removed)
KEPT = {"en": {"de", *LOW}, "orig": set(LANGS), "all": set(LANGS), "en+orig": set(LANGS) - {"en"}}
BEFORE_NLL = {"en": 0.40, "de": 0.55, "fr": 0.60, "zh": 3.80, "ru": 0.70, "jv": 0.90, "ur": 0.80, "ha": 0.85, "hy": 0.95}


def _nll(scale: float) -> dict:
    return {lang: {f"c{i}": (v + 0.1 * i) * scale for i in range(3)} for lang, v in BEFORE_NLL.items()}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A de injection unlearned with GA in the paper's four settings; returns (root, report dir)."""
    root = tmp_path_factory.mktemp("study")
    _eval_dir(root / "inject" / "de-s0" / "eval", {"utility_nll": _nll(1.0), "real_acc": _facts({l: [1.0, 1.0] for l in LANGS})})
    for i, (setting, kept) in enumerate(KEPT.items()):
        run = _run(root, 0, {lang: [float(lang in kept)] * 4 for lang in LANGS}, setting=setting,
                   extra={"utility_nll": _nll(1.0 + 0.1 * i), "real_acc": _facts({l: [1.0, 0.5] for l in LANGS})},
                   ppl_ratio=1.0 + 0.25 * i, status="guard_tripped" if setting == "all" else "finished")
        (run / "curves.jsonl").write_text("".join(json.dumps({"step": step, "lang": lang, "metric": "fake_rate",
                                                              "value": 1.0 - step / 20}) + "\n"
                                                  for step in (0, 5, 10) for lang in LANGS))
    return root, write_report(root, threshold=0.2)


def test_each_cell_shows_the_papers_mark_and_agreement_is_counted(study):
    from mlu_dist.report import PAPER_EXPECTED

    _, out = study
    grid = json.loads((out / "grid.json").read_text())
    assert grid["paper"]["agree"] == 11 and grid["paper"]["cells"] == 16
    assert grid["paper"]["by"] == [{"inject": "de", "method": "ga", "agree": 11, "cells": 16}]
    for row in grid["rows"]:
        for group, cell in row["cells"].items():
            assert cell["paper_removed"] == PAPER_EXPECTED[row["setting"]][group]
            assert cell["agrees"] == (cell["removed"] == cell["paper_removed"])
    assert {r["setting"]: r["paper_agree"] for r in grid["rows"]} == {"en": 4, "orig": 2, "all": 4, "en+orig": 1}
    md = (out / "report.md").read_text()
    assert "**11/16 cells agree with the paper (de/ga 11/16)**" in md
    assert "**injected in de, unlearned with ga**: 11/16 cells agree with the paper" in md
    lines = md.splitlines()
    measured = next(i for i, line in enumerate(lines) if line.startswith("| English+original"))
    cells = [c.strip() for c in lines[measured].strip("|").split("|")]
    assert cells[1].startswith("✓ 0.00") and cells[2].startswith("✗ 1.00") and cells[5] == "1/4"
    # beneath it, the paper's marks: every group removed, so the three kept groups differ (≠)
    assert [c.strip() for c in lines[measured + 1].strip("|").split("|")] == ["↳ paper", "✓", "✓ ≠", "✓ ≠", "✓ ≠", ""]
    assert "| Multilingual (!)" not in md and "| multilingual (!)" in md.lower()


def test_an_english_injection_has_no_paper_mark():
    rows = [{"inject": "en", "method": "ga", "setting": "en", "runs": 1, "guard_tripped": 0, "status": "finished",
             "cells": {"en": {"mean": 0.0, "lo": 0.0, "hi": 0.0, "removed": True}}, "paper_agree": 0, "paper_cells": 0}]
    md = grid_markdown(rows, 0.2)
    assert "↳ paper" not in md.split("**injected in", 1)[1] and "no cell can be compared with the paper" in md


def test_the_reports_utility_is_the_guards_geometric_mean_and_shows_the_guard_ratio(study):
    from mlu_dist.eval.summary import utility_ppl

    root, out = study
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| de | ga | orig |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    before, after = (float(x) for x in cells[4].split(" → "))
    nll_after = json.loads((root / "unlearn" / "de-s0" / "ga-orig" / "eval" / "EVAL.json").read_text())["values"]["utility_nll"]
    summary = json.loads((root / "unlearn" / "de-s0" / "ga-orig" / "eval" / "SUMMARY.json").read_text())["metrics"]
    assert after == round(utility_ppl(nll_after), 2) == round(summary["utility_ppl"]["all"]["mean"], 2)
    assert before == round(utility_ppl(_nll(1.0)), 2)
    arithmetic = sum(s["mean"] for s in summary["utility_ppl"]["lang"].values()) / len(LANGS)
    assert arithmetic > 2 * after  # zh (ppl ~ 45) no longer dominates the row
    assert cells[3] == "1.00 → 0.75" and cells[5:] == ["finished", "1.25×"]  # status, then the guard's last ratio
    assert "| de | ga | all |" in md and "| guard_tripped | 1.50× |" in md
    per_lang = next(line for line in md.splitlines() if line.startswith("| de · ga · orig |"))
    values = [float(c) for c in per_lang.strip("|").split("|")[1:]]
    assert values[0] == after and len(values) == 1 + len(LANGS)
    assert values[1 + LANGS.index("zh")] == round(math.exp(sum(nll_after["zh"].values()) / 3), 2)


class _Page(HTMLParser):
    """Tables (rows of (td class, text)), images and the visible text of a page."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.text, self._cell, self._skip = [], [], [], None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell = [attrs.get("class") or "", ""]
            self.tables[-1][-1].append(self._cell)
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        self._skip = tag in ("style", "script")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None
        self._skip = False

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)
            if self._cell is not None:
                self._cell[1] += data


def _grid_cells(page: _Page) -> list[tuple[str, str]]:
    return [(cls, text.strip()) for table in page.tables for row in table for cls, text in row if text.strip()[:1] in "✓✗"]


def test_report_html_is_a_rendered_self_contained_page(study):
    _, out = study
    page = _Page()
    page.feed((out / "report.html").read_text())
    text = "".join(page.text)
    for raw in ("| --- |", "|---", "---|", "**", "!["):
        assert raw not in text, raw
    assert len(page.tables) == 5  # the grid, the methods ranked, per method, utility, utility per language
    grid = page.tables[0]
    assert [c[1] for c in page.tables[1][0]] == ["#", "method", "setting", "worst group fake_rate", "utility ppl ratio",
                                                 "status"]
    assert [c[1] for c in grid[0]] == ["forget setting", "English", "original", "high-resource", "low-resource", "agree"]
    cells = _grid_cells(page)
    measured = [(cls, t) for cls, t in cells if " " in t and t[2:3].isdigit()]
    assert len(measured) == 16 and sum("differ" in cls for cls, _ in measured) == 5
    assert all(("removed" if t[0] == "✓" else "kept") in cls.split() for cls, t in measured)
    paper_rows = [row for row in grid if row and row[0][1] == "↳ paper"]
    assert len(paper_rows) == 4
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no `chromium` on PATH (launch/test.sh installs it under CI)")
def test_report_html_renders_in_headless_chromium(study, tmp_path):
    _, out = study
    page_url = (out / "report.html").resolve().as_uri()
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--dump-dom", page_url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _Page()
    page.feed(dom.stdout)
    assert len(page.tables) == 5 and len([c for c in _grid_cells(page) if "differ" in c[0]]) >= 5
    assert re.search(r'<td class="[^"]*removed[^"]*">✓ 0\.00', dom.stdout) and "✗ 1.00" in dom.stdout
    shot = tmp_path / "report.png"
    proc = subprocess.run([*browser, "--hide-scrollbars", "--window-size=1280,1400", f"--screenshot={shot}", page_url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", proc.stderr[-2000:]
    assert shot.stat().st_size > 30_000  # a rendered page with coloured tables and a figure, not a blank one
    shutil.copy(shot, out / "report_screenshot.png")  # kept beside the report for a look


def _attack(run, inject_run, start: str, per_lang: dict[str, list[float]], attack: str = "fake:en"):
    d = run / "relearn" / f"{start}-{attack.replace(':', '-')}-abc"
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"job": "relearn", "start": start, "attack": attack,
                                             "inject_run": str(inject_run)}))
    (d / "DONE.json").write_text(json.dumps({"status": "finished"}))
    (d / "config.yaml").write_text((run / "config.yaml").read_text() if (run / "config.yaml").exists()
                                   else "inject:\n  langs: [de]\nunlearn:\n  method: ga\n  forget_langs: en+orig\n")
    _eval_dir(d / "eval", {"fake_rate": _facts(per_lang)})
    return d


def test_the_relearning_section_and_the_grid_after_the_attack(tmp_path):
    """Known values: injected 1.0 everywhere, unlearned to 0.0, the attack brings back 0.5 (recovery
    0.5); the base control learns 0.25 from scratch. --after relearn draws the grid on 0.5."""
    from mlu_dist.report.relearn import collect_attacks, relearn_rows

    ones, zeros, halves = [1.0] * 4, [0.0] * 4, [0.5, 0.5, 0.0, 1.0]
    inject = tmp_path / "inject" / "de-s0"
    inject.mkdir(parents=True)
    (inject / "config.yaml").write_text("inject:\n  langs: [de]\nunlearn:\n  method: ga\n  forget_langs: en+orig\n")
    _eval_dir(inject / "eval", {"fake_rate": _facts({lang: ones for lang in LANGS})})
    run = _run(tmp_path, 0, {lang: zeros for lang in LANGS}, setting="en+orig", method="npo")
    _attack(run, inject, "unlearned", {lang: halves for lang in LANGS})
    _attack(inject, inject, "base", {lang: [0.25] * 4 for lang in LANGS})
    rows = relearn_rows(collect_attacks(tmp_path))
    assert [(r["start"], r["method"], r["setting"]) for r in rows] == [("unlearned", "npo", "en+orig"), ("base", "-", "-")]
    unl, base = rows
    assert unl["cells"]["orig"]["before"]["mean"] == 0.0 and unl["cells"]["orig"]["after"]["mean"] == 0.5
    assert unl["cells"]["orig"]["recovery"] == 0.5 and base["cells"]["low"]["recovery"] == 0.25
    assert base["cells"]["en"]["before"] is None
    out = write_report(tmp_path, 0.2)
    md = (out / "report.md").read_text()
    assert "**injected in de, attacked with fake:en** (1 seed(s))" in md
    assert "| npo forget en+orig | 0.00 → 0.50 [" in md and "(×0.50)" in md and "| base (control) | 0.25 [" in md
    assert json.loads((out / "grid.json").read_text())["rows"][0]["cells"]["orig"]["mean"] == 0.0
    after = write_report(tmp_path, 0.2, tmp_path / "after", after="relearn")
    grid = json.loads((after / "grid.json").read_text())
    assert grid["after"] == "relearn" and grid["rows"][0]["cells"]["orig"]["mean"] == 0.5
    assert "after the relearning attack fake:en" in (after / "report.md").read_text()
    with pytest.raises(FileNotFoundError, match="attacks found: fake:en"):
        write_report(tmp_path, 0.2, tmp_path / "x", after="relearn:fake:de")


def test_held_out_phrasings_and_forget_scopes_are_shown_apart(tmp_path):
    inject = tmp_path / "inject" / "de-s0"
    _eval_dir(inject / "eval", {"fake_rate": _facts({lang: [1.0] * 4 for lang in LANGS}),
                                "para_fake_rate": _facts({lang: [0.5] * 4 for lang in LANGS})})
    _run(tmp_path, 0, {lang: [0.0] * 4 for lang in LANGS}, setting="en+orig",
         extra={"para_fake_rate": _facts({lang: [0.25] * 4 for lang in LANGS})})
    scoped = _run(tmp_path, 1, {lang: [1.0] * 4 for lang in LANGS}, setting="en+orig")
    (scoped / "config.yaml").write_text((scoped / "config.yaml").read_text() + "  forget_scope: answer\n")
    found = collect(tmp_path)
    assert sorted(found) == [("de", "ga", "en+orig"), ("de", "ga[answer]", "en+orig")]  # not pooled as seeds
    md = (write_report(tmp_path, 0.2) / "report.md").read_text()
    section = md.split("## Held-out phrasings")[1].split("##")[0]
    assert "| injected | 1.00 / 0.50 / – |" in section and "| ga forget en+orig | 0.00 / 0.25 / – |" in section


def test_methods_are_ranked_by_the_worst_group_then_utility(tmp_path):
    from mlu_dist.report import ranking_markdown, ranking_rows

    nll = lambda v: {"utility_nll": _facts({lang: [v] * 3 for lang in LANGS})}  # noqa: E731
    _eval_dir(tmp_path / "inject" / "de-s0" / "eval", {"fake_rate": _facts({lang: [1.0] * 4 for lang in LANGS})} | nll(1.0))
    gone, half, orig_left = {lang: [0.0] * 4 for lang in LANGS}, {lang: [0.5] * 4 for lang in LANGS}, \
        {lang: ([1.0] * 4 if lang == "de" else [0.0] * 4) for lang in LANGS}
    _run(tmp_path, 0, gone, method="ga", extra=nll(2.0))              # all gone, ppl x e
    _run(tmp_path, 0, gone, method="npo", extra=nll(1.5))             # all gone, cheaper: rank 1
    _run(tmp_path, 0, half, method="wga", extra=nll(1.0))             # half left everywhere, utility kept
    _run(tmp_path, 0, orig_left, method="ceu", extra=nll(1.0))        # the original language keeps it all
    found = collect(tmp_path)
    ranked = ranking_rows(paper_grid(found, 0.2), found)
    assert [x["method"] for x in ranked] == ["npo", "ga", "wga", "ceu"]
    assert ranked[0]["worst_fake_rate"] == 0.0 and ranked[0]["ppl_ratio"] == pytest.approx(math.exp(0.5))
    assert ranked[3]["worst_group"] == "orig" and ranked[3]["worst_fake_rate"] == 1.0
    assert [x["front"] for x in ranked] == [True, False, True, False]  # ga: npo beats it; ceu: wga does
    md = ranking_markdown(ranked)
    assert re.search(r"\| 1 +\| npo ★", md)
    report = (write_report(tmp_path) / "report.md").read_text()
    assert "## Methods ranked" in report and "npo ★" in report


def test_the_ranking_pools_seeds_as_the_mean_of_each_seeds_worst_group(tmp_path):
    """Three seeds: a row's value is the mean over seeds of each seed's worst group (not the worst of
    the seed-pooled group means) with its range; per method, the mean over settings and seeds with
    the range of each seed's mean over the settings."""
    from mlu_dist.report.ranking import method_rows, ranking_rows

    nll = lambda v: {"utility_nll": _facts({lang: [v] * 3 for lang in LANGS})}  # noqa: E731
    every = lambda v: {lang: [v] * 4 for lang in LANGS}  # noqa: E731
    only = lambda langs: {lang: [1.0 if lang in langs else 0.0] * 4 for lang in LANGS}  # noqa: E731
    for seed in range(3):
        _eval_dir(tmp_path / "inject" / f"de-s{seed}" / "eval", {"fake_rate": _facts(every(1.0))} | nll(1.0))
    # npo/en: the fake is left in English for seed 0, in German for seed 1, nowhere for seed 2; npo/orig: gone
    for seed, left in enumerate([("en",), ("de",), ()]):
        _run(tmp_path, seed, only(left), method="npo", setting="en", extra=nll(1.0))
        _run(tmp_path, seed, every(0.0), method="npo", setting="orig", extra=nll(1.0))
        for setting in ("en", "orig"):  # ga: a quarter left everywhere, every seed, at a higher perplexity
            _run(tmp_path, seed, every(0.25), method="ga", setting=setting, extra=nll(2.0))
    found = collect(tmp_path)
    ranked = ranking_rows(paper_grid(found, 0.2), found)
    assert [(x["method"], x["setting"]) for x in ranked] == [("npo", "orig"), ("ga", "en"), ("ga", "orig"), ("npo", "en")]
    npo_en = ranked[3]
    assert npo_en["worst_by_seed"] == [(0, 1.0), (1, 1.0), (2, 0.0)]
    # mean of the seeds' worst groups: 2/3 (the pooled group means would say 1/3 in en and in orig)
    assert npo_en["worst_fake_rate"] == pytest.approx(2 / 3) and npo_en["ppl_ratio"] == pytest.approx(1.0)
    assert ranked[1]["worst_fake_rate"] == pytest.approx(0.25) and ranked[1]["ppl_ratio"] == pytest.approx(math.e)
    methods = method_rows(ranked)
    assert [m["method"] for m in methods] == ["ga", "npo"]  # 0.25 < 1/3
    npo = methods[1]
    assert npo["worst_fake_rate"] == pytest.approx(1 / 3) and npo["per_seed"] == pytest.approx([0.5, 0.5, 0.0])
    assert (npo["settings"], npo["seeds"], npo["runs"], npo["best"]["setting"]) == (2, 3, 6, "orig")
    md = (write_report(tmp_path) / "report.md").read_text()
    assert "| npo    | English  | 0.67 (" in md and "[0.00–1.00]" in md
    assert re.search(r"\| 2 +\| npo +\| 2 × 3 +\| 0\.33 \[0\.00–0\.50\] +\| 1\.00× +\| 0/6 +\| original: 0\.00, 1\.00× +\|", md)
