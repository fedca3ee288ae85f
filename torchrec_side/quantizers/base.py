# pyre-strict
"""The quantizer interface shared by RQ-KMeans and DPCA.

Every quantizer maps content vectors ``X [N, D]`` to integer codes ``[N, L]`` (level ``l`` has
``K_l`` codes) and back with an additive decoder::

    decode(c) = offset + sum_l T_l[c_l]        T_l: [K_l, D]
"""

from __future__ import annotations

import json
import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Type, TypeVar

import torch

from torchrec_side.io import PAYLOAD_SHA256, ArtifactError, PathLike, load_tensors, save_tensors

FORMAT = "torchrec_side.quantizer"
FORMAT_VERSION = 1

Q = TypeVar("Q", bound="Quantizer")

_REGISTRY: Dict[str, Type["Quantizer"]] = {}


def check_vectors(x: torch.Tensor, dim: Optional[int] = None, name: str = "content vectors") -> torch.Tensor:
    """Checks a float matrix ``[N, D]`` (finite, right width) and returns it as float32."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name}: expected shape [N, D], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name}: expected width D={dim}, got {x.shape[1]}")
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        rows = bad.any(dim=1).nonzero().flatten()
        raise ValueError(
            f"{name}: {int(rows.numel())} row(s) contain NaN or inf (first bad row: {int(rows[0])})"
        )
    return x.float()


def check_codes(codes: torch.Tensor, radices: Sequence[int]) -> torch.Tensor:
    """Checks integer codes ``[N, L]`` against per-level radices; errors name the level and value."""
    if codes.dim() != 2 or codes.shape[1] != len(radices):
        raise ValueError(f"codes: expected shape [N, {len(radices)}], got {tuple(codes.shape)}")
    if codes.is_floating_point() or codes.dtype == torch.bool:
        raise TypeError(f"codes: expected an integer tensor, got {codes.dtype}")
    codes = codes.long()
    if codes.numel():
        k = torch.tensor(list(radices), device=codes.device)
        bad = (codes < 0) | (codes >= k)
        if bool(bad.any()):
            row, level = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"codes: level {level}: code {int(codes[row, level])} out of range [0, {radices[level]})"
                f" (row {row})"
            )
    return codes


@dataclass(frozen=True)
class CodebookStats:
    """Codebook health of a set of codes.

    Args:
        utilization: per level, fraction of the ``K_l`` codes used at least once.
        perplexity: per level, ``exp(entropy)`` of the code histogram (``K_l`` when uniform).
        distinct_sids: number of distinct full SIDs.
        collision_rate: ``1 - distinct_sids / N``: the share of items whose SID another item already has.
        num_items: ``N``.
    """

    utilization: List[float]
    perplexity: List[float]
    distinct_sids: int
    collision_rate: float
    num_items: int

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def codebook_stats(codes: torch.Tensor, radices: Sequence[int]) -> CodebookStats:
    """Per-level utilization and perplexity, distinct SIDs and collision rate of ``codes [N, L]``."""
    codes = check_codes(codes, radices)
    util: List[float] = []
    ppl: List[float] = []
    for level, k in enumerate(radices):
        hist = torch.bincount(codes[:, level], minlength=k).double()
        util.append(float((hist > 0).sum()) / k)
        p = hist / hist.sum().clamp_min(1)
        ent = -(p[p > 0] * p[p > 0].log()).sum()
        ppl.append(float(ent.exp()))
    n = int(codes.shape[0])
    distinct = int(torch.unique(codes, dim=0).shape[0]) if n else 0
    return CodebookStats(util, ppl, distinct, 1.0 - distinct / n if n else 0.0, n)


class Quantizer(ABC):
    """Base class: fit / encode / decode / level_tables / bits_per_item / save-load.

    Subclasses set ``kind``, implement :meth:`fit`, :meth:`encode`, :meth:`level_tables`,
    :meth:`_tensors`, :meth:`_load_tensors` and :meth:`config_dict`, and register with
    :func:`register_quantizer`.
    """

    kind: ClassVar[str] = ""

    @property
    @abstractmethod
    def radices(self) -> List[int]:
        """``[K_1, ..., K_L]``: number of codes per level."""

    @property
    def num_levels(self) -> int:
        return len(self.radices)

    @property
    def bits_per_item(self) -> float:
        """Information content of one SID: ``sum_l log2 K_l``."""
        return float(sum(math.log2(k) for k in self.radices))

    @property
    @abstractmethod
    def dim(self) -> int:
        """``D``, the width of the vectors (``-1`` before fit)."""

    @property
    @abstractmethod
    def fitted(self) -> bool: ...

    @abstractmethod
    def fit(self: Q, x: torch.Tensor) -> Q:
        """Fits the quantizer on ``x [N, D]`` and returns ``self``."""

    @abstractmethod
    def encode(self, x: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
        """Codes ``int64 [N, L]`` of ``x [N, D]``, computed in batches of ``batch_size`` rows."""

    @abstractmethod
    def level_tables(self) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """``(offset [D], [T_1 [K_1, D], ..., T_L [K_L, D]])`` of the additive decoder."""

    @abstractmethod
    def config_dict(self) -> Dict[str, Any]:
        """JSON-serializable constructor config."""

    @abstractmethod
    def _tensors(self) -> Dict[str, torch.Tensor]: ...

    @abstractmethod
    def _load_tensors(self, tensors: Dict[str, torch.Tensor]) -> None: ...

    @classmethod
    @abstractmethod
    def from_config(cls: Type[Q], config: Dict[str, Any]) -> Q: ...

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(x) or load a saved one")

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[N, D]`` of codes ``[N, L]``: ``offset + sum_l T_l[c_l]``."""
        self._require_fitted()
        offset, tables = self.level_tables()
        codes = check_codes(codes.to(offset.device), self.radices)
        out = offset.expand(codes.shape[0], -1).clone()
        for level, table in enumerate(tables):
            out += table[codes[:, level]]
        return out

    def stats(self, codes: torch.Tensor) -> CodebookStats:
        """Codebook health of ``codes [N, L]`` (see :class:`CodebookStats`)."""
        return codebook_stats(codes, self.radices)

    def to(self: Q, device: torch.device | str) -> Q:
        """Moves the fitted tables to ``device`` (in place) and returns ``self``."""
        if self.fitted:
            self._load_tensors({k: v.to(device) for k, v in self._tensors().items()})
        return self

    def state_dict(self) -> Dict[str, torch.Tensor]:
        self._require_fitted()
        return dict(self._tensors())

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Loads tables from :meth:`state_dict`; ValueError naming the table if one is missing,
        mis-shaped or holds NaN / inf."""
        try:
            self._load_tensors(dict(state))
        except KeyError as e:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing table {e}") from e

    def save(self, path: PathLike) -> None:
        """Writes config and tables to one safetensors file, atomically, with a SHA-256 of the
        tables in its header (checked by :meth:`load`)."""
        self._require_fitted()
        meta = {
            "format": FORMAT,
            "version": str(FORMAT_VERSION),
            "kind": self.kind,
            "config": json.dumps(self.config_dict()),
        }
        save_tensors(path, self._tensors(), meta)

    @classmethod
    def load(cls: Type[Q], path: PathLike, device: torch.device | str = "cpu") -> Q:
        """Loads a quantizer saved by :meth:`save`.

        ``Quantizer.load`` (and :func:`torchrec_side.quantizers.load_quantizer`) returns whatever
        kind the file holds; ``DPCA.load`` / ``RQKMeans.load`` accept only their own kind.

        The file's tensors are checked against the SHA-256 recorded at save. Files written before
        checksums were recorded (torchrec-side 0.1.0 before issue 10) still load, with a
        ``UserWarning`` saying they are unverified; saving them again adds the checksum.

        Args:
            path: the ``.safetensors`` file.
            device: where the tables go.

        Raises:
            ArtifactError: missing or corrupt file, checksum mismatch, another format, version or
                quantizer kind, or tables that do not match the config (shape, NaN / inf).

        Example::

            q = Quantizer.load("runs/q/dpca.safetensors")   # a DPCA or an RQKMeans
            dpca = DPCA.load("runs/q/dpca.safetensors")     # ArtifactError if the file is RQ-KMeans
        """
        tensors, meta = load_tensors(path)
        if meta.get("format") != FORMAT:
            raise ArtifactError(f"{path}: not a torchrec_side quantizer (format={meta.get('format')!r})")
        if meta.get("version") != str(FORMAT_VERSION):
            raise ArtifactError(
                f"{path}: quantizer format version {meta.get('version')} is not supported "
                f"(this build reads version {FORMAT_VERSION})"
            )
        kind = meta.get("kind", "")
        if kind not in _REGISTRY:
            raise ArtifactError(f"{path}: unknown quantizer kind {kind!r}; known: {sorted(_REGISTRY)}")
        found = _REGISTRY[kind]
        if not issubclass(found, cls):
            raise ArtifactError(
                f"{path}: holds a {found.__name__} quantizer (kind {kind!r}), not a {cls.__name__} "
                f"(kind {cls.kind!r}); load it with {found.__name__}.load or Quantizer.load"
            )
        if PAYLOAD_SHA256 not in meta:
            warnings.warn(
                f"{path}: no tensor checksum recorded (written by an older torchrec-side); loaded "
                "unverified. Save it again to add one.",
                UserWarning,
                stacklevel=2,
            )
        try:
            q = found.from_config(json.loads(meta["config"]))
            q._load_tensors({k: v.to(device) for k, v in tensors.items()})
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise ArtifactError(f"{path}: corrupt {kind} quantizer: {e}") from e
        return q  # pyre-ignore[7]: found is a subclass of cls


def check_finite_tables(tensors: Dict[str, torch.Tensor]) -> None:
    """Raises ValueError naming the first tensor holding NaN or inf (decoder tables must be finite)."""
    for name in sorted(tensors):
        t = tensors[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"table {name!r} {tuple(t.shape)} contains NaN or inf")


def register_quantizer(cls: Type[Q]) -> Type[Q]:
    """Class decorator adding a quantizer to the registry used by :meth:`Quantizer.load`."""
    _REGISTRY[cls.kind] = cls
    return cls
