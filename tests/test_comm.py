"""The project's collectives on the backend's device.

No GPU here: a process group created as ``init_process_group("cuda:gloo")`` has no CPU backend, so
it rejects CPU tensors exactly as NCCL does. That shows (1) the pattern the engine and the
evaluator used before (a CPU tensor into all_reduce) fails the way it would on a GPU cluster, and
(2) the helpers in mlu_dist/comm.py pick the CUDA device for such a group (on this CPU-only torch
they then fail for want of CUDA, not for a CPU tensor). The helpers' arithmetic across ranks runs
for real in every 2-rank test of the suite (gloo).
"""

import subprocess
import sys

import pytest

from conftest import clean_env

SCRIPT = r"""
import sys, torch, torch.distributed as dist
from mlu_dist import comm
rank = int(sys.argv[3])
dist.init_process_group(sys.argv[1], rank=rank, world_size=2, init_method="tcp://127.0.0.1:%s" % sys.argv[2])
out = {"device": str(comm.comm_device())}
try:
    dist.all_reduce(torch.ones(1))
    out["raw_cpu"] = "ok"
except Exception as exc:
    out["raw_cpu"] = str(exc).splitlines()[0]
for name, call in (("sum", lambda: comm.all_reduce_sum([1.0, 2.0])), ("counts", lambda: comm.gather_counts(3 + rank)),
                   ("all_true", lambda: comm.all_true(True))):
    try:
        out[name] = call()
    except Exception as exc:
        out[name] = "error: " + str(exc).splitlines()[0]
print(out, flush=True)
dist.destroy_process_group()  # a gloo group left to interpreter exit can abort the process (FACTS.md)
"""


def _run(backend: str) -> dict:
    """Rank 0's view of a 2-rank group (two processes)."""
    from mlu_dist.engine.dist import free_port

    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, backend, port, str(rank)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=clean_env()) for rank in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][1][-2000:] + outs[1][1][-2000:]
    return eval(outs[0][0].strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.distributed
def test_a_cuda_only_group_rejects_cpu_tensors_and_comm_targets_cuda():
    got = _run("cuda:gloo")
    assert got["raw_cpu"] == "No backend type associated with device type cpu"  # what NCCL does to the old code
    assert got["device"] == "cuda"
    for name in ("sum", "counts", "all_true"):  # the helpers never hand the group a CPU tensor
        assert "device type cpu" not in got[name] and "CUDA" in got[name], got[name]


@pytest.mark.slow
@pytest.mark.distributed
def test_on_gloo_the_helpers_use_the_cpu_and_compute():
    got = _run("gloo")
    assert got == {"device": "cpu", "raw_cpu": "ok", "sum": [2.0, 4.0], "counts": [3, 4], "all_true": True}


def test_a_one_rank_eval_runs_the_model_on_the_ranks_device():
    """The rank's device is its GPU under CUDA (a DistInfo saying so is all this needs), and the
    single-rank eval forward moves the model and every batch to it. Run here with PyTorch's "meta"
    device standing in for the GPU (a CPU tensor meeting a meta model fails, as one meeting a CUDA
    model would): proves the wiring, not CUDA itself."""
    from types import SimpleNamespace

    import torch

    from mlu_dist.engine.dist import DistInfo
    from mlu_dist.jobs.eval import device_forward

    assert DistInfo(3, 8, 3, "cuda").device == torch.device("cuda", 3)
    assert DistInfo(0, 1, 0, "cpu").device == torch.device("cpu")
    class Tiny(torch.nn.Module):  # a causal-LM-shaped module (no data-dependent ops, so it runs on meta)
        def __init__(self):
            super().__init__()
            self.emb, self.head = torch.nn.Embedding(32, 8), torch.nn.Linear(8, 32)

        def forward(self, input_ids, attention_mask):
            return SimpleNamespace(logits=self.head(self.emb(input_ids) * attention_mask[..., None]))

    model = Tiny().train()
    seen = []
    model.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["input_ids"].device), with_kwargs=True)
    forward = device_forward(model, torch.device("meta"))
    out = forward(input_ids=torch.ones(1, 4, dtype=torch.long), attention_mask=torch.ones(1, 4, dtype=torch.long))
    assert not model.training and seen == [torch.device("meta")] and out.logits.device == torch.device("meta")
    assert next(model.parameters()).device == torch.device("meta")
