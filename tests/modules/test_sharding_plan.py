"""Sharding plans that torchrec 1.8 would compute wrongly are refused before DMP sees them."""

import pytest
import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from torchrec_side.distributed import hand_plan, sharding_constraints


class _Two(nn.Module):
    def __init__(self, pooling: PoolingType) -> None:
        super().__init__()
        self.ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name=n, embedding_dim=8, num_embeddings=32, feature_names=[f"f_{n}"],
                                       pooling=pooling) for n in ("p1", "p3")],
            device=torch.device("meta"))


@pytest.mark.parametrize("build", [lambda m, s: hand_plan(m, s, world_size=2), sharding_constraints])
def test_mean_pooling_with_mixed_row_split_is_refused(build) -> None:
    with pytest.raises(ValueError, match=r"module 'ebc'.*\['p3'\] are row-split.*twice"):
        build(_Two(PoolingType.MEAN), {"p3": "row_wise"})


@pytest.mark.parametrize("pooling,sharding", [(PoolingType.SUM, {"p3": "row_wise"}),
                                              (PoolingType.MEAN, "row_wise"),
                                              (PoolingType.MEAN, {"p3": "column_wise"}),
                                              (PoolingType.MEAN, "table_wise")])
def test_plans_torchrec_computes_correctly_pass(pooling: PoolingType, sharding) -> None:
    plan = hand_plan(_Two(pooling), sharding, world_size=2)
    assert set(plan.plan["ebc"]) == {"p1", "p3"}
