# pyre-strict
"""SID history features: SIDE, traditional prefix-ngram SIDs and pooled raw content.

Registered kinds (see :mod:`torchrec_side.models.history` for the plug-in API):

==================  ==========================================================================
``side``            SIDE (parameter-free): packed SIDs of a frozen tokenizer / quantizer, pooled
                    (``SIDEmbeddingBagCollection``) or per event (``SIDEmbeddingCollection``) for
                    the target-attention model. Column: one int64 per event.
``prefix_ngram``    traditional SID: prefix-ngram token ids (``(c1)``, ``(c1,c2)``, ...) stored
                    per event, looked up in learned tables, pooled
                    (``TraditionalSIDEmbeddingBagCollection``) or per event, the sum of the event's
                    token rows (``TraditionalSIDEmbeddingCollection``), premapped. Column: one
                    int64 token id per prefix length.
``raw_content``     pooled frozen raw content vectors, the quality reference: MiniLM 384-d on
                    MovieLens (``collection: minilm``), a simulated world's ``text`` (384-d) or
                    ``image`` (128-d) view (``<world>/content/<collection>.npy``). The loader reads
                    item ids; the model holds the frozen ``[I, d]`` item table. Footprint counted
                    as the raw vectors would be stored: ``2 d`` bytes/event (fp16).
==================  ==========================================================================

Every kind takes ``target: true`` (docs/design.md section 7b): the target item through the same
path, as extra pooled features (SIDE of the target's packed SID, the prefix-ngram tokens of the
target's SID through the same learned tables, the target's frozen raw vector through the same
projection); the loader looks the target up in the column's item table
(:class:`~torchrec_side.data.loader.TargetInput`).

Where the SIDs come from (``side`` and ``prefix_ngram``), exactly one of:

* ``artifact``: a ``torchrec-side tokenize`` run folder (``tokenizer/`` + ``sid_table.parquet``)
  or a tokenizer artifact folder (then the SIDs are computed from the items' content);
* ``quantizer`` + ``sid_table``: a quantizer safetensors file (``Quantizer.save``) and the SID
  table Parquet of the items it encoded (``write_sid_table``).

``codec`` / ``bits`` / ``num_levels`` are optional expectations: :meth:`check` fails at start if
the artifact does not match them (a tokenizer whose bits differ from what the variant declares).

Example (YAML)::

    history:
      - kind: side
        column: hist_sid_fused_dpca
        options: {artifact: runs/demo/tokenize/fused_dpca, codec: byte_grouped, bits: 63.4}
      - kind: prefix_ngram
        column: hist_pn_minilm
        options: {quantizer: runs/demo/quantizers/rq_minilm.safetensors,
                  sid_table: runs/demo/quantizers/rq_minilm_sids.parquet, max_rows: 65536}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor, KeyedTensor

from torchrec_side.config import ConfigError
from torchrec_side.data.loader import HistoryInput
from torchrec_side.data.store import ITEM_HISTORY_COLUMN
from torchrec_side.models.history import HistoryFeature, register_history_feature

__all__ = [
    "SIDSourceOptions",
    "SIDEOptions",
    "PrefixNgramOptions",
    "RawContentOptions",
    "SIDEHistory",
    "PrefixNgramHistory",
    "RawContentHistory",
    "RawContentBag",
    "RawContentSequence",
    "load_sid_source",
    "RAW_FP16_BYTES_PER_EVENT",
    "RAW_COLLECTIONS",
]

#: Bytes per history event of a raw MiniLM vector stored in fp16 (384 x 2).
RAW_FP16_BYTES_PER_EVENT: int = 768
#: ``raw_content`` collections: MovieLens' MiniLM titles; a simulated world's two content views.
RAW_COLLECTIONS: Tuple[str, ...] = ("minilm", "text", "image")
#: Frozen raw tables up to this many floats are held as float32 buffers; larger ones (simulated
#: worlds of 10^5-10^6 items) as float16, as stored, pooled by ``embedding_bag`` on float16.
RAW_FLOAT32_MAX_FLOATS: int = 1 << 25


@dataclass
class SIDSourceOptions:
    """Where the SIDs come from (see the module docstring) and what they must look like.

    Args:
        artifact (str): tokenizer run folder or artifact folder.
        quantizer (str): quantizer safetensors file (with ``sid_table``).
        sid_table (str): SID table Parquet (with ``quantizer``; optional with ``artifact`` when the
            run folder holds ``sid_table.parquet``).
        codec (str): expected layout ``"byte_grouped"`` / ``"mixed_radix"`` ("" = any).
        bits (float): expected bits per SID, checked to 0.05 bits (0 = any).
        num_levels (int): expected number of SID levels (0 = any).
        target (bool): also represent the target item through this feature's path (the target's
            own SID), as extra pooled features (docs/design.md section 7b).
    """

    artifact: str = ""
    quantizer: str = ""
    sid_table: str = ""
    codec: str = ""
    bits: float = 0.0
    num_levels: int = 0
    target: bool = False


@dataclass
class SIDEOptions(SIDSourceOptions):
    """Options of :class:`SIDEHistory`.

    Args:
        pooling (str): ``"mean"`` (default) or ``"sum"`` (pooled module).
        projection (str): ``"auto"``: a learned ``Linear(D_sid, embedding_dim, bias=False)`` only
            when the SID tables' ``D`` differs from the model's ``embedding_dim`` (its size does not
            grow with items); ``"none"``: never (the dims must match).
        compute (str): SIDE compute path (``"auto"``; see ``torchrec_side.modules``).
    """

    pooling: str = "mean"
    projection: str = "auto"
    compute: str = "auto"

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "sum"):
            raise ValueError(f"pooling must be 'mean' or 'sum', got {self.pooling!r}")
        if self.projection not in ("auto", "none"):
            raise ValueError(f"projection must be 'auto' or 'none', got {self.projection!r}")


@dataclass
class PrefixNgramOptions(SIDSourceOptions):
    """Options of :class:`PrefixNgramHistory`.

    Args:
        scheme (str): token scheme (``"prefix_ngram"`` default; also ``unigram``, ``bigram``,
            ``full_hash``).
        max_rows (int): token tables needing more rows are hashed into this many.
        num_tokens (int): use the first ``num_tokens`` token tables (0 = all).
        pooling (str): ``"mean"`` (default) or ``"sum"`` over events (token tables are summed).
    """

    scheme: str = "prefix_ngram"
    max_rows: int = 65536
    num_tokens: int = 0
    pooling: str = "mean"

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "sum"):
            raise ValueError(f"pooling must be 'mean' or 'sum', got {self.pooling!r}")
        if self.max_rows < 1 or self.num_tokens < 0:
            raise ValueError("max_rows must be >= 1 and num_tokens >= 0")


@dataclass
class RawContentOptions:
    """Options of :class:`RawContentHistory`.

    Args:
        collection (str): ``"minilm"`` (MovieLens: the 384-d MiniLM title vectors; a collaborative
            embedding would have to be fitted per run on training events), or a simulated world's
            ``"text"`` (384-d) / ``"image"`` (128-d) view, read from ``<world>/content/<collection>.npy``
            (the store's ``data.world_dir``).
        pooling (str): ``"mean"`` (default) or ``"sum"``.
        dtype (str): ``"float16"`` (default: the vectors are rounded to fp16, as stored) or
            ``"float32"``.
        target (bool): also pool the target item's own vector through the same projection.
    """

    collection: str = "minilm"
    pooling: str = "mean"
    dtype: str = "float16"
    target: bool = False

    def __post_init__(self) -> None:
        if self.collection not in RAW_COLLECTIONS:
            raise ValueError(f"collection must be one of {list(RAW_COLLECTIONS)}, got {self.collection!r}")
        if self.pooling not in ("mean", "sum"):
            raise ValueError(f"pooling must be 'mean' or 'sum', got {self.pooling!r}")
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be 'float16' or 'float32', got {self.dtype!r}")


# --------------------------------------------------------------------------------------------
# SID sources


@dataclass
class LoadedSIDs:
    """SIDs of every item and the frozen decoder tables.

    Args:
        codes (torch.Tensor): ``int64 [I, L]`` digit codes, row = item index.
        sids (torch.Tensor): ``int64 [I]`` packed SIDs.
        codec (Any): the :class:`~torchrec_side.sid.SIDCodec`.
        tables (Any): :class:`~torchrec_side.modules.SIDTables` (decoder).
        source (str): description.
    """

    codes: torch.Tensor
    sids: torch.Tensor
    codec: Any
    tables: Any
    source: str


def _run_folder(artifact: Path) -> Tuple[Path, Optional[Path]]:
    """``(tokenizer artifact dir, sid_table.parquet or None)`` of a run folder or artifact dir."""
    if (artifact / "tokenizer").is_dir():
        table = artifact / "sid_table.parquet"
        return artifact / "tokenizer", (table if table.is_file() else None)
    table = artifact.parent / "sid_table.parquet"
    return artifact, (table if table.is_file() else None)


def check_sid_source(opts: SIDSourceOptions, where: str) -> None:
    """Path checks (cheap) for :class:`SIDSourceOptions`; raises :class:`ConfigError`."""
    if bool(opts.artifact) == bool(opts.quantizer):
        raise ConfigError(f"{where}: give exactly one of options.artifact (tokenizer run folder) or "
                          f"options.quantizer (+ options.sid_table)")
    if opts.artifact:
        p = Path(opts.artifact)
        if not p.is_dir():
            raise ConfigError(f"{where}: tokenizer artifact {p} not found (run `torchrec-side tokenize` "
                              f"or `torchrec-side demo` first)")
        tok_dir, _ = _run_folder(p)
        if not tok_dir.is_dir():
            raise ConfigError(f"{where}: {p} is not a tokenizer run folder or artifact")
    else:
        if not Path(opts.quantizer).is_file():
            raise ConfigError(f"{where}: quantizer file {opts.quantizer} not found")
        if not opts.sid_table or not Path(opts.sid_table).is_file():
            raise ConfigError(f"{where}: options.sid_table {opts.sid_table!r} not found (needed with options.quantizer)")
    if opts.sid_table and not Path(opts.sid_table).is_file():
        raise ConfigError(f"{where}: sid_table {opts.sid_table} not found")


def load_sid_source(opts: SIDSourceOptions, num_items: int, where: str = "sid source") -> LoadedSIDs:
    """Loads SIDs + decoder tables and checks them against ``opts``' expectations.

    Raises:
        ConfigError: missing files, a SID table of another tokenizer / codec, the wrong number of
            items, or a codec / bits / levels mismatch with what the config declares.
    """
    from torchrec_side.io import ArtifactError
    from torchrec_side.modules import SIDTables
    from torchrec_side.tokenizer.sid_table import read_sid_table

    check_sid_source(opts, where)
    try:
        if opts.artifact:
            from torchrec_side.tokenizer import Tokenizer

            tok_dir, table_path = _run_folder(Path(opts.artifact))
            if opts.sid_table:
                table_path = Path(opts.sid_table)
            tok = Tokenizer.load(tok_dir)
            codec = tok.codec
            tables = SIDTables.from_quantizer(tok)
            if table_path is None:
                raise ConfigError(f"{where}: no sid_table.parquet next to {tok_dir}; give options.sid_table")
            table = read_sid_table(table_path)
            if table.tokenizer_fingerprint and table.tokenizer_fingerprint != tok.fingerprint:
                raise ConfigError(f"{where}: SID table {table_path} was written by tokenizer "
                                  f"{table.tokenizer_fingerprint}, not by {tok_dir} ({tok.fingerprint})")
            source = f"tokenizer {tok_dir}"
        else:
            from torchrec_side.quantizers import load_quantizer

            q = load_quantizer(opts.quantizer)
            tables = SIDTables.from_quantizer(q)
            table = read_sid_table(opts.sid_table)
            codec = table.codec
            if list(codec.radices) != list(q.radices):
                raise ConfigError(f"{where}: SID table radices {list(codec.radices)[:6]}... do not match the "
                                  f"quantizer's {list(q.radices)[:6]}...")
            source = f"quantizer {opts.quantizer}"
    except (ArtifactError, FileNotFoundError, KeyError) as e:
        raise ConfigError(f"{where}: cannot load SIDs: {e}") from e
    if table.codec.to_dict() != codec.to_dict():
        raise ConfigError(f"{where}: SID table codec {table.codec.layout} {len(table.codec.radices)} levels differs "
                          f"from the artifact's {codec.layout} {len(codec.radices)} levels")
    if len(table) != num_items:
        raise ConfigError(f"{where}: SID table has {len(table)} items, the example store {num_items}")
    bits = float(sum(math.log2(k) for k in codec.radices))
    if opts.codec and codec.layout != opts.codec:
        raise ConfigError(f"{where}: the artifact's SIDs use the {codec.layout} layout, the config says {opts.codec}")
    if opts.bits and abs(bits - opts.bits) > 0.05:
        raise ConfigError(f"{where}: the artifact's SIDs carry {bits:.2f} bits, the config says {opts.bits}")
    if opts.num_levels and len(codec.radices) != opts.num_levels:
        raise ConfigError(f"{where}: the artifact's SIDs have {len(codec.radices)} levels, the config says {opts.num_levels}")
    return LoadedSIDs(codes=table.codes.long(), sids=table.sids.long(), codec=codec, tables=tables, source=source)


class _SIDFeature(HistoryFeature):
    _loaded: Optional[LoadedSIDs] = None

    def check(self) -> None:
        check_sid_source(self.options, self.where)
        self.sids()  # loads and validates codec / bits / item count now, before any training

    def sids(self) -> LoadedSIDs:
        if self._loaded is None:
            self._loaded = load_sid_source(self.options, self.ctx.num_items, self.where)
        return self._loaded

    def _sid_describe(self) -> Dict[str, Any]:
        s = self.sids()
        radices = list(s.codec.radices)
        return {"source": s.source, "codec": s.codec.layout, "num_levels": len(radices),
                "bits_per_sid": float(sum(math.log2(k) for k in radices)),
                "distinct_sids": int(torch.unique(s.sids).numel())}


@register_history_feature("side")
class SIDEHistory(_SIDFeature):
    """SIDE: packed SIDs (one int64 per event) pooled / embedded by the frozen decoder tables."""

    Options = SIDEOptions

    def item_table(self) -> torch.Tensor:
        return self.sids().sids[:, None]

    def _projection(self) -> Optional[int]:
        d = int(self.sids().tables.dim)
        if d == self.ctx.embedding_dim:
            return None
        if self.options.projection == "none":
            raise ConfigError(f"{self.where}: SID tables have D={d} but model.embedding_dim={self.ctx.embedding_dim}; "
                              f"set options.projection=auto")
        return self.ctx.embedding_dim

    def pooled(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        from torchrec_side.modules import SIDEmbeddingBagCollection, SIDEmbeddingBagConfig

        s = self.sids()  # one config: history and target share the frozen tables and the projection
        name = f"side_{self.name}"
        return SIDEmbeddingBagCollection(tables=[SIDEmbeddingBagConfig(
            name=name, feature_names=list(keys) + list(target_keys), codec=s.codec, projection_dim=self._projection(),
            compute=self.options.compute, pooling=self.options.pooling)], sid_tables={name: s.tables})

    def sequence(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        from torchrec_side.modules import SIDEmbeddingCollection, SIDEmbeddingConfig

        s = self.sids()
        name = f"side_{self.name}"
        return SIDEmbeddingCollection(tables=[SIDEmbeddingConfig(
            name=name, feature_names=list(keys) + list(target_keys), codec=s.codec,
            projection_dim=self._projection())], sid_tables={name: s.tables})

    def describe(self) -> Dict[str, Any]:
        return {"kind": "side", **self._sid_describe(), "model_bytes_per_event": 8, "target": self.has_target,
                "learned_params": (self.ctx.embedding_dim * int(self.sids().tables.dim)
                                   if self._projection() is not None else 0),
                "min_packed_bytes_per_event": math.ceil(self._sid_describe()["bits_per_sid"] / 8),
                "frozen_table_floats": int(self.sids().tables.num_rows * self.sids().tables.dim)}


@register_history_feature("prefix_ngram")
class PrefixNgramHistory(_SIDFeature):
    """Traditional SID: per-event prefix-ngram token ids (stored) -> learned tables, summed over
    prefix lengths and pooled over events (DLRM) or kept per event (DIN). The tables are a stock
    EBC owned by ``TraditionalSIDEmbeddingBagCollection`` (an EC owned by
    ``TraditionalSIDEmbeddingCollection``), so DMP shards them."""

    Options = PrefixNgramOptions

    @property
    def target_name(self) -> str:
        """The target's feature name (its token keys are ``<target_name>__p1``, ...)."""
        return f"{self.name}_target"

    def token_config(self) -> Any:
        from torchrec_side.modules import SIDTokenConfig

        o = self.options
        names = [self.name] + ([self.target_name] if self.has_target else [])
        return SIDTokenConfig(name=f"t_{self.name}", feature_names=names, codec=self.sids().codec,
                              embedding_dim=self.ctx.embedding_dim, scheme=o.scheme, max_rows=o.max_rows,
                              num_tokens=o.num_tokens or None, pooling=o.pooling)

    def item_table(self) -> torch.Tensor:
        from torchrec_side.modules.traditional import sid_tokens

        return sid_tokens(self.sids().codes, self.token_config()).t().contiguous()  # [I, T]

    def inputs(self) -> List[HistoryInput]:
        return [HistoryInput(self.column, keys=tuple(self.token_config().token_feature_names(self.name)))]

    def target_keys(self, keys: List[str]) -> List[str]:
        return self.token_config().token_feature_names(self.target_name) if self.has_target else []

    def pooled(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        from torchrec_side.modules import TraditionalSIDEmbeddingBagCollection

        cfg = self.token_config()  # with target: one more feature of the same learned token tables
        if list(keys) != cfg.token_feature_names(self.name) or list(target_keys) != self.target_keys(list(keys)):
            raise ConfigError(f"{self.where}: unexpected KJT keys {keys} / target keys {list(target_keys)}")
        return TraditionalSIDEmbeddingBagCollection([cfg], premapped=True)

    def sequence(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        """Per-event token sums (``TraditionalSIDEmbeddingCollection``, premapped) for the DIN
        model: outputs ``<name>`` (one vector per history event) and, with ``target: true``,
        ``<name>_target`` (the target's tokens through the same learned tables)."""
        from torchrec_side.modules import TraditionalSIDEmbeddingCollection

        cfg = self.token_config()
        if list(keys) != cfg.token_feature_names(self.name) or list(target_keys) != self.target_keys(list(keys)):
            raise ConfigError(f"{self.where}: unexpected KJT keys {keys} / target keys {list(target_keys)}")
        return TraditionalSIDEmbeddingCollection([cfg], premapped=True)

    def describe(self) -> Dict[str, Any]:
        cfg = self.token_config()
        return {"kind": "prefix_ngram", **self._sid_describe(), "model_bytes_per_event": cfg.bytes_per_event,
                "target": self.has_target, "max_rows": self.options.max_rows, "learned_params": cfg.learned_params,
                "hashed_tables": [s.suffix for s in cfg.token_specs() if s.hashed],
                "min_packed_bytes_per_event": math.ceil(self._sid_describe()["bits_per_sid"] / 8),
                "token_table_rows": [s.rows for s in cfg.token_specs()]}


# --------------------------------------------------------------------------------------------
# Raw content


def _frozen_table(vectors: torch.Tensor) -> torch.Tensor:
    """The buffer of a frozen raw table: float32, or float16 beyond :data:`RAW_FLOAT32_MAX_FLOATS`."""
    big = vectors.numel() > RAW_FLOAT32_MAX_FLOATS
    return (vectors.half() if big else vectors.float()).contiguous()


class RawContentBag(nn.Module):
    """Pooled frozen item vectors: ``mean_e V[item_e]`` then a learned ``Linear(d, D)``, per feature.

    Args:
        vectors (torch.Tensor): ``[I, d]`` frozen item table (a buffer, not learned; float16 when
            larger than :data:`RAW_FLOAT32_MAX_FLOATS` floats).
        feature (Union[str, Sequence[str]]): KJT key(s) of item ids (history, and the target's
            one-event key); all share the table and the projection.
        embedding_dim (int): output ``D``.
        pooling (str): ``"mean"`` or ``"sum"``.

    Input: ``KeyedJaggedTensor`` with the features (item ids). Output: ``KeyedTensor`` ``[B, D]``
    per feature.

    Example::

        bag = RawContentBag(vectors, ["hist_item_id", "hist_item_id_target"], 16)
        bag(kjt)["hist_item_id_target"].shape          # [B, 16]
    """

    vectors: torch.Tensor

    def __init__(self, vectors: torch.Tensor, feature: Union[str, Sequence[str]], embedding_dim: int,
                 pooling: str = "mean") -> None:
        super().__init__()
        self.register_buffer("vectors", _frozen_table(vectors), persistent=False)
        self.proj = nn.Linear(vectors.shape[1], embedding_dim, bias=False)
        self.features: List[str] = [feature] if isinstance(feature, str) else list(feature)
        self.feature: str = self.features[0]
        self.pooling = pooling
        self.embedding_dim = embedding_dim

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        outs = []
        for f in self.features:
            jt = features[f]
            pooled = F.embedding_bag(jt.values(), self.vectors, jt.offsets(), mode=self.pooling, include_last_offset=True)
            outs.append(self.proj(pooled.float()))
        return KeyedTensor(keys=list(self.features), length_per_key=[self.embedding_dim] * len(self.features),
                           values=torch.cat(outs, dim=1), key_dim=1)

    def embedding_bag_configs(self) -> List[EmbeddingBagConfig]:
        return [EmbeddingBagConfig(num_embeddings=int(self.vectors.shape[0]), embedding_dim=self.embedding_dim,
                                   name=f"raw_{self.feature}", feature_names=list(self.features),
                                   pooling=PoolingType.MEAN if self.pooling == "mean" else PoolingType.SUM)]

    def is_weighted(self) -> bool:
        return False


class RawContentSequence(nn.Module):
    """Per-event frozen item vectors through a learned ``Linear(d, D)`` (EC-like, for DIN); several
    features (history, target) share the table and the projection. In training each distinct item
    of a batch is projected once (the same values; histories repeat popular items), in eval once
    per event (static shapes for export)."""

    vectors: torch.Tensor

    def __init__(self, vectors: torch.Tensor, feature: Union[str, Sequence[str]], embedding_dim: int) -> None:
        super().__init__()
        self.register_buffer("vectors", _frozen_table(vectors), persistent=False)
        self.proj = nn.Linear(vectors.shape[1], embedding_dim, bias=False)
        self.features: List[str] = [feature] if isinstance(feature, str) else list(feature)
        self.feature: str = self.features[0]
        self.embedding_dim = embedding_dim

    def forward(self, features: KeyedJaggedTensor) -> Dict[str, JaggedTensor]:
        out: Dict[str, JaggedTensor] = {}
        for f in self.features:
            jt = features[f]
            ids = jt.values()
            if self.training:  # project each distinct item once (histories repeat popular items); same values
                uniq, inverse = torch.unique(ids, return_inverse=True)
                values = self.proj(self.vectors[uniq].float())[inverse]
            else:  # static shapes for export: one projection per event
                values = self.proj(self.vectors[ids].float())
            out[f] = JaggedTensor(values=values, lengths=jt.lengths(), offsets=jt.offsets())
        return out

    def embedding_configs(self) -> List[EmbeddingConfig]:
        return [EmbeddingConfig(num_embeddings=int(self.vectors.shape[0]), embedding_dim=self.embedding_dim,
                                name=f"raw_{self.feature}", feature_names=list(self.features))]


def load_raw_vectors(collection: str, num_items: int, world_dir: Optional[str], where: str) -> torch.Tensor:
    """The ``[num_items, d]`` vectors of a raw-content collection (as stored: float32 or float16).

    ``minilm``: MovieLens' MiniLM title vectors (:func:`torchrec_side.data.content.load_items`);
    ``text`` / ``image``: ``<world_dir>/content/<collection>.npy`` of a simulated world.

    Raises:
        ConfigError: no world folder for a world collection, a missing or unreadable file, or a
            table whose rows differ from the store's items (naming the file).
    """
    if collection == "minilm":
        from torchrec_side.data import content

        v = content.load_items().text_vectors.float()
        src = "MovieLens MiniLM vectors"
    else:
        if not world_dir:
            raise ConfigError(f"{where}: collection {collection!r} is a simulated world's content view; the store "
                              f"is not a simulated world (no data.world_dir); use collection 'minilm' on MovieLens")
        p = Path(world_dir) / "content" / f"{collection}.npy"
        if not p.is_file():
            raise ConfigError(f"{where}: {p} not found (the world folder has no {collection!r} content view)")
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{where}: unreadable content file {p}: {e}") from e
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
            raise ConfigError(f"{where}: {p} must be a float [N, d] array, got {arr.dtype} {list(arr.shape)}")
        v = torch.from_numpy(np.ascontiguousarray(arr))
        src = str(p)
    if v.shape[0] != num_items:
        raise ConfigError(f"{where}: {src}: {v.shape[0]} item vectors, the store has {num_items} items")
    return v


@register_history_feature("raw_content")
class RawContentHistory(HistoryFeature):
    """Raw-content history: pooled frozen content vectors of the history items (quality reference).

    The column is the item-id history (default ``hist_item_id``); the frozen ``[I, d]`` vectors
    (MiniLM on MovieLens; a simulated world's ``text`` / ``image`` view) live in the model, and the
    footprint is *counted* as the raw vectors would be stored per event in a feature store (fp16:
    ``2 d`` bytes/event, 768 for 384-d) rather than written (that file would be ~10 GB). The KJT
    key is the feature's ``name`` when it is set (so two collections over the same item ids get two
    keys), else the column. With ``target: true`` the target's item id (key ``<key>_target``) goes
    through the same table and projection.
    """

    Options = RawContentOptions
    _vectors: Optional[torch.Tensor] = None

    def check(self) -> None:
        if self.column != ITEM_HISTORY_COLUMN:
            raise ConfigError(f"{self.where}: raw_content reads the item-id history column {ITEM_HISTORY_COLUMN!r}")
        if self.options.collection != "minilm" and self.ctx.world_dir:
            self.vectors()  # a world's content file: checked at start (cheap next to training); without
            # ctx.world_dir (a caller that only writes store columns) it is checked when the module is built

    def vectors(self) -> torch.Tensor:
        if self._vectors is None:
            v = load_raw_vectors(self.options.collection, self.ctx.num_items, self.ctx.world_dir, self.where)
            self._vectors = v.half() if self.options.dtype == "float16" else v.float()
        return self._vectors

    @property
    def dim(self) -> int:
        return int(self.vectors().shape[1])

    def inputs(self) -> List[HistoryInput]:
        # a named feature gets its own KJT key (e.g. text and image views over the same item ids)
        if self.name != self.column:
            return [HistoryInput(self.column, keys=(self.name,))]
        return [HistoryInput(self.column)]

    def pooled(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        return RawContentBag(self.vectors(), [keys[0]] + list(target_keys), self.ctx.embedding_dim, self.options.pooling)

    def sequence(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        return RawContentSequence(self.vectors(), [keys[0]] + list(target_keys), self.ctx.embedding_dim)

    def describe(self) -> Dict[str, Any]:
        d = self.dim
        return {"kind": "raw_content", "collection": self.options.collection, "dim": d, "target": self.has_target,
                "learned_params": d * self.ctx.embedding_dim,
                "model_bytes_per_event": 2 * d, "min_packed_bytes_per_event": 2 * d,
                "footprint_note": f"counted: {d} x fp16 per event (the loader reads item ids)"}
