"""Configuration of relearning attacks (no torch: config checks and the sweep planner read it).

An attack fine-tunes a copy of a model for a few steps on attack data and re-probes every
language. Attack data (``relearn.attacks``, each ``KIND[:LANGS]``):

- ``fake:LANGS`` — the targets' fake data (article + question -> fake answer, as injected) in one
  language set (default ``en``; ``orig`` = the injection language);
- ``fake_qa:LANGS`` — question -> fake answer of a share (``qa_fraction``) of the targets only;
  the other targets are never shown, so their fake_rate measures what comes back by itself;
- ``true_other:LANGS`` — true text of other facts only (the retain split; default ``en``):
  "unrelated" relearning.

LANGS uses the forget-language syntax (en, orig, all, high, low, codes, '+'-joined).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlu_dist.train_config import TrainConfig

ATTACK_KINDS = {"fake": "en", "fake_qa": "orig", "true_other": "en"}
"""Attack kinds and their default language set."""
STARTS = ("unlearned", "injected", "base")
"""Which model an attack starts from: the unlearned one, the injected (never unlearned) one, or
the base model (how fast is the fake learnt from scratch?)."""


@dataclass(frozen=True)
class Attack:
    kind: str
    langs: str

    @property
    def slug(self) -> str:
        """A directory-safe name, e.g. fake-en, fake_qa-orig."""
        return f"{self.kind}-{self.langs.replace('+', '_')}"

    def __str__(self) -> str:
        return f"{self.kind}:{self.langs}"


def parse_attack(text: str) -> Attack:
    """``'fake:en'`` -> Attack('fake', 'en'); ``'true_other'`` -> its default languages. ValueError
    naming the valid kinds / language sets otherwise."""
    from mlu_dist.unlearn.config import spec_problems

    kind, _, langs = str(text).strip().partition(":")
    if kind not in ATTACK_KINDS:
        raise ValueError(f"'{text}': the attack kind must be one of {', '.join(ATTACK_KINDS)} "
                         f"(e.g. fake:en, fake_qa:orig, true_other:en)")
    langs = langs.strip() or ATTACK_KINDS[kind]
    problems = spec_problems(langs)
    if problems:
        raise ValueError(f"'{text}': {'; '.join(problems)}")
    return Attack(kind, langs)


@dataclass
class AttackTrainConfig(TrainConfig):
    """A TrainConfig whose ``steps`` may be 0: an attack of 0 steps probes the model as it is."""

    def check(self) -> list[str]:
        out = super().check()
        return [p for p in out if not (self.steps == 0 and p.startswith("steps:"))]


def _relearn_train_defaults() -> TrainConfig:
    return AttackTrainConfig(steps=20, micro_batch_size=8, lr=1e-4, warmup_steps=0, schedule="constant", log_every=5,
                       eval_every=5, grad_clip=1.0)


@dataclass
class RelearnConfig:
    """Relearning attacks on unlearned models (and, as controls, on the injected and base models)."""

    attacks: list[str] = field(default_factory=list)
    """Attacks to run (KIND[:LANGS]: fake:en, fake:orig, fake_qa:orig, true_other:en); in a sweep each
    unlearning run is attacked with each after it finishes (empty = none)."""
    controls: bool = True
    """In a sweep, attack the injected (never unlearned) model and the base model the same way, so
    'recovers faster than learning from scratch' is a measured statement."""
    qa_fraction: float = 0.25
    """fake_qa attacks: the share of the targets whose question -> fake answer is trained on."""
    curve_subset: int = 0
    """Facts per curve evaluation (0 = all target and control facts)."""
    keep_model: bool = False
    """Export the attacked model and keep its checkpoint (off: an attack leaves only its curves and
    evaluation, not another copy of the weights)."""
    train: AttackTrainConfig = field(default_factory=_relearn_train_defaults)
    """Optimisation of the attack (a few steps of plain fine-tuning; steps=0 changes nothing)."""

    def check(self) -> list[str]:
        out = []
        for a in self.attacks:
            try:
                parse_attack(a)
            except ValueError as exc:
                out.append(f"attacks: {exc}")
        if not 0 < self.qa_fraction <= 1:
            out.append(f"qa_fraction: must be in (0, 1], got {self.qa_fraction}")
        return out

    def parsed(self, inject_langs: list[str] | None = None, all_langs: list[str] | None = None,
               groups: dict | None = None) -> list[Attack]:
        """The attacks; given the injection's and the world's languages, without those that repeat
        an earlier one (``fake:orig`` and ``fake:de`` are one attack on a de injection)."""
        attacks = [parse_attack(a) for a in self.attacks]
        return attacks if inject_langs is None else distinct_attacks(attacks, inject_langs, all_langs or [], groups)


def distinct_attacks(attacks: list[Attack], inject_langs: list[str], all_langs: list[str],
                     groups: dict | None = None) -> list[Attack]:
    """``attacks`` less any of the same kind on the same languages as an earlier one, once their
    language sets are resolved for this injection."""
    from mlu_dist.unlearn.config import resolve_langs

    seen, out = set(), []
    for a in attacks:
        key = (a.kind, tuple(sorted(resolve_langs(a.langs, list(inject_langs), list(all_langs), groups))))
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out
