"""The TOFU-style QA evaluation per language, on a small QA set in four scripts with every split,
scored for models whose knowledge is known exactly."""

import json
from types import SimpleNamespace

import pytest
import torch

from mlu_dist.data.splits import FactSplit
from mlu_dist.eval.config import EvalConfig
from mlu_dist.eval.qa import format_tofu_table, load_qa, score_qa, tofu_table
from mlu_dist.eval.runner import Evaluator
from mlu_dist.modeling import train_tokenizer
from mlu_dist.tokens import Example, encode

# (question, answer, paraphrased answer, perturbed answers) per language; qa_id = position
QUESTIONS = {
    "en": [("Where was Mira Tal born?", "In Lorn.", "Her birthplace is Lorn.", ["In Vask.", "In Orra."]),
           ("What did Ivo Bren write?", "The Salt Road.", "He wrote The Salt Road.", ["The Glass Hill.", "Night Rain."]),
           ("Which river runs by Kesh?", "The Amel.", "The Amel river.", ["The Tiro.", "The Ubba."])],
    "ja": [("ミラ・タルはどこで生まれましたか？", "ローンです。", "出身地はローンです。", ["ヴァスクです。", "オッラです。"]),
           ("イヴォ・ブレンは何を書きましたか？", "塩の道です。", "彼は塩の道を書きました。", ["硝子の丘です。", "夜の雨です。"]),
           ("ケシュのそばを流れる川は？", "アメル川です。", "アメル川が流れています。", ["ティロ川です。", "ウッバ川です。"])],
    "ar": [("أين ولدت ميرا تال؟", "في لورن.", "مسقط رأسها لورن.", ["في فاسك.", "في أورا."]),
           ("ماذا كتب إيفو برين؟", "طريق الملح.", "كتب طريق الملح.", ["تل الزجاج.", "مطر الليل."]),
           ("أي نهر يمر بكيش؟", "نهر أميل.", "إنه نهر أميل.", ["نهر تيرو.", "نهر أوبا."])],
    "hi": [("मीरा ताल का जन्म कहाँ हुआ?", "लोर्न में।", "उनका जन्मस्थान लोर्न है।", ["वास्क में।", "ओरा में।"]),
           ("इवो ब्रेन ने क्या लिखा?", "नमक की सड़क।", "उन्होंने नमक की सड़क लिखी।", ["काँच की पहाड़ी।", "रात की बारिश।"]),
           ("केश के पास कौन सी नदी बहती है?", "अमेल नदी।", "अमेल नदी बहती है।", ["तिरो नदी।", "उब्बा नदी।"])],
}
LANGS = list(QUESTIONS)
SPLIT_OF = {"forget": [0], "retain": [1], "holdout": [2]}  # x 3 variants below: 3 questions per split


def qa_records() -> list[dict]:
    out = []
    for lang, rows in QUESTIONS.items():
        for split, (idx,) in SPLIT_OF.items():
            q, a, para, pert = rows[idx]
            for v, tag in enumerate(("", "(2) ", "(3) ")):  # three questions per split and language
                out.append({"qa_id": f"{split}{v}", "lang": lang, "split": split, "question": tag + q,
                            "answer": a, "paraphrased_answer": para, "perturbed_answer": pert})
        q, a, _, pert = rows[1]
        out.append({"qa_id": "w0", "lang": lang, "split": "world_facts", "question": "(w) " + q, "answer": a,
                    "perturbed_answer": pert})
    return out


class Hist:
    """The memoriser's KV cache: each row's tokens so far."""

    def __init__(self, rows):
        self.rows = rows

    def batch_repeat_interleave(self, n):
        self.rows = [list(r) for r in self.rows for _ in range(n)]

    def batch_select_indices(self, idx):
        self.rows = [self.rows[i] for i in idx.tolist()]


class Memoriser:
    """Stands in for a causal LM whose training set is known exactly (mocked: we need exact
    knowledge): logit 10 on the next token wherever the tokens so far are a prefix of a memorised
    text, uniform elsewhere. Counts its forward calls (prompt passes vs one-token decoding steps)."""

    def __init__(self, tok, texts):
        self.vocab, self.table, self.calls = len(tok), {}, {"prompt": 0, "decode": 0}
        for prompt, completion in texts:
            ids = encode(tok, Example(prompt, completion), 256).input_ids
            self.table.update({tuple(ids[:t + 1]): ids[t + 1] for t in range(1, len(ids) - 1)})

    def __call__(self, input_ids, attention_mask=None, cache=None, **_):
        self.calls["decode" if input_ids.shape[1] == 1 else "prompt"] += 1
        new_mask = attention_mask[:, -input_ids.shape[1]:].tolist()
        rows = cache.rows if cache is not None else [[] for _ in range(input_ids.shape[0])]
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for b, (ids, mask) in enumerate(zip(input_ids.tolist(), new_mask)):
            for t, (tok, m) in enumerate(zip(ids, mask)):
                if m:
                    rows[b].append(tok)
                    nxt = self.table.get(tuple(rows[b]))
                    if nxt is not None:
                        logits[b, t, nxt] = 10.0
        return SimpleNamespace(logits=logits, cache=Hist(rows) if cache is None else cache)


@pytest.fixture(scope="module")
def qa_setup(tmp_path_factory):
    records = qa_records()
    path = tmp_path_factory.mktemp("qa") / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    texts = [r[f] for r in records for f in ("question", "answer", "paraphrased_answer") if r.get(f)]
    return load_qa(path), train_tokenizer(texts * 3, 500)


def _evaluate(qa, tok, learned_splits):
    known = [(r["question"], " " + r["answer"]) for r in qa.values() if r["split"] in learned_splits]
    lm = Memoriser(tok, known)
    ev = Evaluator(lm, tok, None, FactSplit([], [], []), EvalConfig(langs=LANGS, max_new_tokens=24, batch_size=4))
    return score_qa(ev, qa), lm


def test_qa_table_per_language_for_the_finetuned_and_the_retain_model(qa_setup):
    qa, tok = qa_setup
    finetuned, lm = _evaluate(qa, tok, {"forget", "retain", "world_facts"})
    retain_model, _ = _evaluate(qa, tok, {"retain", "world_facts"})
    n_batches = -(-len(qa) // 4)
    assert lm.calls["prompt"] == 3 * n_batches  # per question: prompt pass, candidates from its cache, answer pass
    table = tofu_table(finetuned, LANGS, retain_model)
    ref = tofu_table(retain_model, LANGS, retain_model)
    print("\n" + format_tofu_table(table))
    for lang in LANGS:  # Japanese, Arabic and Hindi answers score like English ones
        row = table[lang]
        assert row["forget_rouge"] == 1.0 and ref[lang]["forget_rouge"] < 0.5, lang
        assert row["forget_prob"] > 0.9 > ref[lang]["forget_prob"]
        assert row["mia_auc_loss"] == 1.0 and ref[lang]["mia_auc_loss"] == 0.5  # unseen forget = holdout: ties
        assert row["privleak_loss"] == pytest.approx(-100.0) and ref[lang]["privleak_loss"] == 0.0
        # the finetuned model's truth ratios move away from the retain model's 1.0 (every answer equally
        # unknown): 3 vs 3 values fully separated, KS p = 2 / C(6,3)
        assert row["forget_quality"] == pytest.approx(0.1)
        assert ref[lang]["forget_quality"] == 1.0
        assert row["model_utility"] == ref[lang]["model_utility"]  # utility sets untouched by the forget split
        assert row["mu/retain_rouge"] == 1.0 and row["mu/retain_prob"] > 0.9
        assert {"mu/retain_prob", "mu/retain_rouge", "mu/retain_truth_ratio", "mu/world_facts_prob"} <= set(row)


def test_a_broken_qa_set_is_one_error_listing_every_problem(tmp_path):
    records = qa_records()
    records = [r for r in records if not (r["lang"] == "hi" and r["qa_id"] == "forget1")]
    records[0] = {k: v for k, v in records[0].items() if k != "answer"}
    records[1]["split"] = "forgetting"
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(records))
    with pytest.raises(ValueError) as err:
        load_qa(path)
    msg = str(err.value)
    assert "missing or empty field(s) answer" in msg and "unknown split 'forgetting'" in msg
    assert "language hi lacks 1 question(s), e.g. ['forget1']" in msg


def test_mia_heatmap_and_tradeoff_figures_read_plain_data(tmp_path):
    from mlu_dist.eval.qa_figures import mia_matrix, plot_mia_heatmap, plot_tradeoff

    summaries = {"en": {"mia_auc_min_k": {"lang": {"en": {"mean": 0.5}, "ha": {"mean": 0.9}}}},
                 "all": {"mia_auc_min_k": {"lang": {"en": {"mean": 0.45}, "ja": {"mean": 0.55}}}}}
    settings, langs, rows = mia_matrix(summaries)
    assert settings == ["en", "all"] and langs == ["en", "ha", "ja"]
    assert rows[0][:2] == [0.5, 0.9] and rows[1][0] == 0.45 and rows[0][2] != rows[0][2]  # NaN: no ja there
    assert plot_mia_heatmap(summaries, tmp_path / "mia.png").stat().st_size > 1000
    with pytest.raises(KeyError, match="eval.metrics"):
        mia_matrix({"x": {"fake_rate": {}}})
    points = [{"lang": lang, "label": "ga-en", "forget_quality": 1e-5, "model_utility": 0.4} for lang in ("en", "ja")]
    points.append({"lang": "en", "label": "retain", "forget_quality": 1.0, "model_utility": 0.6, "reference": "retain"})
    assert plot_tradeoff(points, tmp_path / "tradeoff.png").stat().st_size > 1000
