"""`mlu dashboard` and `mlu sync`: the W&B workspace and report are built offline from what the runs
logged (real W&B client, offline), validated by wandb_workspaces' own models, refused when a key
is missing; `mlu sync` says per run what happened and never claims an upload that did not happen.
Nothing here contacts any address but 127.0.0.1 (a closed port, or a local server answering 401).

The quick demo's own dashboard (real runs) is checked in tests/test_demo.py with
:func:`assert_every_key_was_logged`."""

import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import clean_env, mlu_cmd

LANGS = ["en", "de", "ha"]
SECRET = "mlu-test-key-0123456789abcdef0123456789abcdef"  # the secret test's key (tests/test_tracking.py)
COLOURS = {"en": "#000000", "de": "#1f77b4", "ha": "#ff7f0e"}  # mlu report: black, tab:blue, tab:orange


def _unlearn_row(step: int, langs=LANGS) -> dict:
    """What an unlearning run logs at a curve point (mlu_dist/jobs/unlearn.py)."""
    row = {f"forget/{lang}/fake_rate": 1.0 / (step + 1) for lang in langs}
    row |= {f"forget/{lang}/fake_pref": 0.5 - step for lang in langs} | {f"retain/{lang}/ppl": 7.0 for lang in langs}
    row |= {f"group/{g}/fake_rate": 0.5 for g in ("en", "orig", "low")}
    return row | {"unlearn/ppl": 7.0 + step, "unlearn/ppl_ratio": 1.0 + step / 10, "unlearn/forget_fake_rate": 0.4}


def _run(root: Path, rel: str, job: str, inject: str, rows: list[tuple[int, dict]], method: str = "",
         setting: str = "", wandb: bool = True, attacks=(), scope: str = "all") -> Path:
    from mlu_dist.tracking import append_jsonl
    from mlu_dist.tracking.wandb_tracker import WandbTracker

    run = root / rel
    run.mkdir(parents=True)
    cfg = {"data": {"langs": LANGS}, "inject": {"langs": [inject], "split_seed": 0},
           "unlearn": {"method": method or "ga", "forget_langs": setting or "en", "forget_scope": scope},
           "tracking": {"group": root.name, "project": "lab", "entity": ""}, "relearn": {"attacks": list(attacks)}}
    (run / "meta.json").write_text(json.dumps({"job": job}))
    (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    append_jsonl(run / "metrics.jsonl", [{"step": step} | metrics for step, metrics in rows])
    if wandb:
        tracker = WandbTracker(run, job, cfg, "lab", group=root.name, mode="offline")
        for step, metrics in rows:
            tracker.log(metrics, step)
        tracker.close()
    return run


def _report_files(root: Path) -> None:
    """grid.json as `mlu report` writes it (the dashboard draws the grid from its rows; report.md is
    never read back)."""
    (root / "report").mkdir(exist_ok=True)
    cells = {"en": {"mean": 0.1, "lo": 0.0, "hi": 0.2, "removed": True, "paper_removed": True, "agrees": True},
             "orig": {"mean": 0.5, "lo": 0.3, "hi": 0.7, "removed": False, "paper_removed": True, "agrees": False}}
    (root / "report" / "grid.json").write_text(json.dumps({"threshold": 0.2, "paper": {
        "source": "Lu & Koehn", "agree": 1, "cells": 2}, "rows": [
        {"inject": "de", "method": "ga", "setting": "en", "cells": cells, "runs": 1, "guard_tripped": 0,
         "paper_agree": 1, "paper_cells": 2}]}))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep with a subset of the study: data.langs en/de/ha, injections de (spread logged) and ha
    (evaluated only), unlearning of de with ga (en, orig) and npo (en); W&B offline."""
    root = tmp_path_factory.mktemp("sweeps") / "lab-sweep"
    root.mkdir()
    (root / "sweep_flags.json").write_text(json.dumps({"evaluate": True, "wandb_group": "lab-sweep", "wandb": {
        "project": "lab", "entity": "", "mode": "offline", "tags": []}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WANDB_MODE", raising=False)
        spread = [(s, {f"spread/{lang}/fake_pref": s - 1.0 for lang in LANGS}) for s in (0, 5)]
        _run(root, "inject/de-s0", "inject", "de", spread)
        _run(root, "inject/ha-s0", "inject", "ha", [(5, {"train/loss": 1.0})])
        for method, setting in (("ga", "en"), ("ga", "orig"), ("npo", "en")):
            _run(root, f"unlearn/de-s0/{method}-{setting}", "unlearn", "de",
                 [(s, _unlearn_row(s)) for s in (0, 2)] + [(1, {"train/loss": 2.0})], method, setting)
    _report_files(root)
    return root


def assert_every_key_was_logged(root: Path, definition: dict) -> int:
    """Every key each panel names is in the `.wandb` history of every run it draws (read back with
    read_offline_run), each series names one of the panel's runs and keys; returns the panels."""
    from mlu_dist.tracking.dashboard import panels
    from mlu_dist.tracking.wandb_tracker import read_offline_run

    history = {}
    for folder in root.rglob("offline-run-*"):
        logged = read_offline_run(folder)
        history.setdefault(logged["run"]["id"], set()).update(k for row in logged["history"] for k in row)
    count = 0
    for where, p in panels(definition):
        need = [p["x"], *p["y"]] if p["kind"] == "line" else p["keys"]
        for rid in p["runs"]:
            keys = history[rid]
            assert all(k in keys or any(x.startswith(k + "/") for x in keys) for k in need), (where, p["title"], rid)
        for series in p.get("series", {}):
            rid, key = series.split(":", 1)
            assert rid in p["runs"] and key in p["y"], (where, p["title"], series)
        count += 1
    return count


def test_a_sweep_with_a_subset_of_languages_and_methods_gets_only_those_panels(sweep):
    from mlu_dist.tracking.dashboard import write_dashboard
    from mlu_dist.tracking.wandb_views import load

    path, d = write_dashboard(sweep)
    assert path == sweep / "report" / "dashboard.json" and json.loads(path.read_text())["format"] == d["format"]
    w = d["workspace"]
    assert [s["name"] for s in w["sections"]] == ["injected in de"]  # ha: neither spread logged nor unlearned
    titles = [p["title"] for p in w["sections"][0]["panels"]]
    assert titles == ["injecting in de (seed 0): fake preference", "ga: forget English", "ga: forget original",
                      "npo: forget English", "utility: perplexity ÷ step 0 (the guard's ratio)",
                      "utility: perplexity (all languages)"]
    curves = w["sections"][0]["panels"][1:4]
    unlearn_ids = {r["id"] for r in d["runs"] if r["job"] == "unlearn"}
    for p in curves:
        assert p["x"] == "unlearn/step" and p["y"] == [f"forget/{lang}/fake_rate" for lang in LANGS]
        (rid,) = p["runs"]
        colours = {s: v["color"] for s, v in p["series"].items()}
        assert colours == {f"{rid}:forget/{x}/fake_rate": COLOURS[x] for x in LANGS}
        assert [v["mark"] for v in p["series"].values()] == ["dashed", "solid", "dashed"]  # solid = injected (de)
        assert set(p["context"]) == unlearn_ids - {rid}  # the other runs of the view, drawn grey
    assert w["group"] == "lab-sweep" and w["job_types"] == ["inject", "unlearn"]
    grids = [b["name"] for b in d["report"]["blocks"] if b["kind"] == "panels"]
    assert grids == ["de · ga · forget English", "de · ga · forget original", "de · npo · forget English"]
    text = "\n".join(b["text"] for b in d["report"]["blocks"] if b["kind"] in ("markdown", "h2"))
    assert "The paper's grid" in text and re.search(r"\| English +\| ✓ 0\.10 \[0\.00,0\.20\] +\| ✗ 0\.50 \[0\.30,0\.70\] +\|.*\| 1/2", text)
    assert "**1/2 grid cells agree with the paper** (Lu & Koehn)" in text
    assert ("**de · ga · forget English**: removed in English; survives in original; 1/2 as the paper expects "
            "(not in original)") in text
    assert assert_every_key_was_logged(sweep, d) == 6 + 3 * 2
    # the library's own models take the saved form back
    workspace, report = load(json.loads(path.read_text())["library"])
    assert [s.name for s in workspace.sections] == ["injected in de"] and len(workspace.sections[0].panels) == 6
    assert [str(m.name) for m in workspace.sections[0].panels[1].y] == [f"forget/{x}/fake_rate" for x in LANGS]
    assert workspace.project == "lab" and "lab-sweep" in workspace.runset_settings.filters
    assert report.title == "mlu_dist: lab-sweep" and sum(type(b).__name__ == "PanelGrid" for b in report.blocks) == 3


def test_a_key_a_run_never_logged_is_refused_with_the_missing_keys_listed(tmp_path, capfd):
    """One unlearning run probed en and de only (its metrics.jsonl: no W&B files, the fallback) while
    its config says en, de, ha: the dashboard names the panel, the run and the missing key."""
    from mlu_dist.cli import main
    from mlu_dist.tracking.dashboard import DashboardError, write_dashboard

    root = tmp_path / "partial"
    _run(root, "unlearn/de-s0/ga-en", "unlearn", "de", [(0, _unlearn_row(0, ["en", "de"]))], "ga", "en", wandb=False)
    with pytest.raises(DashboardError) as err:
        write_dashboard(root)
    msg = str(err.value)
    assert "panel 'ga: forget English'" in msg and "never logged forget/ha/fake_rate" in msg
    assert "metrics.jsonl" in msg and "forget/de/fake_rate" not in msg
    assert not (root / "report" / "dashboard.json").exists()
    assert main(["dashboard", str(root), "--offline"]) == 2
    assert "never logged forget/ha/fake_rate" in capfd.readouterr().err


def test_relearning_panels_appear_only_when_the_runs_logged_relearn_keys(tmp_path):
    from mlu_dist.tracking.dashboard import check, plan

    root = tmp_path / "attacked"
    _run(root, "unlearn/de-s0/ga-en", "unlearn", "de", [(s, _unlearn_row(s)) for s in (0, 2)], "ga", "en", wandb=False)
    definition, runs = plan(root)
    assert not [p for _, p in panels_of(definition) if "relearn" in p["x"]]
    attack = [(s, {f"relearn/{lang}/fake_rate": 0.1 * s for lang in LANGS}) for s in (0, 5)]
    _run(root, "unlearn/de-s0/ga-en/relearn/unlearned-fake-en-0a1b2c3d", "relearn", "de", attack, "ga", "en",
         wandb=False, attacks=["fake:en"])
    definition, runs = plan(root)
    (p,) = [p for _, p in panels_of(definition) if "relearn" in p["x"]]
    assert p["title"] == "ga: forget English, then relearning fake:en" and p["x"] == "relearn/step"
    assert p["y"] == [f"relearn/{lang}/fake_rate" for lang in LANGS]
    assert definition["workspace"]["job_types"] == ["relearn", "unlearn"]
    check(definition, runs)


def test_each_forget_scope_is_its_own_cell(tmp_path):
    from mlu_dist.tracking.dashboard import plan

    root = tmp_path / "scopes"
    for scope in ("all", "answer"):
        _run(root, f"unlearn/de-s0/ga-en-{scope}", "unlearn", "de", [(0, _unlearn_row(0))], "ga", "en", wandb=False,
             scope=scope)
    titles = [p["title"] for _, p in panels_of(plan(root)[0]) if p["x"] == "unlearn/step" and len(p["y"]) > 1]
    assert titles == ["ga: forget English", "ga[answer]: forget English"] * 2  # workspace, then report (one label everywhere)


def panels_of(definition):
    from mlu_dist.tracking.dashboard import panels

    return list(panels(definition))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in clean_env().items() if not k.startswith("WANDB_")}
    return env | {"NETRC": os.devnull, "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
                  "WANDB_ERROR_REPORTING": "false", "HOME": str(tmp_path)} | extra


def test_without_network_sync_uploads_nothing_fails_fast_and_says_what_is_ready(sweep, tmp_path):
    from mlu_dist.tracking.dashboard import FILE

    assert subprocess.run(mlu_cmd("dashboard", str(sweep), "--offline"), env=_env(tmp_path), capture_output=True,
                          timeout=120).returncode == 0
    url = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.time()
    proc = subprocess.run(mlu_cmd("sync", str(sweep)), capture_output=True, text=True, timeout=60,
                          env=_env(tmp_path, WANDB_BASE_URL=url))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert time.time() - t0 < 20 and "Traceback" not in out
    assert "nothing uploaded" in out and f"the W&B server {url} cannot be reached" in out
    assert "`wandb login`" in out and "WANDB_API_KEY" in out
    assert "ready to push: 5 offline W&B run(s)" in out and f"the dashboard {sweep / FILE}" in out
    assert not list(sweep.rglob("*.wandb.synced"))
    # a key but no network: only the network is the problem
    proc = subprocess.run(mlu_cmd("sync", str(sweep)), capture_output=True, text=True, timeout=60,
                          env=_env(tmp_path, WANDB_BASE_URL=url, WANDB_API_KEY=SECRET))
    assert proc.returncode == 3 and "cannot be reached" in proc.stdout and "no W&B API key" not in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr


class _Refuse(http.server.BaseHTTPRequestHandler):
    """A W&B server that refuses every request (401), as the real one does a bad key."""

    def _refuse(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"errors":[{"message":"user is not logged in"}]}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _refuse

    def log_message(self, *args):
        pass


def test_sync_reports_every_refused_upload_exits_nonzero_and_writes_no_key(sweep, tmp_path):
    """`wandb sync` exits 0 when the server refuses the upload (the old `mlu sync` then printed
    "synced N run(s)"): each run is reported failed with the server's reason, exit 1, the dashboard
    is not pushed, and the key is in no file of the sweep."""
    from mlu_dist.tracking.dashboard import write_dashboard

    write_dashboard(sweep)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = subprocess.run(mlu_cmd("sync", str(sweep)), capture_output=True, text=True, timeout=240,
                              env=_env(tmp_path, WANDB_BASE_URL=f"http://127.0.0.1:{server.server_port}",
                                       WANDB_API_KEY=SECRET))
    finally:
        server.shutdown()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    failed = [line for line in proc.stdout.splitlines() if line.strip().startswith("failed")]
    assert len(failed) == 5 and all("401" in line for line in failed), out
    assert "0 uploaded, 0 already uploaded, 5 failed" in out and "wandb login --relogin" in out
    assert "dashboard" in out and "not pushed: 5 of its runs did not upload" in out
    assert not list(sweep.rglob("*.wandb.synced"))
    for path in sweep.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in out


def test_the_sweep_writes_its_dashboard_at_the_end_and_a_failure_is_one_warning(sweep, tmp_path, capsys):
    """The report stage (every executor runs it) writes the definition; when it cannot be built the
    sweep still finishes, with one warning."""
    from mlu_dist.launcher.tasks import _write_dashboard

    _write_dashboard(sweep)
    assert "[dashboard]" in capsys.readouterr().out and (sweep / "report" / "dashboard.json").exists()
    broken = tmp_path / "no-runs"
    broken.mkdir()
    _write_dashboard(broken)
    printed = capsys.readouterr()
    err = printed.err.strip().splitlines()
    assert not printed.out and len(err) == 1 and err[0].startswith("warning: [dashboard] not written (DashboardError")
