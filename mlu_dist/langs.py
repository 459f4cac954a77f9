"""Languages from their codes, scripts from Unicode, and resource groups.

Any BCP-47 / ISO 639 code (``ja``, ``jpn``, ``pt-BR``) or FLORES/NLLB code (``jpn_Jpan``) is
accepted and normalised by ``langcodes`` (IANA registry + CLDR data from ``language-data``):
deprecated codes are mapped and said (``iw`` -> ``he``, ``in`` -> ``id``, ``jw`` -> ``jv``), a
script subtag that is the language's usual one is dropped (``zh-Hans`` -> ``zh``), the name and
the expected script come from CLDR's likely subtags. Scripts of characters come from the
Unicode Script property (``fontTools.unicodedata``), never from a table of our own.

The paper's nine languages (Lu & Koehn, 2406.13748) stay the default list and order, and their
en / high / low split the default resource groups; other languages fall in the group ``other``
unless the user declares groups (``data.groups``).
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

PAPER_LANGS: tuple[str, ...] = ("en", "de", "fr", "zh", "ru", "jv", "ur", "ha", "hy")
"""The paper's nine languages, in the order every table and plot uses."""
ALL_LANGS = PAPER_LANGS
"""The default language list (the paper's nine); not a validity check: any valid code works."""
PAPER_GROUPS: dict[str, tuple[str, ...]] = {"high": ("de", "fr", "zh", "ru"), "low": ("jv", "ur", "ha", "hy")}
"""The paper's resource groups; English is always its own group ``en``."""
RESOURCE_GROUPS = ("en", "high", "low")
OTHER_GROUP = "other"
"""The default group of a language outside the paper's nine when no groups are declared."""
RESERVED_GROUP_NAMES = ("en", "orig", "all")
"""Names a declared group may not take (they mean English, the injection languages, every language)."""

COMPOSITE_SCRIPTS: dict[str, tuple[str, ...]] = {
    "Jpan": ("Hani", "Hira", "Kana"), "Kore": ("Hang", "Hani"), "Hrkt": ("Hira", "Kana"),
    "Hans": ("Hani",), "Hant": ("Hani",), "Hanb": ("Hani", "Bopo"),
}
"""ISO 15924 codes that name a writing system of several Unicode scripts (ISO 15924 defines them)."""
UNSPACED_SCRIPTS = frozenset({"Hani", "Hira", "Kana", "Thai", "Lao", "Khmr", "Mymr", "Tibt"})
"""Scripts written without spaces between words: no word boundary exists to require."""
IGNORED_SCRIPTS = ("Zyyy", "Zinh", "Zzzz")
"""Common (digits, punctuation, ー), Inherited (combining marks) and Unknown: no language's own."""


class LanguageError(ValueError):
    """A language code that is not valid; the message names the closest valid codes."""


@dataclass(frozen=True)
class Language:
    code: str
    """Canonical code (BCP-47, shortest form)."""
    scripts: tuple[str, ...]
    """Unicode scripts (ISO 15924) its text is written in: ja -> Hani, Hira, Kana."""
    script_tag: str
    """The likely script subtag (ja -> Jpan, ko -> Kore, zh -> Hans, he -> Hebr)."""

    @property
    def name(self) -> str:
        """English name from CLDR (read on first use: the name data takes 0.1 s to load)."""
        return _display_name(self.code)

    @property
    def script(self) -> str:
        """Unicode name of the main script (Latin, Han, Cyrillic, Arabic, Armenian, ...)."""
        from fontTools import unicodedata as ucd

        return ucd.script_name(self.scripts[0])

    @property
    def resource(self) -> str:
        """The default resource group (see :func:`resource_of`)."""
        return resource_of(self.code)


def _suggestions(code: str) -> list[str]:
    import langcodes
    from language_data.language_lists import CLDR_LANGUAGES

    out = []
    try:  # a language name ("Japanese", "hebrew")
        found = str(langcodes.find(code.replace("_", " ")))
        out.append(found)
    except (LookupError, ValueError):
        pass
    known = sorted(CLDR_LANGUAGES | set(PAPER_LANGS))
    out += difflib.get_close_matches(code.lower().split("-")[0].split("_")[0], known, n=4, cutoff=0.5)
    return list(dict.fromkeys(out))[:4]


def _hint(codes) -> str:
    near = {c: _suggestions(str(c)) for c in codes}
    if len(codes) == 1 and near[codes[0]]:
        return f"closest valid codes: {', '.join(near[codes[0]])}"
    said = "; ".join(f"for '{c}': {', '.join(n)}" for c, n in near.items() if n)
    return (f"closest valid codes {said}; " if said else "") + "use BCP-47 / ISO 639 codes such as en, ja, he"


def _unknown(code, why: str = "") -> LanguageError:
    return LanguageError(f"unknown language code(s) {code}{why}; {_hint([code])}")


@lru_cache(maxsize=1024)
def language(code: str) -> Language:
    """The language of ``code`` (any accepted form); :class:`LanguageError` when it is not valid."""
    import langcodes

    if not isinstance(code, str) or not code.strip():
        raise _unknown(code, " (empty)")
    raw = code.strip().replace("_", "-")
    try:
        lang = langcodes.Language.get(langcodes.standardize_tag(raw))
    except (langcodes.LanguageTagError, ValueError):
        raise _unknown(code) from None
    if not lang.language or lang.language == "und" or not lang.is_valid():
        raise _unknown(code)
    likely = lang.maximize().script or "Zyyy"
    usual = langcodes.Language.get(lang.language).maximize().script
    lang = langcodes.Language.make(language=lang.language, territory=lang.territory, variants=lang.variants,
                                   script=None if lang.script == usual else lang.script)
    return Language(lang.to_tag(), COMPOSITE_SCRIPTS.get(likely, (likely,)), likely)


@lru_cache(maxsize=1024)
def _display_name(code: str) -> str:
    import langcodes

    return langcodes.Language.get(code).display_name()


def canonical(code: str) -> str:
    """The canonical form of ``code`` (``iw`` -> ``he``, ``jpn_Jpan`` -> ``ja``)."""
    return language(code).code


def alias_note(code: str) -> str | None:
    """What :func:`canonical` changed, said in one line; None when ``code`` is already canonical."""
    new = canonical(code)
    return None if new == code else f"'{code}' is read as '{new}' ({language(code).name})"


def lang_problems(field: str, langs) -> list[str]:
    """Problems of the codes of ``langs``: every invalid one (in one line, with the closest valid
    codes), and one line per code not in canonical form (``iw``: write ``he``)."""
    bad = unknown_langs(langs)
    out = [f"{field}: unknown language code(s) {', '.join(map(str, bad))}; {_hint(bad)}"] if bad else []
    for code in langs:
        if code not in bad and canonical(code) != code:
            out.append(f"{field}: write '{canonical(code)}' for '{code}' ({language(code).name}); one code per "
                       f"language keeps runs comparable")
    return out


def unknown_langs(langs) -> list[str]:
    """The codes in ``langs`` that are not valid language codes (empty when all are fine)."""
    out = []
    for code in langs:
        try:
            language(code)
        except (LanguageError, TypeError):
            out.append(code)
    return out


def check_langs(field: str, langs, allow_empty: bool = False) -> list[str]:
    """Config problems of a language list: invalid or non-canonical codes, emptiness, duplicates."""
    out = lang_problems(field, langs)
    if not langs and not allow_empty:
        out.append(f"{field}: at least one language is needed")
    if len(set(langs)) != len(langs):
        out.append(f"{field}: duplicates in {list(langs)}")
    return out


def order_langs(langs) -> list[str]:
    """``langs`` in the study's order: the paper's nine first (in their order), then the rest as given
    (alphabetically when ``langs`` is a set, so the order never depends on hashing)."""
    langs = sorted(langs) if isinstance(langs, (set, frozenset)) else list(dict.fromkeys(langs))
    return sorted(langs, key=lambda c: (PAPER_LANGS.index(c) if c in PAPER_LANGS else len(PAPER_LANGS),
                                        langs.index(c)))


def lang_index(code: str) -> int:
    """Sort key of one code: its place among the paper's nine, 99 for any other language."""
    return PAPER_LANGS.index(code) if code in PAPER_LANGS else 99


# --- resource groups ---------------------------------------------------------------------------

def default_groups(langs) -> dict[str, list[str]]:
    """The paper's high / low for its languages, ``other`` for the rest (English stands alone)."""
    out: dict[str, list[str]] = {}
    for code in order_langs(langs):
        name = resource_of(code)
        if name != "en":
            out.setdefault(name, []).append(code)
    return out


def resource_of(code: str, groups: dict | None = None) -> str:
    """The resource group of ``code``: its declared group, else the default (en, high, low, other)."""
    for name, members in (groups or {}).items():
        if code in members:
            return name
    if code == "en":
        return "en"
    for name, members in PAPER_GROUPS.items():
        if code in members:
            return name
    return OTHER_GROUP


def effective_groups(langs, declared: dict | None = None) -> dict[str, list[str]]:
    """Groups of ``langs`` (English excluded): the declared ones, with undeclared languages in
    their default group; groups keep the declared order, defaults come after."""
    declared = {str(k): list(v) for k, v in (declared or {}).items()}
    out: dict[str, list[str]] = {name: [c for c in order_langs(langs) if c in members]
                                 for name, members in declared.items()}
    for code in order_langs(langs):
        if code != "en" and not any(code in members for members in declared.values()):
            out.setdefault(resource_of(code), []).append(code)
    return {name: members for name, members in out.items() if members}


GROUP_LABELS = {"en": "English", "orig": "original", "high": "high-resource", "low": "low-resource",
                "other": "other languages"}
DEFAULT_GROUP_COLOURS = {"en": "black", "high": "tab:blue", "low": "tab:orange"}
PALETTE = ("tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def group_label(name: str) -> str:
    """How a table heads a group's column (a declared group: its own name)."""
    return GROUP_LABELS.get(name, name)


def group_columns(seen) -> list[str]:
    """Group columns in report order: en, orig, then the resource groups in the order first seen
    (declared order; high, low for the paper's)."""
    seen = list(dict.fromkeys(seen))
    return [g for g in ("en", "orig") if g in seen] + [g for g in seen if g not in ("en", "orig")]


def group_colour(name: str) -> str:
    """A stable matplotlib colour per group (the paper's three keep theirs)."""
    import zlib

    return DEFAULT_GROUP_COLOURS.get(name) or PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def lang_colour(code: str, groups: dict | None = None) -> str:
    """The colour of a language's curve: its resource group's."""
    return group_colour(resource_of(code, groups))


def looks_like_code(name: str) -> bool:
    """Two or three lowercase letters: read as a language code, never as a group name (except low)."""
    return name != "low" and len(name) in (2, 3) and name.isascii() and name.isalpha() and name.islower()


def group_problems(field: str, groups: dict, langs=None) -> list[str]:
    """Problems of declared groups: reserved or code-like names, invalid codes, a language twice."""
    out, seen = [], {}
    for name, members in (groups or {}).items():
        if name in RESERVED_GROUP_NAMES or "+" in name or not name.strip():
            out.append(f"{field}: group name '{name}' is reserved or invalid; reserved: "
                       f"{', '.join(RESERVED_GROUP_NAMES)} (no '+')")
        elif (looks_like_code(name) or not unknown_langs([name])) and name not in ("high", "low", "other"):
            out.append(f"{field}: group name '{name}' looks like a language code; pick a longer name")
        if isinstance(members, str) or not hasattr(members, "__iter__"):
            out.append(f"{field}.{name}: must be a list of language codes, got {members!r}")
            continue
        out += lang_problems(f"{field}.{name}", members)
        for code in members:
            if code in seen and seen[code] != name:
                out.append(f"{field}: '{code}' is in both '{seen[code]}' and '{name}'; a language has one group")
            seen[code] = name
        if "en" in members:
            out.append(f"{field}.{name}: 'en' is always its own group")
    if langs is not None:
        extra = [c for c in seen if c not in langs]
        if extra:
            out.append(f"{field}: {', '.join(extra)} not among the languages {', '.join(langs)}")
    return out


def writes_without_spaces(code: str) -> bool:
    """Whether the language's text runs words together (ja, zh, th, lo, km, my)."""
    return all(s in UNSPACED_SCRIPTS for s in language(code).scripts)


# --- scripts ----------------------------------------------------------------------------------

@lru_cache(maxsize=8192)
def char_script(ch: str) -> str | None:
    """ISO 15924 code of one letter's Unicode script (``ア`` -> Kana); None for anything that is
    not a letter (digits, punctuation, spaces, combining marks) or belongs to no one script."""
    import unicodedata

    from fontTools import unicodedata as ucd

    if not unicodedata.category(ch).startswith("L"):
        return None
    script = ucd.script(ch)
    return None if script in IGNORED_SCRIPTS else script


def _codes(scripts) -> set[str]:
    from fontTools import unicodedata as ucd

    out: set[str] = set()
    for s in [scripts] if isinstance(scripts, str) else scripts:
        code = s if len(s) == 4 and s[0].isupper() and s[1:].islower() else ucd.script_code(s)
        out |= set(COMPOSITE_SCRIPTS.get(code, (code,)))
    return out


def script_counts(text: str) -> Counter:
    """How many letters of ``text`` are in each Unicode script (ISO 15924 codes)."""
    return Counter(s for s in map(char_script, str(text)) if s is not None)


def script_share(text: str, scripts) -> float:
    """Fraction of the letters of ``text`` written in ``scripts`` (a code, a Unicode name, a
    composite like Jpan, or several of them); 1.0 for a text without letters."""
    counts = script_counts(text)
    total = sum(counts.values())
    if not total:
        return 1.0
    wanted = _codes(scripts)
    return sum(n for s, n in counts.items() if s in wanted) / total


def foreign_scripts(text: str, scripts, min_share: float = 0.05) -> list[str]:
    """Unicode scripts other than ``scripts`` holding at least ``min_share`` of the letters of
    ``text`` (Korean with Latin names -> ['Latn'])."""
    counts = script_counts(text)
    total = sum(counts.values())
    wanted = _codes(scripts)
    return sorted(s for s, n in counts.items() if s not in wanted and total and n / total >= min_share)


LANGUAGES: dict[str, Language] = {code: language(code) for code in PAPER_LANGS}
"""The paper's nine (the mini-world's languages); use :func:`language` for any other code."""
