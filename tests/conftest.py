import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "configs" / "experiments" / "quick.yaml"
DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_SIZE", "LOCAL_WORLD_SIZE",
             "TORCHELASTIC_RUN_ID", "GROUP_RANK", "ROLE_RANK")


def clean_env(**extra) -> dict:
    """The environment for a child `mlu` process: no rank variables inherited from this process."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    return env | extra


def mlu_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "mlu_dist.cli", *args]


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
