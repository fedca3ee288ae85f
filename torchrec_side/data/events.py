# pyre-strict
"""The sources a store is built from (docs/design.md sections 7 and 7c): an :class:`EventSource`
holds the users' event logs (what histories are made of) and the impressions (the examples).

* Rating events (:func:`ratings_source`; MovieLens or :func:`synthetic_ratings`): events and
  impressions are the same ratings, ``label = rating >= label_threshold``, split by
  :func:`~torchrec_side.data.split.time_split`.
* A simulated-world folder (:func:`world_source`): its ``events.parquet`` and
  ``impressions.parquet``, with the generator's split, ``p_true`` and the ceilings it stores
  (:data:`REFERENCE_COLUMNS`, carried as written).

In both an impression's history is the user's events with a timestamp **strictly before** the
impression's. :func:`load_source` picks the source of an
:class:`~torchrec_side.data.examples.ExamplesConfig`.

Example::

    from torchrec_side.data.events import load_source

    src = load_source(ExamplesConfig(dataset="synthetic"))
    src.hist_end()[:5]                 # events of each impression's user strictly before it
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt
import torch

from torchrec_side.data.examples import ExamplesConfig
from torchrec_side.data.movielens import Ratings
from torchrec_side.data.split import _as_np, time_split
from torchrec_side.errors import TorchRecSideError
from torchrec_side.io import ArtifactError

__all__ = [
    "REFERENCE_COLUMNS",
    "SourceError",
    "EventSource",
    "synthetic_ratings",
    "ratings_source",
    "world_source",
    "load_source",
]

#: Per-impression reference probabilities a simulated world may store (docs/design.md section 7c),
#: carried as written from ``impressions.parquet`` to the store's ``base.parquet`` and every run's
#: ``predictions_test.parquet``, where the report scores them as pseudo-variants: ``p_true`` the
#: oracle, ``p_content`` the content ceiling, ``p_id`` the id ceiling, ``p_content_item`` the
#: content ceiling plus each item's Bayes posterior quality (NaN on training rows). A world written
#: before a column existed simply lacks it.
REFERENCE_COLUMNS: Tuple[str, ...] = ("p_true", "p_content", "p_id", "p_content_item")


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
    """A source of events (a simulated-world folder, or rating events that cannot be split) is missing,
    malformed or inconsistent."""


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
    """The protocol on rating events: events = impressions = the ratings, split by
    :func:`~torchrec_side.data.split.time_split`.

    Args:
        ratings (Ratings): ``R`` events, any order.
        num_users (int): users of the id space.
        num_items (int): items of the id space.
        train_fraction (float): see :func:`~torchrec_side.data.split.time_split`.
        val_fraction (float): see :func:`~torchrec_side.data.split.time_split`.
        label_threshold (float): ``label = rating >= label_threshold``.
        info (Optional[Dict[str, Any]]): provenance.

    Returns:
        EventSource: impressions in global time order (sorted by ``(timestamp, user, item)``).

    Raises:
        SourceError: ids outside the id space, or events the time split cannot split (fewer than
            3, or a split left empty by events sharing the cut timestamps).

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
    try:
        split = time_split(ts[order], train_fraction, val_fraction)
    except ValueError as e:  # too few events, or a split left empty by ties
        raise SourceError(str(e)) from e
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
