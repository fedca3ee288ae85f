#!/usr/bin/env bash
# Create (or reuse) the repository's virtual environment in .venv and install the pinned stack.
# Sourced by scripts/main.sh and scripts/test.sh; safe to run again (it skips what is installed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TORCHREC_SIDE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.torchrec-side-installed"
STACK_HASH="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/scripts/bootstrap.sh" "$ROOT/packaging/fbgemm-gpu-cpu-shim/pyproject.toml" | sha256sum | cut -c1-16)"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

if [ "$(cat "$STAMP" 2>/dev/null)" != "$STACK_HASH" ]; then
  echo "[bootstrap] installing the pinned stack into $VENV"
  "$VPY" -m pip install --quiet --upgrade pip
  # torch first, pinned, so nothing later pulls a different build.
  "$VPY" -m pip install --quiet "torch==2.13.0"
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[bootstrap] CUDA detected: installing fbgemm-gpu 1.8.0 (CUDA build)"
    "$VPY" -m pip install --quiet "fbgemm-gpu==1.8.0"
  else
    echo "[bootstrap] no CUDA: installing fbgemm-gpu-cpu 1.8.0 behind a local fbgemm-gpu stand-in"
    "$VPY" -m pip install --quiet "$ROOT/packaging/fbgemm-gpu-cpu-shim"
  fi
  "$VPY" -m pip install --quiet -e "$ROOT[all,test]"
  echo "$STACK_HASH" > "$STAMP"
fi

# The MovieLens-100K files ship inside the recbole 1.2.1 wheel; fetch the wheel once (never installed).
"$VPY" -m torchrec_side.data.fetch
export PATH="$VENV/bin:$PATH"
