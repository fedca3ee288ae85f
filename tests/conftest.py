# pyre-strict
"""Fixtures shared by all tests; the plain builders they use live in ``tests/factories.py``.

This file being here puts ``tests/`` on ``sys.path`` (pytest's default import mode), so tests
import the builders as ``from factories import ...``.
"""

from __future__ import annotations

from typing import Dict

import pytest
import torch

from factories import fitted_dpca, fitted_rq, seeded_content, write_tiny_sid_files
from torchrec_side.modules.ops import cpu_kernel
from torchrec_side.quantizers import DPCA, RQKMeans


@pytest.fixture(scope="session")
def kernel() -> None:
    """Skips the test where the C++ CPU kernel of the SIDE ops is not built on this machine."""
    if not cpu_kernel.kernels_available():
        pytest.skip(f"CPU kernel {cpu_kernel.kernel_status()}")


@pytest.fixture(scope="session")
def tiny_content() -> torch.Tensor:
    """Seeded item content ``[40, 12]`` (:func:`factories.seeded_content`)."""
    return seeded_content(40, 12, seed=0)


@pytest.fixture(scope="session")
def tiny_dpca(tiny_content: torch.Tensor) -> DPCA:
    """A ternary DPCA, 10 levels, fitted on ``tiny_content`` (treat as read-only)."""
    return fitted_dpca(10, tiny_content, seed=0)


@pytest.fixture(scope="session")
def tiny_rq(tiny_content: torch.Tensor) -> RQKMeans:
    """An RQ-KMeans 4 x 4 x 4 fitted on ``tiny_content`` (treat as read-only)."""
    return fitted_rq((4, 4, 4), tiny_content, seed=0)


@pytest.fixture(scope="session")
def tiny_sid_files(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Dict[str, str]]:
    """:func:`factories.write_tiny_sid_files` in a session folder (read-only): ``{"dpca": opts,
    "rq": opts}``, each ``{"quantizer": <.safetensors>, "sid_table": <.parquet>}``."""
    return write_tiny_sid_files(tmp_path_factory.mktemp("tiny_sids"))
