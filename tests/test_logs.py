"""One logging set-up: rank-aware, one formatter, ``--quiet``/``--verbose`` reaching child processes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from mlu_dist import logs


@pytest.fixture
def level():
    """Restore the package level and MLU_LOG_LEVEL after each test (set_level writes the variable
    for child processes; left behind it would make every later test's children quiet)."""
    env = os.environ.pop(logs.LEVEL_ENV, None)
    before = logging.getLogger(logs.ROOT).level
    yield
    logging.getLogger(logs.ROOT).setLevel(before)
    os.environ.pop(logs.LEVEL_ENV, None)
    if env is not None:
        os.environ[logs.LEVEL_ENV] = env


def test_info_comes_from_rank_0_only_and_warnings_from_every_rank_tagged(level, monkeypatch, capsys):
    log = logs.get_logger("mlu_dist.test_logs")
    logs.set_level("info")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    log.info("progress on rank 1")
    log.warning("disk nearly full")
    monkeypatch.setenv("RANK", "0")
    log.info("progress on rank 0")
    out = capsys.readouterr()
    assert out.out == "progress on rank 0\n"
    assert out.err == "[rank 1] warning: disk nearly full\n"


def test_quiet_keeps_warnings_and_verbose_adds_debug(level, capsys):
    log = logs.get_logger("test_logs")  # a bare name lands under the package logger too
    assert log.name == "mlu_dist.test_logs"
    logs.set_level("quiet")
    assert logs.quiet() and os.environ[logs.LEVEL_ENV] == "quiet"
    log.info("step 10")
    log.warning("a checkpoint was skipped")
    assert capsys.readouterr() == ("", "warning: a checkpoint was skipped\n")
    logs.set_level("verbose")
    log.debug("bucket sizes")
    log.info("step 20")
    assert capsys.readouterr().out == "debug: bucket sizes\nstep 20\n"
    with pytest.raises(ValueError, match="'loud' is not one of quiet, info, verbose"):
        logs.set_level("loud")


def test_the_level_travels_to_a_child_process(level):
    """Launched ranks and sweep workers read MLU_LOG_LEVEL at their first log line."""
    logs.set_level("quiet")
    code = ("from mlu_dist.logs import get_logger; log = get_logger('child'); "
            "log.info('progress'); log.warning('trouble')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ | {"RANK": "0"})
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "warning: trouble\n"


def test_mlu_takes_quiet_anywhere_on_the_line_and_refuses_both(level, tmp_path, capsys):
    from mlu_dist.cli import main

    assert main(["world", "--out", str(tmp_path / "w"), "--quiet"]) == 0
    assert os.environ[logs.LEVEL_ENV] == "quiet" and logs.quiet()
    assert "wrote" in capsys.readouterr().out  # a command's own output is printed, not logged
    with pytest.raises(SystemExit) as stop:
        main(["-q", "world", "--out", str(tmp_path / "w2"), "--verbose"])
    assert stop.value.code == 2 and "--quiet and --verbose contradict" in capsys.readouterr().err
