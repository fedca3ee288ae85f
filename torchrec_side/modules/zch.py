# pyre-strict
"""TorchRec's managed-collision (zero-collision) embedding-bag table as a pooled module.

A remapper admits item ids into the ``R`` rows of a table, one row per id, and evicts the least
valuable ids when it is full (``torchrec.modules.mc_modules.MCHManagedCollisionModule``), the
production alternative to hashing ids into ``R`` rows (docs/design.md section 7c). The history
kind that uses it is :mod:`torchrec_side.models.zch_history` (``sparse_id_zch``, which documents
admission, eviction, the miss slot and the saved state); DMP shards it row-wise with the sharder
of :mod:`torchrec_side.distributed.zch`.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple, cast

import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig
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

__all__ = [
    "EVICTION_POLICIES",
    "ZCHEmbeddingBagCollection",
    "ZCHManagedCollisionEmbeddingBagCollection",
    "make_eviction_policy",
    "reset_rows",
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
def reset_rows(weight: torch.Tensor, rows: torch.Tensor, config: EmbeddingBagConfig) -> None:
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
                "(torchrec_side.distributed.embedding_sharders or zch_sharders) in DMP's sharder list and plan"
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
                reset_rows(weight.data, rows.long(), configs[table])
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
