"""The evaluator: the registered metrics (eval/metrics.py), in every probe language, batched and
sharded over ranks.

Work items (prompts to generate from, completions to score) are sorted by length and cut into
fixed batches; batch ``i`` runs on rank ``i % world``. Batch contents therefore do not depend on
the world size, so 1 and N ranks give identical results. Under ZeRO-3 (``lockstep``) every rank
must join every forward: ranks with fewer batches run a dummy one, and generation stops only
when all ranks are done. Results are gathered on every rank.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from mlu_dist.data.splits import FactSplit
from mlu_dist.eval.config import EvalConfig
from mlu_dist.eval.generate import probe
from mlu_dist.eval.likelihood import completion_logprobs, logit_rows
from mlu_dist.eval.metrics import METRICS, ProbeNeeds, value_spec
from mlu_dist.eval.prompts import check_prompt_style, format_prompt
from mlu_dist.eval.sharding import Rank, _all_done, run_sharded
from mlu_dist.tokens import Example


@dataclass
class ProbeRecord:
    """One probe question of the shared probe pass and what the pass produced for it."""

    kind: str  # target / control
    lang: str
    fact_id: str
    record: dict
    answers: list[str] | None  # generated answers (None unless a metric asked to generate)
    scores: list[tuple[float, int]] | None  # (sum log-prob, tokens) of [fake answer, true answer]


class Evaluator:
    def __init__(self, forward, tokenizer, facts, split: FactSplit, cfg: EvalConfig, who: Rank | None = None,
                 max_len: int = 128, cache_kw: str = "cache", stop_ids: list[int] | None = None):
        self.forward, self.tok, self.facts, self.cfg, self.who = forward, tokenizer, facts, cfg, who or Rank()
        self.max_len, self.cache_kw = max_len, cache_kw
        self.stop_ids = list(stop_ids or [tokenizer.eos_token_id])
        check_prompt_style(cfg.prompt, tokenizer)
        self.langs = list(cfg.langs) or list(facts.langs)
        n = cfg.subset or None
        self.targets, self.controls = split.targets[:n], split.controls[:n]
        self.skipped: dict[str, str] = {}
        """Values that could not be computed on this data, with the reason (SUMMARY.json 'skipped')."""
        self.notes: dict[str, str] = {}
        """How a value was computed when the data changed it (SUMMARY.json 'notes')."""

    def available(self, value: str) -> bool:
        """Whether the data has every field the value ``value`` requires."""
        return all(self.facts.has(f) for f in value_spec(value).requires)

    def note(self, value: str, text: str) -> None:
        self.notes[value] = text

    # --- the two kinds of work (what metrics call) ----------------------------------------------
    def _probe(self, prompts: list[str], candidates: list[list[str]] | None, gen: bool) -> list[tuple]:
        """``(answers, candidate scores)`` per prompt, from one prompt pass each."""
        cfg, who = self.cfg, self.who
        sync = _all_done if who.lockstep and who.world_size > 1 else None
        items = list(zip(prompts, candidates or [None] * len(prompts)))

        def batch_fn(batch):
            ps = [p for p, _ in batch]
            cands = [c for _, c in batch] if candidates is not None else None
            # the sampling seed depends on the batch, not on the rank, so N ranks sample as 1 does
            answers, scores = probe(self.forward, self.tok, ps, cands, gen, cfg.max_new_tokens, cfg.n_samples,
                                    cfg.temperature, cfg.seed + zlib.crc32(ps[0].encode()), sync, self.cache_kw,
                                    self.stop_ids, add_bos=cfg.prompt != "chat")
            return list(zip(answers or [None] * len(ps), scores or [None] * len(ps)))

        return run_sharded(items, lambda item: len(item[0]), cfg.batch_size, batch_fn, who)

    def prompt(self, question: str, lang: str) -> str:
        """The text a probe question is put as (``eval.prompt``)."""
        return format_prompt(question, lang, self.cfg.prompt, self.tok)

    def generate(self, prompts: list[str]) -> list[list[str]]:
        """``n_samples`` generated answers per prompt."""
        return [answers for answers, _ in self._probe(prompts, None, True)]

    def score(self, examples: list[Example]) -> list[tuple[float, int]]:
        """``(sum log-prob, n tokens)`` of each example's completion given its prompt.

        A batch is one forward (ZeRO-3 lockstep counts forwards by batches), so the batch is cut to
        what fits the logits bound here rather than inside ``completion_logprobs``."""
        rows = min(self.cfg.batch_size, logit_rows(self.max_len, len(self.tok)))
        return run_sharded(
            examples, lambda e: len(e.prompt) + len(e.completion), rows,
            lambda batch: completion_logprobs(self.forward, self.tok, batch, self.max_len, len(batch)), self.who)

    # --- metrics -------------------------------------------------------------------------------
    def run(self, names: list[str]) -> dict[str, dict[str, dict[str, float]]]:
        """Per-fact values ``{value name: {lang: {fact_id: value}}}`` of the metrics ``names``.

        The metrics share one probe pass: what it generates and scores is the union of their needs.
        Values the data cannot support are left out and listed in ``self.skipped``; a metric left
        with none is not run at all."""
        metrics = []
        for name in names:
            metric = METRICS[name]()
            for v in metric.values:
                if not self.available(v.name):
                    lacking = [f for f in v.requires if not self.facts.has(f)]
                    self.skipped[v.name] = f"the fact data has no {' / '.join(lacking)} (not in every record)"
            if any(self.available(v.name) for v in metric.values):
                metrics.append(metric)
        wants = [m.needs(self) for m in metrics]
        needs = ProbeNeeds(generate=any(w.generate for w in wants), score=any(w.score for w in wants),
                           controls=any(w.controls for w in wants))
        records = self.probe_pass(needs) if needs.generate or needs.score else []
        values: dict[str, dict[str, dict[str, float]]] = {}
        for metric in metrics:
            values |= {k: v for k, v in metric.compute(records, self).items() if self.available(k)}
        return values

    def probe_pass(self, needs: ProbeNeeds) -> list[ProbeRecord]:
        """Every probe question of the targets (and controls), in every language, run once."""
        keys, prompts, cands = [], [], []
        for lang in self.langs:
            for kind, fids in (("target", self.targets), ("control", self.controls if needs.controls else [])):
                for fid in fids:
                    rec = self.facts.get(fid, lang)
                    keys.append((kind, lang, fid, rec))
                    prompts.append(self.prompt(rec["question"], lang))
                    cands.append([" " + rec["fake_answer"], " " + rec["true_answer"]])
        results = self._probe(prompts, cands if needs.score else None, needs.generate)
        return [ProbeRecord(*key, answers, scores) for key, (answers, scores) in zip(keys, results)]
