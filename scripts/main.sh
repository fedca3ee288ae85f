#!/usr/bin/env bash
# Set up (first run only) and run the main job on MovieLens-100K: bash scripts/main.sh [--quick]
# Results go to runs/demo/ (JSON, PNG plots).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
QUICK=""
[ "${1:-}" = "--quick" ] && QUICK="--quick"
OUT="${TORCHREC_SIDE_RUN:-runs/demo}"
mkdir -p "$OUT"
echo "[main] 1/1 quantizers: held-out error versus bits, RQ-KMeans vs DPCA (vs faiss)"
python benchmarks/quantizers.py $QUICK --json "$OUT/quantizers.json" --plot "$OUT/quantizers.png"
echo "[main] done: results in $OUT/"
