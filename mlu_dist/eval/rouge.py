"""ROUGE-L recall of a generated answer against its reference, in any script.

TOFU scores a greedy answer by ROUGE-L recall (Lin 2004: the longest common subsequence of the
two token sequences over the reference's length). The common ``rouge_score`` tokeniser keeps only
``[a-z0-9]``, so any Japanese, Arabic or Hindi answer becomes empty and scores 0 however right it
is. Here text is NFKC-normalised and case-folded, then split by script:

- scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar, ...): one
  token per grapheme cluster (a character with its combining marks);
- every other script: words, i.e. runs of letters, marks and digits (punctuation separates).

On lower-case ASCII text without stemming this gives ``rouge_score``'s tokens exactly (see
docs/qa-metrics.md for the comparison); unlike ``rouge_score`` with ``use_stemmer=True`` (as
open-unlearning calls it) no English stemmer is applied.
"""

from __future__ import annotations

import unicodedata

import regex
from fontTools.unicodedata import script as unicode_script

UNSPACED_SCRIPTS = frozenset({
    "Hani", "Hira", "Kana", "Hrkt", "Bopo", "Yiii", "Thai", "Lao", "Khmr", "Mymr", "Tibt", "Java", "Bali",
    "Sund", "Bugi", "Lana", "Tale", "Talu", "Tavt", "Cakm", "Nkgb"})
"""ISO 15924 codes of scripts written without spaces between words: tokenised per character."""

_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
_GRAPHEME = regex.compile(r"\X")


def _is_unspaced(cluster: str) -> bool:
    return unicode_script(cluster[0]) in UNSPACED_SCRIPTS


def tokenize(text: str) -> list[str]:
    """Script-aware tokens of ``text`` (NFKC, case-folded; characters where words have no spaces)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    tokens: list[str] = []
    for run in _WORD.findall(text):
        word = ""
        for cluster in _GRAPHEME.findall(run):
            if _is_unspaced(cluster):
                if word:
                    tokens.append(word)
                    word = ""
                tokens.append(cluster)
            else:
                word += cluster
        if word:
            tokens.append(word)
    return tokens


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len a * len b))."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_recall(generated: str, reference: str) -> float:
    """ROUGE-L recall: LCS(reference, generated) / number of reference tokens, in [0, 1].

    Raises ``ValueError`` for a reference with no tokens (only punctuation or spaces): its recall
    is undefined, and ``rouge_score``'s silent 0 would hide a broken data row."""
    ref = tokenize(reference)
    if not ref:
        raise ValueError(f"reference answer {reference!r} has no words or characters to score against")
    return lcs_length(ref, tokenize(generated)) / len(ref)
