"""`--nproc N`: re-run an `mlu` command under torchrun with N local ranks (shared by `mlu` and
`mlu data`)."""

from __future__ import annotations

import os
import sys


def relaunch(args_list: list[str], nproc: int) -> int:
    """Re-run this command under torchrun with ``nproc`` local ranks."""
    import subprocess

    from mlu_dist.engine.dist import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={free_port()}", "-m", "mlu_dist.cli", *args_list]
    return subprocess.call(cmd, env=rank_env(nproc))


def rank_env(nproc: int, environ: dict | None = None, cores: int | None = None) -> dict:
    """The environment of the relaunched ranks: ``MLU_LAUNCHED``, and ``OMP_NUM_THREADS`` = the cores
    this process may use / ``nproc`` unless already set. torchrun would set it to 1, which leaves
    CPU work single-threaded (DeepSpeed's CPU Adam under offload, CPU ranks)."""
    environ = dict(os.environ if environ is None else environ)
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // max(1, nproc))))
    return environ | {"MLU_LAUNCHED": "1"}


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (the relaunched ranks must not relaunch)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out
