"""How many bytes a DeepSpeed checkpoint holds: pure arithmetic, shared by the engine (the disk
check before the first save) and the planner (``mlu sweep plan --cost``, which imports no torch)."""

from __future__ import annotations


def ds_checkpoint_bytes(trainable: int, trainable_bytes: int, frozen_bytes: int, stage: int, mixed: bool) -> int:
    """What ``save_checkpoint`` writes, all ranks together, from the whole model's counts.

    Measured with DeepSpeed 0.19.8 (1 and 2 CPU ranks, fp32 and bf16, a frozen base beside a trainable
    layer): the optimizer state is 12 bytes per trainable element (fp32 master + Adam's two moments;
    8 at stage 0 in fp32, where the weights are the master), split over the ranks; the weights are
    written once by rank 0 at stages 0-2, and at stage 3 only the frozen ones, each rank its shard.
    None of it grows with the world size."""
    optimizer = (12 if stage >= 1 or mixed else 8) * trainable
    weights = frozen_bytes + (trainable_bytes if stage < 3 else 0)
    return optimizer + weights
