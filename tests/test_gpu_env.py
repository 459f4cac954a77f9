"""Items 4 and 5 of issue 24: what the first multi-GPU Slurm job meets before its first step.

No GPU and no second process here: the process-group calls are captured (torch's and DeepSpeed's
own init functions replaced, said so at each test), and the CUDA device count is mocked."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import torch

from mlu_dist.engine import dist as dist_mod
from mlu_dist.engine.checkpoint import TRASH, Checkpointer
from mlu_dist.engine.dist import DistInfo, ensure_process_group


def test_the_process_group_waits_as_long_as_configured(monkeypatch):
    """init_process_group is replaced (a 2-rank group cannot start in one process)."""
    seen = {}
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, **kw: seen.update(kw, backend=backend))
    ensure_process_group(DistInfo(0, 2, 0, "cpu", timeout_min=90))
    assert seen == {"backend": "gloo", "timeout": timedelta(minutes=90)}
    assert DistInfo(0, 2, 0, "cpu").timeout == timedelta(minutes=60)  # not torch's / DeepSpeed's 10


def test_deepspeeds_process_group_gets_the_timeout_too(monkeypatch):
    """deepspeed.init_distributed is replaced (it would start a real group)."""
    deepspeed = pytest.importorskip("deepspeed")
    from mlu_dist.engine import deepspeed_engine

    seen = {}
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(deepspeed, "init_distributed", lambda **kw: seen.update(kw))
    deepspeed_engine._init_comm(DistInfo(0, 1, 0, "cpu", timeout_min=45))
    assert seen == {"dist_backend": "gloo", "timeout": timedelta(minutes=45)}


def test_the_timeout_is_a_checked_setting():
    from mlu_dist.config import ConfigError, load_config
    from mlu_dist.experiment import ExperimentConfig

    assert load_config(ExperimentConfig, [], ["engine.timeout_min=120"]).engine.timeout_min == 120
    with pytest.raises(ConfigError, match="timeout_min: must be > 0"):
        load_config(ExperimentConfig, [], ["engine.timeout_min=0"])


def test_a_run_dir_written_before_a_setting_existed_still_resumes(tmp_path):
    """A run saved without engine.timeout_min / engine.zero.optimizer ran as their defaults: same config."""
    from omegaconf import OmegaConf

    from mlu_dist.config import ConfigError, to_dict
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.rundir import check_same_config

    cfg = ExperimentConfig()
    cfg.engine.jobs = {"inject": type(cfg.engine.zero)(stage=2)}
    old = to_dict(cfg)
    del old["engine"]["timeout_min"], old["engine"]["zero"]["optimizer"], old["engine"]["jobs"]["inject"]["optimizer"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(old))
    (tmp_path / "DONE.json").write_text("{}")
    check_same_config(tmp_path, cfg, ("engine",))
    cfg.engine.timeout_min = 5
    with pytest.raises(ConfigError, match="different config"):
        check_same_config(tmp_path, cfg, ("engine",))


def test_pruning_an_old_checkpoint_does_not_hold_the_other_ranks(tmp_path, monkeypatch):
    """Deleting is moved off the save (which the other ranks wait for); a slow rmtree is simulated."""
    import shutil

    from mlu_dist.engine.torch_engine import TorchEngine
    from mlu_dist.train_config import TrainConfig

    ck = Checkpointer(tmp_path, TorchEngine(torch.nn.Linear(3, 2), TrainConfig(steps=3)), 0, 1, keep=1)
    ck.save(1, {})
    real_rmtree = shutil.rmtree
    monkeypatch.setattr(shutil, "rmtree", lambda path, *a, **k: (time.sleep(1), real_rmtree(path, *a, **k)))
    start = time.monotonic()
    ck.save(2, {})
    assert time.monotonic() - start < 0.8
    assert [p.name for p in ck.steps()] == ["step_000002"]
    for _ in range(50):
        if not list(ck.root.glob(f"{TRASH}*")):
            break
        time.sleep(0.1)
    assert not list(ck.root.glob(f"{TRASH}*"))
