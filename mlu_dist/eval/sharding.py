"""Work spread over ranks: which rank evaluates which batch, and how the results come back together.

Batch *i* runs on rank *i mod N* and results are gathered, so N ranks give the same values as one;
under ZeRO-3 (``lockstep``) every rank runs as many forwards as the busiest one. Every evaluation
pass (the probe pass, the likelihood passes, membership inference, QA sets) goes through here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlu_dist import comm


@dataclass
class Rank:
    rank: int = 0
    world_size: int = 1
    lockstep: bool = False  # ZeRO-3: every rank must run every forward


def _gather(obj, who: Rank):
    return [obj] if who.world_size == 1 else comm.all_gather_object(obj)


def _all_done(flag: bool) -> bool:
    return comm.all_true(flag)


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
