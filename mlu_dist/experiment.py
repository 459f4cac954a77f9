"""The experiment config: one typed tree that every job reads its section of.

One YAML describes a whole study (world, model, engine, base training, injection, ...); ``mlu
base`` reads ``data/model/engine/base``, ``mlu inject`` adds ``inject``, and so on. A sweep varies
fields of this tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlu_dist.data import DataConfig
from mlu_dist.engine.config import EngineConfig
from mlu_dist.eval.config import EvalConfig
from mlu_dist.inject.config import InjectConfig
from mlu_dist.langs import unknown_langs
from mlu_dist.modeling import ModelConfig
from mlu_dist.relearn.config import RelearnConfig
from mlu_dist.runs.rundir import RunConfig
from mlu_dist.tracking import TrackingConfig
from mlu_dist.train_config import TrainConfig
from mlu_dist.unlearn.config import UnlearnConfig


def _base_train() -> TrainConfig:
    return TrainConfig(steps=1000, micro_batch_size=32, lr=3e-3, warmup_steps=30, log_every=50)


@dataclass
class ExperimentConfig:
    """A learn-and-unlearn study."""

    run: RunConfig = field(default_factory=RunConfig)
    """Where run directories go and how existing ones are treated."""
    data: DataConfig = field(default_factory=DataConfig)
    """Facts, languages and the base corpus (the built-in mini-world by default)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The model (a tiny Llama built from config by default; a hub name or path at scale)."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """Backend and DeepSpeed ZeRO settings shared by every training job."""
    base: TrainConfig = field(default_factory=_base_train)
    """Base training on the true world (cached by the hash of data + model + base)."""
    inject: InjectConfig = field(default_factory=InjectConfig)
    """Injection of the fake facts (also fixes the target / control split every job uses)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Multilingual evaluation (mlu eval, and the curves of training jobs)."""
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    """Unlearning of the injected fake: method, forget-language set, stop rules."""
    relearn: RelearnConfig = field(default_factory=RelearnConfig)
    """Relearning attacks: fine-tune unlearned (and, as controls, injected and base) models a few steps
    and re-probe every language."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """W&B (offline-first) beside the always-written metrics.jsonl."""

    def check(self) -> list[str]:
        out = []
        missing = [lang for lang in self.inject.langs if not unknown_langs([lang]) and lang not in self.data.langs]
        if missing:
            out.append(f"inject.langs: {', '.join(missing)} not in data.langs {list(self.data.langs)}")
        extra = [lang for lang in self.eval.langs if not unknown_langs([lang]) and lang not in self.data.langs]
        if extra:
            out.append(f"eval.langs: {', '.join(extra)} not in data.langs {list(self.data.langs)}")
        out += self._group_problems()
        for job, name, train in (("base", "base", self.base), ("inject", "inject.train", self.inject.train),
                                 ("unlearn", "unlearn.train", self.unlearn.train),
                                 ("relearn", "relearn.train", self.relearn.train)):
            if train.lora.enabled and self.engine.zero_for(job).stage == 3:
                key = f"engine.jobs.{job}" if job in self.engine.jobs else \
                    ("engine.jobs.unlearn" if job == "relearn" and "unlearn" in self.engine.jobs else "engine.zero")
                out.append(f"{name}.lora: LoRA runs under ZeRO stages 0-2 (adapters are small; stage 2 already "
                           f"shards their optimizer state); set {key}.stage<=2 or {name}.lora.enabled=false")
        return out

    def _group_problems(self) -> list[str]:
        """forget / retain / attack language sets that name a group data.groups does not declare."""
        from mlu_dist.relearn.config import parse_attack
        from mlu_dist.unlearn.config import spec_problems

        names = tuple(dict.fromkeys([*self.data.resource_groups(), "high", "low", "other"]))
        specs = [("unlearn.forget_langs", self.unlearn.forget_langs),
                 ("unlearn.retain_langs", self.unlearn.retain_langs)]
        for attack in self.relearn.attacks:
            try:
                specs.append(("relearn.attacks", parse_attack(attack).langs))
            except ValueError:
                pass  # reported by relearn.check
        return [f"{name}: {p}" for name, spec in specs for p in spec_problems(spec, names)]
