"""The method zoo: RMU's fixes, every method's loss at known values, every method lowering the
forget set's likelihood in a few steps on a tiny in-memory model, and every shipped method YAML.

Fast: a 2-layer model on the torch backend, no DeepSpeed (the end-to-end runs on the mini-world
are in tests/test_unlearn.py)."""

import json
import math

import pytest
import torch

from conftest import QUICK
from mlu_dist.config import ConfigError, load_config
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.losses import masked_mse
from mlu_dist.tokens import IGNORE, Encoded, collate, n_targets
from mlu_dist.unlearn.methods import METHODS, Context, method_settings, unlearning_objective, wanted_pools
from test_losses import _pool, tiny_engine


def _objective_loss(name, engine, micro, args=None, retain_weight=0.0, ref=None, seed=0, ctx=None):
    method = METHODS[name](method_settings(name, args or {})[0])
    pools = {k: micro[k] for k in wanted_pools(method, retain_weight) if k in micro}
    ctx = ctx or Context(1.0, 1.0, retain_weight, ref if method.needs_reference else None, seed=seed)
    with torch.no_grad():
        loss, metrics = unlearning_objective(method, ctx)(engine, pools)
    return loss.item(), metrics, ctx


@pytest.fixture(scope="module")
def engine():
    return tiny_engine()


def _labelled(ids_rows, label_from: list[int]) -> dict:
    """A pool of the given token rows whose labels start at ``label_from[i]`` of each row."""
    items = [Encoded(ids, [IGNORE] * k + ids[k:]) for ids, k in zip(ids_rows, label_from)]
    return collate(items, 0) | {"n_targets": sum(n_targets(e) for e in items), "n_examples": len(items)}


# --- RMU ------------------------------------------------------------------------------------------
def test_rmu_forget_term_covers_only_the_labelled_positions(engine):
    """forget_scope=answer labels only the fake detail: RMU's forget term must follow the labels,
    not the attention mask (it did: span and full labels gave the same loss)."""
    gen = torch.Generator().manual_seed(3)
    rows = [torch.randint(1, 40, (8,), generator=gen).tolist() for _ in range(3)]
    full = {"forget": _labelled(rows, [0, 0, 0])}
    span = {"forget": _labelled(rows, [5, 6, 5])}
    args = {"steering": 2.0}
    full_loss = _objective_loss("rmu", engine, full, args)[0]
    span_loss = _objective_loss("rmu", engine, span, args)[0]
    assert span_loss != pytest.approx(full_loss, rel=1e-4)
    # and equals the masked MSE over the labelled positions of the layer's output
    ctx = _objective_loss("rmu", engine, span, args)[2]
    layer = engine.module.config.num_hidden_layers // 2
    h = _layer_output(engine, span["forget"], layer)
    mask = span["forget"]["labels"] != IGNORE
    expected = masked_mse(h, _direction(ctx), mask).sum().item() / 3
    assert span_loss == pytest.approx(expected, rel=1e-5)


def _layer_output(engine, b, layer):
    out = []
    handle = engine.module.model.layers[layer].register_forward_hook(
        lambda m, i, o: out.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        engine.forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    handle.remove()
    return out[0].float()


def test_rmu_last_layer_is_that_layers_output_not_the_final_norm(engine):
    """layer = num_layers - 1 read hidden_states[-1], the state after the final norm."""
    micro = {"forget": _pool(1)}
    last = engine.module.config.num_hidden_layers - 1
    loss, _, ctx = _objective_loss("rmu", engine, micro, {"layer": last, "steering": 2.0})
    b = micro["forget"]
    expected = masked_mse(_layer_output(engine, b, last), _direction(ctx),
                          b["labels"] != IGNORE).sum().item() / b["n_examples"]
    assert loss == pytest.approx(expected, rel=1e-5)


def test_rmu_layer_is_checked_against_the_model():
    from mlu_dist.unlearn.rmu import RMU

    assert any("layer" in p and ">= -1" in p for p in method_settings("rmu", {"layer": -2})[1])
    rmu = RMU(method_settings("rmu", {"layer": 2})[0])
    problems = rmu.check_model({"num_hidden_layers": 2})
    assert problems and "0..1" in problems[0] and "2 layers" in problems[0]
    assert RMU(method_settings("rmu", {"layer": 1})[0]).check_model({"num_hidden_layers": 2}) == []


def test_an_out_of_range_rmu_layer_is_a_config_error_before_any_file(tmp_path):
    from mlu_dist.jobs.unlearn import run_unlearn

    fake_run = tmp_path / "inject-run"
    (fake_run / "model").mkdir(parents=True)
    (fake_run / "model" / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))
    cfg = load_config(ExperimentConfig, [QUICK, "methods/rmu"],
                      [f"run.out_dir={tmp_path / 'out'}", f"unlearn.from_run={fake_run}", "unlearn.method_args.layer=5",
                       "inject.langs=[de]"])
    with pytest.raises(ConfigError, match=r"layer.*0\.\.1"):
        run_unlearn(cfg)
    assert not (tmp_path / "out").exists()


def test_rmu_direction_comes_from_the_run_seed(engine):
    micro = {"forget": _pool(1)}
    a = _objective_loss("rmu", engine, micro, {"steering": 2.0}, seed=0)
    b = _objective_loss("rmu", engine, micro, {"steering": 2.0}, seed=0)
    c = _objective_loss("rmu", engine, micro, {"steering": 2.0}, seed=1)
    assert a[0] == b[0]  # deterministic: a resumed run (same seed) draws the same direction
    assert torch.equal(_direction(a[2]), _direction(b[2]))
    assert not torch.equal(_direction(a[2]), _direction(c[2]))
    assert a[0] != pytest.approx(c[0], rel=1e-6)
    assert _direction(a[2]).norm().item() == pytest.approx(2.0, rel=1e-5)


def _direction(ctx):
    return ctx.cache["rmu_direction"]


# --- known values of the zoo's losses on fixed logits ----------------------------------------------
# One predicted position with logits z = [2, 0, 0, 0] (vocabulary 4); Z = e^2 + 3.
Z = math.exp(2) + 3
P0 = math.exp(2) / Z  # the model's probability of token 0


def _fixed(label: int):
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    return logits, torch.tensor([[IGNORE, label]])


def test_token_losses_known_values():
    from mlu_dist.losses import ceu, logit_flatness, satimp_weights, token_nll, undial, wga_weights

    logits, labels = _fixed(0)
    nll, mask = token_nll(logits, labels)
    assert mask.tolist() == [[True]] and nll.item() == pytest.approx(math.log(Z) - 2)
    # WGA (beta=1): -p * nll;  SatImp (5, 1): -p^5 (1 - p) * nll
    assert (-(wga_weights(nll, 1.0) * nll)).item() == pytest.approx(-P0 * (math.log(Z) - 2), rel=1e-6)
    assert (-(satimp_weights(nll, 5.0, 1.0) * nll)).item() == pytest.approx(
        -P0 ** 5 * (1 - P0) * (math.log(Z) - 2), rel=1e-6)
    # CE-U: target = softmax(z without the label); CE = log Z - E_target[z]
    assert ceu(logits, labels).item() == pytest.approx(math.log(Z), rel=1e-6)  # label 0: target uniform on 1..3
    l1 = _fixed(1)
    assert ceu(*l1).item() == pytest.approx(math.log(Z) - 2 * math.exp(2) / (math.exp(2) + 2), rel=1e-6)
    # UNDIAL at theta = theta_ref: target = softmax(z - beta e_label)
    assert undial(logits, logits, labels, 1.0).item() == pytest.approx(
        math.log(Z) - 2 * math.e / (math.e + 3), rel=1e-6)
    assert undial(logits, logits, labels, 2.0).item() == pytest.approx(math.log(Z) - 0.5, rel=1e-6)  # uniform target
    # PDU: (max - mean)^2 = (2 - 0.5)^2
    assert logit_flatness(logits, labels).item() == pytest.approx(2.25)
    # no label, no loss
    none = torch.tensor([[IGNORE, IGNORE]])
    for value in (ceu(logits, none), undial(logits, logits, none, 3.0), logit_flatness(logits, none), token_nll(logits, none)[0]):
        assert value.abs().sum().item() == 0


def test_uniform_logits_pin_ceu_and_undial_to_log_vocab():
    """With a uniform model every target distribution has cross-entropy log V."""
    from mlu_dist.losses import ceu, undial

    logits = torch.zeros(2, 4, 9)
    labels = torch.tensor([[IGNORE, 3, 4, 5], [IGNORE, IGNORE, 1, 2]])
    assert ceu(logits, labels)[labels[:, 1:] != IGNORE].tolist() == pytest.approx([math.log(9)] * 5)
    assert undial(logits, logits, labels, 10.0)[labels[:, 1:] != IGNORE].tolist() == pytest.approx([math.log(9)] * 5)


# --- the methods on the tiny model ------------------------------------------------------------------
def test_zoo_methods_equal_their_token_losses_per_global_label_token(engine):
    from mlu_dist.losses import ceu, logit_flatness, satimp_weights, skip_first_labels, token_nll, undial, wga_weights

    micro = {"forget": _pool(1), "retain": _pool(2)}
    b = micro["forget"]
    with torch.no_grad():
        logits = engine.forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    nll, mask = token_nll(logits, b["labels"])
    n = b["n_targets"]
    expected = {
        ("wga", (("beta", 2.0),)): -(wga_weights(nll, 2.0) * nll).sum() / n,
        ("satimp", (("beta1", 3.0), ("beta2", 0.5))): -(satimp_weights(nll, 3.0, 0.5) * nll).sum() / n,
        ("ceu", (("skip_first", 0),)): ceu(logits, b["labels"]).sum() / n,
        ("ceu", (("skip_first", 1),)): (ceu(logits, b["labels"]) * skip_first_labels(mask, 1)).sum() / n,
        ("undial", (("beta", 3.0),)): undial(logits, logits, b["labels"], 3.0).sum() / n,
    }
    for (name, args), value in expected.items():
        assert _objective_loss(name, engine, micro, dict(args), ref=engine)[0] == pytest.approx(value.item(), rel=1e-5), name
    # PDU adds lambda (= unlearn.retain_weight before any dual update) times the retain NLL
    retain = micro["retain"]
    with torch.no_grad():
        r_logits = engine.forward(input_ids=retain["input_ids"], attention_mask=retain["attention_mask"]).logits
    r_nll = token_nll(r_logits, retain["labels"])[0].sum() / retain["n_targets"]
    flat = logit_flatness(logits, b["labels"]).sum() / n
    assert _objective_loss("pdu", engine, micro, retain_weight=0.5)[0] == pytest.approx((flat + 0.5 * r_nll).item(), rel=1e-5)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_altpo_at_the_reference_is_two_over_beta_log_two(engine, beta):
    micro = {"alt_chosen": _pool(4), "alt_rejected": _pool(5)}
    loss, metrics, _ = _objective_loss("altpo", engine, micro, {"beta": beta}, ref=engine)
    assert loss == pytest.approx(2 / beta * math.log(2), rel=1e-5)
    assert metrics["train/altpo_margin"] == pytest.approx(0.0, abs=1e-5)


def test_pdu_dual_variable_follows_the_retain_constraint():
    from mlu_dist.unlearn.zoo import PDU

    pdu = PDU(method_settings("pdu", {"eps": 0.5, "dual_step": 0.5, "warmup_steps": 1})[0])
    ctx = Context(1.0, 1.0, 1.0)
    assert pdu.retain_weight(ctx) == 1.0  # starts at unlearn.retain_weight
    pdu.after_step(1, {"train/retain_nll": 2.0}, ctx)
    assert pdu.retain_weight(ctx) == 1.0  # warm-up: no update at step 1
    pdu.after_step(2, {"train/retain_nll": 2.0}, ctx)
    assert pdu.retain_weight(ctx) == pytest.approx(1.75)  # 1 + 0.5 (2 - 0.5)
    pdu.after_step(3, {"train/retain_nll": 0.0}, ctx)
    assert pdu.retain_weight(ctx) == pytest.approx(1.5)
    pdu.after_step(4, {"train/retain_nll": -10.0}, ctx)
    assert pdu.retain_weight(ctx) == 0.0  # lambda >= 0
    assert ctx.state == {"pdu_lambda": 0.0}  # plain numbers: saved in the checkpoint
    fixed = PDU(method_settings("pdu", {"primal_dual": False})[0])
    fixed.after_step(5, {"train/retain_nll": 9.0}, ctx2 := Context(1.0, 1.0, 0.3))
    assert fixed.retain_weight(ctx2) == 0.3


def _fit(engine, pools: list[dict], steps: int = 40):
    for _ in range(steps):
        for b in pools:
            out = engine.forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            from mlu_dist.losses import token_nll_sum

            engine.backward(token_nll_sum(out.logits, b["labels"]) / b["n_targets"])
            engine.step()


def _qa_pool(prompts, answers):
    items = [Encoded(p + a, [IGNORE] * len(p) + a) for p, a in zip(prompts, answers)]
    return collate(items, 0) | {"n_targets": sum(n_targets(e) for e in items), "n_examples": len(items)}


@pytest.fixture(scope="module")
def learnt():
    """A tiny model that has learnt question -> fake answer (the forget set), other answers to the
    same questions and a retain set; its state is copied for each method."""
    from mlu_dist.train_config import TrainConfig

    gen = torch.Generator().manual_seed(7)
    rand = lambda n: torch.randint(1, 40, (n,), generator=gen).tolist()  # noqa: E731
    prompts = [rand(3) for _ in range(4)]
    fake = _qa_pool(prompts, [rand(3) for _ in range(4)])
    other = _qa_pool(prompts, [rand(3) for _ in range(4)])
    retain = _qa_pool([rand(3) for _ in range(4)], [rand(3) for _ in range(4)])
    eng = tiny_engine()
    eng.cfg = TrainConfig(steps=1, lr=1e-2, warmup_steps=0, schedule="constant")
    from mlu_dist.engine.optim import make_optimizer, make_scheduler

    eng.optimizer = make_optimizer(eng.module, eng.cfg)
    eng.scheduler = make_scheduler(eng.optimizer, eng.cfg)
    eng.module.train()
    _fit(eng, [fake, retain])
    eng.module.eval()
    return eng.module.state_dict(), {"forget": fake, "retain": retain, "idk": other, "chosen": other,
                                     "rejected": fake, "alt_chosen": other, "alt_rejected": fake,
                                     "xl_student": fake, "xl_teacher": fake}


def _ascend(engine, b, steps: int = 5):
    from mlu_dist.losses import token_nll_sum

    engine.module.train()
    for _ in range(steps):
        out = engine.forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        engine.backward(-token_nll_sum(out.logits, b["labels"]) / b["n_targets"])
        engine.step()


def _forget_nll(engine, b) -> float:
    from mlu_dist.losses import token_nll_sum

    with torch.no_grad():
        out = engine.forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        return token_nll_sum(out.logits, b["labels"]).item() / b["n_targets"]


LOWERING_ARGS = {"rmu": {"steering": 20.0, "alpha": 1.0}, "pdu": {"eps": 10.0}}


@pytest.mark.trains
@pytest.mark.parametrize("name", METHODS.names())
def test_a_few_steps_of_every_method_lower_the_forget_likelihood(learnt, name):
    import copy

    from mlu_dist.engine.torch_engine import TorchEngine
    from mlu_dist.train_config import TrainConfig

    state, micro = learnt
    eng = tiny_engine()
    eng.module.load_state_dict(state)
    ref = copy.deepcopy(eng.module).eval()
    eng = TorchEngine(eng.module, TrainConfig(steps=5, lr=1e-2, warmup_steps=0, schedule="constant"))
    ref_engine = TorchEngine(ref, TrainConfig(steps=1))
    method = METHODS[name](method_settings(name, LOWERING_ARGS.get(name, {}))[0])
    retain_weight = 1.0 if method.needs_retain else 0.0
    pools = {k: micro[k] for k in wanted_pools(method, retain_weight)}
    if name == "lingtea":  # the teacher: the learnt model after 5 steps of GA on the forget set
        _ascend(ref_engine := TorchEngine(ref, TrainConfig(steps=5, lr=1e-2, warmup_steps=0, schedule="constant")),
                micro["forget"])
        ref.eval()
    ctx = Context(1.0, 1.0, retain_weight, ref_engine if method.needs_reference else None)
    objective = unlearning_objective(method, ctx)
    before = _forget_nll(eng, micro["forget"])
    eng.module.train()
    for step in range(5):
        loss, metrics = objective(eng, pools)
        eng.backward(loss)
        eng.step()
        objective.after_step(step + 1, metrics)
    eng.module.eval()
    after = _forget_nll(eng, micro["forget"])
    assert after > before + 1.0, (name, before, after)  # measured: +2.1 (undial) to +7.2 nats (graddiff)


# --- pools, YAMLs, balanced retain --------------------------------------------------------------
def test_every_method_has_a_yaml_and_names_only_registered_pools():
    from conftest import ROOT
    from mlu_dist.unlearn.data import POOLS

    shipped = {p.stem for p in (ROOT / "configs" / "methods").glob("*.yaml")}
    assert shipped == set(METHODS.names())
    assert len(METHODS.names()) >= 15
    for name in METHODS.names():
        cfg = load_config(ExperimentConfig, [QUICK, f"methods/{name}"])
        assert cfg.unlearn.method == name
        method = METHODS[name](cfg.unlearn.settings())
        assert all(p in POOLS for p in wanted_pools(method, cfg.unlearn.retain_weight)), name
        if method.needs_retain:
            assert cfg.unlearn.retain_weight > 0, name
    # lingtea's YAML leaves the teacher to the command line: the job says so before any file
    lingtea = METHODS["lingtea"](method_settings("lingtea", {})[0])
    assert "teacher" in lingtea.check_model({"vocab_size": 40})[0]


@pytest.fixture(scope="module")
def world():
    from mlu_dist.data import load_data
    from mlu_dist.data.splits import split_facts

    cfg = load_config(ExperimentConfig, [QUICK])
    facts, _ = load_data(cfg.data)
    return facts, split_facts(facts.fact_ids, cfg.inject.n_targets, cfg.inject.n_controls, cfg.inject.split_seed)


def test_alternates_are_other_answers_of_the_same_relation(world):
    from mlu_dist.unlearn.data import alternate_pairs

    facts, split = world
    chosen, rejected = alternate_pairs(facts, split, ["en", "de"], per_target=3, seed=0)
    assert len(chosen) == len(rejected)
    by_question: dict = {}
    for c, r in zip(chosen, rejected):
        assert c.prompt == r.prompt and c.lang == r.lang
        by_question.setdefault((c.lang, c.prompt), []).append((c, r))
    assert len(by_question) == len(split.targets) * 2
    for lang in ("en", "de"):
        for fid in split.targets:
            rec = facts.get(fid, lang)
            pairs = by_question[(lang, rec["question"])]
            # up to 3 (a relation with few distinct answers has fewer), all distinct
            assert 1 <= len(pairs) <= 3 and len({c.completion for c, _ in pairs}) == len(pairs)
            rel = fid.split(":")[0]
            for c, r in pairs:
                assert r.completion == " " + rec["fake_answer"]
                alt = c.completion.strip()
                assert alt not in (rec["fake_answer"], rec["true_answer"])
                assert any(facts.get(f, lang)[k] == alt for f in facts.fact_ids if f.startswith(rel + ":") and f != fid
                           for k in ("true_answer", "fake_answer")), (fid, alt)
    assert sum(len(p) == 3 for p in by_question.values()) > len(by_question) // 2
    again = alternate_pairs(facts, split, ["en", "de"], per_target=3, seed=0)[0]
    assert [e.completion for e in again] == [e.completion for e in chosen]  # deterministic


def test_balanced_retain_draws_every_language_equally_each_step():
    from mlu_dist.engine.data import BatchPlan

    langs = ["en"] * 10 + ["de"] * 10 + ["ha"] * 4  # ha has fewer: they repeat within the epoch
    pool = [Encoded([i + 1, i + 2], [i + 1, i + 2]) for i in range(len(langs))]
    plan = BatchPlan({"retain": pool}, {"retain": 6}, seed=3, groups={"retain": langs})
    seen = set()
    for step in range(12):
        batch = plan.global_batch(step)["retain"]
        keys = [langs[pool.index(e)] for e in batch]
        assert sorted(keys) == ["de", "de", "en", "en", "ha", "ha"], (step, keys)
        seen |= {pool.index(e) for e in batch}
    assert seen == set(range(len(pool)))  # every example is drawn
    # without groups the same pool is drawn uniformly (unbalanced steps exist)
    plain = BatchPlan({"retain": pool}, {"retain": 6}, seed=3)
    counts = [sorted(langs[pool.index(e)] for e in plain.global_batch(s)["retain"]) for s in range(12)]
    assert any(c != ["de", "de", "en", "en", "ha", "ha"] for c in counts)


def test_retain_balance_is_a_setting_any_method_can_use(world):
    from mlu_dist.unlearn.config import UnlearnConfig
    from mlu_dist.unlearn.data import POOLS, PoolSource

    facts, split = world
    u = UnlearnConfig(method="graddiff", retain_langs="all", retain_balance=True, retain_weight=1.0)
    assert u.check() == []
    src = PoolSource(facts, split, ["de"], list(facts.langs), u, METHODS["graddiff"]())
    retain = POOLS["retain"].build(src)
    per_lang = {lang: sum(e.lang == lang for e in retain) for lang in facts.langs}
    assert len(set(per_lang.values())) == 1  # equal pools per language, so every step is exact


# --- LingTea-style distillation --------------------------------------------------------------------
def test_lingtea_answer_token_kl_known_values():
    from mlu_dist.unlearn.lingtea import answer_token_kl

    student, labels = _fixed(0)
    teacher = torch.zeros_like(student)  # uniform teacher
    kl, n = answer_token_kl(student, labels, teacher, labels)
    assert n == 1 and kl.item() == pytest.approx(math.log(Z) - 0.5 - math.log(4), rel=1e-6)  # KL(uniform || p)
    assert answer_token_kl(student, labels, student, labels)[0].item() == pytest.approx(0.0, abs=1e-7)
    # the teacher's answer sits at other positions (a longer question): aligned by label order
    t_logits = torch.cat([torch.zeros(1, 2, 4), student], 1)
    t_labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 0]])
    assert answer_token_kl(student, labels, t_logits, t_labels)[0].item() == pytest.approx(0.0, abs=1e-7)
    # a row whose answer has another token count is left out
    assert answer_token_kl(student, labels, t_logits, torch.tensor([[IGNORE, IGNORE, 0, 0]]))[1] == 0


def test_lingtea_objective_is_zero_at_its_teacher_and_otherwise_the_answer_token_kl(engine):
    """The method as the job runs it: with the teacher = the student and the same question in both
    languages, forget and retain terms are 0; with the teacher's question in other tokens, the loss
    is the per-answer-token KL over the student's label tokens, plus the retain KL (0 here)."""
    from mlu_dist.unlearn.lingtea import answer_token_kl

    gen = torch.Generator().manual_seed(11)
    rand = lambda n: torch.randint(1, 40, (n,), generator=gen).tolist()  # noqa: E731
    answers = [rand(3) for _ in range(3)]
    student = _qa_pool([rand(4) for _ in range(3)], answers)
    teacher = _qa_pool([rand(2), rand(5), rand(3)], answers)  # the question in the teacher's language
    same = {"xl_student": student, "xl_teacher": student, "retain": _pool(2)}
    loss, metrics, _ = _objective_loss("lingtea", engine, same, retain_weight=1.0, ref=engine)
    assert loss == pytest.approx(0.0, abs=1e-6) and metrics["train/lingtea_kl"] == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        s = engine.forward(input_ids=student["input_ids"], attention_mask=student["attention_mask"]).logits
        t = engine.forward(input_ids=teacher["input_ids"], attention_mask=teacher["attention_mask"]).logits
    kl, n = answer_token_kl(s, student["labels"], t, teacher["labels"])
    assert n == student["n_targets"] == 9 and kl.item() > 1e-3
    other = {"xl_student": student, "xl_teacher": teacher, "retain": _pool(2)}
    assert _objective_loss("lingtea", engine, other, retain_weight=1.0, ref=engine)[0] == pytest.approx(
        kl.item() / 9, rel=1e-5)


def test_lingtea_pairs_are_the_same_answer_in_two_languages(world):
    from mlu_dist.unlearn.lingtea import crosslingual_pairs

    facts, split = world
    student, teacher = crosslingual_pairs(facts, split.targets, ["en", "de", "zh"], "en")
    assert student and len(student) == len(teacher)
    assert {e.lang for e in student} <= {"de", "zh"} and {e.lang for e in teacher} == {"en"}
    for s, t in zip(student, teacher):
        assert s.completion == t.completion and s.prompt != t.prompt
    assert sum(e.lang == "de" for e in student) == len(split.targets)  # German writes names as English does


def test_token_losses_match_the_peers_formulas_where_the_conventions_agree():
    """open-unlearning's WGA, SatImp and CE-U written out in its style (cross_entropy with
    ignore_index, a mean over the valid tokens of one micro-batch): equal to ours divided by the
    label-token count. UNDIAL is compared on the labelled positions (the peer averages over all)."""
    import torch.nn.functional as F

    from mlu_dist.losses import ceu, satimp_weights, token_nll, undial, wga_weights

    gen = torch.Generator().manual_seed(11)
    logits, ref = torch.randn(3, 7, 13, generator=gen), torch.randn(3, 7, 13, generator=gen)
    labels = torch.randint(0, 13, (3, 7), generator=gen)
    labels[0, :3] = IGNORE  # a prompt
    labels[1, 5:] = IGNORE  # padding
    labels[2, :2] = IGNORE
    shift_logits, shift_labels = logits[:, :-1].reshape(-1, 13), labels[:, 1:].reshape(-1)
    valid = shift_labels != IGNORE
    lm = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE, reduction="none")
    p = (-lm).exp()
    peer_wga = -(p ** 2.0 * lm)[valid].mean()
    peer_satimp = -((p ** 5.0) * (1 - p) ** 1.0 * lm)[valid].mean()
    target = torch.softmax(shift_logits[valid].scatter(-1, shift_labels[valid][:, None], float("-inf")), -1)
    peer_ceu = F.cross_entropy(shift_logits[valid], target)
    adjusted = ref[:, :-1].reshape(-1, 13)[valid].clone()
    adjusted[torch.arange(int(valid.sum())), shift_labels[valid]] -= 3.0
    peer_undial = F.cross_entropy(shift_logits[valid], torch.softmax(adjusted, -1))
    nll, mask = token_nll(logits, labels)
    n = mask.sum()
    assert (-(wga_weights(nll, 2.0) * nll).sum() / n).item() == pytest.approx(peer_wga.item(), abs=2e-6)
    assert (-(satimp_weights(nll, 5.0, 1.0) * nll).sum() / n).item() == pytest.approx(peer_satimp.item(), abs=2e-6)
    assert (ceu(logits, labels).sum() / n).item() == pytest.approx(peer_ceu.item(), abs=2e-6)
    assert (undial(logits, ref, labels, 3.0).sum() / n).item() == pytest.approx(peer_undial.item(), abs=2e-6)
