# pyre-strict
"""Synthetic item content for scale tests: clustered vectors near a low-rank subspace.

Generative model, for ``n`` items of width ``dim``, ``C = num_clusters`` and ``r = rank``:

* ``basis [r, dim]``: random orthonormal rows, scaled by ``sqrt(dim / r)``;
* ``centers [C, r] ~ N(0, I)``; item ``j`` picks a cluster ``c_j`` uniformly at random;
* ``z_j = (centers[c_j] + cluster_std * N(0, I_r)) / sqrt(1 + cluster_std^2)``;
* ``x_j = z_j @ basis + noise * N(0, I_dim)``.

So each coordinate carries signal of variance about 1 and noise of variance ``noise^2``: a
quantizer with enough bits reaches relative error about ``noise^2 / (1 + noise^2)``, and the
cluster structure rewards k-means-like codebooks. Rows are generated in fixed chunks of
65,536, each from its own ``torch.Generator`` seeded from ``(seed, chunk)``, straight into the
preallocated output: the result depends only on the arguments, and peak memory is the output
plus one chunk (10^6 x 256 float32 is 1 GB).

Example::

    >>> x = synthetic_content(100_000, 256, seed=0)
    >>> x.shape, x.dtype
    (torch.Size([100000, 256]), torch.float32)
    >>> x, labels = synthetic_content(1000, 64, num_clusters=8, return_labels=True)
    >>> labels.shape
    torch.Size([1000])
"""

from __future__ import annotations

import math
from typing import Literal, overload

import torch
from torch import Tensor

__all__ = ["synthetic_content"]

_CHUNK: int = 65_536


def _chunk_generator(seed: int, chunk: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    # distinct, reproducible stream per (seed, chunk); chunk -1 is the global parameters
    g.manual_seed((seed * 1_000_003 + chunk + 1) % (2**63 - 1))
    return g


@overload
def synthetic_content(
    n: int,
    dim: int,
    num_clusters: int = ...,
    rank: int | None = ...,
    noise: float = ...,
    seed: int = ...,
    cluster_std: float = ...,
    device: torch.device | str = ...,
    return_labels: Literal[False] = ...,
) -> Tensor: ...


@overload
def synthetic_content(
    n: int,
    dim: int,
    num_clusters: int = ...,
    rank: int | None = ...,
    noise: float = ...,
    seed: int = ...,
    cluster_std: float = ...,
    device: torch.device | str = ...,
    *,
    return_labels: Literal[True],
) -> tuple[Tensor, Tensor]: ...


def synthetic_content(
    n: int,
    dim: int,
    num_clusters: int = 64,
    rank: int | None = None,
    noise: float = 0.1,
    seed: int = 0,
    cluster_std: float = 0.5,
    device: torch.device | str = "cpu",
    return_labels: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Clustered low-rank synthetic content vectors (see the module docstring for the model).

    Args:
        n (int): ``N``, number of items (>= 0).
        dim (int): ``D``, vector width (>= 1).
        num_clusters (int): ``C`` cluster centers in the latent space (>= 1).
        rank (int | None): ``r`` dimension of the signal subspace, ``1 <= r <= D``; default
            ``min(32, D)``.
        noise (float): standard deviation of the isotropic noise per coordinate (>= 0).
        seed (int): seed; the same arguments always give the same tensor.
        cluster_std (float): within-cluster spread relative to the spread of the centers.
        device (torch.device | str): where to generate (results differ between CPU and CUDA).
        return_labels (bool): also return each item's cluster.

    Returns:
        Tensor: ``[N, D]`` float32; with ``return_labels`` a tuple ``(x [N, D], labels [N]
        int64)``.

    Example::

        >>> x = synthetic_content(10**6, 256, rank=32, seed=1)   # about 1 GB, a few seconds
        >>> x.shape
        torch.Size([1000000, 256])
    """
    if n < 0 or dim < 1:
        raise ValueError(f"need n >= 0 and dim >= 1, got n={n}, dim={dim}")
    if rank is None:
        rank = min(32, dim)
    if not 1 <= rank <= dim:
        raise ValueError(f"rank must be in [1, dim={dim}], got {rank}")
    if num_clusters < 1:
        raise ValueError(f"num_clusters must be >= 1, got {num_clusters}")
    if noise < 0 or cluster_std < 0 or not math.isfinite(noise) or not math.isfinite(cluster_std):
        raise ValueError(
            f"noise and cluster_std must be finite and >= 0, got {noise}, {cluster_std}"
        )
    dev = torch.device(device)
    g = _chunk_generator(seed, -1, dev)
    basis, _ = torch.linalg.qr(torch.randn(dim, rank, generator=g, device=dev))  # [D, r]
    basis = basis.T.contiguous() * math.sqrt(dim / rank)  # [r, D]
    centers = torch.randn(num_clusters, rank, generator=g, device=dev)  # [C, r]
    z_scale = 1.0 / math.sqrt(1.0 + cluster_std**2)

    out = torch.empty(n, dim, dtype=torch.float32, device=dev)
    labels = torch.empty(n, dtype=torch.int64, device=dev)
    for c, start in enumerate(range(0, n, _CHUNK)):
        stop = min(start + _CHUNK, n)
        gc = _chunk_generator(seed, c, dev)
        lab = torch.randint(num_clusters, (stop - start,), generator=gc, device=dev)
        z = torch.randn(stop - start, rank, generator=gc, device=dev)
        z.mul_(cluster_std).add_(centers[lab]).mul_(z_scale)  # [b, r]
        block = out[start:stop]
        torch.randn(block.shape, generator=gc, device=dev, out=block)
        block.mul_(noise).addmm_(z, basis)  # [b, D]
        labels[start:stop] = lab
    if return_labels:
        return out, labels
    return out
