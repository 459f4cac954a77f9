"""Item 3 of issue 24: no JIT-built Adam unless asked; when asked, a node-local build under a lock
that a killed build cannot turn into a hang."""

from __future__ import annotations

import os

import pytest
import torch

from mlu_dist.engine import deepspeed_engine
from mlu_dist.engine.config import ZeroConfig
from mlu_dist.engine.deepspeed_engine import build_ds_config
from mlu_dist.engine.op_lock import load_op_under_lock
from mlu_dist.engine.dist import DistInfo
from mlu_dist.train_config import TrainConfig


def test_a_gpu_run_uses_torchs_adam_unless_deepspeeds_is_asked_for():
    """DeepSpeed builds its FusedAdam (nvcc + ninja on the compute node) for a config 'optimizer'
    block; the default must not have one, on GPU or CPU."""
    for device in ("cuda", "cpu"):
        assert "optimizer" not in build_ds_config(TrainConfig(), ZeroConfig(stage=2), 16, device, torch.bfloat16)
    asked = build_ds_config(TrainConfig(lr=2e-4), ZeroConfig(stage=2, optimizer="deepspeed"), 16, "cuda")
    assert asked["optimizer"]["type"] == "AdamW" and asked["optimizer"]["params"]["lr"] == 2e-4


def test_an_unknown_optimizer_is_named_with_the_choices():
    problems = ZeroConfig(optimizer="fused_adam").check()
    assert any("optimizer" in p and "fused_adam" in p and "torch" in p and "deepspeed" in p for p in problems), problems


class _Builder:
    """An op builder whose load does what torch's JIT load does first: take the FileBaton."""

    name = "fused_adam"

    def __init__(self, root):
        self.root = root

    def load(self, verbose=False):
        from torch.utils.file_baton import FileBaton

        baton = FileBaton(str(self.root / "py311_cu124" / self.name / "lock"))
        if not baton.try_acquire():  # torch would now wait() forever
            raise AssertionError("the stale lock is still there")
        baton.release()
        return "loaded"


def test_a_stale_lock_from_a_killed_build_is_named_and_removed_not_waited_on(tmp_path):
    lock = tmp_path / "py311_cu124" / "fused_adam" / "lock"
    lock.parent.mkdir(parents=True)
    lock.touch()  # what a job killed mid-build leaves behind
    said = []
    assert load_op_under_lock(_Builder(tmp_path), tmp_path, said.append) == "loaded"
    assert said == [f"removed a stale torch-extension lock left by a killed process: {lock}"]
    assert not lock.exists()


def test_a_needed_build_goes_to_a_node_local_extensions_dir(tmp_path, monkeypatch):
    pytest.importorskip("deepspeed")
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.delenv("SLURM_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    loaded = []
    monkeypatch.setattr(deepspeed_engine, "load_op_under_lock", lambda builder, say=None: loaded.append(builder.name))
    cpu = DistInfo(0, 1, 0, "cpu")
    deepspeed_engine.preload_adam_op(ZeroConfig(stage=2), cpu)  # the default builds nothing
    assert loaded == [] and "TORCH_EXTENSIONS_DIR" not in os.environ
    deepspeed_engine.preload_adam_op(ZeroConfig(stage=2, offload="optimizer", optimizer="deepspeed"), cpu)
    assert loaded == ["cpu_adam"]
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(tmp_path / f"torch_extensions-{os.getuid()}")


def test_zero2_on_gpus_overlaps_gradient_reduction_with_the_backward():
    """DeepSpeed's default overlap_comm is on only at stage 3; CPU configs stay as they were."""
    gpu = build_ds_config(TrainConfig(), ZeroConfig(stage=2), 16, "cuda", torch.bfloat16, 4096)["zero_optimization"]
    assert gpu["overlap_comm"] is True and gpu["reduce_bucket_size"] == 4096 * 4096
    assert "overlap_comm" not in build_ds_config(TrainConfig(), ZeroConfig(stage=2), 2, "cpu")["zero_optimization"]
