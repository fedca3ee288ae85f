"""Worker for test_zch_history.py::test_sharded_row_wise_on_two_ranks: runs on each of 2 gloo
ranks (spawned). A ``sparse_id_zch`` table (10 slots, ids in [0, 40)) sharded row-wise by DMP with
:class:`ZCHEmbeddingBagCollectionSharder` next to a plain EBC; checks, against a reference assembled
from the gathered sharded state:

* each rank manages its block of ids (``[0, 20)`` / ``[20, 40)``) with 5 slots, one of them its miss
  slot; distinct ids below the budget get distinct slots (zero collisions);
* the sharded pooled output (training and evaluation) equals the mean of the full table's rows at
  the slots the remappers hold (each block's miss slot for ids not admitted);
* admitting over the budget evicts per the policy, and the evicted slot's row is redrawn and its
  fused optimizer state zeroed on CPU before the lookup;
* the state dict (remapper buffers as row-wise ShardedTensors) loads into a fresh DMP model that
  then computes the same outputs and slots; rank 0 hands the gathered state and the outputs to the
  parent, which loads them into an unsharded module (as serving does) and compares.

Importable by spawned children (no pytest needed).
"""

from __future__ import annotations

import io
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.sharding_plan import construct_module_sharding_plan, row_wise, table_wise
from torchrec.distributed.types import ShardingEnv, ShardingPlan
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from factories import gloo_rank
from torchrec_side.models.dlrm import combine_pooled
from torchrec_side.distributed.zch import zch_sharders
from torchrec_side.modules.zch import ZCHEmbeddingBagCollection

WORLD = 2
D = 4
N = 40          # item ids [0, N)
ROWS = 10       # slots, 5 per rank
BLOCK = N // WORLD
LOCAL = ROWS // WORLD
SEEN = [1, 5, 9, 13, 21, 25, 29, 33]  # 4 ids per block: exactly the 4 usable slots of each shard
SENTINEL = torch.iinfo(torch.int64).max
FUSED = {"optimizer": EmbOptimType.EXACT_ROWWISE_ADAGRAD, "learning_rate": 0.1}


class TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        users = EmbeddingBagCollection(tables=[EmbeddingBagConfig(
            name="t_u", embedding_dim=D, num_embeddings=8, feature_names=["u"], pooling=PoolingType.SUM)])
        zch = ZCHEmbeddingBagCollection([EmbeddingBagConfig(
            name="t_h", embedding_dim=D, num_embeddings=ROWS, feature_names=["h", "h_target"],
            pooling=PoolingType.MEAN)], input_hash_size=N, eviction_policy="distance_lfu")
        self.sparse = combine_pooled({"ids": users, "zch": zch})
        self.over = nn.Linear(3 * D, 1)

    def forward(self, kjt: KeyedJaggedTensor) -> torch.Tensor:
        return self.over(self.sparse(kjt).values()).squeeze(1)


def shard(model: TinyModel, env: ShardingEnv) -> DistributedModelParallel:
    sharders = [EmbeddingBagCollectionSharder(fused_params=dict(FUSED))] + zch_sharders(**FUSED)
    by_type = {s.module_type: s for s in sharders}
    users = model.sparse.collections["ids"]
    mc = model.sparse.collections["zch"].mc_ebc
    plan = ShardingPlan({
        "sparse.collections.ids": construct_module_sharding_plan(
            users, {"t_u": table_wise(rank=0, compute_kernel="fused")}, sharder=by_type[type(users)],
            local_size=WORLD, world_size=WORLD, device_type="cpu"),
        "sparse.collections.zch.mc_ebc": construct_module_sharding_plan(
            mc, {"t_h": row_wise(compute_kernel="fused")}, sharder=by_type[type(mc)],
            local_size=WORLD, world_size=WORLD, device_type="cpu"),
    })
    return DistributedModelParallel(model, env=env, device=torch.device("cpu"), plan=plan,
                                    sharders=sharders)  # pyre-ignore[6]


def batch(bags: List[List[int]], targets: List[int]) -> KeyedJaggedTensor:
    B = len(bags)
    values = [0] * B + [v for b in bags for v in b] + targets
    lengths = [1] * B + [len(b) for b in bags] + [1] * B
    return KeyedJaggedTensor.from_lengths_sync(keys=["u", "h", "h_target"], values=torch.tensor(values),
                                               lengths=torch.tensor(lengths))


def _gather(t: object) -> torch.Tensor:
    """Full tensor of a row-wise ShardedTensor (all ranks take part)."""
    shard = t.local_shards()[0]  # pyre-ignore[16]
    parts: List[Tuple[int, torch.Tensor]] = [None] * WORLD  # pyre-ignore[9]
    dist.all_gather_object(parts, (int(shard.metadata.shard_offsets[0]), shard.tensor.detach().clone()))
    return torch.cat([p[1] for p in sorted(parts, key=lambda p: p[0])])


def full_state(dmp: nn.Module) -> Tuple[Dict[int, int], torch.Tensor]:
    """``({admitted id: global slot}, full table [ROWS, D])`` from the sharded state dict."""
    sd = dmp.state_dict()
    pre = "sparse.collections.zch.mc_ebc."
    mch = pre + "_managed_collision_collection._managed_collision_modules.t_h."
    raw = _gather(sd[mch + "_mch_sorted_raw_ids"]).tolist()
    slot = _gather(sd[mch + "_mch_remapped_ids_mapping"]).tolist()
    weight = _gather(sd[pre + "_embedding_module.embedding_bags.t_h.weight"])
    return {r: s for r, s in zip(raw, slot) if r != SENTINEL}, weight


def reference(slots: Dict[int, int], weight: torch.Tensor, bags: List[List[int]]) -> torch.Tensor:
    out = []
    for b in bags:
        rows = [weight[slots.get(i, (i // BLOCK) * LOCAL + LOCAL - 1)] for i in b]  # miss: the block's last slot
        out.append(torch.stack(rows).mean(0) if rows else torch.zeros(D))
    return torch.stack(out)


def zch_out(dmp: DistributedModelParallel, kjt: KeyedJaggedTensor) -> Dict[str, torch.Tensor]:
    kt = dmp.module.sparse.collections["zch"](kjt)  # sharded: a LazyAwaitable[KeyedTensor]
    return kt.to_dict()


def run(rank: int) -> Dict[str, object]:
    env = ShardingEnv.from_process_group(dist.GroupMember.WORLD)
    dmp = shard(TinyModel(), env)
    assert "sparse.collections.zch.mc_ebc._embedding_module.embedding_bags.t_h.weight" in \
        dmp.fused_optimizer.state_dict()["state"], "the managed-collision table is not in the fused optimizer"
    g = torch.Generator().manual_seed(100 + rank)

    # ---- below the budget: every seen id gets its own slot in its block's shard
    for step in range(3):
        idx = torch.randint(0, len(SEEN), (9,), generator=g).tolist()
        bags = [[SEEN[i] for i in idx[:4]], [SEEN[i] for i in idx[4:6]], [SEEN[i] for i in idx[6:8]]]
        targets = [SEEN[(rank + step) % len(SEEN)], SEEN[idx[8]], SEEN[(rank * 3 + step) % len(SEEN)]]
        if step == 0:  # the first round sees every id of SEEN on both ranks
            bags[0] = SEEN[:4] + bags[0]
            bags[1] = SEEN[4:] + bags[1]
        kjt = batch(bags, targets)
        out = zch_out(dmp, kjt)  # training mode: admits, then looks up
        slots, weight = full_state(dmp)
        assert sorted(slots) == sorted(SEEN), f"step {step}: admitted {sorted(slots)}"
        assert len(set(slots.values())) == len(SEEN), f"step {step}: collisions in {slots}"
        assert all(s // LOCAL == i // BLOCK and s % LOCAL != LOCAL - 1 for i, s in slots.items()), slots
        torch.testing.assert_close(out["h"], reference(slots, weight, bags), msg=f"step {step}: h")
        torch.testing.assert_close(out["h_target"], reference(slots, weight, [[t] for t in targets]))
        (out["h"] * out["h_target"]).sum().backward()
        dmp.fused_optimizer.step()

    # ---- over the budget: 2 and 3 (block 0) arrive often; distance-LFU evicts 2 ids of block 0
    mc = dmp.module.sparse.collections["zch"].mc_ebc
    tbe, tid = mc._table_to_tbe_and_index["t_h"]
    t = int(tid.item())
    w0 = tbe.split_embedding_weights()[t].detach().clone()
    m0 = tbe.split_optimizer_states()[t][0].detach().clone()
    before, _ = full_state(dmp)
    hot = [2] * 16 + [3] * 16  # scores 34 against about 17 / 2 for the held ids of block 0
    kjt = batch([hot, [], [21]], [2, 3, 25])
    out = zch_out(dmp, kjt)
    slots, weight = full_state(dmp)
    assert {2, 3} <= set(slots) and len(slots) == len(SEEN), slots
    evicted = sorted(set(before) - set(slots))
    assert len(evicted) == 2 and all(i < BLOCK for i in evicted), evicted
    assert {before[i] for i in evicted} == {slots[2], slots[3]}  # the new ids took the freed slots
    torch.testing.assert_close(out["h"], reference(slots, weight, [hot, [], [21]]))
    if rank == 0:  # block 0 lives on rank 0: its freed rows were redrawn and their momentum zeroed
        w1 = tbe.split_embedding_weights()[t]
        m1 = tbe.split_optimizer_states()[t][0]
        freed = [slots[2], slots[3]]
        assert bool((m0[freed] > 0).all()), "the evicted ids' rows had been trained"
        assert bool((m1[freed] == 0).all()), f"momentum of reset rows {m1[freed]}"
        assert not torch.equal(w1[freed], w0[freed])
        assert bool((w1[freed].abs() <= ROWS ** -0.5).all())
        kept = [s for i, s in slots.items() if i < BLOCK and i not in (2, 3)]
        torch.testing.assert_close(m1[kept], m0[kept])
    (out["h"] * out["h_target"]).sum().backward()
    dmp.fused_optimizer.step()

    # ---- evaluation admits nothing; misses read their block's miss slot
    dmp.eval()
    probe_bags = [[1, 2, 39], [7, 20], [33, 3, 11, 25]]
    probe = batch(probe_bags, [0, 21, 38])
    before, _ = full_state(dmp)
    out = zch_out(dmp, probe)
    slots, weight = full_state(dmp)
    assert slots == before
    torch.testing.assert_close(out["h"], reference(slots, weight, probe_bags))
    torch.testing.assert_close(out["h_target"], reference(slots, weight, [[0], [21], [38]]))
    logits = dmp(probe)

    # ---- the state dict carries the remapper: a fresh DMP model loads it and agrees
    sd = dmp.state_dict()
    dmp2 = shard(TinyModel(), env)
    dmp2.load_state_dict(sd)
    dmp2.eval()
    slots2, weight2 = full_state(dmp2)
    assert slots2 == slots
    torch.testing.assert_close(weight2, weight)
    torch.testing.assert_close(dmp2(probe), logits)

    # ---- for the parent process: the gathered state of the zch module and what it computed
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    pre = "sparse.collections.zch."
    sd = dmp.state_dict()  # afresh: loading consumed the one above (its ShardedTensors were unwrapped)
    full = {k[len(pre):]: (_gather(v) if isinstance(v, ShardedTensor) else v.detach().clone())
            for k, v in sd.items() if k.startswith(pre)}
    return {"state": full, "bags": probe_bags, "targets": [0, 21, 38],
            "h": out["h"].detach().clone(), "h_target": out["h_target"].detach().clone()}


def worker(rank: int, port: int, errors: "torch.multiprocessing.Queue") -> None:
    def body() -> Optional[bytes]:
        payload = run(rank)
        if rank != 0:
            return None
        buf = io.BytesIO()  # as bytes: tensors sent through the queue share memory with this process, which exits
        torch.save(payload, buf)
        return buf.getvalue()

    gloo_rank(rank, port, WORLD, errors, body)
