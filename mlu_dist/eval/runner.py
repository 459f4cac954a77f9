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
from mlu_dist.eval.generate import probe
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
                                    cfg.temperature, cfg.seed + zlib.crc32(ps[0].encode()), sync, self.cache_kw)
            return list(zip(answers or [None] * len(ps), scores or [None] * len(ps)))

        return run_sharded(items, lambda item: len(item[0]), cfg.batch_size, batch_fn, who)

    def _score(self, examples: list[Example]) -> list[tuple[float, int]]:
        return run_sharded(
            examples, lambda e: len(e.prompt) + len(e.completion), self.cfg.batch_size,
            lambda batch: completion_logprobs(self.forward, self.tok, batch, self.max_len, len(batch)), self.who)

    # --- metrics -------------------------------------------------------------------------------
    def run(self, groups: list[str]) -> dict[str, dict[str, dict[str, float]]]:
        """Per-fact values ``{value name: {lang: {fact_id: value}}}`` for the metric ``groups``.

        Asking for several groups at once shares work: fake_rate and fake_pref come from one
        prompt pass per probe."""
        values: dict[str, dict[str, dict[str, float]]] = {}
        if any(g in groups for g in ("fake_rate", "real_acc", "fake_pref", "utility")):
            values |= self._probe_metrics(groups)
        if "real_acc" in groups:
            values |= self._real_qa(values.pop("_probe_hits"))
        values.pop("_probe_hits", None)
        if "utility" in groups:
            values |= self._utility_texts()
        return values

    def _hit(self, samples: list[str], keywords) -> float:
        return sum(contains_keyword(s, keywords) for s in samples) / len(samples)

    def _probe_metrics(self, groups: list[str]) -> dict:
        gen = any(g in groups for g in ("fake_rate", "real_acc", "utility"))
        score = "fake_pref" in groups
        with_controls = any(g in groups for g in ("fake_rate", "fake_pref", "utility"))
        keys, prompts, cands = [], [], []
        for lang in self.langs:
            for kind, fids in (("target", self.targets), ("control", self.controls if with_controls else [])):
                for fid in fids:
                    rec = self.facts.get(fid, lang)
                    keys.append((kind, lang, fid, rec))
                    prompts.append(rec["question"])
                    cands.append([" " + rec["fake_answer"], " " + rec["true_answer"]])
        results = self._probe(prompts, cands if score else None, gen)
        names = ["_probe_hits"]
        names += ["fake_rate", "control_fake_rate"] if "fake_rate" in groups else []
        names += list(PRODUCES["fake_pref"]) if score else []
        names += ["utility_acc"] if "utility" in groups else []
        out = {name: {lang: {} for lang in self.langs} for name in names}
        for (kind, lang, fid, rec), (answers, scores) in zip(keys, results):
            if answers is not None:
                if kind == "target":
                    out["_probe_hits"][lang][fid] = self._hit(answers, [rec["true_answer"]])
                    if "fake_rate" in groups:
                        out["fake_rate"][lang][fid] = self._hit(answers, rec["fake_keywords"])
                else:
                    if "fake_rate" in groups:
                        out["control_fake_rate"][lang][fid] = self._hit(answers, rec["fake_keywords"])
                    if "utility" in groups:
                        out["utility_acc"][lang][fid] = self._hit(answers, [rec["true_answer"]])
            if scores is not None:
                (fake_lp, fake_n), (true_lp, true_n) = scores
                margin = fake_lp / max(fake_n, 1) - true_lp / max(true_n, 1)
                if kind == "target":
                    out["fake_pref"][lang][fid] = margin
                    out["fake_pref_win"][lang][fid] = float(margin > 0)
                else:
                    out["control_fake_pref_win"][lang][fid] = float(margin > 0)
        return out

    def _real_qa(self, probe_hits: dict) -> dict:
        """real_acc = share of right answers over the probe (true answer) and the real questions."""
        keys, prompts = [], []
        for lang in self.langs:
            for fid in self.targets:
                for qa in self.facts.get(fid, lang)["real_qa"]:
                    keys.append((lang, fid, qa["answer"]))
                    prompts.append(qa["question"])
        hits = {(lang, fid): [probe_hits[lang][fid]] for lang in self.langs for fid in self.targets}
        for (lang, fid, answer), (answers, _) in zip(keys, self._probe(prompts, None, True) if prompts else []):
            hits[(lang, fid)].append(self._hit(answers, [answer]))
        out = {"real_acc": {lang: {} for lang in self.langs}}
        for (lang, fid), h in hits.items():
            out["real_acc"][lang][fid] = sum(h) / len(h)
        return out

    def _utility_texts(self) -> dict:
        keys, examples = [], []
        for lang in self.langs:
            for fid in self.controls:
                keys.append((lang, fid))
                examples.append(Example("", self.facts.get(fid, lang)["real_text"], lang))
        out = {"utility_nll": {lang: {} for lang in self.langs}}
        for (lang, fid), (lp, n) in zip(keys, self._score(examples)):
            out["utility_nll"][lang][fid] = -lp / max(n, 1)
        return out
