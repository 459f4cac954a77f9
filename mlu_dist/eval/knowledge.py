"""The knowledge gate: does the starting model know the true facts, language by language?

Spread measured on facts the model never knew is noise: a fake "spreads" into a language where
the model was guessing anyway. Before an injection the gate measures, per language, over the
target and control facts:

- ``true_pref``  share of facts whose true answer is likelier than the fake one (chance: 0.5;
                 needs true answers, so not on news data);
- ``real_acc``   share of right answers to the real questions (greedy generation).

A language below either threshold is flagged; ``inject.knowledge_gate`` decides whether that is
a warning or a refusal. After the injection, :func:`damage_warnings` flags languages where the
never-injected controls flipped as often as the targets: there the "spread" is damage.
"""

from __future__ import annotations

from dataclasses import dataclass

GATE_MODES = ("skip", "warn", "refuse")  # not "off": YAML reads it as false


@dataclass
class GateVerdict:
    table: dict[str, dict[str, float]]
    flagged: dict[str, str]  # lang -> why

    def format(self) -> str:
        has_pref = any("true_pref" in row for row in self.table.values())
        lines = [f"{'lang':<5} {'true>fake':>9} {'real_acc':>9}"]
        for lang, row in self.table.items():
            pref = f"{row['true_pref']:.0%}" if has_pref else "-"
            flag = f"  <- {self.flagged[lang]}" if lang in self.flagged else ""
            lines.append(f"{lang:<5} {pref:>9} {row['real_acc']:>9.0%}{flag}")
        return "\n".join(lines)


def measure(evaluator, forward, tokenizer, facts, fact_ids: list[str], max_len: int) -> dict[str, dict[str, float]]:
    """Per language of the evaluator: true_pref (when the data has true answers) and real_acc."""
    from mlu_dist.eval.likelihood import fake_preference

    langs = evaluator.langs
    table: dict[str, dict[str, float]] = {lang: {} for lang in langs}
    if facts.has("true_answer"):
        for lang, row in fake_preference(forward, tokenizer, facts, fact_ids, langs, max_len).items():
            table[lang]["true_pref"] = 1.0 - row["pref"]
    values = evaluator.run(["real_acc"])["real_acc"]
    for lang in langs:
        table[lang]["real_acc"] = sum(values[lang].values()) / max(1, len(values[lang]))
    return table


def verdict(table: dict[str, dict[str, float]], min_true_pref: float, min_real_acc: float) -> GateVerdict:
    flagged = {}
    for lang, row in table.items():
        why = []
        if "true_pref" in row and row["true_pref"] < min_true_pref:
            why.append(f"true>fake {row['true_pref']:.0%} < {min_true_pref:.0%} (chance is 50%)")
        if row["real_acc"] < min_real_acc:
            why.append(f"real_acc {row['real_acc']:.0%} < {min_real_acc:.0%}")
        if why:
            flagged[lang] = "; ".join(why)
    return GateVerdict(table, flagged)


def damage_warnings(spread: dict[str, dict], controls: dict[str, dict], inject_langs: list[str],
                    margin: float = 0.1) -> list[str]:
    """Languages where control facts prefer the fake about as often as targets (within ``margin``)."""
    out = []
    for lang, row in spread.items():
        if lang in inject_langs or lang not in controls:
            continue
        ctrl = controls[lang]["pref"]
        if row["pref"] >= 0.2 and ctrl >= row["pref"] - margin:  # a spread is claimed, and controls match it
            out.append(f"{lang}: controls prefer a fake answer {ctrl:.0%} of the time vs {row['pref']:.0%} for the "
                       f"injected targets: the spread there is indistinguishable from damage")
    return out
