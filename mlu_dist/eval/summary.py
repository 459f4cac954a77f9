"""Aggregates of per-fact values: per language and per resource group, each with a bootstrap CI.

Groups follow the paper's view when the injection language(s) are known: ``en``, ``orig`` (the
injection languages), then the resource groups without the injection languages: the paper's
``high`` and ``low`` by default, or the groups declared in ``data.groups`` (see
:func:`mlu_dist.langs.effective_groups`); without an injection, ``en`` and the resource groups.
"""

from __future__ import annotations

import math
from typing import Callable

from mlu_dist.eval.metrics import all_values, value_spec
from mlu_dist.eval.stats import bootstrap_ci
from mlu_dist.langs import effective_groups


def language_groups(langs: list[str], inject_langs: list[str] | None = None,
                    groups: dict | None = None) -> dict[str, list[str]]:
    """``{group: languages}``: en, orig, then the resource groups (declared ``groups``, else defaults)."""
    inject_langs = [lang for lang in (inject_langs or []) if lang != "en"]
    out = {"en": [lang for lang in langs if lang == "en"]}
    if inject_langs:
        out["orig"] = [lang for lang in langs if lang in inject_langs]
    for name, members in effective_groups(langs, groups).items():
        out[name] = [lang for lang in members if lang not in inject_langs]
    return {g: members for g, members in out.items() if members}


def group_fact_means(by_lang: dict[str, dict[str, float]], members: list[str]) -> list[float]:
    """Per fact, the mean of its values over the group's languages (facts in sorted order); a fact
    missing in a language counts over the languages that have it."""
    facts = sorted(set().union(*(by_lang[lang].keys() for lang in members)))
    return [sum(by_lang[lang][f] for lang in members if f in by_lang[lang]) /
            max(1, sum(f in by_lang[lang] for lang in members)) for f in facts]


def language_means(by_lang: dict[str, dict[str, float]], langs: list[str] | None = None) -> dict[str, float]:
    """Per language, the mean of its per-fact values (0 for a language without facts); exactly
    summed (fsum), so the order facts are stored in (EVAL.json sorts them) cannot change a bit."""
    return {lang: math.fsum(by_lang[lang].values()) / max(1, len(by_lang[lang])) for lang in (langs or list(by_lang))}


def over_languages(by_lang: dict[str, dict[str, float]], langs: list[str] | None = None,
                   transform: Callable[[float], float] | None = None) -> float:
    """A value over all languages: the mean over languages of each language's mean over facts
    (every language weighs the same), then ``transform``. For utility_nll (exp) that is the
    geometric mean over languages of the per-language perplexities."""
    langs = langs or list(by_lang)
    means = language_means(by_lang, langs)
    mean = math.fsum(means[lang] for lang in langs) / len(langs)
    return transform(mean) if transform is not None else mean


def utility_ppl(nll_by_lang: dict[str, dict[str, float]], langs: list[str] | None = None) -> float:
    """The one utility measure: exp of the mean over languages of each language's mean per-token
    NLL on the control facts' true articles (= the geometric mean over languages of per-language
    perplexity). The unlearning guard (``unlearn/ppl``), SUMMARY.json's ``utility_ppl.all`` and
    the report all use it; an arithmetic mean of perplexities would let one badly modelled
    language dominate."""
    return over_languages(nll_by_lang, langs, math.exp)


def summarize(values: dict, inject_langs: list[str] | None = None, n_boot: int = 1000, level: float = 0.95,
              seed: int = 0, groups: dict | None = None) -> dict:
    """``{name: {"lang": {lang: stats}, "group": {group: stats}, "all": stats}}``; stats = mean, lo, hi, n.

    Group CIs resample facts (a fact's values in the group's languages move together). ``all`` is
    :func:`over_languages` (for utility_ppl: :func:`utility_ppl`), its CI over facts. A value
    with a ``transform`` (utility_nll -> perplexity) is reported transformed, under its summary name.
    ``groups``: the declared resource groups (data.groups; None = the defaults)."""
    out = {}
    for name, by_lang in values.items():
        spec = value_spec(name)
        langs = list(by_lang)
        entry = {"lang": {}, "group": {}}
        for lang in langs:
            entry["lang"][lang] = bootstrap_ci([list(by_lang[lang].values())], n_boot, level, seed)
        for group, members in language_groups(langs, inject_langs, groups).items():
            entry["group"][group] = bootstrap_ci([group_fact_means(by_lang, members)], n_boot, level, seed) \
                | {"langs": members}
        if spec.transform is not None:
            for part in entry.values():
                for stats in part.values():
                    for key in ("mean", "lo", "hi"):
                        stats[key] = spec.transform(stats[key]) if math.isfinite(stats[key]) else stats[key]
        present = [lang for lang in langs if by_lang[lang]]
        if present:
            every = bootstrap_ci([group_fact_means(by_lang, present)], n_boot, level, seed)
            if spec.transform is not None:
                every |= {k: spec.transform(every[k]) for k in ("lo", "hi") if math.isfinite(every[k])}
            entry["all"] = every | {"mean": over_languages(by_lang, present, spec.transform), "langs": present}
        out[spec.summary_key] = entry
    return out


def format_table(summary: dict, langs: list[str], inject_langs: list[str] | None = None) -> str:
    """Per language and per group: every shown value of the summary, mean [CI]."""
    cols = [(v.summary_key, v.label) for v in all_values() if v.label and v.summary_key in summary]
    head = f"{'lang':<6}" + "".join(f"{label:>18}" for _, label in cols)
    lines = [head]

    def cell(stats):
        return f"{stats['mean']:.2f} [{stats['lo']:.2f},{stats['hi']:.2f}]"

    for lang in langs:
        mark = "*" if inject_langs and lang in inject_langs else ""
        lines.append(f"{lang + mark:<6}" + "".join(f"{cell(summary[n]['lang'][lang]):>18}" for n, _ in cols))
    groups = list(next(iter(summary.values()))["group"]) if summary else []
    lines.append("-" * len(head))
    for g in groups:
        lines.append(f"{g:<6}" + "".join(f"{cell(summary[n]['group'][g]):>18}" for n, _ in cols))
    if any("all" in summary[n] for n, _ in cols):  # util_ppl: the geometric mean over languages, the guard's
        lines.append(f"{'all':<6}" + "".join(f"{cell(summary[n]['all']) if 'all' in summary[n] else '–':>18}"
                                              for n, _ in cols))
    if inject_langs:
        lines.append("* injection language; values: mean [95% CI] over facts; all = over languages "
                     "(util_ppl: their geometric mean)")
    return "\n".join(lines)
