"""The rest of the method zoo, each method one registered class following its paper: WGA, SatImp,
CE-U, UNDIAL (token-level losses on the forget set), AltPO (preference for alternate answers over
the fake) and PDU (a forget loss under a retain-loss constraint, solved primal-dual).

Token-level terms are sums over the labelled forget tokens divided by the *global* label-token
count (``n_targets``), like GA's NLL, so they are world-size invariant; open-unlearning takes the
mean over a device's micro-batch instead (the same value at one rank and no accumulation). The
tensor maths is in ``mlu_dist/losses.py``; the conventions that differ from open-unlearning are in
docs/methods.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlu_dist.tokens import IGNORE
from mlu_dist.unlearn.methods import METHODS, Context, Method, _forward, dpo_pair


def _forget_logits(engine, micro):
    b = micro["forget"]
    return b, _forward(engine, b).logits


def _positive(name: str, value: float) -> list[str]:
    return [] if value > 0 else [f"{name}: must be > 0, got {value}"]


# --- reweighted gradient ascent --------------------------------------------------------------------
@dataclass
class WGASettings:
    beta: float = 1.0
    """Token weight p^beta (p = the model's probability of the forget token, not differentiated):
    tokens already unlikely stop pushing (beta = 0 is plain GA)."""

    def check(self) -> list[str]:
        return [] if self.beta >= 0 else [f"beta: must be >= 0, got {self.beta}"]


@METHODS.register("wga")
class WGA(Method):
    """Weighted gradient ascent (Wang et al. 2025, "Rethinking LLM unlearning objectives: a gradient
    perspective and go beyond"): GA on each forget token weighted by p^beta."""

    Settings = WGASettings

    def forget(self, engine, micro, ctx):
        from mlu_dist.losses import token_nll, wga_weights

        b, logits = _forget_logits(engine, micro)
        nll, mask = token_nll(logits, b["labels"])
        term = -(wga_weights(nll, self.settings.beta) * nll).sum() / b["n_targets"]
        return term, {"train/forget_nll": (nll.sum() / b["n_targets"]).item()}


@dataclass
class SatImpSettings:
    beta1: float = 5.0
    """Saturation exponent: weight p^beta1 (tokens the model no longer predicts stop pushing)."""
    beta2: float = 1.0
    """Importance exponent: weight (1 - p)^beta2 (tokens the model is certain of push less)."""

    def check(self) -> list[str]:
        return [f"{k}: must be >= 0, got {v}" for k, v in (("beta1", self.beta1), ("beta2", self.beta2)) if v < 0]


@METHODS.register("satimp")
class SatImp(Method):
    """SatImp (Yang et al. 2025, "Exploring criteria of loss reweighting to enhance LLM unlearning"):
    GA on each forget token weighted by p^beta1 (1 - p)^beta2."""

    Settings = SatImpSettings

    def forget(self, engine, micro, ctx):
        from mlu_dist.losses import satimp_weights, token_nll

        b, logits = _forget_logits(engine, micro)
        nll, mask = token_nll(logits, b["labels"])
        term = -(satimp_weights(nll, self.settings.beta1, self.settings.beta2) * nll).sum() / b["n_targets"]
        return term, {"train/forget_nll": (nll.sum() / b["n_targets"]).item()}


# --- target distributions -------------------------------------------------------------------------
@dataclass
class CEUSettings:
    skip_first: int = 1
    """Labelled tokens at the start of each forget sequence left out of the loss (the paper's
    footnote: the first answer token is often a generic one)."""

    def check(self) -> list[str]:
        return [] if self.skip_first >= 0 else [f"skip_first: must be >= 0, got {self.skip_first}"]


@METHODS.register("ceu")
class CEU(Method):
    """CE-U, cross-entropy unlearning (Yang et al. 2025, "CE-U: Cross Entropy Unlearning"): per forget
    token, cross-entropy to the model's own distribution with the label token removed. Bounded
    (unlike GA's unbounded ascent); no reference model."""

    Settings = CEUSettings

    def forget(self, engine, micro, ctx):
        from mlu_dist.losses import ceu, skip_first_labels

        b, logits = _forget_logits(engine, micro)
        mask = skip_first_labels(b["labels"][:, 1:].to(logits.device) != IGNORE, self.settings.skip_first)
        term = (ceu(logits, b["labels"]) * mask).sum() / b["n_targets"]
        return term, {"train/ceu": term.item()}


@dataclass
class UNDIALSettings:
    beta: float = 10.0
    """How much the teacher's logit of each forget token is lowered (the paper's strength, 3-30)."""

    def check(self) -> list[str]:
        return _positive("beta", self.beta)


@METHODS.register("undial")
class UNDIAL(Method):
    """UNDIAL (Dong et al. 2025, "Self-distillation with adjusted logits for robust unlearning"):
    distil, on the forget tokens, the frozen original model's distribution with the forget token's
    logit lowered by beta. Bounded; the teacher is the reference (the injected model)."""

    Settings = UNDIALSettings
    needs_reference = True

    def forget(self, engine, micro, ctx):
        import torch

        from mlu_dist.losses import undial

        b, logits = _forget_logits(engine, micro)
        with torch.no_grad():
            ref = _forward(ctx.ref, b).logits
        term = undial(logits, ref, b["labels"], self.settings.beta).sum() / b["n_targets"]
        return term, {"train/undial": term.item()}


# --- preference for alternates ---------------------------------------------------------------------
@dataclass
class AltPOSettings:
    beta: float = 0.1
    """Inverse temperature: the loss is -(2/beta) log sigmoid(beta * margin), as in the paper's code."""
    alternates: int = 5
    """Alternate answers per forget question (the paper uses 5): other facts' answers of the same
    relation, never the fact's own true or fake answer (mlu_dist/unlearn/data.py::alternate_pairs)."""

    def check(self) -> list[str]:
        return _positive("beta", self.beta) + ([] if self.alternates >= 1
                                                else [f"alternates: must be >= 1, got {self.alternates}"])


@METHODS.register("altpo")
class AltPO(Method):
    """AltPO (Mekala et al. 2025, "Alternate preference optimization for unlearning factual knowledge"):
    DPO with an alternate answer preferred over the fake one, against the reference, for every
    alternate, in every forget language; retain NLL beside it (weight 1 in the paper)."""

    Settings = AltPOSettings
    pools = ("alt_chosen", "alt_rejected")
    needs_reference = True

    def forget(self, engine, micro, ctx):
        c, beta = micro["alt_chosen"], self.settings.beta
        losses, margin = dpo_pair(engine, c, micro["alt_rejected"], ctx, beta)
        term = 2.0 / beta * losses.sum() / c["n_examples"]
        return term, {"train/altpo_margin": (margin.sum() / c["n_examples"]).item()}


# --- constrained: primal-dual ----------------------------------------------------------------------
@dataclass
class PDUSettings:
    eps: float = 1.5
    """The constraint: retain NLL <= eps. Set it a little above the starting model's retain NLL
    (the paper: its choice decides the trade-off)."""
    dual_step: float = 1.0
    """Step of the dual ascent: lambda <- max(0, lambda + dual_step * (retain NLL - eps))."""
    warmup_steps: int = 0
    """Optimizer steps before the dual variable starts moving."""
    primal_dual: bool = True
    """false: a fixed retain weight (unlearn.retain_weight), no dual updates."""

    def check(self) -> list[str]:
        out = [] if self.dual_step >= 0 else [f"dual_step: must be >= 0, got {self.dual_step}"]
        return out + ([] if self.warmup_steps >= 0 else [f"warmup_steps: must be >= 0, got {self.warmup_steps}"])


@METHODS.register("pdu")
class PDU(Method):
    """PDU (Entesari et al. 2025, "Constrained entropic unlearning: a primal-dual framework for LLMs"):
    flatten the next-token logits on the forget tokens, (max - mean)^2, towards uniform, subject to
    retain NLL <= eps; the retain weight is the dual variable lambda, starting at
    unlearn.retain_weight and updated after every step from the step's (global) retain NLL. lambda
    is saved in every checkpoint (a resumed run continues it)."""

    Settings = PDUSettings
    pools = ("forget", "retain")
    needs_retain = True

    def forget(self, engine, micro, ctx):
        from mlu_dist.losses import logit_flatness

        b, logits = _forget_logits(engine, micro)
        term = logit_flatness(logits, b["labels"]).sum() / b["n_targets"]
        return term, {"train/pdu_flatness": term.item(), "train/pdu_lambda": self.retain_weight(ctx) / ctx.scale}

    def retain_weight(self, ctx: Context) -> float:
        return float(ctx.state.get("pdu_lambda", ctx.retain_weight))

    def after_step(self, step: int, record: dict, ctx: Context) -> None:
        s = self.settings
        if not s.primal_dual or step <= s.warmup_steps or "train/retain_nll" not in record:
            return
        lam = self.retain_weight(ctx)
        ctx.state["pdu_lambda"] = max(0.0, lam + s.dual_step * (record["train/retain_nll"] - s.eps))
