"""``sparse_id_zch``: the sparse-ID history in TorchRec's managed-collision (zero-collision) table.

Unsharded: the pooled contract (KJT -> KeyedTensor of width D per key), zero collisions below the
row budget, admission / eviction by the policy above it (against a plain reference of the scores),
evicted rows reset, the remapper's state through ``state_dict``, learning, and option errors.
Sharded (2 gloo ranks, CPU): tests/models/zch_sharding_worker.py.
"""

from __future__ import annotations

import copy
import io
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import pytest
import torch
from hypothesis import assume, given, settings, strategies as st
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from torchrec_side.config import ConfigError
from torchrec_side.models.history import HistoryContext, HistoryFeatureConfig, make_history_feature
from torchrec_side.distributed.zch import managed_collision_tables
from torchrec_side.models.zch_history import ZCHHistory
from torchrec_side.modules.zch import ZCHEmbeddingBagCollection

D = 4


def _zch(rows: int, n: int = 1000, policy: str = "distance_lfu", interval: int = 1, pooling: str = "mean",
         features: Sequence[str] = ("h",)) -> ZCHEmbeddingBagCollection:
    pool = PoolingType.MEAN if pooling == "mean" else PoolingType.SUM
    return ZCHEmbeddingBagCollection([EmbeddingBagConfig(name="t_h", embedding_dim=D, num_embeddings=rows,
                                                         feature_names=list(features), pooling=pool)],
                                     input_hash_size=n, eviction_policy=policy, eviction_interval=interval)


def _kjt(bags: Dict[str, List[List[int]]]) -> KeyedJaggedTensor:
    keys = list(bags)
    lengths = [len(b) for k in keys for b in bags[k]]
    values = [v for k in keys for b in bags[k] for v in b]
    return KeyedJaggedTensor.from_lengths_sync(keys=keys, values=torch.tensor(values, dtype=torch.int64),
                                               lengths=torch.tensor(lengths, dtype=torch.int64))


def _mch(z: ZCHEmbeddingBagCollection, table: str = "t_h") -> torch.nn.Module:
    return z.mc_ebc._managed_collision_collection._managed_collision_modules[table]


def _slots(z: ZCHEmbeddingBagCollection, table: str = "t_h") -> Dict[int, int]:
    """``{admitted id: slot}`` read from the remapper's buffers (sentinel entries left out)."""
    m = _mch(z, table)
    raw, slot = m._mch_sorted_raw_ids.tolist(), m._mch_remapped_ids_mapping.tolist()
    return {r: s for r, s in zip(raw, slot) if r != torch.iinfo(torch.int64).max}


def _weight(z: ZCHEmbeddingBagCollection, table: str = "t_h") -> torch.Tensor:
    return z.mc_ebc._embedding_module.embedding_bags[table].weight


def _reference(z: ZCHEmbeddingBagCollection, bags: List[List[int]], mean: bool = True) -> torch.Tensor:
    """Pooled rows at the slots the remapper holds (miss slot ``R - 1`` for ids not admitted)."""
    slots, w = _slots(z), _weight(z).detach()
    miss = w.shape[0] - 1
    out = []
    for b in bags:
        rows = [w[slots.get(i, miss)] for i in b]
        s = torch.stack(rows).sum(0) if rows else torch.zeros(w.shape[1])
        out.append(s / max(len(rows), 1) if mean else s)
    return torch.stack(out)


# --------------------------------------------------------------------------------------------
# the kind


def test_kind_builds_pooled_module_with_the_contract() -> None:
    ctx = HistoryContext(num_users=10, num_items=500, embedding_dim=D, arch="dlrm")
    f = make_history_feature(HistoryFeatureConfig(kind="sparse_id_zch", options={
        "target": True, "share_with_target": True}), ctx)
    assert isinstance(f, ZCHHistory) and f.column == "hist_item_id" and f.num_rows == 50  # N/10 by default
    keys, tkeys = ["hist_item_id"], f.target_keys(["hist_item_id"])
    assert tkeys == ["hist_item_id_target"]
    m = f.pooled(keys, tkeys)
    assert [c.name for c in m.embedding_bag_configs()] == ["t_hist_item_id"]
    assert managed_collision_tables(m) == {"mc_ebc": ["t_hist_item_id"]}
    kjt = _kjt({"user_id": [[1], [2], [3]], "hist_item_id": [[1, 2, 3], [], [499]],
                "hist_item_id_target": [[7], [8], [9]]})
    out = m(kjt)
    assert isinstance(out, KeyedTensor) and out.keys() == keys + tkeys
    assert out.values().shape == (3, 2 * D) and out["hist_item_id"].shape == (3, D)
    sep = make_history_feature(HistoryFeatureConfig(kind="sparse_id_zch", options={"num_rows": 64, "target": True}), ctx)
    ms = sep.pooled(keys, tkeys)
    assert [(c.name, c.num_embeddings) for c in ms.embedding_bag_configs()] == [
        ("t_hist_item_id", 64), ("t_hist_item_id_target", 64)]
    assert sep.describe()["learned_params"] == 2 * 64 * D and sep.describe()["zero_collision_ids"] == 63
    # the DLRM ranker takes it as any pooled module
    from torchrec_side.models import DLRMRanker
    from torchrec_side.models.dlrm import combine_pooled, id_embedding_bag_collection

    r = DLRMRanker(combine_pooled({"ids": id_embedding_bag_collection(10, 500, D, ["user_id"]), "h": m}),
                   dense_in_features=2, dense_arch_layer_sizes=[8, D], over_arch_layer_sizes=[8, 1])
    assert r(torch.randn(3, 2), kjt).shape == (3,)


@pytest.mark.parametrize("options, match", [
    ({"pooling": "max"}, "pooling"),
    ({"num_rows": 1}, "num_rows"),
    ({"num_rows": -5}, "num_rows"),
    ({"share_with_target": True}, "share_with_target needs target"),
    ({"eviction_policy": "random"}, "eviction_policy"),
    ({"eviction_interval": 0}, "eviction_interval"),
    ({"decay_exponent": 0.0}, "decay_exponent"),
    ({"num_row": 10}, "num_row"),
])
def test_bad_options_are_config_errors(options: Dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_history_feature(HistoryFeatureConfig(kind="sparse_id_zch", options=options),
                             HistoryContext(10, 500, D, "dlrm"))


def test_wrong_column_and_arch_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="column must be 'hist_item_id'"):
        make_history_feature(HistoryFeatureConfig(kind="sparse_id_zch", column="hist_sid"), HistoryContext(10, 500, D, "dlrm"))
    with pytest.raises(ConfigError, match="pooled module only"):
        make_history_feature(HistoryFeatureConfig(kind="sparse_id_zch"), HistoryContext(10, 500, D, "din"))


def test_packaged_config() -> None:
    from torchrec_side.train.config import load_train_config

    cfg = load_train_config("adsworld/dlrm_sparse_id_zch")
    (h,) = cfg.model.history
    assert h.kind == "sparse_id_zch" and h.column == "hist_item_id"
    assert h.options["num_rows"] == 10000 and h.options["share_with_target"] is True
    assert cfg.sharding.tables == {"t_hist_item_id": "row_wise"}
    hashed = load_train_config("adsworld/dlrm_sparse_id_hashed")
    assert hashed.model.history[0].options["num_rows"] == h.options["num_rows"]  # same row budget
    f = make_history_feature(h, HistoryContext(10, 100_000, cfg.model.embedding_dim, cfg.model.arch))
    assert f.num_rows == 10000 and f.options.eviction_policy == "distance_lfu"


# --------------------------------------------------------------------------------------------
# the table


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(2, 40), data=st.data())
def test_distinct_ids_below_the_budget_never_collide(rows: int, data: st.DataObject) -> None:
    n = 10_000
    ids = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=rows - 1, unique=True))
    nb = data.draw(st.integers(1, 4))
    bags = [ids[i::nb] for i in range(nb)]
    z = _zch(rows, n)
    z.train()
    out = z(_kjt({"h": bags}))["h"]
    slots = _slots(z)
    assert sorted(slots) == sorted(ids)                          # every id admitted ...
    assert len(set(slots.values())) == len(ids)                  # ... to a slot of its own
    assert rows - 1 not in slots.values()                        # not the miss slot
    torch.testing.assert_close(out, _reference(z, bags))         # the lookup reads those slots
    z.eval()  # evaluation reads the same slots and admits nothing
    torch.testing.assert_close(z(_kjt({"h": bags}))["h"], _reference(z, bags))


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(2, 12), data=st.data())
def test_over_budget_lfu_keeps_the_most_frequent(rows: int, data: st.DataObject) -> None:
    """One admission round over more distinct ids than slots: the ``R - 1`` most frequent ids are
    admitted (counts distinct at the boundary), every other id reads the miss slot."""
    counts = data.draw(st.lists(st.integers(1, 6), min_size=rows, max_size=rows + 10))
    ids = data.draw(st.lists(st.integers(0, 999), min_size=len(counts), max_size=len(counts), unique=True))
    order = sorted(range(len(ids)), key=lambda i: -counts[i])
    assume(counts[order[rows - 2]] > counts[order[rows - 1]])
    values = [i for i, c in zip(ids, counts) for _ in range(c)]
    perm = data.draw(st.permutations(values))
    z = _zch(rows, 1000, policy="lfu")
    z.train()
    out = z(_kjt({"h": [list(perm)]}))["h"]
    expect = {ids[i] for i in order[: rows - 1]}
    assert set(_slots(z)) == expect and len(set(_slots(z).values())) == rows - 1
    m = _mch(z)
    got_counts = dict(zip(m._mch_sorted_raw_ids.tolist(), m._mch_counts.tolist()))
    assert all(got_counts[ids[i]] == counts[i] for i in order[: rows - 1])
    torch.testing.assert_close(out, _reference(z, [list(perm)]))
    z.eval()  # every id left out reads the miss slot
    left_out = [[ids[i]] for i in order[rows - 1:]]
    miss = _weight(z)[rows - 1].detach()
    torch.testing.assert_close(z(_kjt({"h": left_out}))["h"], miss.expand(len(left_out), D))


def _distance_lfu_reference(rows: int, batches: List[List[int]], decay: float = 1.0) -> Dict[int, int]:
    """Plain re-implementation of DistanceLFU admission (eviction_interval 1): ``{id: count}`` held
    after the batches. Score = count / (iter - last_seen + 1) ^ decay; the ``R - 1`` best are held;
    ties are broken by the stable order of TorchRec's merge (held ids first, by slot order; then new
    ids by descending batch count, ascending id)."""
    held: Dict[int, Tuple[int, int]] = {}  # id -> (count, last iter)
    for it, batch in enumerate(batches, start=1):
        c = Counter(batch)
        for i in list(held):
            if i in c:
                held[i] = (held[i][0] + c[i], it)
        new = sorted((i for i in c if i not in held), key=lambda i: (-c[i], i))
        cand = [(held[i][0] / (it - held[i][1] + 1) ** decay, i, held[i]) for i in sorted(held)]
        cand += [(c[i] / 1.0, i, (c[i], it)) for i in new]
        keep = sorted(range(len(cand)), key=lambda k: -cand[k][0])[: rows - 1]
        held = {cand[k][1]: cand[k][2] for k in keep}
    return {i: v[0] for i, v in held.items()}


def test_distance_lfu_evicts_ids_that_stop_appearing() -> None:
    """Ids seen often long ago lose their slots to ids seen recently (count decays by distance),
    and a newly admitted id's row is reset, not inherited."""
    rows = 4
    z = _zch(rows, 100, policy="distance_lfu")
    z.train()
    batches = [[1, 1, 2, 2, 3, 3]] * 2 + [[40, 41, 42]] * 4 + [[50, 50, 50]]
    w_before = None
    for step, b in enumerate(batches):
        if step == len(batches) - 1:
            w_before = _weight(z).detach().clone()
            held_before = _slots(z)
        z(_kjt({"h": [b]}))
        with torch.no_grad():  # move every row off its initial value, as training would
            _weight(z).add_(1.0)
    ref = _distance_lfu_reference(rows, batches)
    m = _mch(z)
    got = {r: c for r, c in zip(m._mch_sorted_raw_ids.tolist(), m._mch_counts.tolist())
           if r != torch.iinfo(torch.int64).max}
    assert got == ref
    assert {1, 2, 3}.isdisjoint(got) and 50 in got
    # 50 took an evicted id's slot; its row was redrawn from the initial range before the lookup
    assert w_before is not None
    slot = _slots(z)[50]
    evicted = [i for i in held_before if i not in got]
    assert evicted and held_before[evicted[0]] == slot
    bound = 1.0 / rows ** 0.5
    fresh = _weight(z)[slot].detach() - 1.0  # the add_ after the last step
    assert bool((fresh.abs() <= bound).all()) and bool((w_before[slot] > bound).all())


def test_miss_slot_and_eval_admit_nothing() -> None:
    z = _zch(3, 100)
    z.eval()
    out = z(_kjt({"h": [[5, 6], [7]]}))["h"]
    assert _slots(z) == {}
    miss = _weight(z)[2].detach()
    torch.testing.assert_close(out, torch.stack([miss, miss]))


def test_interval_delays_admission() -> None:
    z = _zch(8, 100, interval=3)
    z.train()
    z(_kjt({"h": [[1, 2]]}))
    z(_kjt({"h": [[3]]}))
    assert _slots(z) == {}  # nothing admitted before the third call
    z(_kjt({"h": [[4]]}))
    assert set(_slots(z)) == {1, 2, 3, 4}


def test_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    z = _zch(6, 100, policy="distance_lfu")
    z.train()
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        z(_kjt({"h": [torch.randint(0, 20, (6,), generator=g).tolist()]}))
    sd = z.state_dict()
    keys = {k.rsplit(".", 1)[-1] for k in sd}
    assert {"_mch_sorted_raw_ids", "_mch_remapped_ids_mapping", "_mch_counts", "_mch_last_access_iter",
            "_current_iter_tensor", "weight"} <= keys
    z2 = _zch(6, 100, policy="distance_lfu")
    z2.load_state_dict(copy.deepcopy(sd))
    assert _slots(z2) == _slots(z)
    probe = _kjt({"h": [list(range(20)), [3, 19]]})
    z.eval()
    z2.eval()
    torch.testing.assert_close(z2(probe)["h"], z(probe)["h"])
    # training continues identically from the loaded state (iteration counter included)
    z.train()
    z2.train()
    for step in range(3):
        b = _kjt({"h": [torch.randint(0, 40, (6,), generator=g).tolist()]})
        torch.manual_seed(step)  # rows of admitted ids are redrawn from the global generator
        out2 = z2(b)["h"]
        torch.manual_seed(step)
        torch.testing.assert_close(out2, z(b)["h"])
    assert _slots(z2) == _slots(z)
    assert int(_mch(z2)._current_iter_tensor) == int(_mch(z)._current_iter_tensor) == 8


def test_learns_a_per_id_target() -> None:
    """Below the budget every id has its own row: a linear readout of the pooled row fits a
    per-id target; with 6 rows for 24 ids (18 share the miss slot) it cannot."""
    torch.manual_seed(0)
    n_ids, rows = 24, 32
    y = torch.randn(n_ids)
    ids = torch.arange(n_ids) * 37 % 1000  # spread over the id space

    def fit(z: torch.nn.Module) -> Tuple[float, float]:
        head = torch.nn.Linear(D, 1)
        opt = torch.optim.Adam(list(z.parameters()) + list(head.parameters()), lr=0.05)
        losses = []
        for _ in range(300):
            pred = head(z(_kjt({"h": [[int(i)] for i in ids]}))["h"]).squeeze(1)
            loss = ((pred - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        return losses[0], losses[-1]

    z = _zch(rows, 1000)
    z.train()
    first, last = fit(z)
    assert last < 0.02 * first
    small = _zch(7, 1000)  # 6 ids with rows of their own, 18 share the miss slot
    small.train()
    _, last_small = fit(small)
    assert last_small > 10 * last


def test_out_of_range_ids_are_refused() -> None:
    z = _zch(4, 100)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 100\)"):
        z(_kjt({"h": [[3, 100]]}))
    with pytest.raises(ValueError, match="num_embeddings must be >= 2"):
        _zch(1, 100)


# --------------------------------------------------------------------------------------------
# sharded: DMP on 2 gloo ranks (CPU)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sharded_row_wise_on_two_ranks() -> None:
    if not torch.distributed.is_gloo_available():
        pytest.skip("gloo backend unavailable")
    from factories import spawn_ranks

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import zch_sharding_worker  # noqa: E402

    results = spawn_ranks(zch_sharding_worker.worker, zch_sharding_worker.WORLD)
    # serving: the gathered sharded state, loaded unsharded, computes what the sharded model did
    # (ids not admitted read the miss slot of the shard that managed their block)
    (blob,) = [p for _, _, p in results if p is not None]
    payload = torch.load(io.BytesIO(blob))
    w = zch_sharding_worker
    z = ZCHEmbeddingBagCollection([EmbeddingBagConfig(name="t_h", embedding_dim=w.D, num_embeddings=w.ROWS,
                                                      feature_names=["h", "h_target"], pooling=PoolingType.MEAN)],
                                  input_hash_size=w.N)
    z.load_state_dict(payload["state"])
    z.eval()
    out = z(_kjt({"h": payload["bags"], "h_target": [[t] for t in payload["targets"]]})).to_dict()
    torch.testing.assert_close(out["h"], payload["h"])
    torch.testing.assert_close(out["h_target"], payload["h_target"])
    assert any(i not in _slots(z) and i < w.BLOCK for b in payload["bags"] for i in b)  # block-0 misses probed


# --------------------------------------------------------------------------------------------
# through the trainer (1 rank) and the serving rebuild


def _trainer_shards_managed_collision() -> bool:
    from torchrec_side.distributed import embedding_sharders, learned_tables

    z = _zch(4, 10)
    return "mc_ebc" in learned_tables(z) and any(
        type(s).__name__ == "ZCHEmbeddingBagCollectionSharder" for s in embedding_sharders())


@pytest.mark.timeout(300)
def test_trainer_trains_and_serves_the_zch_variant(tmp_path: Path) -> None:
    assert _trainer_shards_managed_collision(), "the trainer's sharders / learned_tables lost managed-collision modules"
    import pyarrow.parquet as pq
    import yaml

    from torchrec_side.data.adsworld import generate_world
    from torchrec_side.data.adsworld_config import load_world_config
    from torchrec_side.data.loader import make_dataloader
    from torchrec_side.serving.rebuild import load_run
    from torchrec_side.train.config import load_train_config
    from torchrec_side.train.trainer import run_training

    wdir = tmp_path / "world"
    generate_world(load_world_config("tiny"), wdir, progress=False)
    cfg = yaml.safe_load(Path(__file__).resolve().parents[2].joinpath(
        "configs/adsworld/dlrm_sparse_id_zch.yaml").read_text())
    cfg.update({"output_dir": str(tmp_path / "runs"), "examples_dir": str(tmp_path / "examples")})
    cfg["data"].update({"world_dir": str(wdir), "max_history": 30, "row_group_size": 256})
    cfg["model"]["history"][0]["options"]["num_rows"] = 64
    cfg["train"].update({"batch_size": 64, "eval_batch_size": 512, "epochs": 1, "max_steps": 12,
                         "checkpoint_every": 6, "num_workers": 0, "progress": False, "threads": 1})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    m = run_training(load_train_config(tmp_path / "job.yaml"))
    assert m["steps"] == 12 and m["sharding"]["tables"]["t_hist_item_id"] == "row_wise"
    (h,) = m["history"]
    assert h["kind"] == "sparse_id_zch" and h["table_rows"] == 64 and h["target_keys"] == ["hist_item_id_target"]
    assert m["learned_params"]["tables"]["t_hist_item_id"] == 64 * cfg["model"]["embedding_dim"]
    # the unsharded rebuild loads the remapper from the DCP checkpoint and scores as the run did
    run_dir = tmp_path / "runs" / "dlrm_sparse_id_zch" / "seed0"
    run = load_run(run_dir)
    run.model.eval()
    (mch,) = [x for x in run.model.modules() if type(x).__name__ == "MCHManagedCollisionModule"]
    assert int((mch._mch_sorted_raw_ids != torch.iinfo(torch.int64).max).sum()) == 63  # table full
    stored = torch.tensor(pq.read_table(run_dir / "predictions_test.parquet").column("score").to_pylist()[:64])
    batch = next(iter(make_dataloader(run.store, "test", run.inputs, batch_size=64, num_workers=0, shuffle=False)))
    _, logits = run.model(batch)
    torch.testing.assert_close(torch.sigmoid(logits), stored, rtol=1e-5, atol=1e-5)
