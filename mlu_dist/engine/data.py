"""The deterministic per-step batch plan.

A run trains on named *pools* (``text``; ``fake`` + ``safe`` for
injection; ``forget`` + ``retain`` for unlearning). Each optimizer step draws a fixed number of
examples from every pool; which ones depends only on the seed and the step, never on the world
size, so 1 rank x 2 accumulation steps sees exactly what 2 ranks x 1 step see, and a resumed run
continues the same sequence.
"""

from __future__ import annotations

import math
import random

from mlu_dist.tokens import Encoded, collate, n_targets


class BatchPlan:
    """Which examples of each pool go into optimizer step ``step``, and how they split over ranks.

    Pools are walked in seeded random order, epoch after epoch, each with its own stream, so a
    pool's position is a pure function of the step.
    """

    def __init__(self, pools: dict[str, list[Encoded]], per_step: dict[str, int], seed: int,
                 streams: dict[str, str] | None = None, groups: dict[str, list[str]] | None = None):
        empty = [name for name in per_step if not pools.get(name)]
        if empty:
            raise ValueError(f"training pool(s) {', '.join(empty)} have no examples")
        self.pools, self.per_step, self.seed = pools, per_step, seed
        # pools that share a stream are walked in the same order (paired data, e.g. DPO's chosen/rejected)
        self.streams = {name: (streams or {}).get(name, name) for name in pools}
        # balanced pools: each step draws equally from every group (e.g. retain language)
        self.groups = {name: list(keys) for name, keys in (groups or {}).items() if name in pools}
        for name, keys in self.groups.items():
            if len(keys) != len(pools[name]):
                raise ValueError(f"pool '{name}': {len(keys)} group keys for {len(pools[name])} examples")
        self._orders: dict[tuple[str, int], list[int]] = {}

    def _epoch_len(self, name: str) -> int:
        if name not in self.groups:
            return len(self.pools[name])
        sizes = {}
        for key in self.groups[name]:
            sizes[key] = sizes.get(key, 0) + 1
        return max(sizes.values()) * len(sizes)

    def _balanced(self, name: str, epoch: int) -> list[int]:
        """Each group shuffled on its own, then interleaved one of each group at a time (a smaller
        group repeats within the epoch): any window of k x (number of groups) is k of each."""
        members: dict[str, list[int]] = {}
        for i, key in enumerate(self.groups[name]):
            members.setdefault(key, []).append(i)
        for key, idx in members.items():
            random.Random(f"{self.seed}:{self.streams[name]}:{epoch}:{key}").shuffle(idx)
        longest = max(len(idx) for idx in members.values())
        return [idx[i % len(idx)] for i in range(longest) for idx in members.values()]

    def _order(self, name: str, epoch: int) -> list[int]:
        key = (name, epoch)
        if key not in self._orders:
            if name in self.groups:
                order = self._balanced(name, epoch)
            else:
                order = list(range(len(self.pools[name])))
                random.Random(f"{self.seed}:{self.streams[name]}:{epoch}").shuffle(order)
            self._orders = {k: v for k, v in self._orders.items() if k[0] != name or k[1] >= epoch - 1}
            self._orders[key] = order
        return self._orders[key]

    def global_batch(self, step: int) -> dict[str, list[Encoded]]:
        out = {}
        for name, count in self.per_step.items():
            n = self._epoch_len(name)
            start = step * count
            out[name] = [self.pools[name][self._order(name, i // n)[i % n]] for i in range(start, start + count)]
        return out

    def micro_batches(self, step: int, rank: int, world: int, accum: int, pad_id: int):
        """The ``accum`` micro-batches of this rank for ``step``: dict pool -> tensors (+ ``n_targets``,
        the label-token count of that pool over the whole global batch, for world-size-invariant losses)."""
        batch = self.global_batch(step)
        totals = {name: sum(n_targets(e) for e in items) for name, items in batch.items()}
        micro = []
        for m in range(accum):
            parts = {}
            for name, items in batch.items():
                size = len(items) // (world * accum)
                lo = (m * world + rank) * size
                parts[name] = collate(items[lo:lo + size], pad_id) | {"n_targets": max(totals[name], 1),
                                                                      "n_examples": len(items)}
            micro.append(parts)
        return micro

    def check_geometry(self, world: int, accum: int) -> list[str]:
        """Each pool's per-step count must split evenly over ranks x accumulation steps."""
        return [f"pool '{name}': {count} examples per step do not split over {world} rank(s) x {accum} "
                f"accumulation step(s); use a multiple of {world * accum}"
                for name, count in self.per_step.items() if count % (world * accum)]


def steps_for_epochs(epochs: float, n_examples: int, per_step: int) -> int:
    """Optimizer steps that pass ``epochs`` times over ``n_examples`` taken ``per_step`` at a time."""
    return max(1, math.ceil(epochs * n_examples / per_step))
