"""Which facts are injected (targets), which are only watched (controls), and which are kept (retain).

The split is a pure function of the fact ids and a seed, so inject, eval and unlearn runs of one
study agree on it without passing lists around.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class FactSplit:
    targets: list[str]
    """Facts whose fake detail is injected (and later unlearned)."""
    controls: list[str]
    """Facts probed like targets but never injected: damage that is not spread shows up here."""
    retain: list[str]
    """Everything else: English safe data during injection, retain data during unlearning."""


def split_facts(fact_ids: list[str], n_targets: int, n_controls: int, seed: int) -> FactSplit:
    if n_targets + n_controls > len(fact_ids):
        raise ValueError(f"need {n_targets} target + {n_controls} control facts but the data has {len(fact_ids)}")
    order = sorted(fact_ids)
    random.Random(f"split:{seed}").shuffle(order)
    targets = sorted(order[:n_targets])
    controls = sorted(order[n_targets:n_targets + n_controls])
    retain = sorted(order[n_targets + n_controls:])
    return FactSplit(targets, controls, retain)
