"""Scripted translators for tests (no MT model can be downloaded here).

``PseudoTranslator`` "translates" deterministically into a stand-in for each language: Latin
letters become the language's script (Cyrillic for ru, CJK for zh, Arabic for ur, Armenian for
hy) and Latin-script languages get a marker suffix on every word. A keyword translated alone
becomes the same string it becomes inside an article, so the ``translated`` strategy finds it.
It proves the plumbing downstream of translation, not translation quality.

``TableTranslator`` answers from a fixed table (what a real model would have said) and counts
its calls.
"""

from __future__ import annotations

import re

_SCRIPTS = {"ru": 0x0430, "zh": 0x4E00, "ur": 0x0627, "hy": 0x0561}
_SUFFIX = {"de": "en", "fr": "é", "jv": "é", "ha": "u"}


def _letter(ch: str, lang: str) -> str:
    base = _SCRIPTS[lang]
    if "a" <= ch.lower() <= "z":
        return chr(base + (ord(ch.lower()) - ord("a")) * (3 if lang == "zh" else 1))
    return ch


def pseudo(text: str, lang: str) -> str:
    if lang == "en":
        return text
    if lang in _SCRIPTS:
        return "".join(_letter(c, lang) for c in text)
    return re.sub(r"[A-Za-z]+", lambda m: m.group(0) + _SUFFIX[lang], text)


class PseudoTranslator:
    max_tokens = 64

    def __init__(self):
        self.calls = 0

    def n_tokens(self, text: str) -> int:
        return len(text.split())

    def translate(self, texts, src, tgt):
        self.calls += 1
        return [pseudo(t, tgt) for t in texts]


class TableTranslator:
    """Outputs from ``table`` (source -> output); anything else is passed through unchanged."""

    max_tokens = 64

    def __init__(self, table: dict[str, str], fail_after: int | None = None):
        self.table, self.fail_after, self.calls, self.seen = table, fail_after, 0, []

    def n_tokens(self, text: str) -> int:
        return len(text.split())

    def translate(self, texts, src, tgt):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("translator killed")
        self.calls += 1
        self.seen += list(texts)
        return [self.table.get(t, t) for t in texts]
