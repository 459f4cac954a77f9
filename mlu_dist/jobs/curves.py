"""The one curve recorder of the jobs that draw per-language curves while they train (unlearning,
relearning attacks): at each eval step it evaluates the job's curve metrics on the live engine in
every language, appends them to ``curves.jsonl`` on rank 0 and gives the per-language table and the
per-group means the job logs. What a job does with the numbers (a guard, a best checkpoint, a
stopping rule) stays in the job."""

from __future__ import annotations

from mlu_dist.eval.summary import language_groups
from mlu_dist.jobs.evaluation import EngineEvaluation
from mlu_dist.unlearn.curves import CurveWriter, curve_table


class CurveRecorder:
    def __init__(self, job, engine, start: int, metrics: list[str], subset: int):
        cfg, dist = job.cfg, job.dist
        self.metrics = list(metrics)
        self.langs = list(job.facts.langs)
        self.curves = CurveWriter(job.run_dir, start) if dist.is_main else None
        self.evaluator = EngineEvaluation(engine, job.tokenizer, job.facts, job.split, cfg, dist,
                                          metrics=self.metrics, subset=subset, langs=self.langs)
        self.groups = language_groups(self.langs, list(cfg.inject.langs), cfg.data.groups)

    def record(self, step: int, values: dict | None = None, written: tuple[str, ...] = ()) -> tuple[dict, dict, list]:
        """Evaluate (unless ``values`` are given, e.g. read from the model's own eval), write the
        curves (only the ``written`` ones when given) and return ``(values, table, keys)``."""
        if values is None:
            values = self.evaluator.run(self.metrics)
        table, keys = curve_table(values, self.langs)
        if self.curves is not None:
            self.curves.write(step, {k: table[k] for k in written} if written else table)
        return values, table, keys

    def group_means(self, table: dict, curve: str = "fake_rate") -> dict[str, float]:
        """``curve`` averaged over each probe group's languages."""
        return {g: sum(table[curve][x] for x in members) / len(members) for g, members in self.groups.items()}
