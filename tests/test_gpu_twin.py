"""The GPU tests' pipeline (test_gpu.py) on CPU: the same commands and the same value checks
(tests/run_checks.py), with the quick base model at 2 gloo ranks instead of a 1 B model on GPUs,
so that what the GPU tests assert is proven to hold where it can run. Measured here (2 cores shared,
load ~9): the ZeRO-3 pipeline 123 s (five 2-rank launches), the LoRA check 29 s, after the session's
quick base model. The same pipeline with a 128,256-token vocabulary (test_gpu.py's second model,
shrunk to hidden 64) passed here too, in 459 s: too slow for CI."""

import pytest

from conftest import QUICK
from run_checks import inject_eval_unlearn, lora_merge_check

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

SMALL = ["inject.langs=[de]", "inject.train.log_every=1", "unlearn.train.log_every=1", "data.langs=[en,de,ha]", "inject.train.steps=8", "inject.train.eval_every=0",
         "unlearn.train.steps=4", "unlearn.train.eval_every=4", "unlearn.train.lr=1e-3", "tracking.wandb=false"]


def test_two_rank_zero3_pipeline_moves_the_values_and_model_copies_agree(quick_base, tmp_path):
    _, base_dir = quick_base
    common = ["-c", str(QUICK), f"run.out_dir={tmp_path}", *SMALL]
    moved = inject_eval_unlearn(base_dir / "model", tmp_path, common, ["-c", "deepspeed/zero3"], nproc=2,
                                device="cpu", copies=("full", "partitioned"))
    print(moved)


def test_two_rank_lora_merged_scores_as_unmerged(quick_base, tmp_path):
    _, base_dir = quick_base
    common = ["-c", str(QUICK), f"run.out_dir={tmp_path}", *SMALL, "inject.train.lr=1e-2"]
    # fp32 here: merging changes only the summation order (measured below 1e-5 nats)
    print(lora_merge_check(base_dir / "model", tmp_path, common, ["-c", "deepspeed/zero2"], nproc=2, device="cpu",
                           margin_tol=1e-4))
