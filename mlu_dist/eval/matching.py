"""Does a generation state a given detail? Unicode-normalised, script-aware keyword matching.

The rules (docs/languages.md lists them per script, tests/test_matching.py checks each):

1. Text and keyword are NFKC-normalised and case-folded (full-width letters, ligatures and
   presentation forms become their plain letters; Ⅻ, ﬁ, Ａ, ß/SS, σ/ς compare equal).
2. Decimal digits of every script read as ASCII digits (Persian ۱۹۸۷, Devanagari १९८७, Arabic-Indic
   ١٩٨٧ = 1987).
3. Optional marks are dropped on both sides, so a pointed keyword matches an unpointed answer and
   the other way round: Hebrew points and cantillation (niqqud), Arabic harakat, Quranic marks and
   tatweel (ـ), the Devanagari nukta (ज़ = ज). Marks that spell (Devanagari vowel signs, viramas,
   Thai vowels) are kept.
4. A keyword stands as a word: no letter, digit or mark right before or after it, except
   - next to a character of a script written without spaces (Han, Hiragana, Katakana, Thai, Lao,
     Khmer, Myanmar, Tibetan) there is no boundary to require;
   - before it, the proclitics of languages that join prepositions, articles and conjunctions to
     the next word: Hebrew ו ה ב כ ל מ ש (up to four, ובכש...), Arabic-script و ف + ب ك ل س + ال / لل
     (والقاهرة, بالقاهرة, للقاهرة; a keyword's own ال may be absent), Ethiopic በ ለ ከ የ ወደ እንደ ስለ;
   - after it, the Korean particles (은 는 이 가 을 를 에 에서 의 로 으로 와 과 도 ..., up to two)
     and the Ethiopic suffixes ን ም ና ንም;
   - a number next to a letter of a non-Latin script (1987년, 1987年, በ1987) is a number there.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import regex

OPTIONAL_MARKS = regex.compile(r"(?V1)[[\p{Block=Hebrew}\p{Block=Arabic}\p{Block=Arabic_Extended_A}"
                               r"\p{Block=Arabic_Supplement}]&&\p{Mn}]|\u0640|\u093C")
"""Hebrew points, Arabic harakat and Quranic marks, tatweel, Devanagari nukta."""
UNSPACED = regex.compile(r"[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}"
                         r"\p{Script=Khmer}\p{Script=Myanmar}\p{Script=Tibetan}\u30FC]")
LATIN_LIKE = regex.compile(r"[\p{Script=Latin}\p{Script=Greek}\p{Script=Cyrillic}]")
PROCLITICS = (
    regex.compile(r"^[והבכלמש]{1,4}$"),  # Hebrew: and, the, in, as, to, from, that
    regex.compile(r"^(?=.)[وف]?[بكلس]?(?:ال|لل|ل)?$"),  # Arabic script: and/so + in/as/to/will + the
    regex.compile(r"^(?:በ|ለ|ከ|የ|ወደ|እንደ|ስለ|ከነ)$"),  # Ethiopic (Amharic): in, for, from, of, to, like, about
)
KOREAN_PARTICLES = ("은", "는", "이", "가", "을", "를", "에", "에서", "에게", "의", "로", "으로", "와", "과", "도", "만",
                    "까지", "부터", "처럼", "보다", "이다", "였다", "이었다", "입니다", "이에요", "예요", "라고", "이라고")
ENCLITICS = (
    regex.compile(r"^(?:" + "|".join(sorted(KOREAN_PARTICLES, key=len, reverse=True)) + r"){1,2}$"),
    regex.compile(r"^(?:ን|ም|ና|ንም|ስ)$"),  # Ethiopic: object, also, and
)


DIGITS = regex.compile(r"[\p{Nd}--[0-9]]", flags=regex.V1)


def normalize(text: str) -> str:
    """NFKC + case folding + ASCII digits + optional marks removed (the form both sides are compared in)."""
    text = OPTIONAL_MARKS.sub("", unicodedata.normalize("NFKC", str(text)).casefold())
    return DIGITS.sub(lambda m: str(unicodedata.digit(m.group())), text)


@lru_cache(maxsize=8192)
def _word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch).startswith("M")


@lru_cache(maxsize=8192)
def _unspaced(ch: str) -> bool:
    return bool(UNSPACED.match(ch))


def _word_around(text: str, start: int, end: int) -> tuple[str, str]:
    """The letters joined to ``text[start:end]`` on its left and on its right."""
    left = start
    while left > 0 and _word_char(text[left - 1]):
        left -= 1
    right = end
    while right < len(text) and _word_char(text[right]):
        right += 1
    return text[left:start], text[end:right]


@lru_cache(maxsize=8192)
def _latin_like(ch: str) -> bool:
    return ch.isascii() or bool(LATIN_LIKE.match(ch))


def _joins(neighbour: str, edge: str) -> bool:
    """Whether no boundary is needed between ``edge`` (the keyword's) and ``neighbour`` (the text's)."""
    if _unspaced(neighbour) or _unspaced(edge):
        return True
    return (edge.isdigit() and neighbour.isalpha() and not _latin_like(neighbour)) or \
        (neighbour.isdigit() and edge.isalpha() and not _latin_like(edge))


def _bounded(text: str, start: int, end: int) -> bool:
    before, after = _word_around(text, start, end)
    if before and not (_joins(before[-1], text[start]) or any(p.match(before) for p in PROCLITICS)):
        return False
    if after and not (_joins(after[0], text[end - 1]) or any(p.match(after) for p in ENCLITICS)):
        return False
    return True


def _forms(keyword: str) -> list[str]:
    """The normalised keyword, and without its Arabic article (القاهرة also as قاهرة after لل)."""
    k = normalize(keyword).strip()
    return [k, k[2:]] if k.startswith("ال") and len(k) > 4 else [k]


def find_keyword(text: str, keywords) -> str | None:
    """The first keyword of ``keywords`` that ``text`` states (see the module doc), or None."""
    norm = normalize(text)
    for kw in keywords:
        for k in _forms(str(kw)):
            if not k:
                continue
            start = norm.find(k)
            while start != -1:
                if _bounded(norm, start, start + len(k)):
                    return str(kw)
                start = norm.find(k, start + 1)
    return None


def contains_keyword(text: str, keywords) -> bool:
    """True when any keyword appears in ``text`` as a word (see the module doc)."""
    return find_keyword(text, keywords) is not None
