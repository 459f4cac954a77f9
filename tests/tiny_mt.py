"""A tiny, randomly initialised M2M-100 translation model + tokenizer, built offline in about a second.

``build_tiny_mt(out_dir, langs, texts)`` writes a directory that ``AutoTokenizer.from_pretrained`` and
``AutoModelForSeq2SeqLM.from_pretrained`` load back. Its outputs are garbage (random weights) but the
plumbing is that of facebook/m2m100_418M: ids ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, one
``__xx__`` token per language code, ``decoder_start_token_id`` = eos id, and the target language chosen
at generation time with ``forced_bos_token_id``.

The tokenizer adds no special tokens itself; the caller formats the source M2M-100 style::

    ids = [tok.convert_tokens_to_ids("__en__")] + tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}  # ids 0..3
VOCAB_SIZE = 400  # 256 byte symbols + specials + language tokens + a few merges
INIT_STD = 0.5  # HF's 0.02 makes a model this small ignore its input (same output for every source)
MODEL_SIZE = dict(
    d_model=32,
    encoder_layers=1,
    decoder_layers=1,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    max_position_embeddings=256,
)


def lang_token(code: str) -> str:
    """The M2M-100 language token for a code: ``"de"`` -> ``"__de__"``."""
    return f"__{code}__"


def build_tiny_mt(out_dir: Path, langs: list[str], texts: list[str], seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, M2M100Config, M2M100ForConditionalGeneration, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    lang_tokens = [lang_token(code) for code in dict.fromkeys(langs)]

    # Byte-level BPE: round-trips any script; specials first so they get ids 0..3 like M2M-100.
    bpe = Tokenizer(models.BPE(unk_token=SPECIALS["unk_token"]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(VOCAB_SIZE, 256 + len(SPECIALS) + len(lang_tokens) + 1),
        special_tokens=list(SPECIALS.values()) + lang_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, additional_special_tokens=lang_tokens, padding_side="right", **SPECIALS
    )
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in SPECIALS.items()}
    assert ids == {"bos_token": 0, "pad_token": 1, "eos_token": 2, "unk_token": 3}, ids
    assert all(tok.convert_tokens_to_ids(t) != ids["unk_token"] for t in lang_tokens)

    special = dict(
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,  # as in M2M-100 / NLLB: decoding starts from </s>
    )
    config = M2M100Config(
        vocab_size=len(tok),
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        scale_embedding=True,
        tie_word_embeddings=True,
        init_std=INIT_STD,
        **MODEL_SIZE,
        **special,
    )
    with torch.random.fork_rng(devices=[]):  # seeded init, without touching the caller's global RNG
        torch.manual_seed(seed)
        model = M2M100ForConditionalGeneration(config)
    model.eval()
    model.generation_config = GenerationConfig(**special, do_sample=False, num_beams=1)

    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir
