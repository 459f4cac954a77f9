"""Does a generation state a given detail? Unicode-normalised, script-aware keyword matching.

Text and keyword are NFKC-normalised and case-folded. A keyword must stand as a whole word —
no letter or digit right before or after it — except next to Han characters, which are written
without spaces (so '他出生于洛达腊。' and '他出生于Lodara。' both state 洛达腊 / Lodara).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


@lru_cache(maxsize=4096)
def _is_han(ch: str) -> bool:
    return unicodedata.name(ch, "").startswith("CJK")


def _word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch).startswith("M")


def _bounded(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    for neighbour, edge in ((before, text[start]), (after, text[end - 1])):
        if neighbour and _word_char(neighbour) and not (_is_han(neighbour) or _is_han(edge)):
            return False
    return True


def contains_keyword(text: str, keywords) -> bool:
    """True when any keyword appears in ``text`` as a whole word (see module doc)."""
    norm = normalize(text)
    for kw in keywords:
        k = normalize(str(kw)).strip()
        if not k:
            continue
        start = norm.find(k)
        while start != -1:
            if _bounded(norm, start, start + len(k)):
                return True
            start = norm.find(k, start + 1)
    return False
