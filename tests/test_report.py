"""The report's grid over several seeds: run directories written here with known per-fact values
(the aggregation is what is tested; real runs feed it in test_demo and test_sweep)."""

import json

import pytest

from mlu_dist.report import collect, grid_markdown, paper_grid

LANGS = ["en", "de", "fr", "zh", "ru", "jv", "ur", "ha", "hy"]


def _run(root, seed: int, per_lang: dict[str, list[float]], status: str = "finished"):
    from mlu_dist.eval.summary import summarize

    run = root / "unlearn" / f"de-s{seed}" / "ga-en"
    (run / "eval").mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"job": "unlearn"}))
    (run / "DONE.json").write_text(json.dumps({"status": status}))
    (run / "config.yaml").write_text(f"inject:\n  langs: [de]\nunlearn:\n  method: ga\n  forget_langs: en\n"
                                     f"  from_run: {root}/inject/de-s{seed}\n")
    values = {"fake_rate": {lang: {f"f{i}": v for i, v in enumerate(vals)} for lang, vals in per_lang.items()}}
    (run / "eval" / "EVAL.json").write_text(json.dumps({"values": values}))
    (run / "eval" / "SUMMARY.json").write_text(json.dumps({"metrics": summarize(values, ["de"])}))


def test_seeds_are_pooled_with_a_ci_over_seeds_and_facts(tmp_path):
    zeros, ones = [0.0] * 10, [1.0] * 10
    _run(tmp_path, 0, {lang: (ones if lang == "de" else zeros) for lang in LANGS})
    _run(tmp_path, 1, {lang: (ones if lang in ("de", "en") else zeros) for lang in LANGS}, status="guard_tripped")
    _run(tmp_path, 2, {lang: (ones if lang == "de" else zeros) for lang in LANGS})
    (row,) = paper_grid(collect(tmp_path), threshold=0.2)
    assert row["runs"] == 3 and row["guard_tripped"] == 1
    en, orig, high = row["cells"]["en"], row["cells"]["orig"], row["cells"]["high"]
    assert orig["mean"] == 1.0 and not orig["removed"] and high["mean"] == 0.0 and high["removed"]
    assert en["mean"] == pytest.approx(1 / 3) and not en["removed"]
    # one seed in three disagrees: the interval spans it (a CI over facts alone would be [1/3, 1/3]-ish)
    assert en["lo"] == 0.0 and en["hi"] == 1.0
    md = grid_markdown([row], 0.2)
    assert "over 3 seeds and their facts" in md and "| English (!1/3) | ✗ 0.33 [0.00,1.00]" in md


def test_one_run_shows_its_own_summary(tmp_path):
    vals = [1.0, 0.0, 0.0, 1.0, 0.0]
    _run(tmp_path, 0, {lang: vals for lang in LANGS})
    (row,) = paper_grid(collect(tmp_path), threshold=0.5)
    summary = json.loads(next(tmp_path.rglob("SUMMARY.json")).read_text())["metrics"]["fake_rate"]["group"]
    assert row["runs"] == 1 and row["cells"]["en"] == {**{k: summary["en"][k] for k in ("mean", "lo", "hi")},
                                                        "removed": True}
    assert "(mean [95% CI] over facts)" in grid_markdown([row], 0.5)


def test_the_sweeps_report_run_goes_to_the_sweeps_wandb_project(tmp_path, monkeypatch):
    """The report job reads the sweep's tracking settings (sweep_flags.json) and its offline W&B run
    carries them (real wandb client, offline)."""
    from mlu_dist.launcher.tasks import run_cell
    from mlu_dist.wandb_tracker import read_offline_run

    monkeypatch.delenv("WANDB_MODE", raising=False)
    _run(tmp_path, 0, {lang: [0.0, 1.0] for lang in LANGS})
    (tmp_path / "sweep_flags.json").write_text(json.dumps({
        "evaluate": True, "wandb_group": "my-sweep",
        "wandb": {"project": "lab-project", "entity": "", "mode": "offline", "tags": ["paper"]}}))
    assert run_cell("report", None, str(tmp_path))["status"] == "finished"
    run = read_offline_run(next((tmp_path / "report" / "wandb").glob("offline-run-*")))
    assert run["run"]["project"] == "lab-project" and run["run"]["group"] == "my-sweep"
    assert run["run"]["tags"] == ["paper"]
