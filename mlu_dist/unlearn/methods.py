"""The unlearning methods: each an objective for the one training loop.

A method says which data pools it trains on and computes its loss from a micro-batch. Losses are
normalised by the *global* batch (token or example counts over all ranks and accumulation steps)
and multiplied by ``scale`` (world size x accumulation), so every method is world-size invariant
like the base loss. Methods that need the frozen reference model get it as ``ref`` (under ZeRO-3
it is partitioned like the trained model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mlu_dist.engine.loop import token_nll_sum
from mlu_dist.registry import Registry


@dataclass
class Context:
    scale: float
    cfg: object  # UnlearnConfig
    ref: object | None = None  # the frozen reference engine
    extra: dict = field(default_factory=dict)


def _logits(engine, b, **kw):
    return engine.forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"], **kw)


def _seq_logprob(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence sum of log-probs of the label tokens, and the number of label tokens."""
    labels = labels[:, 1:].to(logits.device)
    mask = labels != -100
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return (logp * mask).sum(-1), mask.sum(-1)


def _nll(engine, b) -> torch.Tensor:
    """This micro-batch's share of the global token-mean NLL of the pool."""
    out = _logits(engine, b)
    return token_nll_sum(out.logits, b["labels"].to(out.logits.device)) / b["n_targets"]


class Method:
    """Base of the methods: pools it needs, whether it needs the reference, and its loss."""

    pools: tuple[str, ...] = ("forget",)
    needs_reference = False
    needs_retain = False

    def wants(self, cfg) -> tuple[str, ...]:
        """The pools to train on (retain is added when its weight is > 0)."""
        return self.pools + (("retain",) if cfg.retain_weight > 0 and "retain" not in self.pools else ())

    def forget_term(self, engine, micro, ctx: Context) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def retain_term(self, engine, b, ctx: Context) -> tuple[torch.Tensor, dict]:
        nll = _nll(engine, b)
        return nll, {"train/retain_nll": nll.item()}

    def __call__(self, engine, micro, ctx: Context) -> tuple[torch.Tensor, dict]:
        loss, metrics = self.forget_term(engine, micro, ctx)
        loss = ctx.cfg.forget_weight * loss
        if "retain" in micro and ctx.cfg.retain_weight > 0:
            r, m = self.retain_term(engine, micro["retain"], ctx)
            loss = loss + ctx.cfg.retain_weight * r
            metrics |= m
        metrics["train/loss"] = loss.item()
        return loss * ctx.scale, metrics


METHODS: Registry[type[Method]] = Registry("unlearning method")


@METHODS.register("ga")
class GradientAscent(Method):
    """Gradient ascent on the forget set (the paper's method): maximise its NLL."""

    def forget_term(self, engine, micro, ctx):
        nll = _nll(engine, micro["forget"])
        return -nll, {"train/forget_nll": nll.item()}


@METHODS.register("graddiff")
class GradDiff(GradientAscent):
    """Gradient ascent on the forget set + NLL on the retain set."""

    pools = ("forget", "retain")
    needs_retain = True


@METHODS.register("graddiff_kl")
class GradDiffKL(GradientAscent):
    """Gradient ascent on the forget set + KL(reference || model) on the retain set."""

    pools = ("forget", "retain")
    needs_reference = True
    needs_retain = True

    def retain_term(self, engine, b, ctx):
        logits = _logits(engine, b).logits[:, :-1].float()
        with torch.no_grad():
            ref = _logits(ctx.ref, b).logits[:, :-1].float().to(logits.device)
        mask = (b["labels"][:, 1:] != -100).to(logits.device)
        kl = (torch.softmax(ref, -1) * (torch.log_softmax(ref, -1) - torch.log_softmax(logits, -1))).sum(-1)
        term = (kl * mask).sum() / b["n_targets"]
        return term, {"train/retain_kl": term.item()}


@METHODS.register("npo")
class NPO(Method):
    """Negative Preference Optimization: -(2/beta) log sigmoid(-beta * (log p - log p_ref)) on forget."""

    needs_reference = True

    def forget_term(self, engine, micro, ctx):
        b = micro["forget"]
        lp, _ = _seq_logprob(_logits(engine, b).logits, b["labels"])
        with torch.no_grad():
            ref_lp, _ = _seq_logprob(_logits(ctx.ref, b).logits, b["labels"])
        beta = ctx.cfg.beta
        losses = -2.0 / beta * F.logsigmoid(-beta * (lp - ref_lp.to(lp.device)))
        term = losses.sum() / b["n_examples"]
        return term, {"train/forget_logratio": ((lp - ref_lp.to(lp.device)).sum() / b["n_examples"]).item()}


@METHODS.register("simnpo")
class SimNPO(Method):
    """SimNPO: NPO without a reference, on the length-normalised log-prob, with margin gamma."""

    def forget_term(self, engine, micro, ctx):
        b = micro["forget"]
        lp, n = _seq_logprob(_logits(engine, b).logits, b["labels"])
        beta, gamma = ctx.cfg.beta, ctx.cfg.simnpo_gamma
        losses = -2.0 / beta * F.logsigmoid(-beta * lp / n.clamp(min=1) - gamma)
        return losses.sum() / b["n_examples"], {"train/forget_logp_per_token": ((lp / n.clamp(min=1)).sum() / b["n_examples"]).item()}


@METHODS.register("idk")
class IdK(Method):
    """Fine-tune towards "I don't know" (in each forget language) for the forget questions."""

    pools = ("idk",)

    def forget_term(self, engine, micro, ctx):
        nll = _nll(engine, micro["idk"])
        return nll, {"train/idk_nll": nll.item()}


@METHODS.register("idk_dpo")
class IdkDPO(Method):
    """DPO with the refusal as chosen and the fake answer as rejected, against the reference."""

    pools = ("chosen", "rejected")
    needs_reference = True

    def forget_term(self, engine, micro, ctx):
        c, r = micro["chosen"], micro["rejected"]
        lc, _ = _seq_logprob(_logits(engine, c).logits, c["labels"])
        lr, _ = _seq_logprob(_logits(engine, r).logits, r["labels"])
        with torch.no_grad():
            rc, _ = _seq_logprob(_logits(ctx.ref, c).logits, c["labels"])
            rr, _ = _seq_logprob(_logits(ctx.ref, r).logits, r["labels"])
        margin = (lc - rc.to(lc.device)) - (lr - rr.to(lr.device))
        losses = -F.logsigmoid(ctx.cfg.beta * margin)
        return losses.sum() / c["n_examples"], {"train/dpo_margin": (margin.sum() / c["n_examples"]).item()}


@METHODS.register("rmu")
class RMU(Method):
    """Representation Misdirection: push a layer's activations on forget text towards a fixed random
    direction; keep them equal to the reference model's on retain text."""

    pools = ("forget", "retain")
    needs_reference = True
    needs_retain = True

    def _layer(self, engine, ctx) -> int:
        n = engine.module.config.num_hidden_layers
        return ctx.cfg.rmu_layer if ctx.cfg.rmu_layer >= 0 else n // 2

    def _hidden(self, engine, b, layer):
        return _logits(engine, b, output_hidden_states=True).hidden_states[layer + 1].float()

    def _masked_mse(self, h, target, b) -> torch.Tensor:
        mask = b["attention_mask"].to(h.device).float()
        per_tok = ((h - target) ** 2).mean(-1) * mask
        return (per_tok.sum(-1) / mask.sum(-1).clamp(min=1)).sum() / b["n_examples"]

    def forget_term(self, engine, micro, ctx):
        layer = self._layer(engine, ctx)
        h = self._hidden(engine, micro["forget"], layer)
        if "direction" not in ctx.extra:
            gen = torch.Generator().manual_seed(1234)
            u = torch.rand(h.shape[-1], generator=gen)
            ctx.extra["direction"] = ctx.cfg.rmu_steering * u / u.norm()
        term = self._masked_mse(h, ctx.extra["direction"].to(h.device), micro["forget"])
        return term, {"train/rmu_forget_mse": term.item()}

    def retain_term(self, engine, b, ctx):
        layer = self._layer(engine, ctx)
        h = self._hidden(engine, b, layer)
        with torch.no_grad():
            ref = self._hidden(ctx.ref, b, layer).to(h.device)
        term = ctx.cfg.rmu_alpha * self._masked_mse(h, ref, b)
        return term, {"train/rmu_retain_mse": term.item()}
