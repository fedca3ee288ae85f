"""Runs a benchmark script the way a user does (``python benchmarks/<name>.py --quick --json PATH``
from the repository root) and reads its JSON back (used by ``test_benchmarks_quick.py``; a plain
module, not ``conftest``, so its name cannot clash with ``tests/conftest.py``)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

REPO: Path = Path(__file__).resolve().parents[2]
#: Every benchmark script (``benchmarks/*.py`` not starting with ``_``): new ones are picked up.
BENCHMARKS: List[Path] = sorted(p for p in (REPO / "benchmarks").glob("*.py") if not p.name.startswith("_"))
#: Seconds one ``--quick`` run may take (they are sized for seconds; the whole set for < 2 minutes).
QUICK_TIMEOUT_S: int = 300


def run_quick(script: Path, out_dir: Path, extra: List[str]) -> Dict[str, Any]:
    """Runs ``script --quick --json <out_dir>/<stem>.json *extra`` from the repo root and returns
    the JSON; fails with the run's output tail when it exits non-zero or writes no JSON."""
    out = out_dir / f"{script.stem}.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(script.relative_to(REPO)), "--quick", "--json", str(out), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, f"{script.name} --quick exited {proc.returncode}:\n{tail}"
    assert out.is_file(), f"{script.name} --quick --json {out} wrote no file:\n{tail}"
    return json.loads(out.read_text())


def finite_numbers(obj: Any, where: str = "$") -> List[str]:
    """Paths of the numbers in ``obj`` that are NaN or infinite (JSON ``null`` is allowed)."""
    bad: List[str] = []
    if isinstance(obj, bool) or obj is None:
        return bad
    if isinstance(obj, (int, float)):
        return [] if math.isfinite(obj) else [where]
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad += finite_numbers(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad += finite_numbers(v, f"{where}[{i}]")
    return bad
