"""Issue 24: under LoRA the NPO/KL reference is the trained model with its adapters disabled (no
second copy of the weights) and gives what a separate frozen copy of the base gives."""

from __future__ import annotations

import copy

import pytest
import torch

from mlu_dist.engine.adapter_reference import AdapterReference
from mlu_dist.engine.engines import state_digest


def _base_and_lora():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    base = LlamaForCausalLM(cfg).eval()
    lora = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1,
                                                          target_modules=["q_proj", "k_proj", "v_proj"]))
    for name, p in lora.named_parameters():
        if "lora_B" in name:  # as after some training: the adapters change the output
            p.data.normal_(0, 0.1)
    return base, lora


def test_the_adapter_disabled_reference_is_the_base_model_bit_for_bit():
    base, lora = _base_and_lora()
    lora.train()  # as during training: LoRA dropout on
    ref = AdapterReference(lora)
    batch = {"input_ids": torch.randint(0, 300, (3, 11)), "attention_mask": torch.ones(3, 11, dtype=torch.long)}
    with torch.no_grad():
        expected = base(**batch).logits
        adapted = lora.eval()(**batch).logits
    lora.train()
    got = ref.forward(**batch).logits
    assert torch.equal(got, expected) and not torch.equal(adapted, expected)
    assert lora.training and not got.requires_grad  # training mode restored; no graph kept
    assert ref.state_digest() == state_digest(base.state_dict())  # the digest a separate copy gives
    held = {p.data_ptr() for p in lora.parameters()}
    assert {t.data_ptr() for t in ref.base_state().values()} <= held  # no weights of its own


@pytest.mark.slow
def test_npo_under_lora_runs_against_the_adapter_disabled_base(injected, tmp_path):
    """A real one-rank NPO run with LoRA: the reference is the injected model (digest bit for bit),
    held by no second engine."""
    import json

    from conftest import QUICK  # noqa: F401  (the fixtures' config)
    from mlu_dist.config import load_config
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.jobs.unlearn import run_unlearn
    from mlu_dist.modeling import load_pretrained

    _, inject_run = injected
    cfg = load_config(ExperimentConfig, [inject_run / "config.yaml", "methods/npo"],
                      [f"unlearn.from_run={inject_run}", f"run.out_dir={tmp_path}", "unlearn.forget_langs=orig",
                       "unlearn.train.eval_every=0", "eval.metrics=[fake_pref]", "unlearn.train.steps=4",
                       "unlearn.train.lr=1e-3", "unlearn.train.lora.enabled=true",
                       "unlearn.train.lora.targets=[q_proj,v_proj]", "run.name=npo-lora"])
    run = run_unlearn(cfg)
    done = json.loads((run / "DONE.json").read_text())
    injected_digest = state_digest(load_pretrained(inject_run / "model")[0].state_dict())
    assert done["reference_digest"] == injected_digest
    assert state_digest(load_pretrained(run / "model")[0].state_dict()) != injected_digest


def test_a_pretrained_run_is_seeded_so_its_lora_adapters_repeat(tmp_path):
    """A job that starts from a pretrained model seeds torch from its train seed before loading, so
    LoRA's initial adapters (and the dropout masks after them) are the same in a rerun, whatever
    ran before in the process, and differ for another seed."""
    from mlu_dist.config import load_config
    from mlu_dist.engine.dist import DistInfo
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.jobs.model import apply_lora, pretrained

    from mlu_dist.modeling import train_tokenizer

    base, _ = _base_and_lora()
    base.save_pretrained(tmp_path / "model")
    train_tokenizer(["the river runs past the town", "der Fluss fließt"] * 20, 300).save_pretrained(tmp_path / "model")

    def lora_a(seed):
        cfg = load_config(ExperimentConfig, [], [f"inject.train.seed={seed}", "inject.train.lora.enabled=true",
                                                 "inject.train.lora.r=4", "inject.train.lora.targets=[q_proj]"])
        torch.rand(7)  # whatever ran before in this process
        model, _ = pretrained(tmp_path / "model", cfg, "inject", DistInfo(0, 1, 0, "cpu"))
        model = apply_lora(model, cfg.inject.train, "inject")
        return torch.cat([p.detach().flatten() for n, p in model.named_parameters() if "lora_A" in n])

    first = lora_a(3)
    assert torch.equal(first, lora_a(3)) and not torch.equal(first, lora_a(4))
