"""Every benchmark's ``--smoke`` mode (bench_mfu: ``--tiny``): its own code at the smallest sizes, in
a subprocess, so that a refactor that breaks a benchmark fails here. Each smoke JSON must hold every
top-level key of the recorded measurement in benchmarks/results/ and sensible values; the recorded
files themselves must stay untouched."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, clean_env

BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
# every script in benchmarks/ and the test below that runs it (smoke.py is their shared helper)
COVERED = {"bench_engine", "bench_eval", "bench_eval_zero3", "bench_memory", "bench_mfu", "bench_partitioned_load",
           "bench_qa_eval", "faults", "rehearse"}


def smoke(script: str, tmp_path: Path, *extra: str, out: bool = True) -> tuple[dict | list, str]:
    """Run ``benchmarks/<script>.py --smoke``; returns (its JSON, its stdout)."""
    path = tmp_path / f"{script}.json"
    cmd = [sys.executable, str(BENCH / f"{script}.py"), "--smoke", *extra, *(["--out", str(path)] if out else [])]
    # TMPDIR: the runs and files a smoke mode makes in temporary directories go with tmp_path
    env = clean_env(WANDB_MODE="disabled", TMPDIR=str(tmp_path))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if not out:
        path = Path(re.findall(r"^wrote (.+)$", proc.stdout, re.M)[-1])
    return json.loads(path.read_text()), proc.stdout


def recorded_keys(name: str) -> set[str]:
    data = json.loads((RESULTS / name).read_text())
    return set(data[0] if isinstance(data, list) else data)


def positive(*values) -> bool:
    return all(isinstance(v, (int, float)) and v > 0 for v in values)


@pytest.fixture(scope="module", autouse=True)
def _results_untouched():
    """No smoke run may overwrite the recorded measurements."""
    digest = lambda: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in RESULTS.glob("*")}  # noqa: E731
    before = digest()
    yield
    assert digest() == before


def test_every_benchmark_script_has_a_smoke_test():
    scripts = {p.stem for p in BENCH.glob("*.py")} - {"smoke"}
    assert scripts == COVERED, f"a benchmark without a smoke test (add one here): {scripts ^ COVERED}"


@pytest.mark.slow
def test_engine_smoke_ratios_are_positive(tmp_path):
    record, _ = smoke("bench_engine", tmp_path)
    assert recorded_keys("engine.json") <= set(record)
    assert record["steps"] == 2 and record["model"] == "quick"
    assert set(record["results"]) == {"bare_torch", "mlu_deepspeed", "hf_trainer_deepspeed"}
    assert all(positive(r["steps_per_s"], r["final_loss"]) for r in record["results"].values())
    assert positive(record["ratios"]["mlu_vs_bare"], record["ratios"]["mlu_vs_hf_trainer"])


@pytest.mark.slow
def test_eval_smoke_matches_the_naive_loop_and_costs_mia(tmp_path):
    record, _ = smoke("bench_eval", tmp_path)
    assert recorded_keys("eval_mia.json") <= set(record)
    assert record["identical"] is True and positive(record["ratio"], record["probes"])
    assert positive(record["seconds"]["naive"], record["seconds"]["ours"])
    extra = record["extra_metrics"]
    assert extra["extra"] == ["mia"] and positive(extra["ratio"])
    # mia adds a pass of its own: more prompt rows per probe than the default metrics alone
    assert extra["forwards_with_extra"]["prompt_rows_per_probe"] > extra["forwards_default"]["prompt_rows_per_probe"]


@pytest.mark.slow
def test_qa_eval_smoke_counts_both_evaluations(tmp_path):
    record, _ = smoke("bench_qa_eval", tmp_path)
    assert recorded_keys("qa_eval.json") <= set(record)
    assert positive(record["ratio"], record["seconds"]["default"], record["seconds"]["qa"])
    # forget + holdout + retain questions (2 facts each) in the 2 smoke languages
    assert record["langs"] == 2 and record["qa_questions"] == 3 * 2 * 2
    assert all(positive(f["calls"]) for f in record["forwards"].values())


@pytest.mark.slow
@pytest.mark.distributed
def test_eval_zero3_smoke_partitioned_and_full_copies_agree(tmp_path):
    record, _ = smoke("bench_eval_zero3", tmp_path)
    assert recorded_keys("eval_zero3.json") - {"curves"} <= set(record)  # curves: only with --curves
    assert record["identical"] is True
    assert positive(record["eval_speedup"], record["command_speedup"], record["eval_full_s"])


@pytest.mark.slow
@pytest.mark.distributed
def test_memory_smoke_zero3_holds_less_per_rank(tmp_path):
    record, stdout = smoke("bench_memory", tmp_path, out=False)  # the default --out under --smoke: a temp file
    assert not re.findall(r"^wrote (.+)$", stdout, re.M)[-1].startswith(str(RESULTS))
    assert recorded_keys("memory.json") <= set(record)
    assert set(record["ratios"]) == {"float32"} and 0 < record["ratios"]["float32"] < 1
    by_stage = record["per_rank"]["float32"]
    assert positive(by_stage["0"]["bytes"], by_stage["3"]["bytes"])


@pytest.mark.slow
@pytest.mark.distributed
def test_partitioned_load_smoke_partitioned_ranks_hold_half(tmp_path):
    rows, _ = smoke("bench_partitioned_load", tmp_path)
    assert recorded_keys("partitioned_load.json") <= set(rows[0])
    assert {(r["mode"], r["rank"]) for r in rows} == {(m, k) for m in ("never", "always") for k in (0, 1)}
    for r in rows:
        share = r["params_held"] / r["params"]  # a whole copy per rank vs a ZeRO-3 half
        assert (share == 1.0) if r["mode"] == "never" else (0.4 < share < 0.6), r
        assert positive(r["after_engine_mb"]) and r["after_engine_mb"] >= r["before_mb"]


@pytest.mark.slow
def test_faults_smoke_recovers_a_torn_metrics_line(tmp_path):
    table, _ = smoke("faults", tmp_path)
    assert set(table) == {"torn_jsonl"} and len(table["torn_jsonl"]) == 1
    trial = table["torn_jsonl"][0]
    assert trial["recovered"] is True and trial["duplicated"] == 0 and trial["deviation"] == 0.0
    assert positive(trial["seconds"])


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["lora", "full"])
def test_mfu_tiny_reports_throughput(tmp_path, setting):
    cmd = [sys.executable, str(BENCH / "bench_mfu.py"), "--tiny", "--setting", setting, "--steps", "1", "--warmup", "1",
           "--seq", "16", "--batch", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # --tiny prints its record (indented JSON) and writes nothing
    start = max(i for i, line in enumerate(proc.stdout.splitlines()) if line == "{")
    lines = proc.stdout.splitlines()[start:]
    record = json.loads("\n".join(lines[:lines.index("}") + 1]))
    assert record["setting"] == setting and record["seq"] == 16 and record["device"] == "cpu"
    assert positive(record["tokens_per_s"], record["params"])
    # N leaves out the input embedding (the tiny model's: vocabulary 1024 x hidden 128)
    assert record["params_with_embedding"] - record["params"] == 1024 * 128
    assert (record["zero"], record["offload"], record["lora_params"] > 0) == \
        ((2, "none", True) if setting == "lora" else (3, "none", False))  # full: ZeRO-3 without offload


@pytest.mark.slow
@pytest.mark.distributed
def test_rehearse_smoke_measures_every_phase_and_never_holds_full_logits(tmp_path):
    """Llama-3's vocabulary on 2 DeepSpeed ranks: each phase has a measured peak per rank, the planner's
    figure and their ratio, and no rank came near one unbounded [64 x seq x vocab] fp32 logits tensor."""
    record, stdout = smoke("rehearse", tmp_path)
    assert recorded_keys("rehearse.json") <= set(record)
    assert record["model"]["vocab"] == 128_256 and record["model"]["kv_heads"] < record["model"]["heads"]
    assert [r["phase"] for r in record["phases"]] == ["inject", "unlearn en+orig", "export"]
    for r in record["phases"]:
        assert len(r["peak_rss_mb"]) == r["ranks"] and positive(r["planned_mb"], r["seconds"], *r["peak_rss_mb"])
        assert r["ratio"] == pytest.approx(max(r["peak_rss_mb"]) / r["planned_mb"], rel=0.01)
        assert max(r["peak_rss_mb"]) < record["full_logits_mb"], r  # 4 GiB at 128 tokens
        assert f"{r['ratio']:.2f}x" in stdout
