"""The lookup benchmark's ctypes baseline (benchmarks/_ctypes_kernel.py) computes what SIDE defines:
pooled and per-event decodes of byte-grouped SIDs equal the plain decoder, bad SIDs are reported by
index and bad offsets are refused."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import pytest
import torch
from hypothesis import given, settings, strategies as st

from torchrec_side.sid.codec import SIDCodec

from factories import offsets_of, random_codes, random_tables

# appended, not prepended: a benchmark script must never shadow an installed package
_BENCH = str(Path(__file__).resolve().parents[2] / "benchmarks")
if _BENCH not in sys.path:
    sys.path.append(_BENCH)
import _ctypes_kernel  # noqa: E402  # pyright: ignore[reportMissingImports]


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    if not _ctypes_kernel.kernels_available():
        pytest.skip(f"ctypes build {_ctypes_kernel.kernel_status()}")


def _reference_pool(decoded: torch.Tensor, lengths: List[int], weights: torch.Tensor) -> torch.Tensor:
    """float64 per-bag weighted sums of per-event rows ``decoded [N, D]``."""
    out, start = [], 0
    for n in lengths:
        w = weights[start: start + n].double()[:, None]
        out.append((decoded[start: start + n].double() * w).sum(0))
        start += n
    return torch.stack(out).float()


@settings(max_examples=12, deadline=None)
@given(lengths=st.lists(st.integers(0, 120), min_size=1, max_size=5), seed=st.integers(0, 50),
       weighted=st.booleans(), ternary=st.booleans())
def test_pool_and_embed_equal_the_decoder(lengths: List[int], seed: int, weighted: bool, ternary: bool) -> None:
    radices = [3] * 20 if ternary else [256, 256, 16]
    codec = SIDCodec.byte_grouped(radices)
    t = random_tables(radices, 8, seed=seed)
    codes = random_codes(radices, sum(lengths), seed)
    sids = codec.pack(codes)
    decoded = t.decode(codes)                                        # [N, D]
    w = torch.rand(sids.numel(), generator=torch.Generator().manual_seed(seed))
    pooled, bad = _ctypes_kernel.pool_grouped(sids, offsets_of(lengths), w if weighted else None,
                                              t.grouped(codec), t.group_max(codec))
    assert bad == -1
    ref = _reference_pool(decoded, lengths, w if weighted else torch.ones_like(w))
    torch.testing.assert_close(pooled, ref, atol=1e-4, rtol=1e-4)
    per_event, bad = _ctypes_kernel.embed_grouped(sids, t.grouped(codec), t.group_max(codec))
    assert bad == -1
    torch.testing.assert_close(per_event, decoded, atol=1e-5, rtol=1e-5)


def test_bad_sids_and_offsets() -> None:
    radices = [3] * 10
    codec = SIDCodec.byte_grouped(radices)
    t = random_tables(radices, 4, seed=0)
    sids = codec.pack(random_codes(radices, 6, 0))
    sids[4] = sids[4] | 0xFF  # byte 0 = 255 > 3**5 - 1
    _, bad = _ctypes_kernel.pool_grouped(sids, offsets_of([3, 3]), None, t.grouped(codec), t.group_max(codec))
    assert bad == 4
    _, bad = _ctypes_kernel.embed_grouped(sids, t.grouped(codec), t.group_max(codec))
    assert bad == 4
    with pytest.raises(ValueError, match="bad offsets"):
        _ctypes_kernel.pool_grouped(sids, torch.tensor([0, 4, 2, 6]), None, t.grouped(codec), t.group_max(codec))
