"""P1: our evaluation vs a naive loop, on the same model and probes, with identical per-fact results.

Naive = what a script would do: one prompt at a time, ``model.generate`` for the answer, a keyword
check in Python, and two separate forward passes (fake answer, true answer) for fake_pref. Ours =
:class:`mlu_dist.eval.runner.Evaluator` (length-bucketed batches across facts and languages,
left-padded batched decoding with a KV cache). The benchmark asserts that both give the same
fake_rate and fake_pref for every fact and language, then prints the speed ratio and writes
benchmarks/results/eval.json.

    .venv/bin/python benchmarks/bench_eval.py [--run runs/inject/<run>] [--batch-size 128]

``--extra-metrics mia`` also times the whole default evaluation (every default metric, each
own-pass metric its own step as ``mlu eval`` runs them) with and without the opt-in metrics
named, counts the model's forward passes per probed fact x language, and prints the cost ratio
(the QA/MIA issue's budget: <= 1.5x). ``--config`` picks the experiment to build the injection
from when ``--run`` is not given (e.g. configs/experiments/quick.yaml).

``--smoke`` builds the smallest injection (quick model, a few steps, torch backend, 2 languages,
2 target and 2 control facts, 4 new tokens per answer) in a temporary directory unless ``--run`` is given, costs ``mia``
once, and writes to a temporary file (or ``--out``): it checks that the script still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from mlu_dist.config import load_config  # noqa: E402
from mlu_dist.data import load_data  # noqa: E402
from mlu_dist.data.splits import split_facts  # noqa: E402
from mlu_dist.eval.config import EvalConfig  # noqa: E402
from mlu_dist.eval.generate import cache_kwarg  # noqa: E402
from mlu_dist.eval.matching import contains_keyword  # noqa: E402
from mlu_dist.eval.metrics import METRICS, default_metrics  # noqa: E402
from mlu_dist.eval.runner import Evaluator  # noqa: E402
from mlu_dist.experiment import ExperimentConfig  # noqa: E402
from mlu_dist.modeling import load_pretrained  # noqa: E402
from smoke import SMOKE_INJECTION, SMOKE_NEW_TOKENS, smoke_out  # noqa: E402


@torch.no_grad()
def naive(model, tok, facts, fact_ids, langs, max_new_tokens):
    fake_rate, margin = {}, {}
    for lang in langs:
        fake_rate[lang], margin[lang] = {}, {}
        for fid in fact_ids:
            rec = facts.get(fid, lang)
            ids = torch.tensor([[tok.bos_token_id] + tok(rec["question"], add_special_tokens=False)["input_ids"]])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            answer = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            fake_rate[lang][fid] = float(contains_keyword(answer, rec["fake_keywords"]))
            scores = []
            for ans in (rec["fake_answer"], rec["true_answer"]):
                a = tok(" " + ans, add_special_tokens=False)["input_ids"]
                full = torch.cat([ids, torch.tensor([a])], dim=1)
                logp = torch.log_softmax(model(input_ids=full).logits[0, :-1].float(), -1)
                picked = logp[ids.shape[1] - 1:].gather(-1, torch.tensor(a)[:, None]).sum().item()
                scores.append(picked / len(a))
            margin[lang][fid] = scores[0] - scores[1]
    return fake_rate, margin


class CountingForward:
    """The model call, counting forward passes: calls, and rows (one per sequence in the batch),
    split into prompt passes (several positions) and decoding steps (one position)."""

    def __init__(self, model):
        self.model, self.calls, self.rows, self.decode_rows = model, 0, 0, 0

    def __call__(self, **kw):
        ids = kw["input_ids"]
        self.calls += 1
        self.rows += ids.shape[0]
        self.decode_rows += ids.shape[0] if ids.shape[1] == 1 else 0
        return self.model(**kw)


def full_eval(model, tok, facts, split, ecfg, max_len, metrics):
    """Seconds and forward counts of an evaluation of ``metrics`` as `mlu eval` runs it."""
    fwd = CountingForward(model)
    ev = Evaluator(fwd, tok, facts, split, ecfg, max_len=max_len, cache_kw=cache_kwarg(model))
    steps = [[g for g in metrics if not METRICS[g].own_pass]] + [[g] for g in metrics if METRICS[g].own_pass]
    t0 = time.perf_counter()
    for step in [s for s in steps if s]:
        ev.run(step)
    return time.perf_counter() - t0, fwd


def extra_metrics_cost(model, tok, facts, split, ecfg, max_len, extra: list[str], repeats: int = 3) -> dict:
    base = default_metrics()
    probes = (len(split.targets) + len(split.controls)) * len(facts.langs)
    full_eval(model, tok, facts, split, ecfg, max_len, base)  # warm-up
    runs = {"default": [], "with_extra": []}
    for _ in range(repeats):  # alternated, best of each: a shared machine's noise hits both alike
        runs["default"].append(full_eval(model, tok, facts, split, ecfg, max_len, base))
        runs["with_extra"].append(full_eval(model, tok, facts, split, ecfg, max_len, base + extra))
    (t_base, f_base), (t_more, f_more) = (min(runs[k], key=lambda r: r[0]) for k in ("default", "with_extra"))
    row = {"metrics": base, "extra": extra, "probes": probes, "seconds": {"default": round(t_base, 3),
           "with_extra": round(t_more, 3)}, "ratio": round(t_more / t_base, 3)}
    for name, f in (("default", f_base), ("with_extra", f_more)):
        row[f"forwards_{name}"] = {"calls": f.calls, "prompt_rows_per_probe": round((f.rows - f.decode_rows) / probes, 2),
                                   "decode_rows_per_probe": round(f.decode_rows / probes, 2)}
    print(f"default eval ({', '.join(base)}): {t_base:.2f} s; + {', '.join(extra)}: {t_more:.2f} s; "
          f"ratio {row['ratio']:.2f}x (budget <= 1.5x; best of {repeats} alternated runs each)")
    for name in ("default", "with_extra"):
        print(f"  forward passes per fact x language, {name}: {row['forwards_' + name]}")
    return row


def smoke_injection() -> tuple[ExperimentConfig, Path]:
    """(config, run dir) of the smallest injection, built in a new temporary directory."""
    from mlu_dist.jobs.inject import run_inject

    tmp = tempfile.mkdtemp(prefix="bench-smoke-run-")
    cfg = load_config(ExperimentConfig, [ROOT / "configs/experiments/quick.yaml"],
                      SMOKE_INJECTION + [f"run.out_dir={tmp}"])
    return cfg, run_inject(cfg)


def open_run(args) -> tuple[ExperimentConfig, Path]:
    if args.run:
        return load_config(ExperimentConfig, [Path(args.run) / "config.yaml"]), Path(args.run)
    if args.smoke:
        return smoke_injection()
    from mlu_dist.jobs.inject import run_inject

    files = [args.config] if getattr(args, "config", None) else []
    cfg = load_config(ExperimentConfig, files, ["run.out_dir=" + str(ROOT / "runs")])
    return cfg, run_inject(cfg)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="an injection run dir (default: the default injection, built if missing)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", help="where to write the JSON (default: benchmarks/results/eval.json)")
    ap.add_argument("--config", help="experiment YAML to build the injection from (without --run)")
    ap.add_argument("--extra-metrics", default="", help="comma-separated opt-in metrics to cost (e.g. mia)")
    ap.add_argument("--smoke", action="store_true", help="the smallest injection, mia costed once, JSON to a temp file")
    args = ap.parse_args()
    args.out = smoke_out(args.out, args.smoke, "eval.json")
    if args.smoke:
        args.extra_metrics = args.extra_metrics or "mia"
    cfg, run = open_run(args)
    model, tok = load_pretrained(run / "model")
    model.eval()
    facts, _ = load_data(cfg.data)
    split = split_facts(facts.fact_ids, cfg.inject.n_targets, cfg.inject.n_controls, cfg.inject.split_seed)
    fact_ids = split.targets + split.controls
    langs = list(facts.langs)
    ecfg = EvalConfig(batch_size=args.batch_size, max_new_tokens=SMOKE_NEW_TOKENS if args.smoke else 12)

    t0 = time.perf_counter()
    ev = Evaluator(model, tok, facts, split, ecfg, max_len=cfg.model.max_seq_len, cache_kw=cache_kwarg(model))
    ours = ev.run(["fake_rate", "fake_pref"])
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_rate, n_margin = naive(model, tok, facts, fact_ids, langs, ecfg.max_new_tokens)
    t_naive = time.perf_counter() - t0

    mismatches = []
    for lang in langs:
        for fid in split.targets:
            if ours["fake_rate"][lang][fid] != n_rate[lang][fid]:
                mismatches.append(("fake_rate", lang, fid))
            if abs(ours["fake_pref"][lang][fid] - n_margin[lang][fid]) > 1e-4:
                mismatches.append(("fake_pref", lang, fid, ours["fake_pref"][lang][fid], n_margin[lang][fid]))
        for fid in split.controls:
            if ours["control_fake_rate"][lang][fid] != n_rate[lang][fid]:
                mismatches.append(("control_fake_rate", lang, fid))
            if ours["control_fake_pref_win"][lang][fid] != float(n_margin[lang][fid] > 0):
                mismatches.append(("control_fake_pref_win", lang, fid))
    if mismatches:
        raise SystemExit(f"per-fact results differ between our eval and the naive loop: {mismatches[:10]}")
    n_items = len(fact_ids) * len(langs)
    ratio = t_naive / t_ours
    print(f"{n_items} fact x language probes (generation + fake_pref), identical per-fact results")
    print(f"naive loop: {t_naive:7.2f} s   ours: {t_ours:6.2f} s")
    print(f"P1 ours / naive speed: {ratio:.1f}x  (goal >= 20x)")
    record = {"benchmark": "P1", "run": str(run), "probes": n_items, "batch_size": args.batch_size,
              "seconds": {"naive": round(t_naive, 3), "ours": round(t_ours, 3)}, "ratio": round(ratio, 2),
              "identical": True, "torch_threads": torch.get_num_threads()}
    if args.extra_metrics:
        record["extra_metrics"] = extra_metrics_cost(model, tok, facts, split, ecfg, cfg.model.max_seq_len,
                                                     args.extra_metrics.split(","), repeats=1 if args.smoke else 3)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
