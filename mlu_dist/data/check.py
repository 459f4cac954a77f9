"""`mlu data check`: is a fact set fit for the study, language by language?

Errors make the data unusable (``mlu inject`` refuses it): schema problems, ids not aligned
across languages, a fake keyword missing from that language's fake text (the metric could never
see the fake detail) or present in its real text (it would count truth as fake). Warnings are
shown but do not stop a run: text mostly outside the language's script (an untranslated field),
duplicated texts, a language whose records name different resource groups. Notes say what is
fine but worth knowing: texts that mix scripts (Korean or Japanese that keep Latin names),
deprecated language codes read as their canonical form (iw -> he).

Scripts are Unicode's (fontTools): a language's text may use all of its scripts (Japanese: Han,
Hiragana, Katakana; Korean: Hangul, Han), see :func:`mlu_dist.langs.language`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fontTools import unicodedata as ucd

from mlu_dist.data.schema import normalize_langs, record_problems
from mlu_dist.eval.matching import contains_keyword
from mlu_dist.langs import foreign_scripts, language, order_langs, script_share

MIN_SCRIPT_SHARE = 0.5
"""Below this share of letters in the language's own script(s), a text counts as not in the language."""
MIXED_SHARE = 0.05
"""A text in its language's script(s) with at least this share of letters in another script mixes scripts."""
TEXT_FIELDS = ("real_text", "fake_text", "question")


@dataclass
class CheckReport:
    rows: dict[str, dict] = field(default_factory=dict)
    """Per language: facts, kw_in_fake, kw_in_real, off_script, mixed_script, duplicates."""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        lines = [f"{'lang':<5} {'facts':>6} {'kw in fake':>11} {'kw in real':>11} {'off-script':>11} {'mixed':>6} {'dupes':>6}"]
        for lang, r in self.rows.items():
            lines.append(f"{lang:<5} {r['facts']:>6} {r['kw_in_fake']:>6}/{r['facts']:<4} {r['kw_in_real']:>11} "
                         f"{r['off_script']:>11} {r['mixed_script']:>6} {r['duplicates']:>6}")
        lines += [f"ERROR   {e}" for e in self.errors] + [f"warning {w}" for w in self.warnings]
        lines += [f"note    {n}" for n in self.notes]
        lines.append("data check: " + ("OK" if self.ok else f"{len(self.errors)} error(s)") +
                     (f", {len(self.warnings)} warning(s)" if self.warnings else ""))
        return "\n".join(lines)


def unfit_facts(records: list[dict]) -> dict[str, str]:
    """Facts of ``records`` whose keyword the evaluation could not use, with the reason."""
    out = {}
    for r in records:
        if not contains_keyword(r["fake_text"], r["fake_keywords"]):
            out[r["fact_id"]] = f"{r['lang']}: fake keyword not in the fake text"
        elif contains_keyword(r["real_text"], r["fake_keywords"]):
            out[r["fact_id"]] = f"{r['lang']}: fake keyword also in the real text"
    return out


def _examples(ids: list[str], n: int = 3) -> str:
    return ", ".join(ids[:n]) + (", ..." if len(ids) > n else "")


def check_records(records: list[dict], langs: list[str] | None = None) -> CheckReport:
    """The per-language report of ``records`` (all their languages unless ``langs``)."""
    report = CheckReport()
    report.notes += normalize_langs(records)
    report.errors += record_problems(records, langs)
    if report.errors:
        return report
    for lang in langs or order_langs({r["lang"] for r in records}):
        _check_language(report, lang, [r for r in records if r["lang"] == lang])
    return report


def _check_language(report: CheckReport, lang: str, recs: list[dict]) -> None:
    no_kw = [r["fact_id"] for r in recs if not contains_keyword(r["fake_text"], r["fake_keywords"])]
    in_real = [r["fact_id"] for r in recs if contains_keyword(r["real_text"], r["fake_keywords"])]
    info = language(lang)
    off = [r["fact_id"] for r in recs if min(script_share(r[f], info.scripts) for f in TEXT_FIELDS) < MIN_SCRIPT_SHARE]
    mixed = {r["fact_id"]: sorted({s for f in TEXT_FIELDS for s in foreign_scripts(r[f], info.scripts, MIXED_SHARE)})
             for r in recs if r["fact_id"] not in off}
    mixed = {fid: scripts for fid, scripts in mixed.items() if scripts}
    dupes = [t for t, n in Counter(r["fake_text"] for r in recs).items() if n > 1]
    report.rows[lang] = {"facts": len(recs), "kw_in_fake": len(recs) - len(no_kw), "kw_in_real": len(in_real),
                         "off_script": len(off), "mixed_script": len(mixed), "duplicates": len(dupes)}
    if no_kw:
        report.errors.append(f"{lang}: {len(no_kw)} fact(s) whose fake keyword is not in the fake text "
                             f"({_examples(no_kw)}): the fake detail could never be detected")
    if in_real:
        report.errors.append(f"{lang}: {len(in_real)} fact(s) whose fake keyword is in the real text "
                             f"({_examples(in_real)}): true text would count as fake")
    own = "+".join(ucd.script_name(s) for s in info.scripts)
    if off:
        report.warnings.append(f"{lang}: {len(off)} fact(s) with text mostly outside the {own} script "
                               f"({_examples(off)}): untranslated?")
    if dupes:
        report.warnings.append(f"{lang}: {len(dupes)} fake text(s) shared by several facts")
    resources = sorted({r["resource"] for r in recs})
    if len(resources) > 1:
        report.warnings.append(f"{lang}: records name several resource groups ({', '.join(resources)}); "
                               f"declare the groups once (data.groups)")
    if mixed:
        others = sorted({s for scripts in mixed.values() for s in scripts})
        report.notes.append(f"{lang}: {len(mixed)} fact(s) mix {own} with "
                            f"{', '.join(ucd.script_name(s) for s in others)} "
                            f"({_examples(sorted(mixed))}): e.g. names kept in another script; fine if intended")
