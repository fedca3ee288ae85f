# pyre-strict
"""The evaluation protocol of docs/design.md section 7: examples config, global time split,
MovieLens examples, leakage checks, synthetic ratings.

**Protocol.** Every rating event is one example, in global time order:

* label ``1`` if ``rating >= label_threshold`` (4 stars), else ``0``;
* history = the items the same user rated **strictly earlier** (smaller timestamp), oldest first,
  the last ``max_history`` of them (``None``: all). Events of the same second are never each
  other's history (ML-100K users often rate many movies in the same second);
* global time split (:func:`time_split`): events sorted by ``(timestamp, user, item)``; the
  nominal cuts are at ``floor(train_fraction * R)`` and ``floor((train_fraction + val_fraction) *
  R)``; the cut timestamps are the timestamps found there and **a tie goes to the later split**:
  ``train = ts < t_val``, ``val = t_val <= ts < t_test``, ``test = ts >= t_test``. So the splits
  are disjoint and strictly ordered in time (``max train ts < min val ts``, likewise val/test).
  For ML-100K: 79,999 / 10,001 / 10,000 events.

Only training events may be used to fit anything from the data (the collaborative item embedding,
the tokenizer): :func:`training_interactions` returns them and :func:`assert_no_leakage` checks
that a set of fitted events holds nothing else.

Example::

    from torchrec_side.data.protocol import time_split, training_interactions

    s = time_split(ratings.timestamp)          # 79,999 / 10,001 / 10,000 events for ML-100K
    tr = training_interactions(ratings)        # what may be fitted
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from torchrec_side.data.movielens import Ratings

__all__ = [
    "SPLITS",
    "DENSE_FEATURES",
    "ID_FEATURES",
    "ExamplesConfig",
    "TimeSplit",
    "time_split",
    "Examples",
    "build_examples",
    "training_interactions",
    "assert_no_leakage",
    "synthetic_ratings",
]

#: Split names, in time order.
SPLITS: Tuple[str, ...] = ("train", "val", "test")
#: Columns of ``<split>/base.parquet``.
#: Dense features built by the loader: ``log1p(num_prior) / log1p(1000)`` and ``num_prior == 0``.
DENSE_FEATURES: Tuple[str, ...] = ("log_num_prior", "no_history")
#: The id features every batch carries (one value per example), in KJT key order.
ID_FEATURES: Tuple[str, ...] = ("user_id", "item_id")
#: The history column written with the store: the items of the history.

# --------------------------------------------------------------------------------------------
# Config and protocol


@dataclass
class ExamplesConfig:
    """What examples to build and how to store them.

    Args:
        dataset (str): ``"ml100k"`` (MovieLens-100K) or ``"synthetic"`` (:func:`synthetic_ratings`).
        root (Optional[str]): MovieLens source (see :func:`torchrec_side.data.load_movielens`).
        max_history (Optional[int]): keep the last ``max_history`` earlier events (``None``: all).
        train_fraction (float): nominal share of training events (0.8).
        val_fraction (float): nominal share of validation events (0.1); the rest is test.
        label_threshold (float): ``label = rating >= label_threshold``.
        max_events (int): use only the first ``max_events`` events in time order (0: all); for
            quick runs and tests. The split is taken within them.
        synthetic_users (int): synthetic data: number of users.
        synthetic_items (int): synthetic data: number of items.
        synthetic_events (int): synthetic data: number of rating events.
        synthetic_seed (int): synthetic data: generator seed.
        row_group_size (int): Parquet rows per row group (the loader's read unit).
        compression (str): Parquet codec (``"zstd"``, ``"snappy"``, ``"gzip"``, ``"none"``).

    Example::

        cfg = ExamplesConfig(dataset="ml100k", max_history=200)
    """

    dataset: str = "ml100k"
    root: Optional[str] = None
    max_history: Optional[int] = 200
    train_fraction: float = 0.8
    val_fraction: float = 0.1
    label_threshold: float = 4.0
    max_events: int = 0
    synthetic_users: int = 200
    synthetic_items: int = 300
    synthetic_events: int = 20000
    synthetic_seed: int = 0
    row_group_size: int = 8192
    compression: str = "zstd"

    def __post_init__(self) -> None:
        if self.dataset not in ("ml100k", "synthetic"):
            raise ValueError(f"data.dataset must be 'ml100k' or 'synthetic', got {self.dataset!r}")
        if self.max_history is not None and self.max_history < 1:
            raise ValueError(f"data.max_history must be >= 1 or null (all), got {self.max_history}")
        if not (0.0 < self.train_fraction < 1.0 and 0.0 < self.val_fraction < 1.0
                and self.train_fraction + self.val_fraction < 1.0):
            raise ValueError(
                f"data.train_fraction ({self.train_fraction}) and data.val_fraction "
                f"({self.val_fraction}) must be in (0, 1) with a sum below 1"
            )
        if self.max_events < 0 or self.row_group_size < 1:
            raise ValueError("data.max_events must be >= 0 and data.row_group_size >= 1")
        if min(self.synthetic_users, self.synthetic_items, self.synthetic_events) < 1:
            raise ValueError("data.synthetic_users/items/events must be >= 1")
        if self.compression.lower() not in ("zstd", "snappy", "gzip", "lz4", "brotli", "none"):
            raise ValueError(f"data.compression {self.compression!r} is not a Parquet codec")

    def fingerprint(self) -> str:
        """Short hash of everything that changes the written files (the source path excluded)."""
        d = dataclasses.asdict(self)
        if self.dataset != "synthetic":
            for k in [k for k in d if k.startswith("synthetic_")]:
                d.pop(k)
        d.pop("root")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def store_name(self) -> str:
        """Folder name of the store: dataset, history cap and fingerprint."""
        cap = "all" if self.max_history is None else str(self.max_history)
        return f"{self.dataset}-h{cap}-{self.fingerprint()}"


@dataclass(frozen=True)
class TimeSplit:
    """A global time split of ``R`` events.

    Args:
        split (npt.NDArray[np.int8]): ``[R]`` 0 train, 1 val, 2 test, aligned with the input events.
        t_val (int): first validation timestamp (``train = ts < t_val``).
        t_test (int): first test timestamp (``test = ts >= t_test``).

    Example::

        s = time_split(ratings.timestamp.numpy())
        s.counts()                 # {"train": 79999, "val": 10001, "test": 10000} for ML-100K
    """

    split: npt.NDArray[np.int8]
    t_val: int
    t_test: int

    def mask(self, name: str) -> npt.NDArray[np.bool_]:
        """``[R]`` bool mask of split ``name``."""
        return self.split == SPLITS.index(name)

    def counts(self) -> Dict[str, int]:
        return {s: int((self.split == k).sum()) for k, s in enumerate(SPLITS)}


def time_split(
    timestamps: Union[Tensor, npt.ArrayLike], train_fraction: float = 0.8, val_fraction: float = 0.1
) -> TimeSplit:
    """Global time split, strictly ordered in time (ties go to the later split).

    The nominal cuts are the events at positions ``floor(train_fraction * R)`` and
    ``floor((train_fraction + val_fraction) * R)`` in time order; their timestamps ``t_val`` and
    ``t_test`` define ``train = ts < t_val``, ``val = t_val <= ts < t_test``, ``test = ts >= t_test``.
    The result depends only on the multiset of timestamps, not on the input order.

    Args:
        timestamps: ``[R]`` integer event times.
        train_fraction (float): nominal training share.
        val_fraction (float): nominal validation share.

    Returns:
        TimeSplit: per-event split ids and the two cut timestamps.

    Raises:
        ValueError: bad fractions, or a split that would be empty (e.g. all events at one time).

    Example::

        s = time_split(np.array([5, 1, 2, 3, 4, 6, 7, 8, 9, 10]), 0.8, 0.1)
        s.split                    # [0, 0, 0, 0, 0, 0, 0, 0, 1, 2]
    """
    ts = np.asarray(timestamps.numpy() if isinstance(timestamps, Tensor) else timestamps).astype(np.int64)
    r = int(ts.size)
    if not (0.0 < train_fraction < 1.0 and 0.0 < val_fraction < 1.0 and train_fraction + val_fraction < 1.0):
        raise ValueError(f"bad split fractions train={train_fraction}, val={val_fraction}")
    if r < 3:
        raise ValueError(f"need at least 3 events to split, got {r}")
    s = np.sort(ts, kind="stable")
    a = int(math.floor(train_fraction * r))
    b = int(math.floor((train_fraction + val_fraction) * r))
    t_val, t_test = int(s[min(a, r - 1)]), int(s[min(b, r - 1)])
    split = np.zeros(r, dtype=np.int8)
    split[ts >= t_val] = 1
    split[ts >= t_test] = 2
    counts = np.bincount(split, minlength=3)
    if (counts == 0).any():
        raise ValueError(
            f"time split leaves an empty split (train/val/test = {counts.tolist()}): too many "
            f"events share the cut timestamps {t_val}, {t_test}"
        )
    return TimeSplit(split=split, t_val=t_val, t_test=t_test)


@dataclass(frozen=True)
class Examples:
    """All examples, in global time order (sorted by ``(timestamp, user_id, item_id)``).

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


def _as_np(x: Union[Tensor, npt.ArrayLike], dtype: Any) -> npt.NDArray[Any]:
    return np.asarray(x.numpy() if isinstance(x, Tensor) else x).astype(dtype, copy=False)


def build_examples(
    ratings: Ratings,
    max_history: Optional[int] = 200,
    train_fraction: float = 0.8,
    val_fraction: float = 0.1,
    label_threshold: float = 4.0,
) -> Examples:
    """Builds the examples of the protocol from rating events (vectorized, no per-event loop).

    Args:
        ratings (Ratings): ``R`` events, any order.
        max_history (Optional[int]): history cap (``None``: all earlier events).
        train_fraction (float): see :func:`time_split`.
        val_fraction (float): see :func:`time_split`.
        label_threshold (float): positive label threshold on the rating.

    Returns:
        Examples: sorted by ``(timestamp, user_id, item_id)``.

    Example::

        ex = build_examples(load_movielens().ratings, max_history=200)
        ex.hist_item_id[ex.hist_offsets[7]:ex.hist_offsets[8]]     # event 7's history
    """
    u = _as_np(ratings.user_id, np.int64)
    it = _as_np(ratings.item_id, np.int64)
    ts = _as_np(ratings.timestamp, np.int64)
    rating = _as_np(ratings.rating, np.float64)
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


def training_interactions(ratings: Ratings, train_fraction: float = 0.8, val_fraction: float = 0.1) -> Ratings:
    """The training events of the global time split: what the collaborative embedding and the
    tokenizer may be fitted on.

    Args:
        ratings (Ratings): all events.
        train_fraction (float): see :func:`time_split`.
        val_fraction (float): see :func:`time_split`.

    Returns:
        Ratings: the training events only, in the input's order.

    Example::

        tr = training_interactions(load_movielens().ratings)
        emb = collaborative_embeddings(tr.user_id, tr.item_id, 943, 1682)
    """
    mask = torch.from_numpy(time_split(ratings.timestamp, train_fraction, val_fraction).mask("train"))
    return Ratings(user_id=ratings.user_id[mask], item_id=ratings.item_id[mask],
                   rating=ratings.rating[mask], timestamp=ratings.timestamp[mask])


def _row_keys(*cols: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """One opaque, comparable key per row of the given int64 columns (no overflow)."""
    rows = np.ascontiguousarray(np.stack([c.astype(np.int64) for c in cols], axis=1))
    return rows.view(np.dtype((np.void, 8 * len(cols)))).ravel()


def assert_no_leakage(
    ratings: Ratings,
    fitted_user_id: Union[Tensor, npt.ArrayLike],
    fitted_item_id: Union[Tensor, npt.ArrayLike],
    fitted_timestamp: Optional[Union[Tensor, npt.ArrayLike]] = None,
    train_fraction: float = 0.8,
    val_fraction: float = 0.1,
) -> Dict[str, int]:
    """Checks that a set of events something was fitted on holds training events only.

    Every fitted ``(user, item[, timestamp])`` must be a training event of the split of
    ``ratings``. Without timestamps, a pair fails if the user rated that item only outside the
    training split. Also reports how many users/items occur only in validation/test and confirms
    none of them was fitted on.

    Args:
        ratings (Ratings): all events (the split is recomputed from them).
        fitted_user_id: ``[E]`` users of the fitted events.
        fitted_item_id: ``[E]`` items of the fitted events.
        fitted_timestamp: optional ``[E]`` their timestamps.
        train_fraction (float): see :func:`time_split`.
        val_fraction (float): see :func:`time_split`.

    Returns:
        Dict[str, int]: ``fitted_events``, ``train_events``, ``heldout_only_users``,
        ``heldout_only_items`` (users/items absent from training).

    Raises:
        AssertionError: naming how many fitted events are not training events, with an example.

    Example::

        tr = training_interactions(ratings)
        assert_no_leakage(ratings, tr.user_id, tr.item_id, tr.timestamp)
    """
    s = time_split(ratings.timestamp, train_fraction, val_fraction)
    train = s.mask("train")
    u = _as_np(ratings.user_id, np.int64)
    it = _as_np(ratings.item_id, np.int64)
    ts = _as_np(ratings.timestamp, np.int64)
    fu, fi = _as_np(fitted_user_id, np.int64), _as_np(fitted_item_id, np.int64)
    if fu.shape != fi.shape:
        raise ValueError(f"fitted users {fu.shape} and items {fi.shape} differ in shape")
    if fitted_timestamp is not None:
        ft = _as_np(fitted_timestamp, np.int64)
        if (ft >= s.t_val).any():
            k = int(np.argmax(ft >= s.t_val))
            raise AssertionError(
                f"{int((ft >= s.t_val).sum())} fitted events are at or after the first validation "
                f"timestamp {s.t_val}, e.g. user {fu[k]} item {fi[k]} at {ft[k]}"
            )
        train_keys = np.unique(_row_keys(u[train], it[train], ts[train]))
        fkeys = _row_keys(fu, fi, ft)
    else:
        train_keys = np.unique(_row_keys(u[train], it[train]))
        fkeys = _row_keys(fu, fi)
    bad = ~np.isin(fkeys, train_keys)
    if bad.any():
        k = int(np.argmax(bad))
        raise AssertionError(
            f"{int(bad.sum())} of {fkeys.size} fitted events are not training events of the time "
            f"split (t_val={s.t_val}), e.g. user {fu[k]} item {fi[k]}"
        )
    held_users = np.setdiff1d(np.unique(u[~train]), np.unique(u[train]))
    held_items = np.setdiff1d(np.unique(it[~train]), np.unique(it[train]))
    assert not np.isin(fu, held_users).any() and not np.isin(fi, held_items).any()
    return {"fitted_events": int(fu.size), "train_events": int(train.sum()),
            "heldout_only_users": int(held_users.size), "heldout_only_items": int(held_items.size)}


def synthetic_ratings(
    num_users: int = 200, num_items: int = 300, num_events: int = 20000, seed: int = 0, dim: int = 8
) -> Ratings:
    """Synthetic rating events with a learnable signal (for fast tests and demos).

    User ``u`` and item ``i`` have latent factors; a rating is positive (4-5 stars) with probability
    ``sigmoid(2 * <p_u, q_i> + b_i)``. Items are drawn with a popularity skew; timestamps are
    increasing integers with some ties. Deterministic for a given seed.

    Args:
        num_users (int): ``U``.
        num_items (int): ``I``.
        num_events (int): ``R``.
        seed (int): generator seed.
        dim (int): latent width.

    Returns:
        Ratings: ``R`` events sorted by time (dense 0-based ids).

    Example::

        r = synthetic_ratings(100, 50, 5000)
    """
    g = np.random.default_rng(seed)
    p = g.normal(size=(num_users, dim)) / math.sqrt(dim)
    q = g.normal(size=(num_items, dim)) / math.sqrt(dim)
    b = g.normal(scale=0.5, size=num_items)
    pop = g.zipf(1.6, size=num_items).astype(np.float64)
    u = g.integers(0, num_users, size=num_events)
    it = g.choice(num_items, size=num_events, p=pop / pop.sum())
    logit = 2.0 * np.einsum("ed,ed->e", p[u], q[it]) * math.sqrt(dim) + b[it]
    pos = g.random(num_events) < 1.0 / (1.0 + np.exp(-logit))
    rating = np.where(pos, g.integers(4, 6, size=num_events), g.integers(1, 4, size=num_events))
    ts = 1_000_000 + np.cumsum(g.integers(0, 3, size=num_events))
    return Ratings(user_id=torch.from_numpy(u.astype(np.int64)), item_id=torch.from_numpy(it.astype(np.int64)),
                   rating=torch.from_numpy(rating.astype(np.float32)), timestamp=torch.from_numpy(ts.astype(np.int64)))

