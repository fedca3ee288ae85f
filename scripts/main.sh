#!/usr/bin/env bash
# Set up (first run only) and run the main job: bash scripts/main.sh [--quick]
# Both worlds (torchrec-side demo --world all): MovieLens-100K (every variant x 10 seeds) and the
# quick simulated ads world with its id_dominant control world. One report per world:
#   runs/demo/ml100k/report.md, runs/demo/sim_quick/report.md, runs/demo/sim_quick_id_dominant/report.md
# (--quick: runs/demo_quick/..., the tiny simulated world, labelled QUICK).
# Interrupted? Rerun the same command: finished worlds, artifacts and (variant, seed) runs are skipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
QUICK=""
DEFAULT_OUT="runs/demo"
if [ "${1:-}" = "--quick" ]; then QUICK="--quick"; DEFAULT_OUT="runs/demo_quick"; fi
OUT="${TORCHREC_SIDE_RUN:-$DEFAULT_OUT}"
mkdir -p "$OUT"
START=$(date +%s)
"$VENV/bin/torchrec-side" demo --world all --out "$OUT" $QUICK
echo "[main] done in $(( $(date +%s) - START ))s: $OUT/ml100k/report.md, $OUT/sim_*/report.md"
