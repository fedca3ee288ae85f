# pyre-strict
"""The global time split of rating events (docs/design.md section 7) and what may be fitted on it.

:func:`time_split` sorts the events by timestamp; the nominal cuts are at ``floor(train_fraction *
R)`` and ``floor((train_fraction + val_fraction) * R)``; the cut timestamps are the ones found there
and **a tie goes to the later split**: ``train = ts < t_val``, ``val = t_val <= ts < t_test``,
``test = ts >= t_test``. So the splits are disjoint and strictly ordered in time. For ML-100K:
79,999 / 10,001 / 10,000 events.

Only training events may be used to fit anything from the data (the collaborative item embedding,
the tokenizer): :func:`training_interactions` returns them and :func:`assert_no_leakage` checks
that a set of fitted events holds nothing else.

Example::

    from torchrec_side.data.split import time_split, training_interactions

    s = time_split(ratings.timestamp)          # 79,999 / 10,001 / 10,000 events for ML-100K
    tr = training_interactions(ratings)        # what may be fitted
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from torchrec_side.data.movielens import Ratings

__all__ = ["SPLITS", "TimeSplit", "time_split", "training_interactions", "assert_no_leakage"]

#: Split names, in time order.
SPLITS: Tuple[str, ...] = ("train", "val", "test")


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


def _as_np(x: Union[Tensor, npt.ArrayLike], dtype: Any) -> npt.NDArray[Any]:
    return np.asarray(x.numpy() if isinstance(x, Tensor) else x).astype(dtype, copy=False)


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
