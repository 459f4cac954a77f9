"""Weights & Biases: the only module that imports ``wandb``.

Offline first: without an API key (or with ``WANDB_MODE=offline``) runs are written under the run
directory and uploaded later with ``mlu sync`` from a machine with network (cluster nodes often
have none). A run's id is derived from its run directory, and runs resume with
``resume="allow"``, so a requeued job continues its own W&B run. The API key is never written
anywhere by us: the config we log is the experiment config, which holds no secrets.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from mlu_dist.logs import get_logger

log = get_logger(__name__)

def run_id(run_dir: Path, job: str) -> str:
    """Stable across requeues and resumptions of the same run directory."""
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]
    return f"{job}-{digest}"


def resolve_mode(requested: str) -> str:
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    has_key = bool(os.environ.get("WANDB_API_KEY")) or "api.wandb.ai" in _netrc()
    return "online" if has_key else "offline"


def _netrc() -> str:
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.read_text()
    except OSError:
        return ""


class WandbTracker:
    """The Tracker protocol on top of a W&B run (rank 0 only)."""

    def __init__(self, run_dir: Path, job: str, config: dict, project: str, entity: str = "", group: str = "",
                 tags=(), mode: str = "auto", skip_until: int = -1, init_timeout: float = 60.0,
                 step_axes: tuple[str, ...] = ()):
        import wandb

        self.wandb = wandb
        self.skip_until = skip_until  # steps a previous process of this run already logged
        mode = resolve_mode(mode)
        kwargs = dict(project=project, entity=entity or None, group=group or None, job_type=job, tags=list(tags),
                      name=Path(run_dir).name, id=run_id(run_dir, job), resume="allow", dir=str(run_dir),
                      config=config, reinit="finish_previous")
        try:
            self.run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=init_timeout, silent=True), **kwargs)
        except Exception as exc:  # no network, bad key, server down: never lose the training run
            if mode == "offline":
                raise
            log.warning(f"[wandb] {mode} init failed ({type(exc).__name__}: {str(exc).splitlines()[0]}); logging "
                        f"offline instead")
            wandb.teardown()  # the failed start still holds the run id ("run ID ... is in use")
            self.run = wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kwargs)
        step_key = f"{job}/step"
        self.run.define_metric(step_key)
        for prefix in dict.fromkeys(step_axes):  # the key prefixes the job declares, on its step
            self.run.define_metric(f"{prefix}/*", step_metric=step_key)
        self.step_key = step_key

    def _guard(self, what: str, fn) -> None:
        """Run a W&B call; the first failure turns W&B off for this run with one warning."""
        if self.run is None:
            return
        try:
            fn()
        except Exception as exc:  # W&B must never stop training: metrics.jsonl has everything
            log.warning(f"[wandb] {what} failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                        f"W&B logging is off for the rest of this run, metrics.jsonl keeps everything")
            self.run = None

    def log(self, metrics: dict, step: int) -> None:
        if step <= self.skip_until:
            return  # a resumed run replays steps its first process already logged
        self._guard("log", lambda: self.run.log({self.step_key: step, **metrics}))

    def summary(self, metrics: dict) -> None:
        self._guard("summary", lambda: [self.run.summary.__setitem__(k, v) for k, v in metrics.items()])

    def table(self, key: str, columns: list[str], rows: list[list]) -> None:
        self._guard("table", lambda: self.run.log({key: self.wandb.Table(columns=columns, data=rows)}))

    def images(self, named: dict) -> None:
        self._guard("images", lambda: self.run.log({f"report/{name}": self.wandb.Image(str(path))
                                                     for name, path in named.items()}))

    def close(self, failed: bool = False) -> None:
        run = self.run  # idempotent: a job's teardown may close it again
        self._guard("finish", lambda: run.finish(exit_code=1 if failed else 0))
        self.run = None


DEFAULT_BASE_URL = "https://api.wandb.ai"


def base_url() -> str:
    """The W&B server runs go to: ``WANDB_BASE_URL``, else the host ``wandb login --host`` saved, else
    the W&B cloud."""
    import configparser

    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"].rstrip("/")
    settings = Path(os.environ.get("WANDB_CONFIG_DIR") or Path.home() / ".config" / "wandb") / "settings"
    parser = configparser.ConfigParser()
    try:
        parser.read(settings)
        return (parser.get("default", "base_url", fallback="") or DEFAULT_BASE_URL).rstrip("/")
    except configparser.Error:
        return DEFAULT_BASE_URL


def credentials_source(url: str) -> str | None:
    """Where the W&B client would find credentials for ``url`` (a name, never the key), or None."""
    import netrc
    from urllib.parse import urlparse

    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        if os.environ.get(var):
            return var
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        if netrc.netrc(str(path)).authenticators(urlparse(url).hostname or ""):
            return str(path)
    except (OSError, netrc.NetrcParseError):
        pass
    return None


def unreachable(url: str, timeout: float = 3.0) -> str | None:
    """Why the W&B server at ``url`` cannot be reached (a TCP connection to it, or to the proxy in
    ``HTTPS_PROXY``/``HTTP_PROXY``, within ``timeout`` seconds), or None when it can."""
    import socket
    import urllib.request
    from urllib.parse import urlparse

    u = urlparse(url)
    if not u.hostname or u.scheme not in ("http", "https"):
        return f"{url!r} is not an http(s) URL (WANDB_BASE_URL)"
    host, port, via = u.hostname, u.port or (443 if u.scheme == "https" else 80), ""
    proxy = urllib.request.getproxies().get(u.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port, via = p.hostname, p.port or 80, f" (the proxy for {u.hostname})"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"no connection to {host}:{port}{via} within {timeout:g} s: {exc.strerror or exc}"


def offline_runs(paths: list[Path]) -> list[Path]:
    """The offline W&B run folders (``wandb/offline-run-*``) under ``paths``."""
    return sorted({p for root in paths for p in Path(root).rglob("offline-run-*") if p.is_dir()})


def is_uploaded(folder: Path) -> bool:
    """``wandb sync`` leaves ``<run>.wandb.synced`` beside a transaction log it uploaded completely."""
    return any(Path(folder).glob("*.wandb.synced"))


def sync(folders: list[Path], project: str = "", entity: str = "", timeout: float = 1800.0) -> list[dict]:
    """Upload offline run folders with ``wandb sync``; per folder ``{"folder", "status", "reason"}``,
    status ``uploaded``, ``already uploaded`` or ``failed``. Success is the client's own marker
    (``*.wandb.synced``), not its exit code: ``wandb sync`` exits 0 when an upload is refused."""
    import subprocess
    import sys

    todo = [f for f in folders if not is_uploaded(f)]
    out, note = "", ""
    if todo:
        cmd = [sys.executable, "-m", "wandb", "sync", *(["--project", project] if project else []),
               *(["--entity", entity] if entity else []), *map(str, todo)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
            out, note = proc.stdout + proc.stderr, f"`wandb sync` exited {proc.returncode}"
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
            note = f"`wandb sync` did not finish within {timeout:g} s"
    errors = [line.strip().removeprefix("wandb: ") for line in out.splitlines() if "error" in line.lower()]
    results = []
    for f in folders:
        if f not in todo:
            results.append({"folder": f, "status": "already uploaded", "reason": ""})
        elif is_uploaded(f):
            results.append({"folder": f, "status": "uploaded", "reason": ""})
        else:
            rid = f.name.split("-", 3)[-1]  # offline-run-<date>_<time>-<run id>
            mine = [e for e in errors if rid in e] or errors[-1:]
            results.append({"folder": f, "status": "failed",
                            "reason": (mine[0] if mine else f"{note} without marking it uploaded")[:300]})
    return results


def default_entity() -> str:
    """The logged-in user's default W&B entity (asks the server)."""
    import wandb

    return wandb.Api().default_entity or ""


def read_offline_run(run_folder: Path) -> dict:
    """History rows, summary, config and where it belongs (project, entity, group, tags, id, job_type)
    of an offline run, and its step axes (glob -> step key), read from its ``.wandb`` file (a 7-byte
    header, then LevelDB-log framing of ``Record`` protobufs). For tests and reports."""
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    data = next(Path(run_folder).glob("*.wandb")).read_bytes()
    pos, block, payload = 7, 32768, b""
    history, summary, config, where, axes = [], {}, {}, {}, {}
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block tail too short for a header is padding
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 2):
            payload = chunk
        else:
            payload += chunk
        if kind not in (1, 4):
            continue
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind_name = rec.WhichOneof("record_type")
        key = lambda item: item.key or "/".join(item.nested_key)  # noqa: E731
        if kind_name == "history":
            history.append({key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind_name == "summary":
            summary.update({key(i): json.loads(i.value_json) for i in rec.summary.update})
        elif kind_name == "config":
            config.update({key(i): json.loads(i.value_json) for i in rec.config.update})
        elif kind_name == "metric" and rec.metric.glob_name:
            axes[rec.metric.glob_name] = rec.metric.step_metric
        elif kind_name == "run":  # the initial config travels with the run record
            config.update({key(i): json.loads(i.value_json) for i in rec.run.config.update})
            where = {"project": rec.run.project, "entity": rec.run.entity, "group": rec.run.run_group,
                     "tags": list(rec.run.tags), "id": rec.run.run_id, "job_type": rec.run.job_type}
    return {"history": history, "summary": summary, "config": config, "run": where, "step_axes": axes}


def build_wandb_tracker(ctx) -> WandbTracker:
    """The registered "wandb" tracker (tracking.TRACKERS): project, group, tags and mode from the config."""
    from mlu_dist.config import to_dict

    t = ctx.experiment.tracking
    return WandbTracker(ctx.run_dir, ctx.job, to_dict(ctx.experiment), t.project, t.entity, t.group, t.tags, t.mode,
                        skip_until=ctx.skip_until, init_timeout=t.init_timeout, step_axes=ctx.step_axes)
