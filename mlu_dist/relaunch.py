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
    return subprocess.call(cmd, env=os.environ | {"MLU_LAUNCHED": "1"})


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
