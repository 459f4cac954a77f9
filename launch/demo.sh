#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the embedded default: `mlu demo`, the whole
# learn -> spread -> unlearn study on the mini-world (base, injections en/de/ha, the spread matrix,
# GA and NPO in the paper's four forget settings, the report). Extra arguments go to `mlu demo`:
#   bash launch/demo.sh --quick          test sizes, a few minutes
#   bash launch/demo.sh --seeds 0,1,2    three seeds; the grid's CIs pool them
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline PYTHONUNBUFFERED=1
rm -f /dev/shm/deepspeed_allreduce_buffer_* 2>/dev/null || true  # stale DeepSpeed CPU buffers of killed runs
exec .venv/bin/mlu demo "$@"
