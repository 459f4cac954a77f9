"""The report's relearning and phrasing sections: what a few steps of fine-tuning bring back, per
forget setting and language group, and fake_rate on held-out phrasings beside the trained one."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from mlu_dist.results import find_runs, pooled_groups, record_at

GROUPS = ("en", "orig", "high", "low")


def _columns(seen) -> list[str]:
    """The paper's four group columns, or en, orig and the declared groups when runs declared some."""
    from mlu_dist.langs import group_columns

    seen = group_columns(seen)
    return list(GROUPS) if set(seen) <= set(GROUPS) else seen
SETTINGS = ("en", "orig", "all", "en+orig")


def collect_attacks(root: Path) -> dict:
    """``{(inject, method, setting, start, attack): [{"run", "source", "inject_run"}]}`` for every
    finished relearning attack under ``root`` (method and setting are '-' for the controls)."""
    found = defaultdict(list)
    for run in find_runs(root, "relearn"):
        if run.done is None or not run.eval_values:
            continue
        start = run.attack_start
        source = run.run_dir.parent.parent  # the run the attack sits beside
        method, setting = (run.method_label, run.setting) if start == "unlearned" else ("-", "-")
        steps, lr = run.get("relearn.train.steps"), run.get("relearn.train.lr")
        label = run.meta["attack"] + (f" ({steps} steps, lr {lr:g})" if steps is not None else "")  # another strength: another row
        found[(run.inject, method, setting, start, label)].append(
            {"run": run.run_dir, "source": source, "inject_run": Path(run.meta["inject_run"])})
    return dict(found)


def _groups(run_dirs: list[Path], inject: list[str], metric: str = "fake_rate") -> dict:
    """Group stats pooled over run directories (seeds): the bootstrap resamples runs, then facts."""
    return pooled_groups([record_at(d) for d in run_dirs], inject, metric)


def _cell(stats: dict | None) -> str:
    return "–" if not stats else f"{stats['mean']:.2f} [{stats['lo']:.2f},{stats['hi']:.2f}]"


def _order(key):
    inj, method, setting, start, attack = key
    return (inj, attack, {"unlearned": 0, "injected": 1, "base": 2}.get(start, 3), method,
            SETTINGS.index(setting) if setting in SETTINGS else 99)


def relearn_rows(found: dict) -> list[dict]:
    """Per attack group: before (the attacked model), after, right after injection, recovery, per probe group."""
    rows = []
    for key in sorted(found, key=_order):
        inj, method, setting, start, attack = key
        runs = found[key]
        inject = inj.split("+")
        before = _groups([r["source"] for r in runs], inject) if start != "base" else {}
        after = _groups([r["run"] for r in runs], inject)
        injected = _groups(sorted({r["inject_run"] for r in runs}), inject)
        cells = {}
        for g in _columns(after):
            if g in after:
                inj_mean = injected.get(g, {}).get("mean")
                cells[g] = {"before": before.get(g), "after": after[g], "injected": injected.get(g),
                            "recovery": after[g]["mean"] / inj_mean if inj_mean else None}
        rows.append({"inject": inj, "method": method, "setting": setting, "start": start, "attack": attack,
                     "runs": len(runs), "cells": cells})
    return rows


def relearn_markdown(rows: list[dict]) -> str:
    if not rows:
        return "(no relearning attacks: set axes.relearn_attacks, or run `mlu relearn RUN`)"
    lines = ["Each cell: fake_rate before the attack → after it (mean [95% CI] over seeds and facts), and the "
             "**recovery** ratio (after-attack / right after injection). Controls: the same attack on the "
             "injected (never unlearned) and on the base model. A base-model row has no 'before' (its "
             "fake_rate is ~0).", ""]
    for inj in sorted({r["inject"] for r in rows}):
        for attack in sorted({r["attack"] for r in rows if r["inject"] == inj}):
            mine = [r for r in rows if r["inject"] == inj and r["attack"] == attack]
            seeds = sorted({r["runs"] for r in mine})
            cols = _columns(g for r in mine for g in r["cells"])
            lines += [f"**injected in {inj}, attacked with {attack}** ({'/'.join(map(str, seeds))} seed(s))", "",
                      "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
            for r in mine:
                name = f"{r['method']} forget {r['setting']}" if r["start"] == "unlearned" else f"{r['start']} (control)"
                cells = []
                for g in cols:
                    c = r["cells"].get(g)
                    if c is None:
                        cells.append("–")
                        continue
                    rec = "" if c["recovery"] is None else f" (×{c['recovery']:.2f})"
                    head = f"{c['before']['mean']:.2f} → " if c["before"] else ""
                    cells.append(f"{head}{_cell(c['after'])}{rec}")
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def phrasing_markdown(found: dict) -> str:
    """fake_rate on the trained question, a held-out paraphrase and a cloze prefix, per group:
    right after injection and after each unlearning setting (pooled over seeds)."""
    names = (("fake_rate", "trained"), ("para_fake_rate", "paraphrase"), ("cloze_fake_rate", "cloze"))
    lines = ["fake_rate per probe group on the trained question / a held-out paraphrase / a cloze prefix "
             "(none of the held-out phrasings is ever trained on). A fake gone from the trained question "
             "but not from the others was forgotten as a sentence, not as a fact.", ""]
    any_rows = False
    for inj in sorted({k[0] for k in found}):
        keys = sorted((k for k in found if k[0] == inj),
                      key=lambda k: (k[1], SETTINGS.index(k[2]) if k[2] in SETTINGS else 99))
        inject = inj.split("+")
        injected_runs = sorted({Path(record_at(r["run"]).get("unlearn.from_run")) for k in keys for r in found[k]})
        table = [("injected", injected_runs)] + [(f"{k[1]} forget {k[2]}", [r["run"] for r in found[k]]) for k in keys]
        stats = [(label, {name: _groups(runs, inject, name) for name, _ in names}) for label, runs in table]
        stats = [(label, st) for label, st in stats if st["para_fake_rate"]]
        cols = _columns(g for _, st in stats for g in st["fake_rate"])
        rows = [f"| {label} | " + " | ".join(
            " / ".join(f"{st[n][g]['mean']:.2f}" if g in st[n] else "–" for n, _ in names) for g in cols) + " |"
            for label, st in stats]
        if rows:
            any_rows = True
            lines += [f"**injected in {inj}** (trained / paraphrase / cloze)", "",
                      "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols), *rows, ""]
    return "\n".join(lines) if any_rows else "(no held-out phrasings evaluated: the fact data has no paraphrases)"


def after_attack(found_unlearn: dict, attack: str) -> dict:
    """The report's unlearning runs with each run's summary replaced by its attack's (``--after
    relearn``): the grid is then drawn on after-attack values. Runs without that attack are left out."""
    out = {}
    for key, runs in found_unlearn.items():
        swapped = []
        for r in runs:
            hits = [d for d in sorted((r["run"] / "relearn").glob("unlearned-*"))
                    if (d / "DONE.json").exists() and json.loads((d / "meta.json").read_text()).get("attack") == attack]
            if len(hits) > 1:
                raise FileNotFoundError(f"--after relearn:{attack}: {r['run']} holds {len(hits)} such attacks (other "
                                        f"steps or lr): {', '.join(h.name for h in hits)}; report them one at a time "
                                        f"(--out) after moving the others aside")
            if hits:
                summary = json.loads((hits[0] / "eval" / "SUMMARY.json").read_text())["metrics"]
                swapped.append(r | {"run": hits[0], "summary": summary})
        if swapped:
            out[key] = swapped
    return out
