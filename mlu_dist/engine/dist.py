"""Where this process sits in the job: rank, world size, device; set up before any engine starts.

Ranks come from torchrun / the deepspeed launcher (RANK, WORLD_SIZE, LOCAL_RANK), from Slurm
(SLURM_PROCID, SLURM_NTASKS, ...) when a job runs one task per rank, or default to a single
in-process rank.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass

from mlu_dist.logs import get_logger

log = get_logger(__name__)


DEFAULT_TIMEOUT_MIN = 60.0
"""Minutes a collective may wait (``engine.timeout_min``); torch's and DeepSpeed's own 10 are less than
rank 0 alone needs to merge and write an 8B model or delete a 110 GB checkpoint on a busy filesystem."""


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device_type: str  # cpu / cuda
    timeout_min: float = DEFAULT_TIMEOUT_MIN
    """Minutes a collective may wait for the other ranks before the process group fails the job."""

    @property
    def timeout(self):
        """:attr:`timeout_min` as the ``timedelta`` torch and DeepSpeed take."""
        from datetime import timedelta

        return timedelta(minutes=self.timeout_min)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self):
        """This rank's compute device: its local GPU, or the CPU."""
        import torch

        return torch.device("cuda", self.local_rank) if self.device_type == "cuda" else torch.device("cpu")

    def as_dict(self) -> dict:
        return asdict(self)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCHER_MARKERS = ("TORCHELASTIC_RUN_ID", "CROSS_RANK")
"""Variables torchrun / the deepspeed launcher set beside RANK: ranks set by a launcher inside the task."""


def _from_slurm() -> None:
    """Export torch-style variables from Slurm's when a job runs one task per rank under srun.

    Only inside an srun step (``SLURM_STEP_ID``): a batch script itself (e.g. ``mlu eval`` in an
    sbatch script) sees the allocation's SLURM_NTASKS but is one process, and would wait forever for
    ranks that were never started. RANK / WORLD_SIZE that disagree with Slurm's and were not set by a
    launcher inside the task came from the submitting shell (sbatch exports it): Slurm's win."""
    env = os.environ
    if "SLURM_PROCID" not in env or "SLURM_STEP_ID" not in env or any(k in env for k in LAUNCHER_MARKERS):
        return
    tasks = env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1"))
    if (env.get("RANK"), env.get("WORLD_SIZE")) not in ((None, None), (env["SLURM_PROCID"], tasks)):
        if env["SLURM_PROCID"] == "0":
            log.warning(f"ignoring RANK={env.get('RANK')} WORLD_SIZE={env.get('WORLD_SIZE')} MASTER_ADDR="
                  f"{env.get('MASTER_ADDR')} MASTER_PORT={env.get('MASTER_PORT')} inherited from the submitting shell: "
                  f"this is task {env['SLURM_PROCID']} of {tasks} of an srun step")
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):  # wrong in this job
            env.pop(key, None)
    if int(tasks) < 2:
        return
    env["RANK"] = env["SLURM_PROCID"]
    env["WORLD_SIZE"] = tasks
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    if "MASTER_ADDR" not in env:
        nodes = env.get("SLURM_STEP_NODELIST", env.get("SLURM_JOB_NODELIST", "127.0.0.1"))
        try:
            import subprocess

            first = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                                   check=True).stdout.split()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):  # no scontrol: "gpu[03-04,07],cpu1" -> gpu03
            import re

            head = re.match(r"([^,\[]*)(?:\[([^-,\]]+))?", nodes)
            first = head.group(1) + (head.group(2) or "")
        env["MASTER_ADDR"] = first
    env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))


def cuda_index(local_rank: int, visible: int) -> int:
    """This rank's CUDA device among those the task sees: its local rank when the task sees the
    node's GPUs, 0 when it sees only its own (``--gpus-per-task=1``, ``--gpu-bind``)."""
    if visible < 1:
        raise RuntimeError("torch sees a CUDA runtime but no GPU: check CUDA_VISIBLE_DEVICES and the job's --gpus")
    if visible == 1:
        return 0
    if local_rank >= visible:
        raise RuntimeError(f"LOCAL_RANK={local_rank} but this task sees {visible} GPUs (CUDA_VISIBLE_DEVICES="
                           f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): give each task one GPU "
                           f"(--gpus-per-task=1) or every task all of the node's GPUs")
    return local_rank


def setup_env(timeout_min: float = DEFAULT_TIMEOUT_MIN) -> DistInfo:
    """Fill in the distributed environment variables (single rank if no launcher set them);
    ``timeout_min`` is how long collectives of the process group this rank starts may wait."""
    env = os.environ
    _from_slurm()
    env.setdefault("RANK", "0")
    env.setdefault("WORLD_SIZE", "1")
    env.setdefault("LOCAL_RANK", "0")
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    if env["WORLD_SIZE"] == "1":
        env.setdefault("MASTER_PORT", str(free_port()))
    # DeepSpeed's CPU accelerator counts ranks per node with numactl unless LOCAL_SIZE is set.
    env.setdefault("LOCAL_SIZE", env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"]))
    import torch

    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    if device_type == "cuda":
        # DeepSpeed reads LOCAL_RANK as the device index (engine, zero.Init, NCCL's device_id)
        env["LOCAL_RANK"] = str(cuda_index(int(env["LOCAL_RANK"]), torch.cuda.device_count()))
    if device_type == "cpu":
        env.setdefault("DS_ACCELERATOR", "cpu")
        if "OMP_NUM_THREADS" not in env:
            # The deepspeed launcher and Slurm leave it unset; ranks or jobs sharing cores with more
            # threads than cores spin against each other (10x slower seen with 2 jobs on 2 cores).
            cores = int(env["SLURM_CPUS_PER_TASK"]) if "SLURM_CPUS_PER_TASK" in env \
                else (os.cpu_count() or 1) // int(env["LOCAL_SIZE"])
            torch.set_num_threads(max(1, cores))
    return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]), device_type, timeout_min)


def ensure_process_group(dist: DistInfo) -> None:
    """A process group for collectives between ranks that run no engine (NCCL on GPUs, gloo on CPU)."""
    import torch

    if dist.world_size > 1 and not torch.distributed.is_initialized():
        if dist.device_type == "cuda":
            torch.cuda.set_device(dist.local_rank)
            torch.distributed.init_process_group("nccl", device_id=dist.device, timeout=dist.timeout)
        else:
            torch.distributed.init_process_group("gloo", timeout=dist.timeout)


def release_shm() -> None:
    """Delete this rank's DeepSpeed CPU all-reduce buffer in /dev/shm (66 MB per rank and process).

    DeepSpeed 0.19 never unlinks it: a few hundred runs filled a 24 GB machine's memory."""
    import glob

    env = os.environ
    if "MASTER_ADDR" not in env or "MASTER_PORT" not in env:
        return
    pattern = f"/dev/shm/deepspeed_allreduce_buffer_*_{env['MASTER_ADDR']}_{env['MASTER_PORT']}_{env.get('LOCAL_RANK', '0')}"
    for path in glob.glob(pattern):
        try:
            os.unlink(path)
        except OSError:
            pass


def shutdown() -> None:
    """End the process group once every engine is closed (see DeepSpeedEngine.close)."""
    import gc

    import torch

    gc.collect()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    release_shm()
