# pyre-strict
"""``sparse_id_zch``: the sparse-ID history in TorchRec's managed-collision (zero-collision) table.

Production caps a sparse-ID table below the id space in one of two ways: hash the ids into
``R`` rows (:class:`~torchrec_side.models.history.SparseIdHistory` with ``num_rows``; colliding ids
share a row), or *manage* the ``R`` rows: a remapper admits ids into free slots, one slot per id,
and evicts the least valuable ids when the table is full (TorchRec's ``MCHManagedCollisionModule``,
"zero-collision hashing"). This kind is the second, at the same row budget (``num_rows``, the
hashed variant's ``N/10``).

How the table works (torchrec 1.8 ``torchrec.modules.mc_modules``):

* ``R = num_rows`` slots; the last slot of the table (of each row-wise shard when sharded) is the
  shared *miss* slot, so ``R - 1`` ids (``R - W`` over ``W`` shards) hold a row of their own and
  never collide; every id not (yet) admitted is looked up in the miss slot.
* In training mode every ``eviction_interval`` forward calls the remapper counts the ids it has
  seen since the last update, scores the ids in the table and the new ones by the eviction policy
  (``distance_lfu``: count / (iterations since last seen + 1) ^ ``decay_exponent``; ``lfu``: count;
  ``lru``: recency), keeps the ``R - 1`` best and admits the new ones into the freed slots *before*
  the lookup of that batch. An admitted slot's row (and, sharded, its optimizer state) is reset to
  the table's initial distribution, so a new id never inherits an evicted id's embedding.
  Evaluation never admits or evicts: unseen ids read the miss slot.
* The remapper's state is a set of buffers (``_mch_sorted_raw_ids``: the admitted ids, sorted;
  ``_mch_remapped_ids_mapping``: their slots; the policy's ``_mch_counts`` /
  ``_mch_last_access_iter``; ``_current_iter_tensor``) saved in the module's ``state_dict`` and,
  sharded, as row-wise ``ShardedTensor`` s in DMP's state dict (so DCP checkpoints carry it).
  Ids seen since the last update (at most ``eviction_interval - 1`` batches) are not saved.
* Input ids must lie in ``[0, input_hash_size)``; here ``input_hash_size = num_items`` (item ids).
  Row-wise sharding sends id ``i`` to shard ``i // ceil(num_items / W)``, so each shard manages
  a contiguous block of item ids with ``R / W`` slots.
* Rebuilt unsharded from a ``W``-rank checkpoint (serving), the module reads the shard boundaries
  saved with the remapper (``_output_segments_tensor``), so an id not admitted still reads the miss
  slot of the shard that managed its block, and scores match the sharded run's.

The module (:class:`ZCHEmbeddingBagCollection`) keeps the project's pooled contract
(``KJT -> KeyedTensor`` of width ``D`` per key, ``embedding_bag_configs()``): it wraps a
``ManagedCollisionEmbeddingBagCollection`` (whose forward returns ``(KeyedTensor, None)``) and
returns the ``KeyedTensor``. ``DistributedModelParallel`` shards the wrapped module row-wise with
:class:`~torchrec_side.distributed.zch.ZCHEmbeddingBagCollectionSharder` (TorchRec's ``ManagedCollisionEmbeddingBagCollectionSharder``,
whose eviction reset calls ``fbgemm::reset_weight_momentum``, a CUDA-only op; this sharder resets
the evicted rows and their optimizer state in Python on CPU). The sharder must be in DMP's sharder
list (the trainer's :func:`~torchrec_side.distributed.embedding_sharders` holds it) and the plan
must name the wrapped module (path ``<...>.mc_ebc``), row-wise; see
:func:`~torchrec_side.distributed.zch.managed_collision_tables` and
:func:`~torchrec_side.distributed.zch.zch_sharders`.

Example (YAML)::

    history:
      - kind: sparse_id_zch
        column: hist_item_id
        options: {num_rows: 10000, pooling: mean, target: true, share_with_target: true}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType

from torchrec_side.config import ConfigError
from torchrec_side.data.store import ITEM_HISTORY_COLUMN
from torchrec_side.models.history import HistoryFeature, id_tables, register_history_feature
from torchrec_side.modules.zch import EVICTION_POLICIES, ZCHEmbeddingBagCollection

__all__ = ["ZCHOptions", "ZCHHistory"]


# --------------------------------------------------------------------------------------------
# the history-feature kind


@dataclass
class ZCHOptions:
    """Options of :class:`ZCHHistory`.

    Args:
        num_rows (int): the row budget ``R`` per table (slots, one of them the miss slot): 0
            (default) = ``max(num_items // 10, 2)``, the hashed sparse-ID's ``N/10``.
        pooling (str): ``"mean"`` (default, as ``sparse_id``) or ``"sum"``.
        target (bool): also embed the target item through this feature (history module docstring).
        share_with_target (bool): with ``target``, the target's id goes through the history's
            remapper and table (its impressions count for admission too); otherwise through a
            remapper and table of its own of the same budget (``t_<name>_target``).
        eviction_policy (str): ``"distance_lfu"`` (default: TorchRec's recommended frequency with
            recency decay, so ids that stop appearing make room), ``"lfu"`` or ``"lru"``.
        eviction_interval (int): training forward calls between admission rounds (default 1: an
            id is admitted in the batch that first shows it, as hashing would give it a row; larger
            values amortize the sort over more batches and leave new ids in the miss slot longer).
        decay_exponent (float): recency decay of ``distance_lfu`` / ``lru`` (default 1.0,
            TorchRec's default).
    """

    num_rows: int = 0
    pooling: str = "mean"
    target: bool = False
    share_with_target: bool = False
    eviction_policy: str = "distance_lfu"
    eviction_interval: int = 1
    decay_exponent: float = 1.0

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "sum"):
            raise ValueError(f"pooling must be 'mean' or 'sum', got {self.pooling!r}")
        if self.num_rows < 0 or self.num_rows == 1:
            raise ValueError(f"num_rows must be 0 (N/10) or >= 2 (one id plus the miss slot), got {self.num_rows}")
        if self.share_with_target and not self.target:
            raise ValueError("share_with_target needs target: true")
        if self.eviction_policy not in EVICTION_POLICIES:
            raise ValueError(f"eviction_policy must be one of {list(EVICTION_POLICIES)}, got {self.eviction_policy!r}")
        if self.eviction_interval < 1:
            raise ValueError(f"eviction_interval must be >= 1, got {self.eviction_interval}")
        if not self.decay_exponent > 0:
            raise ValueError(f"decay_exponent must be > 0, got {self.decay_exponent}")


@register_history_feature("sparse_id_zch")
class ZCHHistory(HistoryFeature):
    """The sparse-ID history in a managed-collision table of ``num_rows`` slots (see the module
    docstring): the production alternative to hashing at the same row budget.

    Reads the raw item ids (``hist_item_id``; ``input_hash_size = num_items``); pooled only
    (arch ``dlrm``). Tables ``t_<name>`` (and ``t_<name>_target`` with ``target: true`` and not
    ``share_with_target``); shard them row-wise (``sharding.tables``) with
    :class:`~torchrec_side.distributed.zch.ZCHEmbeddingBagCollectionSharder`.

    Example::

        f = make_history_feature(HistoryFeatureConfig(kind="sparse_id_zch", options={"num_rows": 1000,
                                 "target": True, "share_with_target": True}), HistoryContext(100, 10_000, 16, "dlrm"))
        f.pooled(["hist_item_id"], ["hist_item_id_target"])   # one 1000-slot table behind one remapper
    """

    Options = ZCHOptions

    def check(self) -> None:
        if self.config.column != ITEM_HISTORY_COLUMN:
            raise ConfigError(f"{self.where}: the managed-collision table remaps item ids; the column must be "
                              f"{ITEM_HISTORY_COLUMN!r}, got {self.config.column!r}")
        if self.ctx.arch != "dlrm":
            raise ConfigError(f"{self.where}: kind 'sparse_id_zch' has a pooled module only (arch dlrm), "
                              f"got arch {self.ctx.arch!r}")

    @property
    def num_rows(self) -> int:
        """Slots per table (``R``, the miss slot included)."""
        return int(self.options.num_rows or max(self.ctx.num_items // 10, 2))

    def _tables(self, keys: Sequence[str], target_keys: Sequence[str]) -> List[Tuple[str, List[str]]]:
        return id_tables(self.name, keys, target_keys, self.options.share_with_target)

    def pooled(self, keys: List[str], target_keys: Sequence[str] = ()) -> nn.Module:
        o = self.options
        pooling = PoolingType.MEAN if o.pooling == "mean" else PoolingType.SUM
        return ZCHEmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name=n, embedding_dim=self.ctx.embedding_dim, num_embeddings=self.num_rows,
                                       feature_names=fs, pooling=pooling) for n, fs in self._tables(keys, target_keys)],
            input_hash_size=self.ctx.num_items, eviction_policy=o.eviction_policy,
            eviction_interval=o.eviction_interval, decay_exponent=o.decay_exponent)

    def describe(self) -> Dict[str, Any]:
        o = self.options
        tables = 1 + int(o.target and not o.share_with_target)
        return {"kind": "sparse_id_zch", "table_rows": self.num_rows, "num_items": self.ctx.num_items,
                "zero_collision_ids": self.num_rows - 1, "eviction_policy": o.eviction_policy,
                "eviction_interval": o.eviction_interval, "decay_exponent": o.decay_exponent,
                "target": bool(o.target), "share_with_target": bool(o.share_with_target),
                "learned_params": tables * self.num_rows * self.ctx.embedding_dim,
                "model_bytes_per_event": 8, "min_packed_bytes_per_event": 8}
