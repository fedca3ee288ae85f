#!/usr/bin/env bash
# Set up (first run only) and run the test suite: bash scripts/test.sh [pytest args]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
python -m pytest "$@"
