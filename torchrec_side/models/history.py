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
        - kind: sparse_id            # registered name (or entry point, or an imported "module:Class")
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
                name=f"t_{self.name}", feature_names=keys, codec=..., pooling=...)],
                sid_tables={f"t_{self.name}": ...})

**The target item through the same path** (docs/design.md section 7b). Every kind takes the
option ``target: bool`` (default ``false``): when true, the target item is also represented through
the feature's path, as extra pooled features of the same width ``D`` (KJT keys
:meth:`HistoryFeature.target_keys`, filled by the loader from the column's item table through
:class:`~torchrec_side.data.loader.TargetInput`, one event per example), in addition to the target's
learned item-id row every variant keeps. DLRM interacts them like any sparse feature; the
target-attention model adds them to the target id embedding to form the attention query (see
:class:`~torchrec_side.models.din.DINRanker`).

New kinds work without touching this file, in three ways, none of which lets a config import
code (a config is data; under ``python -m`` and torchrun the working folder is on ``sys.path``, so
an import named by a config could run a planted file): register the class with
:func:`register_history_feature` in code that runs before training; install it as an entry point
of the group ``torchrec_side.history_features`` (name: the kind; what a launched run on other
ranks or hosts needs); or name it ``"package.module:ClassName"`` when ``package.module`` is already
imported by the calling program.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.config import ConfigError, config_from_dict
from torchrec_side.data.loader import HistoryInput, TargetInput
from torchrec_side.data.store import ITEM_HISTORY_COLUMN

__all__ = [
    "HistoryFeatureConfig",
    "HistoryContext",
    "HistoryFeature",
    "register_history_feature",
    "history_feature_kinds",
    "make_history_feature",
    "SparseIdHistory",
    "SparseIdOptions",
    "CategoryIdHistory",
    "CategoryIdOptions",
    "CATEGORY_HISTORY_COLUMN",
    "load_item_categories",
    "hash_item_ids",
    "id_tables",
    "ITEM_HASH_PRIME",
]


@dataclass
class HistoryFeatureConfig:
    """One history feature of a variant (a list entry of ``model.history``).

    Args:
        kind (str): a registered kind (:func:`history_feature_kinds`), an entry point of
            :data:`HISTORY_ENTRY_POINTS`, or ``"pkg.module:Class"`` of an already imported module.
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
        world_dir (Optional[str]): the simulated-world folder of the store (``data.world_dir``;
            ``raw_content`` reads ``content/<collection>.npy`` from it); ``None`` for MovieLens.
    """

    num_users: int
    num_items: int
    embedding_dim: int
    arch: str
    max_history: Optional[int] = None
    seed: int = 0
    world_dir: Optional[str] = None


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

    @property
    def has_target(self) -> bool:
        """Whether the target item is also represented through this feature (option ``target``)."""
        return bool(getattr(self.options, "target", False))

    def target_keys(self, keys: List[str]) -> List[str]:
        """KJT keys of the target item through this feature's path, given its history ``keys``
        (default ``[f"{k}_target"]``; empty without ``target: true``)."""
        return [f"{k}_target" for k in keys] if self.has_target else []

    def target_inputs(self, keys: List[str]) -> List[TargetInput]:
        """How the loader fills :meth:`target_keys` (default: the one history input's column, looked
        up at the target item in the store's item table; empty without ``target: true``)."""
        tk = self.target_keys(list(keys))
        if not tk:
            return []
        ins = self.inputs()
        if len(ins) != 1:
            raise ConfigError(f"{self.where}: kind {self.config.kind!r} reads {len(ins)} columns; it must "
                              f"override target_inputs() to support options.target")
        return [TargetInput(ins[0].column, keys=tuple(tk), flatten=ins[0].flatten)]

    def pooled(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        """EBC-like module over ``keys`` with outputs of width ``ctx.embedding_dim`` (for DLRM);
        with ``target_keys`` (:meth:`target_keys`) also one output per target key, through the
        same path (one event per example)."""
        raise ConfigError(f"{self.where}: kind {self.config.kind!r} has no pooled module (arch dlrm)")

    def sequence(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        """EC-like module over ``keys`` with per-event outputs of width ``ctx.embedding_dim`` (for
        DIN); with ``target_keys`` also per-event outputs for them (one event per example)."""
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


#: The entry-point group of installed history feature kinds (``name = "pkg.module:Class"``).
HISTORY_ENTRY_POINTS: str = "torchrec_side.history_features"


def _plugin_kind(kind: str, index: int) -> Optional[Type[HistoryFeature]]:
    """The class of a kind that is not registered: an installed entry point named ``kind``, or
    ``"module:Class"`` of a module the program has already imported (never imported from here)."""
    from importlib.metadata import entry_points

    where = f"model.history.{index}"
    found: Any = None
    eps = [ep for ep in entry_points(group=HISTORY_ENTRY_POINTS) if ep.name == kind]
    if eps:
        try:
            found = eps[0].load()
        except Exception as e:  # an installed plugin that fails to import: say which
            raise ConfigError(f"{where}: history feature kind {kind!r} (entry point {eps[0].value}) "
                              f"failed to load: {type(e).__name__}: {e}") from e
    elif ":" in kind:
        mod, _, attr = kind.partition(":")
        module = sys.modules.get(mod)
        if module is None:
            raise ConfigError(
                f"{where}: history feature kind {kind!r}: module {mod!r} is not imported, and a config never "
                f"imports code; import it in the program that trains (or call register_history_feature), "
                f"or install the class as a {HISTORY_ENTRY_POINTS!r} entry point")
        found = getattr(module, attr, None)
    else:
        return None
    if not (isinstance(found, type) and issubclass(found, HistoryFeature)):
        raise ConfigError(f"{where}: {kind!r} is not a HistoryFeature subclass")
    return found


def make_history_feature(config: HistoryFeatureConfig, ctx: HistoryContext, index: int = 0) -> HistoryFeature:
    """Instantiates the kind named by ``config.kind`` (see :class:`HistoryFeatureConfig`).

    Raises:
        ConfigError: unknown kind, a module the config names but nobody imported, bad options, or
            a failed :meth:`HistoryFeature.check`.
    """
    kind = config.kind
    cls = _REGISTRY.get(kind) or _plugin_kind(kind, index)
    if cls is None:
        raise ConfigError(
            f"model.history.{index}: unknown history feature kind {kind!r}; registered: "
            f"{history_feature_kinds()} (or an entry point of {HISTORY_ENTRY_POINTS!r})"
        )
    return cls(config, ctx, index)


# --------------------------------------------------------------------------------------------
# Built-in kinds


# --------------------------------------------------------------------------------------------
# Built-in kinds


#: The Mersenne prime 2^31 - 1 of :func:`hash_item_ids`.
ITEM_HASH_PRIME: int = (1 << 31) - 1
_HASH_A: int = 1_103_515_245  # fixed multiplier (the C rand() constant), in [1, P)
_HASH_B: int = 12_345


def hash_item_ids(ids: Union[npt.NDArray[Any], torch.Tensor], num_rows: int) -> npt.NDArray[np.int64]:
    """Item ids hashed into ``[0, num_rows)``: ``((A * (id mod P) + B) mod P) mod num_rows``.

    A fixed multiplicative (Carter-Wegman) hash with ``P = 2^31 - 1``, ``A = 1103515245``,
    ``B = 12345``: deterministic across runs and machines, exact in int64 (``A * (id mod P) <
    2^62``), and, for id spaces below ``P``, a bijection before the final ``mod num_rows`` (so rows
    collide only through that modulus, about uniformly). This is how production caps a sparse-ID
    table (docs/design.md section 7c: the sparse-ID table at full size and hashed to ``N/10``).

    Args:
        ids: item ids (any integer shape, >= 0).
        num_rows (int): table rows (>= 1).

    Returns:
        npt.NDArray[np.int64]: same shape, values in ``[0, num_rows)``.

    Example::

        hash_item_ids(np.arange(5), 3)       # array([0, 0, 2, 2, 1])
    """
    if num_rows < 1:
        raise ValueError(f"num_rows must be >= 1, got {num_rows}")
    x = np.asarray(ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else ids).astype(np.int64)
    if x.size and int(x.min()) < 0:
        raise ValueError(f"item ids must be >= 0, got {int(x.min())}")
    return ((_HASH_A * (x % ITEM_HASH_PRIME) + _HASH_B) % ITEM_HASH_PRIME) % int(num_rows)


def id_tables(name: str, keys: Sequence[str], target_keys: Sequence[str],
              share_with_target: bool) -> List[Tuple[str, List[str]]]:
    """``[(table name, feature names)]`` of an item-id history table and its target's lookups: one
    table ``t_<name>`` over the history keys, with the target keys in it (``share_with_target``)
    or in a table of their own ``t_<name>_target``.

    Example::

        id_tables("hist", ["hist"], ["hist_target"], True)     # [('t_hist', ['hist', 'hist_target'])]
    """
    if not target_keys:
        return [(f"t_{name}", list(keys))]
    if share_with_target:
        return [(f"t_{name}", list(keys) + list(target_keys))]
    return [(f"t_{name}", list(keys)), (f"t_{name}_target", list(target_keys))]


@dataclass
class SparseIdOptions:
    """Options of :class:`SparseIdHistory`.

    Args:
        pooling (str): ``"mean"`` or ``"sum"`` (pooled module only).
        num_rows (int): table rows: 0 (default) = one row per item; > 0: item ids hashed into
            that many rows by :func:`hash_item_ids` (the store column ``<column>_h<num_rows>``
            holds the hashed ids, written once from the item table).
        target (bool): also embed the target item through this feature (see the module docstring).
        share_with_target (bool): with ``target``, look the target up in the history's table (one
            table, trained by both); otherwise in a table of its own of the same size
            (``t_<name>_target``).
    """

    pooling: str = "mean"
    num_rows: int = 0
    target: bool = False
    share_with_target: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "sum"):
            raise ValueError(f"pooling must be 'mean' or 'sum', got {self.pooling!r}")
        if self.num_rows < 0:
            raise ValueError(f"num_rows must be >= 0 (0: one row per item), got {self.num_rows}")
        if self.share_with_target and not self.target:
            raise ValueError("share_with_target needs target: true")


@register_history_feature("sparse_id")
class SparseIdHistory(HistoryFeature):
    """The sparse-ID baseline: a learned ``[rows, D]`` table over history item ids.

    ``rows`` is ``num_items``, or ``options.num_rows`` with the ids hashed (:func:`hash_item_ids`;
    then the feature reads the derived column ``<column>_h<num_rows>``, which the trainer writes
    into the store from :meth:`item_table`). Pooled: a stock ``EmbeddingBagCollection`` (table
    ``t_<name>``); per event: a stock ``EmbeddingCollection``. DMP shards either like any table.
    With ``target: true`` the target's (hashed) id is another feature of the same table
    (``share_with_target``) or of its own table ``t_<name>_target`` of the same size.

    Example::

        f = make_history_feature(HistoryFeatureConfig(options={"num_rows": 1000, "target": True,
                                 "share_with_target": True}), HistoryContext(100, 10_000, 16, "dlrm"))
        f.column                                  # 'hist_item_id_h1000'
        f.pooled(["hist_item_id_h1000"], ["hist_item_id_h1000_target"])    # one 1000 x 16 table
    """

    Options = SparseIdOptions

    def check(self) -> None:
        if self.options.num_rows and self.config.column != ITEM_HISTORY_COLUMN:
            raise ConfigError(f"{self.where}: options.num_rows hashes item ids; the column must be "
                              f"{ITEM_HISTORY_COLUMN!r}, got {self.config.column!r}")

    @property
    def column(self) -> str:
        n = self.options.num_rows
        return f"{self.config.column}_h{n}" if n else self.config.column

    @property
    def num_rows(self) -> int:
        """Rows of the table (``num_items`` unless hashed)."""
        return int(self.options.num_rows or self.ctx.num_items)

    def item_table(self) -> Optional[npt.NDArray[np.int64]]:
        if not self.options.num_rows:
            return None  # hist_item_id is always in the store
        return hash_item_ids(np.arange(self.ctx.num_items, dtype=np.int64), self.options.num_rows)[:, None]

    def _tables(self, keys: Sequence[str], target_keys: Sequence[str]) -> List[Tuple[str, List[str]]]:
        return id_tables(self.name, keys, target_keys, self.options.share_with_target)

    def pooled(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        pooling = PoolingType.MEAN if self.options.pooling == "mean" else PoolingType.SUM
        return EmbeddingBagCollection(tables=[EmbeddingBagConfig(
            name=n, embedding_dim=self.ctx.embedding_dim, num_embeddings=self.num_rows,
            feature_names=fs, pooling=pooling) for n, fs in self._tables(keys, target_keys)])

    def sequence(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        return EmbeddingCollection(tables=[EmbeddingConfig(
            name=n, embedding_dim=self.ctx.embedding_dim, num_embeddings=self.num_rows,
            feature_names=fs) for n, fs in self._tables(keys, target_keys)])

    def describe(self) -> Dict[str, Any]:
        o = self.options
        tables = 1 + int(o.target and not o.share_with_target)
        return {"kind": "sparse_id", "table_rows": self.num_rows, "hashed": bool(o.num_rows),
                "num_items": self.ctx.num_items, "target": bool(o.target),
                "share_with_target": bool(o.share_with_target),
                "learned_params": tables * self.num_rows * self.ctx.embedding_dim,
                "model_bytes_per_event": 8, "min_packed_bytes_per_event": 8}


@dataclass
class CategoryIdOptions:
    """Options of :class:`CategoryIdHistory`.

    Args:
        pooling (str): ``"mean"`` (default) or ``"sum"``.
        target (bool): also look the target item's category and sub-category up in the same
            tables (the feature a production model carries for its target).
    """

    pooling: str = "mean"
    target: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "sum"):
            raise ValueError(f"pooling must be 'mean' or 'sum', got {self.pooling!r}")


#: The store column of :class:`CategoryIdHistory`: per event ``(category, sub-category)``.
CATEGORY_HISTORY_COLUMN: str = "hist_category"


def load_item_categories(world_dir: Optional[str], num_items: int, where: str) -> npt.NDArray[np.int64]:
    """``[num_items, 2]`` int64 ``(category, global sub-category)`` of a simulated world's items.

    Raises:
        ConfigError: not a simulated world, ``items.parquet`` missing or unreadable, or its item
            count differs from ``num_items``.
    """
    if not world_dir:
        raise ConfigError(f"{where}: category ids come from a simulated world's items.parquet; this store has no "
                          f"data.world_dir (MovieLens has no category tree)")
    from pathlib import Path

    import pyarrow.parquet as pq

    path = Path(world_dir) / "items.parquet"
    try:
        t = pq.read_table(path, columns=["item_id", "category", "subcategory"])
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{where}: cannot read item categories from {path}: {e}") from e
    ids = t.column("item_id").to_numpy()
    if len(ids) != num_items or (len(ids) and not np.array_equal(ids, np.arange(num_items))):
        raise ConfigError(f"{where}: {path} lists {len(ids)} items, not item ids 0..{num_items - 1}")
    cat = t.column("category").to_numpy().astype(np.int64)
    sub = t.column("subcategory").to_numpy().astype(np.int64)
    return np.stack([cat, sub], axis=1)


@register_history_feature("category_id")
class CategoryIdHistory(HistoryFeature):
    """Learned category and sub-category tables over the history (and the target) items.

    What any production ranking model carries beside its item ids: the category tree of the
    catalogue as two small learned tables. The store column (default ``hist_category``) holds two
    values per event, ``(category, sub-category)``, written once from the world's
    ``items.parquet``; the loader makes them two KJT keys (``<column>_0``, ``<column>_1``), and a
    stock ``EmbeddingBagCollection`` owns the two tables ``t_<name>_cat`` (``C`` rows) and
    ``t_<name>_sub`` (``S`` rows), so DMP shards them like any table. With ``target: true`` the
    target item's category and sub-category are looked up in the same tables.

    Example::

        - kind: category_id
          column: hist_category
          options: {pooling: mean, target: true}
    """

    Options = CategoryIdOptions
    _cats: Optional[npt.NDArray[np.int64]] = None

    def check(self) -> None:
        if self.config.column == ITEM_HISTORY_COLUMN:
            raise ConfigError(f"{self.where}: category_id writes its own column; name one such as "
                              f"{CATEGORY_HISTORY_COLUMN!r}, not {ITEM_HISTORY_COLUMN!r}")
        if self.ctx.world_dir:
            self.categories()

    def categories(self) -> npt.NDArray[np.int64]:
        if self._cats is None:
            self._cats = load_item_categories(self.ctx.world_dir, self.ctx.num_items, self.where)
        return self._cats

    def item_table(self) -> npt.NDArray[np.int64]:
        return self.categories()

    @property
    def sizes(self) -> Tuple[int, int]:
        """Rows of the category and sub-category tables."""
        c = self.categories()
        return (int(c[:, 0].max()) + 1, int(c[:, 1].max()) + 1) if len(c) else (1, 1)

    def _tables(self, keys: Sequence[str], target_keys: Sequence[str]) -> List[Tuple[str, int, List[str]]]:
        if len(keys) != 2 or len(target_keys) not in (0, 2):
            raise ConfigError(f"{self.where}: expected the keys (category, sub-category), got {list(keys)} / "
                              f"{list(target_keys)}")
        nc, ns = self.sizes
        tk = list(target_keys)
        return [(f"t_{self.name}_cat", nc, [keys[0]] + tk[:1]), (f"t_{self.name}_sub", ns, [keys[1]] + tk[1:])]

    def pooled(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        pooling = PoolingType.MEAN if self.options.pooling == "mean" else PoolingType.SUM
        return EmbeddingBagCollection(tables=[EmbeddingBagConfig(
            name=n, embedding_dim=self.ctx.embedding_dim, num_embeddings=rows, feature_names=fs, pooling=pooling)
            for n, rows, fs in self._tables(keys, target_keys)])

    def sequence(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        return EmbeddingCollection(tables=[EmbeddingConfig(
            name=n, embedding_dim=self.ctx.embedding_dim, num_embeddings=rows, feature_names=fs)
            for n, rows, fs in self._tables(keys, target_keys)])

    def describe(self) -> Dict[str, Any]:
        nc, ns = self.sizes
        return {"kind": "category_id", "category_rows": nc, "subcategory_rows": ns, "target": self.has_target,
                "learned_params": (nc + ns) * self.ctx.embedding_dim,
                "model_bytes_per_event": 16, "min_packed_bytes_per_event": 4}
