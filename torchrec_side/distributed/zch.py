# pyre-strict
"""Row-wise DMP sharding of the managed-collision table (:mod:`torchrec_side.modules.zch`).

TorchRec's ``ManagedCollisionEmbeddingBagCollectionSharder`` resets evicted rows with
``fbgemm::reset_weight_momentum``, which has no CPU kernel; :class:`ZCHEmbeddingBagCollectionSharder`
does that reset in Python on CPU (weights and fused optimizer state) and defers to TorchRec on
CUDA. The plan must name the managed-collision module itself (:func:`managed_collision_tables`),
row-wise (:func:`check_managed_collision_sharding`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Type, cast

import torch
from torch import nn
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.mc_embeddingbag import (
    ManagedCollisionEmbeddingBagCollectionSharder,
    ShardedManagedCollisionEmbeddingBagCollection,
)
from torchrec.distributed.types import ParameterSharding, ShardingEnv, ShardingType
from torchrec.modules.embedding_configs import EmbeddingBagConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.modules.mc_embedding_modules import ManagedCollisionEmbeddingBagCollection

from torchrec_side.modules.zch import reset_rows, ZCHManagedCollisionEmbeddingBagCollection

__all__ = [
    "ZCHEmbeddingBagCollectionSharder",
    "check_managed_collision_sharding",
    "inner_module_path",
    "managed_collision_tables",
    "zch_sharders",
]


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
                reset_rows(tbe.split_embedding_weights()[t], rows, config)  # a view of the local shard
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

        sharders = embedding_sharders(optimizer, lr)   # already holds this sharder
        sharders = [EmbeddingBagCollectionSharder(fused_params=p)] + zch_sharders(**p)   # or by hand
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


def inner_module_path(path: str) -> str:
    """The path of the inner ``EmbeddingBagCollection`` of the managed-collision module at ``path``."""
    return f"{path}._embedding_module" if path else "_embedding_module"


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
        inner = inner_module_path(path)
        if inner in per_module:
            raise ValueError(f"module {inner!r} is the table of the managed-collision module {path!r}: plan "
                             f"{path!r} (with ZCHEmbeddingBagCollectionSharder), not its inner EmbeddingBagCollection")
        choice = per_module.get(path, {})
        bad = {t: kind for t, kind in choice.items() if kind != "row_wise"}
        if bad:
            raise ValueError(f"module {path!r}: managed-collision tables shard row-wise only (TorchRec's "
                             f"ManagedCollisionCollectionSharder), got {bad}; set sharding.tables: "
                             f"{{{', '.join(f'{t}: row_wise' for t in tables)}}}")
