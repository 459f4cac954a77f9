"""GPU checks, ready to run where a GPU exists (skipped here: this machine has none).

A randomly initialised ~1 B-parameter Llama-architecture model (built from a config, saved with
a tokenizer trained in-process) stands in for a pretrained one: bf16 injection under ZeRO-3 and
under ZeRO-2 + LoRA, evaluation, and NPO unlearning with its reference, each on one GPU, through
the same `mlu` commands a lab runs.

    pytest -m gpu tests/test_gpu.py
"""

import json
import subprocess

import pytest
import torch

from conftest import QUICK, clean_env, mlu_cmd

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """~1 B parameters: hidden 2048, 22 layers, 16 heads (4 KV), MLP 5632; the mini-world's tokenizer."""
    from mlu_dist.data import DataConfig, load_data
    from mlu_dist.modeling import ModelConfig, build_tiny_model, save_pretrained, train_tokenizer

    _, corpus = load_data(DataConfig())
    tok = train_tokenizer([r["text"] for r in corpus], 3072)
    cfg = ModelConfig(vocab_size=3072, hidden_size=2048, intermediate_size=5632, num_layers=22, num_heads=16,
                      max_seq_len=128)
    model = build_tiny_model(cfg, tok).to(torch.bfloat16)
    assert 0.9e9 < sum(p.numel() for p in model.parameters()) < 1.3e9
    return save_pretrained(model, tok, tmp_path_factory.mktemp("pre") / "llama-1b")


def _mlu(*args, timeout=1800):
    proc = subprocess.run(mlu_cmd(*args), capture_output=True, text=True, env=clean_env(), timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


@pytest.mark.parametrize("engine", [["-c", "deepspeed/zero3"],
                                    ["-c", "deepspeed/zero2", "inject.train.lora.enabled=true",
                                     "inject.train.lora.r=64", "inject.train.lora.alpha=16"]],
                         ids=["zero3", "zero2-lora"])
def test_bf16_inject_eval_and_unlearn_on_one_gpu(pretrained, tmp_path, engine):
    common = ["-c", str(QUICK), f"run.out_dir={tmp_path}", "model.dtype=bfloat16", f"inject.from_model={pretrained}",
              "tracking.wandb=false"]
    _mlu("inject", *common, *engine, "run.name=inj", "inject.train.steps=6", "inject.train.micro_batch_size=8")
    run = tmp_path / "inject" / "inj"
    assert json.loads((run / "DONE.json").read_text())["status"] == "finished"
    from safetensors import safe_open

    with safe_open(str(run / "model" / "model.safetensors"), framework="pt") as fh:
        assert fh.get_tensor(next(iter(fh.keys()))).dtype == torch.bfloat16
    out = _mlu("eval", str(run), *engine[:2], "eval.metrics=[fake_rate,fake_pref]")
    assert "model copy: full" in out or "ZeRO-2" in out
    summary = json.loads((run / "eval" / "SUMMARY.json").read_text())
    assert set(summary["metrics"]["fake_rate"]["lang"]) >= {"en", "de"}
    _mlu("unlearn", "--from", str(run), *engine[:2], "-c", "methods/npo", "forget_langs=en+orig",
         "unlearn.train.steps=4", "unlearn.train.eval_every=2", "unlearn.train.micro_batch_size=8", "run.name=npo")
    done = json.loads((tmp_path / "unlearn" / "inj" / "npo" / "DONE.json").read_text())
    assert done["steps"] >= 2
