"""Fixtures of the benchmark tests: ``quick_run(script, extra_args)`` runs a benchmark's ``--quick``
into the test's temporary folder and returns its JSON (see ``quick_runner.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from quick_runner import run_quick


@pytest.fixture
def quick_run(tmp_path: Path) -> Callable[[Path, List[str]], Dict[str, Any]]:
    return lambda script, extra: run_quick(script, tmp_path, extra)
