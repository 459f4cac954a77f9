"""One launcher per sweep directory: an flock on ``<sweep>/launcher.lock``, held while the launcher
runs and released by the kernel when its process ends in any way (a kill included), so a lock is
never left stale. The file says who holds it (pid, host, since). A second launcher refuses with
that, or waits for it (``--wait-lock``). flock works across nodes on NFSv4 and on Lustre mounted
with ``flock``; on a filesystem without it the lock only guards launchers on one machine.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from mlu_dist.logs import get_logger

log = get_logger(__name__)


class SweepLocked(RuntimeError):
    """Another launcher is running this sweep."""


class SweepLock:
    def __init__(self, root: Path, wait: bool = False, say=None):
        self.path = Path(root) / "launcher.lock"
        self.wait, self.say = wait, say or log.info
        self._fh = None

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def __enter__(self) -> SweepLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = self.holder()
            desc = f"pid {who.get('pid', '?')} on {who.get('host', '?')} since {who.get('since', '?')}"
            if not self.wait:
                fh.close()
                raise SweepLocked(f"another launcher is running the sweep in {self.path.parent} ({desc}); wait for "
                                  f"it to end, stop it, or run again with --wait-lock") from None
            self.say(f"[sweep] waiting for the launcher that holds {self.path} ({desc})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        old = self.holder()
        if old.get("pid") and (old.get("pid"), old.get("host")) != (os.getpid(), socket.gethostname()):
            self.say(f"[sweep] taking over the lock of pid {old['pid']} on {old.get('host', '?')} "
                     f"(that launcher is gone)")
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()  # an empty file: nobody holds it
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
