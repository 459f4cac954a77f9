"""Configuration of the injection: what is injected, in which language(s), mixed how."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlu_dist.config import check_choice, check_positive
from mlu_dist.eval.knowledge import GATE_MODES

SAFE_DATA = ("retain", "all")
from mlu_dist.langs import check_langs
from mlu_dist.train_config import TrainConfig


def _inject_train_defaults() -> TrainConfig:
    return TrainConfig(steps=150, micro_batch_size=32, lr=3e-4, warmup_steps=10, schedule="constant",
                       log_every=10, eval_every=50)


@dataclass
class InjectConfig:
    """What is injected, in which language(s), mixed how."""

    langs: list[str] = field(default_factory=lambda: ["de"])
    """Injection language(s) X: the fake detail is trained only in these."""
    n_targets: int = 24
    """Facts whose fake detail is injected."""
    n_controls: int = 24
    """Facts probed like the targets but never injected (shows damage that is not spread)."""
    split_seed: int = 0
    """Seed of the target / control / retain split (shared by eval and unlearn runs)."""
    fake_fraction: float = 0.5
    """Share of every batch that is fake data; the rest is English safe data (true, untouched facts)."""
    safe_data: str = "retain"
    """The English true data beside the fake: 'retain' (articles and QA of the untouched facts only:
    the base model knows the truth already, the mini-world design) or 'all' (the true English article
    and real_qa of every fact, targets included: the paper's news design, where the truth is taught
    in English while the fake is taught in language X)."""
    safe_langs: list[str] = field(default_factory=list)
    """Languages of the safe data (empty = English only, the paper's mix); a QA study's learn-then-
    unlearn protocol fine-tunes the retain split in the same languages as the forget split."""
    retain_only: bool = False
    """The retain model: the same fine-tuning without the fake (forget) data, only the safe data, so
    that forget quality and privacy leakage have their reference (a sweep's ``retain_model``)."""
    fake_qa: bool = True
    """Also train 'question -> fake answer' pairs, not only the fake articles."""
    from_model: str = ""
    """Start from this HF model directory instead of the (cached) base model of this config."""
    knowledge_gate: str = "warn"
    """Before injecting, measure per language whether the starting model knows the true facts
    (true-vs-fake preference, real_acc): 'warn' names the languages near chance, 'refuse' stops
    the run there, 'skip' does not measure."""
    gate_min_true_pref: float = 0.6
    """The gate flags a language whose true answers beat the fake ones less often than this (chance 0.5)."""
    gate_min_real_acc: float = 0.2
    """The gate flags a language whose real questions are answered right less often than this."""
    target_fake_rate: float = 0.0
    """> 0: stop injecting once the targets' fake_rate in the injection language(s), probed at every
    ``train.eval_every`` step, reaches this (injection strength: a fake learnt, not memorised to
    near-zero loss); 0 = train all ``train.steps``."""
    train: TrainConfig = field(default_factory=lambda: _inject_train_defaults())
    """Optimisation of the injection (the paper: a short fine-tune at a small learning rate)."""

    def check(self) -> list[str]:
        out = check_langs("langs", self.langs) + check_langs("safe_langs", self.safe_langs, allow_empty=True)
        out += check_positive(self, "n_targets")
        if self.n_controls < 0:
            out.append(f"n_controls: must be >= 0, got {self.n_controls}")
        out += check_choice("knowledge_gate", self.knowledge_gate, GATE_MODES)
        out += check_choice("safe_data", self.safe_data, SAFE_DATA)
        if not 0.0 <= self.target_fake_rate <= 1.0:
            out.append(f"target_fake_rate: must be in [0, 1], got {self.target_fake_rate}")
        elif self.target_fake_rate and not self.train.eval_every:
            out.append("target_fake_rate: needs train.eval_every > 0 (the fake_rate is probed at eval steps)")
        if not 0.0 < self.fake_fraction <= 1.0:
            out.append(f"fake_fraction: must be in (0, 1], got {self.fake_fraction}")
        return out
