"""The one training loop: base training, injection and unlearning differ only in objective and data.

An objective is ``objective(engine, micro_batch) -> (loss, metrics)``: ``micro_batch`` maps pool
names to tensors (see :class:`~mlu_dist.engine.data.BatchPlan`); ``metrics`` are this
micro-batch's contributions to step-level means (they are summed over micro-batches and ranks).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from tqdm.auto import tqdm

from mlu_dist.engine.config import TrainConfig
from mlu_dist.engine.data import BatchPlan
from mlu_dist.engine.dist import DistInfo


class Objective(Protocol):
    def __call__(self, engine, micro_batch: dict) -> tuple[torch.Tensor, dict[str, float]]: ...


def token_nll_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token NLL over label positions (labels == -100 are ignored)."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1), ignore_index=-100,
        reduction="sum",
    )


@dataclass
class NLLObjective:
    """Causal-LM loss over every pool, each pool a token-mean over the whole global batch.

    ``scale`` = world size x accumulation steps undoes the engine's averaging, so the gradient is
    that of the global token-mean whatever the geometry (the basis of world-size invariance).
    """

    scale: float
    weights: dict[str, float] = field(default_factory=dict)

    def __call__(self, engine, micro_batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        total = None
        metrics = {}
        for name, b in micro_batch.items():
            out = engine.forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            part = token_nll_sum(out.logits, b["labels"].to(out.logits.device)) / b["n_targets"]
            metrics[f"train/loss_{name}"] = part.item()
            weighted = part * self.weights.get(name, 1.0)
            total = weighted if total is None else total + weighted
        metrics["train/loss"] = total.item()
        return total * self.scale, metrics


@dataclass
class LoopResult:
    start_step: int
    end_step: int
    history: list[dict]
    interrupted: bool = False
    stop_reason: str = ""
    seconds: float = 0.0


@dataclass
class LoopHooks:
    """Optional callbacks. ``evaluate(step) -> metrics`` runs on every rank (ZeRO-3 needs all);
    ``should_stop(step, metrics) -> reason`` ends the run early when it returns a non-empty string."""

    evaluate: Callable[[int], dict] | None = None
    should_stop: Callable[[int, dict], str] | None = None
    checkpoint_state: Callable[[], dict] = dict


def train_loop(engine, objective: Objective, plan: BatchPlan, cfg: TrainConfig, dist: DistInfo,
               tracker, checkpointer=None, hooks: LoopHooks | None = None, start_step: int = 0,
               pad_id: int = 0, desc: str = "train") -> LoopResult:
    hooks = hooks or LoopHooks()
    history: list[dict] = []
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=start_step, desc=desc, disable=not dist.is_main, dynamic_ncols=True,
               mininterval=1.0)
    step = start_step
    result = LoopResult(start_step, start_step, history)

    def finish(interrupted=False, reason=""):
        bar.close()
        result.end_step, result.interrupted, result.stop_reason = step, interrupted, reason
        result.seconds = time.time() - t0
        return result

    if start_step == 0 and hooks.evaluate is not None and cfg.eval_every:
        metrics = hooks.evaluate(0)
        tracker.log(metrics, 0)
    while step < cfg.steps:
        engine.module.train()
        sums: dict[str, float] = {}
        for micro in plan.micro_batches(step, dist.rank, dist.world_size, cfg.grad_accum, pad_id):
            loss, metrics = objective(engine, micro)
            engine.backward(loss)
            engine.step()
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
        keys = sorted(sums)
        reduced = dict(zip(keys, engine.all_reduce_sum([sums[k] for k in keys])))
        step += 1
        record = reduced | {"train/lr": engine.lr()}
        norm = engine.grad_norm()
        if norm is not None:
            record["train/grad_norm"] = norm
        bar.update(1)
        if dist.is_main:
            bar.set_postfix(loss=f"{reduced.get('train/loss', float('nan')):.3f}", refresh=False)
        if step % cfg.log_every == 0 or step == cfg.steps:
            tracker.log(record, step)
        history.append({"step": step} | record)
        if hooks.evaluate is not None and cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
            eval_metrics = hooks.evaluate(step)
            tracker.log(eval_metrics, step)
            record |= eval_metrics
        reason = ""
        if not math.isfinite(reduced.get("train/loss", 0.0)):
            reason = f"loss is {reduced.get('train/loss')} at step {step}"
        elif hooks.should_stop is not None:
            reason = hooks.should_stop(step, record)
        if reason:
            return finish(reason=reason)
        if checkpointer is not None and cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            checkpointer.save(step, hooks.checkpoint_state())
        if cfg.stop_after and step - start_step >= cfg.stop_after and step < cfg.steps:
            if checkpointer is not None:
                checkpointer.save(step, hooks.checkpoint_state())
            return finish(interrupted=True, reason=f"stop_after={cfg.stop_after}")
    return finish()
