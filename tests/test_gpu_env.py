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
    from mlu_dist.runs.rundir import check_same_config

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


# --- item 5: which device, which ranks ---------------------------------------------------------

_DIST_VARS = ("SUBMITIT_EXECUTOR", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT",
              "TORCHELASTIC_RUN_ID", "CROSS_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_ID",
              "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_STEP_NODELIST",
              "SLURM_NODELIST", "SLURM_JOB_NUM_NODES", "SLURM_NNODES", "SLURM_NODEID", "SLURM_TASKS_PER_NODE")


@pytest.fixture
def env(monkeypatch):
    """A clean distributed environment; every variable set here is undone after the test."""
    for key in _DIST_VARS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # setup_env then leaves torch's thread count alone

    def put(**values):
        for key, value in values.items():
            monkeypatch.setenv(key, str(value))
    return put


def _gpus(monkeypatch, n: int):
    """torch.cuda.is_available / device_count mocked: n visible GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


def test_one_gpu_per_task_means_cuda_0_whatever_the_local_rank(env, monkeypatch):
    """--gpus-per-task=1: the task of local rank 3 sees one GPU, cuda:0 (cuda:3 = invalid ordinal)."""
    import os

    env(RANK=3, WORLD_SIZE=8, LOCAL_RANK=3, MASTER_ADDR="127.0.0.1", MASTER_PORT=29500)
    _gpus(monkeypatch, 1)
    d = dist_mod.setup_env()
    assert (d.device_type, d.local_rank, d.rank) == ("cuda", 0, 3) and str(d.device) == "cuda:0"
    assert os.environ["LOCAL_RANK"] == "0"  # what DeepSpeed's engine and zero.Init index devices by


def test_a_task_that_sees_the_nodes_gpus_takes_its_local_rank_and_a_mismatch_is_named(env, monkeypatch):
    env(RANK=3, WORLD_SIZE=8, LOCAL_RANK=3, MASTER_ADDR="127.0.0.1", MASTER_PORT=29500)
    _gpus(monkeypatch, 8)
    assert dist_mod.setup_env().local_rank == 3
    env(LOCAL_RANK=3)
    _gpus(monkeypatch, 2)
    with pytest.raises(RuntimeError, match=r"LOCAL_RANK=3 but this task sees 2 GPUs.*--gpus-per-task=1"):
        dist_mod.setup_env()


def test_a_batch_script_is_one_process_whatever_slurm_ntasks_says(env):
    """`mlu eval` run in an sbatch script with --ntasks=16, not under srun: one rank, not 1 of 16."""
    env(SLURM_PROCID=0, SLURM_NTASKS=16, SLURM_LOCALID=0, SLURM_JOB_ID=77, SLURM_JOB_NODELIST="gpu[01-02]")
    d = dist_mod.setup_env()
    assert (d.rank, d.world_size) == (0, 1)


def test_an_srun_task_takes_slurms_ranks_over_ones_inherited_from_the_shell(env, capsys):
    import os

    env(RANK=0, WORLD_SIZE=1, MASTER_ADDR="127.0.0.1", MASTER_PORT=29500,  # left by an earlier local run
        SLURM_PROCID=0, SLURM_NTASKS=16, SLURM_STEP_ID=0, SLURM_STEP_NUM_TASKS=16, SLURM_LOCALID=0,
        SLURM_JOB_ID=77, SLURM_STEP_NODELIST="gpu[03-04]", SLURM_JOB_NODELIST="gpu[03-04]")
    d = dist_mod.setup_env()
    assert (d.rank, d.world_size, d.local_rank) == (0, 16, 0)
    assert os.environ["MASTER_ADDR"] == "gpu03" and os.environ["MASTER_PORT"] == str(20000 + 77)
    assert "ignoring RANK=0 WORLD_SIZE=1" in capsys.readouterr().err


def test_ranks_set_by_torchrun_inside_an_srun_task_are_kept(env):
    env(RANK=9, WORLD_SIZE=16, LOCAL_RANK=1, TORCHELASTIC_RUN_ID="x", MASTER_ADDR="gpu03", MASTER_PORT=29500,
        SLURM_PROCID=1, SLURM_STEP_ID=0, SLURM_STEP_NUM_TASKS=2, SLURM_LOCALID=0)
    d = dist_mod.setup_env()
    assert (d.rank, d.world_size, d.local_rank) == (9, 16, 1)


def test_a_slurm_task_exports_its_own_ranks_over_the_submitting_shells(env):
    """sbatch exports the shell's environment; submitit refused to export over an inherited RANK."""
    pytest.importorskip("submitit")
    import os

    from mlu_dist.launcher.slurm import export_torch_env

    env(RANK=0, WORLD_SIZE=1, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1", MASTER_PORT=29500,
        SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID=77, SLURM_PROCID=5, SLURM_NTASKS=16, SLURM_LOCALID=1, SLURM_NODEID=0,
        SLURM_JOB_NODELIST="gpu[03-04]", SLURM_JOB_NUM_NODES=2, SLURM_TASKS_PER_NODE="8(x2)")
    export_torch_env()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("5", "16", "1")
    assert os.environ["MASTER_ADDR"] == "gpu03" and os.environ["MASTER_PORT"] != "29500"


def test_every_8b_sweep_saves_before_its_time_limit(tmp_path):
    """A Slurm job stopped at its limit is requeued and resumes from its last checkpoint: with
    save_every 0 that is step 0, every time."""
    from pathlib import Path

    from mlu_dist.config import load_config
    from mlu_dist.launcher.plan import expand
    from mlu_dist.launcher.spec import SweepSpec

    sweeps = Path(__file__).resolve().parents[1] / "configs" / "sweeps"
    checked = 0
    for path in sorted(sweeps.glob("*.yaml")):
        if "llama-3.1-8b" not in path.read_text():
            continue
        over = [f"out_dir={tmp_path}", "axes.seeds=[0]", "axes.inject_langs=[de]", "axes.forget_langs=[en]"]
        for cell in expand(load_config(SweepSpec, [path], over)):
            if cell.stage in ("inject", "unlearn"):
                train = getattr(cell.config, cell.stage).train
                assert train.save_every > 0, f"{path.name}: {cell.id} never saves before the end"
                checked += 1
    assert checked


def test_a_checkpoint_keeps_the_gpus_random_state(tmp_path, monkeypatch):
    """torch.cuda's generator is mocked (no GPU here): what is checked is that its state is saved per
    rank and restored on load, so GPU dropout after a resume draws what the uninterrupted run drew."""
    from mlu_dist.engine.torch_engine import TorchEngine
    from mlu_dist.train_config import TrainConfig

    gpu = {"state": torch.tensor([1, 2, 3], dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: gpu["state"].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s: gpu.update(state=s))
    ck = Checkpointer(tmp_path, TorchEngine(torch.nn.Linear(3, 2), TrainConfig(steps=3)), 0, 1)
    ck.save(1, {})
    gpu["state"] = torch.tensor([9, 9, 9], dtype=torch.uint8)  # training went on
    ck.load(ck.latest())
    assert gpu["state"].tolist() == [1, 2, 3]


def test_a_one_task_slurm_job_is_not_one_rank_of_a_world_inherited_from_the_shell(env):
    env(RANK=3, WORLD_SIZE=4, MASTER_ADDR="127.0.0.1", MASTER_PORT=29500,
        SLURM_PROCID=0, SLURM_NTASKS=1, SLURM_STEP_ID=0, SLURM_STEP_NUM_TASKS=1, SLURM_LOCALID=0, SLURM_JOB_ID=77)
    d = dist_mod.setup_env()
    assert (d.rank, d.world_size) == (0, 1)


def test_the_eval_mode_is_chosen_after_the_allocator_releases_its_cache(monkeypatch):
    """torch.cuda mocked: 30 GB free of which 20 GB only once the caching allocator releases them."""
    from mlu_dist.jobs.evaluation import model_copy_choice

    state = {"released": False}
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: state.update(released=True))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: ((30e9 if state["released"] else 10e9), 80e9))
    mode, why = model_copy_choice("auto", 3, int(16e9), DistInfo(0, 16, 0, "cuda"), loaded=False)
    assert mode == "full" and "30.0 GB free" in why


def test_the_planner_counts_evaluation(tmp_path):
    """paper-news evaluates generation in nine languages at every curve point: counted, not skipped."""
    from mlu_dist.config import load_config
    from mlu_dist.launcher.cost import PROMPT_TOKENS, cell_cost, eval_tokens, sweep_cost
    from mlu_dist.launcher.plan import expand
    from mlu_dist.launcher.spec import SweepSpec

    spec = load_config(SweepSpec, ["sweeps/paper-news"], [f"out_dir={tmp_path}", "axes.inject_langs=[de]",
                                                          "axes.forget_langs=[en]"])
    cells = expand(spec)
    unlearn = next(c for c in cells if c.stage == "unlearn")
    cfg, steps = unlearn.config, cell_cost(unlearn, spec.resources.unlearn)["steps"]
    points = steps // cfg.unlearn.train.eval_every + 1
    per_point = min(cfg.unlearn.curve_subset, cfg.inject.n_targets) + min(cfg.unlearn.curve_subset, cfg.inject.n_controls)
    facts = points * per_point + cfg.inject.n_targets + cfg.inject.n_controls
    assert eval_tokens(unlearn, "unlearn", steps) == facts * 9 * (PROMPT_TOKENS + 48)
    assert cell_cost(unlearn, spec.resources.unlearn)["eval_gpu_hours"] > 0
    table, _ = sweep_cost(spec, cells)
    total = table.splitlines()[-1] if not table.splitlines()[-1].startswith("DOES") else table
    assert "GPU-hours of evaluation" in table and "0.0 GPU-hours of evaluation" not in table, total


def test_the_time_limit_signal_leaves_time_to_save_the_planned_checkpoint(tmp_path):
    """An 8B full fine-tuning checkpoint (96 GB) at 1 GB/s needs 96 s: the old 90 s signal was too late."""
    pytest.importorskip("submitit")
    from mlu_dist.config import load_config
    from mlu_dist.launcher.plan import expand
    from mlu_dist.launcher.slurm import _save_bytes, signal_delay_s
    from mlu_dist.launcher.spec import Resources, SweepSpec

    spec = load_config(SweepSpec, ["sweeps/slurm-8b"], [f"out_dir={tmp_path}", "axes.seeds=[0]",
                                                        "axes.inject_langs=[de]", "axes.forget_langs=[en]"])
    injects = [c for c in expand(spec) if c.stage == "inject"]
    size = _save_bytes(injects, "inject")
    assert size == pytest.approx(12 * 8.03e9, rel=0.01)
    assert signal_delay_s(spec.resources.inject, size) == 97 + 60  # write + the step in flight
    assert signal_delay_s(Resources(time_min=240, fs_gb_per_s=5.0), size) == 90  # fast disk: the usual delay
    assert signal_delay_s(Resources(time_min=2)) == 12  # small jobs: a tenth of the limit, as before


def test_relaunched_ranks_share_the_cores_instead_of_torchruns_one_thread():
    """`--nproc N` hands each rank cores/N OpenMP threads (torchrun's default of 1 would leave CPU
    Adam under offload single-threaded); a value the user set is kept."""
    from mlu_dist.relaunch import rank_env

    assert rank_env(8, {}, cores=64) == {"OMP_NUM_THREADS": "8", "MLU_LAUNCHED": "1"}
    assert rank_env(4, {}, cores=2)["OMP_NUM_THREADS"] == "1"
    assert rank_env(8, {"OMP_NUM_THREADS": "3"}, cores=64)["OMP_NUM_THREADS"] == "3"
