"""Every collective mlu_dist makes, each with its tensors on the device the backend takes.

NCCL accepts CUDA tensors only, gloo CPU tensors; a group may also map devices to backends
(``"cuda:nccl,cpu:gloo"``). A tensor built for a collective here goes to :func:`comm_device`,
never to the CPU by default: a CPU tensor handed to NCCL fails at once on a GPU cluster. The
rest of the package calls these helpers instead of ``torch.distributed`` (a test checks it).
With no process group (one rank) every helper is the identity.
"""

from __future__ import annotations

import torch


def initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    return torch.distributed.get_world_size() if initialized() else 1


def comm_device() -> torch.device:
    """The device the default group's backend takes tensors on: CPU when the group has a CPU
    backend (gloo), else this rank's CUDA device (nccl, or a "cuda:<backend>" group)."""
    if not initialized():
        return torch.device("cpu")
    backend = str(torch.distributed.get_backend()).lower()
    devices = {part.split(":")[0] for part in backend.split(",") if ":" in part} if ":" in backend \
        else ({"cuda"} if backend == "nccl" else {"cpu"})
    if "cpu" in devices:
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cuda")


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sums over ranks (float64)."""
    if world_size() == 1:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=comm_device())
    torch.distributed.all_reduce(t)
    return t.cpu().tolist()


def gather_counts(mine: int) -> list[int]:
    """Every rank's integer, indexed by rank."""
    n = world_size()
    if n == 1:
        return [int(mine)]
    t = torch.zeros(n, dtype=torch.float64, device=comm_device())
    t[torch.distributed.get_rank()] = float(mine)
    torch.distributed.all_reduce(t)
    return [int(c) for c in t.cpu().tolist()]


def all_true(flag: bool) -> bool:
    """Whether ``flag`` holds on every rank."""
    if world_size() == 1:
        return bool(flag)
    t = torch.tensor([0 if flag else 1], dtype=torch.int64, device=comm_device())
    torch.distributed.all_reduce(t)
    return int(t.item()) == 0


def all_gather_object(obj) -> list:
    """Every rank's picklable ``obj``, indexed by rank (torch puts the bytes on the backend's device)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        torch.distributed.barrier()
