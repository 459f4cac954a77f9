"""Means with bootstrap confidence intervals over facts (and over runs/seeds when pooled)."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(units: list[list[float]], n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean and percentile CI of values grouped by unit.

    ``units`` is one list per outer unit (a run/seed) of per-fact values; the bootstrap resamples
    the outer units, then the facts within each, so both sources of variance are in the interval.
    A single run is simply ``[values]`` (facts resampled only).
    """
    units = [np.asarray(u, dtype=float) for u in units if len(u)]
    if not units:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    mean = float(np.mean(np.concatenate(units)))
    rng = np.random.default_rng(seed)
    if len(units) == 1:  # facts only: one vectorised draw
        u = units[0]
        stats = u[rng.integers(0, len(u), (n_boot, len(u)))].mean(axis=1)
        lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
        return {"mean": mean, "lo": float(lo), "hi": float(hi), "n": int(len(u))}
    stats = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(0, len(units), len(units)) if len(units) > 1 else [0]
        draws = [units[i][rng.integers(0, len(units[i]), len(units[i]))] for i in picked]
        stats[b] = np.mean(np.concatenate(draws))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return {"mean": mean, "lo": float(lo), "hi": float(hi), "n": int(sum(len(u) for u in units))}
