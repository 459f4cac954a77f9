"""The engine Protocols (mlu_dist.engine.engines): every registered backend implements them, the torch
backend's frozen engine and inference copy behave as the DeepSpeed ones, and a checkpoint is
consolidated by the backend that wrote it. DeepSpeed's side runs with ranks in test_engine.py."""

import subprocess
import sys
import typing

import pytest
import torch

from conftest import ROOT, clean_env
from mlu_dist.engine.dist import DistInfo
from mlu_dist.engine.engines import ENGINES, EngineBackend, FrozenEngine, TrainingEngine, backend, consolidate_checkpoint
from mlu_dist.train_config import TrainConfig

CPU = DistInfo(0, 1, 0, "cpu")


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))


def test_every_registered_backend_implements_the_protocols():
    wanted = [n for n in dir(EngineBackend) if not n.startswith("_")]
    methods = [n for n in dir(TrainingEngine) if not n.startswith("_") and callable(getattr(TrainingEngine, n))]
    for name in ENGINES.names():
        missing = [n for n in wanted if not callable(getattr(backend(name), n, None))]
        assert not missing, f"backend '{name}' lacks {missing}"
        engine_cls = typing.get_type_hints(type(backend(name)).training)["return"]
        assert not [n for n in methods if not hasattr(engine_cls, n)], (name, engine_cls)
        frozen_cls = typing.get_type_hints(type(backend(name)).frozen)["return"]
        assert {"forward", "state_digest", "close"} <= set(dir(frozen_cls)), (name, frozen_cls)


@pytest.mark.trains
def test_torch_backend_trains_saves_and_consolidates_through_the_protocol(tmp_path):
    torch_backend = backend("torch")
    engine = torch_backend.training(_tiny_llama(), TrainConfig(steps=3, lr=1e-2, warmup_steps=0), None, CPU, torch.float32)
    assert isinstance(engine, TrainingEngine)
    ids = torch.randint(1, 40, (2, 8), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(3):
        loss = engine.forward(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] and engine.global_steps == 3
    with engine.inference_copy() as replica:  # the whole module, frozen for the block
        assert not replica.training and not torch.is_grad_enabled()
        copy_logits = replica(input_ids=ids).logits
    assert engine.module.training and torch.is_grad_enabled()  # both come back
    engine.module.eval()
    with torch.no_grad():
        assert torch.equal(copy_logits, engine.forward(input_ids=ids).logits)
    engine.save(tmp_path / "step_000003", {"step": 3})
    state = consolidate_checkpoint(tmp_path / "step_000003")
    live = engine.full_state_dict()
    assert state.keys() == live.keys() and all(torch.equal(state[k], live[k]) for k in live)
    assert not backend("deepspeed").owns_checkpoint(tmp_path / "step_000003")
    assert consolidate_checkpoint(tmp_path) is None  # no backend's files


def test_torch_frozen_engine_is_frozen_and_digests_its_weights():
    from mlu_dist.engine.engines import state_digest

    model = _tiny_llama()
    digest = state_digest(model.state_dict())
    frozen = backend("torch").frozen(model, None, CPU, torch.float32)
    assert isinstance(frozen, FrozenEngine) and frozen.zero_stage == 0
    assert not frozen.module.training and not any(p.requires_grad for p in frozen.module.parameters())
    out = frozen.forward(input_ids=torch.tensor([[1, 2, 3]]))
    assert out.logits.grad_fn is None and frozen.state_digest() == digest


@pytest.mark.slow
def test_the_torch_backend_reference_model_never_imports_deepspeed():
    """NPO/KL on the torch backend build their reference with the backend's frozen engine: no DeepSpeed."""
    code = ("import sys, torch\nfrom mlu_dist.config import load_config\nfrom mlu_dist.experiment import ExperimentConfig\n"
            "from mlu_dist.engine.dist import DistInfo\nfrom mlu_dist.engine.engines import frozen_engine\n"
            "cfg = load_config(ExperimentConfig, [], ['engine.backend=torch'])\n"
            "ref = frozen_engine(torch.nn.Linear(2, 2), cfg.engine, DistInfo(0, 1, 0, 'cpu'), 'unlearn')\n"
            "print(type(ref).__name__, 'deepspeed' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=clean_env(),
                          timeout=120)
    assert proc.stdout.split() == ["TorchFrozenEngine", "False"], proc.stderr[-2000:]
