"""Discrete-PCA (DPCA): residual quantization in adaptive principal sub-spaces.

At level ``l`` DPCA takes the residual ``R_l``, its top-``m_l`` principal directions
``V_l [D, m_l]``, quantizes the projection ``P = R_l V_l`` with ``K_l`` codewords
``C_l [K_l, m_l]`` and peels ``C_l[c_l] V_l^T`` off the residual. The decoder table of the level
is ``T_l = C_l V_l^T [K_l, D]`` and the offset is the mean of the fitted data. ``m_l = D`` is
RQ-KMeans; ``m_l = 1, K_l = 3`` gives ternary digits (a long, granular SID).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from torchrec_side.quantizers.base import Quantizer, check_finite_tables, check_vectors, register_quantizer
from torchrec_side.quantizers.kmeans import KMeansConfig, kmeans, nearest
from torchrec_side.quantizers.rq import check_fit_input, fit_sample


@dataclass
class DPCALevel:
    """One DPCA level: block width ``m`` (principal directions) and ``k`` codewords."""

    m: int = 1
    k: int = 3


@dataclass
class DPCAConfig:
    """Config of :class:`DPCA`.

    Args:
        levels: one :class:`DPCALevel` per SID digit.
        mode: ``"residual"`` (PCA of the current residual at each level) or ``"one_shot"``
            (all directions from one PCA of the data: transform coding).
        kmeans: k-means settings of each level's codebook.
        scalar_init: init of 1-D levels: ``"quantile"`` (Lloyd-Max start) or ``"kmeans++"``.
        max_fit_points: fit on a seeded random subset of at most this many rows.
        seed: seed of initialization and subsampling.
    """

    levels: List[DPCALevel] = field(default_factory=lambda: [DPCALevel(1, 3) for _ in range(40)])
    mode: str = "residual"
    kmeans: KMeansConfig = field(default_factory=KMeansConfig)
    scalar_init: str = "quantile"
    max_fit_points: int = 131072
    seed: int = 0


def _top_directions(r: torch.Tensor, m: int) -> torch.Tensor:
    """Top-``m`` principal directions ``[D, m]`` of the rows of ``r`` (deterministic signs)."""
    rc = (r - r.mean(0, keepdim=True)).double()
    cov = rc.T @ rc / max(r.shape[0] - 1, 1)
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    v = vecs[:, -m:].flip(1)
    sign = torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))
    return (v * sign).to(r.dtype)


def _nearest_codeword(p: torch.Tensor, c: torch.Tensor, chunk: int) -> torch.Tensor:
    if c.shape[1] == 1:  # scalar level: bucketize against midpoints of the sorted codewords
        vals, order = c[:, 0].sort()
        mids = (vals[1:] + vals[:-1]) * 0.5
        return order[torch.bucketize(p[:, 0].contiguous(), mids)]
    return nearest(p, c, chunk)[0]


@register_quantizer
class DPCA(Quantizer):
    """Discrete-PCA quantizer (see the module docstring for the definition).

    Args:
        config: :class:`DPCAConfig`.

    Example::

        dpca = DPCA.ternary(num_levels=40, seed=0).fit(x)   # x: [N, D]
        codes = dpca.encode(x)                              # int64 [N, 40], digits in {0, 1, 2}
        offset, tables = dpca.level_tables()                # [D], 40 x [3, D]
    """

    kind = "dpca"

    def __init__(self, config: Optional[DPCAConfig] = None) -> None:
        self.config: DPCAConfig = config or DPCAConfig()
        if not self.config.levels:
            raise ValueError("DPCA needs at least one level")
        for i, lv in enumerate(self.config.levels):
            if lv.m < 1 or lv.k < 1:
                raise ValueError(f"level {i}: m and k must be positive, got m={lv.m}, k={lv.k}")
        if self.config.mode not in ("residual", "one_shot"):
            raise ValueError(f"unknown DPCA mode {self.config.mode!r}; use 'residual' or 'one_shot'")
        self._offset: Optional[torch.Tensor] = None
        self._codewords: List[torch.Tensor] = []
        self._directions: List[torch.Tensor] = []

    @classmethod
    def ternary(cls, num_levels: int = 40, seed: int = 0, mode: str = "residual") -> "DPCA":
        """``num_levels`` ternary digits (``m = 1``, ``K = 3``): about ``1.585 * num_levels`` bits."""
        return cls(DPCAConfig(levels=[DPCALevel(1, 3) for _ in range(num_levels)], mode=mode, seed=seed))

    @classmethod
    def for_bits(cls, x: torch.Tensor, bits: float, seed: int = 0, ks: Sequence[int] = (2, 3, 4, 8, 16)) -> "DPCA":
        """An unfitted DPCA whose levels :func:`allocate_bits` picks for ``x`` within ``bits``."""
        return cls(DPCAConfig(levels=allocate_bits(x, bits, ks), seed=seed))

    @property
    def radices(self) -> List[int]:
        return [lv.k for lv in self.config.levels]

    @property
    def dim(self) -> int:
        return int(self._offset.shape[0]) if self._offset is not None else -1

    @property
    def fitted(self) -> bool:
        return self._offset is not None

    def fit(self, x: torch.Tensor) -> "DPCA":
        x = check_fit_input(x, self.radices)
        d = x.shape[1]
        levels = self.config.levels
        if max(lv.m for lv in levels) > d:
            raise ValueError(f"a level's block width m={max(lv.m for lv in levels)} exceeds D={d}")
        if self.config.mode == "one_shot" and sum(lv.m for lv in levels) > d:
            raise ValueError(f"one_shot DPCA needs sum of m <= D={d}, got {sum(lv.m for lv in levels)}")
        gen = torch.Generator().manual_seed(self.config.seed)
        sample = fit_sample(x, self.config.max_fit_points, gen)
        offset = sample.mean(0)
        r = sample - offset
        basis = _top_directions(r, sum(lv.m for lv in levels)) if self.config.mode == "one_shot" else None
        codewords: List[torch.Tensor] = []
        directions: List[torch.Tensor] = []
        start = 0
        for lv in levels:
            if basis is not None:
                v = basis[:, start : start + lv.m]
                start += lv.m
            else:
                v = _top_directions(r, lv.m)
            p = r @ v
            km = self.config.kmeans
            if lv.m == 1:
                km = KMeansConfig(**{**asdict(km), "init": self.config.scalar_init})
            c = kmeans(p, lv.k, km, gen)
            idx = _nearest_codeword(p, c, km.chunk)
            r = r - c[idx] @ v.T
            codewords.append(c)
            directions.append(v)
        self._offset, self._codewords, self._directions = offset, codewords, directions
        return self

    def encode(self, x: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
        self._require_fitted()
        assert self._offset is not None
        x = check_vectors(x, self.dim)
        dev = x.device
        offset = self._offset.to(dev)
        cws = [c.to(dev) for c in self._codewords]
        dirs = [v.to(dev) for v in self._directions]
        tables = [c @ v.T for c, v in zip(cws, dirs)]
        chunk = self.config.kmeans.chunk
        out = torch.empty(x.shape[0], self.num_levels, dtype=torch.long, device=dev)
        for s in range(0, x.shape[0], batch_size):
            r = x[s : s + batch_size] - offset
            for level, (c, v, t) in enumerate(zip(cws, dirs, tables)):
                idx = _nearest_codeword(r @ v, c, chunk)
                r -= t[idx]
                out[s : s + batch_size, level] = idx
        return out

    def level_tables(self) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        self._require_fitted()
        assert self._offset is not None
        return self._offset, [c @ v.T for c, v in self.level_factors()]

    def level_factors(self) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per level ``(C_l [K_l, m_l], V_l [D, m_l])`` with ``T_l = C_l @ V_l.T``."""
        self._require_fitted()
        return list(zip(self._codewords, self._directions))

    def config_dict(self) -> Dict[str, Any]:
        return asdict(self.config)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "DPCA":
        cfg = dict(config)
        cfg["levels"] = [DPCALevel(**lv) for lv in cfg["levels"]]
        cfg["kmeans"] = KMeansConfig(**cfg.get("kmeans", {}))
        return cls(DPCAConfig(**cfg))

    def _tensors(self) -> Dict[str, torch.Tensor]:
        assert self._offset is not None
        out = {"offset": self._offset}
        for i, (c, v) in enumerate(zip(self._codewords, self._directions)):
            out[f"codewords.{i}"] = c
            out[f"directions.{i}"] = v
        return out

    def _load_tensors(self, tensors: Dict[str, torch.Tensor]) -> None:
        check_finite_tables(tensors)
        offset = tensors["offset"].float()
        if offset.dim() != 1:
            raise ValueError(f"offset has shape {tuple(offset.shape)}, expected [D]")
        d = offset.shape[0]
        cws, dirs = [], []
        for i, lv in enumerate(self.config.levels):
            c, v = tensors[f"codewords.{i}"].float(), tensors[f"directions.{i}"].float()
            if tuple(c.shape) != (lv.k, lv.m) or tuple(v.shape) != (d, lv.m):
                raise ValueError(
                    f"level {i}: codewords {tuple(c.shape)} / directions {tuple(v.shape)} do not match "
                    f"K={lv.k}, m={lv.m}, D={d}"
                )
            cws.append(c)
            dirs.append(v)
        self._offset, self._codewords, self._directions = offset, cws, dirs


# Mean squared error of the Lloyd-Max quantizer of a unit-variance Gaussian with K levels
# (Max 1960, Table I); K > 16 uses the high-rate approximation (pi * sqrt(3) / 2) / K^2.
_LLOYD_MAX_GAUSS = {1: 1.0, 2: 0.3634, 3: 0.1902, 4: 0.1175, 5: 0.07994, 6: 0.05798, 7: 0.04400,
                    8: 0.03454, 16: 0.009497}


def _gauss_distortion(k: int) -> float:
    if k in _LLOYD_MAX_GAUSS:
        return _LLOYD_MAX_GAUSS[k]
    return math.pi * math.sqrt(3.0) / 2.0 / (k * k)


def allocate_bits(x_or_variances: torch.Tensor, bits: float, ks: Sequence[int] = (2, 3, 4, 8, 16)) -> List[DPCALevel]:
    """Greedy bit allocation for scalar DPCA levels within a budget of ``bits``.

    Models each principal component as a Gaussian of its variance and quantizes it with a
    Lloyd-Max scalar quantizer. Each step spends ``log2 K`` bits on the component of largest
    remaining variance, choosing the ``K`` in ``ks`` with the largest error reduction per bit;
    the component's variance then shrinks by the Lloyd-Max factor and it may be picked again
    (as residual-mode DPCA would pick that direction again). Returns levels ``m = 1``.

    Args:
        x_or_variances: data ``[N, D]`` or per-component variances ``[D]``.
        bits: total budget; the levels' ``sum log2 K`` stays within it.
        ks: candidate codebook sizes.
    """
    if x_or_variances.dim() == 2:
        xc = check_vectors(x_or_variances).double()
        xc = xc - xc.mean(0)
        var = torch.linalg.eigvalsh(xc.T @ xc / max(xc.shape[0] - 1, 1)).clamp_min(0)
    else:
        var = x_or_variances.double()
    if bits < min(math.log2(k) for k in ks):
        raise ValueError(f"a budget of {bits} bits is smaller than the cheapest level (K={min(ks)})")
    heap = [(-float(v), i) for i, v in enumerate(var.tolist())]
    heapq.heapify(heap)
    left = float(bits) + 1e-9
    levels: List[DPCALevel] = []
    while heap:
        neg_v, i = heapq.heappop(heap)
        v = -neg_v
        options = [(v * (1.0 - _gauss_distortion(k)) / math.log2(k), k) for k in ks if math.log2(k) <= left]
        if not options or v <= 0.0:
            break
        _, k = max(options)
        levels.append(DPCALevel(1, k))
        left -= math.log2(k)
        heapq.heappush(heap, (-v * _gauss_distortion(k), i))
    return levels
