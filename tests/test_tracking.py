"""W&B, for real, in offline mode: what the runs log is read back from the .wandb files."""

import os

import pytest

from conftest import QUICK
from mlu_dist.config import load_config
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.jobs.inject import run_inject
from mlu_dist.jobs.unlearn import run_unlearn
from mlu_dist.tracking import read_jsonl
from mlu_dist.tracking.wandb_tracker import read_offline_run, run_id

LANGS = ["en", "de", "fr", "zh", "ru", "jv", "ur", "ha", "hy"]
SECRET = "mlu-test-key-0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def injected(quick_base, tmp_path_factory):
    _, base_dir = quick_base
    out = tmp_path_factory.mktemp("tracking")
    cfg = load_config(ExperimentConfig, [QUICK], [f"run.out_dir={out}", f"inject.from_model={base_dir / 'model'}",
                                                  "inject.train.eval_every=0", "tracking.wandb=false"])
    return out, run_inject(cfg)


def unlearn(out, inject_run, name, *extra):
    cfg = load_config(ExperimentConfig, [inject_run / "config.yaml", "methods/npo"],
                      [f"unlearn.from_run={inject_run}", f"run.out_dir={out}", f"run.name={name}",
                       "unlearn.train.steps=4", "unlearn.train.eval_every=2", "unlearn.train.save_every=2",
                       "eval.metrics=[fake_rate]", "tracking.wandb=true", "tracking.mode=offline",
                       "tracking.group=test-sweep", *extra])
    return run_unlearn(cfg)


def offline_runs(run_dir):
    return sorted((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_per_language_curves_reach_wandb_with_their_step_axis(injected, monkeypatch):
    out, inject_run = injected
    monkeypatch.setenv("WANDB_API_KEY", SECRET)  # a key is set, yet nothing may leak into the run dir
    run = unlearn(out, inject_run, "curves")
    (folder,) = offline_runs(run)
    assert run_id(run, "unlearn") in folder.name
    logged = read_offline_run(folder)
    rows = [r for r in logged["history"] if "forget/de/fake_rate" in r]
    assert [r["unlearn/step"] for r in rows] == [0, 2, 4]
    for lang in LANGS:
        assert all(f"forget/{lang}/fake_rate" in r and f"retain/{lang}/ppl" in r for r in rows), lang
    assert logged["config"]["unlearn"]["method"] == "npo"
    # every curve prefix the job logs is plotted over its own step, as the job declares them
    assert logged["step_axes"] == {"group/*": "unlearn/step", "forget/*": "unlearn/step", "retain/*": "unlearn/step"}
    curve_prefixes = {k.split("/")[0] for r in rows for k in r if k.count("/") >= 2}
    assert curve_prefixes == {"forget", "retain", "group"}
    assert logged["summary"]["final/status"] == "finished"
    # the local JSONL holds exactly what W&B got
    local = {r["step"]: r for r in read_jsonl(run / "metrics.jsonl") if "forget/de/fake_rate" in r}
    for r in rows:
        for lang in LANGS:
            assert local[r["unlearn/step"]][f"forget/{lang}/fake_rate"] == pytest.approx(r[f"forget/{lang}/fake_rate"])
    # no secret in any file of the run directory, nor in the dashboard built from its runs
    from mlu_dist.tracking.dashboard import write_dashboard

    dashboard, _ = write_dashboard(out)
    for path in [*run.rglob("*"), dashboard]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_no_key_no_network_still_completes_offline(injected, monkeypatch):
    out, inject_run = injected
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", os.devnull)
    cfg = load_config(ExperimentConfig, [inject_run / "config.yaml", "methods/ga"],
                      [f"unlearn.from_run={inject_run}", f"run.out_dir={out}", "run.name=auto-mode",
                       "unlearn.train.steps=2", "unlearn.train.eval_every=2", "eval.metrics=[fake_rate]",
                       "tracking.wandb=true", "tracking.mode=auto"])
    monkeypatch.delenv("WANDB_MODE", raising=False)  # auto: no key -> offline, never a network call
    run = run_unlearn(cfg)
    assert (run / "DONE.json").exists() and len(offline_runs(run)) == 1


@pytest.mark.slow
def test_a_requeued_run_continues_its_wandb_run_without_duplicate_steps(injected):
    out, inject_run = injected
    first = unlearn(out, inject_run, "requeued", "unlearn.train.stop_after=3")  # dies after step 3
    assert not (first / "DONE.json").exists()
    unlearn(out, inject_run, "requeued")  # the requeued job: resumes from the step-2 checkpoint
    folders = offline_runs(first)
    assert len(folders) == 2 and all(run_id(first, "unlearn") in f.name for f in folders)  # one W&B run id
    steps = [r["unlearn/step"] for f in folders for r in read_offline_run(f)["history"] if "forget/de/fake_rate" in r]
    assert sorted(steps) == [0, 2, 4]  # step 2 was logged once, not replayed
    train_steps = [r["unlearn/step"] for f in folders for r in read_offline_run(f)["history"] if "train/loss" in r]
    assert len(train_steps) == len(set(train_steps))


def test_jsonl_history_survives_a_torn_last_line_and_is_never_rewritten_in_place(tmp_path):
    from mlu_dist.tracking import JsonlTracker, append_jsonl, keep_rows, read_jsonl

    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}])
    with open(path, "a") as fh:
        fh.write('{"step": 3, "lo')  # the writer was killed mid-line
    assert read_jsonl(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    append_jsonl(path, [{"step": 3, "loss": 1.0}])  # the next append cuts the fragment first
    assert read_jsonl(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}, {"step": 3, "loss": 1.0}]
    inode = path.stat().st_ino
    keep_rows(path, lambda row: True)  # nothing to change: the file is left alone
    assert path.stat().st_ino == inode
    tracker = JsonlTracker(tmp_path, start_step=2)  # a resume from step 2 drops step 3 by temp + rename
    assert read_jsonl(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    assert path.stat().st_ino != inode and not list(tmp_path.glob(".*.tmp*"))
    tracker.log({"loss": 0.9}, 3)
    assert read_jsonl(path)[-1] == {"step": 3, "loss": 0.9}


@pytest.mark.slow
def test_a_well_formed_key_with_no_network_degrades_to_offline_and_training_finishes(tmp_path):
    """A 40-character key, online mode and a W&B server that does not answer (a closed local port):
    the online start times out (tracking.init_timeout), the run falls back to offline, and the
    job trains to the end."""
    import subprocess

    from conftest import QUICK, clean_env, mlu_cmd

    env = clean_env(WANDB_API_KEY="0123456789abcdef0123456789abcdef01234567", WANDB_BASE_URL="http://127.0.0.1:9",
                    WANDB_MODE="online")
    proc = subprocess.run(mlu_cmd("base", "-c", str(QUICK), f"run.out_dir={tmp_path}", "engine.backend=torch",
                                  "base.steps=3", "tracking.wandb=true", "tracking.mode=online",
                                  "tracking.init_timeout=3"), capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "warning: [wandb] online init failed" in proc.stderr and "logging offline instead" in proc.stderr
    run = next((tmp_path / "base").iterdir())
    assert (run / "DONE.json").exists() and list(run.glob("wandb/offline-run-*"))
    assert "0123456789abcdef0123456789abcdef01234567" not in "".join(
        p.read_text(errors="replace") for p in run.rglob("*") if p.is_file() and p.suffix in (".json", ".yaml", ".jsonl"))
