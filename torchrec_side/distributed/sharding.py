# pyre-strict
"""DMP plans, sharders and optimizers for models holding SID modules.

Learned tables (the stock ``EmbeddingBagCollection`` / ``EmbeddingCollection`` inside
:class:`~torchrec_side.modules.TraditionalSIDEmbeddingBagCollection`, the sparse-ID baseline, or
any other EBC in the model) are sharded by ``DistributedModelParallel`` with TorchRec's own
sharders; SIDE modules hold only buffers (and maybe a small projection) and are replicated with the
dense part of the model (no sharder is registered for them; they implement TorchRec's collection
interfaces, which DMP matches by exact type, so they are never mistaken for an EBC).

* :func:`embedding_sharders`: EBC/EC sharders with an explicit fused optimizer (unset, TorchRec
  silently trains with SGD at lr 0.01).
* :func:`hand_plan`: a ``ShardingPlan`` from ``{table: sharding_type}`` (``table_wise``,
  ``row_wise``, ``column_wise``, ``data_parallel``, ``table_row_wise``, ``grid_shard``), without the
  planner (which on CPU offers only some types).
* :func:`sharding_constraints`: the same choice as planner ``ParameterConstraints``.
* :func:`shard_model`: DMP with a hand plan; :func:`make_optimizer`: the fused optimizer combined
  with a dense optimizer for everything else (dense layers, data-parallel tables, projections).

Example::

    dmp = shard_model(model, {"hist__p1": "table_wise", "hist__p2": "row_wise"}, env,
                      optimizer=EmbOptimType.EXACT_ROWWISE_ADAGRAD, learning_rate=0.05)
    opt = make_optimizer(dmp, dense_lr=1e-3)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union, cast

import torch
from torch import nn
from torchrec.distributed.embedding import EmbeddingCollectionSharder
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner.types import ParameterConstraints
from torchrec.distributed.sharding_plan import (
    column_wise,
    construct_module_sharding_plan,
    data_parallel,
    grid_shard,
    row_wise,
    table_row_wise,
    table_wise,
)
from torchrec.distributed.types import ModuleSharder, ShardingEnv, ShardingPlan, ShardingType
from torchrec.modules.embedding_configs import PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from fbgemm_gpu.split_embedding_configs import EmbOptimType

from torchrec_side.distributed.zch import (
    check_managed_collision_sharding,
    inner_module_path,
    managed_collision_tables,
    ZCHEmbeddingBagCollectionSharder,
)

__all__ = [
    "SHARDING_TYPES",
    "embedding_sharders",
    "learned_tables",
    "per_module_sharding",
    "hand_plan",
    "sharding_constraints",
    "shard_model",
    "make_optimizer",
    "check_mean_pooling_sharding",
]

SHARDING_TYPES: Tuple[str, ...] = (
    "table_wise", "row_wise", "column_wise", "data_parallel", "table_row_wise", "grid_shard",
)


def embedding_sharders(
    optimizer: EmbOptimType = EmbOptimType.EXACT_ROWWISE_ADAGRAD,
    learning_rate: float = 0.01,
    **fused_params: Any,
) -> List[ModuleSharder[nn.Module]]:
    """EBC and EC sharders whose fused optimizer is set explicitly.

    Args:
        optimizer (EmbOptimType): fused optimizer; on CPU ``EXACT_SGD``, ``EXACT_ADAGRAD`` and
            ``EXACT_ROWWISE_ADAGRAD`` work (Adam is refused).
        learning_rate (float): its learning rate.
        **fused_params: further FBGEMM fused params (``eps``, ``weight_decay``, ...).
    """
    params = {"optimizer": optimizer, "learning_rate": learning_rate, **fused_params}
    return [cast(ModuleSharder[nn.Module], EmbeddingBagCollectionSharder(fused_params=dict(params))),
            cast(ModuleSharder[nn.Module], EmbeddingCollectionSharder(fused_params=dict(params))),
            # managed-collision (sparse_id_zch) tables: row-wise, eviction reset on CPU too
            cast(ModuleSharder[nn.Module], ZCHEmbeddingBagCollectionSharder(fused_params=dict(params)))]


def learned_tables(model: nn.Module) -> Dict[str, List[str]]:
    """``{module path: [table names]}`` for every stock EBC / EC in ``model`` (what DMP can shard);
    a managed-collision EBC (``sparse_id_zch``) is one entry, its inner EBC none."""
    out: Dict[str, List[str]] = {}
    mc = managed_collision_tables(model)  # sharded whole, with their remappers
    inner = {inner_module_path(path) for path in mc}
    for path, m in model.named_modules():
        if path in inner:
            continue
        if path in mc:
            out[path] = mc[path]
        elif isinstance(m, EmbeddingBagCollection):
            out[path] = [c.name for c in m.embedding_bag_configs()]
        elif isinstance(m, EmbeddingCollection):
            out[path] = [c.name for c in m.embedding_configs()]
    return out


def _generator(kind: str, index: int, world_size: int, compute_kernel: Optional[str]) -> Callable[..., Any]:
    fused = compute_kernel or EmbeddingComputeKernel.FUSED.value
    if kind == "table_wise":
        return table_wise(rank=index % world_size, compute_kernel=fused)
    if kind == "row_wise":
        return row_wise(compute_kernel=fused)
    if kind == "column_wise":
        return column_wise(ranks=list(range(world_size)), compute_kernel=fused)
    if kind == "data_parallel":
        return data_parallel()
    if kind == "table_row_wise":
        return table_row_wise(host_index=0)
    if kind == "grid_shard":
        return grid_shard(host_indexes=[0])
    raise ValueError(f"unknown sharding type {kind!r}; expected one of {SHARDING_TYPES}")


def per_module_sharding(model: nn.Module, sharding: Union[str, Mapping[str, str]]) -> Dict[str, Dict[str, str]]:
    """``{module path: {table: sharding type}}`` for every learned table of ``model`` (unnamed
    tables table-wise), checked against the plans TorchRec computes wrongly
    (:func:`check_mean_pooling_sharding`) and managed-collision tables' row-wise rule.

    Raises:
        ValueError: unknown table names, or a plan either check refuses.
    """
    tables = learned_tables(model)
    all_names = [t for ts in tables.values() for t in ts]
    if isinstance(sharding, str):
        choice = {t: sharding for t in all_names}
    else:
        unknown = sorted(set(sharding) - set(all_names))
        if unknown:
            raise ValueError(f"sharding names unknown tables {unknown}; the model's learned tables: {all_names}")
        choice = {t: sharding.get(t, "table_wise") for t in all_names}
    per_module = {path: {t: choice[t] for t in ts} for path, ts in tables.items()}
    check_mean_pooling_sharding(model, per_module)
    check_managed_collision_sharding(model, per_module)  # managed-collision tables: row-wise only
    return per_module


#: Sharding types whose pooled output TorchRec 1.8 divides by the bag lengths after the all-to-all.
_ROW_SPLIT = {"row_wise", "table_row_wise", "grid_shard"}


def check_mean_pooling_sharding(model: nn.Module, per_module: Mapping[str, Mapping[str, str]]) -> None:
    """Refuses a plan under which TorchRec 1.8 computes a wrong mean.

    A sharded ``EmbeddingBagCollection`` whose tables mix row-split sharding (row-wise,
    table-row-wise, grid) with other types gets one mean-pooling divisor for all its features: the
    features of the other tables, already mean-pooled by their kernels, are divided by their
    lengths a second time (``_create_mean_pooling_divisor`` in torchrec 1.8.0). Sum pooling, or one
    kind of sharding per module, is computed correctly.

    Args:
        model (nn.Module): the unsharded model.
        per_module (Mapping[str, Mapping[str, str]]): ``{module path: {table: sharding type}}``.

    Raises:
        ValueError: a module with mean-pooled tables mixes row-split and other sharding types.
    """
    modules = dict(model.named_modules())
    for path, choice in per_module.items():
        m = modules.get(path)
        if not isinstance(m, EmbeddingBagCollection):
            continue
        split = {t for t, kind in choice.items() if kind in _ROW_SPLIT}
        if not split or len(split) == len(choice):
            continue
        mean = [c.name for c in m.embedding_bag_configs() if c.pooling == PoolingType.MEAN]
        if mean:
            raise ValueError(
                f"module {path!r}: tables {sorted(split)} are row-split and {sorted(set(choice) - split)} are not, "
                f"with mean pooling on {sorted(mean)}: torchrec 1.8 divides those means by the bag lengths twice "
                "under this plan; shard every table of the module the same way, or use sum pooling"
            )


def hand_plan(
    model: nn.Module,
    sharding: Union[str, Mapping[str, str]],
    world_size: int,
    local_size: Optional[int] = None,
    device_type: str = "cpu",
    sharders: Optional[List[ModuleSharder[nn.Module]]] = None,
    compute_kernel: Optional[str] = None,
) -> ShardingPlan:
    """A ``ShardingPlan`` for every learned table of ``model`` without the planner.

    Args:
        model (nn.Module): the unsharded model.
        sharding (Union[str, Mapping[str, str]]): one sharding type for all tables, or
            ``{table name: type}`` (tables not named are table-wise). Table-wise tables are placed
            round-robin over ranks; column-wise tables split over all ranks.
        world_size (int): number of ranks.
        local_size (Optional[int]): ranks per host (default ``world_size``).
        device_type (str): ``"cpu"`` or ``"cuda"``.
        sharders: the sharders DMP will use (default :func:`embedding_sharders`).
        compute_kernel (Optional[str]): kernel for non-data-parallel tables (default ``"fused"``:
            the fused optimizer of the sharders).
    """
    sharders = sharders or embedding_sharders()
    by_type = {s.module_type: s for s in sharders}
    plan: Dict[str, Any] = {}
    counter = 0
    for path, choice in per_module_sharding(model, sharding).items():
        module = model.get_submodule(path)
        sharder = by_type.get(type(module))
        if sharder is None:
            raise ValueError(f"no sharder for {type(module).__name__} at {path!r}")
        gens = {}
        for t, kind in choice.items():
            gens[t] = _generator(kind, counter, world_size, compute_kernel)
            counter += 1
        plan[path] = construct_module_sharding_plan(
            module, gens, sharder=sharder, local_size=local_size or world_size, world_size=world_size,
            device_type=device_type)
    return ShardingPlan(plan)


def sharding_constraints(model: nn.Module, sharding: Union[str, Mapping[str, str]]) -> Dict[str, ParameterConstraints]:
    """Planner ``ParameterConstraints`` pinning each learned table's sharding type (and the dense
    kernel for data-parallel tables, fused otherwise)."""
    out: Dict[str, ParameterConstraints] = {}
    for choice in per_module_sharding(model, sharding).values():
        for t, kind in choice.items():
            if kind not in SHARDING_TYPES:
                raise ValueError(f"unknown sharding type {kind!r}; expected one of {SHARDING_TYPES}")
            kernel = EmbeddingComputeKernel.DENSE.value if kind == "data_parallel" else EmbeddingComputeKernel.FUSED.value
            out[t] = ParameterConstraints(sharding_types=[ShardingType(kind).value], compute_kernels=[kernel])
    return out


def shard_model(
    model: nn.Module,
    sharding: Union[str, Mapping[str, str]],
    env: Optional[ShardingEnv] = None,
    device: Optional[torch.device] = None,
    optimizer: EmbOptimType = EmbOptimType.EXACT_ROWWISE_ADAGRAD,
    learning_rate: float = 0.01,
    **fused_params: Any,
) -> DistributedModelParallel:
    """Wraps ``model`` in DMP with a hand plan and an explicit fused optimizer.

    Args:
        model (nn.Module): the unsharded model (SID modules anywhere inside).
        sharding: as in :func:`hand_plan`.
        env (Optional[ShardingEnv]): default: the default process group.
        device (Optional[torch.device]): default CPU.
        optimizer, learning_rate, fused_params: the fused embedding optimizer.
    """
    import torch.distributed as dist

    device = device or torch.device("cpu")
    if env is None:
        world = dist.GroupMember.WORLD
        if world is None:
            raise RuntimeError("shard_model: no default process group; call "
                               "torch.distributed.init_process_group first, or pass env")
        env = ShardingEnv.from_process_group(world)
    sharders = embedding_sharders(optimizer, learning_rate, **fused_params)
    plan = hand_plan(model, sharding, env.world_size, device_type=device.type, sharders=sharders)
    return DistributedModelParallel(module=model, env=env, device=device, plan=plan, sharders=sharders)


def make_optimizer(
    model: nn.Module,
    dense_lr: float = 1e-3,
    dense_optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.SGD,
    **dense_kwargs: Any,
) -> CombinedOptimizer:
    """DMP's fused embedding optimizer combined with ``dense_optimizer`` over all other trainable
    parameters (dense layers, data-parallel tables, SIDE projections)."""
    dense = dict(in_backward_optimizer_filter(model.named_parameters()))
    opts: List[Any] = []
    fused = getattr(model, "fused_optimizer", None)
    if fused is not None:
        opts.append(fused)
    if dense:
        opts.append(KeyedOptimizerWrapper(dense, lambda params: dense_optimizer(params, lr=dense_lr, **dense_kwargs)))
    return CombinedOptimizer(opts)
