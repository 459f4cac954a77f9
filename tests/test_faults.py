"""The fault matrix (benchmarks/faults.py) with one trial per fault: every fault recovered or
refused clearly, no step logged twice, losses equal to the uninterrupted run's. The two-launcher,
W&B-outage and rank-kill rows have tests of their own (test_sweep, test_tracking, test_engine)."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, clean_env

FAULTS = "sigterm,sigkill,sigkill_in_save,truncated_shard,dangling_latest,torn_jsonl,disk_full"


@pytest.mark.slow
def test_every_fault_is_recovered_with_nothing_duplicated_and_no_deviation(tmp_path):
    out = tmp_path / "faults.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "faults.py"), "--trials", "1", "--only", FAULTS,
                           "--out", str(out)], capture_output=True, text=True, env=clean_env(), timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = json.loads(out.read_text())
    assert set(table) == set(FAULTS.split(","))
    for name, trials in table.items():
        for t in trials:
            if "skipped" in t:
                continue
            assert t["recovered"] and t["duplicated"] == 0 and t["deviation"] == 0.0, (name, t)
            if name != "disk_full":  # at most one save interval (5 steps) recomputed; a full disk skips saves
                assert t["lost"] <= 5, (name, t)
