"""How a probe question is put to the model, and when its answer ends.

``eval.prompt``:
- ``raw``  the question as it is (what injection trains: "question -> answer"); the default;
- ``qa``   the question, a new line and an answer cue in the question's language ("Answer:",
           "Antwort:", "回答：", ...), for pretrained base models that otherwise keep writing;
- ``chat`` the tokenizer's chat template with the question as the user turn (instruct models).

A generated answer ends at any of the model's end ids: the tokenizer's EOS and every id of the
model's ``generation_config.eos_token_id`` (Llama-3 instruct models have several).
"""

from __future__ import annotations

from mlu_dist.config import ConfigError

PROMPTS = ("raw", "qa", "chat")

ANSWER_CUES = {"en": "Answer:", "de": "Antwort:", "fr": "Réponse :", "zh": "回答：", "ru": "Ответ:",
               "jv": "Wangsulan:", "ur": "جواب:", "ha": "Amsa:", "hy": "Պատասխան՝",
               # beyond the paper's nine (the languages of the multilingual QA benchmarks, and a few more)
               "ja": "答え：", "ko": "답:", "ar": "الجواب:", "he": "תשובה:", "hi": "उत्तर:", "th": "คำตอบ:",
               "am": "መልስ፦", "sw": "Jibu:", "fa": "پاسخ:", "id": "Jawaban:", "es": "Respuesta:", "it": "Risposta:",
               "pt": "Resposta:", "nl": "Antwoord:", "tr": "Cevap:", "vi": "Trả lời:", "pl": "Odpowiedź:",
               "uk": "Відповідь:"}


class PromptError(ConfigError):
    """The prompt format cannot be used with this tokenizer."""


def check_prompt_style(style: str, tokenizer) -> None:
    if style == "chat" and not getattr(tokenizer, "chat_template", None):
        raise PromptError("eval.prompt=chat: this model's tokenizer has no chat template (a base model?); "
                          "use eval.prompt=qa or raw")


def format_prompt(question: str, lang: str, style: str, tokenizer) -> str:
    """The text the model is given for ``question`` (see the module doc)."""
    if style == "raw":
        return question
    if style == "qa":
        if lang not in ANSWER_CUES:
            raise PromptError(f"eval.prompt=qa: no answer cue for '{lang}' (cues exist for {', '.join(ANSWER_CUES)}); "
                              f"use eval.prompt=raw or chat, or add the cue to mlu_dist/eval/prompts.py ANSWER_CUES")
        return f"{question}\n{ANSWER_CUES[lang]}"
    check_prompt_style(style, tokenizer)
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


def end_ids(tokenizer, module=None) -> list[int]:
    """Every id that ends a generated answer: the tokenizer's EOS and the model's generation end ids."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    base = module.get_base_model() if module is not None and hasattr(module, "get_base_model") else module
    config = getattr(base, "generation_config", None)
    extra = getattr(config, "eos_token_id", None) if config is not None else None
    for tid in [extra] if isinstance(extra, int) else list(extra or []):
        if tid not in ids:
            ids.append(int(tid))
    return ids
