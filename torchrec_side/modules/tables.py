# pyre-strict
"""Frozen SID decoder tables: what parameter-free SIDE pooling reads.

A quantizer (or tokenizer) with an additive decoder reconstructs an item from its SID digits as::

    x_hat(c) = offset + sum_l T_l[c_l]          offset: [D], T_l: [K_l, D]

:class:`SIDTables` holds exactly those tensors (and, for DPCA, the per-level factors
``T_l = C_l @ V_l.T``), and derives the precomputed tables the fast paths use:

* ``stacked()``: ``[sum_l K_l, D]``, the level tables one after the other (per-level lookups);
* ``grouped(codec)``: ``[G * 256, D]``, for byte group ``g`` row ``g * 256 + v`` is
  ``sum_{l in g} T_l[digit_l(v)]`` (rows for byte values the group never uses are zero);
* ``scalar_factors()``: for rank-1 levels (``m_l = 1``), ``(values [sum_l K_l], dirs [L, D])`` with
  ``T_l[k] = values[k_l] * dirs[l]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import torch

from torchrec_side.modules.ops.common import BYTE_BINS
from torchrec_side.modules.ops.reference import decode as _decode
from torchrec_side.sid.codec import BYTE_GROUPED, MIXED_RADIX, SIDCodec

__all__ = ["SIDTables", "byte_groups", "group_max", "level_offsets"]


def byte_groups(codec: SIDCodec) -> Optional[List[Tuple[int, int]]]:
    """Digit ranges stored one per byte of the int64 SID, or None if the layout is not byte-addressable.

    Byte-grouped codecs qualify; so does a mixed-radix codec whose radices are all 256 (and at most
    7 levels), whose packed value is then byte-for-byte the same.
    """
    if codec.layout == BYTE_GROUPED:
        return codec.groups
    if codec.layout == MIXED_RADIX and all(k == BYTE_BINS for k in codec.radices) and codec.num_levels <= 7:
        return [(level, level + 1) for level in range(codec.num_levels)]
    return None


def level_offsets(radices: Sequence[int]) -> torch.Tensor:
    """int64 ``[L]``: first row of each level when the level tables ``[K_l, D]`` are stacked
    (``[0, K_1, K_1 + K_2, ...]``); needs only the radices."""
    r = torch.tensor([0] + [int(k) for k in radices[:-1]], dtype=torch.int64)
    return torch.cumsum(r, 0)


def group_max(codec: SIDCodec) -> torch.Tensor:
    """uint8 ``[G]``: largest valid value of each byte of a byte-addressable codec,
    ``prod_{l in g} K_l - 1``; needs only the codec."""
    groups = byte_groups(codec)
    if groups is None:
        raise ValueError(f"codec layout {codec.layout} is not byte-addressable")
    return torch.tensor([math.prod(codec.radices[s:e]) - 1 for s, e in groups], dtype=torch.uint8)


def _group_digits(codec: SIDCodec, group: int, start: int, end: int) -> torch.Tensor:
    """int64 ``[R_g, end - start]``: the digits of each value of byte group ``group`` (from the codec;
    a mixed-radix codec with all radices 256 has one digit per byte, equal to the byte)."""
    if codec.layout == BYTE_GROUPED:
        return codec.group_digit_table(group)
    return torch.arange(BYTE_BINS, dtype=torch.int64).unsqueeze(1)


@dataclass(frozen=True)
class SIDTables:
    """The frozen additive decoder of a SID: ``offset [D]`` and one table ``T_l [K_l, D]`` per level.

    Build it from any fitted quantizer or tokenizer (anything with ``level_tables()``, optionally
    ``level_factors()``), from a saved quantizer artifact, or from tensors.

    Args:
        offset (torch.Tensor): ``[D]``.
        tables (Tuple[torch.Tensor, ...]): ``T_l`` of shape ``[K_l, D]``, one per level.
        factors (Optional[Tuple[Tuple[torch.Tensor, torch.Tensor], ...]]): DPCA factors
            ``(C_l [K_l, m_l], V_l [D, m_l])`` with ``T_l = C_l @ V_l.T``; optional.

    Example::

        tables = SIDTables.from_quantizer(dpca)          # or SIDTables.load("dpca.safetensors")
        tables.radices                                   # [3, 3, ..., 3]
        tables.decode(codes)                             # [N, D], equals dpca.decode(codes)
    """

    offset: torch.Tensor
    tables: Tuple[torch.Tensor, ...]
    factors: Optional[Tuple[Tuple[torch.Tensor, torch.Tensor], ...]] = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        tables = tuple(t.detach().to(torch.float32) for t in self.tables)
        object.__setattr__(self, "tables", tables)
        object.__setattr__(self, "offset", self.offset.detach().to(torch.float32).reshape(-1))
        if len(tables) == 0:
            raise ValueError("SIDTables needs at least one level table")
        D = self.offset.shape[0]
        for level, t in enumerate(tables):
            if t.dim() != 2 or t.shape[1] != D:
                raise ValueError(f"level {level}: table must be [K_l, D={D}], got {tuple(t.shape)}")
        if self.factors is not None:
            facs = tuple((c.detach().float(), v.detach().float()) for c, v in self.factors)
            if len(facs) != len(tables):
                raise ValueError(f"factors: expected {len(tables)} levels, got {len(facs)}")
            for level, (c, v) in enumerate(facs):
                if c.dim() != 2 or v.dim() != 2 or c.shape[0] != tables[level].shape[0] or v.shape != (D, c.shape[1]):
                    raise ValueError(
                        f"level {level}: factors must be C [K_l, m_l], V [D, m_l]; got "
                        f"{tuple(c.shape)}, {tuple(v.shape)}"
                    )
            object.__setattr__(self, "factors", facs)

    # ------------------------------------------------------------------ builders

    @classmethod
    def from_tensors(
        cls,
        offset: Optional[torch.Tensor],
        tables: Sequence[torch.Tensor],
        factors: Optional[Sequence[Tuple[torch.Tensor, torch.Tensor]]] = None,
    ) -> "SIDTables":
        """From ``offset [D]`` (None means zeros) and level tables ``[K_l, D]``."""
        if offset is None:
            offset = torch.zeros(tables[0].shape[1])
        return cls(offset, tuple(tables), tuple(factors) if factors is not None else None)

    @classmethod
    def from_quantizer(cls, quantizer: Any) -> "SIDTables":
        """From a fitted quantizer, tokenizer, or anything exposing ``level_tables()``.

        Objects without ``level_tables`` but with a ``quantizer`` attribute (tokenizer artifacts)
        are unwrapped. ``level_factors()`` is used when present (DPCA).
        """
        if isinstance(quantizer, SIDTables):
            return quantizer
        obj = quantizer
        if not hasattr(obj, "level_tables") and hasattr(obj, "quantizer"):
            obj = obj.quantizer
        if not hasattr(obj, "level_tables"):
            raise TypeError(
                f"{type(quantizer).__name__} has no level_tables(); pass a fitted quantizer, a "
                "tokenizer artifact, or SIDTables.from_tensors(offset, tables)"
            )
        offset, tables = obj.level_tables()
        factors = None
        if hasattr(obj, "level_factors"):
            try:
                factors = tuple(obj.level_factors())
            except (NotImplementedError, RuntimeError, AttributeError):
                factors = None
        return cls(offset.to("cpu"), tuple(t.to("cpu") for t in tables),
                   tuple((c.to("cpu"), v.to("cpu")) for c, v in factors) if factors else None)

    @classmethod
    def load(cls, path: Any) -> "SIDTables":
        """From a quantizer artifact written by ``Quantizer.save`` (one safetensors file)."""
        from torchrec_side.quantizers.base import Quantizer

        return cls.from_quantizer(Quantizer.load(path))

    # ------------------------------------------------------------------ properties

    @property
    def radices(self) -> List[int]:
        """``[K_1, ..., K_L]``."""
        return [int(t.shape[0]) for t in self.tables]

    @property
    def num_levels(self) -> int:
        return len(self.tables)

    @property
    def dim(self) -> int:
        """``D``."""
        return int(self.offset.shape[0])

    @property
    def num_rows(self) -> int:
        """``sum_l K_l``: rows of all level tables (frozen, not learned)."""
        return sum(self.radices)

    # ------------------------------------------------------------------ derived tables

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reference decoder: ``offset + sum_l T_l[codes[:, l]]`` for int codes ``[N, L]`` -> ``[N, D]``."""
        dev = codes.device
        return _decode(codes, self.offset.to(dev), self.stacked().to(dev), self.level_offsets().to(dev),
                       dtype=torch.float32)

    def stacked(self, with_offset: bool = False) -> torch.Tensor:
        """``[sum_l K_l, D]``: level tables stacked; ``with_offset`` adds ``offset`` to level 0's rows
        (then every SID's per-level rows sum to its full decode)."""
        out = torch.cat(self.tables, dim=0).clone()
        if with_offset:
            out[: self.radices[0]] += self.offset
        return out

    def level_offsets(self) -> torch.Tensor:
        """int64 ``[L]``: first row of each level in :meth:`stacked`."""
        return level_offsets(self.radices)

    def grouped(self, codec: SIDCodec, with_offset: bool = True) -> torch.Tensor:
        """``[G * 256, D]`` byte-group tables for a byte-addressable codec (see :func:`byte_groups`).

        Row ``g * 256 + v`` is ``sum_{l in group g} T_l[digit_l(v)]`` for ``v < prod_{l in g} K_l``,
        zero otherwise; ``with_offset`` adds ``offset`` to group 0's valid rows.
        """
        groups = byte_groups(codec)
        if groups is None:
            raise ValueError(f"codec layout {codec.layout} with radices {list(codec.radices)} is not byte-addressable")
        self._check_codec(codec)
        key = ("grouped", codec.layout, tuple(codec.radices), with_offset)
        if key not in self._cache:
            out = torch.zeros(len(groups) * BYTE_BINS, self.dim)
            for g, (s, e) in enumerate(groups):
                digits = _group_digits(codec, g, s, e)  # [R_g, e - s]
                rows = torch.zeros(digits.shape[0], self.dim)
                for j, level in enumerate(range(s, e)):
                    rows += self.tables[level][digits[:, j]]
                if g == 0 and with_offset:
                    rows += self.offset
                out[g * BYTE_BINS : g * BYTE_BINS + rows.shape[0]] = rows
            self._cache[key] = out
        return self._cache[key]

    def group_max(self, codec: SIDCodec) -> torch.Tensor:
        """uint8 ``[G]``: largest valid value of each byte, ``prod_{l in g} K_l - 1``."""
        self._check_codec(codec)
        return group_max(codec)

    def scalar_factors(self, rtol: float = 1e-5) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """``(values [sum_l K_l], dirs [L, D])`` if every level is rank 1 (``m_l = 1``), else None.

        Uses DPCA's factors when given; otherwise tests each table's rank by SVD (relative
        tolerance ``rtol``). Then ``T_l[k] = values[level_offsets[l] + k] * dirs[l]``.
        """
        key = ("scalar", rtol)
        if key in self._cache:
            return self._cache[key]
        vals: List[torch.Tensor] = []
        dirs: List[torch.Tensor] = []
        result: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        ok = True
        if self.factors is not None and all(c.shape[1] == 1 for c, _ in self.factors):
            for c, v in self.factors:
                vals.append(c[:, 0])
                dirs.append(v[:, 0])
        else:
            for t in self.tables:
                u, s, vh = torch.linalg.svd(t.double(), full_matrices=False)
                if s.numel() > 1 and float(s[1]) > rtol * max(float(s[0]), 1e-30):
                    ok = False
                    break
                vals.append((u[:, 0] * s[0]).float())
                dirs.append(vh[0].float())
        if ok:
            result = (torch.cat(vals), torch.stack(dirs))
        self._cache[key] = result
        return result

    def _check_codec(self, codec: SIDCodec) -> None:
        if list(codec.radices) != self.radices:
            raise ValueError(
                f"codec radices {list(codec.radices)} do not match the tables' radices {self.radices}"
            )
