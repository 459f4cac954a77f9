"""The base job end to end on one in-process rank (real DeepSpeed, ZeRO-0)."""

import json
import math
import subprocess
import time

import pytest

from conftest import QUICK, clean_env, mlu_cmd
from mlu_dist.config import ConfigError, load_config
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.jobs.base import run_base
from mlu_dist.jobs.inject import run_inject
from mlu_dist.modeling import load_pretrained
from mlu_dist.tracking import read_jsonl


@pytest.mark.slow
def test_base_model_learns_the_world(quick_base):
    cfg, run_dir = quick_base
    history = read_jsonl(run_dir / "metrics.jsonl")
    first, last = history[0]["train/loss"], history[-1]["train/loss"]
    vocab = json.loads((run_dir / "model" / "config.json").read_text())["vocab_size"]
    # A model that learned nothing sits near ln(vocab) (~6.9 nats for 1024 tokens). Template words
    # alone are easy, so we ask for the loss to fall below 40 % of chance: that needs the names too.
    assert first > 0.8 * math.log(vocab)
    assert last < 0.4 * math.log(vocab), (first, last)
    langs = json.loads((run_dir / "languages.json").read_text())
    assert set(langs) == set(cfg.data.langs)
    # Facts seen in English base text are answered better than by chance (true vs fake: 50 %).
    assert langs["en"]["true_pref"] > 0.7


@pytest.mark.slow
def test_run_dir_holds_config_meta_model_and_checkpoint(quick_base):
    cfg, run_dir = quick_base
    for name in ("config.yaml", "meta.json", "metrics.jsonl", "DONE.json", "languages.json",
                 "model/model.safetensors", "model/tokenizer.json", "checkpoints/LATEST"):
        assert (run_dir / name).exists(), name
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["dist"]["world_size"] == 1 and meta["global_batch"] == {"text": cfg.base.micro_batch_size}
    model, tok = load_pretrained(run_dir / "model")
    assert model.config.num_hidden_layers == cfg.model.num_layers


@pytest.mark.slow
def test_second_run_reuses_the_cached_model(quick_base):
    cfg, run_dir = quick_base
    stamp = (run_dir / "DONE.json").stat().st_mtime
    t0 = time.time()
    assert run_base(cfg) == run_dir
    assert time.time() - t0 < 5 and (run_dir / "DONE.json").stat().st_mtime == stamp


@pytest.mark.slow
def test_a_named_run_with_another_config_is_refused(quick_base, tmp_path):
    cfg, base_dir = quick_base
    model = f"inject.from_model={base_dir / 'model'}"
    named = load_config(ExperimentConfig, [QUICK], [f"run.out_dir={tmp_path}", "run.name=mine", model,
                                                    "inject.train.steps=2", "inject.train.eval_every=0"])
    run_dir = run_inject(named)
    other = load_config(ExperimentConfig, [QUICK], [f"run.out_dir={tmp_path}", "run.name=mine", model,
                                                    "inject.train.steps=3"])
    with pytest.raises(ConfigError, match="different config"):
        run_inject(other)
    assert (run_dir / "DONE.json").exists()  # nothing was lost


@pytest.mark.slow
def test_injection_stops_at_its_target_fake_rate(quick_base, tmp_path):
    """inject.target_fake_rate: the injection ends at the first eval step whose injection-language
    fake_rate reaches the target, and says so; an impossible target trains every step."""
    cfg, base_dir = quick_base
    common = [f"run.out_dir={tmp_path}", f"inject.from_model={base_dir / 'model'}", "inject.langs=[de]",
              "inject.train.steps=60", "inject.train.eval_every=5", "inject.knowledge_gate=skip"]
    early = run_inject(load_config(ExperimentConfig, [QUICK], common + ["inject.target_fake_rate=0.5", "run.name=t"]))
    done = json.loads((early / "DONE.json").read_text())
    probes = [r for r in read_jsonl(early / "metrics.jsonl") if "inject/fake_rate" in r]
    assert done["status"] == "target_reached" and done["steps"] < 60, done
    assert probes[-1]["step"] == done["steps"] and probes[-1]["inject/fake_rate"] >= 0.5
    assert all(r["inject/fake_rate"] < 0.5 for r in probes[:-1])
    assert (early / "model" / "model.safetensors").exists()
    with pytest.raises(ConfigError, match="target_fake_rate: needs train.eval_every > 0"):
        load_config(ExperimentConfig, [QUICK], common + ["inject.target_fake_rate=0.5", "inject.train.eval_every=0"])


def test_cli_reports_bad_input_in_one_line_without_traceback(tmp_path):
    proc = subprocess.run(mlu_cmd("base", f"run.out_dir={tmp_path}", "data.langs=[en,klingon]"),
                          capture_output=True, text=True, env=clean_env(), timeout=120)
    assert proc.returncode == 2
    assert "unknown language code(s) klingon" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written
