"""The languages mlu_dist knows: code, resource group and writing script.

The set is the paper's (Lu & Koehn, 2406.13748): English, four high-resource and four
low-resource languages, each with a script we can check text against.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

RESOURCE_GROUPS = ("en", "high", "low")


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    resource: str  # one of RESOURCE_GROUPS
    script: str  # Latin, Cyrillic, Han, Arabic, Armenian


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("en", "English", "en", "Latin"),
        Language("de", "German", "high", "Latin"),
        Language("fr", "French", "high", "Latin"),
        Language("zh", "Chinese", "high", "Han"),
        Language("ru", "Russian", "high", "Cyrillic"),
        Language("jv", "Javanese", "low", "Latin"),
        Language("ur", "Urdu", "low", "Arabic"),
        Language("ha", "Hausa", "low", "Latin"),
        Language("hy", "Armenian", "low", "Armenian"),
    )
}
ALL_LANGS: tuple[str, ...] = tuple(LANGUAGES)


def unknown_langs(langs) -> list[str]:
    """The codes in ``langs`` that are not supported (empty when all are fine)."""
    return [code for code in langs if code not in LANGUAGES]


def check_langs(field: str, langs, allow_empty: bool = False) -> list[str]:
    """Config problems of a language list: unknown codes (with the valid ones), emptiness, duplicates."""
    out = []
    bad = unknown_langs(langs)
    if bad:
        out.append(f"{field}: unknown language code(s) {', '.join(bad)}; valid: {', '.join(ALL_LANGS)}")
    if not langs and not allow_empty:
        out.append(f"{field}: at least one language is needed")
    if len(set(langs)) != len(langs):
        out.append(f"{field}: duplicates in {list(langs)}")
    return out


def char_script(ch: str) -> str | None:
    """The script of one letter, from its Unicode name; None for digits, punctuation, spaces."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    if name.startswith("CJK"):
        return "Han"
    for script in ("LATIN", "CYRILLIC", "ARABIC", "ARMENIAN"):
        if name.startswith(script):
            return script.capitalize()
    return "Other"


def script_share(text: str, script: str) -> float:
    """Fraction of the letters of ``text`` that are written in ``script`` (1.0 for no letters)."""
    scripts = [s for s in map(char_script, text) if s is not None]
    if not scripts:
        return 1.0
    return sum(s == script for s in scripts) / len(scripts)
