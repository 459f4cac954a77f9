"""The unlearning methods: each a registered class that composes a forget term and a retain term.

A method names the data pools it trains on, whether it needs the frozen reference model, and its
own typed ``Settings`` (set as ``unlearn.method_args``). Its loss is
``forget_weight * forget_term + retain_weight * retain_term`` (:func:`unlearning_objective`);
terms are plain functions, so methods share them by composition, never by inheritance.

Terms are normalised by the *global* batch (token or example counts over all ranks and
accumulation steps) and the objective multiplies by ``scale`` (world size x accumulation), so
every method is world-size invariant like the base loss. The tensor maths lives in
``mlu_dist/losses.py``; it is imported inside the terms because config checks and
``mlu sweep plan`` read this registry and must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlu_dist.registry import Registry


@dataclass
class Context:
    """What a term sees besides the engine and the batch."""

    scale: float
    """World size x accumulation steps (undoes the engine's averaging)."""
    forget_weight: float = 1.0
    retain_weight: float = 0.0
    ref: Any = None
    """The frozen reference engine (under ZeRO-3 partitioned like the trained model)."""
    seed: int = 0
    """The run's seed (``unlearn.train.seed``): a method's random draws derive from it, so a resumed
    run draws the same (RMU's steering direction)."""
    state: dict = field(default_factory=dict)
    """Per-run state a method carries between steps (plain numbers: PDU's dual variable). It is saved
    in every checkpoint and given back on resume."""
    cache: dict = field(default_factory=dict)
    """What a method may recompute at will (RMU's direction, a pure function of ``seed``); never saved."""


@dataclass
class NoSettings:
    """This method has no settings of its own."""


def _forward(engine, b, **kw):
    return engine.forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"], **kw)


def pool_nll(engine, b):
    """This micro-batch's share of the pool's global token-mean NLL."""
    from mlu_dist.losses import token_nll_sum

    out = _forward(engine, b)
    return token_nll_sum(out.logits, b["labels"].to(out.logits.device)) / b["n_targets"]


def dpo_pair(engine, chosen, rejected, ctx, beta: float):
    """Per-example DPO losses and margins of ``chosen`` over ``rejected`` against the frozen reference."""
    import torch

    from mlu_dist.losses import dpo

    lc, _ = _seq_logprob(engine, chosen)
    lr, _ = _seq_logprob(engine, rejected)
    with torch.no_grad():
        rc, _ = _seq_logprob(ctx.ref, chosen)
        rr, _ = _seq_logprob(ctx.ref, rejected)
    return dpo(lc, lr, rc.to(lc.device), rr.to(lr.device), beta)


def _seq_logprob(engine, b):
    from mlu_dist.losses import seq_logprob

    return seq_logprob(_forward(engine, b).logits, b["labels"])


# --- shared terms ------------------------------------------------------------------------------
def ga_forget(engine, micro, ctx: Context):
    """Gradient ascent: the negated NLL of the forget data."""
    nll = pool_nll(engine, micro["forget"])
    return -nll, {"train/forget_nll": nll.item()}


def nll_retain(engine, b, ctx: Context):
    """Plain NLL of the retain data."""
    nll = pool_nll(engine, b)
    return nll, {"train/retain_nll": nll.item()}


def kl_retain(engine, b, ctx: Context):
    """KL(reference || model) per retain token."""
    import torch

    from mlu_dist.losses import token_kl

    logits = _forward(engine, b).logits[:, :-1]
    with torch.no_grad():
        ref = _forward(ctx.ref, b).logits[:, :-1].to(logits.device)
    mask = (b["labels"][:, 1:] != -100).to(logits.device)
    term = (token_kl(ref, logits) * mask).sum() / b["n_targets"]
    return term, {"train/retain_kl": term.item()}


# --- the registry --------------------------------------------------------------------------------
class Method:
    """What every registered method provides: its settings, pools and two terms. The default
    retain term is the plain NLL (used whenever ``unlearn.retain_weight > 0``).

    ``pools`` names the data it trains on from the pool registry (``mlu_dist/unlearn/data.py``:
    forget, retain, idk, chosen/rejected, alt_chosen/alt_rejected); the job builds those and no
    others, so a new method that needs a new kind of data registers that pool beside itself."""

    Settings: type = NoSettings
    pools: tuple[str, ...] = ("forget",)
    needs_reference: bool = False
    needs_retain: bool = False
    teacher_args = None
    """A method that distils another unlearning run (lingtea) sets this to a function (the teacher's
    run directory, the teacher's language) -> the method_args naming them; a sweep's planner fills
    them in from its ``teacher`` cell. None: the method has no teacher."""

    def __init__(self, settings=None):
        self.settings = settings if settings is not None else self.Settings()

    def check_model(self, model_config: dict) -> list[str]:
        """Problems with this method's settings for the model (its ``config.json`` as a dict)."""
        return []

    def reference_dir(self, from_run):
        """The frozen reference model (when ``needs_reference``): the injected model it starts from."""
        return from_run / "model"

    def forget(self, engine, micro, ctx: Context):
        raise NotImplementedError(f"{type(self).__name__} defines no forget term")

    def retain(self, engine, b, ctx: Context):
        return nll_retain(engine, b, ctx)

    def retain_weight(self, ctx: Context) -> float:
        """The retain term's weight this step (``unlearn.retain_weight``; PDU's dual variable)."""
        return ctx.retain_weight

    def after_step(self, step: int, record: dict, ctx: Context) -> None:
        """Called on every rank after each optimizer step with the step's metrics, summed over
        micro-batches and ranks (the same on every rank): a method updates ``ctx.state`` here."""


METHODS: Registry[type[Method]] = Registry("unlearning method")


def wanted_pools(method: Method, retain_weight: float) -> tuple[str, ...]:
    """The pools a run trains on: the method's, plus retain data when its weight is > 0."""
    extra = ("retain",) if retain_weight > 0 and "retain" not in method.pools else ()
    return method.pools + extra


class unlearning_objective:
    """The loop's objective: ``forget_weight * forget + w * retain``, times ``scale``; ``w`` is the
    method's retain weight (``unlearn.retain_weight``, or PDU's dual variable). The retain term is
    computed whenever retain data is in the batch, even at ``w = 0`` (PDU's constraint needs it)."""

    def __init__(self, method: Method, ctx: Context):
        self.method, self.ctx = method, ctx

    def __call__(self, engine, micro):
        method, ctx = self.method, self.ctx
        loss, metrics = method.forget(engine, micro, ctx)
        loss = ctx.forget_weight * loss
        if "retain" in micro:
            term, more = method.retain(engine, micro["retain"], ctx)
            loss = loss + method.retain_weight(ctx) * term
            metrics |= more
        metrics["train/loss"] = loss.item()
        return loss * ctx.scale, metrics

    def after_step(self, step: int, record: dict) -> None:
        self.method.after_step(step, record, self.ctx)


@METHODS.register("ga")
class GradientAscent(Method):
    """Gradient ascent on the forget set (the paper's method): maximise its NLL."""

    def forget(self, engine, micro, ctx):
        return ga_forget(engine, micro, ctx)


@METHODS.register("graddiff")
class GradDiff(Method):
    """Gradient ascent on the forget set + NLL on the retain set."""

    pools = ("forget", "retain")
    needs_retain = True

    def forget(self, engine, micro, ctx):
        return ga_forget(engine, micro, ctx)


@METHODS.register("graddiff_kl")
class GradDiffKL(Method):
    """Gradient ascent on the forget set + KL(reference || model) on the retain set."""

    pools = ("forget", "retain")
    needs_reference = True
    needs_retain = True

    def forget(self, engine, micro, ctx):
        return ga_forget(engine, micro, ctx)

    def retain(self, engine, b, ctx):
        return kl_retain(engine, b, ctx)


@dataclass
class NPOSettings:
    beta: float = 0.1
    """Inverse temperature: the loss is -(2/beta) log sigmoid(-beta * log-ratio to the reference)."""

    def check(self) -> list[str]:
        return [] if self.beta > 0 else [f"beta: must be > 0, got {self.beta}"]


@METHODS.register("npo")
class NPO(Method):
    """Negative Preference Optimization: -(2/beta) log sigmoid(-beta * (log p - log p_ref)) on forget."""

    Settings = NPOSettings
    needs_reference = True

    def forget(self, engine, micro, ctx):
        import torch

        from mlu_dist.losses import npo

        b = micro["forget"]
        lp, _ = _seq_logprob(engine, b)
        with torch.no_grad():
            ref_lp, _ = _seq_logprob(ctx.ref, b)
        ref_lp = ref_lp.to(lp.device)
        term = npo(lp, ref_lp, self.settings.beta).sum() / b["n_examples"]
        return term, {"train/forget_logratio": ((lp - ref_lp).sum() / b["n_examples"]).item()}


@dataclass
class SimNPOSettings:
    beta: float = 2.5
    """Inverse temperature on the length-normalised log-prob."""
    gamma: float = 0.0
    """Reward margin."""

    def check(self) -> list[str]:
        return [] if self.beta > 0 else [f"beta: must be > 0, got {self.beta}"]


@METHODS.register("simnpo")
class SimNPO(Method):
    """SimNPO: NPO without a reference, on the length-normalised log-prob, with margin gamma."""

    Settings = SimNPOSettings

    def forget(self, engine, micro, ctx):
        from mlu_dist.losses import simnpo

        b = micro["forget"]
        lp, n = _seq_logprob(engine, b)
        term = simnpo(lp, n, self.settings.beta, self.settings.gamma).sum() / b["n_examples"]
        return term, {"train/forget_logp_per_token": ((lp / n.clamp(min=1)).sum() / b["n_examples"]).item()}


@METHODS.register("idk")
class IdK(Method):
    """Fine-tune towards "I don't know" (in each forget language) for the forget questions."""

    pools = ("idk",)

    def forget(self, engine, micro, ctx):
        nll = pool_nll(engine, micro["idk"])
        return nll, {"train/idk_nll": nll.item()}


@dataclass
class DPOSettings:
    beta: float = 0.1
    """Inverse temperature of the DPO margin."""

    def check(self) -> list[str]:
        return [] if self.beta > 0 else [f"beta: must be > 0, got {self.beta}"]


@METHODS.register("idk_dpo")
class IdkDPO(Method):
    """DPO with the refusal as chosen and the fake answer as rejected, against the reference."""

    Settings = DPOSettings
    pools = ("chosen", "rejected")
    needs_reference = True

    def forget(self, engine, micro, ctx):
        c = micro["chosen"]
        losses, margin = dpo_pair(engine, c, micro["rejected"], ctx, self.settings.beta)
        return losses.sum() / c["n_examples"], {"train/dpo_margin": (margin.sum() / c["n_examples"]).item()}


def method_settings(name: str, args: dict) -> tuple[Any, list[str]]:
    """The typed settings of method ``name`` from ``unlearn.method_args`` (its defaults where a key is
    not given), and the problems found: an unknown key (with a suggestion and the valid keys), a
    wrong type, or a value its ``check()`` refuses."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from mlu_dist.config import explain_error, problems

    cls = METHODS[name].Settings
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), dict(args)))
    except OmegaConfBaseException as exc:
        return None, [str(explain_error(cls, exc, f"settings of method '{name}'"))]
    return obj, problems(obj)
