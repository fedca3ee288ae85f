# pyre-strict
"""Traditional (learned) SID embeddings: SIDs -> token ids -> a stock TorchRec EmbeddingBagCollection.

These are the baselines SIDE is measured against. A SID with digits ``(c_1, ..., c_L)`` becomes a
few token ids per event, each looked up in its own learned table:

==================  ============================================================================
``unigram``         one table per level: token ``c_l`` (``K_l`` rows)
``bigram``          one table per consecutive pair: token ``(c_l, c_{l+1})`` (``K_l K_{l+1}`` rows)
``prefix_ngram``    Meta's prefix-ngram (the paper's traditional baseline): one table per prefix
                    length ``n``: token ``(c_1, ..., c_n)`` (``prod_{l<=n} K_l`` rows)
``full_hash``       one table: token = the whole SID
==================  ============================================================================

A table that would need more than ``max_rows`` rows is hashed into ``max_rows`` rows
(splitmix64 of the exact mixed-radix value of its digits, modulo ``max_rows``).

The id mapping is its own small module, :class:`SIDTokenMapper` (``KJT -> KJT``), so it can run
in the data loader (then pass ``premapped=True``) and TorchRec's train pipeline sees the stock
``EmbeddingBagCollection`` input coming straight from the batch. The learned tables live in a stock
``EmbeddingBagCollection`` owned by :class:`TraditionalSIDEmbeddingBagCollection` (attribute
``ebc``), so ``DistributedModelParallel`` shards them with TorchRec's own sharders.
:class:`TraditionalSIDEmbeddingCollection` is the unpooled form (one vector per event: the sum of
the event's token rows, for the target-attention model); its tables are a stock
``EmbeddingCollection`` (attribute ``ec``), sharded the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.modules.embedding_modules import (
    EmbeddingBagCollection,
    EmbeddingBagCollectionInterface,
    EmbeddingCollection,
    EmbeddingCollectionInterface,
)
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor, KeyedTensor

from torchrec_side.modules.side import SIDInputError, _pooling
from torchrec_side.sid.codec import SIDCodec

__all__ = [
    "SCHEMES",
    "SIDTokenConfig",
    "SIDTokenMapper",
    "TraditionalSIDEmbeddingBagCollection",
    "TraditionalSIDEmbeddingCollection",
    "sparse_id_embedding_bag_collection",
    "sid_tokens",
]

SCHEMES: Tuple[str, ...] = ("unigram", "bigram", "prefix_ngram", "full_hash")
_SUFFIX: Dict[str, str] = {"unigram": "u", "bigram": "b", "prefix_ngram": "p", "full_hash": "h"}
_EXACT_LIMIT: int = 1 << 62
_M1: int = 0xBF58476D1CE4E5B9 - (1 << 64)
_M2: int = 0x94D049BB133111EB - (1 << 64)
_GOLDEN: int = 0x9E3779B97F4A7C15 - (1 << 64)


def _lsr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _salt(t: int) -> int:
    """Per-table salt: ``(t + 1) * golden ratio`` as a wrapped signed int64."""
    v = ((t + 1) * (_GOLDEN + (1 << 64))) % (1 << 64)
    return v - (1 << 64) if v >= (1 << 63) else v


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64 finalizer on int64 (wrapping arithmetic): a well-mixed 64-bit hash."""
    x = x ^ _lsr(x, 30)
    x = x * _M1
    x = x ^ _lsr(x, 27)
    x = x * _M2
    return x ^ _lsr(x, 31)


@dataclass(frozen=True)
class _TokenSpec:
    suffix: str            # e.g. "p2"
    levels: Tuple[int, int]  # digit range [start, end)
    exact_rows: int        # prod of the range's radices
    rows: int              # table rows (min(exact_rows, max_rows))

    @property
    def hashed(self) -> bool:
        return self.exact_rows > self.rows


@dataclass
class SIDTokenConfig:
    """A learned traditional-SID embedding for features of packed SIDs.

    Args:
        name (str): base table name; the tables are ``{name}__{suffix}`` (e.g. ``hist__p2``).
        feature_names (List[str]): KJT keys carrying packed SIDs of ``codec``.
        codec (SIDCodec): how the SIDs are packed.
        embedding_dim (int): ``D`` of every token table.
        scheme (str): ``"unigram"``, ``"bigram"``, ``"prefix_ngram"`` (default) or ``"full_hash"``.
        max_rows (int): tables needing more rows are hashed into this many (default 10^6).
        num_tokens (Optional[int]): use only the first ``num_tokens`` tables of the scheme (e.g.
            prefix lengths 1..n); None for all.
        pooling (Union[str, PoolingType]): ``"sum"`` or ``"mean"``.
        init_fn (Optional[Callable]): weight initializer for every token table (TorchRec's default
            uniform if None).

    Example::

        cfg = SIDTokenConfig(name="hist", feature_names=["hist_sid"],
                             codec=SIDCodec.byte_grouped([256] * 3), embedding_dim=64)
        [s.rows for s in cfg.token_specs()]        # [256, 65536, 1000000]
    """

    name: str
    feature_names: List[str]
    codec: SIDCodec
    embedding_dim: int
    scheme: str = "prefix_ngram"
    max_rows: int = 1_000_000
    num_tokens: Optional[int] = None
    pooling: Union[str, PoolingType] = PoolingType.SUM
    init_fn: Optional[Callable[[torch.Tensor], Optional[torch.Tensor]]] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.max_rows < 1 or self.embedding_dim < 1:
            raise ValueError("max_rows and embedding_dim must be positive")
        if not self.feature_names:
            raise ValueError(f"{self.name!r}: feature_names is empty")
        self.pooling = _pooling(self.pooling)
        if self.scheme == "bigram" and self.codec.num_levels < 2:
            raise ValueError("bigram needs at least 2 levels")
        if self.num_tokens is not None and not 1 <= self.num_tokens <= len(self._all_ranges()):
            raise ValueError(f"num_tokens must be in [1, {len(self._all_ranges())}], got {self.num_tokens}")

    def _all_ranges(self) -> List[Tuple[int, int]]:
        L = self.codec.num_levels
        if self.scheme == "unigram":
            return [(l, l + 1) for l in range(L)]
        if self.scheme == "bigram":
            return [(l, l + 2) for l in range(L - 1)]
        if self.scheme == "prefix_ngram":
            return [(0, n) for n in range(1, L + 1)]
        return [(0, L)]

    def token_specs(self) -> List[_TokenSpec]:
        """One spec per token (table): suffix, digit range, exact and actual row counts."""
        ranges = self._all_ranges()[: self.num_tokens]
        specs = []
        for i, (s, e) in enumerate(ranges):
            exact = math.prod(self.codec.radices[s:e])
            suffix = _SUFFIX[self.scheme] + (str(e) if self.scheme == "prefix_ngram" else "" if self.scheme == "full_hash" else str(s))
            specs.append(_TokenSpec(suffix, (s, e), exact, min(exact, self.max_rows)))
        return specs

    @property
    def num_tokens_per_event(self) -> int:
        return len(self.token_specs())

    def table_names(self) -> List[str]:
        return [f"{self.name}__{s.suffix}" for s in self.token_specs()]

    def token_feature_names(self, feature: str) -> List[str]:
        return [f"{feature}__{s.suffix}" for s in self.token_specs()]

    @property
    def bytes_per_event(self) -> int:
        """Bytes per history event as the model consumes them: one int64 token per table."""
        return 8 * self.num_tokens_per_event

    @property
    def learned_params(self) -> int:
        return sum(s.rows for s in self.token_specs()) * self.embedding_dim

    def embedding_bag_configs(self) -> List[EmbeddingBagConfig]:
        """The stock TorchRec table configs (one per token)."""
        out = []
        for spec, table in zip(self.token_specs(), self.table_names()):
            out.append(EmbeddingBagConfig(
                num_embeddings=spec.rows, embedding_dim=self.embedding_dim, name=table,
                feature_names=[f"{f}__{spec.suffix}" for f in self.feature_names],
                pooling=_pooling(self.pooling), init_fn=self.init_fn))
        return out

    def embedding_configs(self) -> List[EmbeddingConfig]:
        """The stock TorchRec unpooled table configs (one per token; ``pooling`` does not apply)."""
        return [EmbeddingConfig(num_embeddings=spec.rows, embedding_dim=self.embedding_dim, name=table,
                                feature_names=[f"{f}__{spec.suffix}" for f in self.feature_names],
                                init_fn=self.init_fn)
                for spec, table in zip(self.token_specs(), self.table_names())]


def sid_tokens(codes: torch.Tensor, config: SIDTokenConfig) -> torch.Tensor:
    """Token ids ``int64 [T, N]`` of digit codes ``[N, L]`` for ``config``'s scheme.

    Row ``t`` holds the ids for table ``t`` (``0 <= id < token_specs()[t].rows``).
    """
    specs = config.token_specs()
    radices = config.codec.radices
    N = codes.shape[0]
    out = torch.empty(len(specs), N, dtype=torch.int64, device=codes.device)

    def finish(t: int, value: torch.Tensor, exact: bool) -> None:
        spec = specs[t]
        if spec.hashed or not exact:
            out[t] = torch.remainder(mix64(value + _salt(t)), spec.rows)
        else:
            out[t] = value

    def push(acc: torch.Tensor, mult: int, exact: bool, level: int) -> Tuple[torch.Tensor, int, bool]:
        # Append one digit: exact mixed radix while it fits, hashed from then on.
        if exact and mult * radices[level] <= _EXACT_LIMIT:
            return acc + codes[:, level] * mult, mult * radices[level], True
        return mix64(acc) + codes[:, level] + 1, mult, False

    zero = torch.zeros(N, dtype=torch.int64, device=codes.device)
    if config.scheme == "prefix_ngram":  # incremental over prefix length
        acc, mult, exact = zero, 1, True
        for t, spec in enumerate(specs):
            acc, mult, exact = push(acc, mult, exact, spec.levels[1] - 1)
            finish(t, acc, exact)
        return out
    for t, spec in enumerate(specs):
        acc, mult, exact = zero, 1, True
        for level in range(*spec.levels):
            acc, mult, exact = push(acc, mult, exact, level)
        finish(t, acc, exact)
    return out


class SIDTokenMapper(nn.Module):
    """Maps features of packed SIDs to token-id features (``KeyedJaggedTensor -> KeyedJaggedTensor``).

    Feature ``f`` of config ``c`` becomes features ``f__{suffix}`` (one per token table, same
    lengths and weights). Run it in the data loader (then the learned module takes
    ``premapped=True``) or inside the model; it has no parameters or buffers. Variable-batch (VBE)
    KJTs are refused with :class:`~torchrec_side.modules.SIDInputError`.

    Args:
        tables (List[SIDTokenConfig]): the traditional-SID configs.
        validate (bool): check SIDs against each codec (default True).
        passthrough (bool): keep the input's other features after the token features.

    Example::

        mapper = SIDTokenMapper([cfg])
        tokens = mapper(kjt)        # keys: hist_sid__p1, hist_sid__p2, hist_sid__p3
    """

    def __init__(self, tables: Sequence[SIDTokenConfig], validate: bool = True, passthrough: bool = False) -> None:
        super().__init__()
        self._configs = list(tables)
        self.validate = validate
        self.passthrough = passthrough
        self._feature_names = [f for c in self._configs for f in c.feature_names]
        self._out_keys = [f"{f}__{spec.suffix}" for c in self._configs for spec in c.token_specs()
                          for f in c.feature_names]

    def output_keys(self) -> List[str]:
        return list(self._out_keys)

    def forward(self, features: KeyedJaggedTensor) -> KeyedJaggedTensor:
        """
        Args:
            features (KeyedJaggedTensor): packed SIDs per feature.

        Returns:
            KeyedJaggedTensor: token ids, keys ``f__{suffix}`` (config order, then token table, then
            feature: the order of the owned EBC's tables).
        """
        return _map_tokens(self, features)


@torch.fx.wrap
def _map_tokens(mapper: SIDTokenMapper, features: KeyedJaggedTensor) -> KeyedJaggedTensor:
    keys = features.keys()
    if features.variable_stride_per_key():
        raise SIDInputError(
            f"SIDTokenMapper: variable-batch (VBE) KeyedJaggedTensors are not supported (stride_per_key "
            f"{features.stride_per_key()}); give one stride for every key"
        )
    missing = [f for f in mapper._feature_names if f not in keys]
    if missing:
        raise SIDInputError(f"SIDTokenMapper: features {missing} missing from the KeyedJaggedTensor (keys: {keys})")
    w_all = features.weights_or_none()
    if w_all is not None and w_all.numel() != features.values().numel():
        raise SIDInputError(
            f"SIDTokenMapper: KeyedJaggedTensor weights have {w_all.numel()} entries for "
            f"{features.values().numel()} values"
        )
    fd = features.to_dict()
    values: List[torch.Tensor] = []
    lengths: List[torch.Tensor] = []
    weights: List[torch.Tensor] = []
    out_keys: List[str] = []
    for cfg in mapper._configs:
        T = cfg.num_tokens_per_event
        per_feature = []
        for f in cfg.feature_names:
            jt = fd[f]
            codes = cfg.codec.unpack(jt.values(), validate=mapper.validate)
            per_feature.append((jt, sid_tokens(codes, cfg), cfg.token_feature_names(f)))  # tokens [T, N]
        # table-major order (token t of every feature, then t + 1): the owned EBC's own key order
        for t in range(T):
            for jt, tokens, names in per_feature:
                values.append(tokens[t])
                lengths.append(jt.lengths())
                if w_all is not None:
                    weights.append(jt.weights())
                out_keys.append(names[t])
    if mapper.passthrough:
        for k in keys:
            if k not in mapper._feature_names:
                jt = fd[k]
                values.append(jt.values())
                lengths.append(jt.lengths())
                if w_all is not None:
                    weights.append(jt.weights())
                out_keys.append(k)
    return KeyedJaggedTensor(
        keys=out_keys,
        values=torch.cat(values),
        lengths=torch.cat(lengths),
        weights=torch.cat(weights) if w_all is not None else None,
        stride=features.stride(),
    )


def _check_configs(tables: Sequence[SIDTokenConfig], owner: str) -> None:
    """At least one config, table names unique (both traditional collections)."""
    if not tables:
        raise ValueError(f"{owner} needs at least one table")
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate table names: {names}")


class TraditionalSIDEmbeddingBagCollection(EmbeddingBagCollectionInterface):
    """Learned traditional-SID embeddings (unigram / bigram / prefix-ngram / full-hash) over an owned EBC.

    ``forward`` maps packed SIDs to token ids (:class:`SIDTokenMapper`, skipped with
    ``premapped=True``), looks them up in ``self.ebc`` (a stock ``EmbeddingBagCollection``: DMP
    shards it table-wise, row-wise, column-wise or data-parallel like any other), and combines the
    per-token pooled embeddings. The module itself implements TorchRec's
    ``EmbeddingBagCollectionInterface`` (it is not an EBC subclass, so DMP shards only its child).

    Args:
        tables (List[SIDTokenConfig]): the configs.
        is_weighted (bool): use per-event weights from the KJT.
        device (Optional[torch.device]): device of the tables (``"meta"`` to let DMP materialize).
        combine (str): ``"sum"`` (default): one ``[B, D]`` output per input feature, the sum over
            its token tables (Meta's prefix-ngram feature); ``"none"``: one output per token
            feature (``f__p1``, ``f__p2``, ...).
        premapped (bool): the input already holds token features (mapped in the data loader).
        validate (bool): check SIDs against the codec when mapping.

    Input: ``KeyedJaggedTensor`` of packed SIDs (or of tokens if ``premapped``). Output:
    ``KeyedTensor``: keys = input feature names (``combine="sum"``) or token feature names,
    values ``[B, sum D]``.

    Example::

        trad = TraditionalSIDEmbeddingBagCollection([SIDTokenConfig(
            name="hist", feature_names=["hist_sid"], codec=codec, embedding_dim=64)])
        trad(kjt)["hist_sid"].shape           # [B, 64]
        trad.ebc                              # the stock EBC DMP shards
    """

    def __init__(self, tables: List[SIDTokenConfig], is_weighted: bool = False,
                 device: Optional[torch.device] = None, combine: str = "sum", premapped: bool = False,
                 validate: bool = True) -> None:
        super().__init__()
        if combine not in ("sum", "none"):
            raise ValueError(f"combine must be 'sum' or 'none', got {combine!r}")
        _check_configs(tables, "TraditionalSIDEmbeddingBagCollection")
        self._configs = list(tables)
        self.combine = combine
        self.premapped = premapped
        self.mapper = SIDTokenMapper(tables, validate=validate)
        self.ebc = EmbeddingBagCollection(
            tables=[c for t in tables for c in t.embedding_bag_configs()], is_weighted=is_weighted, device=device
        )
        self._feature_names = [f for t in tables for f in t.feature_names]
        self._token_groups: List[List[str]] = [t.token_feature_names(f) for t in tables for f in t.feature_names]
        self._dims = [t.embedding_dim for t in tables for _ in t.feature_names]

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        """
        Args:
            features (KeyedJaggedTensor): packed SIDs (or token ids if ``premapped``).

        Returns:
            KeyedTensor: pooled embeddings, see the class docstring.
        """
        tokens = features if self.premapped else self.mapper(features)
        pooled = self.ebc(tokens)
        if self.combine == "none":
            return pooled
        return _sum_tokens(pooled, self._feature_names, self._token_groups, self._dims)

    def sid_configs(self) -> List[SIDTokenConfig]:
        return self._configs

    def embedding_bag_configs(self) -> List[EmbeddingBagConfig]:
        """Configs describing the *output* (what ``torchrec.models.dlrm`` reads): with
        ``combine="sum"`` one entry per :class:`SIDTokenConfig` (its features, ``embedding_dim``,
        total rows); with ``"none"`` the owned EBC's token tables. The learned tables themselves are
        ``self.ebc.embedding_bag_configs()``."""
        if self.combine == "none":
            return self.ebc.embedding_bag_configs()
        return [EmbeddingBagConfig(num_embeddings=sum(s.rows for s in t.token_specs()),
                                   embedding_dim=t.embedding_dim, name=t.name,
                                   feature_names=list(t.feature_names), pooling=_pooling(t.pooling))
                for t in self._configs]

    def is_weighted(self) -> bool:
        return self.ebc.is_weighted()


@torch.fx.wrap
def _sum_tokens(pooled: KeyedTensor, features: List[str], groups: List[List[str]], dims: List[int]) -> KeyedTensor:
    d = pooled.to_dict()
    outs = []
    for toks in groups:
        acc = d[toks[0]]
        for k in toks[1:]:
            acc = acc + d[k]
        outs.append(acc)
    return KeyedTensor(keys=features, length_per_key=dims, values=torch.cat(outs, dim=1), key_dim=1)


class TraditionalSIDEmbeddingCollection(EmbeddingCollectionInterface):
    """Per-event (unpooled) learned traditional-SID embeddings over an owned stock ``EmbeddingCollection``.

    Each event of feature ``f`` becomes the sum of its token rows, ``e = sum_t W_t[token_t(sid)]``
    (prefix-ngram: ``W_1[(c1)] + W_2[(c1, c2)] + ...``), one vector per event, for the
    target-attention model (:class:`~torchrec_side.models.DINRanker`); the pooled form is
    :class:`TraditionalSIDEmbeddingBagCollection`. ``forward`` maps packed SIDs to token ids
    (:class:`SIDTokenMapper`, skipped with ``premapped=True``) and looks them up in ``self.ec``, a
    stock ``EmbeddingCollection`` (DMP shards it table-wise, row-wise, column-wise or data-parallel).
    The module implements TorchRec's ``EmbeddingCollectionInterface`` (it is not an EC subclass, so
    DMP shards only its child). Per-event weights are not used (an EC does not weight events).

    Args:
        tables (List[SIDTokenConfig]): the configs (their ``pooling`` does not apply).
        device (Optional[torch.device]): device of the tables (``"meta"`` to let DMP materialize).
        premapped (bool): the input already holds token features ``f__{suffix}`` (mapped in the
            data loader).
        validate (bool): check SIDs against the codec when mapping.

    Input: ``KeyedJaggedTensor`` of packed SIDs (or token ids if ``premapped``). Output:
    ``Dict[str, JaggedTensor]`` keyed by the configs' feature names, values ``[N_f, D]`` (one row
    per event of ``f``), lengths as the input's.

    Example::

        trad = TraditionalSIDEmbeddingCollection([SIDTokenConfig(
            name="hist", feature_names=["hist_sid"], codec=codec, embedding_dim=16)])
        trad(kjt)["hist_sid"].values().shape   # [N, 16]: one vector per history event
        trad.ec                                # the stock EC DMP shards
    """

    def __init__(self, tables: List[SIDTokenConfig], device: Optional[torch.device] = None,
                 premapped: bool = False, validate: bool = True) -> None:
        super().__init__()
        _check_configs(tables, "TraditionalSIDEmbeddingCollection")
        dims = sorted({t.embedding_dim for t in tables})
        if len(dims) != 1:
            raise ValueError(f"TraditionalSIDEmbeddingCollection: every table needs one embedding_dim "
                             f"(a stock EmbeddingCollection requires it), got {dims}")
        self._configs = list(tables)
        self.premapped = premapped
        self.mapper = SIDTokenMapper(tables, validate=validate)
        self.ec = EmbeddingCollection(tables=[c for t in tables for c in t.embedding_configs()], device=device)
        self._feature_names: List[str] = [f for t in tables for f in t.feature_names]
        self._token_groups: List[List[str]] = [t.token_feature_names(f) for t in tables for f in t.feature_names]
        self._token_to_feature: Dict[str, str] = {k: f for f, g in zip(self._feature_names, self._token_groups)
                                                  for k in g}

    def forward(self, features: KeyedJaggedTensor) -> Dict[str, JaggedTensor]:
        """
        Args:
            features (KeyedJaggedTensor): packed SIDs (or token ids if ``premapped``).

        Returns:
            Dict[str, JaggedTensor]: per feature, one ``[D]`` row per event (see the class docstring).
        """
        tokens = features if self.premapped else self.mapper(features)
        return _sum_token_events(self.ec(tokens), self._feature_names, self._token_groups)

    def sid_configs(self) -> List[SIDTokenConfig]:
        return self._configs

    def output_names(self, keys: Sequence[str]) -> List[str]:
        """The output features that token keys ``f__{suffix}`` (or feature names) feed, in order,
        without repeats (e.g. a target's token keys -> its one output feature)."""
        out: List[str] = []
        for k in keys:
            f = self._token_to_feature.get(k, k if k in self._feature_names else None)
            if f is None:
                raise KeyError(f"{k!r} is neither a token key nor a feature of this collection "
                               f"(features {self._feature_names})")
            if f not in out:
                out.append(f)
        return out

    def embedding_configs(self) -> List[EmbeddingConfig]:
        """Configs describing the *output* (what the DIN ranker reads): one entry per
        :class:`SIDTokenConfig` (its features, ``embedding_dim``, total rows). The learned tables
        themselves are ``self.ec.embedding_configs()``."""
        return [EmbeddingConfig(num_embeddings=sum(s.rows for s in t.token_specs()), embedding_dim=t.embedding_dim,
                                name=t.name, feature_names=list(t.feature_names)) for t in self._configs]

    def need_indices(self) -> bool:
        """False: an output event is a sum over several tables' rows, not one row index."""
        return False

    def embedding_dim(self) -> int:
        return self._configs[0].embedding_dim

    def embedding_names_by_table(self) -> List[List[str]]:
        """Output keys per config: its feature names."""
        return [list(t.feature_names) for t in self._configs]


@torch.fx.wrap
def _sum_token_events(per_token: Dict[str, JaggedTensor], features: List[str],
                      groups: List[List[str]]) -> Dict[str, JaggedTensor]:
    """Per feature, the event-wise sum of its token features' rows (they share the lengths)."""
    out: Dict[str, JaggedTensor] = {}
    for f, toks in zip(features, groups):
        first = per_token[toks[0]]
        acc = first.values()
        for k in toks[1:]:
            acc = acc + per_token[k].values()
        out[f] = JaggedTensor(values=acc, lengths=first.lengths(), offsets=first.offsets())
    return out


def sparse_id_embedding_bag_collection(
    feature_names: List[str],
    num_items: int,
    embedding_dim: int,
    name: str = "item_id",
    pooling: Union[str, PoolingType] = PoolingType.SUM,
    is_weighted: bool = False,
    device: Optional[torch.device] = None,
) -> EmbeddingBagCollection:
    """The sparse-ID baseline: a plain ``EmbeddingBagCollection`` with one ``[num_items, D]`` table
    over raw item ids, serving ``feature_names``.

    Example::

        ebc = sparse_id_embedding_bag_collection(["hist_item"], num_items=1682, embedding_dim=64)
    """
    return EmbeddingBagCollection(
        tables=[EmbeddingBagConfig(num_embeddings=num_items, embedding_dim=embedding_dim, name=name,
                                   feature_names=list(feature_names), pooling=_pooling(pooling))],
        is_weighted=is_weighted, device=device,
    )
