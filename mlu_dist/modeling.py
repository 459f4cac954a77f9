"""Models and tokenizers, offline.

The embedded default is a tiny Llama-architecture model built from a config, with a byte-level
BPE tokenizer trained in-process on the training corpus. At scale ``name_or_path`` names a hub
model or a local directory and the rest of the config is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlu_dist.config import check_choice, check_positive

TINY = "tiny-llama"
DTYPES = ("auto", "float32", "bfloat16", "float16")
ATTENTION = ("sdpa", "eager", "flash_attention_2")
PARTITIONED_LOAD = ("auto", "always", "never")
PARTITION_MIN_BYTES = 10**9
"""``partitioned_load=auto`` partitions checkpoints of at least this many bytes under ZeRO-3."""


@dataclass
class ModelConfig:
    """The model to train. ``name_or_path='tiny-llama'`` builds one from the fields below."""

    name_or_path: str = TINY
    """'tiny-llama' (built from this config), a hub name or a local HF directory."""
    vocab_size: int = 3072
    """Tokenizer vocabulary size to train (tiny-llama only)."""
    hidden_size: int = 128
    """Width of the residual stream (tiny-llama only)."""
    intermediate_size: int = 384
    """Width of the MLP (tiny-llama only)."""
    num_layers: int = 4
    """Number of transformer blocks (tiny-llama only)."""
    num_heads: int = 4
    """Attention heads (tiny-llama only)."""
    max_seq_len: int = 128
    """Longest sequence in tokens; longer examples are truncated."""
    dtype: str = "auto"
    """Parameter dtype: 'auto' = float32 on CPU, bfloat16 on GPU."""
    attn_implementation: str = "sdpa"
    """Attention kernel: sdpa (PyTorch's, needs nothing), eager, or flash_attention_2 (the flash-attn
    package, GPU only; optional, never required)."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass of training jobs (less memory, ~1/3 more compute)."""
    partitioned_load: str = "auto"
    """Under ZeRO-3, build a pretrained model (and a frozen reference) partitioned as it loads: rank 0
    reads the checkpoint, every rank keeps only its shard. 'auto' does so where a whole load would
    copy the weights into every rank (transformers < 5) for checkpoints of 1 GB or more; transformers
    >= 5 memory-maps a whole load, which measured cheaper than zero.Init. Or 'always', 'never'."""

    def check(self) -> list[str]:
        out = check_choice("dtype", self.dtype, DTYPES) + check_choice("attn_implementation", self.attn_implementation,
                                                                         ATTENTION)
        out += check_choice("partitioned_load", self.partitioned_load, PARTITIONED_LOAD)
        if self.attn_implementation == "flash_attention_2":
            import importlib.util

            if importlib.util.find_spec("flash_attn") is None:
                out.append("attn_implementation: flash_attention_2 needs the flash-attn package (GPU only: pip install "
                           "flash-attn); sdpa needs nothing")
        if self.name_or_path == TINY:
            out += check_positive(self, "vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads")
            if self.num_heads > 0 and self.hidden_size > 0 and self.hidden_size % self.num_heads:
                out.append(f"hidden_size: {self.hidden_size} is not divisible by num_heads={self.num_heads}")
            if self.vocab_size < 300:
                out.append(f"vocab_size: must be >= 300 (256 bytes + specials + merges), got {self.vocab_size}")
        out += check_positive(self, "max_seq_len")
        return out

    @property
    def is_tiny(self) -> bool:
        return self.name_or_path == TINY


SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE trained on ``texts``, wrapped as a HF fast tokenizer (round-trips any script)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Han text has no spaces, so ByteLevel's letter-run rule makes a whole clause, Latin names and
    # all, one pre-token, and BPE learns clause-sized tokens that a fact missing from the zh corpus
    # never uses (zh utility perplexity 25-45 against 1.4-2.6 elsewhere): split every Han character first.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{Han}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS)
    fast.padding_side = "right"
    return fast


def torch_dtype(name: str, device_type: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if device_type == "cuda" else torch.float32
    return getattr(torch, name)


def build_tiny_model(cfg: ModelConfig, tokenizer, seed: int = 0):
    """A randomly initialised LlamaForCausalLM of the configured size (HF's own weight init)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_seq_len,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation=cfg.attn_implementation,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_pretrained(path: str | Path, dtype: str = "auto", device_type: str = "cpu", attn_implementation: str = "sdpa"):
    """``(model, tokenizer)`` from a HF directory or hub name; a clear error if it is missing."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(path)
    if not local.exists() and (str(path).startswith((".", "/")) or local.suffix):
        raise FileNotFoundError(f"model directory '{path}' does not exist")
    if local.is_dir() and not (local / "config.json").exists():
        raise FileNotFoundError(f"'{path}' holds no model (no config.json); was the run finished/exported?")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype(dtype, device_type),
                                                 attn_implementation=attn_implementation)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def checkpoint_bytes(path: str | Path) -> int | None:
    """Bytes of a local model directory's weight files (None for a hub name)."""
    local = Path(path)
    if not local.is_dir():
        return None
    return sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in local.glob(pattern))


def save_pretrained(model, tokenizer, out_dir: str | Path) -> Path:
    """Save model (safetensors) and tokenizer side by side, so both load from one directory."""
    from mlu_dist.runs.rundir import atomic_dir

    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
    return out
