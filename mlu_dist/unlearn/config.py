"""Configuration of unlearning: the method, the forget-language set, stop rules and guards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlu_dist.config import check_choice
from mlu_dist.train_config import TrainConfig

NAMED_SETS = ("en", "orig", "all", "high", "low")
"""en, orig, all; then the default resource groups (a declared group name works too)."""


def best_criteria() -> tuple[str, ...]:
    """``last``, then each forgetting criterion of the metric registry (eval.metrics.forget_criteria)."""
    from mlu_dist.eval.metrics import forget_criteria

    return ("last", *forget_criteria())


def _unlearn_train_defaults() -> TrainConfig:
    return TrainConfig(steps=40, micro_batch_size=16, lr=1e-4, warmup_steps=0, schedule="constant", log_every=5,
                       eval_every=10, grad_clip=1.0)


@dataclass
class UnlearnConfig:
    """How the injected fake is unlearned."""

    method: str = "ga"
    """Unlearning objective: ga, graddiff, graddiff_kl, npo, simnpo, idk, idk_dpo, rmu, wga, satimp, ceu,
    undial, altpo, pdu (docs/methods.md: each one's paper, settings and defaults)."""
    method_args: dict[str, Any] = field(default_factory=dict)
    """The method's own settings, e.g. {beta: 0.1} for npo (the keys each method takes and their
    defaults are listed by `mlu unlearn --show-fields`); keys not given keep the method's default."""
    forget_langs: str = "en+orig"
    """Languages whose fake data is unlearned: en, orig (the injection language), all, high, low,
    language codes, or '+'-joined combinations (en+orig, de+fr). The paper's four settings are
    en, orig, all and en+orig."""
    forget_scope: str = "all"
    """What the forget loss covers: all (every token of the fake article and of question -> fake
    answer), answer (only the fake detail's tokens, in the article and the answer), qa (only
    question -> fake answer; no article)."""
    fixed_forget_size: int = 0
    """> 0: use exactly this many forget examples, split evenly over the forget languages (so every
    setting unlearns at equal compute, e.g. half original-language, half English); 0 = all."""
    retain_langs: str = "en"
    """Languages of the retain data (true text of untouched facts): 'en' is the paper's English safe
    data; the same syntax as forget_langs."""
    retain_balance: bool = False
    """Draw every step's retain batch equally from each retain language (languages interleaved in
    the pool's order; a language with fewer examples repeats them). Off: uniformly from the pool.
    Any method with retain data can use it (a multilingual baseline with retain_langs=all)."""
    forget_weight: float = 1.0
    """Weight of the forget term."""
    retain_weight: float = 0.0
    """Weight of the retain term (0 = no retain data; graddiff / graddiff_kl / idk use 1)."""
    target_fake_rate: float = -1.0
    """Stop once the mean fake_rate over the forget languages is <= this (-1 = off)."""
    guard_ppl_ratio: float = 3.0
    """Stop and mark the run when utility perplexity exceeds this multiple of its value at step 0."""
    best: str = "last"
    """Which model to keep: last, or the lowest at an eval step of a forgetting criterion:
    forget_fake_rate, forget_fake_pref (the mean over the forget languages of a forgetting curve)."""
    curve_subset: int = 0
    """Facts per curve evaluation (0 = all target and control facts)."""
    from_run: str = ""
    """The injection run to unlearn from (set by `mlu unlearn --from`)."""
    train: TrainConfig = field(default_factory=_unlearn_train_defaults)
    """Optimisation of the unlearning run."""

    def check(self) -> list[str]:
        from mlu_dist.unlearn.methods import METHODS, method_settings

        from mlu_dist.unlearn.data import FORGET_SCOPES

        out = check_choice("method", self.method, METHODS.names()) + check_choice("best", self.best, best_criteria())
        out += check_choice("forget_scope", self.forget_scope, FORGET_SCOPES)
        if self.method in METHODS:
            out += [f"method_args: {p}" for p in method_settings(self.method, self.method_args)[1]]
        for name, spec in (("forget_langs", self.forget_langs), ("retain_langs", self.retain_langs)):
            out += [f"{name}: {p}" for p in spec_problems(spec)]
        if self.fixed_forget_size < 0:
            out.append(f"fixed_forget_size: must be >= 0, got {self.fixed_forget_size}")
        if self.guard_ppl_ratio <= 1:
            out.append(f"guard_ppl_ratio: must be > 1, got {self.guard_ppl_ratio}")
        return out

    def settings(self):
        """The method's typed settings (``Settings`` of the registered method, from method_args)."""
        from mlu_dist.unlearn.methods import method_settings

        return method_settings(self.method, self.method_args)[0]


def _parts(spec: str) -> list[str]:
    return [p.strip() for p in str(spec).replace(",", "+").split("+") if p.strip()]


def spec_problems(spec: str, group_names=None) -> list[str]:
    """Problems of a language-set spec ('en+orig', 'all', 'low', 'ja+he'). A part is a named set
    (en, orig, all), a language code, or a resource group; with ``group_names`` None any name that
    is not a language code may be a group (the experiment checks it against data.groups)."""
    from mlu_dist.langs import LanguageError, canonical, language, looks_like_code

    parts = _parts(spec)
    if not parts:
        return [f"empty language set; use {', '.join(NAMED_SETS)}, a group or language codes"]
    out = []
    for part in parts:
        if part in NAMED_SETS[:3] or (group_names is not None and part in group_names):
            continue
        try:
            if canonical(part) != part:
                out.append(f"'{part}': write '{canonical(part)}' ({language(part).name})")
            continue
        except LanguageError:
            pass
        if group_names is None and part.replace("_", "").replace("-", "").isalnum() and not looks_like_code(part):
            continue
        groups = f"a group ({', '.join(group_names)})" if group_names else "a group declared in data.groups"
        out.append(f"'{part}' is neither a named set ({', '.join(NAMED_SETS[:3])}), {groups} nor a language code")
    return out


def resolve_langs(spec: str, inject_langs: list[str], data_langs: list[str], groups=None) -> list[str]:
    """Expand a language-set spec against the injection: 'en+orig' with a German injection -> [en, de];
    a group name -> its languages (``groups`` as declared in data.groups; the defaults otherwise)."""
    from mlu_dist.langs import effective_groups

    by_group = effective_groups(data_langs, groups)
    names = tuple(dict.fromkeys([*by_group, "high", "low", "other"]))
    problems = spec_problems(spec, names)
    if problems:
        raise ValueError("; ".join(problems))
    chosen: list[str] = []
    for part in _parts(spec):
        if part == "orig":
            langs = list(inject_langs)
        elif part == "all":
            langs = list(data_langs)
        elif part in names:
            langs = list(by_group.get(part, []))
        else:
            langs = [part]
        chosen += [lang for lang in langs if lang not in chosen]
    missing = [lang for lang in chosen if lang not in data_langs]
    if missing:
        raise ValueError(f"{', '.join(missing)} not among the data languages {', '.join(data_langs)}")
    return sorted(chosen, key=list(data_langs).index)
