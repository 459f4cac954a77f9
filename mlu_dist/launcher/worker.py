"""The local executor's workers: long-lived processes that run sweep cells one after another.

A cell run as its own process spends 7-8 s on a 2-core machine starting Python and importing
torch, DeepSpeed, transformers and W&B before its job begins; a worker pays that once. Each cell
still runs as ``python -m mlu_dist.launcher.tasks`` would (the same code, its
output into the cell's log, its exit code reported), one at a time, with the worker's fixed
thread count. A cell that kills its worker (a crash, ``os._exit``) is reported with the worker's
exit code; the executor starts a new worker for the next cell.

Protocol: the executor writes one JSON request a line to the worker's stdin
(``{"id", "argv", "log"}``); the worker answers on the file descriptor it was given
(``{"id", "rc"}`` a line). End of stdin ends the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback


def run_request(argv: list[str], log_path: str) -> int:
    """Run ``tasks.run_argv(argv)`` with stdout and stderr (file descriptors too) in ``log_path``."""
    from mlu_dist.launcher import tasks

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            rc = tasks.run_argv(argv)
        except SystemExit as exc:  # argparse, or sys.exit("message") in a job: as a process would exit
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
            rc = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:  # the cell failed; the worker goes on to the next one
            traceback.print_exc()
            rc = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    return rc


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with os.fdopen(int(argv[0]), "w", buffering=1) as replies:
        for line in sys.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            rc = run_request(req["argv"], req["log"])
            replies.write(json.dumps({"id": req["id"], "rc": rc}) + "\n")
    from mlu_dist.engine.dist import shutdown

    shutdown()
    return 0


class Worker:
    """The executor's handle on one worker process."""

    def __init__(self, env: dict):
        read, write = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-m", "mlu_dist.launcher.worker", str(write)],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     pass_fds=(write,), env=env, text=True)
        os.close(write)
        os.set_blocking(read, False)
        self.replies, self.buffer = read, b""
        self.busy: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def submit(self, cell_id: str, argv: list[str], log: str) -> None:
        self.busy = cell_id
        self.proc.stdin.write(json.dumps({"id": cell_id, "argv": argv, "log": log}) + "\n")
        self.proc.stdin.flush()

    def poll(self) -> int | None:
        """The exit code of the busy cell once it has ended (None while it runs)."""
        try:
            while chunk := os.read(self.replies, 65536):
                self.buffer += chunk
        except BlockingIOError:
            pass
        if b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.busy = None
            return int(json.loads(line)["rc"])
        if self.proc.poll() is not None:  # the cell took its worker down
            self.busy = None
            return self.proc.returncode or 1
        return None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        os.close(self.replies)


if __name__ == "__main__":
    sys.exit(main())
