"""Training examples (docs/design.md section 7): time split, histories, no leakage, Parquet store, loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given, settings, strategies as st

from torchrec_side.data.events import synthetic_ratings
from torchrec_side.data.examples import ExamplesConfig
from torchrec_side.data.loader import HistoryInput, make_dataloader
from torchrec_side.data.movielens import Ratings
from torchrec_side.data.split import assert_no_leakage, time_split, training_interactions
from torchrec_side.data.store import prepare_store


def _ratings(u: List[int], i: List[int], r: List[float], t: List[int]) -> Ratings:
    return Ratings(user_id=torch.tensor(u, dtype=torch.int64), item_id=torch.tensor(i, dtype=torch.int64),
                   rating=torch.tensor(r, dtype=torch.float32), timestamp=torch.tensor(t, dtype=torch.int64))


# ---------------------------------------------------------------------------------------------
# the protocol materialized: every example with its history as arrays (what the store must yield)


@dataclass(frozen=True)
class Examples:
    """All examples, in global time order (sorted by ``(timestamp, user_id, item_id)``): the store's
    rows and histories, materialized without the event log.

    Args:
        user_id (npt.NDArray[np.int64]): ``[R]``.
        item_id (npt.NDArray[np.int64]): ``[R]`` target item.
        label (npt.NDArray[np.float32]): ``[R]`` 0/1.
        timestamp (npt.NDArray[np.int64]): ``[R]``.
        split (npt.NDArray[np.int8]): ``[R]`` 0 train, 1 val, 2 test.
        num_prior (npt.NDArray[np.int32]): ``[R]`` the user's events strictly before (uncapped).
        hist_offsets (npt.NDArray[np.int64]): ``[R + 1]`` offsets into ``hist_item_id``.
        hist_item_id (npt.NDArray[np.int64]): ``[sum hist_len]`` history items, oldest first.
        t_val (int): first validation timestamp.
        t_test (int): first test timestamp.
    """

    user_id: npt.NDArray[np.int64]
    item_id: npt.NDArray[np.int64]
    label: npt.NDArray[np.float32]
    timestamp: npt.NDArray[np.int64]
    split: npt.NDArray[np.int8]
    num_prior: npt.NDArray[np.int32]
    hist_offsets: npt.NDArray[np.int64]
    hist_item_id: npt.NDArray[np.int64]
    t_val: int
    t_test: int

    def __len__(self) -> int:
        return int(self.user_id.size)

    @property
    def hist_len(self) -> npt.NDArray[np.int32]:
        return np.diff(self.hist_offsets).astype(np.int32)

def build_examples(
    ratings: Ratings,
    max_history: Optional[int] = 200,
    train_fraction: float = 0.8,
    val_fraction: float = 0.1,
    label_threshold: float = 4.0,
) -> Examples:
    """The examples of the protocol from rating events (vectorized; checked against :func:`_reference`).

    Args:
        ratings (Ratings): ``R`` events, any order.
        max_history (Optional[int]): history cap (``None``: all earlier events).
        train_fraction (float): see :func:`time_split`.
        val_fraction (float): see :func:`time_split`.
        label_threshold (float): positive label threshold on the rating.

    Returns:
        Examples: sorted by ``(timestamp, user_id, item_id)``.
    """
    u = ratings.user_id.numpy().astype(np.int64)
    it = ratings.item_id.numpy().astype(np.int64)
    ts = ratings.timestamp.numpy().astype(np.int64)
    rating = ratings.rating.numpy().astype(np.float64)
    order = np.lexsort((it, u, ts))  # global time order, ties by user then item
    u, it, ts, rating = u[order], it[order], ts[order], rating[order]
    r = int(u.size)
    split = time_split(ts, train_fraction, val_fraction)

    # Per-user sequences: sort by (user, ts, item); position p's history is the user's events
    # with a smaller timestamp, i.e. [user_start, first index of (user, ts)) in this order.
    by_user = np.lexsort((it, ts, u))
    us, tu = u[by_user], ts[by_user]
    _, ts_rank = np.unique(tu, return_inverse=True)
    key = us * (int(ts_rank.max()) + 1 if r else 1) + ts_rank
    user_start = np.searchsorted(us, us, side="left")
    first_same = np.searchsorted(key, key, side="left")
    num_prior_u = first_same - user_start
    cap = num_prior_u if max_history is None else np.minimum(num_prior_u, max_history)
    start_u = first_same - cap
    # back to global time order
    pos = np.empty(r, dtype=np.int64)
    pos[by_user] = np.arange(r)
    lengths = cap[pos].astype(np.int64)
    starts = start_u[pos]
    offsets = np.zeros(r + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
    hist = it[by_user][idx]
    return Examples(
        user_id=u, item_id=it, label=(rating >= label_threshold).astype(np.float32), timestamp=ts,
        split=split.split, num_prior=num_prior_u[pos].astype(np.int32), hist_offsets=offsets,
        hist_item_id=hist, t_val=split.t_val, t_test=split.t_test,
    )


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


def test_ml100k_store_matches_the_materialized_protocol(ml, tmp_path: Path) -> None:
    """The event-log store yields the old materialized examples: same rows, order and histories."""
    store = prepare_store(ExamplesConfig(max_history=50), tmp_path)
    assert store.rows("train") == 79999 and store.rows("val") == 10001 and store.rows("test") == 10000
    assert store.log_events == 100_000  # each rating stored once, not once per later example
    ex = build_examples(ml.ratings, max_history=50)  # the plain materialized reference
    for k, split in enumerate(("train", "val", "test")):
        idx = np.flatnonzero(ex.split == k)
        t = store.read(split, ["hist_item_id"])
        for c in ("user_id", "item_id", "timestamp", "label", "num_prior"):
            assert np.array_equal(t.column(c).to_numpy(), getattr(ex, c)[idx]), c
        lo, hi = ex.hist_offsets[idx], ex.hist_offsets[idx + 1]
        assert np.array_equal(t.column("hist_len").to_numpy(), hi - lo)
        want = np.concatenate([ex.hist_item_id[a:b] for a, b in zip(lo, hi)])
        hist = t.column("hist_item_id").combine_chunks()
        assert np.array_equal(hist.values.to_numpy(), want)
        assert np.array_equal(np.diff(hist.offsets.to_numpy()), hi - lo)
    lens = store.examples("train")["hist_len"]
    assert lens.max() == 50
    # training examples' timestamps all precede validation's; the store is reused (written once)
    assert store.manifest["splits"]["train"]["t_max"] < store.manifest["t_val"] <= store.manifest["splits"]["val"]["t_min"]
    mtime = (store.path / "manifest.json").stat().st_mtime_ns
    assert prepare_store(ExamplesConfig(max_history=50), tmp_path).path == store.path
    assert (store.path / "manifest.json").stat().st_mtime_ns == mtime
    fitted = store.interactions("train")
    assert_no_leakage(ml.ratings, fitted["user_id"], fitted["item_id"], fitted["timestamp"])
    # the loader's batches are the same windows (no history event at or after the impression)
    dl = make_dataloader(store, "test", [HistoryInput("hist_item_id")], batch_size=1000, num_workers=0)
    b = next(iter(dl))
    idx = np.flatnonzero(ex.split == 2)[:1000]
    want = np.concatenate([ex.hist_item_id[ex.hist_offsets[i]:ex.hist_offsets[i + 1]] for i in idx])
    assert np.array_equal(b.sparse_features["hist_item_id"].values().numpy(), want)
    log_ts = store.log_values("timestamp")
    te = store.examples("test")
    lengths, rows = store.windows(te["user_id"], te["num_prior"], None)
    assert (log_ts[rows] < np.repeat(te["timestamp"], lengths)).all()
    # cold items: test targets never seen in training have item_train_freq 0
    seen = np.unique(store.examples("train")["item_id"])
    assert np.array_equal(te["item_train_freq"] == 0, ~np.isin(te["item_id"], seen))


# ---------------------------------------------------------------------------------------------
# synthetic ratings (store and loader tests: tests/data/test_data_store.py, test_data_loader.py)


def test_synthetic_ratings_have_signal() -> None:
    r = synthetic_ratings(50, 40, 4000, seed=1)
    assert len(r) == 4000 and 0.2 < float((r.rating >= 4).float().mean()) < 0.8
    assert torch.equal(r.user_id, synthetic_ratings(50, 40, 4000, seed=1).user_id)
