#!/usr/bin/env bash
# Run any `mlu` job on N local ranks:  bash launch/torchrun.sh 2 base -c deepspeed/zero3 train.steps=100
# (the same as `mlu base --nproc 2 ...`). On CPU the ranks talk over gloo.
set -euo pipefail
cd "$(dirname "$0")/.."
nproc=${1:?usage: launch/torchrun.sh NPROC COMMAND [args...]}; shift
exec .venv/bin/python -m torch.distributed.run --nproc_per_node "$nproc" --master_port "${MASTER_PORT:-29511}" \
  -m mlu_dist.cli "$@"
