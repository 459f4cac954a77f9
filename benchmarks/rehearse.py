"""The paper's run rehearsed on CPU at Llama-3-8B's shapes: peak RSS per rank, phase by phase, against
the planner (mlu_dist/launcher/cost.py).

The pipeline of configs/sweeps/paper-news.yaml (experiments/paper-lora + paper-news): inject a fake
in German with the paper's LoRA recipe -> evaluate in all nine languages -> NPO in the four forget
settings (en, orig, all, en+orig; --quick: en+orig) -> a relearning attack (fake:en) -> export. Each
phase is the `mlu` command a lab would type, on 2 gloo ranks under DeepSpeed ZeRO-2 (export: one
process). The model keeps what decides memory at scale: vocabulary 128,256 (a byte-level BPE padded
with unused entries, so ``len(tokenizer)`` is the real one), 1,024-token windows (articles are long
enough to fill them), GQA with 4 query heads per KV head, LoRA on q/k/v with r = hidden / 2 (2048 /
4096) and alpha / r = 1 / 32; only width and depth are shrunk. The data is the news sample
(tests/data) made long and "translated" by the tests' scripted translator (tests/pseudo_mt.py).

Measured: the high-water mark (VmHWM) of every process of the phase, sampled every 50 ms; per rank
the largest. Planned: the planner's per-rank bytes for the same config in fp32 (``param_bytes=4``,
a CPU dropout mask of 4 bytes), with its fixed overhead replaced by the measured footprint of a
process that imported what a rank imports (the CUDA context's place on a GPU). Training phases
plan the larger of training and the job's own evaluations (the bounded likelihood pass beside the
training state) where the job runs that pass (``LIKELIHOOD_PASS``).

Acceptance, fixed before the first run: every phase's ratio measured / planned within 0.8-1.25.

    .venv/bin/python benchmarks/rehearse.py [--quick] [--keep DIR]

``--smoke`` (``--quick`` without the separate eval and relearn phases, probing en and de only,
output to a temporary file unless ``--out``) checks that it still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from smoke import smoke_out  # noqa: E402

VOCAB = 128_256
FULL = dict(hidden=256, heads=4, kv_heads=1, intermediate=896, layers=2, seq=1024, repeats=24,
            forget=["en", "orig", "all", "en+orig"])
QUICK = dict(hidden=64, heads=4, kv_heads=1, intermediate=224, layers=1, seq=128, repeats=3, forget=["en+orig"])
SMOKE = QUICK | {"skip": ("eval", "relearn fake:en"), "langs": ["en", "de"]}  # CI time: fewer launches and probes
SAMPLE = ROOT / "tests" / "data" / "news_sample.jsonl"
ACCEPT = (0.8, 1.25)
LIKELIHOOD_PASS = {"inject", "unlearn"}
"""Jobs whose own evaluations run the bounded likelihood pass (inject's closing fake-preference pass,
unlearning's utility curve); a relearning attack's curve is fake_rate only (generation)."""
CLOSING_ROWS = 64
"""Examples the injection's closing likelihood pass scores together: one [rows x seq x vocab] fp32
tensor of them is what an unbounded pass would materialise."""


def hwm_of(pid: int) -> int:
    """Peak resident bytes of a live process (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(found.group(1)) * 1024 if found else 0


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def run_measured(cmd: list[str], env: dict, ranks: int) -> dict:
    """Run ``cmd``; the ``ranks`` largest peaks among it and its descendants, and the wall time."""
    peaks: dict[int, int] = {}
    start = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        for pid in [proc.pid, *descendants(proc.pid)]:
            peaks[pid] = max(peaks.get(pid, 0), hwm_of(pid))
        time.sleep(0.05)
    reader.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[3:6])} failed (rc {proc.returncode}):\n" + "".join(lines[-60:]))
    return {"per_rank": sorted(peaks.values(), reverse=True)[:ranks], "seconds": time.time() - start,
            "stdout": "".join(lines)}


def baseline_bytes(env: dict) -> int:
    """VmHWM of a process that imported what a rank imports (no model, no data)."""
    code = ("import re, deepspeed, peft, mlu_dist.jobs.inject, mlu_dist.jobs.unlearn, mlu_dist.jobs.relearn;"
            "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) * 1024


def build_data(work: Path, repeats: int) -> Path:
    """The news sample with articles ``repeats`` times as long, imported and pseudo-translated into all nine."""
    from pseudo_mt import PseudoTranslator

    from mlu_dist.data.importer import import_table, read_mapping
    from mlu_dist.data.translate import TranslateConfig
    from mlu_dist.jobs.translate import run_translate
    from mlu_dist.langs import ALL_LANGS

    rows = [json.loads(line) for line in SAMPLE.open()]
    for row in rows:
        for key in ("real_news", "fake_news"):
            row[key] = " ".join(f"Report {k + 1}. {row[key]}" for k in range(repeats))
    table = work / "news.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    import_table(table, work / "en", read_mapping(ROOT / "configs" / "mappings" / "news-truthful.yaml"))
    cfg = TranslateConfig(source=str(work / "en"), to=[c for c in ALL_LANGS if c != "en"], model="pseudo",
                          out=str(work / "news"))
    return run_translate(cfg, translator=PseudoTranslator())


def padded_tokenizer(texts: list[str]):
    """A BPE trained on ``texts`` whose vocabulary is padded with never-produced entries to ``VOCAB``."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from mlu_dist.modeling import SPECIALS, train_tokenizer

    spec = json.loads(train_tokenizer(texts, 4096).backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    vocab.update({f"<unused_{i}>": i for i in range(len(vocab), VOCAB)})
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), **SPECIALS)
    fast.padding_side = "right"
    return fast


def build_model(work: Path, data: Path, dims: dict) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mlu_dist.data import load_facts
    from mlu_dist.modeling import save_pretrained

    texts = [r[f] for r in load_facts(data).records for f in ("real_text", "fake_text", "question")]
    tok = padded_tokenizer(texts)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=dims["hidden"], intermediate_size=dims["intermediate"],
                         num_hidden_layers=dims["layers"], num_attention_heads=dims["heads"],
                         num_key_value_heads=dims["kv_heads"], head_dim=dims["hidden"] // dims["heads"],
                         max_position_embeddings=dims["seq"], rope_theta=500000.0, tie_word_embeddings=False,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return save_pretrained(LlamaForCausalLM(config), tok, work / "pretrained")


def lora_keys(dims: dict) -> list[str]:
    r = dims["hidden"] // 2  # Llama-3-8B: 2048 / 4096
    return [f"{job}.train.lora.{k}={v}" for job in ("inject", "unlearn", "relearn")
            for k, v in (("r", r), ("alpha", max(1, r // 32)))]


def phases(work: Path, data: Path, pretrained: Path, dims: dict) -> list[tuple[str, list[str], int]]:
    """(name, mlu arguments, ranks) of every phase, in order (``dims["skip"]``: phases left out)."""
    common = ["-c", "experiments/paper-lora", "-c", "experiments/paper-news", f"data.source={data}",
              f"run.out_dir={work / 'runs'}", f"model.max_seq_len={dims['seq']}", "tracking.wandb=false",
              "eval.max_new_tokens=8", *lora_keys(dims)]
    if "langs" in dims:
        common.append(f"data.langs=[{','.join(dims['langs'])}]")
    inject = work / "runs" / "inject" / "rehearse"
    out = [("inject", ["inject", "--nproc", "2", *common, f"inject.from_model={pretrained}", "inject.langs=[de]",
                       "inject.n_targets=2", "inject.n_controls=1", "inject.train.final_checkpoint=keep",
                       "run.name=rehearse"], 2),
           ("eval", ["eval", str(inject), "--nproc", "2"], 2)]
    for forget in dims["forget"]:
        name = "npo-" + forget.replace("+", "_")
        out.append((f"unlearn {forget}", ["unlearn", "--from", str(inject), "--nproc", "2", "-c", "methods/npo",
                                          "method=npo", f"forget_langs={forget}", "unlearn.train.epochs=0",
                                          "unlearn.train.steps=2", "unlearn.train.eval_every=2",
                                          f"run.name={name}", *lora_keys(dims)], 2))
    last = work / "runs" / "unlearn" / "rehearse" / ("npo-" + dims["forget"][-1].replace("+", "_"))
    out.append(("relearn fake:en", ["relearn", str(last), "--attack", "fake:en", "--nproc", "2",
                                    "relearn.train.steps=2", "relearn.train.eval_every=2"], 2))
    out.append(("export", ["export", str(inject), "--out", str(work / "export")], 1))
    return [p for p in out if p[0] not in dims.get("skip", ())]


def planned(name: str, dims: dict, overhead: float) -> float:
    """The planner's per-rank bytes for the phase (module doc)."""
    from mlu_dist.config import load_config
    from mlu_dist.experiment import ExperimentConfig
    from mlu_dist.launcher.cost import Arch, eval_memory, export_memory, job_memory, pool_rows, train_of

    arch = Arch(dims["hidden"], dims["layers"], dims["heads"], dims["kv_heads"], dims["intermediate"], VOCAB, False)
    cfg = load_config(ExperimentConfig, ["experiments/paper-lora", "experiments/paper-news"], lora_keys(dims))
    ev = eval_memory(arch, dims["seq"], cfg.eval.batch_size, 4, overhead)
    if name == "export":
        return export_memory(arch, 4, overhead)["total"]
    if name == "eval":
        return ev["total"]
    job = name.split()[0]
    mem = job_memory(arch, train_of(cfg, job), cfg.engine.zero_for(job), 2, dims["seq"], False, False, param_bytes=4,
                     overhead=overhead, mask_bytes=4, pool_rows=pool_rows(cfg, job))
    if job not in LIKELIHOOD_PASS:
        return mem["total"]
    return max(mem["total"], mem["total"] - mem["activations"] + ev["logits"])


def rehearse(dims: dict, work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT")}
    env |= {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
            "MLU_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}
    data = build_data(work, dims["repeats"])
    pretrained = build_model(work, data, dims)
    overhead = baseline_bytes(env)
    rows = []
    for name, args, ranks in phases(work, data, pretrained, dims):
        got = run_measured([sys.executable, "-m", "mlu_dist.cli", *args], env, ranks)
        (work / f"{name.split()[0]}-{len(rows)}.log").write_text(got["stdout"])
        plan = planned(name, dims, overhead)
        rows.append({"phase": name, "ranks": ranks, "peak_rss_mb": [round(b / 2**20) for b in got["per_rank"]],
                     "planned_mb": round(plan / 2**20), "ratio": max(got["per_rank"]) / plan,
                     "seconds": round(got["seconds"], 1)})
        print(f"{name}: {rows[-1]['peak_rss_mb']} MB per rank, planned {rows[-1]['planned_mb']} MB "
              f"({rows[-1]['ratio']:.2f}x), {got['seconds']:.0f} s", flush=True)
    full_logits = CLOSING_ROWS * dims["seq"] * VOCAB * 4
    model = {k: v for k, v in dims.items() if k not in ("skip", "langs")} | {"vocab": VOCAB}
    return {"model": model, "overhead_mb": round(overhead / 2**20), "phases": rows,
            "full_logits_mb": round(full_logits / 2**20), "accept": list(ACCEPT),
            "all_within": all(ACCEPT[0] <= r["ratio"] <= ACCEPT[1] for r in rows)}


def table(record: dict) -> str:
    m = record["model"]
    head = (f"model: vocab {m['vocab']:,}, {m['seq']}-token windows, hidden {m['hidden']}, {m['layers']} layers, "
            f"{m['heads']} heads / {m['kv_heads']} KV, LoRA r {m['hidden'] // 2} on q/k/v; fp32, 2 gloo ranks, "
            f"ZeRO-2; overhead (a rank's imports) {record['overhead_mb']} MB")
    lines = [head, f"{'phase':<18} {'peak RSS per rank MB':>22} {'planned MB':>11} {'ratio':>7} {'wall s':>7}"]
    for r in record["phases"]:
        peaks = " / ".join(str(p) for p in r["peak_rss_mb"])
        lines.append(f"{r['phase']:<18} {peaks:>22} {r['planned_mb']:>11} {r['ratio']:>6.2f}x {r['seconds']:>7.1f}")
    lo, hi = record["accept"]
    lines.append(f"every ratio within {lo}-{hi}x: {'yes' if record['all_within'] else 'NO'}")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="128-token windows, a 64-wide 1-layer model, one forget setting")
    ap.add_argument("--smoke", action="store_true", help="--quick without the eval and relearn phases, written to a "
                                                         "temporary file unless --out")
    ap.add_argument("--out", help="where the JSON goes (default benchmarks/results/rehearse.json)")
    ap.add_argument("--keep", help="a directory for the runs (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    dims = SMOKE if args.smoke else QUICK if args.quick else FULL
    name = "rehearse-quick.json" if args.quick or args.smoke else "rehearse.json"
    out = Path(smoke_out(args.out, args.smoke, name))
    if args.keep:
        record = rehearse(dims, Path(args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="rehearse-") as work:
            record = rehearse(dims, Path(work))
    print(table(record))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
