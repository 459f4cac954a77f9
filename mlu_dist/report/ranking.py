"""The report's ranking of methods by the field's trade-off: the fake left in the worst probe group
against the utility kept, per injection x method x forget setting (seeds pooled), then per method
over its settings."""

from __future__ import annotations

import statistics
from pathlib import Path

from mlu_dist.langs import group_columns
from mlu_dist.report.tables import GROUP_NAMES, SETTING_NAMES, aligned, before_dir, eval_values
from mlu_dist.results import record_at


def _worst(cells: dict) -> float:
    return max((c["mean"] for c in cells.values()), default=float("nan"))


def _ratio(before_dirs: list[Path], after_dirs: list[Path]) -> float:
    """Utility perplexity after ÷ before, the runs (seeds) pooled as more facts."""
    from mlu_dist.eval.summary import utility_ppl
    before, after = eval_values(before_dirs, "utility_nll"), eval_values(after_dirs, "utility_nll")
    return utility_ppl(after) / utility_ppl(before) if before and after else float("nan")


def worst_by_seed(runs: list[dict]) -> list[tuple[int, float]]:
    """Per run, its seed and the fake_rate of its worst probe group (the grid's groups of its
    SUMMARY.json), in seed order."""
    out = []
    for run in runs:
        groups = run["summary"].get("fake_rate", {}).get("group", {})
        out.append((record_at(run["run"]).seed, _worst({g: groups[g] for g in group_columns(groups) if groups.get(g)})))
    return sorted(out)


def ranking_rows(rows: list[dict], found: dict) -> list[dict]:
    """The field's trade-off per injection x method x setting: the fake left in the *worst* probe
    group (max over groups of a run's group fake_rate: gone in all groups = low), averaged over
    seeds (``worst_by_seed`` keeps each seed's), against the utility kept (utility perplexity after
    ÷ before, seeds pooled). Ranked by the worst group, then the utility ratio; ``front`` marks the
    rows no other row beats on both."""
    out = []
    for r in rows:
        runs = found.get((r["inject"], r["method"], r["setting"]), [])
        by_seed = worst_by_seed(runs)
        out.append({"inject": r["inject"], "method": r["method"], "setting": r["setting"],
                    "worst_fake_rate": statistics.fmean(v for _, v in by_seed) if by_seed else _worst(r["cells"]),
                    "worst_by_seed": by_seed,
                    "worst_group": max(r["cells"], key=lambda g: r["cells"][g]["mean"]) if r["cells"] else "",
                    "ppl_ratio": _ratio([before_dir(x) for x in runs], [x["run"] / "eval" for x in runs]),
                    "status": r["status"], "runs": r["runs"], "guard_tripped": r.get("guard_tripped", 0)})
    out.sort(key=lambda x: (x["inject"], x["worst_fake_rate"], x["ppl_ratio"]))
    for x in out:
        x["front"] = not any(y is not x and y["inject"] == x["inject"] and y["worst_fake_rate"] <= x["worst_fake_rate"]
                             and y["ppl_ratio"] <= x["ppl_ratio"] and (y["worst_fake_rate"], y["ppl_ratio"])
                             != (x["worst_fake_rate"], x["ppl_ratio"]) for y in out)
    return out


def _spread(values) -> str:
    values = list(values)
    return f" [{min(values):.2f}–{max(values):.2f}]" if len(values) > 1 else ""


def ranking_markdown(ranked: list[dict]) -> str:
    seeded = any(len(x["worst_by_seed"]) > 1 for x in ranked)
    lines = ["Ranked by the fake left in the worst probe group (the highest group fake_rate: 0 = gone in every "
             "group), then by utility kept (utility perplexity after ÷ before, 1 = unchanged). ★ = on the "
             "trade-off front (no other run removes more in its worst group at a lower perplexity ratio)."
             + (" With several seeds: the mean over seeds of each seed's worst group [min–max over seeds], the "
                "group named being the worst of the pooled means; the ratio pools the seeds." if seeded else ""), ""]
    for inj in sorted({x["inject"] for x in ranked}):
        table = [["#", "method", "setting", "worst group fake_rate", "utility ppl ratio", "status"]]
        mine = [x for x in ranked if x["inject"] == inj]
        for i, x in enumerate(mine, 1):
            table.append([str(i), x["method"] + (" ★" if x["front"] else ""), SETTING_NAMES.get(x["setting"], x["setting"]),
                          f"{x['worst_fake_rate']:.2f} ({GROUP_NAMES.get(x['worst_group'], x['worst_group'])})"
                          + _spread(v for _, v in x["worst_by_seed"]),
                          f"{x['ppl_ratio']:.2f}×", x["status"]])
        lines += [f"**injected in {inj}**", ""] + aligned(table) + [""]
    return "\n".join(lines + [method_markdown(method_rows(ranked))])


def method_rows(ranked: list[dict]) -> list[dict]:
    """Per injection x method, over its forget settings: the mean worst-group fake_rate (over
    settings and seeds), its range over seeds (each seed's mean over the settings), the median
    utility ratio, the guard trips and the best setting. Ranked by the mean, then the median ratio."""
    out = []
    for inj, method in sorted({(x["inject"], x["method"]) for x in ranked}):
        mine = [x for x in ranked if (x["inject"], x["method"]) == (inj, method)]
        seeds = sorted({s for x in mine for s, _ in x["worst_by_seed"]})
        per_seed = [statistics.fmean(v for x in mine for s, v in x["worst_by_seed"] if s == seed) for seed in seeds]
        out.append({"inject": inj, "method": method, "settings": len(mine), "seeds": len(seeds),
                    "worst_fake_rate": statistics.fmean(x["worst_fake_rate"] for x in mine), "per_seed": per_seed,
                    "ppl_ratio": statistics.median(x["ppl_ratio"] for x in mine),
                    "guard_tripped": sum(x["guard_tripped"] for x in mine), "runs": sum(x["runs"] for x in mine),
                    "best": mine[0]})  # ``ranked`` is in rank order
    return sorted(out, key=lambda m: (m["inject"], m["worst_fake_rate"], m["ppl_ratio"]))


def method_markdown(methods: list[dict]) -> str:
    lines = ["Per method, over its forget settings: the worst group's fake_rate averaged over settings and seeds "
             "[min–max over seeds of each seed's mean over the settings], the median utility ppl ratio of its "
             "settings, the runs whose utility guard tripped, and its best setting.", ""]
    for inj in sorted({m["inject"] for m in methods}):
        table = [["#", "method", "settings × seeds", "worst group fake_rate", "utility ppl ratio, median",
                  "guard tripped", "best setting: worst group, ratio"]]
        for i, m in enumerate((m for m in methods if m["inject"] == inj), 1):
            b = m["best"]
            table.append([str(i), m["method"], f"{m['settings']} × {m['seeds']}",
                          f"{m['worst_fake_rate']:.2f}{_spread(m['per_seed'])}", f"{m['ppl_ratio']:.2f}×",
                          f"{m['guard_tripped']}/{m['runs']}",
                          f"{SETTING_NAMES.get(b['setting'], b['setting'])}: {b['worst_fake_rate']:.2f}, "
                          f"{b['ppl_ratio']:.2f}×"])
        lines += [f"**injected in {inj}**, per method", ""] + aligned(table) + [""]
    return "\n".join(lines)
