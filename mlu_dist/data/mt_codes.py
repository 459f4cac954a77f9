"""Language tokens of MT models, derived from the normalised language (no table of our own).

NLLB-200 names a language by its FLORES-200 code, ISO 639-3 + script (``jpn_Jpan``, ``arb_Arab``,
``zho_Hans``); M2M-100 by ``__<ISO 639-1>__`` (``__ja__``). We read the codes the model's own
tokenizer has and match each to a language through ``langcodes``: the individual language is
folded into its macrolanguage (``arb`` -> ``ar``, ``pes`` -> ``fa``, ``swh`` -> ``sw``) and the
script must be one the language is written in (``zho_Hans`` serves ``zh``, ``zho_Hant`` serves
``zh-Hant``). A language the model lacks is one error that names it and what the model covers.
"""

from __future__ import annotations

import re

from mlu_dist.langs import LanguageError, language

NLLB_TOKEN = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")
M2M_TOKEN = re.compile(r"^__([a-z]{2,3})__$")


def token_language(token: str) -> tuple[str, str | None] | None:
    """``(language subtag, script subtag or None)`` of an MT language token, None if it is not one."""
    import langcodes

    m2m = M2M_TOKEN.match(token)
    tag = m2m.group(1) if m2m else (token.replace("_", "-") if NLLB_TOKEN.match(token) else None)
    if tag is None:
        return None
    try:
        lang = langcodes.Language.get(langcodes.standardize_tag(tag, macro=True))
    except (langcodes.LanguageTagError, ValueError):
        return None
    return (lang.language, lang.script) if lang.language else None


def _serves(token_lang: tuple[str, str | None], code: str) -> bool:
    import langcodes

    want = language(code)
    base = langcodes.Language.get(want.code)
    if token_lang[0] != base.language:
        return False
    script = token_lang[1]
    if base.script:  # an explicit script (zh-Hant) needs exactly that one
        return script in (None, base.script) if script else base.script == want.script_tag
    return script is None or script == want.script_tag or script in want.scripts


def mt_code(code: str, tokens) -> str | None:
    """The model's token for language ``code`` among ``tokens`` (None when the model lacks it)."""
    for token in tokens:
        parsed = token_language(token)
        if parsed and _serves(parsed, code):
            return token
    return None


def language_tokens(vocab) -> list[str]:
    """The MT language tokens in a tokenizer's vocabulary (sorted, so the choice is stable)."""
    return sorted(t for t in vocab if NLLB_TOKEN.match(t) or M2M_TOKEN.match(t))


def mt_codes(langs, tokens, model: str = "the MT model") -> dict[str, str]:
    """``{lang: token}`` for every language of ``langs``; a language ``tokens`` lack (or an invalid
    code) is one :class:`LanguageError` naming it and the model's languages."""
    tokens = list(tokens)
    out, lacking = {}, []
    for code in langs:
        token = mt_code(code, tokens)
        if token is None:
            lacking.append(code)
        else:
            out[code] = token
    if lacking:
        names = ", ".join(f"{c} ({language(c).name})" for c in lacking)
        shown = ", ".join(tokens[:12]) + (f", ... ({len(tokens)} in all)" if len(tokens) > 12 else "")
        raise LanguageError(f"{model} has no language token for {names}; it covers: {shown or '(none)'}")
    return out
