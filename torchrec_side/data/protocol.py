# pyre-strict
"""The evaluation protocol of docs/design.md section 7 (and 7c): examples config, global time
split, MovieLens examples, leakage checks, synthetic ratings, and the two event sources a store is
built from (rating events, or a simulated ads-world folder).

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

**Sources** (:class:`EventSource`). A store is built from *events* (the users' logs, what
histories are made of) and *impressions* (the examples). For ratings (:func:`ratings_source`)
both are the same rating events and the split is :func:`time_split`'s. For a simulated-world
folder (:func:`world_source`, docs/design.md section 7c) they are the folder's
``events.parquet`` and ``impressions.parquet``, with the generator's split, ``p_true`` and the
ceilings it stores (:data:`REFERENCE_COLUMNS`, carried as written). In both
an impression's history is the user's events with a timestamp **strictly before** the
impression's.

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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from torchrec_side.data.movielens import Ratings
from torchrec_side.errors import TorchRecSideError
from torchrec_side.io import ArtifactError

__all__ = [
    "SPLITS",
    "REFERENCE_COLUMNS",
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
    "DATASETS",
    "STORE_FORMAT_VERSION",
    "SourceError",
    "EventSource",
    "ratings_source",
    "world_source",
    "load_source",
]

#: Split names, in time order.
SPLITS: Tuple[str, ...] = ("train", "val", "test")
#: Per-impression reference probabilities a simulated world may store (docs/design.md section 7c),
#: carried as written from ``impressions.parquet`` to the store's ``base.parquet`` and every run's
#: ``predictions_test.parquet``, where the report scores them as pseudo-variants: ``p_true`` the
#: oracle, ``p_content`` the content ceiling, ``p_id`` the id ceiling, ``p_content_item`` the
#: content ceiling plus each item's Bayes posterior quality (NaN on training rows). A world written
#: before a column existed simply lacks it.
REFERENCE_COLUMNS: Tuple[str, ...] = ("p_true", "p_content", "p_id", "p_content_item")
#: Dense features built by the loader: ``log1p(num_prior) / log1p(1000)`` and ``num_prior == 0``.
DENSE_FEATURES: Tuple[str, ...] = ("log_num_prior", "no_history")
#: The id features every batch carries (one value per example), in KJT key order.
ID_FEATURES: Tuple[str, ...] = ("user_id", "item_id")
#: Version of the store layout (:mod:`torchrec_side.data.store`); part of every fingerprint.
STORE_FORMAT_VERSION: int = 2
#: Datasets :class:`ExamplesConfig` knows.
DATASETS: Tuple[str, ...] = ("ml100k", "synthetic", "adsworld")

# --------------------------------------------------------------------------------------------
# Config and protocol


@dataclass
class ExamplesConfig:
    """What examples to build and how to store them.

    Args:
        dataset (str): ``"ml100k"`` (MovieLens-100K), ``"synthetic"`` (:func:`synthetic_ratings`) or
            ``"adsworld"`` (a simulated-world folder, ``world_dir``).
        root (Optional[str]): MovieLens source (see :func:`torchrec_side.data.load_movielens`).
        world_dir (Optional[str]): ``adsworld``: the world folder (``manifest.json``, ``events.parquet``,
            ``impressions.parquet``). Its split, labels and ``p_true`` are used as written, so
            ``train_fraction``, ``val_fraction``, ``label_threshold`` and ``max_events`` do not apply.
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
        cfg = ExamplesConfig(dataset="adsworld", world_dir="runs/world/quick", max_history=None)
    """

    dataset: str = "ml100k"
    root: Optional[str] = None
    world_dir: Optional[str] = None
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
        if self.dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {list(DATASETS)}, got {self.dataset!r}")
        if self.dataset == "adsworld" and not self.world_dir:
            raise ValueError("data.world_dir must name the simulated-world folder when data.dataset is 'adsworld'")
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
        """Short hash of everything that changes the written files (the source paths excluded;
        for ``adsworld`` the world's ``manifest.json`` content is included instead, so a
        regenerated world gets a new store). Includes the store format version."""
        d: Dict[str, Any] = dataclasses.asdict(self)
        if self.dataset != "synthetic":
            for k in [k for k in d if k.startswith("synthetic_")]:
                d.pop(k)
        d.pop("root")
        d.pop("world_dir")
        if self.dataset == "adsworld":
            for k in ("train_fraction", "val_fraction", "label_threshold", "max_events"):
                d.pop(k)
            mf = Path(str(self.world_dir)) / "manifest.json"
            d["world"] = hashlib.sha256(mf.read_bytes()).hexdigest() if mf.is_file() else "missing"
        d["store_format"] = STORE_FORMAT_VERSION
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



# --------------------------------------------------------------------------------------------
# Event sources: what a store is built from


def _lex_order(a: npt.NDArray[Any], b: npt.NDArray[Any], c: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """The order sorting rows by ``(a, b, c)`` (integer keys), as ``np.lexsort((c, b, a))``.

    Fast paths (same result): one ``argsort`` of a packed int64 key when the key ranges fit in
    63 bits; a stable ``argsort`` of ``(group, c)`` keys when the rows are already sorted by
    ``(a, b)`` (timsort then runs in about linear time on the nearly sorted keys).
    """
    n = int(a.size)
    if n < 2:
        return np.arange(n, dtype=np.int64)
    a, b, c = (np.asarray(x).astype(np.int64, copy=False) for x in (a, b, c))
    spans = [int(x.max()) - int(x.min()) + 1 for x in (a, b, c)]
    if spans[0] * spans[1] * spans[2] < 2**62:
        key = ((a - a.min()).astype(np.int64) * spans[1] + (b - b.min())) * spans[2] + (c - c.min())
        return np.argsort(key, kind="stable").astype(np.int64, copy=False)
    da, db = np.diff(a), np.diff(b)
    new_group = (da != 0) | (db != 0)
    if bool(((da > 0) | ((da == 0) & (db >= 0))).all()):
        group = np.concatenate([[0], np.cumsum(new_group, dtype=np.int64)])
        if (int(group[-1]) + 1) * spans[2] < 2**62:
            return np.argsort(group * spans[2] + (c - c.min()), kind="stable").astype(np.int64, copy=False)
    return np.lexsort((c, b, a)).astype(np.int64, copy=False)


class SourceError(TorchRecSideError, ValueError):
    """A source of events (a simulated-world folder) is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class EventSource:
    """Users' event logs and the impressions (examples) to build a store from.

    Events are what histories are made of; impressions are the examples. An impression's history is
    its user's events with a timestamp strictly before the impression's (:meth:`hist_end`).

    Args:
        num_users (int): ``U``, users of the id space.
        num_items (int): ``I``, items of the id space.
        event_user (npt.NDArray[np.int64]): ``[E]``, sorted by ``(user, timestamp, item)``.
        event_item (npt.NDArray[np.int64]): ``[E]``.
        event_timestamp (npt.NDArray[np.int64]): ``[E]``.
        user_id (npt.NDArray[np.int64]): ``[R]`` impressions, in store order (sorted by
            ``(timestamp, user, item)``).
        item_id (npt.NDArray[np.int64]): ``[R]`` target items.
        timestamp (npt.NDArray[np.int64]): ``[R]``.
        label (npt.NDArray[np.float32]): ``[R]`` 0/1.
        split (npt.NDArray[np.int8]): ``[R]`` 0 train, 1 val, 2 test.
        t_val (int): first validation timestamp.
        t_test (int): first test timestamp.
        p_true (Optional[npt.NDArray[np.float32]]): ``[R]`` true click probability (simulated data).
        ceilings (Dict[str, npt.NDArray[np.float32]]): ``{column: [R]}`` the other
            :data:`REFERENCE_COLUMNS` the world stores (``p_content``, ``p_id``, ``p_content_item``).
        events_are_impressions (bool): the events and the impressions are the same events (ratings):
            the training frequency of an item then counts each training event once.
        info (Dict[str, Any]): provenance.

    Example::

        src = ratings_source(load_movielens().ratings, 943, 1682)
        src.hist_end()[:5]                 # events of each impression's user strictly before it
    """

    num_users: int
    num_items: int
    event_user: npt.NDArray[np.int64]
    event_item: npt.NDArray[np.int64]
    event_timestamp: npt.NDArray[np.int64]
    user_id: npt.NDArray[np.int64]
    item_id: npt.NDArray[np.int64]
    timestamp: npt.NDArray[np.int64]
    label: npt.NDArray[np.float32]
    split: npt.NDArray[np.int8]
    t_val: int
    t_test: int
    p_true: Optional[npt.NDArray[np.float32]] = None
    events_are_impressions: bool = False
    info: Dict[str, Any] = dataclasses.field(default_factory=dict)
    ceilings: Dict[str, npt.NDArray[np.float32]] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.user_id.size)

    def references(self) -> Dict[str, npt.NDArray[np.float32]]:
        """``{column: [R]}`` every reference column present (``p_true`` and the ceilings), in
        :data:`REFERENCE_COLUMNS` order."""
        have = dict(self.ceilings)
        if self.p_true is not None:
            have["p_true"] = self.p_true
        return {c: have[c] for c in REFERENCE_COLUMNS if c in have}

    @property
    def num_events(self) -> int:
        return int(self.event_user.size)

    def user_offsets(self) -> npt.NDArray[np.int64]:
        """``[U + 1]`` offsets of each user's log in the event arrays."""
        counts = np.bincount(self.event_user, minlength=self.num_users).astype(np.int64)
        out = np.zeros(self.num_users + 1, dtype=np.int64)
        np.cumsum(counts, out=out[1:])
        return out

    def hist_end(self) -> npt.NDArray[np.int64]:
        """``[R]``: per impression, the number of its user's events with a smaller timestamp (the end
        of its history window in the user's log). Vectorized: events and impressions are merged in
        one ``lexsort`` by ``(user, timestamp, impressions first)``; an impression's window end is
        the running count of events before it, minus its user's log offset."""
        e = self.num_events
        user = np.concatenate([self.event_user, self.user_id])
        ts = np.concatenate([self.event_timestamp, self.timestamp])
        kind = np.concatenate([np.ones(e, dtype=np.int8), np.zeros(len(self), dtype=np.int8)])
        order = _lex_order(user, ts, kind)  # at equal (user, ts) impressions sort before events
        before = np.cumsum(kind[order], dtype=np.int64)  # events at or before each merged position
        pos = np.empty(order.size, dtype=np.int64)
        pos[order] = np.arange(order.size, dtype=np.int64)
        return before[pos[e:]] - self.user_offsets()[self.user_id]

    def item_train_freq(self) -> npt.NDArray[np.int64]:
        """``[R]``: the target item's count in the training split (training impressions, plus the
        training-time events when they are not the impressions themselves); 0 = cold."""
        counts = np.bincount(self.item_id[self.split == 0], minlength=self.num_items).astype(np.int64)
        if not self.events_are_impressions:
            counts += np.bincount(self.event_item[self.event_timestamp < self.t_val],
                                  minlength=self.num_items).astype(np.int64)
        return counts[self.item_id]


def ratings_source(
    ratings: Ratings,
    num_users: int,
    num_items: int,
    train_fraction: float = 0.8,
    val_fraction: float = 0.1,
    label_threshold: float = 4.0,
    info: Optional[Dict[str, Any]] = None,
) -> EventSource:
    """The protocol on rating events: events = impressions = the ratings, split by :func:`time_split`.

    Args:
        ratings (Ratings): ``R`` events, any order.
        num_users (int): users of the id space.
        num_items (int): items of the id space.
        train_fraction (float): see :func:`time_split`.
        val_fraction (float): see :func:`time_split`.
        label_threshold (float): ``label = rating >= label_threshold``.
        info (Optional[Dict[str, Any]]): provenance.

    Returns:
        EventSource: impressions in global time order (as :func:`build_examples`).

    Example::

        src = ratings_source(synthetic_ratings(100, 50, 5000), 100, 50)
    """
    u = _as_np(ratings.user_id, np.int64)
    it = _as_np(ratings.item_id, np.int64)
    ts = _as_np(ratings.timestamp, np.int64)
    rating = _as_np(ratings.rating, np.float64)
    if u.size and (u.min() < 0 or u.max() >= num_users or it.min() < 0 or it.max() >= num_items):
        raise SourceError(f"rating ids outside [0, {num_users}) x [0, {num_items})")
    order = _lex_order(ts, u, it)
    split = time_split(ts[order], train_fraction, val_fraction)
    by_user = _lex_order(u, ts, it)
    return EventSource(
        num_users=int(num_users), num_items=int(num_items),
        event_user=u[by_user], event_item=it[by_user], event_timestamp=ts[by_user],
        user_id=u[order], item_id=it[order], timestamp=ts[order],
        label=(rating[order] >= label_threshold).astype(np.float32), split=split.split,
        t_val=split.t_val, t_test=split.t_test, p_true=None, events_are_impressions=True,
        info=dict(info or {}),
    )


def _read_parquet_columns(path: Path, want: Dict[str, Any]) -> Dict[str, npt.NDArray[Any]]:
    return _table_columns(_read_world_table(path), path, want)


def _read_world_table(path: Path) -> Any:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise SourceError(f"missing world file {path}")
    try:
        return pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise SourceError(f"unreadable world file {path}: {e}") from e


def _table_columns(t: Any, path: Path, want: Dict[str, Any]) -> Dict[str, npt.NDArray[Any]]:
    """``want``'s columns of a world table read from ``path``, checked (present, no nulls, integer
    where an integer dtype is asked for) and cast."""
    out: Dict[str, npt.NDArray[Any]] = {}
    for name, dtype in want.items():
        if name not in t.column_names:
            raise SourceError(f"{path}: missing column {name!r} (has {t.column_names})")
        col = t.column(name)
        if col.null_count:
            raise SourceError(f"{path}: column {name!r} has {col.null_count} nulls")
        x = col.to_numpy()
        if np.issubdtype(np.dtype(dtype), np.integer) and not np.issubdtype(x.dtype, np.integer):
            raise SourceError(f"{path}: column {name!r} must be integer, got {x.dtype}")
        out[name] = x.astype(dtype, copy=False)
    return out


def world_source(world_dir: Union[str, "os.PathLike[str]"]) -> EventSource:
    """Reads a simulated-world folder (docs/design.md section 7c) as an :class:`EventSource`.

    The folder holds ``manifest.json`` (``format == "torchrec-side-adsworld"``, ``version == 1``,
    ``num_items``, ``num_users``, ``split_times``), ``events.parquet`` (``user_id``, ``item_id``,
    ``timestamp``: the users' logs) and ``impressions.parquet`` (``user_id``, ``item_id``,
    ``timestamp``, ``label``, ``p_true``, ``split``, and the ceilings :data:`REFERENCE_COLUMNS` when the
    world stores them). The split and the reference columns are used as written;
    the split is checked against ``split_times`` (``train < t_val <= val < t_test <= test``).

    Args:
        world_dir: the world folder.

    Returns:
        EventSource: events sorted by ``(user, timestamp, item)``, impressions by
        ``(timestamp, user, item)``.

    Raises:
        SourceError: a missing file or column, ids out of range, a split that contradicts
            ``split_times``, or labels outside {0, 1}; naming the file and field.

    Example::

        src = world_source("runs/world/quick")
        src.p_true is not None             # True: the oracle's click probabilities
    """
    from torchrec_side.data.adsworld import read_manifest

    root = Path(world_dir)
    mf = root / "manifest.json"
    try:
        m = read_manifest(root)
    except ArtifactError as e:
        raise SourceError(str(e)) from e
    try:
        nu, ni = int(m["num_users"]), int(m["num_items"])
        t_val, t_test = int(m["split_times"]["val"]), int(m["split_times"]["test"])
    except (KeyError, TypeError, ValueError) as e:
        raise SourceError(f"{mf}: missing or bad field {e} (num_users, num_items, split_times.val/test)") from e
    ev = _read_parquet_columns(root / "events.parquet",
                               {"user_id": np.int64, "item_id": np.int64, "timestamp": np.int64})
    im_table = _read_world_table(root / "impressions.parquet")  # read once: the reference columns come from it too
    im = _table_columns(im_table, root / "impressions.parquet",
                        {"user_id": np.int64, "item_id": np.int64, "timestamp": np.int64,
                         "label": np.float32, "split": np.int8})
    for name, d in (("events.parquet", ev), ("impressions.parquet", im)):
        for col, n in (("user_id", nu), ("item_id", ni)):
            x = d[col]
            if x.size and (x.min() < 0 or x.max() >= n):
                bad = x[(x < 0) | (x >= n)][0]
                raise SourceError(f"{root / name}: {col} {int(bad)} outside [0, {n}) (manifest num_{col[:-3]}s)")
    if not np.isin(im["label"], (0.0, 1.0)).all():
        raise SourceError(f"{root / 'impressions.parquet'}: label must be 0 or 1")
    sp, ts = im["split"], im["timestamp"]
    want = np.where(ts < t_val, 0, np.where(ts < t_test, 1, 2)).astype(np.int8)
    if not np.array_equal(sp, want):
        k = int(np.argmax(sp != want))
        raise SourceError(f"{root / 'impressions.parquet'}: split {int(sp[k])} of the impression at timestamp "
                          f"{int(ts[k])} contradicts split_times val={t_val}, test={t_test}")
    if (np.bincount(sp, minlength=3) == 0).any():
        raise SourceError(f"{root / 'impressions.parquet'}: a split has no impressions "
                          f"(train/val/test = {np.bincount(sp, minlength=3).tolist()})")
    present = [c for c in REFERENCE_COLUMNS if c in im_table.column_names]
    refs = _table_columns(im_table, root / "impressions.parquet", {c: np.float32 for c in present}) if present else {}
    order = _lex_order(ts, im["user_id"], im["item_id"])
    p_true = refs.pop("p_true", None)
    by_user = _lex_order(ev["user_id"], ev["timestamp"], ev["item_id"])
    return EventSource(
        num_users=nu, num_items=ni,
        event_user=ev["user_id"][by_user], event_item=ev["item_id"][by_user], event_timestamp=ev["timestamp"][by_user],
        user_id=im["user_id"][order], item_id=im["item_id"][order], timestamp=ts[order],
        label=im["label"][order], split=sp[order], t_val=t_val, t_test=t_test,
        p_true=None if p_true is None else p_true[order], events_are_impressions=False,
        info={"source": str(root), "world_config": m.get("config", {}), "oracle": m.get("oracle", {})},
        ceilings={c: x[order] for c, x in refs.items()},
    )


def load_source(cfg: ExamplesConfig) -> EventSource:
    """The :class:`EventSource` of a config (MovieLens, synthetic ratings or a simulated world).

    Args:
        cfg (ExamplesConfig): what to build; ``max_events`` keeps the first events in time order
            (ratings only).

    Returns:
        EventSource: events and impressions.

    Example::

        src = load_source(ExamplesConfig(dataset="synthetic"))
    """
    if cfg.dataset == "adsworld":
        return world_source(str(cfg.world_dir))
    if cfg.dataset == "synthetic":
        ratings = synthetic_ratings(cfg.synthetic_users, cfg.synthetic_items, cfg.synthetic_events, cfg.synthetic_seed)
        nu, ni, info = cfg.synthetic_users, cfg.synthetic_items, {"source": "synthetic"}
    else:
        from torchrec_side.data.movielens import load_movielens

        ml = load_movielens(cfg.root)
        ratings, nu, ni, info = ml.ratings, ml.num_users, ml.num_items, {"source": ml.source}
    if cfg.max_events:
        order = torch.from_numpy(np.lexsort((ratings.item_id.numpy(), ratings.user_id.numpy(),
                                             ratings.timestamp.numpy()))[: cfg.max_events])
        ratings = Ratings(user_id=ratings.user_id[order], item_id=ratings.item_id[order],
                          rating=ratings.rating[order], timestamp=ratings.timestamp[order])
    return ratings_source(ratings, nu, ni, cfg.train_fraction, cfg.val_fraction, cfg.label_threshold, info)
