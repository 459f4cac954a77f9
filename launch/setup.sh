#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv in .venv and install mlu_dist into it.
# Idempotent: a second run only checks that everything is there.
# On a machine without a GPU the CPU torch wheel is installed first and pinned, so that no
# dependency pulls a multi-GB CUDA build. Set MLU_TORCH_SPEC to override (e.g. on a GPU node).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${MLU_VENV:-$ROOT/.venv}
TORCH_SPEC=${MLU_TORCH_SPEC:-torch==2.13.0}
say() { printf '[setup] %s\n' "$*"; }
# pip, minus this machine's notes about local mirror folders it skips; pip's own status is kept.
pip_q() { "$PY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v numactl >/dev/null; then
  # DeepSpeed's CPU accelerator asks numactl for the core layout.
  say "installing numactl (apt)"
  (apt-get install -y -qq numactl >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq numactl >/dev/null; }) \
    || say "could not install numactl; LOCAL_SIZE will be set instead"
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.mlu-installed"
want="$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c "import mlu_dist, torch, deepspeed" 2>/dev/null; then
  say "virtualenv up to date ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
  exit 0
fi
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
say "installing $TORCH_SPEC"
pip_q install -q "$TORCH_SPEC" numpy
torch_version=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
constraints="$VENV/mlu-constraints.txt"
echo "torch==$torch_version" > "$constraints"
say "installing mlu_dist[dev] (torch pinned to $torch_version)"
PIP_CONSTRAINT="$constraints" pip_q install -q -e ".[dev]"
"$PY" -c "import torch, sys; v=torch.__version__.split('+')[0]; sys.exit(0 if v=='$torch_version' else 'torch was replaced: '+v)"
echo "$want" > "$stamp"
say "done: $("$PY" -c 'import torch, deepspeed, transformers; print("torch", torch.__version__, "| deepspeed", deepspeed.__version__, "| transformers", transformers.__version__)')"
