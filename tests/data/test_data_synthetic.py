"""Synthetic clustered low-rank content: shapes, determinism, structure."""

from __future__ import annotations

import pytest
import torch

from torchrec_side.data.synthetic import synthetic_content


def test_shape_dtype_determinism() -> None:
    x = synthetic_content(1000, 64, seed=0)
    assert x.shape == (1000, 64) and x.dtype == torch.float32
    assert torch.equal(x, synthetic_content(1000, 64, seed=0))
    assert not torch.equal(x, synthetic_content(1000, 64, seed=1))
    assert bool(torch.isfinite(x).all())
    assert synthetic_content(0, 8).shape == (0, 8)


def test_multiple_chunks_deterministic() -> None:
    n = 70_000  # more than one 65,536-row chunk
    x, lab = synthetic_content(n, 32, num_clusters=10, seed=5, return_labels=True)
    y, lab2 = synthetic_content(n, 32, num_clusters=10, seed=5, return_labels=True)
    assert torch.equal(x, y) and torch.equal(lab, lab2)
    assert lab.shape == (n,) and lab.dtype == torch.int64
    assert int(lab.min()) == 0 and int(lab.max()) == 9
    # the second chunk is filled too, with the same statistics
    assert abs(float(x[65_536:].var()) - float(x[:65_536].var())) < 0.1


def test_low_rank_and_clustered() -> None:
    x, lab = synthetic_content(2000, 48, num_clusters=5, rank=4, noise=0.0, cluster_std=0.1,
                               seed=0, return_labels=True)  # fmt: skip
    assert int(torch.linalg.matrix_rank(x)) == 4
    # within-cluster spread is much smaller than the total spread
    within = torch.stack([x[lab == c].var(0).sum() for c in range(5)]).mean()
    assert float(within) < 0.1 * float(x.var(0).sum())


def test_unit_signal_variance() -> None:
    x = synthetic_content(20_000, 64, noise=0.0, seed=0)  # 64 clusters, rank 32
    assert 0.85 < float(x.var()) < 1.15


def test_noise_level() -> None:
    x = synthetic_content(20_000, 64, rank=8, noise=0.5, seed=0)
    s = torch.linalg.svdvals(x - x.mean(0)) ** 2 / x.shape[0]
    # the 56 noise directions carry about noise^2 each
    assert abs(float(s[8:].mean()) - 0.25) < 0.03


def test_scale_10e5_x_256() -> None:
    x = synthetic_content(100_000, 256, seed=0)
    assert x.shape == (100_000, 256) and x.is_contiguous()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rank"):
        synthetic_content(10, 8, rank=9)
    with pytest.raises(ValueError, match="num_clusters"):
        synthetic_content(10, 8, num_clusters=0)
    with pytest.raises(ValueError, match="noise"):
        synthetic_content(10, 8, noise=-1.0)
    with pytest.raises(ValueError, match="n >= 0"):
        synthetic_content(-1, 8)
