"""Configuration of the multilingual evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlu_dist.config import check_choice
from mlu_dist.eval.metrics import METRICS, default_metrics
from mlu_dist.eval.prompts import PROMPTS
from mlu_dist.langs import check_langs


@dataclass
class EvalConfig:
    """What is measured in every probe language, and how."""

    metrics: list[str] = field(default_factory=default_metrics)
    """Registered metrics to compute (default: all but the opt-in ones; see eval/metrics.py):
    fake_rate (generations stating the fake detail; also on control facts), fake_pref (log P(fake) -
    log P(true), length-normalised), real_acc (true answers to the real questions and the probe),
    utility (perplexity of untouched true text, accuracy on untouched facts); opt-in: mia
    (membership inference, targets vs controls, AUC per language and attack)."""
    langs: list[str] = field(default_factory=list)
    """Probe languages; empty = all of data.langs."""
    subset: int = 0
    """Use only the first N target and N control facts (0 = all); for cheap in-training curves."""
    max_new_tokens: int = 12
    """Longest generated answer, in tokens (12 suits the mini-world's names; news answers need more)."""
    prompt: str = "raw"
    """How probe questions are put: raw (as trained), qa (+ an answer cue in the question's language),
    chat (the tokenizer's chat template, for instruct models). See eval/prompts.py."""
    n_samples: int = 1
    """Generations per probe; > 1 samples at ``temperature`` and fake_rate is the share stating the fake."""
    temperature: float = 0.0
    """0 = greedy decoding."""
    model_copy: str = "auto"
    """How an evaluation on several ranks under ZeRO-3 (`mlu eval`, and every curve point of a
    training job) holds the model: 'full' (every rank a whole copy, gathered once, no collectives
    while generating), 'partitioned' (ZeRO-3 forwards: every generated token gathers the weights
    again; for models that fit no single device), 'auto' (full when it fits)."""
    batch_size: int = 64
    """Prompts per forward pass (prompts are bucketed by length)."""
    n_boot: int = 1000
    """Bootstrap resamples for confidence intervals."""
    ci_level: float = 0.95
    """Confidence level of the intervals."""
    seed: int = 0
    """Seed of sampling and of the bootstrap."""

    def check(self) -> list[str]:
        out = []
        for m in self.metrics:
            out += check_choice("metrics", m, METRICS.order())
        out += check_langs("langs", self.langs, allow_empty=True)
        out += check_choice("prompt", self.prompt, PROMPTS)
        out += check_choice("model_copy", self.model_copy, ("auto", "full", "partitioned"))
        if self.n_samples < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            out.append("n_samples, batch_size and max_new_tokens must be >= 1")
        if self.n_samples > 1 and self.temperature <= 0:
            out.append(f"temperature: n_samples={self.n_samples} needs temperature > 0 (greedy gives one answer)")
        if not 0.5 <= self.ci_level < 1:
            out.append(f"ci_level: must be in [0.5, 1), got {self.ci_level}")
        return out
