"""Batched k-means used by every quantizer level: k-means++ init, Lloyd, dead-code restart, balancing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class KMeansConfig:
    """Settings of one k-means fit.

    Args:
        iters: Lloyd iterations.
        init: ``"kmeans++"`` or ``"quantile"`` (1-D data only: codewords at the centres of
            ``k`` equal-mass bins, the classic Lloyd-Max start).
        balanced: assign with a Sinkhorn-balanced transport plan (equal cluster mass) instead of
            the nearest centroid during fitting; encoding always uses the nearest codeword.
        restart_dead: move codewords that own no point to the points worst served.
        chunk: rows per distance block (bounds memory at ``chunk * k`` floats).
    """

    iters: int = 20
    init: str = "kmeans++"
    balanced: bool = False
    restart_dead: bool = True
    chunk: int = 32768


def sq_dists(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances ``[N, K]`` between rows of ``x [N, m]`` and ``c [K, m]``."""
    d = (x * x).sum(1, keepdim=True) - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
    return d.clamp_min_(0.0)


def nearest(x: torch.Tensor, c: torch.Tensor, chunk: int = 32768) -> tuple[torch.Tensor, torch.Tensor]:
    """Index ``int64 [N]`` of the nearest codeword of each row and its squared distance ``[N]``."""
    idx = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    dist = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    c_sq = (c * c).sum(1)
    for s in range(0, x.shape[0], chunk):
        xb = x[s : s + chunk]
        d = c_sq[None, :] - 2.0 * (xb @ c.T)
        m, i = d.min(1)
        idx[s : s + chunk] = i
        dist[s : s + chunk] = (m + (xb * xb).sum(1)).clamp_min_(0.0)
    return idx, dist


def _kmeanspp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centers = [x[first]]
    best = sq_dists(x, x[first : first + 1]).squeeze(1)
    for _ in range(1, k):
        total = best.sum()
        if float(total) <= 0.0:  # all points coincide with chosen centres: pick uniformly
            j = int(torch.randint(n, (1,), generator=gen))
        else:
            j = int(torch.multinomial((best / total).double().cpu(), 1, generator=gen))
        centers.append(x[j])
        best = torch.minimum(best, sq_dists(x, x[j : j + 1]).squeeze(1))
    return torch.stack(centers)


def _quantile_init(x: torch.Tensor, k: int) -> torch.Tensor:
    qs = (torch.arange(k, dtype=torch.float64, device=x.device) + 0.5) / k
    return torch.quantile(x[:, 0].double(), qs).to(x.dtype)[:, None]


def _balanced_assign(x: torch.Tensor, c: torch.Tensor, iters: int = 30) -> torch.Tensor:
    """Assignment from an entropic optimal-transport plan with uniform cluster marginals."""
    d = sq_dists(x, c)
    eps = d.mean().clamp_min(1e-12) * 0.05
    log_k = -d / eps
    n, k = d.shape
    log_a = torch.full((n,), -float(torch.log(torch.tensor(float(n)))), device=x.device)
    log_b = torch.full((k,), -float(torch.log(torch.tensor(float(k)))), device=x.device)
    u = torch.zeros(n, device=x.device)
    v = torch.zeros(k, device=x.device)
    for _ in range(iters):
        u = log_a - torch.logsumexp(log_k + v[None, :], dim=1)
        v = log_b - torch.logsumexp(log_k + u[:, None], dim=0)
    return (log_k + u[:, None] + v[None, :]).argmax(1)


def kmeans(
    x: torch.Tensor,
    k: int,
    config: Optional[KMeansConfig] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Fits ``k`` centroids ``[k, m]`` to ``x [N, m]`` (float32, any device).

    Deterministic for a given ``generator`` state. Raises ``ValueError`` when ``N < k``.

    Example::

        g = torch.Generator().manual_seed(0)
        c = kmeans(torch.randn(1000, 8), 16, KMeansConfig(iters=10), g)   # [16, 8]
    """
    cfg = config or KMeansConfig()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least K={k} points to fit, got {n}")
    if cfg.init == "quantile":
        if x.shape[1] != 1:
            raise ValueError(f"quantile init needs 1-D data, got width {x.shape[1]}")
        c = _quantile_init(x, k)
    elif cfg.init == "kmeans++":
        c = _kmeanspp(x, k, gen)
    else:
        raise ValueError(f"unknown k-means init {cfg.init!r}; use 'kmeans++' or 'quantile'")
    c = c.clone()
    for _ in range(cfg.iters):
        if cfg.balanced:
            assign = _balanced_assign(x, c)
            dist = (x - c[assign]).pow(2).sum(1)
        else:
            assign, dist = nearest(x, c, cfg.chunk)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        alive = counts > 0
        c[alive] = sums[alive] / counts[alive, None].to(x.dtype)
        dead = (~alive).nonzero().flatten()
        if cfg.restart_dead and dead.numel():
            # Re-seed dead codewords at the points with the largest error.
            worst = dist.topk(min(int(dead.numel()), n)).indices
            c[dead[: worst.numel()]] = x[worst]
    return c
