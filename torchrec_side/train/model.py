# pyre-strict
"""The run's model: the ranker of ``model`` wrapped by :class:`~torchrec_side.models.RankingModel`,
sharded by ``DistributedModelParallel`` with a hand-written plan (or planner constraints) and the
fused embedding optimizer set explicitly, its embedding tables initialized from the seed
independently of sharding and world size (:func:`build_model`).

Example::

    built = build_model(cfg, env, data)
    built.dmp, built.opt           # the DMP model and its combined (fused + dense) optimizer
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from torchrec_side.config import ConfigError
from torchrec_side.models.builder import build_ranker, count_parameters, RankingModel
from torchrec_side.train.config import TrainJobConfig
from torchrec_side.train.dist import DistEnv
from torchrec_side.train.run_setup import check_embedding_optimizer, RunData

__all__ = ["BuiltModel", "build_model", "build_sharded_model", "init_embedding_tables", "params_digest"]

logger: logging.Logger = logging.getLogger("torchrec_side.train")

_INIT_CHUNK: int = 65_536


def _table_specs(model: nn.Module) -> Dict[str, Tuple[int, int]]:
    """``{state-dict key: (rows, dim)}`` of every stock EBC / EC table of an unsharded model."""
    from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection

    out: Dict[str, Tuple[int, int]] = {}
    for path, m in model.named_modules():
        prefix = f"{path}." if path else ""
        if isinstance(m, EmbeddingBagCollection):
            for c in m.embedding_bag_configs():
                out[f"{prefix}embedding_bags.{c.name}.weight"] = (c.num_embeddings, c.embedding_dim)
        elif isinstance(m, EmbeddingCollection):
            for c in m.embedding_configs():
                out[f"{prefix}embeddings.{c.name}.weight"] = (c.num_embeddings, c.embedding_dim)
    return out


def _init_rows(key: str, rows: int, dim: int, r0: int, n: int, seed: int) -> torch.Tensor:
    """Rows ``[r0, r0 + n)`` of table ``key``'s initial weights: uniform(+-1/sqrt(rows)), generated
    in fixed chunks each from its own seeded generator (so any shard gets the same values)."""
    bound = 1.0 / math.sqrt(rows)
    out = torch.empty(n, dim)
    h = int.from_bytes(key.encode()[-16:].rjust(16, b"\0"), "little") % (2**61 - 1)
    c0, c1 = r0 // _INIT_CHUNK, (r0 + n - 1) // _INIT_CHUNK if n else -1
    for c in range(c0, c1 + 1):
        g = torch.Generator().manual_seed((seed * 1_000_003 + h * 7919 + c) % (2**63 - 1))
        lo = c * _INIT_CHUNK
        chunk = torch.empty(min(_INIT_CHUNK, rows - lo), dim).uniform_(-bound, bound, generator=g)
        a, b = max(r0, lo), min(r0 + n, lo + chunk.shape[0])
        out[a - r0: b - r0] = chunk[a - lo: b - lo]
    return out


@torch.no_grad()
def init_embedding_tables(model: nn.Module, specs: Dict[str, Tuple[int, int]], seed: int) -> None:
    """Sets every sharded (or data-parallel) table of a DMP model to its seeded initial values,
    independently of the sharding type and the world size.

    Args:
        model (nn.Module): the DMP-wrapped model.
        specs (Dict[str, Tuple[int, int]]): ``{state-dict key: (rows, dim)}`` (from the unsharded model).
        seed (int): the run's seed.
    """
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    sd = model.state_dict()
    for key, (rows, dim) in specs.items():
        t = sd.get(key)
        if t is None:
            raise KeyError(f"table {key} not in the sharded model's state dict")
        if isinstance(t, ShardedTensor):
            for shard in t.local_shards():
                (r0, c0), (n, m) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                shard.tensor.copy_(_init_rows(key, rows, dim, r0, n, seed)[:, c0: c0 + m])
        elif hasattr(t, "to_local"):  # DTensor
            raise NotImplementedError(f"{key}: DTensor tables are not supported")
        else:
            t.copy_(_init_rows(key, rows, dim, 0, rows, seed))


def _embedding_optimizer(name: str) -> Any:
    from fbgemm_gpu.split_embedding_configs import EmbOptimType

    return {"sgd": EmbOptimType.EXACT_SGD, "adagrad": EmbOptimType.EXACT_ADAGRAD,
            "rowwise_adagrad": EmbOptimType.EXACT_ROWWISE_ADAGRAD, "adam": EmbOptimType.ADAM}[name]


def build_sharded_model(
    cfg: TrainJobConfig, model: nn.Module, env: DistEnv
) -> Tuple[nn.Module, Any, Dict[str, str]]:
    """Shards ``model`` with DMP and builds the combined optimizer.

    Returns:
        ``(dmp, optimizer, {table: sharding type})``.

    Raises:
        ConfigError: a sharding entry names an unknown table, or the planner cannot satisfy it.
    """
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.types import ShardingEnv

    from torchrec_side.distributed import embedding_sharders, learned_tables

    o = cfg.optim
    check_embedding_optimizer(cfg, env)
    tables = [t for ts in learned_tables(model).values() for t in ts]
    unknown = sorted(set(cfg.sharding.tables) - set(tables))
    if unknown:
        raise ConfigError(f"sharding.tables names unknown tables {unknown}; the model's learned tables: {tables}")
    choice = {t: cfg.sharding.tables.get(t, cfg.sharding.default) for t in tables}
    fused: Dict[str, Any] = {"eps": o.embedding_eps, "weight_decay": o.embedding_weight_decay}
    if o.embedding_optimizer == "sgd":
        fused = {"weight_decay": o.embedding_weight_decay}
    sharders = embedding_sharders(_embedding_optimizer(o.embedding_optimizer), o.embedding_lr, **fused)
    sharding_env = ShardingEnv.from_process_group(dist.group.WORLD)  # pyre-ignore[6]  # pyright: ignore[reportArgumentType]
    plan = _plan(cfg, model, env, choice, sharders)
    dmp = DistributedModelParallel(module=model, env=sharding_env, device=env.device, plan=plan, sharders=sharders)
    return dmp, _combined_optimizer(dmp, cfg), choice


def _plan(cfg: TrainJobConfig, model: nn.Module, env: DistEnv, choice: Dict[str, str], sharders: List[Any]) -> Any:
    """The sharding plan of ``choice``: hand-written (``sharding.mode=plan``) or the planner's."""
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology

    from torchrec_side.distributed import hand_plan, per_module_sharding, sharding_constraints

    try:
        per_module_sharding(model, choice)
    except ValueError as e:
        raise ConfigError(f"sharding: {e}") from e
    if cfg.sharding.mode == "plan":
        return hand_plan(model, choice, env.world_size, local_size=env.local_world_size,
                         device_type=env.device.type, sharders=sharders)
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=env.world_size, local_world_size=env.local_world_size,
                          compute_device=env.device.type),
        constraints=sharding_constraints(model, choice),
    )
    try:
        return planner.collective_plan(model, sharders, dist.GroupMember.WORLD)  # pyre-ignore[6]
    except Exception as e:  # noqa: BLE001 - planner errors are long; keep the gist
        raise ConfigError(
            f"the sharding planner cannot place the tables as asked ({choice}) on {env.device.type}: "
            f"{str(e).splitlines()[0]}; use sharding.mode=plan (hand-written plan) for other types"
        ) from e


def _combined_optimizer(dmp: nn.Module, cfg: TrainJobConfig) -> Any:
    """The DMP model's fused embedding optimizer and, when it has dense parameters, theirs."""
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter

    o = cfg.optim
    dense = dict(in_backward_optimizer_filter(dmp.named_parameters()))
    opts: List[Any] = [("fused", dmp.fused_optimizer)]
    if dense:
        dense_cls = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}[o.dense_optimizer]
        opts.append(("dense", KeyedOptimizerWrapper(
            dense, lambda params: dense_cls(params, lr=o.dense_lr, weight_decay=o.dense_weight_decay))))
    return CombinedOptimizer(opts)


@torch.no_grad()
def params_digest(model: nn.Module) -> float:
    """A cheap scalar summary of this rank's parameter values (logs, tests)."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    total = 0.0
    for _, t in model.state_dict().items():
        if isinstance(t, ShardedTensor):
            total += sum(float(s.tensor.double().sum()) for s in t.local_shards())
        elif isinstance(t, torch.Tensor) and t.is_floating_point():
            total += float(t.double().sum())
    return total


@dataclass
class BuiltModel:
    """The sharded model of a run.

    Args:
        dmp (nn.Module): the DMP-wrapped :class:`~torchrec_side.models.RankingModel`.
        opt (Any): the combined optimizer (``"fused"`` embedding, ``"dense"`` when any).
        choice (Dict[str, str]): ``{table: sharding type}``.
        params (Dict[str, Any]): :func:`~torchrec_side.models.builder.count_parameters` of the unsharded model.
    """

    dmp: nn.Module
    opt: Any
    choice: Dict[str, str]
    params: Dict[str, Any]


def build_model(cfg: TrainJobConfig, env: DistEnv, data: RunData) -> BuiltModel:
    """Seeds torch and numpy, builds the ranker over ``data``'s features, shards it
    (:func:`build_sharded_model`) and sets its tables' seeded initial values."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    store = data.store
    ranker = build_ranker(cfg.model, store.num_users, store.num_items, data.features, data.keys)
    model = RankingModel(ranker)
    params = count_parameters(model)
    specs = _table_specs(model)
    dmp, opt, choice = build_sharded_model(cfg, model, env)
    init_embedding_tables(dmp, specs, cfg.seed)
    logger.info("model %s: %s learned parameters; tables %s", cfg.model.arch, params, choice)
    return BuiltModel(dmp=dmp, opt=opt, choice=choice, params=params)
