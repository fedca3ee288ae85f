# pyre-strict
"""The evaluation protocol of docs/design.md section 7 (and 7c), in one place to import from; the
code lives in three modules:

* :mod:`~torchrec_side.data.split`: the global time split (:func:`time_split`) and what may be
  fitted on it (:func:`training_interactions`, :func:`assert_no_leakage`);
* :mod:`~torchrec_side.data.examples`: the examples config (:class:`ExamplesConfig`) and the
  fingerprint naming the store built from it;
* :mod:`~torchrec_side.data.events`: the event sources a store is built from (rating events or a
  simulated ads-world folder: :class:`EventSource`, :func:`load_source`), and
  :func:`synthetic_ratings`.

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

from torchrec_side.data.events import (  # _lex_order: for tests that import it from here
    _lex_order,
    EventSource,
    load_source,
    ratings_source,
    REFERENCE_COLUMNS,
    SourceError,
    synthetic_ratings,
    world_source,
)
from torchrec_side.data.examples import DATASETS, DENSE_FEATURES, ExamplesConfig, ID_FEATURES, STORE_FORMAT_VERSION
from torchrec_side.data.split import assert_no_leakage, SPLITS, time_split, TimeSplit, training_interactions

__all__ = [
    "SPLITS",
    "REFERENCE_COLUMNS",
    "DENSE_FEATURES",
    "ID_FEATURES",
    "ExamplesConfig",
    "TimeSplit",
    "time_split",
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
