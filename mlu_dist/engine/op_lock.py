"""Loading JIT-built torch extensions (DeepSpeed's ops) without waiting forever on a stale lock.

No deepspeed import here: the engine passes its op builders in."""

from __future__ import annotations

from pathlib import Path

from mlu_dist.logs import get_logger

log = get_logger(__name__)


def extensions_root() -> Path:
    """Where torch JIT-builds extensions: ``TORCH_EXTENSIONS_DIR``, else torch's default cache."""
    import os

    from torch.utils import cpp_extension

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root())


def load_op_under_lock(builder, root: Path | None = None, say=None):
    """Build or load a DeepSpeed op under a lock the kernel releases; returns the loaded module.

    torch JIT-loads an op through its FileBaton: a ``lock`` file in the op's build directory that
    every process creates and deletes around the build, and waits on with no timeout. A process
    killed inside that window (a cancelled or requeued job, a Ctrl-C) leaves the file behind, and
    every later start then waits for it forever. Here every mlu_dist process loads ops while holding
    an flock on ``<root>/mlu_dist.lock``, so a baton file found while holding it was left by a dead
    process: it is named and removed. The loaded module is cached by DeepSpeed, so its own load
    later does not touch the baton. (A non-mlu_dist process building the same op at the same moment
    would not be seen; that is the one case this does not cover.)"""
    import fcntl

    root = Path(root or extensions_root())
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "mlu_dist.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            # <root>/<op>/lock under TORCH_EXTENSIONS_DIR, <root>/<py311_cu124>/<op>/lock under the default
            for stale in [*root.glob(f"{builder.name}/lock"), *root.glob(f"*/{builder.name}/lock")]:
                stale.unlink(missing_ok=True)
                (say or log.warning)(f"removed a stale torch-extension lock left by a killed process: {stale}")
            return builder.load(verbose=False)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
