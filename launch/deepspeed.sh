#!/usr/bin/env bash
# Run any `mlu` job through the deepspeed launcher on N local ranks:
#   bash launch/deepspeed.sh 2 base -c deepspeed/zero3
# The deepspeed launcher does not set OMP_NUM_THREADS (ranks would fight for cores) and counts
# CPU "devices" as NUMA nodes, so both are set here.
set -euo pipefail
cd "$(dirname "$0")/.."
nproc=${1:?usage: launch/deepspeed.sh NPROC COMMAND [args...]}; shift
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/deepspeed --num_gpus "$nproc" --master_port "${MASTER_PORT:-29512}" --module mlu_dist.cli "$@"
