"""Worker for test_din_sequence.py: a DIN ranker over a sparse-ID EmbeddingCollection and a
TraditionalSIDEmbeddingCollection (target through the same tables), sharded by DMP on 2 gloo ranks
and compared with an unsharded reference (forward, one SGD step, forward again). Importable by
spawned children (no pytest needed)."""

from __future__ import annotations

from typing import List

from factories import check_sgd_step_parity, gloo_rank
import torch
import torch.distributed as dist
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from torch import nn
from torchrec.distributed.types import ShardingEnv
from torchrec.modules.embedding_configs import EmbeddingConfig
from torchrec.modules.embedding_modules import EmbeddingCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.distributed import shard_model
from torchrec_side.models.din import DINRanker
from torchrec_side.models.dlrm import id_embedding_bag_collection
from torchrec_side.modules import SIDTokenConfig, SIDTokenMapper, TraditionalSIDEmbeddingCollection
from torchrec_side.sid.codec import SIDCodec

WORLD = 2
D = 8
U, I = 9, 30
RADICES = [4, 4, 4]
EMB_LR = 0.5
DENSE_LR = 0.1
B = 6


def token_config() -> SIDTokenConfig:
    return SIDTokenConfig(name="t_pn", feature_names=["hist_pn", "hist_pn_target"],
                          codec=SIDCodec.mixed_radix(RADICES), embedding_dim=D, max_rows=40)


class Wrapped(nn.Module):
    """The ranker behind a KJT-only forward (dense inputs derived from the batch)."""

    def __init__(self, max_events: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        ec = EmbeddingCollection(tables=[EmbeddingConfig(name="t_hist_item_id", embedding_dim=D, num_embeddings=I,
                                                         feature_names=["hist_item_id", "hist_item_id_target"])])
        trad = TraditionalSIDEmbeddingCollection([token_config()], premapped=True)
        self.ranker = DINRanker(
            id_embedding_bag_collection(U, I, D), {"sparse": ec, "pn": trad}, 2, [16], [8], [16, 1],
            targets={"sparse": ["hist_item_id_target"], "pn": token_config().token_feature_names("hist_pn_target")},
            max_events=max_events)

    def forward(self, kjt: KeyedJaggedTensor) -> torch.Tensor:
        dense = torch.ones(kjt.stride(), 2)
        return self.ranker(dense, kjt)


def make_batch(rank: int, step: int) -> KeyedJaggedTensor:
    """user_id, item_id, hist_item_id, hist_item_id_target, then the premapped token keys."""
    g = torch.Generator().manual_seed(1000 * rank + step)
    cfg = token_config()
    hist = torch.randint(0, 6, (B,), generator=g)
    n = int(hist.sum())
    user = torch.randint(0, U, (B,), generator=g)
    item = torch.randint(0, I, (B,), generator=g)
    hist_items = torch.randint(0, I, (n,), generator=g)
    base = KeyedJaggedTensor.from_lengths_sync(
        keys=["user_id", "item_id", "hist_item_id", "hist_item_id_target"],
        values=torch.cat([user, item, hist_items, item]), lengths=torch.cat([torch.ones(B, dtype=torch.long),
                                                                          torch.ones(B, dtype=torch.long), hist,
                                                                          torch.ones(B, dtype=torch.long)]))
    codes = torch.stack([torch.randint(0, k, (n + B,), generator=g) for k in RADICES], 1)
    sids = KeyedJaggedTensor.from_lengths_sync(keys=["hist_pn", "hist_pn_target"], values=cfg.codec.pack(codes),
                                               lengths=torch.cat([hist, torch.ones(B, dtype=torch.long)]))
    tok = SIDTokenMapper([cfg])(sids)
    return KeyedJaggedTensor.concat([base, tok])


def run_one(rank: int, sharding: str, max_events: int) -> None:
    from torchrec.distributed.types import ShardedModule

    ref = Wrapped(max_events)
    model = Wrapped(max_events)
    env = ShardingEnv.from_process_group(dist.GroupMember.WORLD)
    dmp = shard_model(model, sharding, env, optimizer=EmbOptimType.EXACT_SGD, learning_rate=EMB_LR)
    what = f"{sharding} max_events={max_events}"
    sharded = sorted(n for n, m in dmp.named_modules() if isinstance(m, ShardedModule))
    assert any(n.endswith("sequences.pn.ec") for n in sharded), f"{what}: sharded modules {sharded}"
    assert any(n.endswith("sequences.sparse") for n in sharded), f"{what}: sharded modules {sharded}"
    check_sgd_step_parity(dmp, ref, make_batch, rank, WORLD, EMB_LR, DENSE_LR,
                          lambda name: ("embeddings." in name or "embedding_bags." in name)
                          and sharding != "data_parallel", what)


def worker(rank: int, port: int, shardings: List[str], errors: "torch.multiprocessing.Queue") -> None:
    def body() -> None:
        for s in shardings:
            run_one(rank, s, max_events=3)

    gloo_rank(rank, port, WORLD, errors, body)
