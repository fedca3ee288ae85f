"""Training examples (docs/design.md section 7): time split, histories, no leakage, Parquet store, loader."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from torchrec_side.data.loader import HistoryInput, make_dataloader
from torchrec_side.data.protocol import (
    assert_no_leakage,
    build_examples,
    ExamplesConfig,
    synthetic_ratings,
    time_split,
    training_interactions,
)
from torchrec_side.data.store import ExampleStore, prepare_store, StoreError, write_store
from torchrec_side.data.movielens import Ratings


def _ratings(u: List[int], i: List[int], r: List[float], t: List[int]) -> Ratings:
    return Ratings(user_id=torch.tensor(u, dtype=torch.int64), item_id=torch.tensor(i, dtype=torch.int64),
                   rating=torch.tensor(r, dtype=torch.float32), timestamp=torch.tensor(t, dtype=torch.int64))


# ---------------------------------------------------------------------------------------------
# time split


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=10, max_size=200), st.randoms(use_true_random=False))
def test_time_split_disjoint_ordered_and_order_free(ts: List[int], rnd) -> None:
    arr = np.array(ts)
    try:
        s = time_split(arr, 0.8, 0.1)
    except ValueError:
        return  # too many ties for three non-empty splits: refused, fine
    counts = s.counts()
    assert sum(counts.values()) == arr.size and min(counts.values()) > 0
    tr, va, te = arr[s.mask("train")], arr[s.mask("val")], arr[s.mask("test")]
    assert tr.max() < va.min() <= va.max() < te.min()  # strictly ordered: no time overlap
    assert tr.max() < s.t_val <= va.min() and va.max() < s.t_test <= te.min()
    assert counts["train"] <= int(0.8 * arr.size)  # ties go to the later split
    perm = list(range(arr.size))
    rnd.shuffle(perm)
    s2 = time_split(arr[perm], 0.8, 0.1)
    assert np.array_equal(s2.split, s.split[perm])  # depends on the timestamps only


def test_time_split_ties_go_later() -> None:
    s = time_split(np.array([1, 2, 3, 4, 5, 6, 6, 7, 8, 9]), 0.6, 0.2)  # nominal cut inside the 6s
    assert s.t_val == 6 and s.t_test == 8 and s.split.tolist() == [0] * 5 + [1, 1, 1, 2, 2]


# ---------------------------------------------------------------------------------------------
# examples vs a plain reference


def _reference(r: Ratings, cap) -> Dict[tuple, list]:
    """(user, item, ts) -> history of earlier-rated items, one event at a time (plain Python)."""
    ev = sorted(zip(r.timestamp.tolist(), r.user_id.tolist(), r.item_id.tolist()))
    out = {}
    for ts, u, i in ev:
        hist = [(t2, i2) for t2, u2, i2 in ev if u2 == u and t2 < ts]
        items = [i2 for _, i2 in sorted(hist)]
        out[(u, i, ts)] = items if cap is None else items[-cap:] if cap else []
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([None, 1, 3]))
def test_build_examples_matches_reference(seed: int, cap) -> None:
    g = np.random.default_rng(seed)
    n = int(g.integers(10, 60))
    r = _ratings(g.integers(0, 4, n).tolist(), g.integers(0, 9, n).tolist(),
                 g.integers(1, 6, n).astype(float).tolist(), g.integers(0, 12, n).tolist())
    try:
        ex = build_examples(r, max_history=cap)
    except ValueError:
        return
    ref = _reference(r, cap)
    assert len(ex) == n
    keys = list(zip(ex.timestamp.tolist(), ex.user_id.tolist(), ex.item_id.tolist()))
    assert keys == sorted(keys)  # global time order
    for k in range(n):
        got = ex.hist_item_id[ex.hist_offsets[k]: ex.hist_offsets[k + 1]].tolist()
        u, i, ts = int(ex.user_id[k]), int(ex.item_id[k]), int(ex.timestamp[k])
        assert got == ref[(u, i, ts)]
        prior = int(((r.user_id == u) & (r.timestamp < ts)).sum())
        assert int(ex.num_prior[k]) == prior
    order = np.lexsort((r.item_id.numpy(), r.user_id.numpy(), r.timestamp.numpy()))
    assert np.array_equal(ex.label, (r.rating.numpy()[order] >= 4).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# MovieLens-100K: split and leakage


@pytest.fixture(scope="module")
def ml():
    from torchrec_side.data import fetch
    from torchrec_side.data.movielens import load_movielens

    return load_movielens(fetch.ensure_recbole_wheel())


def test_ml100k_split_counts_and_no_leakage(ml) -> None:
    r = ml.ratings
    s = time_split(r.timestamp)
    assert s.counts() == {"train": 79999, "val": 10001, "test": 10000}
    tr = training_interactions(r)
    assert len(tr) == 79999 and int(tr.timestamp.max()) < s.t_val
    info = assert_no_leakage(r, tr.user_id, tr.item_id, tr.timestamp)
    assert info["heldout_only_items"] > 0 and info["heldout_only_users"] > 0  # the check has teeth
    # one validation event among the fitted ones is caught, with or without timestamps
    val = np.flatnonzero(s.mask("val"))
    leak_u = torch.cat([tr.user_id, r.user_id[val[:1]]])
    leak_i = torch.cat([tr.item_id, r.item_id[val[:1]]])
    with pytest.raises(AssertionError, match="validation timestamp"):
        assert_no_leakage(r, leak_u, leak_i, torch.cat([tr.timestamp, r.timestamp[val[:1]]]))
    heldout_item = np.setdiff1d(r.item_id.numpy()[~s.mask("train")], tr.item_id.numpy())[0]
    with pytest.raises(AssertionError, match="not training events"):
        assert_no_leakage(r, torch.cat([tr.user_id, torch.tensor([0])]),
                          torch.cat([tr.item_id, torch.tensor([int(heldout_item)])]))


def test_collaborative_embedding_fitted_on_training_interactions_only(ml) -> None:
    from torchrec_side.data.content import collaborative_embeddings

    r = ml.ratings
    tr = training_interactions(r)
    assert_no_leakage(r, tr.user_id, tr.item_id, tr.timestamp)
    emb = collaborative_embeddings(tr.user_id, tr.item_id, ml.num_users, ml.num_items, dim=8,
                                   method="randomized", num_power_iters=2)
    seen = torch.zeros(ml.num_items, dtype=torch.bool)
    seen[tr.item_id] = True
    # items only rated in validation/test carry no information: all-zero rows
    assert (~seen).sum() > 0 and emb[~seen].abs().sum() == 0 and (emb[seen].abs().sum(1) > 0).all()


def test_ml100k_store_histories_respect_time(ml, tmp_path: Path) -> None:
    store = prepare_store(ExamplesConfig(max_history=50), tmp_path)
    assert store.rows("train") == 79999 and store.rows("val") == 10001 and store.rows("test") == 10000
    tr = store.read("train", ["hist_item_id"])
    lens = np.asarray(tr.column("hist_len"))
    assert lens.max() == 50 and (lens <= np.asarray(tr.column("num_prior"))).all()
    # training examples' timestamps all precede validation's; the store is reused (written once)
    assert store.manifest["splits"]["train"]["t_max"] < store.manifest["t_val"] <= store.manifest["splits"]["val"]["t_min"]
    mtime = (store.path / "manifest.json").stat().st_mtime_ns
    assert prepare_store(ExamplesConfig(max_history=50), tmp_path).path == store.path
    assert (store.path / "manifest.json").stat().st_mtime_ns == mtime
    fitted = store.interactions("train")
    assert_no_leakage(ml.ratings, fitted["user_id"], fitted["item_id"], fitted["timestamp"])


# ---------------------------------------------------------------------------------------------
# store and loader (synthetic, fast)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ExampleStore:
    cfg = ExamplesConfig(dataset="synthetic", synthetic_users=40, synthetic_items=30, synthetic_events=3000,
                         max_history=12, row_group_size=256)
    return prepare_store(cfg, tmp_path_factory.mktemp("ex"))


def test_history_columns_footprint_and_idempotence(store: ExampleStore) -> None:
    g = np.random.default_rng(0)
    sid = g.integers(0, 2**62, size=(store.num_items, 1), dtype=np.int64)
    tok = g.integers(0, 1000, size=(store.num_items, 3), dtype=np.int64)
    raw = g.normal(size=(store.num_items, 8)).astype(np.float16)
    for name, tab in [("hist_sid", sid), ("hist_tok", tok), ("hist_raw", raw)]:
        info = store.add_history_column(name, tab)
        assert info.width == tab.shape[1] and info.dtype == tab.dtype.name
    s2 = ExampleStore(store.path)
    t = s2.read("val", ["hist_item_id", "hist_sid", "hist_tok", "hist_raw"])
    items = np.concatenate(t.column("hist_item_id").to_pylist())
    assert np.array_equal(np.concatenate(t.column("hist_sid").to_pylist()), sid[items, 0])
    assert np.array_equal(np.array([v for row in t.column("hist_tok").to_pylist() for v in row]), tok[items])
    assert np.array_equal(np.array([v for row in t.column("hist_raw").to_pylist() for v in row], dtype=np.float16),
                          raw[items])
    fp = s2.footprint("hist_raw")
    assert fp["value_bytes_per_event"] == 16 and fp["history_events"] == s2.history_events()
    assert fp["file_bytes"] > 0 and s2.footprint("hist_sid")["value_bytes_per_event"] == 8
    before = (s2.file("train", "hist_sid")).stat().st_mtime_ns
    s2.add_history_column("hist_sid", sid)  # same table: nothing rewritten
    assert s2.file("train", "hist_sid").stat().st_mtime_ns == before
    with pytest.raises(StoreError, match="another table"):
        s2.add_history_column("hist_sid", sid + 1)
    with pytest.raises(StoreError, match="num_items"):
        s2.add_history_column("hist_bad", sid[:-1])


def _rows(batches) -> List[tuple]:
    out = []
    for b in batches:
        kjt = b.sparse_features.to_dict()
        users, items = kjt["user_id"].values(), kjt["item_id"].values()
        hist = kjt["hist_item_id"]
        off = hist.offsets()
        for k in range(b.batch_size):
            if b.weights[k] > 0:
                out.append((int(users[k]), int(items[k]), tuple(hist.values()[off[k]: off[k + 1]].tolist())))
    return out


def test_eval_loader_covers_split_once_across_ranks(store: ExampleStore) -> None:
    t = store.read("test", ["hist_item_id"])
    want = sorted(zip(t.column("user_id").to_pylist(), t.column("item_id").to_pylist(),
                      map(tuple, t.column("hist_item_id").to_pylist())))
    got, steps = [], []
    for rank in range(3):
        dl = make_dataloader(store, "test", [HistoryInput("hist_item_id")], batch_size=64, rank=rank,
                             world_size=3, num_workers=0)
        bs = list(dl)
        steps.append(len(bs))
        assert all(b.batch_size == 64 for b in bs)  # padded: every rank, every step, same shape
        got += _rows(bs)
    assert len(set(steps)) == 1 and steps[0] == len(dl.dataset)
    assert sorted(got) == want


def test_train_loader_deterministic_resumable_and_worker_free(store: ExampleStore) -> None:
    store.add_history_column("hist_tok2", np.arange(store.num_items * 2).reshape(-1, 2) % 7)
    kw = dict(batch_size=32, rank=1, world_size=2, seed=5, shuffle_row_groups=2)
    inputs = [HistoryInput("hist_item_id"), HistoryInput("hist_tok2")]
    dl = make_dataloader(store, "train", inputs, num_workers=0, **kw)
    dl.dataset.set_epoch(1)
    full = list(dl)
    assert len(full) == store.rows("train") // 64
    b = full[0]
    assert b.sparse_features.keys() == ["user_id", "item_id", "hist_item_id", "hist_tok2_0", "hist_tok2_1"]
    assert b.dense_features.shape == (32, 2) and b.labels.shape == (32,)
    lens = b.sparse_features.length_per_key()
    assert lens[0] == lens[1] == 32 and lens[2] == lens[3] == lens[4]
    # same (seed, epoch): same batches, with a DataLoader worker too; another epoch: another order
    dl_w = make_dataloader(store, "train", inputs, num_workers=1, **kw)
    dl_w.dataset.set_epoch(1)
    assert _rows(dl_w) == _rows(full)
    dl.dataset.set_epoch(2)
    assert _rows(dl) != _rows(full)
    # resuming at batch k yields exactly the tail
    dl.dataset.set_epoch(1, start_batch=5)
    assert _rows(dl) == _rows(full[5:])
    # training rows are distinct examples of the split
    all_rows = []
    for rank in range(2):
        d = make_dataloader(store, "train", inputs, num_workers=0, **{**kw, "rank": rank})
        d.dataset.set_epoch(1)
        all_rows += _rows(d)
    assert len(all_rows) == 2 * 32 * len(full)


def test_loader_rejects_float_columns_and_trims_history(store: ExampleStore) -> None:
    store.add_history_column("hist_raw16", np.ones((store.num_items, 4), dtype=np.float16))
    with pytest.raises(StoreError, match="integer ids"):
        make_dataloader(store, "val", [HistoryInput("hist_raw16")])
    with pytest.raises(StoreError, match="not in the store"):
        make_dataloader(store, "val", [HistoryInput("hist_nope")])
    full = list(make_dataloader(store, "val", [HistoryInput("hist_item_id")], batch_size=50, num_workers=0))
    cut = list(make_dataloader(store, "val", [HistoryInput("hist_item_id")], batch_size=50, num_workers=0,
                               max_history=3))
    for a, b in zip(full, cut):
        ja, jb = a.sparse_features["hist_item_id"], b.sparse_features["hist_item_id"]
        for k in range(50):
            va = ja.values()[ja.offsets()[k]: ja.offsets()[k + 1]].tolist()
            vb = jb.values()[jb.offsets()[k]: jb.offsets()[k + 1]].tolist()
            assert vb == va[-3:]


def test_synthetic_ratings_have_signal() -> None:
    r = synthetic_ratings(50, 40, 4000, seed=1)
    assert len(r) == 4000 and 0.2 < float((r.rating >= 4).float().mean()) < 0.8
    assert torch.equal(r.user_id, synthetic_ratings(50, 40, 4000, seed=1).user_id)


def test_write_store_is_atomic(tmp_path: Path) -> None:
    ex = build_examples(synthetic_ratings(20, 10, 500), max_history=5)
    with pytest.raises(RuntimeError):
        class Boom(ExamplesConfig):
            def fingerprint(self) -> str:  # fails inside the atomic folder
                raise RuntimeError("boom")
        write_store(ex, tmp_path / "s", 20, 10, Boom(dataset="synthetic"))
    assert not (tmp_path / "s").exists() and not any(tmp_path.iterdir())
