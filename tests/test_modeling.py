import torch

from mlu_dist.data.world import WorldConfig, build_world
from mlu_dist.langs import ALL_LANGS
from mlu_dist.modeling import ModelConfig, build_tiny_model, load_pretrained, save_pretrained, train_tokenizer


def _corpus():
    records, corpus, _ = build_world(WorldConfig(n_people=8, n_towns=4, n_companies=4, n_rivers=3))
    return records, [row["text"] for row in corpus]


def test_tokenizer_round_trips_all_nine_languages():
    records, texts = _corpus()
    tok = train_tokenizer(texts, 1024)
    seen = set()
    for r in records:
        for text in (r["real_text"], r["fake_text"], r["question"] + " " + r["true_answer"]):
            assert tok.decode(tok(text)["input_ids"]) == text
        seen.add(r["lang"])
    assert seen == set(ALL_LANGS)
    # text the tokenizer never saw (other scripts, emoji) still round-trips: byte-level BPE
    for text in ("Ωμέγα ☃ 😀", "नमस्ते", "שלום"):
        assert tok.decode(tok(text)["input_ids"]) == text


def test_tokenizer_training_is_deterministic():
    _, texts = _corpus()
    assert train_tokenizer(texts, 800).get_vocab() == train_tokenizer(texts, 800).get_vocab()


def test_saved_model_and_tokenizer_reload_with_the_same_logits(tmp_path):
    _, texts = _corpus()
    tok = train_tokenizer(texts, 600)
    model = build_tiny_model(ModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2), tok)
    save_pretrained(model, tok, tmp_path / "m")
    model2, tok2 = load_pretrained(tmp_path / "m")
    ids = torch.tensor([tok("Where was Mira born? Кестра 出生")["input_ids"]])
    assert tok2("Where was Mira born? Кестра 出生")["input_ids"] == ids[0].tolist()
    model.eval(), model2.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, model2(ids).logits)


def test_missing_model_directory_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_pretrained(tmp_path / "empty")
