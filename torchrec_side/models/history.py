# pyre-strict
"""History features: how a variant stores a user's history and which module embeds it.

A *history feature* ties together

1. a **feature-store column** of the example store (one value, or ``W`` values, per history
   event: item ids, packed SIDs, prefix-ngram token ids, ...), written from an item -> value table
   by :meth:`torchrec_side.data.store.ExampleStore.add_history_column` if it is not there yet;
2. the **KJT keys** the loader makes of that column (:class:`~torchrec_side.data.loader.HistoryInput`),
   and an optional KJT -> KJT transform run in the loader's worker;
3. the **module** that embeds those keys: *pooled* (EBC-like: ``KJT -> KeyedTensor``, with
   ``embedding_bag_configs()``) for DLRM, or *per event* (EC-like: ``KJT -> Dict[str, JaggedTensor]``,
   with ``embedding_configs()``) for the target-attention model.

A variant config lists its history features; each names a registered *kind* and its options::

    model:
      history:
        - kind: sparse_id            # registered name, or "package.module:ClassName"
          column: hist_item_id       # the store column it reads
          options: {pooling: mean}   # checked against the kind's Options dataclass

To add a kind (e.g. SIDE over a tokenizer's SID table), subclass :class:`HistoryFeature`, declare
its ``Options`` dataclass, and register it::

    @dataclass
    class SIDEOptions:
        sid_table: str = ""          # path of the tokenizer's SID table
        pooling: str = "sum"

    @register_history_feature("side")
    class SIDEHistory(HistoryFeature):
        Options = SIDEOptions

        def check(self) -> None:                      # runs at start, before any training
            if not Path(self.options.sid_table).is_file():
                raise ConfigError(f"{self.where}: sid_table {self.options.sid_table} not found")

        def item_table(self):                        # [num_items, 1] int64 packed SIDs
            return load_sid_table(self.options.sid_table).packed[:, None]

        def pooled(self, keys):                       # KJT -> KeyedTensor, width ctx.embedding_dim
            return SIDEmbeddingBagCollection(tables=[SIDEmbeddingBagConfig(
                name=f"t_{self.name}", feature_names=keys, codec=..., tables=..., pooling=...)])

``kind`` may also be an import path ``"package.module:ClassName"`` of a :class:`HistoryFeature`
subclass, so new kinds work without touching this file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Type, TypeVar, Union

import numpy.typing as npt
import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.config import ConfigError, config_from_dict
from torchrec_side.data.loader import HistoryInput
from torchrec_side.data.store import ITEM_HISTORY_COLUMN

__all__ = [
    "HistoryFeatureConfig",
    "HistoryContext",
    "HistoryFeature",
    "register_history_feature",
    "history_feature_kinds",
    "make_history_feature",
    "SparseIdHistory",
]


@dataclass
class HistoryFeatureConfig:
    """One history feature of a variant (a list entry of ``model.history``).

    Args:
        kind (str): a registered kind (:func:`history_feature_kinds`) or ``"pkg.module:Class"``.
        column (str): the example store's history column it reads (and the default KJT key).
        name (str): feature name, unique in the model (default: ``column``); tables are named
            ``t_<name>``.
        options (Dict[str, Any]): kind-specific options, checked against the kind's ``Options``.
    """

    kind: str = "sparse_id"
    column: str = ITEM_HISTORY_COLUMN
    name: str = ""
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HistoryContext:
    """What a history feature may need to build its module.

    Args:
        num_users (int): user-id space.
        num_items (int): item-id space (rows of an item table).
        embedding_dim (int): ``D`` every pooled / per-event output must have.
        arch (str): ``"dlrm"`` (pooled modules) or ``"din"`` (per-event modules).
        max_history (Optional[int]): the store's history cap.
        seed (int): the run's seed.
    """

    num_users: int
    num_items: int
    embedding_dim: int
    arch: str
    max_history: Optional[int] = None
    seed: int = 0


@dataclass
class _NoOptions:
    pass


class HistoryFeature:
    """Base class of history feature kinds (see the module docstring).

    Args:
        config (HistoryFeatureConfig): the list entry.
        ctx (HistoryContext): model-wide facts.
        index (int): position in ``model.history`` (for error messages).

    Raises:
        ConfigError: unknown or ill-typed options, or whatever :meth:`check` rejects.
    """

    #: Dataclass of the kind's options (strict: unknown keys fail).
    Options: ClassVar[Type[Any]] = _NoOptions

    def __init__(self, config: HistoryFeatureConfig, ctx: HistoryContext, index: int = 0) -> None:
        self.config = config
        self.ctx = ctx
        self.where: str = f"model.history.{index} ({config.kind} on column {config.column!r})"
        self.options: Any = config_from_dict(self.Options, dict(config.options), where=f"{self.where}.options")
        self.check()

    @property
    def name(self) -> str:
        return self.config.name or self.config.column

    @property
    def column(self) -> str:
        return self.config.column

    def check(self) -> None:
        """Validates artifacts and options at start (raise :class:`ConfigError` with a clear message)."""

    def item_table(self) -> Optional[Union[torch.Tensor, npt.NDArray[Any]]]:
        """``[num_items, W]`` item -> value table of the column, written into the store if the column
        is missing or stale; ``None`` if the column must already exist (``hist_item_id`` always does)."""
        return None

    def inputs(self) -> List[HistoryInput]:
        """How the loader turns the column into KJT keys (default: one key per value slot)."""
        return [HistoryInput(self.column)]

    def loader_transform(self) -> Optional[Callable[[KeyedJaggedTensor], KeyedJaggedTensor]]:
        """Optional KJT -> KJT transform run in the loader worker (e.g. SID -> token ids)."""
        return None

    def pooled(self, keys: List[str]) -> nn.Module:
        """EBC-like module over ``keys`` with outputs of width ``ctx.embedding_dim`` (for DLRM)."""
        raise ConfigError(f"{self.where}: kind {self.config.kind!r} has no pooled module (arch dlrm)")

    def sequence(self, keys: List[str]) -> nn.Module:
        """EC-like module over ``keys`` with per-event outputs of width ``ctx.embedding_dim`` (for DIN)."""
        raise ConfigError(f"{self.where}: kind {self.config.kind!r} has no per-event module (arch din)")

    def describe(self) -> Dict[str, Any]:
        """Facts recorded in the run's metrics (e.g. bits per SID)."""
        return {}


_REGISTRY: Dict[str, Type[HistoryFeature]] = {}
H = TypeVar("H", bound=Type[HistoryFeature])


def register_history_feature(kind: str) -> Callable[[H], H]:
    """Class decorator registering a :class:`HistoryFeature` subclass under ``kind``."""

    def deco(cls: H) -> H:
        if not (isinstance(cls, type) and issubclass(cls, HistoryFeature)):
            raise TypeError(f"{cls!r} is not a HistoryFeature subclass")
        if kind in _REGISTRY and _REGISTRY[kind] is not cls:
            raise ValueError(f"history feature kind {kind!r} is already registered ({_REGISTRY[kind].__name__})")
        _REGISTRY[kind] = cls
        return cls

    return deco


def history_feature_kinds() -> List[str]:
    """Registered kinds."""
    return sorted(_REGISTRY)


def make_history_feature(config: HistoryFeatureConfig, ctx: HistoryContext, index: int = 0) -> HistoryFeature:
    """Instantiates the kind named by ``config.kind`` (registered name or ``"pkg.module:Class"``).

    Raises:
        ConfigError: unknown kind, import failure, bad options, or a failed :meth:`HistoryFeature.check`.
    """
    kind = config.kind
    cls: Optional[Type[HistoryFeature]] = _REGISTRY.get(kind)
    if cls is None and ":" in kind:
        mod, _, attr = kind.partition(":")
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"model.history.{index}: cannot import history feature kind {kind!r}: {e}") from e
        if not (isinstance(cls, type) and issubclass(cls, HistoryFeature)):
            raise ConfigError(f"model.history.{index}: {kind!r} is not a HistoryFeature subclass")
    if cls is None:
        raise ConfigError(
            f"model.history.{index}: unknown history feature kind {kind!r}; registered: "
            f"{history_feature_kinds()} (or give 'package.module:ClassName')"
        )
    return cls(config, ctx, index)


# --------------------------------------------------------------------------------------------
# Built-in kinds


@dataclass
class SparseIdOptions:
    """Options of :class:`SparseIdHistory`.

    Args:
        pooling (str): ``"mean"`` or ``"sum"`` (pooled module only).
    """

    pooling: str = "mean"

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "sum"):
            raise ValueError(f"pooling must be 'mean' or 'sum', got {self.pooling!r}")


@register_history_feature("sparse_id")
class SparseIdHistory(HistoryFeature):
    """The sparse-ID baseline: a learned ``[num_items, D]`` table over history item ids.

    Pooled: a stock ``EmbeddingBagCollection`` (table ``t_<name>``); per event: a stock
    ``EmbeddingCollection``. DMP shards either like any table. The column must hold item ids
    (``W = 1``, values in ``[0, num_items)``).
    """

    Options = SparseIdOptions

    def pooled(self, keys: List[str]) -> nn.Module:
        pooling = PoolingType.MEAN if self.options.pooling == "mean" else PoolingType.SUM
        return EmbeddingBagCollection(tables=[EmbeddingBagConfig(
            name=f"t_{self.name}", embedding_dim=self.ctx.embedding_dim, num_embeddings=self.ctx.num_items,
            feature_names=list(keys), pooling=pooling)])

    def sequence(self, keys: List[str]) -> nn.Module:
        return EmbeddingCollection(tables=[EmbeddingConfig(
            name=f"t_{self.name}", embedding_dim=self.ctx.embedding_dim, num_embeddings=self.ctx.num_items,
            feature_names=list(keys))])

    def describe(self) -> Dict[str, Any]:
        return {"kind": "sparse_id", "table_rows": self.ctx.num_items}
