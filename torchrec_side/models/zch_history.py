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
:class:`ZCHEmbeddingBagCollectionSharder` (TorchRec's ``ManagedCollisionEmbeddingBagCollectionSharder``,
whose eviction reset calls ``fbgemm::reset_weight_momentum``, a CUDA-only op; this sharder resets
the evicted rows and their optimizer state in Python on CPU). The sharder must be in DMP's sharder
list and the plan must name the wrapped module (path ``<...>.mc_ebc``), row-wise; see
:func:`managed_collision_tables` and :func:`zch_sharders`.

Example (YAML)::

    history:
      - kind: sparse_id_zch
        column: hist_item_id
        options: {num_rows: 10000, pooling: mean, target: true, share_with_target: true}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, cast

import torch
from torch import nn
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.mc_embeddingbag import (
    ManagedCollisionEmbeddingBagCollectionSharder,
    ShardedManagedCollisionEmbeddingBagCollection,
)
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.types import ParameterSharding, ShardingEnv, ShardingType
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.modules.mc_embedding_modules import ManagedCollisionEmbeddingBagCollection
from torchrec.modules.mc_modules import (
    DistanceLFU_EvictionPolicy,
    LFU_EvictionPolicy,
    LRU_EvictionPolicy,
    ManagedCollisionCollection,
    MCHEvictionPolicy,
    MCHManagedCollisionModule,
)
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from torchrec_side.config import ConfigError
from torchrec_side.data.store import ITEM_HISTORY_COLUMN
from torchrec_side.models.history import HistoryFeature, register_history_feature

__all__ = [
    "EVICTION_POLICIES",
    "ZCHOptions",
    "ZCHHistory",
    "ZCHManagedCollisionEmbeddingBagCollection",
    "ZCHEmbeddingBagCollection",
    "ZCHEmbeddingBagCollectionSharder",
    "make_eviction_policy",
    "check_managed_collision_sharding",
    "managed_collision_tables",
    "zch_sharders",
]

logger: logging.Logger = logging.getLogger(__name__)

#: Eviction policies by option name (``torchrec.modules.mc_modules``).
EVICTION_POLICIES: Tuple[str, ...] = ("distance_lfu", "lfu", "lru")


def make_eviction_policy(name: str, decay_exponent: float = 1.0) -> MCHEvictionPolicy:
    """TorchRec eviction policy by name.

    Args:
        name (str): ``"distance_lfu"`` (count / (iterations since last seen + 1) ^ decay),
            ``"lfu"`` (count) or ``"lru"`` (recency, decayed).
        decay_exponent (float): exponent of ``distance_lfu`` / ``lru``.

    Example::

        make_eviction_policy("distance_lfu", 1.0)     # DistanceLFU_EvictionPolicy
    """
    if name == "distance_lfu":
        return DistanceLFU_EvictionPolicy(decay_exponent=decay_exponent)
    if name == "lfu":
        return LFU_EvictionPolicy()
    if name == "lru":
        return LRU_EvictionPolicy(decay_exponent=decay_exponent)
    raise ValueError(f"unknown eviction policy {name!r}; expected one of {list(EVICTION_POLICIES)}")


@torch.no_grad()
def _reset_rows(weight: torch.Tensor, rows: torch.Tensor, config: EmbeddingBagConfig) -> None:
    """Rows ``rows`` of ``weight`` drawn again from the table's initial distribution."""
    init_fn = config.init_fn
    fresh = torch.empty(int(rows.numel()), weight.shape[1], dtype=weight.dtype, device=weight.device)
    if init_fn is None:  # EmbeddingBagConfig sets one in __post_init__; kept for safety
        bound = float(config.num_embeddings) ** -0.5
        fresh.uniform_(-bound, bound)
    else:
        out = init_fn(fresh)
        fresh = out if isinstance(out, torch.Tensor) else fresh
    weight[rows] = fresh


class ZCHManagedCollisionEmbeddingBagCollection(ManagedCollisionEmbeddingBagCollection):
    """``ManagedCollisionEmbeddingBagCollection`` that also resets evicted rows when unsharded
    (torchrec 1.8's unsharded ``evict`` is a no-op) and checks the id range.

    Unsharded, only the weights of the evicted / newly admitted slots are reset (the dense
    optimizer's state is not the module's); sharded (:class:`ZCHEmbeddingBagCollectionSharder`),
    weights and fused optimizer state are.

    Args:
        embedding_bag_collection (EmbeddingBagCollection): the tables (``num_embeddings = R``).
        managed_collision_collection (ManagedCollisionCollection): one remapper per table.
        input_hash_size (int): ids must lie in ``[0, input_hash_size)``.

    Call Args:
        features (KeyedJaggedTensor): raw ids.

    Returns:
        Tuple[KeyedTensor, None]: pooled ``[B, D]`` per key, as TorchRec's.

    Raises:
        ValueError: an id outside ``[0, input_hash_size)``.
        RuntimeError: called unsharded in a process group of several ranks (each rank's remapper
            would admit different ids: shard it with :class:`ZCHEmbeddingBagCollectionSharder`).
    """

    def __init__(
        self,
        embedding_bag_collection: EmbeddingBagCollection,
        managed_collision_collection: ManagedCollisionCollection,
        input_hash_size: int,
    ) -> None:
        super().__init__(embedding_bag_collection, managed_collision_collection, return_remapped_features=False)
        self.input_hash_size: int = int(input_hash_size)
        #: ``{table: row-wise shard boundaries}`` of a state dict saved by a sharded model (see
        #: :meth:`_segments_hook`); empty while the state is the module's own.
        self._trained_segments: Dict[str, List[int]] = {}
        self._register_load_state_dict_pre_hook(self._segments_hook)

    def _segments_hook(self, state_dict: Dict[str, Any], prefix: str, *args: Any) -> None:
        """Reads the shard boundaries a sharded model saved (``_output_segments_tensor``), so that
        ids not admitted read their own shard's miss slot, as they did in training."""
        self._trained_segments = {}
        for table in self._managed_collision_collection._managed_collision_modules:
            key = f"{prefix}_managed_collision_collection._managed_collision_modules.{table}._output_segments_tensor"
            seg = state_dict.get(key)
            if isinstance(seg, torch.Tensor):
                bounds = [int(x) for x in seg.tolist() if int(x) >= 0]
                if len(bounds) > 2:
                    self._trained_segments[table] = bounds

    def _shard_misses(self, features: KeyedJaggedTensor, remapped: KeyedJaggedTensor) -> KeyedJaggedTensor:
        """Misses sent to the miss slot of the shard that managed their id block (state loaded from
        a row-wise sharded model: shard ``s`` held ids ``[s b, (s + 1) b)``, ``b = ceil(H / W)``,
        and its last slot was its miss slot)."""
        mcc = self._managed_collision_collection
        values = remapped.values().clone()
        offset = 0
        for table, feats in mcc._table_to_features.items():
            n = sum(int(features[f].values().numel()) for f in feats)
            bounds = self._trained_segments.get(table)
            if bounds is not None and n:
                raw = torch.cat([features[f].values() for f in feats])
                out = values[offset: offset + n]
                miss = out == bounds[-1] - 1  # the unsharded miss slot: the last shard's, never admitted
                w = len(bounds) - 1
                block = -(-self.input_hash_size // w)
                shard = torch.clamp(raw // block, max=w - 1)
                ends = torch.tensor(bounds[1:], dtype=values.dtype, device=values.device)
                out[miss] = ends[shard[miss]] - 1
            offset += n
        return KeyedJaggedTensor(keys=remapped.keys(), values=values, lengths=remapped.lengths(),
                                 weights=remapped.weights_or_none())

    def forward(  # pyre-ignore[14]
        self, features: KeyedJaggedTensor, mutate_miss_lengths: bool = True
    ) -> Tuple[KeyedTensor, Optional[KeyedJaggedTensor]]:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            raise RuntimeError(
                "ZCHManagedCollisionEmbeddingBagCollection runs unsharded on several ranks: each rank's "
                "remapper would admit different ids. Shard it (row-wise) with ZCHEmbeddingBagCollectionSharder "
                "(torchrec_side.models.zch_history.zch_sharders) in DMP's sharder list and plan"
            )
        for k in self._managed_collision_collection._feature_names:
            v = features[k].values()
            if v.numel() and (int(v.min()) < 0 or int(v.max()) >= self.input_hash_size):
                raise ValueError(f"feature {k!r}: ids must lie in [0, {self.input_hash_size}) (input_hash_size), "
                                 f"got [{int(v.min())}, {int(v.max())}]")
        remapped = self._managed_collision_collection(features, mutate_miss_lengths=mutate_miss_lengths)
        if self._trained_segments:
            remapped = self._shard_misses(features, remapped)
        ebc = cast(EmbeddingBagCollection, self._embedding_module)
        configs = {c.name: c for c in ebc.embedding_bag_configs()}
        for table, rows in self._managed_collision_collection.evict().items():
            if rows is not None and rows.numel():
                weight = cast(torch.Tensor, ebc.embedding_bags[table].weight)
                _reset_rows(weight.data, rows.long(), configs[table])
        return ebc(remapped), None


class ZCHEmbeddingBagCollection(nn.Module):
    """Pooled sparse-ID tables behind zero-collision remappers, with the pooled-module contract.

    One table per entry of ``tables`` (``num_embeddings = R`` slots), each behind an
    ``MCHManagedCollisionModule`` (see the module docstring for admission, eviction and the miss
    slot). Wraps a :class:`ZCHManagedCollisionEmbeddingBagCollection` (attribute ``mc_ebc``, the
    module DMP shards) and returns its ``KeyedTensor`` (sharded: a lazy one).

    Args:
        tables (List[EmbeddingBagConfig]): the tables (``num_embeddings >= 2``).
        input_hash_size (int): ids lie in ``[0, input_hash_size)``.
        eviction_policy (str): one of :data:`EVICTION_POLICIES`.
        eviction_interval (int): forward calls (training) between admission / eviction rounds.
        decay_exponent (float): of ``distance_lfu`` / ``lru``.
        device (Optional[torch.device]): of tables and remapper buffers (``"meta"`` is refused:
            the remapper's buffers need real storage).

    Call Args:
        features (KeyedJaggedTensor): raw ids (at least the tables' feature names).

    Returns:
        KeyedTensor: ``[B, D]`` per feature.

    Example::

        zch = ZCHEmbeddingBagCollection([EmbeddingBagConfig(name="t_h", embedding_dim=16,
                                         num_embeddings=1000, feature_names=["h"])], input_hash_size=10**4)
        zch(kjt)["h"].shape            # [B, 16]
    """

    def __init__(
        self,
        tables: List[EmbeddingBagConfig],
        input_hash_size: int,
        eviction_policy: str = "distance_lfu",
        eviction_interval: int = 1,
        decay_exponent: float = 1.0,
        device: Optional[torch.device] = None,
    ) -> None:
        super().__init__()
        device = device or torch.device("cpu")
        if device.type == "meta":
            raise ValueError("ZCHEmbeddingBagCollection needs a real device (its remapper buffers are state)")
        if input_hash_size < 1:
            raise ValueError(f"input_hash_size must be >= 1, got {input_hash_size}")
        if eviction_interval < 1:
            raise ValueError(f"eviction_interval must be >= 1, got {eviction_interval}")
        for c in tables:
            if c.num_embeddings < 2:
                raise ValueError(f"table {c.name}: num_embeddings must be >= 2 (one admitted id plus the miss slot), "
                                 f"got {c.num_embeddings}")
        ebc = EmbeddingBagCollection(tables=tables, device=device)
        mcc = ManagedCollisionCollection(
            {c.name: MCHManagedCollisionModule(
                zch_size=c.num_embeddings, device=device, eviction_interval=int(eviction_interval),
                eviction_policy=make_eviction_policy(eviction_policy, decay_exponent),
                input_hash_size=int(input_hash_size), name=c.name) for c in tables},
            ebc.embedding_bag_configs(),
        )
        self.mc_ebc = ZCHManagedCollisionEmbeddingBagCollection(ebc, mcc, input_hash_size=input_hash_size)
        self._configs: List[EmbeddingBagConfig] = list(tables)

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        return self.mc_ebc(features)[0]

    def embedding_bag_configs(self) -> List[EmbeddingBagConfig]:
        return list(self._configs)


class _ShardedZCHEmbeddingBagCollection(ShardedManagedCollisionEmbeddingBagCollection):
    """Sharded MC-EBC whose eviction reset also runs on CPU (weights and fused optimizer state)."""

    def _evict(self, evictions_per_table: Dict[str, Optional[torch.Tensor]]) -> None:
        if self._device.type != "cpu":
            super()._evict(evictions_per_table)
            return
        for table, rows in evictions_per_table.items():
            if rows is None or rows.numel() == 0:
                continue
            tbe, table_ids = self._table_to_tbe_and_index[table]
            t = int(table_ids.item())
            rows = rows.long()
            config = cast(EmbeddingBagConfig, self._embedding_module._table_name_to_config[table])
            with torch.no_grad():
                _reset_rows(tbe.split_embedding_weights()[t], rows, config)  # a view of the local shard
                states = tbe.split_optimizer_states() if hasattr(tbe, "split_optimizer_states") else []
                for state in (states[t] if states else []):
                    state[rows] = 0


class ZCHEmbeddingBagCollectionSharder(ManagedCollisionEmbeddingBagCollectionSharder):
    """Row-wise sharder of :class:`ZCHManagedCollisionEmbeddingBagCollection` (CPU and CUDA).

    TorchRec's ``ManagedCollisionEmbeddingBagCollectionSharder`` with two differences: its module
    type is the project's subclass, and on CPU evicted rows are reset in Python (torchrec 1.8 calls
    ``fbgemm::reset_weight_momentum``, which has no CPU kernel: ``NotImplementedError: Could not
    run 'fbgemm::reset_weight_momentum' with arguments from the 'CPU' backend``). Row-wise is the
    only sharding type (``ManagedCollisionCollectionSharder``), offered to the planner on CPU too
    (TorchRec's EBC sharder leaves it out there); the kernel must be ``fused`` on CPU.

    Args:
        fused_params (Optional[Dict[str, Any]]): the fused optimizer (as for the EBC sharder).

    Example::

        sharders = embedding_sharders(optimizer, lr) + zch_sharders(optimizer=optimizer, learning_rate=lr)
    """

    def __init__(self, fused_params: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(ebc_sharder=EmbeddingBagCollectionSharder(fused_params=fused_params))

    def shard(  # pyre-ignore[14]
        self,
        module: ManagedCollisionEmbeddingBagCollection,
        params: Dict[str, ParameterSharding],
        env: ShardingEnv,
        device: Optional[torch.device] = None,
        module_fqn: Optional[str] = None,
    ) -> ShardedManagedCollisionEmbeddingBagCollection:
        bad = {t: p.sharding_type for t, p in params.items() if p.sharding_type != ShardingType.ROW_WISE.value}
        if bad:
            raise ValueError(f"managed-collision tables shard row-wise only, got {bad}")
        return _ShardedZCHEmbeddingBagCollection(
            module, params, ebc_sharder=cast(EmbeddingBagCollectionSharder, self._e_sharder),
            mc_sharder=self._mc_sharder, env=env, device=device or torch.device("cpu"))

    @property
    def module_type(self) -> Type[ManagedCollisionEmbeddingBagCollection]:  # pyre-ignore[15]
        return ZCHManagedCollisionEmbeddingBagCollection

    def sharding_types(self, compute_device_type: str) -> List[str]:
        # row-wise on every device: TorchRec intersects with the EBC sharder's types, which on CPU
        # leave row-wise out, although the row-wise EBC and remappers run there (tested on gloo)
        return [ShardingType.ROW_WISE.value]

    def compute_kernels(self, sharding_type: str, compute_device_type: str) -> List[str]:
        if compute_device_type == "cpu":  # the UVM / key-value kernels need CUDA or SSD
            return [EmbeddingComputeKernel.FUSED.value]
        return super().compute_kernels(sharding_type, compute_device_type)


def zch_sharders(**fused_params: Any) -> List[ZCHEmbeddingBagCollectionSharder]:
    """The sharder list entry for managed-collision tables, with the fused optimizer params the
    EBC sharders get (``optimizer``, ``learning_rate``, ``eps``, ...)."""
    return [ZCHEmbeddingBagCollectionSharder(fused_params=dict(fused_params))]


def managed_collision_tables(model: nn.Module) -> Dict[str, List[str]]:
    """``{module path: [table names]}`` of every managed-collision EBC in ``model``: the module a
    plan must name (its inner ``EmbeddingBagCollection``, at ``<path>._embedding_module``, must
    not be planned on its own)."""
    return {path: [c.name for c in cast(EmbeddingBagCollection, m._embedding_module).embedding_bag_configs()]
            for path, m in model.named_modules() if isinstance(m, ManagedCollisionEmbeddingBagCollection)}


def check_managed_collision_sharding(model: nn.Module, per_module: Mapping[str, Mapping[str, str]]) -> None:
    """Refuses a plan that shards a managed-collision table other than row-wise.

    Args:
        model (nn.Module): the unsharded model.
        per_module (Mapping[str, Mapping[str, str]]): ``{module path: {table: sharding type}}``.

    Raises:
        ValueError: a managed-collision table planned other than ``row_wise``, or its inner
            ``EmbeddingBagCollection`` planned on its own (its remapper would stay unsharded).
    """
    mc = managed_collision_tables(model)
    for path, tables in mc.items():
        inner = f"{path}._embedding_module" if path else "_embedding_module"
        if inner in per_module:
            raise ValueError(f"module {inner!r} is the table of the managed-collision module {path!r}: plan "
                             f"{path!r} (with ZCHEmbeddingBagCollectionSharder), not its inner EmbeddingBagCollection")
        choice = per_module.get(path, {})
        bad = {t: kind for t, kind in choice.items() if kind != "row_wise"}
        if bad:
            raise ValueError(f"module {path!r}: managed-collision tables shard row-wise only (TorchRec's "
                             f"ManagedCollisionCollectionSharder), got {bad}; set sharding.tables: "
                             f"{{{', '.join(f'{t}: row_wise' for t in tables)}}}")


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
    :class:`ZCHEmbeddingBagCollectionSharder`.

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
        if not target_keys:
            return [(f"t_{self.name}", list(keys))]
        if self.options.share_with_target:
            return [(f"t_{self.name}", list(keys) + list(target_keys))]
        return [(f"t_{self.name}", list(keys)), (f"t_{self.name}_target", list(target_keys))]

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
