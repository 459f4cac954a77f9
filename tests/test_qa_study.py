"""QA studies as sweeps (data.qa): the TOFU-style QA set becomes the jobs' fact set and split, the
plan trains one retain model per seed, and the report shows the per-language TOFU tables and the
two figures. The QA set is tests/data/qa_small.jsonl (en, ja, ar, hi; forget / retain / holdout /
world_facts)."""

import json
import math
import subprocess

import pytest
import yaml

from conftest import ROOT, clean_env, mlu_cmd
from mlu_dist.config import load_config
from mlu_dist.data import DataConfig, DataError, load_data
from mlu_dist.data.qa_study import qa_split
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.inject.data import injection_pools
from mlu_dist.launcher.plan import expand
from mlu_dist.launcher.spec import SweepSpec

QA_SET = ROOT / "tests" / "data" / "qa_small.jsonl"
SWEEPS = ROOT / "configs" / "sweeps"
LANGS = ["en", "ja", "ar", "hi"]


def test_a_qa_set_is_the_jobs_fact_set_with_its_own_splits():
    facts, corpus = load_data(DataConfig(source=str(QA_SET), qa=True, langs=LANGS))
    split = qa_split(facts.fact_ids)
    assert split.targets == ["forget:forget0", "forget:forget1", "forget:forget2"]
    assert split.controls == ["holdout:holdout0", "holdout:holdout1", "holdout:holdout2"]  # never trained
    assert split.retain == ["retain:retain0", "retain:retain1", "retain:retain2"]
    rec = facts.get("forget:forget0", "ja")
    assert rec["fake_answer"] == rec["true_answer"] == "ローンです。" and rec["perturbed_answer"]
    # the base model learns the utility sets only: no forget, retain or holdout answer
    assert {row["fact_id"].split(":")[0] for row in corpus} == {"world_facts"} and len(corpus) == 2 * len(LANGS)


def test_learn_and_retain_model_pools_follow_the_protocol():
    cfg = load_config(ExperimentConfig, [], [f"data.source={QA_SET}", "data.qa=true", "data.langs=[en,ja,ar,hi]",
                                             "inject.langs=[ja]", "inject.fake_qa=false"])
    facts, _ = load_data(cfg.data)
    split = qa_split(facts.fact_ids)
    inject = injection_pools(facts, split, cfg.inject)  # protocol (b): forget split in ja, English retain
    assert {e.lang for e in inject["fake"]} == {"ja"} and len(inject["fake"]) == 3
    retain_texts = {t for f in split.retain for t in (facts.get(f, "en")["real_text"], facts.get(f, "en")["true_answer"])}
    assert {e.lang for e in inject["safe"]} == {"en"} and {e.completion.strip() for e in inject["safe"]} == retain_texts
    cfg.inject.safe_langs, cfg.inject.retain_only = LANGS, True  # protocol (a)'s retain model
    retain = injection_pools(facts, split, cfg.inject)
    assert retain["fake"] == [] and {e.lang for e in retain["safe"]} == set(LANGS)


def test_bad_qa_data_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="data.langs: fr not in the QA set"):
        load_data(DataConfig(source=str(QA_SET), qa=True, langs=["en", "fr"]))
    rows = [json.loads(line) for line in QA_SET.read_text(encoding="utf-8").splitlines()]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows if r["qa_id"] != "retain1" or r["lang"] != "hi"))
    with pytest.raises(DataError, match="split retain: language hi lacks 1 question"):
        load_data(DataConfig(source=str(bad), qa=True, langs=LANGS))
    with pytest.raises(DataError, match="is a directory but not a saved dataset .* import-splits --qa"):
        load_data(DataConfig(source=str(tmp_path), qa=True, langs=LANGS))


@pytest.mark.parametrize("name, injections, unlearns", [("qa-learn-unlearn", [["en", "ja", "ar", "hi"]], 3),
                                                        ("qa-inject", [["ja"]], 2)])
def test_qa_sweeps_plan_one_retain_model_per_seed(tmp_path, name, injections, unlearns):
    spec = load_config(SweepSpec, [SWEEPS / f"{name}.yaml"], [f"out_dir={tmp_path}", "axes.seeds=[0,1]"])
    cells = expand(spec)
    injects = [c for c in cells if c.stage == "inject"]
    retain = [c for c in injects if c.config.inject.retain_only]
    assert [c.config.inject.split_seed for c in retain] == [0, 1]
    assert [c.config.inject.langs for c in injects if not c.config.inject.retain_only] == injections * 2
    for c in cells:
        if c.stage == "unlearn":  # unlearning starts from the fine-tuned model, never from the reference
            assert c.deps[0] not in {r.id for r in retain}
    assert sum(c.stage == "unlearn" for c in cells) == unlearns * 2
    plan = subprocess.run(mlu_cmd("sweep", "plan", str(SWEEPS / f"{name}.yaml"), f"out_dir={tmp_path}"), cwd=ROOT,
                          capture_output=True, text=True, env=clean_env(), timeout=120)
    assert plan.returncode == 0, plan.stderr
    assert "inject-retain-s0-" in plan.stdout and f"array of {len(injections) + 1}  after: base" in plan.stdout


@pytest.mark.slow
def test_the_inject_protocol_runs_end_to_end_and_its_report_has_the_tables_and_figures(tmp_path):
    """qa-inject at the smallest size: base, retain model, a Japanese injection, two unlearning runs,
    the report; the report's rows come from the runs' EVAL.json."""
    spec = yaml.safe_load((SWEEPS / "qa-inject.yaml").read_text())
    spec["overrides"] += ["inject.train.steps=6", "base.steps=6", "eval.max_new_tokens=8", "unlearn.train.steps=2",
                          "unlearn.train.eval_every=0", "model.num_layers=1"]
    (tmp_path / "qa-inject.yaml").write_text(yaml.safe_dump(spec))
    # the debug executor runs every cell in this one process (no worker start-ups: half the time)
    proc = subprocess.run(mlu_cmd("sweep", str(tmp_path / "qa-inject.yaml"), f"out_dir={tmp_path}", "executor=debug"),
                          cwd=ROOT, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = tmp_path / "qa-inject" / "report"
    for name in ("report.md", "report.html", "qa.json", "qa_tradeoff.png", "qa_mia_heatmap.png"):
        assert (report / name).stat().st_size > 0, name
    rows = json.loads((report / "qa.json").read_text())
    labels = {lang: [r["label"] for r in rows if r["lang"] == lang] for lang in LANGS}
    assert all(got == ["finetuned [ja]", "retain", "graddiff en [ja]", "graddiff orig [ja]"] for got in labels.values())
    for r in rows:
        assert 0 <= r["forget_quality"] <= 1 and 0 <= r["mia_auc_min_k"] <= 1 and "model_utility" in r
        if r["role"] == "retain":  # the reference against itself (leakage undefined where its own AUC is 1)
            assert r["forget_quality"] == 1.0
            assert r["privleak_min_k"] == 0.0 or (math.isnan(r["privleak_min_k"]) and r["mia_auc_min_k"] == 1)
    md = (report / "report.md").read_text()
    assert md.count("| model | forget ROUGE |") == len(LANGS) and "## The paper's grid" not in md
    # a row's forget ROUGE is the mean over the forget split of that run's EVAL.json values
    ft = next(r for r in rows if r["label"] == "finetuned [ja]" and r["lang"] == "ja")
    values = json.loads((tmp_path / ft["run_dir"] / "eval" / "EVAL.json").read_text())["values"]["qa_rouge"]["ja"]
    forget = [v for k, v in values.items() if k.startswith("forget:")]
    assert ft["forget_rouge"] == pytest.approx(sum(forget) / len(forget)) and len(forget) == 3
    _the_report_run_and_the_dashboard_show_the_tables_and_figures(report, rows)


def _the_report_run_and_the_dashboard_show_the_tables_and_figures(report, rows):
    """The sweep's report stage logged the QA report to W&B (the sweep file's tracking.mode=offline,
    real client): per language its table as qa.json holds it, the two figures; report/dashboard.json
    shows the tables (from qa.json) and the report run's figures."""
    from mlu_dist.tracking.wandb_tracker import read_offline_run

    (folder,) = (report / "wandb").glob("offline-run-*")
    run = read_offline_run(folder)
    assert run["run"]["group"] == "qa-inject" and run["run"]["job_type"] == "report"
    logged = {k: v for row in run["history"] for k, v in row.items()}
    for lang in LANGS:
        table = json.loads((folder / "files" / logged[f"report/qa/{lang}/path"]).read_text())
        mine = [r for r in rows if r["lang"] == lang]
        assert [row[0] for row in table["data"]] == [r["label"] for r in mine]
        for column, key in (("forget quality", "forget_quality"), ("MIA AUC (zlib)", "mia_auc_zlib")):
            got = [row[table["columns"].index(column)] for row in table["data"]]
            assert got == pytest.approx([r[key] for r in mine]), column
    for name in ("qa_tradeoff", "qa_mia_heatmap"):
        assert logged[f"report/{name}/_type"] == "image-file"
        assert (folder / "files" / logged[f"report/{name}/path"]).stat().st_size > 0
    dashboard = json.loads((report / "dashboard.json").read_text())
    text = "\n".join(b["text"] for b in dashboard["report"]["blocks"] if b["kind"] == "markdown")
    assert text.count("| model | forget ROUGE |") == len(LANGS)
    ja = text[text.index("### ja"):]
    assert [ja.index(f"| {label} |") for label in ("finetuned [ja]", "retain", "graddiff en [ja]")] == sorted(
        ja.index(f"| {label} |") for label in ("finetuned [ja]", "retain", "graddiff en [ja]"))
    (grid,) = [b for b in dashboard["report"]["blocks"] if b["kind"] == "panels"]
    assert grid["runs"] == [run["run"]["id"]] and grid["panels"][0]["keys"] == ["report/qa_tradeoff",
                                                                                "report/qa_mia_heatmap"]
    assert [s["name"] for s in dashboard["workspace"]["sections"]] == ["QA report"]


def test_rows_follow_the_sweeps_axis_order_not_the_labels(tmp_path):
    """References first, then methods and forget settings as the sweep file lists them (a setting it
    does not list after them, in the paper's order); alphabetical labels would put graddiff first."""
    from omegaconf import OmegaConf

    from mlu_dist.report.qa import row_order
    from mlu_dist.results import record_at

    (tmp_path / "sweep.yaml").write_text("axes:\n  inject_langs: [ja]\n  methods: [npo, graddiff]\n"
                                         "  forget_langs: [orig, en]\n")
    cells = [("unlearn", "graddiff", "all"), ("unlearn", "graddiff", "en"), ("unlearn", "npo", "en"),
             ("inject", "", "retain"), ("unlearn", "graddiff", "orig"), ("unlearn", "npo", "orig"),
             ("inject", "", "")]
    records = []
    for i, (job, method, setting) in enumerate(cells):
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "meta.json").write_text(json.dumps({"job": job}))
        cfg = {"inject": {"langs": ["ja"], "split_seed": 0, "retain_only": setting == "retain"}}
        if job == "unlearn":
            cfg["unlearn"] = {"method": method, "forget_langs": setting, "forget_scope": "all"}
        (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
        records.append(record_at(run))
    got = [(r.job, r.method, r.setting, bool(r.get("inject.retain_only"))) for r in sorted(records, key=row_order(tmp_path))]
    assert got == [("inject", "", "", False), ("inject", "", "", True), ("unlearn", "npo", "orig", False),
                   ("unlearn", "npo", "en", False), ("unlearn", "graddiff", "orig", False),
                   ("unlearn", "graddiff", "en", False), ("unlearn", "graddiff", "all", False)]


def _save_benchmark(root, rows_by_lang: dict[str, list[dict]]) -> None:
    """A multilingual TOFU-style release: <split>_<lang>/ and <split>_perturbed_<lang>/ save_to_disk folders."""
    import datasets

    datasets.disable_progress_bars()
    for code, rows in rows_by_lang.items():
        for split, role in (("forget01", "forget"), ("retain99", "retain"), ("holdout01", "holdout")):
            mine = [r for r in rows if r["split"] == role]
            datasets.Dataset.from_list([{"question": r["question"], "answer": r["answer"]} for r in mine]).save_to_disk(
                str(root / f"{split}_{code}"))
            if role != "retain":  # perturbed answers saved as text, as some releases do
                datasets.Dataset.from_list([{"question": r["question"], "answer": r["answer"],
                                             "paraphrased_answer": r["paraphrased_answer"],
                                             "perturbed_answer": repr(r["perturbed_answer"])} for r in mine]
                                           ).save_to_disk(str(root / f"{split}_perturbed_{code}"))


def test_a_benchmark_saved_as_folders_per_split_and_language_becomes_a_qa_set(tmp_path, capsys):
    from mlu_dist.cli.data import main

    rows = [json.loads(line) for line in QA_SET.read_text(encoding="utf-8").splitlines()]
    by_lang = {"ja": [r for r in rows if r["lang"] == "ja"]}
    by_lang["iw"] = [r | {"question": "עברית " + r["question"]} for r in rows if r["lang"] == "en"]  # Hebrew, deprecated code
    _save_benchmark(tmp_path / "bench", by_lang)
    roles = "forget=forget01,retain=retain99,holdout=holdout01"
    assert main(["import-splits", str(tmp_path / "bench"), "--qa", roles, "--out", str(tmp_path / "qa")]) == 0
    assert "qa.jsonl" in capsys.readouterr().out
    facts, _ = load_data(DataConfig(source=str(tmp_path / "qa" / "qa.jsonl"), qa=True, langs=["ja", "he"]))
    split = qa_split(facts.fact_ids)
    assert len(split.targets) == len(split.controls) == len(split.retain) == 3
    rec = facts.get(split.targets[0], "he")
    assert rec["question"].startswith("עברית") and rec["perturbed_answer"] == ["In Vask.", "In Orra."]
    with pytest.raises(DataError, match="base: no base-training text.*utility splits"):  # no world_facts here
        from mlu_dist.jobs.base import BaseJob

        cfg = load_config(ExperimentConfig, [], [f"data.source={tmp_path / 'qa' / 'qa.jsonl'}", "data.qa=true",
                                                 "data.langs=[ja,he]", "inject.langs=[ja]"])
        BaseJob(cfg, tmp_path / "base").setup(None, None)
    assert "perturbed_answer" not in facts.get(split.retain[0], "ja")  # retain99 has no perturbed folder here
    # one row missing in one language's holdout: one clear error naming the folders
    import datasets

    datasets.Dataset.from_list([{"question": "x", "answer": "y"}]).save_to_disk(str(tmp_path / "bench" / "holdout01_ja"))
    assert main(["import-splits", str(tmp_path / "bench"), "--qa", roles, "--out", str(tmp_path / "qa2")]) == 2
    assert "rows do not line up" in capsys.readouterr().err
    assert main(["import-splits", str(tmp_path / "bench"), "--qa", "forgt=forget01", "--out", str(tmp_path / "q")]) == 2
    assert "unknown role 'forgt'; valid: forget, retain, holdout" in capsys.readouterr().err


def test_a_qa_set_comes_from_any_datasets_source_with_messy_cells(tmp_path, capsys):
    """The same QA set as Parquet with a `lang` column, Hebrew under its deprecated code `iw` and
    perturbed answers stored as text (a JSON list, a Python repr), reads as the clean JSON lines
    do, with one warning; a list cell that is not a list is one clear error."""
    import datasets

    rows = [json.loads(line) for line in QA_SET.read_text(encoding="utf-8").splitlines()]
    messy = []
    for i, r in enumerate(rows):
        r = dict(r, lang="iw" if r["lang"] == "ar" else r["lang"])  # a Hebrew column, under its old code
        if r.get("perturbed_answer"):
            r["perturbed_answer"] = (json.dumps(r["perturbed_answer"], ensure_ascii=False) if i % 2
                                     else repr(r["perturbed_answer"]))
        messy.append(r)
    datasets.Dataset.from_list(messy).to_parquet(str(tmp_path / "qa.parquet"))
    facts, _ = load_data(DataConfig(source=str(tmp_path / "qa.parquet"), qa=True, langs=["en", "ja", "he", "hi"]))
    clean, _ = load_data(DataConfig(source=str(QA_SET), qa=True, langs=LANGS))
    assert facts.get("forget:forget1", "ja")["perturbed_answer"] == clean.get("forget:forget1", "ja")["perturbed_answer"]
    assert facts.get("forget:forget0", "he")["perturbed_answer"] == clean.get("forget:forget0", "ar")["perturbed_answer"]
    assert "language code 'iw' read as 'he'" in capsys.readouterr().err
    messy[0]["perturbed_answer"] = "In Vask; In Orra"
    datasets.Dataset.from_list(messy).to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(DataError, match="record 0: perturbed_answer must be a list of texts"):
        load_data(DataConfig(source=str(tmp_path / "bad.parquet"), qa=True, langs=["en", "ja", "he", "hi"]))
    with pytest.raises(DataError, match="QA set not found at"):
        load_data(DataConfig(source=str(tmp_path / "missing.parquet"), qa=True, langs=LANGS))
