"""Value checks on finished runs, shared by the GPU tests (test_gpu.py) and their CPU twins
(test_engine.py, test_unlearn.py): what a run must show beyond a 'finished' status."""

import json
from pathlib import Path

import torch

from mlu_dist.config import load_config
from mlu_dist.data import load_data
from mlu_dist.eval.likelihood import fake_preference
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.modeling import load_pretrained
from mlu_dist.tracking import read_jsonl


def losses_fall(run: Path, key: str = "train/loss") -> list[float]:
    """The logged ``key`` values of a run; the last is below the first."""
    values = [row[key] for row in read_jsonl(run / "metrics.jsonl") if key in row]
    assert len(values) >= 2 and all(torch.isfinite(torch.tensor(values))), values
    assert values[-1] < values[0], (key, values)
    return values


def _spread(model_dir: Path, run: Path, device: str) -> dict[str, dict]:
    """Per language, the fake-vs-true preference of ``model_dir`` on ``run``'s target facts."""
    cfg = load_config(ExperimentConfig, [run / "config.yaml"])
    facts, _ = load_data(cfg.data)
    targets = json.loads((run / "meta.json").read_text())["split"]["targets"]
    model, tok = load_pretrained(model_dir)
    model.to(device).eval()

    def forward(**batch):
        return model(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})

    with torch.no_grad():
        return fake_preference(forward, tok, facts, targets, facts.langs, cfg.model.max_seq_len)


def injection_moved(run: Path, device: str = "cpu") -> dict[str, float]:
    """In every injection language the fake answer's margin over the true one grew from the starting
    model to the injected one (spread.json, measured by the live engine). Returns the gains."""
    cfg = load_config(ExperimentConfig, [run / "config.yaml"])
    before = _spread(Path(json.loads((run / "meta.json").read_text())["init_from"]), run, device)
    after = json.loads((run / "spread.json").read_text())["targets"]
    gains = {lang: after[lang]["margin"] - before[lang]["margin"] for lang in cfg.inject.langs}
    assert all(g > 0 for g in gains.values()), gains
    return gains


def merged_equals_unmerged(run: Path, margin_tol: float, device: str = "cpu") -> float:
    """The exported model (LoRA merged into the weights) scores the target facts as the live engine
    did with the adapters unmerged (spread.json): the same preference in every language (at most
    one fact apart where ``margin_tol`` admits rounding) and margins within ``margin_tol``.
    Returns the largest margin difference."""
    live = json.loads((run / "spread.json").read_text())["targets"]
    merged = _spread(run / "model", run, device)
    worst = max(abs(merged[lang]["margin"] - live[lang]["margin"]) for lang in live)
    assert worst <= margin_tol, (worst, margin_tol)
    one_fact = 1.0 / min(row["n"] for row in live.values())
    pref_tol = 1e-9 if margin_tol < 1e-3 else one_fact + 1e-9
    prefs = {lang: (live[lang]["pref"], merged[lang]["pref"]) for lang in live}
    assert all(abs(a - b) <= pref_tol for a, b in prefs.values()), prefs
    return worst


def unlearning_moved(run: Path) -> float:
    """Across the forget languages the fake answer's mean margin fell from step 0 to the last curve
    point (metrics.jsonl, ``forget/<lang>/margin``). Returns the fall."""
    langs = json.loads((run / "meta.json").read_text())["forget_langs"]
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if f"forget/{langs[0]}/margin" in r]
    assert rows and rows[0]["step"] == 0 and rows[-1]["step"] > 0, [r["step"] for r in rows]
    first, last = (sum(r[f"forget/{lang}/margin"] for lang in langs) / len(langs) for r in (rows[0], rows[-1]))
    assert last < first, (langs, first, last)
    return first - last


def same_eval(a: Path, b: Path, metric: str = "fake_rate") -> None:
    """Two evaluations (SUMMARY.json) of one model give the same per-language means of ``metric``."""
    means = [{lang: row["mean"] for lang, row in json.loads(p.read_text())["metrics"][metric]["lang"].items()}
             for p in (a, b)]
    assert means[0] == means[1], means


def mlu(*args, nproc: int = 1, timeout: int = 1800) -> str:
    """Run one `mlu` command (``--nproc N`` ranks through torchrun); its stdout."""
    import subprocess

    from conftest import clean_env, mlu_cmd

    cmd = mlu_cmd(*args) + (["--nproc", str(nproc)] if nproc > 1 else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def inject_eval_unlearn(model_dir: Path, out: Path, common: list[str], zero: list[str], nproc: int, device: str,
                        copies: tuple[str, ...] = ("full",)) -> dict:
    """Inject, evaluate with each eval.model_copy in ``copies``, NPO-unlearn in en+orig, all with the
    engine settings ``zero`` at ``nproc`` ranks; asserts the values move as they must. ``common``:
    config files and keys every command shares (sizes, dtype, out_dir). Returns the measured moves."""
    mlu("inject", *common, *zero, f"inject.from_model={model_dir}", "run.name=inj", nproc=nproc)
    run = out / "inject" / "inj"
    assert json.loads((run / "DONE.json").read_text())["status"] == "finished"
    moved = {"inject_loss": losses_fall(run, "train/loss_fake"), "inject_margin": injection_moved(run, device)}
    for copy in copies:
        log = mlu("eval", str(run), "--out", str(run / f"eval-{copy}"), *common, *zero, f"eval.model_copy={copy}",
                  "eval.metrics=[fake_rate,fake_pref]", nproc=nproc)
        assert f"model copy: {copy}" in log or nproc == 1, log[-2000:]
    for copy in copies[1:]:
        same_eval(run / f"eval-{copies[0]}" / "SUMMARY.json", run / f"eval-{copy}" / "SUMMARY.json")
    mlu("unlearn", "--from", str(run), *common, *zero, "-c", "methods/npo", "forget_langs=en+orig",
        "run.name=npo", nproc=nproc)
    unlearned = out / "unlearn" / "inj" / "npo"
    moved["unlearn_loss"] = losses_fall(unlearned)
    moved["unlearn_margin"] = unlearning_moved(unlearned)
    return moved


def lora_merge_check(model_dir: Path, out: Path, common: list[str], zero: list[str], nproc: int, device: str,
                     margin_tol: float) -> float:
    """A LoRA injection whose exported (merged) model scores as the live unmerged one did."""
    mlu("inject", *common, *zero, f"inject.from_model={model_dir}", "run.name=lora", "inject.train.lora.enabled=true",
        nproc=nproc)
    run = out / "inject" / "lora"
    losses_fall(run, "train/loss_fake")
    return merged_equals_unmerged(run, margin_tol, device)
