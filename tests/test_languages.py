"""Any language code, any script, declared resource groups (issue 25): pure functions and a
13-language, 10-script fact set written for these tests (tests/data/polyglot.jsonl)."""

import copy
import json
import re
from pathlib import Path

import pytest

from mlu_dist.data.check import check_records
from mlu_dist.data.mt_codes import mt_codes
from mlu_dist.eval.summary import language_groups
from mlu_dist.langs import (LanguageError, canonical, check_langs, effective_groups, foreign_scripts, group_problems,
                            language, script_share)
from mlu_dist.unlearn.config import resolve_langs, spec_problems

POLYGLOT = Path(__file__).parent / "data" / "polyglot.jsonl"


def polyglot() -> list[dict]:
    return [json.loads(line) for line in POLYGLOT.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("code, canon", [("iw", "he"), ("in", "id"), ("jw", "jv"), ("zh-Hans", "zh"),
                                         ("jpn_Jpan", "ja"), ("heb", "he"), ("JA", "ja"), ("zh-Hant", "zh-Hant"),
                                         ("pt-BR", "pt-BR"), ("ha", "ha")])
def test_codes_are_normalised(code, canon):
    assert canonical(code) == canon


def test_names_and_expected_scripts_come_from_cldr():
    assert language("ja").name == "Japanese" and language("ja").scripts == ("Hani", "Hira", "Kana")
    assert language("ko").scripts == ("Hang", "Hani") and language("he").scripts == ("Hebr",)
    assert {c: language(c).scripts[0] for c in ("hi", "th", "am", "ur", "hy", "ru")} == \
        {"hi": "Deva", "th": "Thai", "am": "Ethi", "ur": "Arab", "hy": "Armn", "ru": "Cyrl"}


def test_unknown_codes_are_one_error_with_the_closest_valid_ones():
    with pytest.raises(LanguageError, match="unknown language code.*japanese.*closest valid codes: ja"):
        language("japanese")
    assert check_langs("langs", ["en", "xx", "klingonese"]) == [check_langs("langs", ["en", "xx", "klingonese"])[0]]
    assert "write 'he' for 'iw' (Hebrew)" in check_langs("inject.langs", ["iw"])[0]
    assert check_langs("langs", ["en", "ja", "he", "th", "am", "sw"]) == []


def test_script_shares_know_multi_script_languages_and_report_mixing():
    assert script_share("画家ミラ・カステルはリスボンで生まれた。", language("ja").scripts) == 1.0
    korean = "화가 Mira Castel은 리스본에서 태어났다."
    assert 0.5 < script_share(korean, language("ko").scripts) < 1 and foreign_scripts(korean, "Kore") == ["Latn"]
    assert script_share("สะพานเวลเปิดใช้ในปี 1911", "Thai") == 1.0 and script_share("ሰዓሊዋ", "Ethiopic") == 1.0
    assert script_share("The painter", "Hebr") == 0.0 and script_share("1911 !", "Hebr") == 1.0


def test_polyglot_fact_set_passes_the_check_in_every_language():
    records = polyglot()
    report = check_records(records)
    assert report.ok, report.format()
    assert len(report.rows) == 13 and "he" in report.rows and "iw" not in report.rows  # iw read as he, and said
    assert len({s for code in report.rows for s in language(code).scripts}) >= 8
    assert any("'iw' read as 'he'" in n for n in report.notes)
    assert report.rows["ko"]["mixed_script"] == 1 and report.rows["ko"]["off_script"] == 0
    assert any(n.startswith("ko: 1 fact(s) mix Hangul+Han with Latin") for n in report.notes)
    assert not report.warnings, report.warnings


def test_check_flags_planted_problems_per_language():
    records = polyglot()
    by = {(r["fact_id"], r["lang"]): r for r in records}
    by[("painter", "th")]["fake_text"] = "The painter Mira Castel was born in ออสโล."  # untranslated
    by[("painter", "iw")]["fake_keywords"] = ["אוסלוֹ", "Oslo"]  # pointed: still found
    by[("bridge", "ar")]["fake_text"] = by[("bridge", "ar")]["real_text"]  # keyword gone
    by[("bridge", "ja")]["fact_id"] = "bridge-ja"  # ids not aligned
    report = check_records(records)
    assert any("'bridge-ja'" in e or "bridge-ja" in e for e in report.errors)
    assert any("have no record in 'ja'" in e for e in report.errors)
    report = check_records([r for r in records if r["fact_id"] != "bridge-ja"
                            and not (r["fact_id"] == "bridge" and r["lang"] == "ja")] + [
        dict(by[("bridge", "ja")], fact_id="bridge")])
    assert any(e.startswith("ar: 1 fact(s) whose fake keyword is not in the fake text") for e in report.errors)
    assert not any(e.startswith("he:") for e in report.errors)
    assert any(w.startswith("th: 1 fact(s) with text mostly outside the Thai script") for w in report.warnings)


def test_declared_groups_drive_forget_sets_and_summary_groups():
    langs = ["en", "ja", "ko", "zh", "ar", "he", "am", "sw"]
    groups = {"east_asian": ["ja", "ko", "zh"], "semitic": ["ar", "he", "am"]}
    # the paper's languages first (zh), then the data's order
    assert effective_groups(langs, groups) == {"east_asian": ["zh", "ja", "ko"], "semitic": ["ar", "he", "am"],
                                               "other": ["sw"]}
    assert resolve_langs("en+orig", ["ja"], langs, groups) == ["en", "ja"]
    assert resolve_langs("semitic+orig", ["ja"], langs, groups) == ["ja", "ar", "he", "am"]
    assert resolve_langs("other", ["ja"], langs) == ["ja", "ko", "ar", "he", "am", "sw"]  # zh: the paper's high
    assert language_groups(langs, ["he"], groups) == {"en": ["en"], "orig": ["he"], "east_asian": ["zh", "ja", "ko"],
                                                      "semitic": ["ar", "am"], "other": ["sw"]}
    assert spec_problems("en+semtic", tuple(groups)) and not spec_problems("en+semitic", tuple(groups))
    assert spec_problems("fake+xx") and not spec_problems("en+semitic")  # unknown groups: checked later
    bad = group_problems("data.groups", {"orig": ["ja"], "ab": ["he"], "x": ["iw", "ja"], "y": ["ja"]})
    assert len(bad) == 5 and any("'ja' is in both 'x' and 'y'" in b for b in bad)


def test_paper_groups_are_unchanged_for_its_nine():
    nine = ["en", "de", "fr", "zh", "ru", "jv", "ur", "ha", "hy"]
    assert language_groups(nine, ["de"]) == {"en": ["en"], "orig": ["de"], "high": ["fr", "zh", "ru"],
                                             "low": ["jv", "ur", "ha", "hy"]}
    assert resolve_langs("low", ["de"], nine) == ["jv", "ur", "ha", "hy"]


def test_experiment_checks_forget_groups_and_mini_world_languages(tmp_path):
    from mlu_dist.config import ConfigError, load_config
    from mlu_dist.experiment import ExperimentConfig

    with pytest.raises(ConfigError) as err:
        load_config(ExperimentConfig, [], ["data.langs=[en,ja]"])
    assert "bring a fact set" in str(err.value) and "not ja" in str(err.value)
    facts = tmp_path / "facts.jsonl"
    facts.write_text(POLYGLOT.read_text())
    cfg = load_config(ExperimentConfig, [], [f"data.source={facts}", "data.langs=[en,ja,he,ar]",
                                             "data.groups={semitic: [he, ar]}", "inject.langs=[ja]",
                                             "unlearn.forget_langs=en+semitic"])
    assert cfg.data.resource_groups() == {"semitic": ["he", "ar"], "other": ["ja"]}
    with pytest.raises(ConfigError, match="'semtic' is neither"):
        load_config(ExperimentConfig, [], [f"data.source={facts}", "data.langs=[en,ja,he,ar]",
                                           "data.groups={semitic: [he, ar]}", "unlearn.forget_langs=en+semtic"])


def test_mlu_world_for_japanese_is_a_clear_error(tmp_path, capsys):
    from mlu_dist.cli import main

    assert main(["world", "--out", str(tmp_path / "w"), "data.langs=[en,ja]"]) != 0
    err = capsys.readouterr().err
    assert "bring a fact set" in err and "Traceback" not in err


NLLB = ["eng_Latn", "jpn_Jpan", "heb_Hebr", "arb_Arab", "pes_Arab", "zho_Hans", "zho_Hant", "kor_Hang", "swh_Latn",
        "hin_Deva", "jav_Latn"]


def test_mt_codes_follow_the_normalised_language():
    assert mt_codes(["en", "ja", "he", "ar", "fa", "zh", "zh-Hant", "ko", "sw", "jv"], NLLB) == {
        "en": "eng_Latn", "ja": "jpn_Jpan", "he": "heb_Hebr", "ar": "arb_Arab", "fa": "pes_Arab", "zh": "zho_Hans",
        "zh-Hant": "zho_Hant", "ko": "kor_Hang", "sw": "swh_Latn", "jv": "jav_Latn"}
    assert mt_codes(["ja", "he"], ["__en__", "__ja__", "__he__"]) == {"ja": "__ja__", "he": "__he__"}
    with pytest.raises(LanguageError, match=r"has no language token for am \(Amharic\)"):
        mt_codes(["ja", "am"], NLLB, "the MT model 'nllb'")


# --- the saved-datasets layout of multilingual QA benchmarks -------------------------------------

def _save_splits(root: Path, records: list[dict], langs: list[str], stringify: str = "") -> None:
    import datasets

    datasets.disable_progress_bars()
    for code in langs:
        rows = [r for r in records if r["lang"] == code]
        qa = [{"question": r["question"], "answer": r["true_answer"]} for r in rows]
        pert = [q | {"paraphrased_answer": q["answer"], "paraphrased_question": q["question"] + " ",
                     "perturbed_answer": [r["fake_answer"], r["fake_answer"] + "?"]} for q, r in zip(qa, rows)]
        if code == stringify:  # a list saved as its Python repr
            pert = [p | {"perturbed_answer": repr(p["perturbed_answer"])} for p in pert]
        datasets.Dataset.from_list(qa).save_to_disk(str(root / f"forget01_{code}"))
        datasets.Dataset.from_list(pert).save_to_disk(str(root / f"forget01_perturbed_{code}"))
    datasets.Dataset.from_list([{"question": "q", "answer": "a"}]).save_to_disk(str(root / "retain99_en"))


def test_import_splits_takes_every_language_of_a_benchmark_folder(tmp_path, capsys):
    from mlu_dist.cli.data import main

    langs = ["en", "ja", "iw", "ar", "th"]
    _save_splits(tmp_path / "bench", polyglot(), langs, stringify="ar")
    out = tmp_path / "facts"
    assert main(["import-splits", str(tmp_path / "bench"), "--split", "forget01", "--out", str(out),
                 "--group", "semitic=ar,he"]) == 0
    printed = capsys.readouterr()
    assert "data check: OK" in printed.out and "'iw' read as 'he'" in printed.err
    assert "data.groups={semitic: [ar, he]}" in printed.out
    records = [json.loads(line) for line in (out / "facts.jsonl").read_text().splitlines()]
    assert sorted({r["lang"] for r in records}) == ["ar", "en", "he", "ja", "th"] and len(records) == 10
    he = next(r for r in records if r["lang"] == "he" and r["fact_id"] == "forget01-0000")
    assert he["fake_answer"] == "אוסלו" and he["resource"] == "semitic" and he["true_answer"] == "ליסבון"
    assert next(r for r in records if r["lang"] == "ar")["fake_keywords"] == ["أوسلو"]
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["not_imported"] == ["retain99"] and manifest["groups"] == {"semitic": ["ar", "he"]}


def test_import_splits_names_misaligned_and_missing_data(tmp_path):
    import datasets

    from mlu_dist.data.qa_splits import read_splits
    from mlu_dist.data.schema import DataError

    records = polyglot()
    short = copy.deepcopy(records)
    short = [r for r in short if not (r["lang"] == "ja" and r["fact_id"] == "bridge")]
    _save_splits(tmp_path / "a", short, ["en", "ja"])
    with pytest.raises(DataError, match="rows do not line up.*forget01_en 2.*forget01_ja 1"):
        read_splits(tmp_path / "a", "forget01")
    _save_splits(tmp_path / "b", records, ["en"])
    datasets.Dataset.from_list([{"question": "other", "answer": "x"}, {"question": "q2", "answer": "y"}]).save_to_disk(
        str(tmp_path / "b" / "forget01_de"))
    with pytest.raises(DataError, match="no 'forget01_perturbed_<lang>' folder for de"):
        read_splits(tmp_path / "b", "forget01")
    with pytest.raises(DataError, match="no 'forget05_<lang>' folders.*forget01"):
        read_splits(tmp_path / "b", "forget05")


@pytest.mark.slow
def test_a_quick_sweep_injects_in_ja_and_he_and_reports_the_declared_groups(tmp_path, monkeypatch):
    """The debug executor in this process, torch backend, the polyglot facts (Hebrew stored as iw):
    base, injections in ja and he, GA unlearning in en+orig and in the declared group 'semitic'."""
    from mlu_dist.config import load_config
    from mlu_dist.launcher.run import submit
    from mlu_dist.launcher.spec import SweepSpec

    monkeypatch.setenv("MLU_PROGRESS", "0")
    over = [f"out_dir={tmp_path}", "executor=debug", "name=langs", "axes.inject_langs=[ja,he]", "axes.methods=[ga]",
            "axes.forget_langs=[en+orig,semitic]"]
    spec = load_config(SweepSpec, [], over)
    spec.overrides = ["engine.backend=torch", f"data.source={POLYGLOT}", "data.langs=[en,ja,ko,he,ar]",
                      "data.groups={east_asian: [ja, ko], semitic: [he, ar]}", "inject.langs=[ja]",
                      "tracking.wandb=false", "base.steps=4", "model.num_layers=1",
                      "model.max_seq_len=64", "model.vocab_size=600", "inject.n_targets=1", "inject.n_controls=1",
                      "inject.train.steps=2", "inject.train.eval_every=2", "unlearn.train.steps=2",
                      "unlearn.train.eval_every=2", "eval.n_boot=20", "eval.max_new_tokens=4"]
    result = submit(spec)
    assert all(s == "finished" for s in result["results"].values()), result["results"]
    grid = json.loads((tmp_path / "langs" / "report" / "grid.json").read_text())
    settings = {(r["inject"], r["setting"]): set(r["cells"]) for r in grid["rows"]}
    assert settings[("ja", "semitic")] == {"en", "orig", "east_asian", "semitic"}  # ja's east_asian group keeps ko
    assert settings[("he", "en+orig")] == {"en", "orig", "east_asian", "semitic"}  # he's semitic group keeps ar
    report = (tmp_path / "langs" / "report" / "report.md").read_text()
    assert re.search(r"\| forget setting +\| English +\| original +\| east_asian +\| semitic +\| agree \|", report)
    groups_csv = next((tmp_path / "langs").rglob("groups_fake_rate.csv")).read_text()
    assert ",semitic," in groups_csv and ",east_asian," in groups_csv and ",high," not in groups_csv


def test_answer_cues_and_mapping_languages_beyond_the_nine(tmp_path, capsys):
    from mlu_dist.data.importer import read_mapping
    from mlu_dist.data.schema import DataError
    from mlu_dist.eval.prompts import PromptError, format_prompt

    assert format_prompt("ヴェル橋は何年に開通しましたか？", "ja", "qa", None).endswith("\n答え：")
    with pytest.raises(PromptError, match="no answer cue for 'xh'.*use eval.prompt=raw or chat"):
        format_prompt("Q", "xh", "qa", None)
    mapping = tmp_path / "m.yaml"
    mapping.write_text("lang: iw\ngroups: {semitic: [he, ar]}\nmap: {real_text: a, fake_text: b, fake_keywords: c, "
                       "question: d}\n")
    spec = read_mapping(str(mapping))
    assert spec.lang == "he" and spec.groups == {"semitic": ["he", "ar"]}
    assert "'iw' is read as 'he' (Hebrew)" in capsys.readouterr().err
    mapping.write_text("lang: hebrew\nmap: {real_text: a, fake_text: b, fake_keywords: c, question: d}\n")
    with pytest.raises(DataError, match="mapping: unknown language code.*hebrew.*closest valid codes: he"):
        read_mapping(str(mapping))


def test_lists_saved_as_text_are_read_in_both_importers():
    from mlu_dist.data.importer import _keywords
    from mlu_dist.data.qa_splits import as_list
    from mlu_dist.data.schema import DataError

    assert _keywords("['Oslo', 'オスロ']") == _keywords('["Oslo", "オスロ"]') == ["Oslo", "オスロ"]
    assert as_list("['אוסלו', None, '']", "x") == ["אוסלו"]
    assert as_list(None, "x") == [] and as_list("Oslo", "x") == ["Oslo"]
    with pytest.raises(DataError, match="forget01_perturbed_he row 3: perturbed_answer: a list stored as text"):
        as_list("['a', 'b'", "forget01_perturbed_he row 3: perturbed_answer")


def test_a_sweep_forget_setting_naming_no_group_is_one_clear_error():
    from mlu_dist.config import ConfigError, load_config
    from mlu_dist.launcher.plan import expand
    from mlu_dist.launcher.spec import SweepSpec

    spec = load_config(SweepSpec, ["sweeps/demo-quick"], ["axes.forget_langs=[en+semtic]"])
    with pytest.raises(ConfigError, match="axes.forget_langs: 'en\\+semtic': 'semtic' is neither a named set"):
        expand(spec)


def test_spread_matrix_and_grid_columns_follow_the_declared_groups():
    from mlu_dist.eval.matrix import group_matrix, spread_matrix
    from mlu_dist.report import GROUPS, grid_groups

    run = {lang: {"f1": v, "f2": v} for lang, v in (("en", 0.1), ("ja", 0.9), ("ko", 0.5), ("he", 0.2), ("ar", 0.0))}
    runs = {"ja": [run], "he": [run]}
    rows, cols, cells = spread_matrix(runs, n_boot=10)
    assert rows == ["he", "ja"] and cols == ["en", "ja", "ko", "he", "ar"]
    rows, cols, cells = group_matrix(runs, n_boot=10, groups={"east_asian": ["ja", "ko"], "semitic": ["he", "ar"]})
    assert cols == ["en", "orig", "east_asian", "semitic"]
    assert cells[("ja", "east_asian")]["mean"] == pytest.approx(0.5) and cells[("he", "semitic")]["mean"] == 0.0
    paper = {"de": [{"en": {"f": 1.0}, "de": {"f": 1.0}, "ha": {"f": 0.0}}]}
    assert group_matrix(paper, 10)[1] == ["en", "orig", "low"]
    assert grid_groups([{"cells": {"en": {}, "orig": {}, "low": {}}}]) == list(GROUPS)  # the paper's four, always
    declared = [{"cells": {"en": {}, "orig": {}, "semitic": {}, "other": {}}}]
    assert grid_groups(declared) == ["en", "orig", "semitic", "other"]


def test_mlu_data_check_on_the_polyglot_set(tmp_path, capsys):
    from mlu_dist.cli.data import main

    assert main(["check", str(POLYGLOT)]) == 0
    out = capsys.readouterr().out
    assert "data check: OK" in out and "note    language code 'iw' read as 'he'" in out
    bad = [dict(r, fake_keywords=["Oslo"]) if r["lang"] == "ja" else r for r in polyglot()]
    (tmp_path / "facts.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in bad))
    assert main(["check", str(tmp_path / "facts.jsonl"), "--langs", "en,ja,he"]) == 1
    assert "ERROR   ja: 2 fact(s) whose fake keyword is not in the fake text" in capsys.readouterr().out


def test_dashboard_colours_follow_the_groups():
    from mlu_dist.tracking.dashboard import HEX, colour

    assert (colour("en"), colour("de"), colour("ha")) == ("#000000", "#1f77b4", "#ff7f0e")  # the paper's
    declared = {"semitic": ["he", "ar"]}
    assert colour("he", declared) == colour("ar", declared) != colour("ja", declared)  # ja: 'other'
    names = ["east_asian", "semitic", "bantu", "indic", "tai", "slavic", "romance", "turkic", "iranian", "ethiopic"]
    assert all(colour("ja", {name: ["ja"]}) in HEX.values() for name in names)
