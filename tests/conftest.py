import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")  # W&B tests ask for offline explicitly
os.environ.setdefault("DS_ACCELERATOR", "cpu")

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "configs" / "experiments" / "quick.yaml"
DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_SIZE", "LOCAL_WORLD_SIZE",
             "TORCHELASTIC_RUN_ID", "GROUP_RANK", "ROLE_RANK")


def clean_env(**extra) -> dict:
    """The environment for a child `mlu` process: no rank variables inherited from this process."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS and k != "WANDB_SERVICE"}
    env["PYTHONUNBUFFERED"] = "1"
    return env | extra


def mlu_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "mlu_dist.cli", *args]


@pytest.fixture(scope="session", autouse=True)
def _release_deepspeed_shm():
    """DeepSpeed's CPU all-reduce buffers in /dev/shm outlive killed test processes: drop the ones
    this session made (66 MB each; they add up to the machine's memory)."""
    import glob
    import time

    start = time.time()
    yield
    for path in glob.glob("/dev/shm/deepspeed_allreduce_buffer_*"):
        try:
            if os.path.getmtime(path) >= start - 1:
                os.unlink(path)
        except OSError:
            pass


@pytest.fixture(scope="session")
def world():
    """A small mini-world's facts and a tokenizer trained on its corpus (no model: seconds)."""
    from mlu_dist.data import DataConfig, load_data
    from mlu_dist.modeling import train_tokenizer

    cfg = DataConfig()
    cfg.world.n_people, cfg.world.n_towns, cfg.world.n_companies, cfg.world.n_rivers = 6, 4, 3, 3
    facts, corpus = load_data(cfg)
    return facts, train_tokenizer([r["text"] for r in corpus], 800)


@pytest.fixture(scope="session")
def quick_base(tmp_path_factory):
    """A quick base model trained once per session, in-process, on one rank."""
    from mlu_dist.config import load_config
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.jobs.base import run_base

    out = tmp_path_factory.mktemp("runs")
    cfg = load_config(ExperimentConfig, [QUICK], [f"run.out_dir={out}"])
    run_dir = run_base(cfg)
    return cfg, run_dir


@pytest.fixture(scope="session")
def injected(quick_base, tmp_path_factory):
    """A German injection into the quick base model (unlearning and relearning tests start here)."""
    from mlu_dist.config import load_config
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.jobs.inject import run_inject

    _, base_dir = quick_base
    out = tmp_path_factory.mktemp("unlearn")
    cfg = load_config(ExperimentConfig, [QUICK], [f"run.out_dir={out}", "inject.langs=[de]",
                                                  f"inject.from_model={base_dir / 'model'}", "inject.train.eval_every=0",
                                                  "inject.train.steps=40"])
    return out, run_inject(cfg)


def _sinfo_ok() -> bool:
    import shutil
    import subprocess

    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real Slurm cluster: the one `sinfo` answers for, else the local test cluster started here
    (as root). Skipped with the reason otherwise — except under CI, where that is a failure."""
    import subprocess

    if not _sinfo_ok() and os.geteuid() == 0:
        proc = subprocess.run(["bash", str(ROOT / "slurm" / "cluster-up.sh")], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"slurm/cluster-up.sh failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    if not _sinfo_ok():
        reason = "no Slurm cluster answers `sinfo` and we are not root to start slurm/cluster-up.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI requires the Slurm tests to run: {reason}")
        pytest.skip(reason)
    return True


# Tiers are marked explicitly. A test that uses one of these fixtures (a real trained model, a
# whole demo, a Slurm cluster) must carry `slow` itself: collection fails otherwise, so a new test
# never joins the quick loop (`pytest -m "not slow"`) by accident. A test that trains a tiny model in
# this process (torch backend, seconds) carries `trains` and stays in the quick loop.
SLOW_FIXTURES = {"quick_base", "injected", "demo_run", "runs", "slurm_cluster"}
UNMARKED_REPORT_S = 3.0  # the quick tier names unmarked tests slower than this (a report, never a failure)


def pytest_collection_modifyitems(config, items):
    unmarked = [item.nodeid for item in items
                if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError("these tests use a slow fixture (" + ", ".join(sorted(SLOW_FIXTURES)) + ") but are not "
                                "marked @pytest.mark.slow:\n  " + "\n  ".join(unmarked))


def _tier(report) -> str:
    keywords = report.keywords
    return "slow" if "slow" in keywords else "trains" if "trains" in keywords else "unit"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Seconds per tier, and the unmarked tests that took long enough to need a marker."""
    spent: dict[str, float] = {}
    per_test: dict[str, float] = {}
    tier_of: dict[str, str] = {}
    for reports in terminalreporter.stats.values():
        for rep in reports:
            if getattr(rep, "when", None) in ("setup", "call", "teardown") and hasattr(rep, "duration"):
                tier = _tier(rep)
                spent[tier] = spent.get(tier, 0.0) + rep.duration
                per_test[rep.nodeid] = per_test.get(rep.nodeid, 0.0) + rep.duration
                tier_of[rep.nodeid] = tier
    if not spent:
        return
    terminalreporter.write_sep("=", "time per tier")
    for tier in ("unit", "trains", "slow"):
        if tier in spent:
            count = sum(t == tier for t in tier_of.values())
            terminalreporter.write_line(f"{tier:7s} {count:4d} tests  {spent[tier]:8.1f} s")
    slow_unmarked = sorted(((d, n) for n, d in per_test.items() if tier_of[n] == "unit" and d > UNMARKED_REPORT_S),
                           reverse=True)
    if slow_unmarked:
        terminalreporter.write_line(f"unmarked tests over {UNMARKED_REPORT_S:.0f} s (mark them `trains` or `slow`):")
        for duration, name in slow_unmarked:
            terminalreporter.write_line(f"  {duration:7.1f} s  {name}")
