# pyre-strict
"""SIDE: parameter-free Semantic-ID embeddings for TorchRec.

``SIDEmbeddingBagCollection`` implements TorchRec's ``EmbeddingBagCollectionInterface`` for
features that carry packed SIDs (one int64 per event): it reads a ``KeyedJaggedTensor`` and returns
a ``KeyedTensor`` of pooled embeddings with the same key order and shapes as TorchRec's module, so
it fits where ``torchrec.models.dlrm`` expects an EBC. Each event's embedding is the frozen
tokenizer decode::

    e(event) = offset + sum_l T_l[c_l]                e(bag) = pool_{e in bag} w_e * e(event)

``SIDEmbeddingCollection`` (``EmbeddingCollectionInterface``) is the unpooled variant (per-event
embeddings as ``JaggedTensor``) for attention / sequence models.

Like TorchRec's, the configs (:class:`SIDEmbeddingBagConfig`, :class:`SIDEmbeddingConfig`) are
metadata only: names, features, the codec (radices and layout), the decoder width, pooling and the
compute path. The tensors come from :class:`~torchrec_side.modules.SIDTables` given to the
collection (``sid_tables={table name: tables}``) or from a state dict: a collection built on the
meta device (``dim`` set in its configs) is materialized with ``to_empty`` and filled by
``load_state_dict``, which also rebuilds the derived fast-path tables. The tables are buffers
(saved in the state dict, never trained); nothing grows with the number of items or SIDs. An
optional small learned projection ``D -> projection_dim`` may follow.

The collections have no learned table, so no TorchRec sharder matches them (DMP matches sharders by
exact module type): ``DistributedModelParallel`` leaves them unsharded and replicates them with the
dense part of the model. Variable-batch (VBE) KJTs are accepted: pooled outputs are expanded to the
global batch with the KJT's ``inverse_indices`` (as TorchRec's EBC does), and refused with
:class:`SIDInputError` when those are missing.

The modules only hold buffers; the pooling is one dispatching op per operation,
:func:`torchrec_side.modules.ops.sid_pool` / :func:`~torchrec_side.modules.ops.sid_embed`, whose
compute paths and per-device default are described in :mod:`torchrec_side.modules.ops.dispatch`
(docs/design.md, section 5).
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollectionInterface, EmbeddingCollectionInterface
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor, KeyedTensor

from torchrec_side.errors import TorchRecSideError
from torchrec_side.modules.ops import dispatch as Fs
from torchrec_side.modules.ops.common import BYTE_BINS
from torchrec_side.modules.ops.dispatch import SIDEOpTables, sid_embed, sid_pool
from torchrec_side.modules.tables import SIDTables, byte_groups, group_max, level_offsets
from torchrec_side.sid.codec import SIDCodec, SIDValueError

__all__ = [
    "SIDInputError",
    "SIDEmbeddingBagConfig",
    "SIDEmbeddingConfig",
    "SIDEmbeddingBag",
    "SIDEmbedding",
    "SIDEmbeddingBagCollection",
    "SIDEmbeddingCollection",
]


class SIDInputError(TorchRecSideError, ValueError):
    """A KeyedJaggedTensor does not fit a SID module: missing features, weights of the wrong length,
    or a variable-batch KJT without inverse indices."""


def _pooling(p: Union[str, PoolingType]) -> PoolingType:
    if isinstance(p, PoolingType):
        if p == PoolingType.NONE:
            raise ValueError("pooling NONE: use SIDEmbeddingCollection for unpooled embeddings")
        return p
    try:
        return {"sum": PoolingType.SUM, "mean": PoolingType.MEAN}[str(p).lower()]
    except KeyError:
        raise ValueError(f"pooling must be 'sum' or 'mean', got {p!r}") from None


def _as_tables(source: Any, name: str) -> SIDTables:
    """``source`` (SIDTables, a fitted quantizer / tokenizer artifact) as :class:`SIDTables`."""
    if isinstance(source, SIDTables):
        return source
    try:
        return SIDTables.from_quantizer(source)
    except TypeError as e:
        raise TypeError(f"sid_tables[{name!r}]: {e}") from None


def _check_compute(compute: str, pooled: bool, where: str) -> None:
    allowed = [str(c) for c in (Fs.POOLED_COMPUTE if pooled else Fs.UNPOOLED_COMPUTE)]
    if str(compute) not in allowed:
        raise ValueError(f"{where}: unknown SIDE compute path {compute!r}; expected one of {allowed}")


@dataclass
class SIDEmbeddingConfig:
    """One frozen SID table serving one or more features, unpooled. Metadata only: the decoder
    tensors are given to the collection (``sid_tables=``) or loaded from a state dict.

    Args:
        name (str): table name (used in state-dict keys, ``tables.{name}.offset`` ...).
        feature_names (List[str]): KJT keys whose values are packed SIDs of this codec.
        codec (SIDCodec): how the SIDs are packed (radices and layout: metadata, no data tensors).
        dim (Optional[int]): ``D``, the decoder's width. None: taken from the tables given to the
            collection; required to build without tables (e.g. on the meta device, then
            ``load_state_dict``).
        projection_dim (Optional[int]): learned ``Linear(D, projection_dim, bias=False)`` after
            the lookup; None (default) for none.
        compute (str): compute path, ``"auto"`` or one of
            :data:`torchrec_side.modules.ops.UNPOOLED_COMPUTE`.

    Example::

        cfg = SIDEmbeddingConfig(name="history", feature_names=["hist_sid"],
                                 codec=SIDCodec.byte_grouped(dpca.radices))
        sec = SIDEmbeddingCollection(tables=[cfg], sid_tables={"history": SIDTables.from_quantizer(dpca)})
    """

    name: str
    feature_names: List[str]
    codec: SIDCodec
    dim: Optional[int] = None
    projection_dim: Optional[int] = None
    compute: str = "auto"
    # Refused (kept as init-only names to say where the tensors go now)
    tables: InitVar[Any] = None
    quantizer: InitVar[Any] = None

    def __post_init__(self, tables: Any, quantizer: Any) -> None:
        kind = type(self).__name__
        if tables is not None or quantizer is not None:
            coll = "SIDEmbeddingBagCollection" if isinstance(self, SIDEmbeddingBagConfig) else "SIDEmbeddingCollection"
            raise TypeError(
                f"{kind} {self.name!r} holds metadata only: give the decoder tables to the collection, "
                f"{coll}(tables=[config], sid_tables={{{self.name!r}: SIDTables.from_quantizer(q)}}) "
                f"(a fitted quantizer is accepted there too), or set dim= and load a state dict"
            )
        if not isinstance(self.codec, SIDCodec):
            raise TypeError(f"{kind} {self.name!r}: codec must be a SIDCodec, got {type(self.codec).__name__}")
        if not self.name:
            raise ValueError(f"{kind}: name is empty")
        self.feature_names = list(self.feature_names)
        if not self.feature_names:
            raise ValueError(f"table {self.name!r}: feature_names is empty")
        for what, v in (("dim", self.dim), ("projection_dim", self.projection_dim)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"table {self.name!r}: {what} must be a positive int or None, got {v!r}")
        _check_compute(self.compute, isinstance(self, SIDEmbeddingBagConfig), f"table {self.name!r}")

    @property
    def embedding_dim(self) -> int:
        """Output width: ``projection_dim`` if set, else the decoder's ``dim``."""
        if self.projection_dim is not None:
            return self.projection_dim
        if self.dim is None:
            raise ValueError(f"table {self.name!r}: dim is not known until the config is bound to tables "
                             "(see the collection's sid_configs())")
        return self.dim

    @property
    def num_rows(self) -> int:
        """``sum_l K_l``: frozen rows of the level tables."""
        return sum(self.codec.radices)


@dataclass
class SIDEmbeddingBagConfig(SIDEmbeddingConfig):
    """One frozen SID table serving one or more features, pooled. Metadata only (see
    :class:`SIDEmbeddingConfig`).

    Args:
        name (str): table name (used in state-dict keys).
        feature_names (List[str]): KJT keys whose values are packed SIDs of this codec.
        codec (SIDCodec): how the SIDs are packed.
        dim (Optional[int]): ``D`` of the decoder; None: taken from the tables.
        projection_dim (Optional[int]): optional learned projection width.
        compute (str): ``"auto"`` or one of :data:`torchrec_side.modules.ops.POOLED_COMPUTE`.
        pooling (Union[str, PoolingType]): ``"sum"`` (default) or ``"mean"`` (sum / events in bag).

    Example::

        cfg = SIDEmbeddingBagConfig(name="history", feature_names=["hist_sid"],
                                    codec=SIDCodec.byte_grouped(dpca.radices))
        side = SIDEmbeddingBagCollection(tables=[cfg], sid_tables={"history": dpca})
    """

    pooling: Union[str, PoolingType] = PoolingType.SUM

    def __post_init__(self, tables: Any, quantizer: Any) -> None:
        super().__post_init__(tables, quantizer)
        self.pooling = _pooling(self.pooling)


class _SIDTableBase(nn.Module):
    """Buffers of one frozen SID decoder and its derived fast-path tables.

    Persistent buffers (the state dict): ``offset [D]`` and ``level_tables [sum_l K_l, D]``. The
    derived tables (``level_offsets``, ``stacked_with_offset``, ``grouped``, ``group_max``,
    ``scalar_values``, ``scalar_dirs``) are non-persistent and rebuilt whenever the persistent ones
    are loaded (``load_state_dict`` of this module, of any parent, or of DMP).
    """

    # buffers (registered in ``__init__`` / ``_build_derived``); declared for the type checker
    offset: torch.Tensor
    level_tables: torch.Tensor
    level_offsets: torch.Tensor
    stacked_with_offset: torch.Tensor
    grouped: Optional[torch.Tensor]
    group_max: Optional[torch.Tensor]
    scalar_values: Optional[torch.Tensor]
    scalar_dirs: Optional[torch.Tensor]

    def __init__(self, tables: Optional[SIDTables], codec: SIDCodec, compute: str, validate: bool,
                 projection_dim: Optional[int], pooled: bool, dim: Optional[int] = None,
                 device: Optional[Union[str, torch.device]] = None) -> None:
        super().__init__()
        if tables is not None and not isinstance(tables, SIDTables):
            tables = _as_tables(tables, "tables")
        if tables is not None and list(codec.radices) != tables.radices:
            raise ValueError(f"codec radices {list(codec.radices)} do not match the tables' radices {tables.radices}")
        if tables is not None and dim is not None and dim != tables.dim:
            raise ValueError(f"dim={dim} but the tables have D={tables.dim}")
        if tables is None and dim is None:
            raise ValueError("no decoder tables: give SIDTables, or dim= to build empty buffers and load a state dict")
        _check_compute(compute, pooled, type(self).__name__)
        self.codec = codec
        self.radices: List[int] = list(codec.radices)
        self.compute = compute
        self.validate = validate
        self._pooled = pooled
        self._groups: Optional[List[Tuple[int, int]]] = byte_groups(codec)
        self._factors: Optional[Tuple[Tuple[torch.Tensor, torch.Tensor], ...]] = (
            tables.factors if tables is not None else None)
        self._op_cache: Dict[Any, Any] = {}
        self._resolved: Dict[str, Fs.Compute] = {}
        dev = torch.device(device) if device is not None else None
        D = tables.dim if tables is not None else int(dim or 0)
        if tables is None and (dev is None or dev.type != "meta"):
            # Zeros until a state dict is loaded (like an EBC before its weights are loaded).
            tables = SIDTables.from_tensors(torch.zeros(D), [torch.zeros(k, D) for k in self.radices])
        if tables is not None:
            self.register_buffer("offset", tables.offset.clone())
            self.register_buffer("level_tables", tables.stacked(with_offset=False))
        else:
            self.register_buffer("offset", torch.empty(D, device=dev))
            self.register_buffer("level_tables", torch.empty(sum(self.radices), D, device=dev))
        self._build_derived(tables)
        self.projection: Optional[nn.Linear] = (
            nn.Linear(D, projection_dim, bias=False, device=dev if tables is None else None)
            if projection_dim else None
        )
        if dev is not None and tables is not None:
            self.to(dev)

    @property
    def dim(self) -> int:
        return int(self.offset.shape[0])

    @property
    def embedding_dim(self) -> int:
        return self.projection.out_features if self.projection is not None else self.dim

    @property
    def num_groups(self) -> int:
        return len(self._groups) if self._groups is not None else 0

    def sid_tables(self) -> SIDTables:
        """The current decoder as :class:`SIDTables` (from the buffers, on CPU)."""
        if self.offset.is_meta:
            raise RuntimeError("the SIDE tables are on the meta device: materialize them (to_empty) and "
                               "load a state dict first")
        return SIDTables(self.offset.detach().cpu(),
                         tuple(self.level_tables.detach().cpu().split(self.radices, dim=0)), self._factors)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, local_metadata: Dict[str, Any],
                              strict: bool, missing_keys: List[str], unexpected_keys: List[str],
                              error_msgs: List[str]) -> None:
        # Overridden rather than a load_state_dict post hook: DMP loads module by module through
        # this method and never runs post hooks, and its loaded tables must be derived again too.
        errors_before = len(error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if len(error_msgs) == errors_before and any(prefix + k in state_dict for k in ("offset", "level_tables")):
            _rebuild_after_load(self)

    def _set_buffer(self, name: str, value: Optional[torch.Tensor]) -> None:
        if name in self._buffers:
            self._buffers[name] = value
        else:
            self.register_buffer(name, value, persistent=False)

    def _build_derived(self, tables: Optional[SIDTables]) -> None:
        """(Re)computes the non-persistent fast-path tables from ``tables`` on the buffers' device;
        with ``tables`` None (meta device) only their shapes."""
        dev = self.offset.device
        grouped = self._groups is not None
        self._set_buffer("level_offsets", level_offsets(self.radices).to(dev))
        self._set_buffer("group_max", group_max(self.codec).to(dev) if grouped else None)
        if tables is None:
            D = self.dim
            self._set_buffer("stacked_with_offset", torch.empty_like(self.level_tables))
            self._set_buffer("grouped", torch.empty(self.num_groups * BYTE_BINS, D, device=dev) if grouped else None)
            self._set_buffer("scalar_values", None)  # known once the tables are loaded
            self._set_buffer("scalar_dirs", None)
            return
        self._set_buffer("stacked_with_offset", tables.stacked(with_offset=True).to(dev))
        self._set_buffer("grouped", tables.grouped(self.codec).to(dev) if grouped else None)
        sf = tables.scalar_factors()
        self._set_buffer("scalar_values", sf[0].to(dev) if sf is not None else None)
        self._set_buffer("scalar_dirs", sf[1].to(dev) if sf is not None else None)

    def resolved_compute(self, device: torch.device) -> Fs.Compute:
        """The concrete compute path used on ``device`` (a :class:`~torchrec_side.modules.ops.Compute`)."""
        key = str(device.type)
        if key not in self._resolved:
            self._resolved[key] = Fs.resolve_compute(
                self.compute, device, self._groups is not None, self.scalar_values is not None, self._pooled
            )
        return self._resolved[key]

    def op_tables(self) -> SIDEOpTables:
        """The buffers as the :class:`~torchrec_side.modules.ops.SIDEOpTables` the SIDE ops read."""
        return SIDEOpTables(
            codec=self.codec, offset=self.offset, level_tables=self.level_tables, level_offsets=self.level_offsets,
            stacked_with_offset=self.stacked_with_offset, grouped=self.grouped, group_max=self.group_max,
            scalar_values=self.scalar_values, scalar_dirs=self.scalar_dirs, cache=self._op_cache,
        )

    def _check_sids(self, values: torch.Tensor) -> None:
        if not isinstance(values, torch.Tensor) or values.dtype != torch.int64 or values.dim() != 1:
            raise SIDValueError(
                f"packed SIDs must be a 1-D int64 tensor, got "
                f"{getattr(values, 'dtype', type(values).__name__)} with shape {tuple(getattr(values, 'shape', ()))}"
            )


def _rebuild_after_load(module: _SIDTableBase) -> None:
    """Derives the fast-path tables again from freshly loaded ``offset`` / ``level_tables``."""
    if module.offset.is_meta:  # loading into meta tensors copies nothing: nothing to derive yet
        return
    # The loaded tables may differ from the ones given at construction: derive everything again
    # (rank-1 levels are re-detected from the tables themselves).
    module._factors = None
    with torch.no_grad():
        module._build_derived(module.sid_tables())
    module._resolved.clear()
    module._op_cache.clear()


class SIDEmbeddingBag(_SIDTableBase):
    """One frozen SID table, pooled over bags (like ``nn.EmbeddingBag`` with packed SIDs as input).

    Args:
        tables (Optional[SIDTables]): the frozen decoder; None to build empty buffers of width
            ``dim`` (zeros; empty on the meta device) and load a state dict.
        codec (SIDCodec): the SID packing.
        pooling (Union[str, PoolingType]): ``"sum"`` or ``"mean"``.
        compute (str): see :mod:`torchrec_side.modules.ops.dispatch` (default ``"auto"``).
        validate (bool): check every SID against the codec (default True; cheap, fused into the
            CPU kernel).
        projection_dim (Optional[int]): optional learned projection width.
        dim (Optional[int]): ``D`` when ``tables`` is None.
        device (Optional[torch.device]): where the buffers live (default CPU).

    Call: ``forward(values [N] int64, offsets [B + 1], weights [N] or None) -> [B, embedding_dim]``.

    Example::

        bag = SIDEmbeddingBag(SIDTables.from_quantizer(dpca), SIDCodec.byte_grouped(dpca.radices))
        pooled = bag(sids, offsets)      # [B, D]
    """

    def __init__(self, tables: Optional[SIDTables], codec: SIDCodec, pooling: Union[str, PoolingType] = "sum",
                 compute: str = "auto", validate: bool = True, projection_dim: Optional[int] = None,
                 dim: Optional[int] = None, device: Optional[Union[str, torch.device]] = None) -> None:
        super().__init__(tables, codec, compute, validate, projection_dim, pooled=True, dim=dim, device=device)
        self.pooling: PoolingType = _pooling(pooling)

    def forward(self, values: torch.Tensor, offsets: torch.Tensor,
                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        return _side_bag_forward(self, values, offsets, weights)

    def pool(self, values: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor] = None,
             compute: Optional[str] = None) -> torch.Tensor:
        """Pooled ``[B, D]`` before the projection, with an explicit compute path if given."""
        self._check_sids(values)
        if weights is not None and weights.numel() != values.numel():
            raise SIDInputError(f"weights have {weights.numel()} entries for {values.numel()} SIDs")
        mean = self.pooling == PoolingType.MEAN
        path = self.resolved_compute(values.device) if compute is None else compute
        return sid_pool(values, offsets, weights, self.op_tables(), path, mean, self.validate)


@torch.fx.wrap
def _side_bag_forward(module: SIDEmbeddingBag, values: torch.Tensor, offsets: torch.Tensor,
                      weights: Optional[torch.Tensor]) -> torch.Tensor:
    out = module.pool(values, offsets, weights)
    return module.projection(out) if module.projection is not None else out


class SIDEmbedding(_SIDTableBase):
    """One frozen SID table, one embedding per event (like ``nn.Embedding`` with packed SIDs as input).

    Args:
        tables (Optional[SIDTables]): the frozen decoder; None to build empty buffers of width ``dim``.
        codec (SIDCodec): the SID packing.
        compute (str): ``"auto"`` or one of :data:`~torchrec_side.modules.ops.UNPOOLED_COMPUTE`.
        validate (bool): check every SID against the codec (default True).
        projection_dim (Optional[int]): optional learned projection width.
        dim (Optional[int]): ``D`` when ``tables`` is None.
        device (Optional[torch.device]): where the buffers live (default CPU).

    Call: ``forward(values [N] int64) -> [N, embedding_dim]``; row ``i`` equals the quantizer's
    decode of SID ``i`` (before the projection).

    Example::

        emb = SIDEmbedding(SIDTables.from_quantizer(rq), SIDCodec.byte_grouped(rq.radices))
        emb(sids)                        # [N, D]
    """

    def __init__(self, tables: Optional[SIDTables], codec: SIDCodec, compute: str = "auto", validate: bool = True,
                 projection_dim: Optional[int] = None, dim: Optional[int] = None,
                 device: Optional[Union[str, torch.device]] = None) -> None:
        super().__init__(tables, codec, compute, validate, projection_dim, pooled=False, dim=dim, device=device)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return _side_embed_forward(self, values)

    def embed(self, values: torch.Tensor, compute: Optional[str] = None) -> torch.Tensor:
        """Per-event ``[N, D]`` before the projection, with an explicit compute path if given."""
        self._check_sids(values)
        path = self.resolved_compute(values.device) if compute is None else compute
        return sid_embed(values, self.op_tables(), path, self.validate)


@torch.fx.wrap
def _side_embed_forward(module: SIDEmbedding, values: torch.Tensor) -> torch.Tensor:
    out = module.embed(values)
    return module.projection(out) if module.projection is not None else out


@torch.fx.wrap
def _split_features(
    features: KeyedJaggedTensor, feature_names: List[str], weighted: bool, owner: str
) -> List[Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], torch.Tensor]]:
    """``[(values, offsets, weights, lengths)]`` per feature, after the KJT checks."""
    keys = features.keys()
    missing = [f for f in feature_names if f not in keys]
    if missing:
        raise SIDInputError(f"{owner}: features {missing} missing from the KeyedJaggedTensor (keys: {keys})")
    w_all = features.weights_or_none()
    if weighted:
        if w_all is None:
            raise SIDInputError(f"{owner} is weighted (is_weighted=True) but the KeyedJaggedTensor has no weights")
        if w_all.numel() != features.values().numel():
            raise SIDInputError(
                f"{owner}: KeyedJaggedTensor weights have {w_all.numel()} entries for "
                f"{features.values().numel()} values"
            )
    fd = features.to_dict()
    out = []
    for f in feature_names:
        jt = fd[f]
        out.append((jt.values(), jt.offsets(), jt.weights() if weighted else None, jt.lengths()))
    return out


@torch.fx.wrap
def _pooled_output(features: KeyedJaggedTensor, feature_names: List[str], lengths_per_key: List[int],
                   pooled: List[torch.Tensor], owner: str) -> KeyedTensor:
    """The pooled ``[B_f, D_f]`` per feature as one ``KeyedTensor`` ``[B, sum_f D_f]``.

    A variable-batch (VBE) KJT has its own batch ``B_f`` per feature; its ``inverse_indices``
    (``[F, B]``, row per key) map every global sample to its feature's row, as TorchRec's EBC does.
    Inverse indices on a fixed-batch KJT are applied the same way.
    """
    inverse = features.inverse_indices_or_none()
    if inverse is None and features.variable_stride_per_key():
        raise SIDInputError(
            f"{owner}: the KeyedJaggedTensor has a variable batch per feature (VBE, stride_per_key "
            f"{features.stride_per_key()}) but no inverse_indices: the pooled features cannot be put in one "
            "batch; build it with inverse_indices=(keys, [F, B] indices) or with one stride for every key"
        )
    if inverse is not None:
        row = {k: i for i, k in enumerate(inverse[0])}
        absent = [f for f in feature_names if f not in row]
        if absent:
            raise SIDInputError(f"{owner}: features {absent} have no row in the KJT's inverse_indices "
                                f"(keys {inverse[0]})")
        pooled = [torch.index_select(p, 0, inverse[1][row[f]]) for f, p in zip(feature_names, pooled)]
    return KeyedTensor(keys=feature_names, length_per_key=lengths_per_key, values=torch.cat(pooled, dim=1), key_dim=1)


_C = TypeVar("_C", bound=SIDEmbeddingConfig)


def _bind(configs: Sequence[_C], sid_tables: Optional[Mapping[str, Any]], kind: type,
          owner: str) -> List[Tuple[_C, Optional[SIDTables]]]:
    """Pairs each config with its tables (from ``sid_tables``), with ``dim`` filled in."""
    if not configs:
        raise ValueError(f"{owner} needs at least one table")
    for c in configs:
        if not isinstance(c, kind):
            raise TypeError(f"{owner}: tables must be {kind.__name__} objects, got {type(c).__name__}")
    _check_unique(configs)
    given = dict(sid_tables or {})
    names = [c.name for c in configs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"{owner}: sid_tables names unknown tables {unknown}; the configs' tables: {names}")
    out: List[Tuple[_C, Optional[SIDTables]]] = []
    for c in configs:
        t = _as_tables(given[c.name], c.name) if c.name in given else None
        if t is None:
            if c.dim is None:
                raise ValueError(
                    f"{owner}: table {c.name!r} has no decoder tables: pass sid_tables={{{c.name!r}: SIDTables}} "
                    f"(or a fitted quantizer), or set dim=D in its config to build empty buffers (e.g. on the meta "
                    f"device) and load a state dict"
                )
            out.append((c, None))
            continue
        if list(c.codec.radices) != t.radices:
            raise ValueError(f"table {c.name!r}: codec radices {list(c.codec.radices)} do not match the tables' "
                             f"radices {t.radices}")
        if c.dim is not None and c.dim != t.dim:
            raise ValueError(f"table {c.name!r}: config dim={c.dim} but the tables have D={t.dim}")
        out.append((replace(c, dim=t.dim), t))
    return out


class SIDEmbeddingBagCollection(EmbeddingBagCollectionInterface):
    """Pooled SIDE embeddings for a KeyedJaggedTensor of packed SIDs; TorchRec's
    ``EmbeddingBagCollectionInterface``, a drop-in for an EBC.

    For every feature of every table, the bag (one user's history) is pooled into
    ``e(bag) = pool_e w_e * (offset + sum_l T_l[c_{l,e}])``. The tables are frozen buffers: the
    module has no learned parameter except the optional projections.

    Args:
        tables (List[SIDEmbeddingBagConfig]): the SID tables (metadata) and the features each serves.
        is_weighted (bool): use the KJT's per-event weights (they must be present, one per value).
        device (Optional[torch.device]): where the buffers live (default CPU); ``"meta"`` builds
            shapes only (then ``to_empty(device=...)`` and ``load_state_dict``).
        validate (bool): check SIDs against the codec, weights' length and keys (default True).
            The SID check is fused into the CPU kernel; turn it off for a little speed.
        sid_tables (Optional[Mapping[str, Any]]): ``{table name: SIDTables}`` (or a fitted
            quantizer / tokenizer artifact) for the configs' tables. A table not named here is
            built empty (zeros; shapes only on the meta device) from its config's ``dim``, to be
            filled by ``load_state_dict``.

    Input: ``KeyedJaggedTensor`` with int64 packed SIDs as values, ``stride`` B; extra keys are
    ignored. Variable-batch (VBE) KJTs need ``inverse_indices`` (``[F, B]``): each feature's pooled
    rows are expanded to the global batch B. Output: ``KeyedTensor`` with keys = feature names
    (table order), ``values()`` of shape ``[B, sum_f D_f]``.

    Compute: ``auto`` picks per device and codec (:func:`~torchrec_side.modules.ops.resolve_compute`):
    for byte-addressable codecs the registered op ``torchrec_side::sid_pool`` (``kernel``) where it
    runs, else ``grouped_bag`` (embedding_bag over precomputed byte-group tables); ``per_level``
    lookups for other codecs. The other paths of :data:`~torchrec_side.modules.ops.POOLED_COMPUTE`
    are selectable. Bag offsets are always checked; the module compiles with ``torch.compile(fullgraph=True)``, exports with
    ``torch.export`` and traces with ``torchrec.fx.symbolic_trace``. DMP leaves it unsharded
    (replicated with the dense part): no sharder matches it.

    Example::

        codec = SIDCodec.byte_grouped(dpca.radices)               # 40 ternary digits, 8 bytes
        side = SIDEmbeddingBagCollection(
            tables=[SIDEmbeddingBagConfig(name="history", feature_names=["hist_sid"], codec=codec)],
            sid_tables={"history": SIDTables.from_quantizer(dpca)})
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=["hist_sid"], values=codec.pack(codes), lengths=torch.tensor([3, 0, 2]))
        pooled = side(kjt)                                        # KeyedTensor
        pooled["hist_sid"].shape                                  # [3, D]

        # from a checkpoint: shapes on the meta device, then the state dict
        cfg = SIDEmbeddingBagConfig(name="history", feature_names=["hist_sid"], codec=codec, dim=64)
        side = SIDEmbeddingBagCollection(tables=[cfg], device=torch.device("meta"))
        side.to_empty(device="cpu").load_state_dict(state_dict)
    """

    def __init__(self, tables: List[SIDEmbeddingBagConfig], is_weighted: bool = False,
                 device: Optional[Union[str, torch.device]] = None, validate: bool = True,
                 sid_tables: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        owner = type(self).__name__
        bound = _bind(tables, sid_tables, SIDEmbeddingBagConfig, owner)
        self._configs: List[SIDEmbeddingBagConfig] = [c for c, _ in bound]
        self._is_weighted = is_weighted
        self.validate = validate
        self.tables = nn.ModuleDict()
        for cfg, t in bound:
            self.tables[cfg.name] = SIDEmbeddingBag(t, cfg.codec, cfg.pooling, cfg.compute, validate,
                                                     cfg.projection_dim, dim=cfg.dim, device=device)
        self._feature_names: List[str] = [f for cfg in self._configs for f in cfg.feature_names]
        self._feature_tables: List[str] = [cfg.name for cfg in self._configs for _ in cfg.feature_names]
        self._lengths_per_key: List[int] = [cfg.embedding_dim for cfg in self._configs for _ in cfg.feature_names]

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        """
        Args:
            features (KeyedJaggedTensor): packed SIDs per feature (``stride`` B).

        Returns:
            KeyedTensor: keys = feature names, values ``[B, sum_f D_f]``.
        """
        owner = type(self).__name__
        parts = _split_features(features, self._feature_names, self._is_weighted, owner)
        pooled: List[torch.Tensor] = []
        for i, table in enumerate(self._feature_tables):
            values, offsets, weights, _ = parts[i]
            pooled.append(self.tables[table](values, offsets, weights))
        return _pooled_output(features, self._feature_names, self._lengths_per_key, pooled, owner)

    def is_weighted(self) -> bool:
        return self._is_weighted

    def sid_configs(self) -> List[SIDEmbeddingBagConfig]:
        """The :class:`SIDEmbeddingBagConfig` objects of this module (``dim`` filled in)."""
        return list(self._configs)

    def sid_tables(self) -> Dict[str, SIDTables]:
        """``{table name: SIDTables}`` read from the current buffers (on CPU)."""
        return {name: _table_module(m).sid_tables() for name, m in self.tables.items()}

    def embedding_bag_configs(self) -> List[EmbeddingBagConfig]:
        """TorchRec ``EmbeddingBagConfig`` views (name, output dim, features, pooling) for code that
        reads an EBC's configs (e.g. ``torchrec.models.dlrm``). ``num_embeddings`` is the number of
        frozen rows ``sum_l K_l``; these tables are not learned and DMP does not shard them."""
        return [EmbeddingBagConfig(num_embeddings=cfg.num_rows, embedding_dim=cfg.embedding_dim, name=cfg.name,
                                   feature_names=list(cfg.feature_names), pooling=_pooling(cfg.pooling))
                for cfg in self._configs]

    @property
    def device(self) -> torch.device:
        return next(iter(self.buffers())).device


class SIDEmbeddingCollection(EmbeddingCollectionInterface):
    """Unpooled SIDE embeddings: one vector per event, for attention / sequence models; TorchRec's
    ``EmbeddingCollectionInterface``.

    Args:
        tables (List[SIDEmbeddingConfig]): the SID tables (metadata) and the features each serves.
        device (Optional[torch.device]): where the buffers live (default CPU; ``"meta"``: shapes only).
        validate (bool): check SIDs against the codec and keys (default True).
        sid_tables (Optional[Mapping[str, Any]]): ``{table name: SIDTables}`` (or a fitted
            quantizer); tables not named are built empty from their config's ``dim``.

    Input: ``KeyedJaggedTensor`` of packed SIDs (variable-batch KJTs too: each feature keeps its own
    batch). Output: ``Dict[str, JaggedTensor]`` (like ``EmbeddingCollection``): for each feature,
    values ``[N_f, D]`` (event ``i``'s decoded SID), with the feature's lengths and offsets.

    Example::

        sec = SIDEmbeddingCollection(
            tables=[SIDEmbeddingConfig(name="history", feature_names=["hist_sid"], codec=codec)],
            sid_tables={"history": SIDTables.from_quantizer(dpca)})
        out = sec(kjt)["hist_sid"]          # JaggedTensor
        out.values().shape                  # [N, D]; out.lengths(): events per user
    """

    def __init__(self, tables: List[SIDEmbeddingConfig], device: Optional[Union[str, torch.device]] = None,
                 validate: bool = True, sid_tables: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        owner = type(self).__name__
        bound = _bind(tables, sid_tables, SIDEmbeddingConfig, owner)
        self._configs: List[SIDEmbeddingConfig] = [c for c, _ in bound]
        self.validate = validate
        self.tables = nn.ModuleDict()
        for cfg, t in bound:
            self.tables[cfg.name] = SIDEmbedding(t, cfg.codec, cfg.compute, validate, cfg.projection_dim,
                                                 dim=cfg.dim, device=device)
        self._feature_names: List[str] = [f for cfg in self._configs for f in cfg.feature_names]
        self._feature_tables: List[str] = [cfg.name for cfg in self._configs for _ in cfg.feature_names]

    def forward(self, features: KeyedJaggedTensor) -> Dict[str, JaggedTensor]:
        """
        Args:
            features (KeyedJaggedTensor): packed SIDs per feature.

        Returns:
            Dict[str, JaggedTensor]: per feature, values ``[N_f, D]`` with the feature's lengths.
        """
        parts = _split_features(features, self._feature_names, False, type(self).__name__)
        out: Dict[str, JaggedTensor] = {}
        for i, table in enumerate(self._feature_tables):
            values, offsets, _, lengths = parts[i]
            out[self._feature_names[i]] = JaggedTensor(
                values=self.tables[table](values), lengths=lengths, offsets=offsets
            )
        return out

    def sid_configs(self) -> List[SIDEmbeddingConfig]:
        """The :class:`SIDEmbeddingConfig` objects of this module (``dim`` filled in)."""
        return list(self._configs)

    def sid_tables(self) -> Dict[str, SIDTables]:
        """``{table name: SIDTables}`` read from the current buffers (on CPU)."""
        return {name: _table_module(m).sid_tables() for name, m in self.tables.items()}

    def embedding_configs(self) -> List[EmbeddingConfig]:
        """TorchRec ``EmbeddingConfig`` views (name, dim, features); the tables are frozen buffers."""
        return [EmbeddingConfig(num_embeddings=cfg.num_rows, embedding_dim=cfg.embedding_dim, name=cfg.name,
                                feature_names=list(cfg.feature_names))
                for cfg in self._configs]

    def embedding_dim(self) -> int:
        """The output width shared by every table (TorchRec's ``EmbeddingCollection`` requires one)."""
        dims = sorted({cfg.embedding_dim for cfg in self._configs})
        if len(dims) != 1:
            raise ValueError(f"{type(self).__name__}: the tables have different output widths {dims}; "
                             "read embedding_configs() for each table's")
        return dims[0]

    def need_indices(self) -> bool:
        """False: the output JaggedTensors carry no input ids (SIDs are not row indices)."""
        return False

    def embedding_names_by_table(self) -> List[List[str]]:
        """Output keys per table: its feature names (a feature is served by one table only)."""
        return [list(cfg.feature_names) for cfg in self._configs]

    @property
    def device(self) -> torch.device:
        return next(iter(self.buffers())).device


def _table_module(m: nn.Module) -> _SIDTableBase:
    assert isinstance(m, _SIDTableBase)
    return m


def _check_unique(tables: Sequence[SIDEmbeddingConfig]) -> None:
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate table names: {names}")
    feats = [f for t in tables for f in t.feature_names]
    if len(set(feats)) != len(feats):
        raise ValueError(f"a feature is served by more than one table: {feats}")
