"""`mlu demo --quick`: the whole study end to end through the local executor (real DeepSpeed,
real W&B client offline), every report artefact, the printed grid = the runs' SUMMARY.json, and
the same numbers again from a second run with the same seed."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import clean_env, mlu_cmd


def _demo(out: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(mlu_cmd("demo", "--quick", "--out", str(out)), capture_output=True, text=True,
                          env=clean_env(), timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out / "demo-quick", _demo(out)


def _unlearn_summaries(root: Path) -> dict:
    """{(inject lang, method, setting): SUMMARY.json metrics} of every unlearning run of a sweep."""
    from omegaconf import OmegaConf

    found = {}
    for summary in sorted(root.glob("unlearn/*/*/eval/SUMMARY.json")):
        cfg = OmegaConf.load(summary.parent.parent / "config.yaml")
        found[(cfg.inject.langs[0], cfg.unlearn.method, cfg.unlearn.forget_langs)] = \
            json.loads(summary.read_text())["metrics"]
    return found


@pytest.mark.slow
def test_the_quick_demo_writes_every_artefact_and_prints_the_grid_of_its_runs(demo_run):
    root, proc = demo_run
    report = root / "report"
    for name in ("report.md", "report.html", "grid.json", "spread_fake_rate.png", "groups_fake_rate.png",
                 "spread_fake_rate.csv", "curves_de.png"):
        assert (report / name).stat().st_size > 0, name
    md = (report / "report.md").read_text()
    assert "## Utility" in md and "| de | npo | en+orig |" in md
    summaries = _unlearn_summaries(root)
    # the quick demo unlearns de only (2 methods x 4 settings); en and ha are injected and evaluated
    assert sorted(summaries) == sorted((("de", m, s) for m in ("ga", "npo") for s in ("en", "orig", "all", "en+orig")))
    injected = {json.loads(p.read_text())["job"] for p in root.glob("inject/*/meta.json")}
    assert injected == {"inject"} and len(list(root.glob("inject/*/eval/SUMMARY.json"))) == 3
    # every cell the terminal shows is the run's own SUMMARY.json group mean
    out = proc.stdout
    grid = out.split("## The paper's grid", 1)[1].split("\n## ", 1)[0]  # the grid section only
    shown = 0
    for block in re.split(r"\*\*injected in ", grid)[1:]:
        inject, method = re.match(r"(\S+), unlearned with (\S+)\*\*", block).groups()
        names = {"English": "en", "original": "orig", "multilingual": "all", "English+original": "en+orig"}
        for line in block.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0].split(" (!")[0] not in names:
                continue
            setting = names[cells[0].split(" (!")[0]]
            groups = summaries[(inject, method, setting)]["fake_rate"]["group"]
            for group, cell in zip(("en", "orig", "high", "low"), cells[1:]):
                mark, mean, ci = cell.split()
                stats = groups[group]
                assert mean == f"{stats['mean']:.2f}" and ci == f"[{stats['lo']:.2f},{stats['hi']:.2f}]", \
                    (inject, method, setting, group, cell, stats)
                assert mark == ("✓" if stats["mean"] < 0.2 else "✗")
                shown += 1
    assert shown == 2 * 4 * 4
    assert "Spread after injection" in out and f"mlu sync {root}" in out and "report.html" in out
    # the W&B client logged every training run offline into its run directory
    for run in [*root.glob("inject/*"), *root.glob("unlearn/*/*")]:
        assert list(run.glob("wandb/offline-run-*")), run


@pytest.mark.slow
def test_the_quick_demo_saves_its_wandb_dashboard_offline_and_every_key_was_logged(demo_run, tmp_path):
    """The sweep's end wrote report/dashboard.json: one workspace section per injection language,
    per method x setting a curve panel; every key it names is in the runs' .wandb history; the
    library's models load it; without network `mlu sync` uploads nothing and says what is ready."""
    from test_dashboard import _closed_port, _env, assert_every_key_was_logged

    from mlu_dist.tracking.wandb_views import load

    root, proc = demo_run
    path = root / "report" / "dashboard.json"
    assert "[dashboard]" in (root / "logs" / "report.log").read_text()
    d = json.loads(path.read_text())
    sections = {s["name"]: [p["title"] for p in s["panels"]] for s in d["workspace"]["sections"]}
    assert list(sections) == ["injected in en", "injected in de", "injected in ha"]
    names = {"en": "English", "orig": "original", "all": "multilingual", "en+orig": "English+original"}
    cells = [f"{m}: forget {names[s]}" for m in ("ga", "npo") for s in ("en", "orig", "all", "en+orig")]
    assert [t for t in sections["injected in de"] if ": forget " in t] == cells
    assert sum(t.startswith("utility") for t in sections["injected in de"]) == 2
    assert assert_every_key_was_logged(root, d) >= 8 + 8 * 2
    workspace, report = load(d["library"])
    assert len(workspace.sections) == 3 and report.title == "mlu_dist: demo-quick"
    out = subprocess.run(mlu_cmd("sync", str(root)), capture_output=True, text=True, timeout=120,
                         env=_env(tmp_path, WANDB_BASE_URL=f"http://127.0.0.1:{_closed_port()}"))
    assert out.returncode == 3 and f"ready to push: the dashboard {path}" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
def test_running_the_demo_again_reuses_every_finished_run(demo_run):
    root, _ = demo_run
    again = _demo(root.parent)
    assert "[demo] 0 cell(s) ran, 13 reused" in again.stdout


@pytest.mark.slow
def test_the_same_seed_gives_the_same_numbers(demo_run, tmp_path):
    root, _ = demo_run
    _demo(tmp_path)
    first, second = _unlearn_summaries(root), _unlearn_summaries(tmp_path / "demo-quick")
    assert first.keys() == second.keys()
    for key in first:
        for metric in ("fake_rate", "fake_pref_win", "utility_ppl"):
            a = {lang: s["mean"] for lang, s in first[key][metric]["lang"].items()}
            b = {lang: s["mean"] for lang, s in second[key][metric]["lang"].items()}
            assert a == pytest.approx(b, rel=1e-6, abs=1e-9), (key, metric)
    spread = [(p.parent.parent.name, json.loads(p.read_text())["metrics"]["fake_rate"]["lang"])
              for p in sorted(root.glob("inject/*/eval/SUMMARY.json"))]
    again = [(p.parent.parent.name, json.loads(p.read_text())["metrics"]["fake_rate"]["lang"])
             for p in sorted((tmp_path / "demo-quick").glob("inject/*/eval/SUMMARY.json"))]
    assert spread == again
