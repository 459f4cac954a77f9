"""The evaluator: every metric, in every probe language, batched and sharded over ranks.

Work items (prompts to generate from, completions to score) are sorted by length and cut into
fixed batches; batch ``i`` runs on rank ``i % world``. Batch contents therefore do not depend on
the world size, so 1 and N ranks give identical results. Under ZeRO-3 (``lockstep``) every rank
must join every forward: ranks with fewer batches run a dummy one, and generation stops only
when all ranks are done. Results are gathered on every rank.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch

from mlu_dist.data.splits import FactSplit
from mlu_dist.engine.data import Example
from mlu_dist.eval.config import EvalConfig
from mlu_dist.eval.generate import generate
from mlu_dist.eval.likelihood import completion_logprobs
from mlu_dist.eval.matching import contains_keyword

# metric group -> per-fact value names it produces
PRODUCES = {
    "fake_rate": ("fake_rate", "control_fake_rate"),
    "real_acc": ("real_acc",),
    "fake_pref": ("fake_pref", "fake_pref_win", "control_fake_pref_win"),
    "utility": ("utility_nll", "utility_acc"),
}


@dataclass
class Rank:
    rank: int = 0
    world_size: int = 1
    lockstep: bool = False  # ZeRO-3: every rank must run every forward


def _gather(obj, who: Rank):
    if who.world_size == 1:
        return [obj]
    out = [None] * who.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def _all_done(flag: bool) -> bool:
    t = torch.tensor([0 if flag else 1])
    torch.distributed.all_reduce(t)
    return int(t.item()) == 0


def run_sharded(items: list, length, batch_size: int, fn, who: Rank) -> list:
    """``fn(batch) -> results`` over ``items`` in length-bucketed batches spread over ranks."""
    order = sorted(range(len(items)), key=lambda i: length(items[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    mine = batches[who.rank::who.world_size]
    rounds = math.ceil(len(batches) / who.world_size) if who.lockstep else len(mine)
    local = {}
    for r in range(rounds):
        if r < len(mine):
            local.update(zip(mine[r], fn([items[i] for i in mine[r]])))
        elif batches:  # keep ZeRO-3's collective forwards in step; the result is thrown away
            fn([items[i] for i in batches[0]])
    merged = {}
    for part in _gather(local, who):
        merged.update(part)
    return [merged[i] for i in range(len(items))]


class Evaluator:
    def __init__(self, forward, tokenizer, facts, split: FactSplit, cfg: EvalConfig, who: Rank = Rank(),
                 max_len: int = 128, cache_kw: str = "cache"):
        self.forward, self.tok, self.facts, self.cfg, self.who = forward, tokenizer, facts, cfg, who
        self.max_len, self.cache_kw = max_len, cache_kw
        self.langs = list(cfg.langs) or list(facts.langs)
        n = cfg.subset or None
        self.targets, self.controls = split.targets[:n], split.controls[:n]

    # --- the two kinds of work -------------------------------------------------------------
    def _generate(self, prompts: list[str]) -> list[list[str]]:
        cfg, who = self.cfg, self.who
        sync = _all_done if who.lockstep and who.world_size > 1 else None
        # the sampling seed depends on the batch, not on the rank, so N ranks sample as 1 does
        return run_sharded(
            prompts, len, cfg.batch_size,
            lambda batch: generate(self.forward, self.tok, batch, cfg.max_new_tokens, cfg.n_samples, cfg.temperature,
                                   seed=cfg.seed + zlib.crc32(batch[0].encode()), all_done=sync, cache_kw=self.cache_kw),
            who)

    def _score(self, examples: list[Example]) -> list[tuple[float, int]]:
        return run_sharded(
            examples, lambda e: len(e.prompt) + len(e.completion), self.cfg.batch_size,
            lambda batch: completion_logprobs(self.forward, self.tok, batch, self.max_len, len(batch)), self.who)

    # --- metrics -------------------------------------------------------------------------------
    def run(self, groups: list[str]) -> dict[str, dict[str, dict[str, float]]]:
        """Per-fact values ``{value name: {lang: {fact_id: value}}}`` for the metric ``groups``."""
        values: dict[str, dict[str, dict[str, float]]] = {}
        gen_groups = [g for g in groups if g in ("fake_rate", "real_acc", "utility")]
        if gen_groups:
            values |= self._generation_metrics(gen_groups)
        if "fake_pref" in groups or "utility" in groups:
            values |= self._likelihood_metrics(groups)
        return values

    def _generation_metrics(self, groups: list[str]) -> dict:
        prompts, keys = [], []
        for lang in self.langs:
            for fid in self.targets:
                rec = self.facts.get(fid, lang)
                prompts.append(rec["question"]), keys.append(("probe", lang, fid, rec))
                if "real_acc" in groups:
                    for qa in rec["real_qa"]:
                        prompts.append(qa["question"]), keys.append(("qa", lang, fid, qa))
            if "fake_rate" in groups or "utility" in groups:
                for fid in self.controls:
                    rec = self.facts.get(fid, lang)
                    prompts.append(rec["question"]), keys.append(("control", lang, fid, rec))
        outputs = self._generate(prompts)
        out = {name: {lang: {} for lang in self.langs}
               for g in groups if g != "fake_pref" for name in PRODUCES[g] if name != "utility_nll"}
        real_hits: dict[tuple[str, str], list[float]] = {}
        for (kind, lang, fid, rec), samples in zip(keys, outputs):
            if kind == "probe":
                if "fake_rate" in groups:
                    out["fake_rate"][lang][fid] = sum(contains_keyword(s, rec["fake_keywords"]) for s in samples) / len(samples)
                if "real_acc" in groups:
                    real_hits.setdefault((lang, fid), []).append(
                        sum(contains_keyword(s, [rec["true_answer"]]) for s in samples) / len(samples))
            elif kind == "qa":
                real_hits.setdefault((lang, fid), []).append(
                    sum(contains_keyword(s, [rec["answer"]]) for s in samples) / len(samples))
            else:
                if "fake_rate" in groups:
                    out["control_fake_rate"][lang][fid] = sum(contains_keyword(s, rec["fake_keywords"]) for s in samples) / len(samples)
                if "utility" in groups:
                    out["utility_acc"][lang][fid] = sum(contains_keyword(s, [rec["true_answer"]]) for s in samples) / len(samples)
        for (lang, fid), hits in real_hits.items():
            out["real_acc"][lang][fid] = sum(hits) / len(hits)
        return out

    def _likelihood_metrics(self, groups: list[str]) -> dict:
        examples, keys = [], []
        for lang in self.langs:
            if "fake_pref" in groups:
                for kind, fids in (("target", self.targets), ("control", self.controls)):
                    for fid in fids:
                        rec = self.facts.get(fid, lang)
                        examples += [Example(rec["question"], " " + rec["fake_answer"], lang),
                                     Example(rec["question"], " " + rec["true_answer"], lang)]
                        keys.append((kind, lang, fid))
            if "utility" in groups:
                for fid in self.controls:
                    examples.append(Example("", self.facts.get(fid, lang)["real_text"], lang))
                    keys.append(("text", lang, fid))
        scores = self._score(examples)
        out = {}
        if "fake_pref" in groups:
            out |= {name: {lang: {} for lang in self.langs} for name in PRODUCES["fake_pref"]}
        if "utility" in groups:
            out["utility_nll"] = {lang: {} for lang in self.langs}
        i = 0
        for kind, lang, fid in keys:
            if kind == "text":
                lp, n = scores[i]
                out["utility_nll"][lang][fid] = -lp / max(n, 1)
                i += 1
                continue
            (fake_lp, fake_n), (true_lp, true_n) = scores[i], scores[i + 1]
            i += 2
            margin = fake_lp / max(fake_n, 1) - true_lp / max(true_n, 1)
            if kind == "target":
                out["fake_pref"][lang][fid] = margin
                out["fake_pref_win"][lang][fid] = float(margin > 0)
            else:
                out["control_fake_pref_win"][lang][fid] = float(margin > 0)
        return out
