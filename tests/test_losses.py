"""Every loss and every unlearning method against values known in closed form.

At theta = theta_ref (the trained model equals the frozen reference) NPO's loss is (2/beta) log 2,
DPO's is log 2 and a KL term is 0; gradient ascent is exactly minus the NLL. A method that silently
turned into plain GA (or lost its reference) fails here. Fast: a 2-layer model, no DeepSpeed.
"""

import math

import pytest
import torch

from mlu_dist.engine.torch_engine import TorchEngine
from mlu_dist.losses import dpo, masked_mse, npo, seq_logprob, simnpo, token_kl, token_nll_sum
from mlu_dist.tokens import IGNORE, Encoded, collate, n_targets
from mlu_dist.train_config import TrainConfig
from mlu_dist.unlearn.config import UnlearnConfig
from mlu_dist.unlearn.methods import METHODS, Context, method_settings, unlearning_objective, wanted_pools


# --- the pure losses -------------------------------------------------------------------------------
def test_token_nll_of_uniform_logits_is_log_vocab_per_label_token():
    vocab = 7
    logits = torch.zeros(2, 5, vocab)
    labels = torch.tensor([[IGNORE, 1, 2, 3, IGNORE], [IGNORE, IGNORE, 4, 5, 6]])
    # shifted: positions 1..4 are predicted; 3 + 3 label tokens
    assert token_nll_sum(logits, labels).item() == pytest.approx(6 * math.log(vocab))
    lp, n = seq_logprob(logits, labels)
    assert n.tolist() == [3, 3] and lp.tolist() == pytest.approx([-3 * math.log(vocab)] * 2)


def test_npo_and_dpo_at_the_reference_and_their_direction():
    lp = torch.tensor([-3.0, -10.0])
    for beta in (0.1, 1.0, 2.5):
        assert npo(lp, lp, beta).tolist() == pytest.approx([2 / beta * math.log(2)] * 2)
    # a lower log-prob than the reference (forgetting) lowers NPO's loss
    assert (npo(lp - 1, lp, 0.1) < npo(lp, lp, 0.1)).all()
    losses, margin = dpo(lp, lp, lp, lp, 0.1)
    assert losses.tolist() == pytest.approx([math.log(2)] * 2) and margin.tolist() == [0.0, 0.0]


def test_simnpo_kl_and_mse_known_values():
    lp, n = torch.tensor([-4.0]), torch.tensor([2])
    expected = -2 / 2.5 * math.log(1 / (1 + math.exp(-(-2.5 * (-4.0 / 2) - 0.5))))
    assert simnpo(lp, n, 2.5, 0.5).item() == pytest.approx(expected)
    logits = torch.randn(2, 3, 11)
    assert token_kl(logits, logits).abs().max().item() < 1e-6
    assert (token_kl(logits, torch.zeros_like(logits)) > 0).all()
    h = torch.ones(1, 3, 4)
    mask = torch.tensor([[1, 1, 0]])
    assert masked_mse(h, torch.zeros(4), mask).item() == pytest.approx(1.0)  # the padded position does not count


# --- the methods on a real (tiny) model ------------------------------------------------------------
def tiny_engine() -> TorchEngine:
    """A randomly initialised 2-layer Llama on the torch backend (the engine interface methods use)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))
    return TorchEngine(model.eval(), TrainConfig(steps=1))


@pytest.fixture(scope="module")
def engine():
    return tiny_engine()


def _pool(seed: int, n: int = 3) -> dict:
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        ids = torch.randint(1, 40, (6 + i,), generator=gen).tolist()
        items.append(Encoded(ids, [IGNORE, IGNORE] + ids[2:]))
    return collate(items, 0) | {"n_targets": sum(n_targets(e) for e in items), "n_examples": n}


@pytest.fixture(scope="module")
def micro():
    return {"forget": _pool(1), "retain": _pool(2), "idk": _pool(3), "chosen": _pool(4), "rejected": _pool(5)}


def _nll(engine, b) -> float:
    with torch.no_grad():
        return token_nll_sum(engine.forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                             b["labels"]).item() / b["n_targets"]


def _loss(name, engine, micro, args=None, forget_weight=1.0, retain_weight=0.0, scale=1.0, ref=None):
    method = METHODS[name](method_settings(name, args or {})[0])
    pools = {k: micro[k] for k in wanted_pools(method, retain_weight)}
    ctx = Context(scale, forget_weight, retain_weight, ref if method.needs_reference else None)
    with torch.no_grad():
        loss, metrics = unlearning_objective(method, ctx)(engine, pools)
    return loss.item(), metrics


def test_ga_is_minus_the_forget_nll_and_graddiff_adds_the_retain_nll(engine, micro):
    f, r = _nll(engine, micro["forget"]), _nll(engine, micro["retain"])
    assert _loss("ga", engine, micro)[0] == pytest.approx(-f, rel=1e-5)
    assert _loss("ga", engine, micro, scale=4.0)[0] == pytest.approx(-4 * f, rel=1e-5)  # world x accumulation
    assert _loss("graddiff", engine, micro, retain_weight=0.5)[0] == pytest.approx(-f + 0.5 * r, rel=1e-5)
    assert _loss("idk", engine, micro)[0] == pytest.approx(_nll(engine, micro["idk"]), rel=1e-5)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_npo_at_the_reference_is_two_over_beta_log_two(engine, micro, beta):
    loss, metrics = _loss("npo", engine, micro, {"beta": beta}, ref=engine)
    assert loss == pytest.approx(2 / beta * math.log(2), rel=1e-5)
    assert metrics["train/forget_logratio"] == pytest.approx(0.0, abs=1e-5)


def test_dpo_at_the_reference_is_log_two(engine, micro):
    loss, metrics = _loss("idk_dpo", engine, micro, {"beta": 0.3}, ref=engine)
    assert loss == pytest.approx(math.log(2), rel=1e-5) and metrics["train/dpo_margin"] == pytest.approx(0, abs=1e-5)


def test_kl_and_rmu_retain_terms_vanish_at_the_reference(engine, micro):
    f = _nll(engine, micro["forget"])
    assert _loss("graddiff_kl", engine, micro, retain_weight=1.0, ref=engine)[0] == pytest.approx(-f, rel=1e-4)
    loss, metrics = _loss("rmu", engine, micro, {"steering": 2.0, "alpha": 10.0}, retain_weight=1.0, ref=engine)
    assert metrics["train/rmu_retain_mse"] == pytest.approx(0.0, abs=1e-6)
    assert loss == pytest.approx(metrics["train/rmu_forget_mse"], rel=1e-5) and loss > 0


def test_simnpo_equals_its_closed_form(engine, micro):
    b = micro["forget"]
    with torch.no_grad():
        lp, n = seq_logprob(engine.forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                            b["labels"])
    expected = (-2 / 2.0 * torch.nn.functional.logsigmoid(-2.0 * lp / n - 0.1)).sum().item() / b["n_examples"]
    assert _loss("simnpo", engine, micro, {"beta": 2.0, "gamma": 0.1})[0] == pytest.approx(expected, rel=1e-5)


def test_method_settings_are_typed_and_checked():
    assert method_settings("npo", {})[0].beta == 0.1
    assert method_settings("rmu", {"alpha": 3})[0].alpha == 3.0
    _, problems = method_settings("npo", {"betta": 0.2})
    assert "betta" in problems[0] and "Did you mean 'beta'" in problems[0]
    assert "must be > 0" in method_settings("npo", {"beta": 0})[1][0]
    assert "beta" in method_settings("ga", {"beta": 0.1})[1][0]  # GA takes no settings
    assert "method_args" in "\n".join(UnlearnConfig(method="simnpo", method_args={"gama": 1}).check())
