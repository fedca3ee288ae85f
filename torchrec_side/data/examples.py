# pyre-strict
"""Ranking examples of the evaluation protocol (DESIGN section 7), stored once as Parquet.

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

**Storage** (:class:`ExampleStore`). Examples are written once, per split, as a feature store would
keep them: a base file with one row per example and one file per *history feature column*, all
with the same rows in the same row groups::

    <store>/manifest.json                 config, fingerprints, counts, split boundaries, columns
    <store>/<split>/base.parquet          user_id int64, item_id int64 (target), label float32,
                                          timestamp int64, num_prior int32, hist_len int32
    <store>/<split>/<column>.parquet      one list column: the per-event history values

The item-id history ``hist_item_id`` (``list<int64>``) is written with the store. Any other history
representation is derived from it with :meth:`ExampleStore.add_history_column`: given an item ->
value table ``[num_items, W]`` of any numeric dtype (packed SIDs: ``[I, 1]`` int64; prefix-ngram
token ids: ``[I, L]`` int64; raw content: ``[I, 384]`` float16) it writes the list column of
per-event values (``list<T>`` for ``W == 1``, ``list<fixed_size_list<T, W>>`` else).
:meth:`ExampleStore.footprint` measures bytes per history event on those real files.

**Loading** (:class:`ExampleDataset`, :func:`make_dataloader`). Batches come out as
:class:`ExampleBatch`: a ``KeyedJaggedTensor`` (``user_id``, ``item_id``, the history keys), a
dense tensor and labels, built from the Parquet list columns' offsets and flat values (no Python
loop per event), in a DataLoader worker. Every rank sees the same global batch sequence and takes
its own slice, so all ranks run the same number of steps (which sharded modules require).

Example::

    from torchrec_side.data.examples import ExamplesConfig, prepare_store, make_dataloader, HistoryInput

    store = prepare_store(ExamplesConfig(dataset="ml100k", max_history=200), "runs/examples")
    store.add_history_column("hist_sid", item_sid[:, None])          # [1682, 1] int64
    store.footprint("hist_sid")["file_bytes_per_event"]
    loader = make_dataloader(store, "train", [HistoryInput("hist_sid")], batch_size=256)
    batch = next(iter(loader))
    batch.sparse_features.keys()          # ['user_id', 'item_id', 'hist_sid']
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable

from torchrec_side.data.movielens import Ratings
from torchrec_side.io import atomic_path, write_json

__all__ = [
    "SPLITS",
    "BASE_COLUMNS",
    "DENSE_FEATURES",
    "ID_FEATURES",
    "ITEM_HISTORY_COLUMN",
    "ExamplesConfig",
    "TimeSplit",
    "time_split",
    "Examples",
    "build_examples",
    "training_interactions",
    "assert_no_leakage",
    "synthetic_ratings",
    "StoreError",
    "ColumnInfo",
    "ExampleStore",
    "write_store",
    "prepare_store",
    "HistoryInput",
    "ExampleBatch",
    "ExampleDataset",
    "make_dataloader",
]

logger: logging.Logger = logging.getLogger(__name__)

#: Split names, in time order.
SPLITS: Tuple[str, ...] = ("train", "val", "test")
#: Columns of ``<split>/base.parquet``.
BASE_COLUMNS: Tuple[str, ...] = ("user_id", "item_id", "label", "timestamp", "num_prior", "hist_len")
#: Dense features built by the loader: ``log1p(num_prior) / log1p(1000)`` and ``num_prior == 0``.
DENSE_FEATURES: Tuple[str, ...] = ("log_num_prior", "no_history")
#: The id features every batch carries (one value per example), in KJT key order.
ID_FEATURES: Tuple[str, ...] = ("user_id", "item_id")
#: The history column written with the store: the items of the history.
ITEM_HISTORY_COLUMN: str = "hist_item_id"

_FORMAT_VERSION: int = 1
_MANIFEST: str = "manifest.json"


class StoreError(ValueError):
    """An example store or column is missing, incomplete, or does not match what is asked."""


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


# --------------------------------------------------------------------------------------------
# Parquet store


@dataclass(frozen=True)
class ColumnInfo:
    """A history feature column of a store.

    Args:
        name (str): column (and file) name, e.g. ``"hist_item_id"``, ``"hist_sid"``.
        dtype (str): numpy dtype name of the values (``"int64"``, ``"float16"``, ...).
        width (int): ``W``, values per history event.
        fingerprint (str): hash of the item -> value table it was written from.
        note (str): free text (what the values are).
    """

    name: str
    dtype: str
    width: int
    fingerprint: str
    note: str = ""

    @property
    def is_integer(self) -> bool:
        return np.issubdtype(np.dtype(self.dtype), np.integer)


def _pa() -> Any:
    import pyarrow as pa

    return pa


def _pq() -> Any:
    import pyarrow.parquet as pq

    return pq


def _compression(name: str) -> Optional[str]:
    return None if name.lower() == "none" else name.lower()


def _table_fingerprint(table: npt.NDArray[Any]) -> str:
    h = hashlib.sha256()
    h.update(str((table.shape, table.dtype.str)).encode())
    h.update(np.ascontiguousarray(table).tobytes())
    return h.hexdigest()[:16]


def _list_array(offsets: npt.NDArray[np.int64], values: npt.NDArray[Any], width: int) -> Any:
    """Arrow ``list<T>`` (``width == 1``) or ``list<fixed_size_list<T, width>>`` array."""
    pa = _pa()
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    if width > 1:
        flat = pa.FixedSizeListArray.from_arrays(flat, width)
    return pa.LargeListArray.from_arrays(pa.array(offsets, type=pa.int64()), flat)


def _write_parquet(path: Path, table: Any, row_group_size: int, compression: str) -> None:
    with atomic_path(path) as tmp:
        _pq().write_table(table, tmp, row_group_size=row_group_size, compression=_compression(compression))


def _list_parts(arr: Any) -> Tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Offsets (from 0) and flat numpy values of an Arrow (large) list array, zero-copy if possible.

    Fixed-size-list values come back as ``[N, W]``.
    """
    pa = _pa()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    offsets = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    start, end = int(offsets[0]), int(offsets[-1])
    values = arr.values.slice(start, end - start)
    if pa.types.is_fixed_size_list(values.type):
        flat = values.flatten().to_numpy(zero_copy_only=False).reshape(-1, values.type.list_size)
    else:
        flat = values.to_numpy(zero_copy_only=False)
    return offsets - start, flat


class ExampleStore:
    """A written example store (see the module docstring for the layout).

    Args:
        path (Union[str, os.PathLike]): the store folder (holding ``manifest.json``).

    Raises:
        StoreError: no complete store at ``path``.

    Example::

        store = ExampleStore("runs/examples/ml100k-h200-0123abcd")
        store.rows("train"), store.num_items, list(store.columns)
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self.path: Path = Path(path)
        mf = self.path / _MANIFEST
        if not mf.is_file():
            raise StoreError(f"no example store at {self.path} (missing {_MANIFEST})")
        try:
            self.manifest: Dict[str, Any] = json.loads(mf.read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"unreadable store manifest {mf}: {e}") from e
        if self.manifest.get("format_version") != _FORMAT_VERSION:
            raise StoreError(f"{mf}: format version {self.manifest.get('format_version')} != {_FORMAT_VERSION}")

    # ---- description
    @property
    def num_users(self) -> int:
        return int(self.manifest["num_users"])

    @property
    def num_items(self) -> int:
        return int(self.manifest["num_items"])

    @property
    def max_history(self) -> Optional[int]:
        return self.manifest["config"]["max_history"]

    @property
    def columns(self) -> Dict[str, ColumnInfo]:
        """History feature columns present in every split."""
        return {k: ColumnInfo(**v) for k, v in self.manifest["columns"].items()}

    def rows(self, split: str) -> int:
        return int(self.manifest["splits"][split]["rows"])

    def history_events(self, split: Optional[str] = None) -> int:
        names = SPLITS if split is None else (split,)
        return sum(int(self.manifest["splits"][s]["history_events"]) for s in names)

    def file(self, split: str, column: str = "base") -> Path:
        if split not in SPLITS:
            raise StoreError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.path / split / f"{column}.parquet"

    def column(self, name: str) -> ColumnInfo:
        cols = self.columns
        if name not in cols:
            raise StoreError(
                f"history column {name!r} is not in the store {self.path} (has {sorted(cols)}); "
                f"write it with ExampleStore.add_history_column"
            )
        return cols[name]

    # ---- reading
    def read(self, split: str, columns: Sequence[str] = ()) -> Any:
        """The whole split as one Arrow table: base columns plus the named history columns."""
        pa, pq = _pa(), _pq()
        base = pq.read_table(self.file(split))
        arrays, names = list(base.columns), list(base.column_names)
        for c in columns:
            self.column(c)
            arrays.append(pq.read_table(self.file(split, c)).column(c))
            names.append(c)
        return pa.Table.from_arrays(arrays, names=names)

    def interactions(self, split: str = "train") -> Dict[str, npt.NDArray[np.int64]]:
        """``{"user_id", "item_id", "timestamp"}`` of a split's events (``train``: what may be fitted)."""
        t = _pq().read_table(self.file(split), columns=["user_id", "item_id", "timestamp"])
        return {c: t.column(c).to_numpy() for c in t.column_names}

    # ---- writing derived columns
    def add_history_column(
        self, name: str, table: Union[Tensor, npt.ArrayLike], note: str = "", overwrite: bool = False
    ) -> ColumnInfo:
        """Writes the history column ``name``: each history event's item mapped through ``table``.

        Written once: if the column exists with the same table fingerprint, nothing is done. Each
        split's file is written to a temporary name and renamed; the manifest is updated last, so
        a column is listed only when all its files are complete. Call it on one process only
        (rank 0) and synchronize.

        Args:
            name (str): column name (``[A-Za-z0-9_]``), also the KJT key the loader makes of it.
            table: ``[num_items, W]`` (or ``[num_items]``) item -> value table of a numeric dtype.
            note (str): free text stored in the manifest.
            overwrite (bool): rewrite even if present with another fingerprint (else an error).

        Returns:
            ColumnInfo: the column's description.

        Example::

            store.add_history_column("hist_sid", codec.pack(codes)[:, None])       # int64 [I, 1]
            store.add_history_column("hist_minilm_fp16", items.text_vectors.half())  # [I, 384]
        """
        tab = np.asarray(table.detach().cpu().numpy() if isinstance(table, Tensor) else table)
        if tab.ndim == 1:
            tab = tab[:, None]
        if tab.ndim != 2 or tab.shape[0] != self.num_items:
            raise StoreError(f"table for {name!r} must be [num_items={self.num_items}, W], got {list(tab.shape)}")
        if not (np.issubdtype(tab.dtype, np.integer) or np.issubdtype(tab.dtype, np.floating)):
            raise StoreError(f"table for {name!r} must be numeric, got {tab.dtype}")
        if not name.replace("_", "").isalnum() or name in ("base",) + BASE_COLUMNS:
            raise StoreError(f"bad history column name {name!r}")
        fp = _table_fingerprint(tab)
        existing = self.columns.get(name)
        if existing is not None:
            if existing.fingerprint == fp:
                return existing
            if not overwrite:
                raise StoreError(
                    f"history column {name!r} exists with another table (fingerprint "
                    f"{existing.fingerprint} != {fp}); pass overwrite=True or use a new name"
                )
        pa, pq = _pa(), _pq()
        for split in SPLITS:
            src = pq.ParquetFile(self.file(split, ITEM_HISTORY_COLUMN))
            writer_path = self.file(split, name)
            tmp = writer_path.with_name(f".{writer_path.name}.tmp")
            writer = None
            try:
                for rg in range(src.num_row_groups):
                    arr = src.read_row_group(rg).column(ITEM_HISTORY_COLUMN)
                    offsets, items = _list_parts(arr)
                    values = tab[items]  # [n, W]
                    col = _list_array(offsets, values, tab.shape[1])
                    t = pa.Table.from_arrays([col], names=[name])
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, t.schema, compression=_compression(self.manifest["config"]["compression"]))
                    writer.write_table(t, row_group_size=len(t))
                if writer is None:  # no row groups: empty split cannot happen (time_split checks)
                    raise StoreError(f"{src}: no row groups")
                writer.close()
                writer = None
                os.replace(tmp, writer_path)
            finally:
                if writer is not None:
                    writer.close()
                if tmp.exists():
                    tmp.unlink()
        info = ColumnInfo(name=name, dtype=tab.dtype.name, width=int(tab.shape[1]), fingerprint=fp, note=note)
        self.manifest["columns"][name] = dataclasses.asdict(info)
        write_json(self.path / _MANIFEST, self.manifest)
        return info

    # ---- footprint
    def footprint(self, name: str, split: Optional[str] = None) -> Dict[str, float]:
        """Bytes per history event of column ``name``, measured on the written files.

        Args:
            name (str): history column.
            split (Optional[str]): one split, or all (default).

        Returns:
            Dict[str, float]: ``history_events``; ``value_bytes_per_event`` (``W * itemsize``: the
            values as a model consumes them); ``parquet_uncompressed_bytes_per_event`` (Parquet's
            encoded pages before compression, "raw"); ``file_bytes_per_event`` (on disk,
            compressed, everything in the column's files included); ``file_bytes``; ``compression``.

        Example::

            store.footprint("hist_item_id")["file_bytes_per_event"]
        """
        info = self.column(name)
        names = SPLITS if split is None else (split,)
        events = self.history_events(split)
        file_bytes = 0
        uncompressed = 0
        for s in names:
            p = self.file(s, name)
            file_bytes += p.stat().st_size
            md = _pq().ParquetFile(p).metadata
            for rg in range(md.num_row_groups):
                for c in range(md.num_columns):
                    uncompressed += md.row_group(rg).column(c).total_uncompressed_size
        per = max(events, 1)
        return {
            "history_events": float(events),
            "value_bytes_per_event": float(info.width * np.dtype(info.dtype).itemsize),
            "parquet_uncompressed_bytes_per_event": uncompressed / per,
            "file_bytes_per_event": file_bytes / per,
            "file_bytes": float(file_bytes),
            "compression": self.manifest["config"]["compression"],  # type: ignore[dict-item]
        }


def write_store(
    examples: Examples,
    path: Union[str, "os.PathLike[str]"],
    num_users: int,
    num_items: int,
    config: ExamplesConfig,
    info: Optional[Mapping[str, Any]] = None,
) -> ExampleStore:
    """Writes ``examples`` as a store at ``path`` (atomically: a temporary folder, then a rename).

    Args:
        examples (Examples): from :func:`build_examples`.
        path: the store folder (must not exist, or hold a store to replace).
        num_users (int): users of the id space (rows of a user-id table).
        num_items (int): items of the id space (rows of an item table).
        config (ExamplesConfig): recorded in the manifest.
        info (Optional[Mapping[str, Any]]): extra provenance recorded in the manifest.

    Returns:
        ExampleStore: the written store, with the column ``hist_item_id``.
    """
    from torchrec_side.io import atomic_dir

    pa = _pa()
    target = Path(path)
    splits: Dict[str, Any] = {}
    with atomic_dir(target) as tmp:
        for k, s in enumerate(SPLITS):
            idx = np.flatnonzero(examples.split == k)
            lo, hi = examples.hist_offsets[idx], examples.hist_offsets[idx + 1]
            lengths = (hi - lo).astype(np.int64)
            offsets = np.zeros(idx.size + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            gather = np.repeat(lo - offsets[:-1], lengths) + np.arange(int(offsets[-1]), dtype=np.int64)
            (tmp / s).mkdir()
            base = pa.Table.from_arrays(
                [pa.array(examples.user_id[idx]), pa.array(examples.item_id[idx]),
                 pa.array(examples.label[idx]), pa.array(examples.timestamp[idx]),
                 pa.array(examples.num_prior[idx]), pa.array(lengths.astype(np.int32))],
                names=list(BASE_COLUMNS),
            )
            _write_parquet(tmp / s / "base.parquet", base, config.row_group_size, config.compression)
            hist = pa.Table.from_arrays([_list_array(offsets, examples.hist_item_id[gather], 1)],
                                        names=[ITEM_HISTORY_COLUMN])
            _write_parquet(tmp / s / f"{ITEM_HISTORY_COLUMN}.parquet", hist, config.row_group_size, config.compression)
            ts = examples.timestamp[idx]
            splits[s] = {
                "rows": int(idx.size), "history_events": int(offsets[-1]),
                "positives": int(examples.label[idx].sum()),
                "users": int(np.unique(examples.user_id[idx]).size),
                "items": int(np.unique(examples.item_id[idx]).size),
                "t_min": int(ts.min()), "t_max": int(ts.max()),
            }
        ident = np.arange(num_items, dtype=np.int64)[:, None]
        manifest = {
            "format_version": _FORMAT_VERSION,
            "config": dataclasses.asdict(config),
            "fingerprint": config.fingerprint(),
            "num_users": int(num_users),
            "num_items": int(num_items),
            "t_val": int(examples.t_val),
            "t_test": int(examples.t_test),
            "splits": splits,
            "dense_features": list(DENSE_FEATURES),
            "columns": {ITEM_HISTORY_COLUMN: dataclasses.asdict(ColumnInfo(
                ITEM_HISTORY_COLUMN, "int64", 1, _table_fingerprint(ident), "history item ids"))},
            "info": dict(info or {}),
        }
        write_json(tmp / _MANIFEST, manifest)
    return ExampleStore(target)


def _load_ratings(cfg: ExamplesConfig) -> Tuple[Ratings, int, int, Dict[str, Any]]:
    if cfg.dataset == "synthetic":
        r = synthetic_ratings(cfg.synthetic_users, cfg.synthetic_items, cfg.synthetic_events, cfg.synthetic_seed)
        return r, cfg.synthetic_users, cfg.synthetic_items, {"source": "synthetic"}
    from torchrec_side.data.movielens import load_movielens

    ml = load_movielens(cfg.root)
    return ml.ratings, ml.num_users, ml.num_items, {"source": ml.source}


def prepare_store(cfg: ExamplesConfig, root: Union[str, "os.PathLike[str]"]) -> ExampleStore:
    """Opens the store of ``cfg`` under ``root``, writing it first if it does not exist yet.

    The store folder is ``root / cfg.store_name()`` (dataset, history cap and a fingerprint of the
    protocol settings), so a different cap or split never reuses stale files. Call it on one
    process (rank 0), then synchronize; other ranks open the store with :class:`ExampleStore`.

    Args:
        cfg (ExamplesConfig): what to build.
        root: parent folder of stores.

    Returns:
        ExampleStore: the store (with the ``hist_item_id`` column).

    Example::

        store = prepare_store(ExamplesConfig(), "runs/examples")
    """
    path = Path(root) / cfg.store_name()
    if (path / _MANIFEST).is_file():
        store = ExampleStore(path)
        if store.manifest.get("fingerprint") == cfg.fingerprint():
            return store
        logger.warning("example store %s has another fingerprint; rewriting it", path)
    ratings, nu, ni, info = _load_ratings(cfg)
    if cfg.max_events:
        order = torch.from_numpy(np.lexsort((ratings.item_id.numpy(), ratings.user_id.numpy(),
                                             ratings.timestamp.numpy()))[: cfg.max_events])
        ratings = Ratings(user_id=ratings.user_id[order], item_id=ratings.item_id[order],
                          rating=ratings.rating[order], timestamp=ratings.timestamp[order])
    ex = build_examples(ratings, cfg.max_history, cfg.train_fraction, cfg.val_fraction, cfg.label_threshold)
    logger.info("writing example store %s (%d examples, %d history events)", path, len(ex), ex.hist_item_id.size)
    return write_store(ex, path, nu, ni, cfg, info)


# --------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class HistoryInput:
    """How the loader turns one history column into KJT keys.

    Args:
        column (str): the store's history column.
        keys (Optional[List[str]]): KJT key names. Default: ``[column]`` for ``W == 1``; for
            ``W > 1``, one key per slot ``[f"{column}_{j}"]`` (each with the history's lengths),
            or ``[column]`` with ``flatten=True`` (``W`` values per event in one key).
        flatten (bool): see ``keys``.

    Example::

        HistoryInput("hist_item_id")                 # KJT key "hist_item_id"
        HistoryInput("hist_prefix_tokens")           # W = 3: keys hist_prefix_tokens_0.._2
    """

    column: str
    keys: Optional[Tuple[str, ...]] = None
    flatten: bool = False

    def resolve_keys(self, width: int) -> List[str]:
        if self.keys is not None:
            want = 1 if (width == 1 or self.flatten) else width
            if len(self.keys) != want:
                raise StoreError(f"history input {self.column!r}: {len(self.keys)} keys given, {want} needed")
            return list(self.keys)
        if width == 1 or self.flatten:
            return [self.column]
        return [f"{self.column}_{j}" for j in range(width)]


@dataclass
class ExampleBatch(Pipelineable):
    """One rank's batch.

    Args:
        dense_features (Tensor): ``[B, len(DENSE_FEATURES)]`` float32.
        sparse_features (KeyedJaggedTensor): keys ``user_id``, ``item_id`` (one value per example)
            then the history keys (the history's values, lengths = history lengths), stride ``B``.
        labels (Tensor): ``[B]`` float32 0/1.
        weights (Tensor): ``[B]`` float32: 1, or 0 for padding rows of the last evaluation batch.

    Example::

        batch = next(iter(loader))
        batch.sparse_features["hist_item_id"].lengths()     # [B]
    """

    dense_features: Tensor
    sparse_features: KeyedJaggedTensor
    labels: Tensor
    weights: Tensor

    def to(self, device: torch.device, non_blocking: bool = False) -> "ExampleBatch":
        return ExampleBatch(
            dense_features=self.dense_features.to(device=device, non_blocking=non_blocking),
            sparse_features=self.sparse_features.to(device=device, non_blocking=non_blocking),
            labels=self.labels.to(device=device, non_blocking=non_blocking),
            weights=self.weights.to(device=device, non_blocking=non_blocking),
        )

    def record_stream(self, stream: torch.Stream) -> None:  # pragma: no cover - CUDA only
        self.dense_features.record_stream(stream)
        self.sparse_features.record_stream(stream)
        self.labels.record_stream(stream)
        self.weights.record_stream(stream)

    def pin_memory(self) -> "ExampleBatch":  # pragma: no cover - CUDA only
        return ExampleBatch(self.dense_features.pin_memory(), self.sparse_features.pin_memory(),
                            self.labels.pin_memory(), self.weights.pin_memory())

    @property
    def batch_size(self) -> int:
        return int(self.labels.numel())


class ExampleDataset(torch.utils.data.IterableDataset):  # pyre-ignore[13]
    """Batches of one split for one rank, read from the store's Parquet files.

    Every rank reads the same sequence of *global* batches of ``batch_size * world_size`` rows and
    keeps rows ``[rank * B, (rank + 1) * B)`` of each, so the number of batches is the same on all
    ranks. Training (``shuffle=True``): row groups in a seeded random order per epoch, rows shuffled
    within a buffer of ``shuffle_row_groups`` row groups, incomplete last global batch dropped.
    Evaluation (``shuffle=False``): time order, the last global batch padded with weight-0 rows.
    The sequence depends only on ``(seed, epoch)``, so a run resumed at batch ``k`` of an epoch
    (``start_batch``) sees exactly the batches an uninterrupted run would.

    With several DataLoader workers, worker ``w`` builds batches ``w, w + n, ...`` (the DataLoader
    returns them in order).

    Args:
        store (ExampleStore): the example store.
        split (str): ``"train"``, ``"val"`` or ``"test"``.
        history (Sequence[HistoryInput]): history columns to load, in KJT key order.
        batch_size (int): ``B``, rows per rank per batch.
        rank (int): this rank.
        world_size (int): number of ranks.
        shuffle (bool): training order (see above); else time order with padding.
        seed (int): shuffle seed.
        shuffle_row_groups (int): row groups per shuffle buffer.
        transform (Optional[Callable[[KeyedJaggedTensor], KeyedJaggedTensor]]): applied to the
            KJT in the worker (e.g. a SID -> token-id mapper).
        max_history (Optional[int]): keep only the last ``max_history`` events of each history
            (``None``: as stored).

    Example::

        ds = ExampleDataset(store, "train", [HistoryInput("hist_item_id")], batch_size=256,
                            rank=0, world_size=2, shuffle=True, seed=0)
        ds.set_epoch(3)
        len(ds)                          # batches per epoch (same on every rank)
    """

    def __init__(
        self,
        store: ExampleStore,
        split: str,
        history: Sequence[HistoryInput] = (),
        batch_size: int = 256,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_row_groups: int = 8,
        transform: Optional[Callable[[KeyedJaggedTensor], KeyedJaggedTensor]] = None,
        max_history: Optional[int] = None,
    ) -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.store = store
        self.split = split
        self.history: List[HistoryInput] = list(history)
        self.infos: List[ColumnInfo] = [store.column(h.column) for h in self.history]
        for h, info in zip(self.history, self.infos):
            if not info.is_integer:
                raise StoreError(
                    f"history column {h.column!r} holds {info.dtype} values; KJT features need integer "
                    f"ids (feed float content through an item-keyed table instead)"
                )
        self.keys: List[str] = list(ID_FEATURES) + [k for h, i in zip(self.history, self.infos)
                                                     for k in h.resolve_keys(i.width)]
        if len(set(self.keys)) != len(self.keys):
            raise StoreError(f"duplicate KJT keys {self.keys}")
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.seed = seed
        self.shuffle_row_groups = max(1, shuffle_row_groups)
        self.transform = transform
        self.max_history = max_history
        self.epoch = 0
        self.start_batch = 0
        self.rows: int = store.rows(split)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Selects the epoch's order and the first batch to produce (for resuming)."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def __len__(self) -> int:
        g = self.batch_size * self.world_size
        return self.rows // g if self.shuffle else -(-self.rows // g)

    # ---- reading
    def _files(self) -> List[Tuple[Any, Optional[str]]]:
        pq = _pq()
        out = [(pq.ParquetFile(self.store.file(self.split)), None)]
        out += [(pq.ParquetFile(self.store.file(self.split, h.column)), h.column) for h in self.history]
        n = out[0][0].num_row_groups
        for f, c in out[1:]:
            if f.num_row_groups != n or any(f.metadata.row_group(i).num_rows != out[0][0].metadata.row_group(i).num_rows
                                            for i in range(n)):
                raise StoreError(f"column {c!r} of split {self.split!r} is not row-aligned with base.parquet")
        return out

    def _row_group(self, files: List[Tuple[Any, Optional[str]]], i: int) -> Any:
        pa = _pa()
        arrays, names = [], []
        for f, c in files:
            t = f.read_row_group(i)
            arrays.extend(t.columns)
            names.extend(t.column_names)
        return pa.Table.from_arrays(arrays, names=names)

    def _global_batches(self) -> Iterator[Tuple[int, Any, int]]:
        """Yields ``(index, table of <= G rows, G)`` for each global batch of the epoch."""
        pa = _pa()
        files = self._files()
        n_rg = files[0][0].num_row_groups
        g_rows = self.batch_size * self.world_size
        rng = np.random.default_rng([self.seed, self.epoch, 0x51DE])
        order = rng.permutation(n_rg) if self.shuffle else np.arange(n_rg)
        step = self.shuffle_row_groups if self.shuffle else 1
        index = 0
        carry = None
        n_batches = len(self)
        for lo in range(0, n_rg, step):
            tables = ([carry] if carry is not None else []) + [self._row_group(files, int(i)) for i in order[lo: lo + step]]
            buf = pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0]
            if self.shuffle:
                buf = buf.take(pa.array(rng.permutation(buf.num_rows)))
            full = buf.num_rows // g_rows
            for k in range(full):
                if index >= n_batches:
                    return
                yield index, buf.slice(k * g_rows, g_rows), g_rows
                index += 1
            rest = buf.num_rows - full * g_rows
            carry = buf.slice(full * g_rows, rest) if rest else None
        if carry is not None and not self.shuffle and index < n_batches:
            yield index, carry, g_rows

    def __iter__(self) -> Iterator[ExampleBatch]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for index, table, g_rows in self._global_batches():
            if index < self.start_batch or (index - self.start_batch) % nw != wid:
                continue
            lo = self.rank * self.batch_size
            part = table.slice(lo, max(0, min(self.batch_size, table.num_rows - lo)))
            yield self._make_batch(part)

    def _make_batch(self, t: Any) -> ExampleBatch:
        """Arrow rows -> ExampleBatch, padded to ``batch_size`` rows (vectorized)."""
        b, n = self.batch_size, t.num_rows
        pad = b - n

        def col(name: str, dtype: Any) -> npt.NDArray[Any]:
            x = t.column(name).to_numpy().astype(dtype, copy=False)
            return np.concatenate([x, np.zeros(pad, dtype=dtype)]) if pad else x

        user = col("user_id", np.int64)
        item = col("item_id", np.int64)
        labels = col("label", np.float32)
        num_prior = col("num_prior", np.float32)
        weights = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
        dense = np.stack([np.log1p(num_prior) / math.log1p(1000.0), (num_prior == 0).astype(np.float32)], axis=1)
        lengths = [np.ones(b, np.int64), np.ones(b, np.int64)]
        values = [user, item]
        for h, info in zip(self.history, self.infos):
            offsets, flat = _list_parts(t.column(h.column))
            lens = np.diff(offsets)
            if self.max_history is not None and (lens > self.max_history).any():
                keep = np.minimum(lens, self.max_history)
                idx = np.repeat(offsets[1:] - keep - np.concatenate([[0], np.cumsum(keep)[:-1]]), keep) \
                    + np.arange(int(keep.sum()))
                flat, lens = flat[idx], keep
            lens = np.concatenate([lens, np.zeros(pad, np.int64)]) if pad else lens
            flat = flat.astype(np.int64, copy=False)
            if info.width == 1 or h.flatten:
                values.append(flat.reshape(-1))
                lengths.append(lens * (info.width if h.flatten else 1))
            else:
                for j in range(info.width):
                    values.append(np.ascontiguousarray(flat[:, j]))
                    lengths.append(lens)
        kjt = KeyedJaggedTensor(
            keys=self.keys,
            values=torch.from_numpy(np.concatenate(values)),
            lengths=torch.from_numpy(np.concatenate(lengths)),
            stride=b,
        )
        if self.transform is not None:
            kjt = self.transform(kjt)
        return ExampleBatch(
            dense_features=torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)),
            sparse_features=kjt,
            labels=torch.from_numpy(labels.copy()),
            weights=torch.from_numpy(weights),
        )


def make_dataloader(
    store: ExampleStore,
    split: str,
    history: Sequence[HistoryInput] = (),
    batch_size: int = 256,
    rank: int = 0,
    world_size: int = 1,
    shuffle: Optional[bool] = None,
    seed: int = 0,
    num_workers: int = 1,
    pin_memory: bool = False,
    **kwargs: Any,
) -> torch.utils.data.DataLoader:
    """A DataLoader of :class:`ExampleBatch` over one split (batches are built in the workers).

    Args:
        store, split, history, batch_size, rank, world_size, seed: see :class:`ExampleDataset`.
        shuffle (Optional[bool]): default ``split == "train"``.
        num_workers (int): DataLoader workers (0: in the calling process).
        pin_memory (bool): pin batches (CUDA training).
        **kwargs: more :class:`ExampleDataset` arguments (``transform``, ``shuffle_row_groups``, ...).

    Returns:
        DataLoader: iterate it for batches; ``loader.dataset.set_epoch(e, start_batch)`` before
        each epoch.

    Example::

        loader = make_dataloader(store, "val", [HistoryInput("hist_item_id")], batch_size=1024)
        for batch in loader: ...
    """
    ds = ExampleDataset(store, split, history, batch_size, rank, world_size,
                        shuffle=(split == "train") if shuffle is None else shuffle, seed=seed, **kwargs)
    return torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
        persistent_workers=False, prefetch_factor=4 if num_workers > 0 else None,
    )
