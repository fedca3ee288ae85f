#!/usr/bin/env bash
# Downloads the wheels scripts/gpu_check.sh installs on a bare CUDA machine: Python 3.12, torch 2.11
# (CUDA) and triton already installed, no network, no torchrec / fbgemm. torchrec 1.6.1 and
# fbgemm-gpu-cpu 1.6.0 are the builds that match torch 2.11 (FBGEMM 1.N pairs with torch 2.(N+5));
# the rest are the pure-python packages torchrec, the project and the tests import.
#
#   bash scripts/fetch_gpu_wheels.sh [DEST]          # default DEST: wheels/gpu (git-ignored)
#   bash scripts/fetch_gpu_wheels.sh --print         # list the requirements, download nothing
#
# Every wheel is fetched with --no-deps for cp312 manylinux x86_64; the total must stay under 60 MiB
# (it is carried in the working tree to the device machine).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

REQS=(
  "torchrec==1.6.1"
  "fbgemm-gpu-cpu==1.6.0"
  # torchrec's imports (its metadata: fbgemm-gpu, tensordict, torchmetrics==1.0.3, tqdm,
  # pyre-extensions, iopath) and theirs
  "tensordict==0.15.3" "cloudpickle" "pyvers" "importlib-metadata" "zipp"
  "torchmetrics==1.0.3" "lightning-utilities" "packaging" "typing-extensions"
  "tqdm" "pyre-extensions" "typing-inspect" "mypy-extensions" "iopath" "portalocker"
  # the project and its JIT-built C++ op (torch.utils.cpp_extension needs setuptools and ninja)
  "numpy" "setuptools" "ninja" "safetensors"
  # the tests
  "pytest" "iniconfig" "pluggy" "hypothesis" "sortedcontainers" "attrs"
)

if [[ "${1:-}" == "--print" ]]; then
  printf '%s\n' "${REQS[@]}"
  exit 0
fi
DEST="${1:-$ROOT/wheels/gpu}"
mkdir -p "$DEST"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" "${REQS[@]}"
total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
mib=$((total / 1048576))
echo "fetch_gpu_wheels: $(ls "$DEST"/*.whl | wc -l) wheels, ${mib} MiB in $DEST"
if (( total > 60 * 1048576 )); then
  echo "fetch_gpu_wheels: ${mib} MiB exceeds the 60 MiB the device machine can be sent" >&2
  exit 1
fi
