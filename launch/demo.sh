#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the embedded default (the mini-world, tiny Llama).
# Extra arguments go to `mlu base`, e.g.  bash launch/demo.sh train.steps=200
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline PYTHONUNBUFFERED=1
echo "[demo] mlu base: the tiny base model on the true nine-language mini-world"
exec .venv/bin/mlu base "$@"
