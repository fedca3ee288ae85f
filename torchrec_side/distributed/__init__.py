# pyre-strict
"""Distributed training helpers for models holding SID modules (DMP plans, sharders, optimizers).

Learned tables (the stock ``EmbeddingBagCollection`` / ``EmbeddingCollection`` inside
:class:`~torchrec_side.modules.TraditionalSIDEmbeddingBagCollection`, the sparse-ID baseline, or any
other EBC in the model) are sharded by ``DistributedModelParallel`` with TorchRec's own sharders.
The SIDE collections implement TorchRec's collection interfaces but hold no learned table: no
sharder is registered for them, so DMP leaves them unsharded and replicates them with the dense
part of the model (docs/design.md, section 5).

* :func:`embedding_sharders`: EBC/EC sharders with an explicit fused optimizer.
* :func:`hand_plan` / :func:`sharding_constraints`: a plan (or planner constraints) from
  ``{table: sharding_type}``; :func:`check_mean_pooling_sharding` refuses plans torchrec 1.8
  computes wrongly.
* :func:`shard_model` / :func:`make_optimizer`: DMP with a hand plan, and the fused optimizer
  combined with a dense one.
* :mod:`.zch`: the row-wise sharder of the managed-collision table (``sparse_id_zch``), with its
  eviction reset on CPU, and the check that a plan shards it row-wise as one module.

Example::

    from torchrec_side.distributed import make_optimizer, shard_model

    dmp = shard_model(model, {"hist__p1": "table_wise", "hist__p2": "row_wise"})
    opt = make_optimizer(dmp, dense_lr=1e-3)
"""

from torchrec_side.distributed.sharding import (
    SHARDING_TYPES,
    check_mean_pooling_sharding,
    embedding_sharders,
    hand_plan,
    learned_tables,
    make_optimizer,
    per_module_sharding,
    shard_model,
    sharding_constraints,
)
from torchrec_side.distributed.zch import (
    check_managed_collision_sharding,
    managed_collision_tables,
    ZCHEmbeddingBagCollectionSharder,
    zch_sharders,
)

__all__ = [
    "SHARDING_TYPES",
    "ZCHEmbeddingBagCollectionSharder",
    "check_managed_collision_sharding",
    "check_mean_pooling_sharding",
    "embedding_sharders",
    "hand_plan",
    "learned_tables",
    "make_optimizer",
    "managed_collision_tables",
    "per_module_sharding",
    "shard_model",
    "sharding_constraints",
    "zch_sharders",
]
