"""One logging set-up for every ``mlu`` process: rank-aware, one formatter, one level switch.

Modules log through ``log = get_logger(__name__)``. Messages at INFO and below come from rank 0
only (every rank runs the same code, so the others would repeat it); warnings and errors come from
every rank, tagged with the rank when there is more than one. ``--quiet`` shows warnings and
errors only, ``--verbose`` adds DEBUG. The level travels to launched ranks and sweep workers in
``MLU_LOG_LEVEL``, so ``mlu --quiet sweep run`` is quiet all the way down.

Progress messages go to stdout (where a Slurm ``.out`` file or a terminal shows them in order with
the job's tables), warnings and errors to stderr; what a command *returns* (a plan, a status
table, a job's result table) is printed, not logged.
"""

from __future__ import annotations

import logging
import os
import sys

ROOT = "mlu_dist"
LEVEL_ENV = "MLU_LOG_LEVEL"
LEVELS = {"quiet": logging.WARNING, "info": logging.INFO, "verbose": logging.DEBUG}


def get_logger(name: str) -> logging.Logger:
    """The package logger for a module (``get_logger(__name__)``); set up on first use."""
    _ensure_handler()
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


def _env_int(name: str, default: int) -> int:
    """An integer environment variable (RANK, WORLD_SIZE), ``default`` when unset or not a number."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _rank() -> int:
    return _env_int("RANK", 0)


def _world() -> int:
    return _env_int("WORLD_SIZE", 1)


class _RankFilter(logging.Filter):
    """INFO and below from rank 0 only; warnings from every rank. Reads the rank at each record,
    since ranks are often set up after the first import."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or _rank() == 0


class _Formatter(logging.Formatter):
    """INFO reads as the message itself; warnings and errors say what they are, and which rank."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.levelno < logging.WARNING:
            return text if record.levelno >= logging.INFO else f"debug: {text}"
        where = f"[rank {_rank()}] " if _world() > 1 else ""
        return f"{where}{record.levelname.lower()}: {text}"


class _StdoutHandler(logging.Handler):
    """Writes INFO and DEBUG to the current ``sys.stdout``, warnings and errors to ``sys.stderr``
    (looked up at each record, so redirection and test capture see it), and flushes, so lines
    interleave with prints in order."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # logging must never take the job down
            self.handleError(record)


def _ensure_handler() -> None:
    root = logging.getLogger(ROOT)
    if any(isinstance(h, _StdoutHandler) for h in root.handlers):
        return
    handler = _StdoutHandler()
    handler.setFormatter(_Formatter())
    handler.addFilter(_RankFilter())
    root.addHandler(handler)
    root.propagate = False
    root.setLevel(_env_level())


def _env_level() -> int:
    name = os.environ.get(LEVEL_ENV, "info").lower()
    return LEVELS.get(name, logging.INFO)


def set_level(name: str) -> None:
    """``quiet``, ``info`` or ``verbose`` for this process and every process it starts."""
    if name not in LEVELS:
        raise ValueError(f"log level: {name!r} is not one of {', '.join(LEVELS)}")
    os.environ[LEVEL_ENV] = name
    _ensure_handler()
    logging.getLogger(ROOT).setLevel(LEVELS[name])


def quiet() -> bool:
    """True under ``--quiet`` (progress bars stay off too)."""
    _ensure_handler()
    return logging.getLogger(ROOT).level >= logging.WARNING
