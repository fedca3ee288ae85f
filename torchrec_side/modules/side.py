# pyre-strict
"""SIDE: parameter-free Semantic-ID embeddings for TorchRec.

``SIDEmbeddingBagCollection`` is a drop-in for an ``EmbeddingBagCollection`` whose features carry
packed SIDs (one int64 per event): it reads a ``KeyedJaggedTensor`` and returns a ``KeyedTensor``
of pooled embeddings with the same key order and shapes as TorchRec's module, so it fits where
``torchrec.models.dlrm`` expects an EBC. Each event's embedding is the frozen tokenizer decode::

    e(event) = offset + sum_l T_l[c_l]                e(bag) = pool_{e in bag} w_e * e(event)

The tables are buffers (saved in the state dict, never trained); nothing grows with the number of
items or SIDs. An optional small learned projection ``D -> projection_dim`` may follow.
``SIDEmbeddingCollection`` is the unpooled variant (per-event embeddings as ``JaggedTensor``) for
attention / sequence models.

The modules only hold buffers; the pooling is one dispatching op per operation,
:func:`torchrec_side.modules.ops.sid_pool` / :func:`~torchrec_side.modules.ops.sid_embed`, whose
compute paths and per-device default are described in :mod:`torchrec_side.modules.ops.dispatch`; in
short, CPU uses the registered C++ op (fallback: ``grouped_bag``), CUDA ``grouped_bag`` (``triton``
and ``fbgemm`` selectable), and codecs that are not byte-addressable use ``per_level`` lookups
(docs/design.md, section 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor, KeyedTensor

from torchrec_side.modules.ops import dispatch as Fs
from torchrec_side.modules.ops.dispatch import SIDEOpTables, sid_embed, sid_pool
from torchrec_side.modules.tables import SIDTables, byte_groups
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


class SIDInputError(ValueError):
    """A KeyedJaggedTensor does not fit a SID module: missing features or weights of the wrong length."""


def _pooling(p: Union[str, PoolingType]) -> PoolingType:
    if isinstance(p, PoolingType):
        if p == PoolingType.NONE:
            raise ValueError("pooling NONE: use SIDEmbeddingCollection for unpooled embeddings")
        return p
    try:
        return {"sum": PoolingType.SUM, "mean": PoolingType.MEAN}[str(p).lower()]
    except KeyError:
        raise ValueError(f"pooling must be 'sum' or 'mean', got {p!r}") from None


def _resolve_tables(tables: Optional[SIDTables], quantizer: Any, codec: SIDCodec, name: str) -> SIDTables:
    if tables is None and quantizer is None:
        raise ValueError(f"table {name!r}: give tables= (SIDTables) or quantizer= (a fitted quantizer)")
    if tables is None:
        tables = SIDTables.from_quantizer(quantizer)
    elif not isinstance(tables, SIDTables):
        tables = SIDTables.from_quantizer(tables)
    if list(codec.radices) != tables.radices:
        raise ValueError(
            f"table {name!r}: codec radices {list(codec.radices)} do not match the tables' radices "
            f"{tables.radices}"
        )
    return tables


@dataclass
class SIDEmbeddingConfig:
    """One frozen SID table serving one or more features, unpooled.

    Args:
        name (str): table name (used in state-dict keys).
        feature_names (List[str]): KJT keys whose values are packed SIDs of this codec.
        codec (SIDCodec): how the SIDs are packed.
        tables (Optional[SIDTables]): the decoder tables; or give ``quantizer``.
        quantizer (Any): a fitted quantizer / tokenizer (anything with ``level_tables()``).
        projection_dim (Optional[int]): learned ``Linear(D, projection_dim, bias=False)`` after
            the lookup; None (default) for none.
        compute (str): compute path, ``"auto"`` or one of
            :data:`torchrec_side.modules.ops.UNPOOLED_COMPUTE`.
    """

    name: str
    feature_names: List[str]
    codec: SIDCodec
    tables: Optional[SIDTables] = None
    quantizer: Any = field(default=None, repr=False)
    projection_dim: Optional[int] = None
    compute: str = "auto"

    def __post_init__(self) -> None:
        self.tables = _resolve_tables(self.tables, self.quantizer, self.codec, self.name)
        if not self.feature_names:
            raise ValueError(f"table {self.name!r}: feature_names is empty")

    @property
    def embedding_dim(self) -> int:
        """Output width: ``projection_dim`` if set, else the tables' ``D``."""
        assert self.tables is not None
        return self.projection_dim or self.tables.dim


@dataclass
class SIDEmbeddingBagConfig(SIDEmbeddingConfig):
    """One frozen SID table serving one or more features, pooled.

    Args:
        name (str): table name (used in state-dict keys).
        feature_names (List[str]): KJT keys whose values are packed SIDs of this codec.
        codec (SIDCodec): how the SIDs are packed.
        tables (Optional[SIDTables]): the decoder tables; or give ``quantizer``.
        quantizer (Any): a fitted quantizer / tokenizer (anything with ``level_tables()``).
        projection_dim (Optional[int]): optional learned projection width.
        compute (str): ``"auto"`` or one of :data:`torchrec_side.modules.ops.POOLED_COMPUTE`.
        pooling (Union[str, PoolingType]): ``"sum"`` (default) or ``"mean"`` (sum / events in bag).

    Example::

        cfg = SIDEmbeddingBagConfig(name="history", feature_names=["hist_sid"],
                                    codec=SIDCodec.byte_grouped(dpca.radices), quantizer=dpca)
    """

    pooling: Union[str, PoolingType] = PoolingType.SUM

    def __post_init__(self) -> None:
        super().__post_init__()
        self.pooling = _pooling(self.pooling)


class _SIDTableBase(nn.Module):
    """Buffers of one frozen SID decoder and its derived fast-path tables."""

    # buffers (registered in ``__init__`` / ``_build_derived``); declared for the type checker
    offset: torch.Tensor
    level_tables: torch.Tensor
    level_offsets: torch.Tensor
    stacked_with_offset: torch.Tensor
    grouped: Optional[torch.Tensor]
    group_max: Optional[torch.Tensor]
    scalar_values: Optional[torch.Tensor]
    scalar_dirs: Optional[torch.Tensor]

    def __init__(self, tables: SIDTables, codec: SIDCodec, compute: str, validate: bool,
                 projection_dim: Optional[int], pooled: bool) -> None:
        super().__init__()
        self.codec = codec
        self.radices: List[int] = tables.radices
        self.compute = compute
        self.validate = validate
        self._pooled = pooled
        self._groups = byte_groups(codec)
        self._factors = tables.factors
        allowed = [str(c) for c in (Fs.POOLED_COMPUTE if pooled else Fs.UNPOOLED_COMPUTE)]
        if str(compute) not in allowed:
            raise ValueError(f"unknown SIDE compute path {compute!r}; expected one of {allowed}")
        self._op_cache: Dict[Any, Any] = {}
        self.register_buffer("offset", tables.offset.clone())
        self.register_buffer("level_tables", tables.stacked(with_offset=False))
        self._build_derived(tables)
        self.projection: Optional[nn.Linear] = (
            nn.Linear(tables.dim, projection_dim, bias=False) if projection_dim else None
        )
        self.register_load_state_dict_post_hook(_rebuild_after_load)
        self._resolved: Dict[str, str] = {}

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
        """The current decoder as :class:`SIDTables` (from the buffers)."""
        return SIDTables(self.offset.detach().cpu(),
                         tuple(self.level_tables.detach().cpu().split(self.radices, dim=0)), self._factors)

    def _set_buffer(self, name: str, value: Optional[torch.Tensor]) -> None:
        if name in self._buffers:
            self._buffers[name] = value
        else:
            self.register_buffer(name, value, persistent=False)

    def _build_derived(self, tables: SIDTables) -> None:
        """(Re)computes the non-persistent fast-path tables from ``tables`` on the buffers' device."""
        dev = self.offset.device
        self._set_buffer("level_offsets", tables.level_offsets().to(dev))
        self._set_buffer("stacked_with_offset", tables.stacked(with_offset=True).to(dev))
        grouped = self._groups is not None
        self._set_buffer("grouped", tables.grouped(self.codec).to(dev) if grouped else None)
        self._set_buffer("group_max", tables.group_max(self.codec).to(dev) if grouped else None)
        sf = tables.scalar_factors()
        self._set_buffer("scalar_values", sf[0].to(dev) if sf is not None else None)
        self._set_buffer("scalar_dirs", sf[1].to(dev) if sf is not None else None)

    def resolved_compute(self, device: torch.device) -> str:
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


def _rebuild_after_load(module: nn.Module, incompatible_keys: Any) -> None:
    assert isinstance(module, _SIDTableBase)
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
        tables (SIDTables): the frozen decoder.
        codec (SIDCodec): the SID packing.
        pooling (Union[str, PoolingType]): ``"sum"`` or ``"mean"``.
        compute (str): see :mod:`torchrec_side.modules.ops.dispatch` (default ``"auto"``).
        validate (bool): check every SID against the codec (default True; cheap, fused into the
            CPU kernel).
        projection_dim (Optional[int]): optional learned projection width.

    Call: ``forward(values [N] int64, offsets [B + 1], weights [N] or None) -> [B, embedding_dim]``.

    Example::

        bag = SIDEmbeddingBag(SIDTables.from_quantizer(dpca), SIDCodec.byte_grouped(dpca.radices))
        pooled = bag(sids, offsets)      # [B, D]
    """

    def __init__(self, tables: SIDTables, codec: SIDCodec, pooling: Union[str, PoolingType] = "sum",
                 compute: str = "auto", validate: bool = True, projection_dim: Optional[int] = None) -> None:
        super().__init__(tables, codec, compute, validate, projection_dim, pooled=True)
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
        tables (SIDTables): the frozen decoder.
        codec (SIDCodec): the SID packing.
        compute (str): ``"auto"`` or one of :data:`~torchrec_side.modules.ops.UNPOOLED_COMPUTE`.
        validate (bool): check every SID against the codec (default True).
        projection_dim (Optional[int]): optional learned projection width.

    Call: ``forward(values [N] int64) -> [N, embedding_dim]``; row ``i`` equals the quantizer's
    decode of SID ``i`` (before the projection).

    Example::

        emb = SIDEmbedding(SIDTables.from_quantizer(rq), SIDCodec.byte_grouped(rq.radices))
        emb(sids)                        # [N, D]
    """

    def __init__(self, tables: SIDTables, codec: SIDCodec, compute: str = "auto", validate: bool = True,
                 projection_dim: Optional[int] = None) -> None:
        super().__init__(tables, codec, compute, validate, projection_dim, pooled=False)

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


class SIDEmbeddingBagCollection(nn.Module):
    """Pooled SIDE embeddings for a KeyedJaggedTensor of packed SIDs; a drop-in for an EBC.

    For every feature of every table, the bag (one user's history) is pooled into
    ``e(bag) = pool_e w_e * (offset + sum_l T_l[c_{l,e}])``. The tables are frozen buffers: the
    module has no learned parameter except the optional projections.

    Args:
        tables (List[SIDEmbeddingBagConfig]): the SID tables and the features each serves.
        is_weighted (bool): use the KJT's per-event weights (they must be present, one per value).
        device (Optional[torch.device]): where the buffers live (default CPU).
        validate (bool): check SIDs against the codec, weights' length and keys (default True).
            The SID check is fused into the CPU kernel; turn it off for a little speed.

    Input: ``KeyedJaggedTensor`` with int64 packed SIDs as values, ``stride`` B; extra keys are
    ignored. Output: ``KeyedTensor`` with keys = feature names (table order), ``values()`` of shape
    ``[B, sum_f D_f]``.

    Compute: ``auto`` uses the registered C++ op (``torch.ops.torchrec_side.sid_pool_grouped``,
    measured fastest on a 2-core CPU, ``benchmarks/lookup.py``) on CPU for byte-addressable codecs,
    ``grouped_bag`` (embedding_bag over precomputed byte-group tables) on CUDA or without a compiler,
    and ``per_level`` lookups for other codecs. ``scalar``, ``grouped_hist``, ``fbgemm`` (FBGEMM's
    inference TBE, also ``fbgemm_fp16`` / ``fbgemm_int8``), ``triton`` and ``reference`` are
    selectable. Bag offsets are always checked (first 0, never decreasing, last N); the module
    compiles with ``torch.compile(fullgraph=True)`` and exports with ``torch.export``.

    Example::

        codec = SIDCodec.byte_grouped(dpca.radices)               # 40 ternary digits, 8 bytes
        side = SIDEmbeddingBagCollection(tables=[SIDEmbeddingBagConfig(
            name="history", feature_names=["hist_sid"], codec=codec, quantizer=dpca)])
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=["hist_sid"], values=codec.pack(codes), lengths=torch.tensor([3, 0, 2]))
        pooled = side(kjt)                                        # KeyedTensor
        pooled["hist_sid"].shape                                  # [3, D]
    """

    def __init__(self, tables: List[SIDEmbeddingBagConfig], is_weighted: bool = False,
                 device: Optional[torch.device] = None, validate: bool = True) -> None:
        super().__init__()
        if not tables:
            raise ValueError("SIDEmbeddingBagCollection needs at least one table")
        _check_unique(tables)
        self._configs = list(tables)
        self._is_weighted = is_weighted
        self.validate = validate
        self.tables = nn.ModuleDict()
        for cfg in tables:
            assert cfg.tables is not None
            self.tables[cfg.name] = SIDEmbeddingBag(cfg.tables, cfg.codec, cfg.pooling, cfg.compute, validate,
                                                     cfg.projection_dim)
        self._feature_names: List[str] = [f for cfg in tables for f in cfg.feature_names]
        self._feature_tables: List[str] = [cfg.name for cfg in tables for _ in cfg.feature_names]
        self._lengths_per_key: List[int] = [cfg.embedding_dim for cfg in tables for _ in cfg.feature_names]
        if device is not None:
            self.to(device)

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        """
        Args:
            features (KeyedJaggedTensor): packed SIDs per feature (``stride`` B).

        Returns:
            KeyedTensor: keys = feature names, values ``[B, sum_f D_f]``.
        """
        parts = _split_features(features, self._feature_names, self._is_weighted, type(self).__name__)
        pooled: List[torch.Tensor] = []
        for i, table in enumerate(self._feature_tables):
            values, offsets, weights, _ = parts[i]
            pooled.append(self.tables[table](values, offsets, weights))
        return KeyedTensor(keys=self._feature_names, length_per_key=self._lengths_per_key,
                           values=torch.cat(pooled, dim=1), key_dim=1)

    def is_weighted(self) -> bool:
        return self._is_weighted

    def sid_configs(self) -> List[SIDEmbeddingBagConfig]:
        """The :class:`SIDEmbeddingBagConfig` objects this module was built from."""
        return self._configs

    def embedding_bag_configs(self) -> List[EmbeddingBagConfig]:
        """TorchRec ``EmbeddingBagConfig`` views (name, output dim, features, pooling) for code that
        reads an EBC's configs (e.g. ``torchrec.models.dlrm``). ``num_embeddings`` is the number of
        frozen rows ``sum_l K_l``; these tables are not learned and DMP does not shard them."""
        out = []
        for cfg in self._configs:
            assert cfg.tables is not None
            out.append(EmbeddingBagConfig(num_embeddings=cfg.tables.num_rows, embedding_dim=cfg.embedding_dim,
                                          name=cfg.name, feature_names=list(cfg.feature_names),
                                          pooling=_pooling(cfg.pooling)))
        return out

    @property
    def device(self) -> torch.device:
        return next(iter(self.buffers())).device


class SIDEmbeddingCollection(nn.Module):
    """Unpooled SIDE embeddings: one vector per event, for attention / sequence models.

    Args:
        tables (List[SIDEmbeddingConfig]): the SID tables and the features each serves.
        device (Optional[torch.device]): where the buffers live (default CPU).
        validate (bool): check SIDs against the codec and keys (default True).

    Input: ``KeyedJaggedTensor`` of packed SIDs. Output: ``Dict[str, JaggedTensor]`` (like
    ``EmbeddingCollection``): for each feature, values ``[N_f, D]`` (event ``i``'s decoded SID),
    with the feature's lengths and offsets.

    Example::

        sec = SIDEmbeddingCollection(tables=[SIDEmbeddingConfig(
            name="history", feature_names=["hist_sid"], codec=codec, quantizer=dpca)])
        out = sec(kjt)["hist_sid"]          # JaggedTensor
        out.values().shape                  # [N, D]; out.lengths(): events per user
    """

    def __init__(self, tables: List[SIDEmbeddingConfig], device: Optional[torch.device] = None,
                 validate: bool = True) -> None:
        super().__init__()
        if not tables:
            raise ValueError("SIDEmbeddingCollection needs at least one table")
        _check_unique(tables)
        self._configs = list(tables)
        self.validate = validate
        self.tables = nn.ModuleDict()
        for cfg in tables:
            assert cfg.tables is not None
            self.tables[cfg.name] = SIDEmbedding(cfg.tables, cfg.codec, cfg.compute, validate, cfg.projection_dim)
        self._feature_names: List[str] = [f for cfg in tables for f in cfg.feature_names]
        self._feature_tables: List[str] = [cfg.name for cfg in tables for _ in cfg.feature_names]
        if device is not None:
            self.to(device)

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
        return self._configs

    def embedding_configs(self) -> List[EmbeddingConfig]:
        """TorchRec ``EmbeddingConfig`` views (name, dim, features); the tables are frozen buffers."""
        out = []
        for cfg in self._configs:
            assert cfg.tables is not None
            out.append(EmbeddingConfig(num_embeddings=cfg.tables.num_rows, embedding_dim=cfg.embedding_dim,
                                       name=cfg.name, feature_names=list(cfg.feature_names)))
        return out

    def embedding_dim(self) -> int:
        return self._configs[0].embedding_dim

    @property
    def device(self) -> torch.device:
        return next(iter(self.buffers())).device


def _check_unique(tables: Sequence[SIDEmbeddingConfig]) -> None:
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate table names: {names}")
    feats = [f for t in tables for f in t.feature_names]
    if len(set(feats)) != len(feats):
        raise ValueError(f"a feature is served by more than one table: {feats}")
