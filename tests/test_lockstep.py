"""ZeRO-3 lockstep with uneven last batches: every rank runs the same number of collective forwards.

Under ZeRO-3 each forward all-gathers the weights, so a rank that runs one forward fewer leaves the
others waiting until the process-group timeout (a hang). Two gloo ranks score 5 examples with the
logits row cap at 2 rows per forward and ``eval.batch_size`` 4 (cut to 3 batches by the cap, the
last of 1 example: rank 0 gets 2 batches, rank 1 one; batches of 4 and 1 split inside the forward
pass would give rank 0 two forwards and rank 1 one: the hang); the forward is a real collective (an all-reduce, as ZeRO-3's gather), the group times
out after 60 s, and the values must equal one rank's.
"""

import subprocess
import sys

import pytest

from conftest import clean_env

SCRIPT = r"""
import datetime, json, sys, types
import torch, torch.distributed as dist
from transformers import ByT5Tokenizer
from mlu_dist import comm
from mlu_dist.eval.likelihood import LOGITS_BUDGET, logit_rows
from mlu_dist.eval.runner import Evaluator
from mlu_dist.eval.sharding import Rank
from mlu_dist.tokens import Example

rank, world = int(sys.argv[2]), int(sys.argv[3])
if world > 1:
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method="tcp://127.0.0.1:%s" % sys.argv[1],
                            timeout=datetime.timedelta(seconds=60))
tok = ByT5Tokenizer()
torch.manual_seed(0)
table = torch.nn.Embedding(len(tok), len(tok))
forwards = []

def forward(input_ids, attention_mask):
    forwards.append(input_ids.shape[0])
    if world > 1:
        comm.all_reduce_sum([1.0])  # every rank must be here, as in ZeRO-3's all-gather
    return types.SimpleNamespace(logits=table(input_ids).detach())

MAX_LEN = LOGITS_BUDGET // (len(tok) * 4 * 2)  # the budget holds 2 rows of fp32 logits per forward
assert logit_rows(MAX_LEN, len(tok)) == 2
examples = [Example("question %d " % i + "x" * i, " answer %d" % i, "en") for i in range(5)]
ev = types.SimpleNamespace(cfg=types.SimpleNamespace(batch_size=4), max_len=MAX_LEN, tok=tok, forward=forward,
                           who=Rank(rank, world, lockstep=world > 1))
scores = Evaluator.score(ev, examples)
counts = comm.gather_counts(len(forwards)) if world > 1 else [len(forwards)]
print(json.dumps({"scores": scores, "forwards": counts, "rows": forwards}), flush=True)
if world > 1:
    dist.destroy_process_group()
"""


def _ranks(world: int) -> list[dict]:
    import json

    from mlu_dist.engine.dist import free_port

    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, port, str(rank), str(world)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=clean_env()) for rank in range(world)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(err[-2000:] for _, err in outs)
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


@pytest.mark.slow
@pytest.mark.distributed
def test_uneven_last_batches_keep_zero3_ranks_in_lockstep_under_the_row_cap():
    (one,) = _ranks(1)
    two = _ranks(2)
    assert one["rows"] == [2, 2, 1]  # the cap cuts 5 examples into 2 + 2 + 1
    assert two[0]["forwards"] == two[1]["forwards"] == [2, 2]  # rank 1 runs a throw-away forward
    assert two[0]["scores"] == two[1]["scores"] == one["scores"]
