#!/usr/bin/env bash
# Set up (first run only) and run the main job on MovieLens-100K: bash scripts/main.sh [--quick]
# Results go to runs/demo/: report.md, report.json, ne_gain.png, bytes_per_event.png.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
QUICK=""
[ "${1:-}" = "--quick" ] && QUICK="--quick"
OUT="${TORCHREC_SIDE_RUN:-runs/demo}"
mkdir -p "$OUT"
# Tokenizers fitted on the training split, examples written once, every variant x 5 seeds trained
# through the TorchX component on 2 local ranks, then report.md / report.json / plots.
# Interrupted? Rerun the same command: finished variants and seeds are skipped.
torchrec-side demo --out "$OUT" $QUICK
echo "[main] done: $OUT/report.md"
