"""Cost of the TOFU-style QA evaluation (eval/qa.py) against today's default evaluation, on the
same model and the same facts.

The injection run's fact set is turned into a QA set: the target facts are the forget split, the
controls the holdout split, as many other facts the retain split (question -> true answer; the fake
answer as the perturbed one, the true answer as the paraphrased one, so every pass the metrics need
is made; the values themselves mean little here). Both evaluations run in every language, best of
``--repeats`` alternated runs each; forward passes are counted.

    .venv/bin/python benchmarks/bench_qa_eval.py --run runs/inject/<run> [--out benchmarks/results/qa_eval.json]

``--smoke`` builds the smallest injection (bench_eval's) unless ``--run`` is given, runs once with
4-token answers and writes to a temporary file (or ``--out``): it checks that the script still runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_eval import CountingForward, full_eval, open_run  # noqa: E402
from smoke import SMOKE_NEW_TOKENS, smoke_out  # noqa: E402

from mlu_dist.data import load_data  # noqa: E402
from mlu_dist.data.splits import FactSplit, split_facts  # noqa: E402
from mlu_dist.eval.config import EvalConfig  # noqa: E402
from mlu_dist.eval.generate import cache_kwarg  # noqa: E402
from mlu_dist.eval.metrics import default_metrics  # noqa: E402
from mlu_dist.eval.qa import score_qa, tofu_table  # noqa: E402
from mlu_dist.eval.runner import Evaluator  # noqa: E402
from mlu_dist.modeling import load_pretrained  # noqa: E402


def qa_from_facts(facts, split) -> dict:
    used = set(split.targets) | set(split.controls)
    retain = [f for f in facts.fact_ids if f not in used][:len(split.targets)]
    qa = {}
    for name, fids in (("forget", split.targets), ("holdout", split.controls), ("retain", retain)):
        for fid in fids:
            for lang in facts.langs:
                rec = facts.get(fid, lang)
                qa[name, lang, fid] = {"qa_id": fid, "lang": lang, "split": name, "question": rec["question"],
                                       "answer": rec["true_answer"], "paraphrased_answer": rec["true_answer"],
                                       "perturbed_answer": [rec["fake_answer"]]}
    return qa


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="an injection run dir (required without --smoke)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="where to write the JSON (default: benchmarks/results/qa_eval.json)")
    ap.add_argument("--smoke", action="store_true", help="the smallest injection, one repeat, JSON to a temp file")
    args = ap.parse_args()
    if not (args.run or args.smoke):
        ap.error("--run is required (or --smoke)")
    args.out = smoke_out(args.out, args.smoke, "qa_eval.json")
    if args.smoke:
        args.repeats = 1
    cfg, run = open_run(args)
    model, tok = load_pretrained(run / "model")
    model.eval()
    facts, _ = load_data(cfg.data)
    split = split_facts(facts.fact_ids, cfg.inject.n_targets, cfg.inject.n_controls, cfg.inject.split_seed)
    ecfg = EvalConfig(batch_size=args.batch_size, max_new_tokens=SMOKE_NEW_TOKENS if args.smoke else 12)
    qa = qa_from_facts(facts, split)

    def qa_eval():
        fwd = CountingForward(model)
        ev = Evaluator(fwd, tok, facts, FactSplit([], [], []), ecfg, max_len=cfg.model.max_seq_len,
                       cache_kw=cache_kwarg(model))
        t0 = time.perf_counter()
        values = score_qa(ev, qa)
        tofu_table(values, list(facts.langs), values)
        return time.perf_counter() - t0, fwd

    qa_eval()  # warm-up
    runs = {"default": [], "qa": []}
    for _ in range(args.repeats):
        runs["default"].append(full_eval(model, tok, facts, split, ecfg, cfg.model.max_seq_len, default_metrics()))
        runs["qa"].append(qa_eval())
    (t_def, f_def), (t_qa, f_qa) = (min(runs[k], key=lambda r: r[0]) for k in ("default", "qa"))
    n_def = (len(split.targets) + len(split.controls)) * len(facts.langs)
    record = {"run": str(run), "langs": len(facts.langs), "default_probes": n_def, "qa_questions": len(qa),
              "seconds": {"default": round(t_def, 3), "qa": round(t_qa, 3)}, "ratio": round(t_qa / t_def, 3),
              "forwards": {name: {"calls": f.calls, "prompt_rows_per_item": round((f.rows - f.decode_rows) / n, 2),
                                  "decode_rows_per_item": round(f.decode_rows / n, 2)}
                           for name, f, n in (("default", f_def, n_def), ("qa", f_qa, len(qa)))}}
    print(f"default eval of {n_def} fact x language probes: {t_def:.2f} s; QA eval of {len(qa)} questions "
          f"(forget {len(split.targets)} + holdout {len(split.controls)} + retain x {len(facts.langs)} languages): "
          f"{t_qa:.2f} s; ratio {record['ratio']:.2f}x (budget <= 1.5x)")
    print(f"forward passes: {record['forwards']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
