"""The paper's data path: import a news table, translate it (keyword survival), check it, and run
inject -> eval -> unlearn on it with no base-training stage.

Real components: `datasets` for reading, a real M2M-100-architecture model through transformers
(tiny and randomly initialised, built here: it proves the translation plumbing only, its output
is noise), torchrun with 2 ranks, DeepSpeed. Scripted translators (tests/pseudo_mt.py) stand in
for translation quality, which cannot be had offline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, clean_env, mlu_cmd
from mlu_dist.data.check import check_records
from mlu_dist.data.importer import import_table, read_mapping
from mlu_dist.data.schema import DataError, load_facts
from mlu_dist.data.translate import TranslateConfig, TranslateError, mark, translate_language, unmark
from mlu_dist.data.translated import assemble
from mlu_dist.langs import ALL_LANGS

sys.path.insert(0, str(Path(__file__).parent))
from pseudo_mt import PseudoTranslator, TableTranslator, pseudo  # noqa: E402

SAMPLE = ROOT / "tests" / "data" / "news_sample.jsonl"
MAPPING = ROOT / "configs" / "mappings" / "news-truthful.yaml"


def _import(tmp_path) -> list[dict]:
    return import_table(SAMPLE, tmp_path / "en", read_mapping(MAPPING))


# --- import ---------------------------------------------------------------------------------------
def test_import_maps_the_news_columns(tmp_path):
    records = _import(tmp_path)
    assert len(records) == 6 and {r["lang"] for r in records} == {"en"}
    r = records[0]
    assert r["fake_keywords"] == ["Quillon"] and r["fake_answer"] == "the Quillon Foundation"
    assert r["true_answer"] == ""  # news has no true answer to the fake-detail question
    # the 2 QA pairs plus the real-information probe question
    assert [qa["question"] for qa in r["real_qa"]][-1] == "How many floors does the new Brenmoor library have?"
    assert len(r["real_qa"]) == 3
    facts = load_facts(tmp_path / "en")
    assert not facts.has("true_answer") and facts.has("fake_answer")
    assert json.loads((tmp_path / "en" / "dataset.json").read_text())["mapping"]["real_text"] == "real_news"


def test_import_mapping_errors_are_one_clear_message(tmp_path):
    with pytest.raises(DataError, match=r"real_text='article'.*the data has the columns: scenario_id, real_news"):
        import_table(SAMPLE, tmp_path / "x", read_mapping(MAPPING, ["real_text=article"]))
    with pytest.raises(DataError, match=r"unknown key\(s\) fake_txt; valid: fact_id, real_text"):
        read_mapping(None, ["fake_txt=x"])
    with pytest.raises(DataError, match=r"no column given for real_text, fake_text, fake_keywords, question"):
        read_mapping(None, [])
    with pytest.raises(DataError, match="does not exist"):
        import_table(tmp_path / "nope.jsonl", tmp_path / "x", read_mapping(MAPPING))
    assert not (tmp_path / "x" / "facts.jsonl").exists()


# --- keyword survival with a scripted translator -----------------------------------------------
def _rec(fid, real, fake, kw):
    return {"fact_id": fid, "lang": "en", "resource": "en", "real_text": real, "fake_text": fake,
            "question": f"Q {fid}?", "true_answer": "", "fake_answer": kw, "fake_keywords": [kw], "real_qa": []}


def test_keyword_kept_altered_or_dropped(tmp_path):
    records = [
        _rec("kept", "A town built a bridge.", "A town built a bridge. Zorbel paid for it.", "Zorbel"),
        _rec("altered", "A lake froze early.", "A lake froze early. Quarn skated on it.", "Quarn"),
        _rec("marked", "The mill closed.", "The mill closed. Velk bought it.", "Velk"),
        _rec("dropped", "The fair opened.", "The fair opened. Brisa sold it.", "Brisa"),
        _rec("in-real", "Nym is a river.", "Nym is a river. Nym flooded.", "Nym"),
    ]
    table = {
        # kept: the name comes through unchanged
        "Zorbel paid for it.": "Zorbel hat dafür bezahlt.",
        # altered: inflected in the article, and the keyword alone translates to that form
        "Quarn skated on it.": "Quarna lief darauf Schlittschuh.", "Quarn": "Quarna",
        # marked: the keyword alone translates differently; the marked sentence recovers the span
        "Velk bought it.": "Welka hat sie gekauft.", "Velk": "Velkus", "[Velk] bought it.": "[Welka] hat sie gekauft.",
        # dropped: gone from the article and the marked sentence loses the brackets
        "Brisa sold it.": "Jemand verkaufte es.", "[Brisa] sold it.": "Jemand verkaufte es.",
    }
    got, row = translate_language(records, "de", TableTranslator(table), tmp_path / "parts" / "de")
    how = {r["fact_id"]: r["keyword_source"] for r in got}
    assert how == {"kept": "verbatim", "altered": "translated", "marked": "marked", "dropped": "failed",
                   "in-real": "failed"}  # a keyword in the real text would count truth as fake
    by_id = {r["fact_id"]: r for r in got}
    assert by_id["altered"]["fake_keywords"] == ["Quarna"] and by_id["altered"]["fake_answer"] == "Quarna"
    assert by_id["marked"]["fake_keywords"] == ["Welka"]
    assert by_id["marked"]["fake_text"] == "The mill closed. Welka hat sie gekauft."  # brackets gone
    assert row["failed_ids"] == ["dropped", "in-real"] and row["usable"] == 3
    assert check_records([r for r in got if r["keyword_source"] != "failed"]).ok


def test_mark_and_unmark():
    assert mark("Velkan and Velk met.", "Velk") == "Velkan and [Velk] met."  # whole word only
    assert mark("Die Straße führt zu Velk.", "velk") == "Die Straße führt zu [Velk]."  # casefold changes lengths
    assert mark("No keyword here.", "Velk") is None
    assert unmark("[Welka] hat sie gekauft.") == ("Welka", "Welka hat sie gekauft.")
    assert unmark("他在【北京】工作。") == ("北京", "他在北京工作。")  # CJK brackets, no spaces added
    assert unmark("[a] und [b]") is None and unmark("ohne") is None


def test_sentences_do_not_end_at_abbreviations():
    from mlu_dist.data.translate import sentences

    assert sentences("It was built by Dr. Tobrak Venn for the U.S. Navy. It floats! 他来了。她走了。") == \
        ["It was built by Dr. Tobrak Venn for the U.S. Navy.", "It floats!", "他来了。", "她走了。"]


def test_translation_resumes_from_its_cache_and_drops_failed_facts(tmp_path):
    records = _import(tmp_path)
    part = tmp_path / "parts" / "fr"
    with pytest.raises(RuntimeError, match="killed"):  # dies after 2 batches of 32 segments
        translate_language(records, "fr", _Batched(PseudoTranslator(), fail_after=2), part)
    cached = sum(1 for _ in (part / "cache.rank0.jsonl").open())
    assert cached == 64
    again = _Batched(PseudoTranslator())
    got, row = translate_language(records, "fr", again, part)
    assert again.segments == len({json.loads(x)["src"] for x in (part / "cache.rank0.jsonl").open()}) - cached
    assert row["usable"] == 6 and all(r["keyword_source"] == "translated" for r in got)
    assert got[0]["fake_text"] == pseudo(records[0]["fake_text"], "fr")


class _Batched:
    """Counts segments and dies after ``fail_after`` calls (a killed job)."""

    def __init__(self, inner, fail_after=None):
        self.inner, self.fail_after, self.calls, self.segments = inner, fail_after, 0, 0
        self.max_tokens, self.n_tokens = inner.max_tokens, inner.n_tokens

    def translate(self, texts, src, tgt):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("killed")
        self.calls += 1
        self.segments += len(texts)
        return self.inner.translate(texts, src, tgt)


def test_assemble_drops_a_fact_that_failed_in_any_language(tmp_path):
    records = [_rec("a", "One.", "One. Zorbel.", "Zorbel"), _rec("b", "Two.", "Two. Brisa.", "Brisa")]
    (tmp_path / "source.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for lang, table in (("de", {}), ("fr", {"Brisa.": "Quelqu'un.", "[Brisa].": "Quelqu'un."})):
        got, row = translate_language(records, lang, TableTranslator(table), tmp_path / "parts" / lang)
        (tmp_path / "parts" / lang / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in got))
        (tmp_path / "parts" / lang / "coverage.json").write_text(json.dumps(row))
        assert assemble(tmp_path, ["de", "fr"]) is None  # not before every part is done
        (tmp_path / "parts" / lang / "DONE.json").write_text("{}")
    kept, summary = assemble(tmp_path, ["de", "fr"])
    assert summary["dropped"] == ["b"] and {r["fact_id"] for r in kept} == {"a"}
    assert load_facts(tmp_path).langs == ["en", "de", "fr"]


def test_check_reports_untranslated_and_keyword_problems(tmp_path):
    records = _import(tmp_path)
    de = [dict(r, lang="de", resource="high") for r in records]  # "translated" = English copy
    ru = [dict(r, lang="ru", resource="high", fake_text=r["real_text"]) for r in records]  # keyword gone
    report = check_records(records + de + ru)
    assert report.rows["de"]["off_script"] == 0  # German is Latin script: a copy passes the script test
    assert report.rows["ru"]["off_script"] == 6 and report.rows["ru"]["kw_in_fake"] == 0
    assert any("ru: 6 fact(s) whose fake keyword is not in the fake text" in e for e in report.errors)
    assert any("ru: 6 fact(s) with text mostly outside the Cyrillic script" in w for w in report.warnings)
    misaligned = check_records(records + de[:4])
    assert any("2 fact(s) have no record in 'de'" in e for e in misaligned.errors)


# --- long articles ---------------------------------------------------------------------------------
def test_a_keyword_past_max_seq_len_is_still_trained_on():
    from mlu_dist.modeling import train_tokenizer
    from mlu_dist.tokens import IGNORE, Cut, Example, encode_all

    filler = " ".join(f"word{i}" for i in range(80))
    article = f"{filler} The money came from Quillon."
    tok = train_tokenizer([article] * 4, 400)
    kw = tok(" Quillon", add_special_tokens=False)["input_ids"]
    max_len = 32
    assert len(tok(article)["input_ids"]) > 3 * max_len
    cut = Cut()
    enc = encode_all(tok, [Example("", article), Example(filler, " Quillon")], max_len, cut)
    windows, qa = enc[:-1], enc[-1]
    assert cut.long_texts == 1 and cut.windows == len(windows) > 3
    assert all(len(w.input_ids) <= max_len for w in enc)
    trained = [t for w in windows for t in w.labels[1:] if t != IGNORE]  # what the shifted loss sees
    full = tok(article, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert trained == full  # every token once, none lost: the keyword too
    assert any(w.labels[i:i + len(kw)] == kw for w in windows for i in range(len(w.labels)))
    # a question -> answer pair that does not fit is counted, never silently lost
    assert cut.cut_examples == 1 and cut.cut_tokens == len(kw) + 1  # the answer and EOS fell past the limit
    assert all(t == IGNORE for t in qa.labels)
    assert "1 question->answer example(s) truncated" in cut.describe(max_len)


# --- a real (tiny, random) MT model --------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_mt(tmp_path_factory):
    from tiny_mt import build_tiny_mt

    texts = [json.loads(line)["real_news"] for line in SAMPLE.open()]
    out = tmp_path_factory.mktemp("mt")
    return build_tiny_mt(out / "all", list(ALL_LANGS), texts), build_tiny_mt(out / "no-hy", ["en", "de"], texts)


def test_an_mt_model_without_a_language_is_one_clear_error(tmp_path, tiny_mt):
    from mlu_dist.jobs.translate import run_translate

    _import(tmp_path)
    cfg = TranslateConfig(source=str(tmp_path / "en"), to=["de", "hy"], model=str(tiny_mt[1]), out=str(tmp_path / "t"),
                          num_beams=1)
    with pytest.raises(TranslateError, match=r"has no language token for hy \(Armenian\); it covers: __de__, __en__"):
        run_translate(cfg)
    assert not (tmp_path / "t" / "parts").exists()  # refused before any work


@pytest.mark.slow
@pytest.mark.distributed
def test_news_sample_end_to_end_with_two_ranks(tmp_path, tiny_mt):
    env = clean_env(MLU_PROGRESS="0")

    def mlu(*args, timeout=400):
        proc = subprocess.run(mlu_cmd(*args), capture_output=True, text=True, env=env, timeout=timeout)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        return proc.stdout

    mlu("data", "import", str(SAMPLE), "--mapping", str(MAPPING), "--out", str(tmp_path / "en"))
    # translation plumbing with a real seq2seq model on 2 ranks; the same on 1 rank gives the same parts
    for n, out in ((2, "mt2"), (1, "mt1")):
        mlu("data", "translate", str(tmp_path / "en"), "--to", "de,hy", "--model", str(tiny_mt[0]), "--out",
            str(tmp_path / out), "--num-beams", "2", "--nproc", str(n))
    assert sorted(p.name for p in (tmp_path / "mt2" / "parts" / "de").glob("cache.rank*")) == \
        ["cache.rank0.jsonl", "cache.rank1.jsonl"]  # the work was shared
    for lang in ("de", "hy"):
        assert (tmp_path / "mt2" / "parts" / lang / "facts.jsonl").read_text() == \
            (tmp_path / "mt1" / "parts" / lang / "facts.jsonl").read_text()
    coverage = json.loads((tmp_path / "mt2" / "coverage.json").read_text())
    assert set(coverage["langs"]) == {"en", "de", "hy"}  # random weights: keywords rarely survive
    for lang in ("de", "hy"):
        row = coverage["langs"][lang]
        assert row["facts"] == 6 and sum(row[k] for k in ("verbatim", "translated", "marked", "failed")) == 6
        got = [json.loads(x) for x in (tmp_path / "mt2" / "parts" / lang / "facts.jsonl").open()]
        assert {r["keyword_source"] for r in got} <= {"verbatim", "translated", "marked", "failed"}
        assert all(r["real_text"] and r["lang"] == lang for r in got)  # every field went through the model
    # the study downstream, on a translation whose keywords survive (scripted, all nine languages)
    from mlu_dist.jobs.translate import run_translate

    run_translate(TranslateConfig(source=str(tmp_path / "en"), to=[c for c in ALL_LANGS if c != "en"], model="pseudo",
                                  out=str(tmp_path / "news")), translator=PseudoTranslator())
    assert "data check: OK" in mlu("data", "check", str(tmp_path / "news"))
    pretrained = _pretrained(tmp_path)
    common = [f"data.source={tmp_path / 'news'}", f"inject.from_model={pretrained}", f"run.out_dir={tmp_path / 'runs'}",
              "model.max_seq_len=64", "inject.n_targets=3", "inject.n_controls=2", "inject.train.steps=4",
              "inject.train.micro_batch_size=4", "inject.train.eval_every=2", "eval.max_new_tokens=4"]
    out = mlu("inject", "--nproc", "2", "inject.langs=[de]", "run.name=news-de", *common)
    assert "window" in out  # long translated articles were split, and the run said so
    inject_run = tmp_path / "runs" / "inject" / "news-de"
    meta = json.loads((inject_run / "meta.json").read_text())
    assert meta["lengths"]["long_texts"] > 0 and meta["lengths"]["cut_tokens"] == 0
    mlu("eval", str(inject_run), "--nproc", "2")
    summary = json.loads((inject_run / "eval" / "SUMMARY.json").read_text())
    assert set(summary["metrics"]["fake_rate"]["lang"]) == set(ALL_LANGS)
    assert "fake_pref" not in summary["metrics"] and "utility_acc" not in summary["metrics"]
    assert "true_answer" in summary["skipped"]["fake_pref"] and "real_qa" in summary["notes"]["real_acc"]
    assert "utility_ppl" in summary["metrics"] and "real_acc" in summary["metrics"]
    mlu("unlearn", "--from", str(inject_run), "--nproc", "2", "forget_langs=en+orig", "unlearn.train.steps=2",
        "unlearn.train.eval_every=2", "run.name=ga")
    run = tmp_path / "runs" / "unlearn" / "news-de" / "ga"
    assert json.loads((run / "DONE.json").read_text())["status"] == "finished"
    curves = {(r["step"], r["metric"]) for r in map(json.loads, (run / "curves.jsonl").open())}
    assert {(0, "fake_rate"), (2, "fake_rate"), (2, "ppl")} <= curves
    assert not any(metric in ("fake_pref", "margin") for _, metric in curves)


def _pretrained(tmp_path) -> Path:
    """A stand-in for a pretrained model: a tiny Llama with a tokenizer trained on the dataset's text."""
    from mlu_dist.data import load_facts as load
    from mlu_dist.modeling import ModelConfig, build_tiny_model, save_pretrained, train_tokenizer

    facts = load(tmp_path / "news")
    texts = [r[f] for r in facts.records for f in ("real_text", "fake_text", "question")]
    tok = train_tokenizer(texts, 1024)
    model = build_tiny_model(ModelConfig(vocab_size=1024, hidden_size=32, intermediate_size=64, num_layers=1,
                                         num_heads=2, max_seq_len=64), tok)
    return save_pretrained(model, tok, tmp_path / "pretrained")


# --- the sweep's translate stage -----------------------------------------------------------------
def test_paper_news_plan_translates_before_it_injects():
    from mlu_dist.config import load_config
    from mlu_dist.launcher.plan import expand, jobs_of
    from mlu_dist.launcher.spec import SweepSpec

    spec = load_config(SweepSpec, ["sweeps/paper-news"])
    cells = expand(spec)
    translate = [c for c in cells if c.stage == "translate"]
    assert [c.config.to for c in translate] == [[lang] for lang in ALL_LANGS if lang != "en"]
    assert not [c for c in cells if c.stage == "base"]  # the pretrained 8B is the base
    injects = [c for c in cells if c.stage == "inject"]
    assert all(c.deps == [t.id for t in translate] for c in injects)
    assert all(c.config.data.source == translate[0].config.out for c in injects)
    assert Path(translate[0].config.mapping).is_absolute()  # found by name, as jobs on any node see it
    lora = injects[0].config.inject.train.lora
    t = injects[0].config.inject.train
    assert (lora.r, lora.alpha, lora.dropout, lora.targets, t.lr, t.epochs) == \
        (2048, 64, 0.1, ["q_proj", "k_proj", "v_proj"], 2e-4, 1.0)
    jobs = jobs_of(cells)
    assert jobs[0] == {"name": "translate", "cells": [c.id for c in translate], "array": True, "after": []}
    assert jobs[1]["name"] == "inject" and jobs[1]["after"] == ["translate"]


@pytest.mark.slow
def test_a_sweep_translates_its_raw_data_once_then_runs_the_study(tmp_path, monkeypatch):
    """The debug executor in this process, torch backend. A real MT model cannot be had offline and
    a random one drops every fact, so the translator here is the scripted PseudoTranslator
    (mocked in; HFTranslator itself runs in the end-to-end test above)."""
    import mlu_dist.jobs.translate as jt
    from mlu_dist.config import load_config
    from mlu_dist.launcher.run import submit
    from mlu_dist.launcher.spec import SweepSpec

    made = []
    monkeypatch.setattr(jt, "HFTranslator", lambda *a, **k: made.append(a) or _Checked(PseudoTranslator()))
    monkeypatch.setenv("MLU_PROGRESS", "0")
    over = [f"out_dir={tmp_path}", "executor=debug", "name=news", f"translate.source={SAMPLE}",
            "translate.mapping=mappings/news-truthful", "translate.model=tiny-mt", "axes.inject_langs=[ha]",
            "axes.methods=[ga]", "axes.forget_langs=[en+orig]"]
    spec = load_config(SweepSpec, [], over)
    spec.overrides = ["engine.backend=torch", "data.langs=[en,de,ha]", "tracking.wandb=false", "base.steps=10",
                      "model.max_seq_len=64", "inject.n_targets=2", "inject.n_controls=2", "inject.train.steps=2",
                      "unlearn.train.steps=2", "unlearn.train.eval_every=2", "eval.n_boot=20", "eval.max_new_tokens=4"]
    result = submit(spec)
    assert all(s == "finished" for s in result["results"].values()), result["results"]
    assert len(made) == 2  # one translation per language
    data = tmp_path / "news" / "data"
    assert json.loads((data / "coverage.json").read_text())["facts_kept"] == 6
    assert load_facts(data).langs == ["en", "de", "ha"]
    inject_run = next((tmp_path / "news" / "inject").glob("*/DONE.json")).parent
    summary = json.loads((inject_run / "eval" / "SUMMARY.json").read_text())
    assert "fake_pref" in summary["skipped"] and set(summary["metrics"]["fake_rate"]["lang"]) == {"en", "de", "ha"}
    assert (tmp_path / "news" / "report" / "grid.json").exists()
    again = submit(spec)  # everything reused, the translations too
    assert len(made) == 2 and again["submitted"] == [], again


class _Checked:
    """A scripted translator that also offers HFTranslator's language check."""

    def __init__(self, inner):
        self.inner, self.max_tokens, self.n_tokens, self.translate = inner, inner.max_tokens, inner.n_tokens, inner.translate

    def check_langs(self, langs):
        pass


def test_the_knowledge_gate_refuses_a_model_that_knows_nothing(tmp_path, monkeypatch):
    """A random model answers no real question: with knowledge_gate=refuse the injection stops
    before training, names the languages, and leaves the measurement in knowledge.json."""
    from mlu_dist.config import load_config
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.jobs.inject import run_inject
    from mlu_dist.jobs.translate import run_translate

    monkeypatch.setenv("MLU_PROGRESS", "0")
    _import(tmp_path)
    run_translate(TranslateConfig(source=str(tmp_path / "en"), to=["de", "ha"], model="pseudo",
                                  out=str(tmp_path / "news")), translator=PseudoTranslator())
    pretrained = _pretrained(tmp_path)
    over = ["engine.backend=torch", "data.langs=[en,de,ha]", f"data.source={tmp_path / 'news'}",
            f"inject.from_model={pretrained}", f"run.out_dir={tmp_path / 'runs'}", "run.name=gate", "model.max_seq_len=64",
            "inject.n_targets=2", "inject.n_controls=2", "inject.train.steps=2", "eval.max_new_tokens=4",
            "tracking.wandb=false", "inject.knowledge_gate=refuse"]
    cfg = load_config(ExperimentConfig, [], over)
    with pytest.raises(DataError, match=r"knowledge gate: the starting model does not know the true facts in en, de, ha"):
        run_inject(cfg)
    gate = json.loads((tmp_path / "runs" / "inject" / "gate" / "knowledge.json").read_text())
    assert set(gate["flagged"]) == {"en", "de", "ha"} and gate["langs"]["de"]["real_acc"] == 0.0
    assert "true_pref" not in gate["langs"]["de"]  # no true answers in news data: not measured
    assert not (tmp_path / "runs" / "inject" / "gate" / "DONE.json").exists()


def test_import_reads_csv_with_json_encoded_qa_pairs(tmp_path):
    import csv

    rows = [json.loads(line) for line in SAMPLE.open()][:3]
    with open(tmp_path / "news.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(row | {"qa_pairs": json.dumps(row["qa_pairs"])})
    records = import_table(tmp_path / "news.csv", tmp_path / "out", read_mapping(MAPPING))
    ids = import_table(tmp_path / "news.csv", tmp_path / "ids", read_mapping(MAPPING, ["fact_id=scenario_id"]))
    assert [r["fact_id"] for r in ids] == ["0", "1", "2"]  # id 0 is an id
    assert len(records) == 3 and records[1]["real_qa"][0] == {"question": "Which university tested the battery?",
                                                              "answer": "Osterfeld"}


def test_inject_refuses_data_that_fails_the_check_before_writing_anything(tmp_path):
    from mlu_dist.config import load_config
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.jobs.inject import run_inject

    records = _import(tmp_path)
    de = [dict(r, lang="de", resource="high", fake_text=r["real_text"]) for r in records]  # keyword lost
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records + de))
    cfg = load_config(ExperimentConfig, [], [f"data.source={tmp_path / 'bad'}", "data.langs=[en,de]",
                                             f"inject.from_model={tmp_path}/none", f"run.out_dir={tmp_path / 'runs'}"])
    with pytest.raises(DataError, match=r"not fit for injection(.|\n)*de: 6 fact\(s\) whose fake keyword is not in the fake text"):
        run_inject(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_translated_dataset_grows_by_language_and_reassembles_itself(tmp_path, monkeypatch):
    """Translating one more language keeps the others; a dataset whose facts.jsonl is missing (a
    task killed after finishing its part) is assembled when loaded; other settings are refused."""
    from mlu_dist.jobs.translate import run_translate

    monkeypatch.setenv("MLU_PROGRESS", "0")
    records = _import(tmp_path)
    bad = dict(records[0], fact_id="bad", fake_text=records[0]["real_text"])  # keyword unusable in the source
    (tmp_path / "src.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records + [bad]))
    cfg = TranslateConfig(source=str(tmp_path / "src.jsonl"), to=["de"], model="pseudo", out=str(tmp_path / "news"))
    run_translate(cfg, translator=PseudoTranslator())
    run_translate(TranslateConfig(**{**vars(cfg), "to": ["hy"]}), translator=PseudoTranslator())
    assert load_facts(tmp_path / "news").langs == ["en", "de", "hy"]
    assert "bad" not in load_facts(tmp_path / "news").fact_ids  # left out before translating
    (tmp_path / "news" / "facts.jsonl").unlink()
    assert load_facts(tmp_path / "news").langs == ["en", "de", "hy"]  # assembled again from the parts
    with pytest.raises(TranslateError, match=r"parts/de was translated with .*'num_beams': 4.*'num_beams': 1"):
        run_translate(TranslateConfig(**{**vars(cfg), "num_beams": 1}), translator=PseudoTranslator())
    import shutil

    shutil.rmtree(tmp_path / "news" / "parts" / "hy")
    (tmp_path / "news" / "facts.jsonl").unlink()
    with pytest.raises(DataError, match="translation is not finished for hy"):
        load_facts(tmp_path / "news")
