#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. This is what .ci/run calls.
# Extra arguments go to pytest, e.g.  bash launch/test.sh -k config
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline PYTHONUNBUFFERED=1
if [ "${CI:-}" = "true" ] || [ "${MLU_SLURM:-}" = "1" ]; then
  # the real-Slurm tests need a cluster; under CI a skipped Slurm test is a failure. A cluster that
  # already answers is left alone; one started here is stopped when the run ends, however it ends.
  if command -v sinfo >/dev/null && timeout 10 sinfo -h >/dev/null 2>&1; then
    echo "[test] a Slurm cluster already answers; using it"
  else
    echo "[test] starting the local Slurm test cluster (stopped at the end)"
    trap 'echo "[test] stopping the Slurm test cluster this run started"; bash slurm/cluster-down.sh' EXIT
    bash slurm/cluster-up.sh
  fi
fi
if [ "${CI:-}" = "true" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v chromium >/dev/null; then
  # the report's page is checked in a real headless browser (tests/test_report.py)
  echo "[test] installing chromium (apt)"
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null 2>&1; }) \
    || echo "[test] could not install chromium; the report's browser test is skipped"
fi
# DeepSpeed's CPU all-reduce buffers (66 MB each in /dev/shm) survive killed runs; drop stale ones
find /dev/shm -maxdepth 1 -name 'deepspeed_allreduce_buffer_*' -mmin +10 -delete 2>/dev/null || true
echo "[test] running pytest ($(nproc) cores)"
start=$(date +%s)
status=0
.venv/bin/python -m pytest -ra --durations=20 tests "$@" || status=$?
echo "[test] pytest exit status $status after $(( $(date +%s) - start )) s"
exit $status
