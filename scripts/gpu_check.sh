#!/usr/bin/env bash
# CUDA checks for SIDE on a bare CUDA machine whose Python already has torch and triton but no
# torchrec / fbgemm and no network: installs the wheels carried in wheels/gpu (made by
# scripts/fetch_gpu_wheels.sh) with --no-index --no-deps into a venv that sees the system torch,
# runs the CUDA tests, benchmarks/lookup.py --device cuda and benchmarks/train_throughput.py
# --device cuda (1 GPU, nccl), and writes JSON under $OUT (default runs/gpu_check). Budget: < 8 min
# (step limits 120 + 210 + 100 s, plus the install).
#
#   bash scripts/gpu_check.sh            # exit 0: every step passed; 3: no CUDA device; 1: a step failed
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT_DIR="${OUT:-$ROOT/runs/gpu_check}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
WHEELS="${GPU_WHEELS:-$ROOT/wheels/gpu}"
SUMMARY="$OUT_DIR/gpu_check.json"
START=$(date +%s)
declare -A RC DUR

summary() {  # writes $SUMMARY from the step results (plain Python, no project imports)
  local status="$1" note="$2"
  local steps=""
  for k in "${!RC[@]}"; do steps+="\"$k\": {\"rc\": ${RC[$k]}, \"seconds\": ${DUR[$k]}}, "; done
  "$PY" - "$SUMMARY" "$status" "$note" "{${steps%, }}" "$(( $(date +%s) - START ))" <<'PYEOF'
import json, os, sys, platform
path, status, note, steps, total = sys.argv[1:6]
info = {"python": platform.python_version()}
try:
    import torch
    info.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
except Exception as e:  # noqa: BLE001
    info["torch_error"] = str(e)
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump({"status": status, "note": note, "steps": json.loads(steps), "seconds": int(total), "machine": info}, f, indent=2)
os.replace(tmp, path)
PYEOF
}

step() {  # step NAME TIMEOUT_S CMD...: runs CMD with a timeout, logs to $OUT_DIR/NAME.log
  local name="$1" limit="$2"; shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  RC[$name]=$?
  DUR[$name]=$(( $(date +%s) - t0 ))
  tail -n 25 "$OUT_DIR/$name.log"
  echo "== $name: rc=${RC[$name]} in ${DUR[$name]}s"
}

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device is visible to $PY (torch.cuda.is_available() is False, or no torch); nothing to check" >&2
  summary "no_cuda" "torch.cuda.is_available() is False on this machine"
  exit 3
fi
if ! compgen -G "$WHEELS/*.whl" > /dev/null; then
  echo "gpu_check: no wheels in $WHEELS (run scripts/fetch_gpu_wheels.sh where there is network)" >&2
  summary "no_wheels" "no wheels in $WHEELS"
  exit 1
fi

# A venv that sees the machine's torch and triton; the carried wheels go into it.
ENVDIR="$ROOT/runs/gpu_env"   # runs/ is git-ignored
VENV="$ENVDIR/venv"
t0=$(date +%s)
mkdir -p "$ENVDIR"
if "$PY" -m venv --system-site-packages "$VENV" 2>/dev/null && [[ -x "$VENV/bin/pip" ]]; then
  VPY="$VENV/bin/python"
  "$VPY" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl > "$OUT_DIR/install.log" 2>&1
  RC[install]=$?
else  # no ensurepip: install into a folder on PYTHONPATH with the system pip
  VPY="$PY"
  "$PY" -m pip install -q --no-index --no-deps --target "$ENVDIR/site" "$WHEELS"/*.whl > "$OUT_DIR/install.log" 2>&1
  RC[install]=$?
  export PYTHONPATH="$ENVDIR/site${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$ENVDIR/site/bin:$PATH"
fi
DUR[install]=$(( $(date +%s) - t0 ))
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"   # the project from the working tree
[[ -d "$VENV/bin" ]] && export PATH="$VENV/bin:$PATH"  # ninja for the JIT-built CPU op
export TORCHREC_SIDE_CACHE="${TORCHREC_SIDE_CACHE:-$ENVDIR/cache}"
echo "== install: rc=${RC[install]} in ${DUR[install]}s"; tail -n 5 "$OUT_DIR/install.log"
"$VPY" -c "import torch, torchrec, fbgemm_gpu, triton; print('torch', torch.__version__, 'torchrec', torchrec.__version__, 'triton', triton.__version__, 'gpu', torch.cuda.get_device_name(0))"

# 1. CUDA tests: every device-parametrised parity test on cuda, and Triton on CUDA.
step tests 120 "$VPY" -m pytest -q -x -p no:cacheprovider -k "cuda" \
  --junitxml="$OUT_DIR/tests_cuda.xml" tests/modules/test_side_ops.py
# 2. Lookup benchmark on the GPU.
step lookup 210 "$VPY" benchmarks/lookup.py --device cuda --repeats 3 --json "$OUT_DIR/lookup_cuda.json"
# 3. Training throughput on 1 GPU with nccl (DMP, fused optimizers).
step train 100 "$VPY" benchmarks/train_throughput.py --device cuda --nproc 1 --quick \
  --json "$OUT_DIR/train_throughput_cuda.json"

status="ok"; for k in "${!RC[@]}"; do [[ "${RC[$k]}" == 0 ]] || status="failed"; done
summary "$status" "see the per-step logs in $OUT_DIR"
echo "gpu_check: $status in $(( $(date +%s) - START ))s; summary in $SUMMARY"
[[ "$status" == ok ]]
