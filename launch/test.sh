#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. This is what .ci/run calls.
# Extra arguments go to pytest, e.g.  bash launch/test.sh -k config
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline PYTHONUNBUFFERED=1
if [ "${CI:-}" = "true" ] || [ "${MLU_SLURM:-}" = "1" ]; then
  # the real-Slurm tests need a cluster; under CI a skipped Slurm test is a failure
  echo "[test] starting the local Slurm test cluster"
  bash slurm/cluster-up.sh
fi
# DeepSpeed's CPU all-reduce buffers (66 MB each in /dev/shm) survive killed runs; drop stale ones
find /dev/shm -maxdepth 1 -name 'deepspeed_allreduce_buffer_*' -mmin +10 -delete 2>/dev/null || true
echo "[test] running pytest ($(nproc) cores)"
exec .venv/bin/python -m pytest -ra --durations=20 tests "$@"
