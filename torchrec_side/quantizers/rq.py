"""RQ-KMeans: residual k-means, the traditional Semantic-ID tokenizer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from torchrec_side.quantizers.base import Quantizer, check_finite_tables, check_vectors, register_quantizer
from torchrec_side.quantizers.kmeans import KMeansConfig, kmeans, nearest


@dataclass
class RQKMeansConfig:
    """Config of :class:`RQKMeans`.

    Args:
        radices: codes per level ``[K_1, ..., K_L]``, e.g. ``[256, 256, 256]``.
        kmeans: per-level k-means settings (iterations, balanced assignment, dead-code restart).
        max_fit_points: fit on a seeded random subset of at most this many rows.
        seed: seed of initialization and subsampling.
    """

    radices: List[int] = field(default_factory=lambda: [256, 256, 256])
    kmeans: KMeansConfig = field(default_factory=KMeansConfig)
    max_fit_points: int = 131072
    seed: int = 0


def fit_sample(x: torch.Tensor, max_points: int, gen: torch.Generator) -> torch.Tensor:
    """A seeded subset of at most ``max_points`` rows of ``x``."""
    if x.shape[0] <= max_points:
        return x
    idx = torch.randperm(x.shape[0], generator=gen)[:max_points].to(x.device)
    return x[idx]


def check_fit_input(x: torch.Tensor, radices: List[int]) -> torch.Tensor:
    x = check_vectors(x)
    if x.shape[0] < max(radices):
        raise ValueError(
            f"too few points to fit: {x.shape[0]} rows for a level with K={max(radices)} codes"
        )
    return x


@register_quantizer
class RQKMeans(Quantizer):
    """Residual k-means quantizer: level ``l`` clusters the residual left by levels ``< l``.

    ``T_l`` are the level's centroids and ``offset`` is zero, so
    ``decode(c) = sum_l T_l[c_l]``.

    Args:
        config: :class:`RQKMeansConfig`.

    Example::

        rq = RQKMeans(RQKMeansConfig(radices=[256, 256, 256])).fit(x)   # x: [N, D]
        codes = rq.encode(x)                                            # int64 [N, 3]
        x_hat = rq.decode(codes)                                        # [N, D]
    """

    kind = "rq_kmeans"

    def __init__(self, config: Optional[RQKMeansConfig] = None) -> None:
        self.config: RQKMeansConfig = config or RQKMeansConfig()
        if not self.config.radices or min(self.config.radices) < 1:
            raise ValueError(f"radices must be a non-empty list of positive ints, got {self.config.radices}")
        self._centroids: List[torch.Tensor] = []

    @property
    def radices(self) -> List[int]:
        return list(self.config.radices)

    @property
    def dim(self) -> int:
        return int(self._centroids[0].shape[1]) if self._centroids else -1

    @property
    def fitted(self) -> bool:
        return bool(self._centroids)

    def fit(self, x: torch.Tensor) -> "RQKMeans":
        x = check_fit_input(x, self.radices)
        gen = torch.Generator().manual_seed(self.config.seed)
        r = fit_sample(x, self.config.max_fit_points, gen).clone()
        self._centroids = []
        for k in self.radices:
            c = kmeans(r, k, self.config.kmeans, gen)
            idx, _ = nearest(r, c, self.config.kmeans.chunk)
            r -= c[idx]
            self._centroids.append(c)
        return self

    def encode(self, x: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
        self._require_fitted()
        x = check_vectors(x, self.dim)
        out = torch.empty(x.shape[0], self.num_levels, dtype=torch.long, device=x.device)
        cents = [c.to(x.device) for c in self._centroids]
        for s in range(0, x.shape[0], batch_size):
            r = x[s : s + batch_size].clone()
            for level, c in enumerate(cents):
                idx, _ = nearest(r, c, self.config.kmeans.chunk)
                r -= c[idx]
                out[s : s + batch_size, level] = idx
        return out

    def level_tables(self) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        self._require_fitted()
        c0 = self._centroids[0]
        return torch.zeros(c0.shape[1], dtype=c0.dtype, device=c0.device), list(self._centroids)

    def config_dict(self) -> Dict[str, Any]:
        return asdict(self.config)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "RQKMeans":
        cfg = dict(config)
        cfg["kmeans"] = KMeansConfig(**cfg.get("kmeans", {}))
        return cls(RQKMeansConfig(**cfg))

    def _tensors(self) -> Dict[str, torch.Tensor]:
        return {f"centroids.{i}": c for i, c in enumerate(self._centroids)}

    def _load_tensors(self, tensors: Dict[str, torch.Tensor]) -> None:
        check_finite_tables(tensors)
        cents = [tensors[f"centroids.{i}"].float() for i in range(self.num_levels)]
        for i, (c, k) in enumerate(zip(cents, self.radices)):
            if c.dim() != 2 or c.shape[0] != k or c.shape[1] != cents[0].shape[1]:
                raise ValueError(f"level {i}: centroid table has shape {tuple(c.shape)}, expected [{k}, D]")
        self._centroids = cents
