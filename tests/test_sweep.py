"""Sweeps: expansion and plans (fast), and a real sweep on a real Slurm cluster (marked slurm)."""

import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import ROOT, clean_env, mlu_cmd
from mlu_dist.config import ConfigError, load_config
from mlu_dist.launcher.plan import expand, format_plan, jobs_of
from mlu_dist.launcher.spec import SweepSpec

SWEEPS = ROOT / "configs" / "sweeps"


def test_the_papers_grid_is_nine_injections_not_thirty_six(tmp_path):
    spec = load_config(SweepSpec, [SWEEPS / "paper.yaml"], [f"out_dir={tmp_path}"])
    cells = expand(spec)
    stages = [c.stage for c in cells]
    # 9 x 4 settings, less the English injection's orig and en+orig (the same languages as 'en')
    assert stages.count("base") == 1 and stages.count("inject") == 9 and stages.count("unlearn") == 34
    en_settings = [c.config.unlearn.forget_langs for c in cells if c.stage == "unlearn" and c.config.inject.langs == ["en"]]
    assert en_settings == ["en", "all"]
    injects = {c.id: c for c in cells if c.stage == "inject"}
    for c in cells:
        if c.stage == "unlearn":  # each unlearning run waits for exactly its own injection
            assert len(c.deps) == 1 and c.deps[0] in injects
            assert str(injects[c.deps[0]].run_dir) == c.config.unlearn.from_run
    jobs = jobs_of(cells)
    assert [j["name"] for j in jobs].count("inject") == 1 and len(jobs) == 1 + 1 + 9 + 1
    assert all(j["after"] == [f"inject_{i}"] for i, j in enumerate(jobs[2:-1]))
    # injections from a given pretrained model need no base job
    scale = expand(load_config(SweepSpec, [SWEEPS / "slurm-8b.yaml"], [f"out_dir={tmp_path}", "axes.seeds=[0]",
                                                                        "axes.methods=[ga]"]))
    assert [c.stage for c in scale].count("base") == 0 and all(c.deps == [] for c in scale if c.stage == "inject")
    plan = format_plan(spec, cells)
    assert "inject                                   array of 9  after: base" in plan
    assert "--array=0-8%16 --nodes=1" in plan and "--dependency=afterok:$JOB_inject_3" in plan
    assert expand(spec)[5].id == cells[5].id  # ids are deterministic


def test_unlearn_langs_limits_which_injections_are_unlearned(tmp_path):
    spec = load_config(SweepSpec, [SWEEPS / "paper.yaml"], [f"out_dir={tmp_path}", "axes.inject_langs=[en,de,ha]",
                                                              "axes.unlearn_langs=[de,ha]", "axes.methods=[ga,npo]"])
    cells = expand(spec)
    unlearned = {tuple(c.config.inject.langs) for c in cells if c.stage == "unlearn"}
    assert unlearned == {("de",), ("ha",)} and sum(c.stage == "unlearn" for c in cells) == 2 * 2 * 4
    assert sum(c.stage == "inject" for c in cells) == 3  # en is still injected and evaluated
    with pytest.raises(ConfigError, match="unlearn_langs: 'fr' is not one of inject_langs"):
        load_config(SweepSpec, [SWEEPS / "paper.yaml"], ["axes.inject_langs=[de]", "axes.unlearn_langs=[fr]"])


def test_seeds_multiply_injections_and_change_the_split(tmp_path):
    spec = load_config(SweepSpec, [SWEEPS / "test.yaml"], [f"out_dir={tmp_path}", "axes.seeds=[0,1,2]"])
    cells = expand(spec)
    injects = [c for c in cells if c.stage == "inject"]
    assert len(injects) == 2 * 3 and len({c.id for c in injects}) == 6
    assert {c.config.inject.split_seed for c in injects} == {0, 1, 2}


def test_bad_sweep_specs_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(SweepSpec, [SWEEPS / "test.yaml"], ["axes.methods=[gaa]", "axes.inject_langs=[de,xx]",
                                                          "executor=k8s"])
    msg = str(err.value)
    assert "'gaa' is not valid (did you mean 'ga'?)" in msg and "unknown language code(s) xx" in msg
    assert "executor: 'k8s' is not valid" in msg
    with pytest.raises(ConfigError, match=r"unknown config key 'resources.inject.gpu'.*gpus_per_node"):
        load_config(SweepSpec, [SWEEPS / "test.yaml"], ["resources.inject.gpu=1"])


def _sacct(ids, settle=60.0):
    """Job rows from accounting. slurmdbd records a job's end a moment after the job has left the
    queue (which is when the launcher returns), so wait until every row has its end time."""
    deadline = time.time() + settle
    while True:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State,Start,End", "-j", ",".join(ids)],
                             capture_output=True, text=True, check=True).stdout
        rows = {}
        for line in out.splitlines():
            jid, state, start, end = line.split("|")
            rows[jid] = (state.split()[0], datetime.fromisoformat(start) if start != "Unknown" else None,
                         datetime.fromisoformat(end) if end != "Unknown" else None)
        if (rows and all(end is not None for _, _, end in rows.values())) or time.time() > deadline:
            return rows
        time.sleep(1)


def sweep(*args, timeout=600):
    proc = subprocess.run(mlu_cmd("sweep", *args), capture_output=True, text=True, env=clean_env(), timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.slurm
def test_a_real_sweep_runs_in_dependency_order_and_resubmits_only_what_is_missing(slurm_cluster, tmp_path):
    out = tmp_path / "runs"
    sweep(str(SWEEPS / "test.yaml"), f"out_dir={out}")
    root = out / "test"
    manifest = json.loads((root / "manifest.json").read_text())
    assert all(m["status"] == "finished" for m in manifest.values()), manifest
    ids = {cid: m["job_id"] for cid, m in manifest.items()}
    acct = _sacct(sorted({j.split("_")[0] for j in ids.values()}))
    assert all(state == "COMPLETED" for state, _, _ in acct.values()), acct
    inject_jobs = {j for cid, j in ids.items() if cid.startswith("inject")}
    assert len(inject_jobs) == 2 and len({j.split("_")[0] for j in inject_jobs}) == 1  # one array, 2 tasks
    cells = {c["id"]: c for c in json.loads((root / "cells.json").read_text())}
    for cid, cell in cells.items():
        if cell["stage"] == "unlearn":  # sacct: each unlearning task started after its own injection ended
            (dep,) = cell["deps"]
            assert acct[ids[cid]][1] >= acct[ids[dep]][2], (cid, acct[ids[cid]], acct[ids[dep]])
    status = subprocess.run(mlu_cmd("sweep", "status", str(root)), capture_output=True, text=True, env=clean_env())
    assert status.stdout.count("finished") == len(cells) and "COMPLETED" in status.stdout
    # re-submitting the finished sweep submits nothing
    again = sweep(str(SWEEPS / "test.yaml"), f"out_dir={out}")
    assert "0 cell(s) run/submitted" in again.stdout
    # deleting one cell's outputs resubmits exactly that cell (and the report that summarises it)
    victim = next(cid for cid, c in cells.items() if c["stage"] == "unlearn")
    import shutil

    shutil.rmtree(cells[victim]["run_dir"])
    third = sweep(str(SWEEPS / "test.yaml"), f"out_dir={out}")
    assert "2 cell(s) run/submitted" in third.stdout, third.stdout
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest[victim]["job_id"] != ids[victim] and manifest[victim]["status"] == "finished"
    assert all(manifest[c]["job_id"] == ids[c] for c in cells if c not in (victim, "report"))


@pytest.mark.slow
@pytest.mark.slurm
def test_a_cancelled_sweep_is_reported_and_never_hangs_the_launcher(slurm_cluster, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen(mlu_cmd("sweep", str(SWEEPS / "test.yaml"), f"out_dir={out}", "name=cancel",
                                    "overrides=[inject.train.steps=100000,inject.train.eval_every=0]"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env())
    root = out / "cancel"
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until the injections run
        if (root / "manifest.json").exists():
            m = json.loads((root / "manifest.json").read_text())
            jobs = [v["job_id"] for k, v in m.items() if k.startswith("inject") and v.get("job_id")]
            queue = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True).stdout
            running = {line.split()[0] for line in queue.splitlines() if line.endswith("RUNNING")}
            if jobs and set(jobs) <= running:
                break
        time.sleep(1)
    else:  # leave no 100000-step job behind to block the tests after this one
        subprocess.run(mlu_cmd("sweep", "cancel", str(root)), capture_output=True, env=clean_env())
        proc.kill()
        pytest.fail("the injection tasks never ran")
    cancelled = subprocess.run(mlu_cmd("sweep", "cancel", str(root)), capture_output=True, text=True, env=clean_env())
    assert "cancelled Slurm job(s)" in cancelled.stdout
    output, _ = proc.communicate(timeout=120)  # the waiting launcher returns instead of hanging
    assert proc.returncode == 1 and "not finished" in output
    status = subprocess.run(mlu_cmd("sweep", "status", str(root)), capture_output=True, text=True, env=clean_env())
    assert "cancelled" in status.stdout and "CANCELLED" in status.stdout


@pytest.mark.slow
@pytest.mark.slurm
def test_a_requeued_training_job_resumes_from_its_checkpoint(slurm_cluster, quick_base, tmp_path):
    """scontrol requeue (SIGTERM, as a Slurm 22.05 preemption sends) in the middle of an injection:
    the step in progress ends with a checkpoint, the job restarts, resumes from exactly there (no
    step lost or repeated) and ends with the uninterrupted losses."""
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.jobs.inject import run_inject
    from mlu_dist.tracking import read_jsonl

    _, base_dir = quick_base
    steps = 800
    over = (f"overrides=[inject.from_model={base_dir / 'model'},inject.train.eval_every=0,inject.train.steps={steps},"
            f"inject.train.save_every=50,inject.train.log_every=1,unlearn.train.steps=2]")
    out = tmp_path / "runs"
    sweep(str(SWEEPS / "test.yaml"), f"out_dir={out}", "name=requeue", "axes.inject_langs=[de]",
          "axes.forget_langs=[en]", "evaluate=false", over, "--no-wait")
    root = out / "requeue"
    cell = next(c for c in json.loads((root / "cells.json").read_text()) if c["stage"] == "inject")
    run_dir = Path(cell["run_dir"])
    deadline = time.time() + 240
    while time.time() < deadline and not (run_dir / "checkpoints" / "LATEST").exists():
        time.sleep(0.5)
    job = json.loads((root / "manifest.json").read_text())[cell["id"]]["job_id"]
    before = int((run_dir / "checkpoints" / "LATEST").read_text().strip().split("_")[1])
    assert before < steps
    subprocess.run(["scontrol", "requeue", job], check=True)
    while time.time() < deadline + 240 and not (run_dir / "DONE.json").exists():
        time.sleep(1)
    assert (run_dir / "DONE.json").exists(), "the requeued job did not finish"
    logs = "".join(p.read_text(errors="replace") for p in (root / "submitit").rglob(f"{job}*_log.out"))
    warnings = "".join(p.read_text(errors="replace") for p in (root / "submitit").rglob(f"{job}*_log.err"))
    # the signal (a warning, on stderr) ended the step in progress with a checkpoint there, and the
    # rerun started from it
    assert "warning: caught SIGTERM: finishing this step, then a checkpoint and exit" in warnings, warnings[-3000:]
    stopped = re.search(r"SIGTERM: checkpoint at step (\d+)", logs)
    assert stopped, logs[-3000:]
    assert re.search(rf"resumed from \S+step_{int(stopped.group(1)):06d} \(step {stopped.group(1)}\)", logs)
    for _ in range(60):  # DONE.json is written just before the job ends
        history = subprocess.run(["sacct", "-D", "-n", "-X", "-P", "-o", "State", "-j", job], capture_output=True,
                                 text=True).stdout.split()
        if history and history[-1] != "RUNNING":
            break
        time.sleep(1)
    assert history[:1] == ["REQUEUED"] and history[-1] == "COMPLETED", history  # one job id, two runs
    subprocess.run(mlu_cmd("sweep", "cancel", str(root)), capture_output=True, env=clean_env())
    # the same cell, uninterrupted, in this process
    cfg = load_config(ExperimentConfig, [root / "cells" / f"{cell['id']}.yaml"], [f"run.out_dir={tmp_path / 'straight'}"])
    straight = run_inject(cfg)
    loss = lambda d: {r["step"]: r["train/loss"] for r in read_jsonl(d / "metrics.jsonl") if "train/loss" in r}  # noqa: E731
    a, b = loss(run_dir), loss(straight)
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    logged = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert logged == list(range(1, steps + 1))  # no step lost, none logged twice
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5


@pytest.mark.slow
@pytest.mark.slurm
def test_a_two_node_zero3_job_matches_the_one_node_two_rank_run(slurm_cluster, quick_base, tmp_path):
    """One injection spanning 2 virtual nodes (1 rank each, gloo, ZeRO-3, ranks from Slurm through
    submitit) against the same injection as 2 local ranks under torchrun."""
    from mlu_dist.tracking import read_jsonl

    _, base_dir = quick_base
    common = [f"inject.from_model={base_dir / 'model'}", "inject.train.eval_every=0", "inject.train.steps=12",
              "inject.train.log_every=1", "inject.train.micro_batch_size=8", "engine.zero.stage=3"]
    out = tmp_path / "runs"
    sweep(str(SWEEPS / "test.yaml"), f"out_dir={out}", "name=twonode", "axes.inject_langs=[de]",
          "axes.forget_langs=[en]", "evaluate=false", f"overrides=[{','.join(common + ['unlearn.train.steps=2'])}]",
          "resources.inject.nodes=2", "resources.inject.tasks_per_node=1", "resources.inject.mem_gb=2")
    root = out / "twonode"
    cell = next(c for c in json.loads((root / "cells.json").read_text()) if c["stage"] == "inject")
    two_node = Path(cell["run_dir"])
    meta = json.loads((two_node / "meta.json").read_text())
    assert meta["dist"]["world_size"] == 2 and meta["slurm_job_id"]
    job = json.loads((root / "manifest.json").read_text())[cell["id"]]["job_id"]
    nodes = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "NodeList", "-j", job], capture_output=True,
                           text=True).stdout.split()
    assert nodes and nodes[0] in ("n[1-2]", "n1,n2"), nodes
    proc = subprocess.run(mlu_cmd("inject", "-c", str(root / "cells" / f"{cell['id']}.yaml"), "--nproc", "2",
                                  f"run.out_dir={tmp_path / 'local'}"), capture_output=True, text=True,
                          env=clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = next((tmp_path / "local" / "inject").iterdir())
    loss = lambda d: {r["step"]: r["train/loss"] for r in read_jsonl(d / "metrics.jsonl") if "train/loss" in r}  # noqa: E731
    a, b = loss(two_node), loss(local)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5


@pytest.mark.slow
def test_the_local_executor_runs_a_sweep_and_force_reruns_one_cell(quick_base, tmp_path):
    _, base_dir = quick_base
    args = (str(SWEEPS / "test.yaml"), f"out_dir={tmp_path}", "executor=local", "axes.inject_langs=[de]",
            "axes.forget_langs=[en]", "evaluate=false",
            f"overrides=[inject.from_model={base_dir / 'model'},inject.train.eval_every=0,unlearn.train.steps=2,"
            f"unlearn.train.eval_every=0]")
    first = sweep(*args)
    assert "3 cell(s) run/submitted" in first.stdout  # inject, unlearn, report (no base: from_model is given)
    root = tmp_path / "test"
    manifest = json.loads((root / "manifest.json").read_text())
    assert {m["status"] for m in manifest.values()} == {"finished"}
    unlearn = next(cid for cid in manifest if cid.startswith("unlearn"))
    stamp = (Path(manifest[unlearn]["run_dir"]) / "DONE.json").stat().st_mtime
    again = sweep(*args, "--force", unlearn)
    assert "2 cell(s) run/submitted" in again.stdout  # the forced cell and the report
    assert (Path(manifest[unlearn]["run_dir"]) / "DONE.json").stat().st_mtime > stamp


@pytest.mark.slow
def test_report_of_a_finished_sweep_agrees_with_its_summaries(quick_base, tmp_path):
    """The local executor runs a small sweep; its report's grid cells come from SUMMARY.json."""
    _, base_dir = quick_base
    sweep(str(SWEEPS / "test.yaml"), f"out_dir={tmp_path}", "executor=local", "axes.inject_langs=[de]",
          "axes.forget_langs=[en,en+orig]", f"overrides=[inject.from_model={base_dir / 'model'},"
          "inject.train.eval_every=0,unlearn.train.steps=2,unlearn.train.eval_every=1]")
    report = tmp_path / "test" / "report"
    for name in ("report.md", "report.html", "grid.json", "spread_fake_rate.png", "groups_fake_rate.png", "curves_de.png"):
        assert (report / name).stat().st_size > 0, name
    grid = json.loads((report / "grid.json").read_text())
    assert {r["setting"] for r in grid["rows"]} == {"en", "en+orig"}
    for row in grid["rows"]:
        run = next(p.parent.parent for p in (tmp_path / "test" / "unlearn").rglob("SUMMARY.json")
                   if json.loads((p.parent.parent / "DONE.json").read_text())["forget_langs"]
                   == (["en"] if row["setting"] == "en" else ["en", "de"]))
        summary = json.loads((run / "eval" / "SUMMARY.json").read_text())["metrics"]["fake_rate"]["group"]
        for group, cell in row["cells"].items():
            assert cell["mean"] == pytest.approx(summary[group]["mean"])
            assert cell["removed"] == (summary[group]["mean"] < grid["threshold"])
    assert "✓" in (report / "report.md").read_text() or "✗" in (report / "report.md").read_text()


def test_a_second_launcher_on_the_same_sweep_refuses_naming_the_first_or_waits(tmp_path):
    """Two launchers on one sweep directory: the second refuses with the first one's pid and host
    (or waits with --wait-lock); a lock left by a killed launcher is taken over."""
    import os
    import signal
    import socket

    from mlu_dist.launcher.lock import SweepLock

    root = tmp_path / "sweep"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, %r)\n"
                               "from mlu_dist.launcher.lock import SweepLock\n"
                               "with SweepLock(%r):\n    print('held', flush=True); time.sleep(60)" % (str(ROOT), str(root))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = subprocess.run(mlu_cmd("sweep", str(SWEEPS / "test.yaml"), f"out_dir={tmp_path}", "name=sweep",
                                      "executor=debug"), capture_output=True, text=True, env=clean_env(), timeout=120)
        assert proc.returncode == 2
        assert f"another launcher is running the sweep in {root} (pid {holder.pid} on {socket.gethostname()}" in proc.stderr
        assert not (root / "cells.json").exists() and not (root / "manifest.json").exists()  # nothing written
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # dies holding the lock: the kernel releases it
        holder.wait()
    said = []
    with SweepLock(root, say=said.append):
        assert json.loads((root / "launcher.lock").read_text())["pid"] == os.getpid()
    assert said == [f"[sweep] taking over the lock of pid {holder.pid} on {socket.gethostname()} (that launcher is gone)"]
    brief = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, %r)\n"
                              "from mlu_dist.launcher.lock import SweepLock\n"
                              "with SweepLock(%r):\n    print('held', flush=True); time.sleep(2)" % (str(ROOT), str(root))],
                             stdout=subprocess.PIPE, text=True)
    assert brief.stdout.readline().strip() == "held"
    said.clear()
    start = time.time()
    with SweepLock(root, wait=True, say=said.append):  # --wait-lock: blocks until the other one lets go
        assert time.time() - start > 1.0
    brief.wait()
    assert said[0].startswith(f"[sweep] waiting for the launcher that holds {root / 'launcher.lock'} (pid {brief.pid}")


def test_a_sweep_whose_jobs_are_still_queued_is_not_submitted_twice(tmp_path, monkeypatch):
    """After `mlu sweep --no-wait`, a second submission while the jobs are queued refuses instead of
    running the cells twice. squeue is mocked here (the live job ids); the rest is the real launcher."""
    from mlu_dist.launcher import slurm
    from mlu_dist.launcher.lock import SweepLocked
    from mlu_dist.launcher.run import Manifest, submit

    spec = load_config(SweepSpec, [SWEEPS / "test.yaml"], [f"out_dir={tmp_path}", "name=queued", "executor=slurm",
                                                          "axes.inject_langs=[de]", "axes.forget_langs=[en]"])
    from mlu_dist.launcher.plan import expand, write_cells

    cells = expand(spec)
    root = write_cells(spec, cells)
    manifest = Manifest(root)
    for i, c in enumerate(cells):
        manifest.update(c.id, stage=c.stage, status="submitted", job_id=f"7_{i}")
    manifest.save()
    monkeypatch.setattr(slurm, "_live_ids", lambda: {"7_0", "7_1"})
    monkeypatch.setattr(slurm, "submit_slurm", lambda *a, **k: pytest.fail("submitted while queued"))
    with pytest.raises(SweepLocked, match=r"2 cell\(s\) of this sweep are still queued or running in slurm: .*job 7_0"):
        submit(spec)


def test_status_counts_a_cells_relearning_attacks(tmp_path):
    """A cell whose run finished but whose attacks have not is not 'finished' in `mlu sweep status`
    (the launcher would run it again); its attacks are counted and the running one's step shown."""
    from mlu_dist.launcher.plan import expand, write_cells
    from mlu_dist.launcher.status import status_table

    spec = load_config(SweepSpec, ["sweeps/demo"], [f"out_dir={tmp_path}", "axes.inject_langs=[de]",
                                                    "axes.unlearn_langs=[de]", "axes.methods=[npo]",
                                                    "axes.forget_langs=[en]"])
    cells = expand(spec)
    root = write_cells(spec, cells)
    unlearn = next(c for c in cells if c.stage == "unlearn")
    assert len(unlearn.outputs) == 1
    for d in (unlearn.run_dir, unlearn.run_dir / "model"):
        d.mkdir(parents=True, exist_ok=True)
    (unlearn.run_dir / "DONE.json").write_text("{}")
    (unlearn.run_dir / "model" / "config.json").write_text("{}")
    attack = unlearn.outputs[0]
    attack.mkdir(parents=True)
    (attack / "metrics.jsonl").write_text(json.dumps({"step": 5, "train/loss": 1.0}) + "\n")

    def row():
        return next(r for r in status_table(root)[1] if r["id"] == unlearn.id)

    assert (row()["status"], row()["attacks"], row()["progress"]) == ("not run", "0/1", "attack step 5")
    (attack / "DONE.json").write_text("{}")
    assert (row()["status"], row()["attacks"]) == ("finished", "1/1")


def test_a_worker_reports_each_cells_exit_code_and_a_killed_worker_is_a_failed_cell(tmp_path):
    import os
    import signal

    from mlu_dist.launcher.worker import Worker

    w = Worker(clean_env())
    try:
        w.submit("bad", ["inject", "--no-such-flag", "--root", str(tmp_path)], str(tmp_path / "bad.log"))
        deadline = time.time() + 120
        while (rc := w.poll()) is None and time.time() < deadline:
            time.sleep(0.1)
        assert rc == 2 and w.busy is None and w.alive  # argparse's exit code; the worker goes on
        assert "unrecognized arguments: --no-such-flag" in (tmp_path / "bad.log").read_text()
        w.submit("killed", ["inject", "--root", str(tmp_path)], str(tmp_path / "killed.log"))
        os.kill(w.pid, signal.SIGKILL)
        while (rc := w.poll()) is None and time.time() < deadline:
            time.sleep(0.1)
        assert rc == -signal.SIGKILL and not w.alive
    finally:
        w.close()


@pytest.mark.slow
def test_cells_in_a_reused_worker_give_the_results_of_a_process_each(quick_base, tmp_path):
    """The local executor runs the injection and both unlearning cells in one worker process; every
    value they write equals the run with a process per cell (local_reuse=false)."""
    _, base_dir = quick_base
    args = (str(SWEEPS / "test.yaml"), "executor=local", "local_workers=1", "axes.inject_langs=[de]",
            "axes.forget_langs=[en,en+orig]", f"overrides=[inject.from_model={base_dir / 'model'},"
            "inject.train.eval_every=0,unlearn.train.steps=2,unlearn.train.eval_every=1]")
    sweep(*args, f"out_dir={tmp_path / 'reused'}")
    sweep(*args, f"out_dir={tmp_path / 'own'}", "local_reuse=false")
    manifests = {k: json.loads((tmp_path / k / "test" / "manifest.json").read_text()) for k in ("reused", "own")}
    pids = {k: {m["pid"] for cid, m in man.items() if not cid.startswith("report")} for k, man in manifests.items()}
    assert len(pids["reused"]) == 1 and len(pids["own"]) == 3, pids
    assert {m["status"] for man in manifests.values() for m in man.values()} == {"finished"}
    def files(kind: str, pattern: str) -> dict[str, Path]:  # unlearning run names hash from_run, a path
        root = tmp_path / kind / "test"
        return {re.sub(r"-[0-9a-f]{10}(?=/)", "", str(p.relative_to(root))): p for p in root.rglob(pattern)}

    evals, twins = files("own", "eval/*.json"), files("reused", "eval/*.json")
    assert len(evals) == 6 and evals.keys() == twins.keys()  # EVAL + SUMMARY of inject and 2 unlearning runs
    for name, path in evals.items():
        mine, theirs = json.loads(twins[name].read_text()), json.loads(path.read_text())
        for key in ("values", "metrics"):
            assert mine.get(key) == theirs.get(key), name
    curves, twins = files("own", "curves.jsonl"), files("reused", "curves.jsonl")
    assert len(curves) == 2 and all(twins[n].read_text() == c.read_text() for n, c in curves.items())


def test_attacks_that_name_the_same_languages_for_an_injection_are_planned_once(tmp_path):
    spec = load_config(SweepSpec, ["sweeps/demo"], [f"out_dir={tmp_path}", "axes.inject_langs=[de,ha]",
                                                    "axes.methods=[npo]", "axes.forget_langs=[en]",
                                                    "axes.relearn_attacks=[fake:en,fake:orig,fake:de]"])
    cells = expand(spec)
    for lang in ("de", "ha"):
        unlearn = next(c for c in cells if c.stage == "unlearn" and f"<- {lang} " in c.label)
        inject = next(c for c in cells if c.stage == "inject" and f" {lang} " in c.label)
        names = sorted(o.name.rsplit("-", 1)[0] for o in unlearn.outputs)
        # for de, fake:de is fake:orig (planned once); for ha it is a third attack
        assert names == (["unlearned-fake-en", "unlearned-fake-orig"] if lang == "de"
                         else ["unlearned-fake-de", "unlearned-fake-en", "unlearned-fake-orig"]), names
        assert len(inject.outputs) == 2 * len(names)  # the injected and the base control of each


def test_lingtea_cells_wait_for_the_teacher_cell_of_their_injection_and_seed(tmp_path):
    """configs/sweeps/methods.yaml names LingTea's teacher (AltPO unlearned in English): the planner
    plans it per injection and seed, passes its run directory and language to every LingTea cell
    and makes the cell wait for it; Slurm gets the LingTea cells as a second array."""
    spec = load_config(SweepSpec, [SWEEPS / "methods.yaml"], [f"out_dir={tmp_path}", "axes.seeds=[0,1]",
                                                             "axes.methods=[ga,lingtea,altpo]"])
    cells = expand(spec)
    by_id = {c.id: c for c in cells}
    students = [c for c in cells if c.stage == "unlearn" and c.config.unlearn.method == "lingtea"]
    # en is the teacher's language: nothing to distil into; en+orig distils into de as orig does
    assert sorted(c.config.unlearn.forget_langs for c in students) == sorted(["orig", "all"] * 2)
    for c in students:
        inject_id, teacher_id = c.deps
        teacher = by_id[teacher_id]
        assert by_id[inject_id].stage == "inject" and teacher.deps == [inject_id]
        assert (teacher.config.unlearn.method, teacher.config.unlearn.forget_langs) == ("altpo", "en")
        assert teacher.config.unlearn.from_run == c.config.unlearn.from_run == str(by_id[inject_id].run_dir)
        assert teacher.config.unlearn.train.seed == c.config.unlearn.train.seed
        assert c.config.unlearn.method_args == {"teacher": str(teacher.run_dir), "teacher_lang": "en"}
        assert cells.index(teacher) < cells.index(c)  # the debug executor runs cells in this order
    # the teacher is the grid's own AltPO-English cell, planned once
    unlearn_ids = [c.id for c in cells if c.stage == "unlearn"]
    assert len(unlearn_ids) == len(set(unlearn_ids)) == 2 * (2 * 4 + 2)
    jobs = {j["name"]: j for j in jobs_of(cells)}
    for inject in (c for c in cells if c.stage == "inject"):
        second = jobs[f"unlearn[{inject.id}+]"]
        assert second["after"] == [f"unlearn[{inject.id}]"]
        assert sorted(second["cells"]) == sorted(c.id for c in students if c.deps[0] == inject.id)
    plan = format_plan(spec, cells)
    assert f"slurm/sbatch/mlu-cell.sbatch {tmp_path}/methods unlearn {students[0].deps[0]}+" in plan


def test_a_teacher_outside_the_grid_is_planned_and_its_language_is_the_students_teacher_lang(tmp_path):
    spec = load_config(SweepSpec, [SWEEPS / "methods.yaml"], [
        f"out_dir={tmp_path}", "axes.seeds=[0]", "axes.methods=[lingtea]", "teacher.method=npo",
        "teacher.forget_langs=orig"])
    unlearns = [c for c in expand(spec) if c.stage == "unlearn"]
    teacher, *students = unlearns
    assert (teacher.config.unlearn.method, teacher.config.unlearn.forget_langs, len(teacher.deps)) == ("npo", "orig", 1)
    # orig = de is the teacher's language now: English is distilled into (en+orig too: the same run as
    # en, planned once), German alone is not planned
    assert sorted(c.config.unlearn.forget_langs for c in students) == ["all", "en"]
    assert all(c.deps[1] == teacher.id and c.config.unlearn.method_args["teacher_lang"] == "de" for c in students)


def test_a_missing_or_bad_teacher_is_one_error_naming_the_field_and_the_choices():
    methods = [SWEEPS / "methods.yaml"]
    with pytest.raises(ConfigError) as err:
        load_config(SweepSpec, methods, ["teacher.method=''", "teacher.forget_langs=xx"])
    msg = str(err.value)
    assert "2 config problem(s)" in msg
    assert "teacher.method: axes.methods includes lingtea, distilled from a teacher run: name the teacher's method, " \
           "one of altpo, ceu, ga" in msg
    assert "teacher.forget_langs: 'xx' is neither" in msg
    with pytest.raises(ConfigError, match=r"teacher.method: 'lingtea' is not valid; valid: altpo, .*wga$"):
        load_config(SweepSpec, methods, ["teacher.method=lingtea"])  # a teacher that needs a teacher
    with pytest.raises(ConfigError, match=r"teacher.method: 'npoo' is not valid \(did you mean 'npo'\?\)"):
        load_config(SweepSpec, methods, ["teacher.method=npoo"])
    spec = load_config(SweepSpec, methods, ["axes.seeds=[0]", "axes.methods=[lingtea]", "teacher.forget_langs=en+orig"])
    with pytest.raises(ConfigError, match=r"teacher.forget_langs: 'en\+orig' names 2 languages for the de injection "
                                          r"\(en, de\); a teacher is unlearned in one"):
        expand(spec)
    # a sweep without a distilling method needs no teacher
    assert load_config(SweepSpec, methods, ["axes.methods=[npo]", "teacher.method=''"]).teacher.method == ""


def test_mlu_sweep_plan_shows_the_teacher_edge_and_refuses_a_sweep_without_one(tmp_path):
    args = [str(SWEEPS / "methods.yaml"), f"out_dir={tmp_path}", "axes.seeds=[0]", "axes.methods=[lingtea,altpo]"]
    proc = subprocess.run(mlu_cmd("sweep", "plan", *args), capture_output=True, text=True, env=clean_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    edges = re.findall(r"^  (unlearn-de-s0-altpo-en-\w+) -> (unlearn-de-s0-lingtea-[\w_]+-\w+)$", proc.stdout, re.M)
    assert sorted(e[1].split("-")[4] for e in edges) == ["all", "orig"] and len({e[0] for e in edges}) == 1
    assert "lingtea en <- inject de seed 0: the forget set is the teacher's language only" in proc.stdout + proc.stderr
    assert "lingtea en+orig <- inject de seed 0: distils into the same languages as orig" in proc.stdout + proc.stderr
    bad = subprocess.run(mlu_cmd("sweep", "plan", *args, "teacher.method=''"), capture_output=True, text=True,
                         env=clean_env(), timeout=120)
    assert bad.returncode != 0 and "teacher.method: axes.methods includes lingtea" in bad.stderr


def test_slurm_submits_the_lingtea_cells_as_a_second_array_after_their_teachers_tasks(tmp_path, monkeypatch):
    """submitit's executor is replaced by a recorder (no Slurm here; the real-cluster tests are marked
    slurm): the LingTea cells are a second unlearning array whose dependency names the injection's
    task and the teacher's task of the first array."""
    from mlu_dist.launcher import slurm
    from mlu_dist.launcher.plan import write_cells
    from mlu_dist.launcher.run import Manifest

    submitted = []

    class Job:
        def __init__(self, job_id):
            self.job_id = job_id

    class Recorder:
        def __init__(self, name, after):
            self.name, self.after = name, after

        def submit(self, fn, *args):
            submitted.append((self.name, self.after, [args[1]]))
            return Job(str(len(submitted)))

        def map_array(self, fn, stages, cfgs, roots):
            submitted.append((self.name, self.after, list(cfgs)))
            return [Job(f"{len(submitted)}_{i}") for i in range(len(cfgs))]

    monkeypatch.setattr(slurm, "_executor", lambda root, res, name, after="", save_bytes=0: Recorder(name, after))
    spec = load_config(SweepSpec, [SWEEPS / "methods.yaml"], [f"out_dir={tmp_path}", "axes.seeds=[0]", "executor=slurm",
                                                             "axes.methods=[altpo,lingtea]", "axes.forget_langs=[en,orig]"])
    cells = expand(spec)
    slurm.submit_slurm(spec, cells, cells, Manifest(write_cells(spec, cells)), wait=False)
    names = [s[0] for s in submitted]
    assert names == ["base", "methods-inject", "methods-unlearn", "methods-unlearn", "methods-report"]
    (_, first_after, first), (_, second_after, second) = submitted[2], submitted[3]
    assert first_after == "afterok:2_0" and [Path(p).stem.split("-")[3] for p in first] == ["altpo", "altpo"]
    teacher = next(i for i, p in enumerate(first) if "altpo-en-" in p)
    assert [Path(p).stem.split("-")[3:5] for p in second] == [["lingtea", "orig"]]
    assert second_after == f"afterok:2_0:3_{teacher}"
