"""DMP on 2 gloo ranks (CPU): sharded forward and one fused-optimizer step equal the unsharded model.

The model (tests/modules/sid_sharding_worker.py) holds a sparse-ID EBC, prefix-ngram tables in a
TraditionalSIDEmbeddingBagCollection and a SIDEmbeddingBagCollection with a learned projection,
behind one MultiEmbeddingBagCollection. Each sharding type is applied to all learned tables; the
SIDE buffers are replicated. State-dict names equal the unsharded model's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from factories import spawn_ranks
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sid_sharding_worker  # noqa: E402

SHARDINGS = ["table_wise", "row_wise", "column_wise", "data_parallel"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sharded_matches_unsharded() -> None:
    if not torch.distributed.is_gloo_available():
        pytest.skip("gloo backend unavailable")
    spawn_ranks(sid_sharding_worker.worker, sid_sharding_worker.WORLD, SHARDINGS)


def test_hand_plan_and_constraints() -> None:
    from torchrec.distributed.types import ShardingType

    from torchrec_side.distributed import hand_plan, learned_tables, sharding_constraints

    model = sid_sharding_worker.TinyModel()
    tables = learned_tables(model)
    assert tables == {"sparse.collections.ids": ["item_id"],
                      "sparse.collections.trad.ebc": ["hist__p1", "hist__p2", "hist__p3"]}
    choice = {"item_id": "row_wise", "hist__p1": "data_parallel", "hist__p2": "column_wise"}
    plan = hand_plan(model, choice, world_size=2)
    trad = plan.plan["sparse.collections.trad.ebc"]
    assert trad["hist__p1"].sharding_type == ShardingType.DATA_PARALLEL.value
    assert trad["hist__p2"].sharding_type == ShardingType.COLUMN_WISE.value
    assert trad["hist__p2"].compute_kernel == "fused"
    assert trad["hist__p3"].sharding_type == ShardingType.TABLE_WISE.value
    cons = sharding_constraints(model, choice)
    assert cons["hist__p1"].compute_kernels == ["dense"] and cons["item_id"].sharding_types == ["row_wise"]
    import pytest as _pytest

    with _pytest.raises(ValueError, match="unknown tables"):
        hand_plan(model, {"nope": "row_wise"}, world_size=2)
