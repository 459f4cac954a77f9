"""Evaluating the live engine's model inside a job (curves, the closing evaluation): which copy
of the model the ranks evaluate (a whole gathered copy or partitioned forwards, from free memory),
and the evaluator wired to the engine."""

from __future__ import annotations

from pathlib import Path
import dataclasses

import torch

from mlu_dist.engine.dist import DistInfo
from mlu_dist.engine.engines import TrainingEngine
from mlu_dist.jobs.common import say


def device_forward(model, device):
    """``model`` moved to ``device`` (in eval mode) and a forward that brings each batch there."""
    model.to(device).eval()

    def forward(**batch):
        return model(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})

    return forward


def model_copy_choice(setting: str, zero_stage: int, need: int, dist: DistInfo, loaded: bool) -> tuple[str, str]:
    """How an evaluation holds the model: 'full' (a whole copy per rank) or 'partitioned' (ZeRO-3
    forwards), and why. ``need`` is the whole weights' bytes; ``loaded``: a full copy is already
    in this rank's memory."""
    import torch

    if zero_stage != 3:
        return "full", f"ZeRO-{zero_stage} does not partition weights"
    if setting != "auto":
        return setting, "eval.model_copy"
    if dist.device_type == "cuda":
        import gc

        # blocks the caching allocator holds after training (freed tensors) are free for the copy:
        # without releasing them mem_get_info reports them taken and picks the slow partitioned mode
        gc.collect()
        torch.cuda.empty_cache()
        free = torch.cuda.mem_get_info(dist.local_rank)[0]
        if need * 1.3 > free:  # weights + room for the KV cache and activations
            return "partitioned", f"{need / 1e9:.1f} GB of weights do not fit the {free / 1e9:.1f} GB free on the GPU"
        return "full", f"{need / 1e9:.1f} GB of weights fit the {free / 1e9:.1f} GB free on the GPU"
    if loaded:
        return "full", f"{need / 1e9:.2f} GB of weights, already loaded in this rank's memory"
    free = _available_ram() // max(1, _local_ranks())
    if need * 1.3 > free:
        return "partitioned", f"{need / 1e9:.2f} GB of weights do not fit this rank's {free / 1e9:.2f} GB of free RAM"
    return "full", f"{need / 1e9:.2f} GB of weights fit this rank's {free / 1e9:.2f} GB of free RAM"


def _available_ram() -> int:
    """MemAvailable of /proc/meminfo in bytes (the total physical memory where it cannot be read)."""
    import os

    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _local_ranks() -> int:
    import os

    return int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0] or 1)


class EngineEvaluation:
    """Evaluations of a training engine's model (curves, the knowledge gate), with ``eval_fields``
    replacing fields of the experiment's eval config.

    Under ZeRO-3 at several ranks each :meth:`run` decides (``eval.model_copy``) between a whole
    copy per rank, gathered once for the run and freed after it (no collectives while generating),
    and the partitioned forwards in which every rank joins every forward."""

    def __init__(self, engine: TrainingEngine, tokenizer, facts, split, cfg, dist: DistInfo, **eval_fields):
        from mlu_dist.eval.generate import cache_kwarg
        from mlu_dist.eval.prompts import end_ids
        from mlu_dist.eval.runner import Evaluator, Rank

        eval_cfg = dataclasses.replace(cfg.eval, **eval_fields)
        self.engine, self.dist, self.setting = engine, dist, eval_cfg.model_copy
        self.partitioned = engine.zero_stage == 3 and dist.world_size > 1
        self.evaluator = Evaluator(engine.forward, tokenizer, facts, split, eval_cfg,
                                   Rank(dist.rank, dist.world_size, self.partitioned), cfg.model.max_seq_len,
                                   cache_kwarg(engine.module), end_ids(tokenizer, engine.module))
        self.langs = self.evaluator.langs
        self.copies: list[str] = []
        """The model copy each run used (full / partitioned)."""
        self.seconds = 0.0
        """Time spent in :meth:`run`, gathering included."""

    def run(self, names: list[str]) -> dict:
        import time

        start = time.perf_counter()
        try:
            return self._run(names)
        finally:
            self.seconds += time.perf_counter() - start

    def describe(self) -> str:
        """E.g. '3 evaluation(s) in 4.2 s (model copy: full)'."""
        copies = ", ".join(sorted(set(self.copies))) or "none"
        return f"{len(self.copies)} evaluation(s) in {self.seconds:.1f} s (model copy: {copies})"

    def _run(self, names: list[str]) -> dict:
        from mlu_dist.eval.runner import Rank

        ev, dist = self.evaluator, self.dist
        copy = "full"
        if self.partitioned:
            from mlu_dist import comm

            mine = model_copy_choice(self.setting, 3, self.engine.full_param_bytes(), dist, loaded=False)
            # every rank must take the same path (free memory differs between GPUs): partitioned if any must
            choices = comm.all_gather_object(mine)
            copy, why = next((c for c in choices if c[0] == "partitioned"), choices[0])
            if not self.copies or copy != self.copies[-1]:
                say(dist, f"eval: model copy: {copy} ({why})")
        self.copies.append(copy)
        if copy == "partitioned" or not self.partitioned:
            ev.forward, ev.who = self.engine.forward, Rank(dist.rank, dist.world_size, self.partitioned)
            return ev.run(names)
        with self.engine.inference_copy() as replica:
            ev.forward, ev.who = device_forward(replica, dist.device), Rank(dist.rank, dist.world_size)
            try:
                return ev.run(names)
            finally:
                ev.forward = self.engine.forward
