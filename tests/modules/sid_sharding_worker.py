"""Worker for test_sid_sharding.py: runs on each of 2 gloo ranks (spawned), compares DMP to an
unsharded reference for several sharding types. Importable by spawned children (no pytest needed)."""

from __future__ import annotations

from typing import List

from factories import check_sgd_step_parity, gloo_rank
import torch
import torch.distributed as dist
from torch import nn

from torchrec.distributed.types import ShardingEnv
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from fbgemm_gpu.split_embedding_configs import EmbOptimType

from torchrec_side.modules import (
    MultiEmbeddingBagCollection,
    SIDEmbeddingBagCollection,
    SIDEmbeddingBagConfig,
    SIDTables,
    SIDTokenConfig,
    TraditionalSIDEmbeddingBagCollection,
    sparse_id_embedding_bag_collection,
)
from torchrec_side.distributed import shard_model
from torchrec_side.sid.codec import SIDCodec

WORLD = 2
D = 8
NUM_ITEMS = 50
RADICES = [4, 4, 4]
EMB_LR = 0.5
DENSE_LR = 0.1


class TinyModel(nn.Module):
    """``side_on_meta``: the SIDE collection is built on the meta device from its config alone
    (``dim``), for DMP to materialize and a state dict to fill."""

    def __init__(self, side_on_meta: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        codec = SIDCodec.byte_grouped(RADICES)
        tables = SIDTables.from_tensors(torch.randn(D), [torch.randn(k, D) for k in RADICES])
        side_sources = {} if side_on_meta else {"side_hist": tables}
        self.sparse = MultiEmbeddingBagCollection({
            "ids": sparse_id_embedding_bag_collection(["item"], NUM_ITEMS, D, name="item_id"),
            "trad": TraditionalSIDEmbeddingBagCollection([SIDTokenConfig(
                name="hist", feature_names=["hist_sid"], codec=codec, embedding_dim=D, max_rows=40)]),
            "side": SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(
                name="side_hist", feature_names=["hist_sid2"], codec=codec, dim=D, projection_dim=D)],
                sid_tables=side_sources, device=torch.device("meta") if side_on_meta else None),
        })
        self.over = nn.Linear(3 * D, 1)

    def forward(self, kjt: KeyedJaggedTensor) -> torch.Tensor:
        return self.over(self.sparse(kjt).values()).squeeze(1)


def make_batch(rank: int, step: int, B: int = 6) -> KeyedJaggedTensor:
    g = torch.Generator().manual_seed(1000 * rank + step)
    codec = SIDCodec.byte_grouped(RADICES)
    lens = [torch.randint(0, 4, (B,), generator=g) for _ in range(3)]
    item = torch.randint(0, NUM_ITEMS, (int(lens[0].sum()),), generator=g)
    sids = []
    for ln in lens[1:]:
        n = int(ln.sum())
        codes = torch.stack([torch.randint(0, k, (n,), generator=g) for k in RADICES], 1)
        sids.append(codec.pack(codes))
    return KeyedJaggedTensor.from_lengths_sync(
        keys=["item", "hist_sid", "hist_sid2"], values=torch.cat([item] + sids), lengths=torch.cat(lens))


def _check_side_unsharded(dmp: nn.Module, what: str) -> None:
    """The SIDE collection (an EmbeddingBagCollectionInterface with no learned table) stays an
    unsharded SIDEmbeddingBagCollection; the traditional tables' stock EBC is sharded."""
    from torchrec.distributed.types import ShardedModule
    from torchrec.modules.embedding_modules import EmbeddingBagCollectionInterface

    mods = dict(dmp.named_modules())
    side = [n for n, m in mods.items() if isinstance(m, SIDEmbeddingBagCollection)]
    assert len(side) == 1, f"{what}: SIDE modules after DMP: {side}"
    m = mods[side[0]]
    assert type(m) is SIDEmbeddingBagCollection and isinstance(m, EmbeddingBagCollectionInterface), what
    assert not isinstance(m, ShardedModule) and not any(isinstance(c, ShardedModule) for c in m.modules()), what
    sharded = sorted(n for n, x in mods.items() if isinstance(x, ShardedModule))
    assert any(n.endswith("collections.trad.ebc") for n in sharded), f"{what}: sharded modules {sharded}"
    assert all(not b.is_meta for b in m.buffers()), f"{what}: SIDE buffers left on meta"


def run_one(rank: int, sharding: str, side_on_meta: bool = False) -> None:
    ref = TinyModel()
    model = TinyModel(side_on_meta=side_on_meta)
    env = ShardingEnv.from_process_group(dist.GroupMember.WORLD)
    dmp = shard_model(model, sharding, env, optimizer=EmbOptimType.EXACT_SGD, learning_rate=EMB_LR)
    sharding = f"{sharding}{' (SIDE built on meta)' if side_on_meta else ''}"
    _check_side_unsharded(dmp, sharding)
    # reference step: gradients are averaged over ranks (TorchRec's all-to-all divides by the world
    # size, like DDP does for dense parameters and data-parallel tables).
    check_sgd_step_parity(dmp, ref, make_batch, rank, WORLD, EMB_LR, DENSE_LR,
                          lambda name: "embedding_bags" in name and sharding != "data_parallel", sharding)


def worker(rank: int, port: int, shardings: List[str], errors: "torch.multiprocessing.Queue") -> None:
    def body() -> None:
        for s in shardings:
            run_one(rank, s)
        # DMP materializes the meta SIDE buffers (zeros); its module-by-module load (no post hooks)
        # must rebuild the derived tables, or the forward below differs from the reference.
        run_one(rank, shardings[0], side_on_meta=True)

    gloo_rank(rank, port, WORLD, errors, body)
