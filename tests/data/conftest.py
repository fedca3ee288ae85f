"""A tiny simulated-world folder in the agreed format (docs/design.md section 7c), for store tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict

import numpy as np
import pytest

if TYPE_CHECKING:
    from torchrec_side.data.movielens import MovieLens100K
    from torchrec_side.data.store import ExampleStore


def write_fake_world(root: Path, seed: int = 0, num_users: int = 6, num_items: int = 12, num_events: int = 80,
                     num_impressions: int = 60, t_max: int = 100, t_val: int = 60, t_test: int = 80) -> Dict[str, np.ndarray]:
    """Writes ``<root>/manifest.json``, ``items.parquet``, ``content/*.npy``, ``events.parquet``,
    ``impressions.parquet`` with random logs (timestamps with ties) and returns the raw arrays."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    g = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "content").mkdir(exist_ok=True)
    eu = g.integers(0, num_users, num_events)
    ei = g.integers(0, num_items, num_events)
    et = g.integers(0, t_max, num_events)
    o = np.lexsort((et, eu))
    eu, ei, et = eu[o], ei[o], et[o]
    iu = g.integers(0, num_users, num_impressions)
    ii = g.integers(0, num_items, num_impressions)
    it = g.integers(0, t_max, num_impressions)
    it[:3] = [t_val - 1, t_val, t_test]  # every split non-empty, and impressions on the cut times
    label = (g.random(num_impressions) < 0.4).astype(np.float32)
    p_true = g.random(num_impressions).astype(np.float32)
    o = np.argsort(it, kind="stable")
    iu, ii, it, label, p_true = iu[o], ii[o], it[o], label[o], p_true[o]
    split = np.where(it < t_val, 0, np.where(it < t_test, 1, 2)).astype(np.int8)
    pq.write_table(pa.table({"item_id": np.arange(num_items, dtype=np.int64),
                             "category": g.integers(0, 3, num_items).astype(np.int32),
                             "subcategory": g.integers(0, 6, num_items).astype(np.int32),
                             "release_time": g.integers(0, t_max, num_items).astype(np.int64),
                             "quality": g.normal(size=num_items).astype(np.float32)}), root / "items.parquet")
    np.save(root / "content" / "text.npy", g.normal(size=(num_items, 384)).astype(np.float16))
    np.save(root / "content" / "image.npy", g.normal(size=(num_items, 128)).astype(np.float16))
    pq.write_table(pa.table({"user_id": eu.astype(np.int64), "item_id": ei.astype(np.int64),
                             "timestamp": et.astype(np.int64)}), root / "events.parquet")
    pq.write_table(pa.table({"user_id": iu.astype(np.int64), "item_id": ii.astype(np.int64),
                             "timestamp": it.astype(np.int64), "label": label, "p_true": p_true,
                             "split": split}), root / "impressions.parquet")
    counts = np.bincount(split, minlength=3)
    manifest = {"format": "torchrec-side-adsworld", "version": 1, "config": {"seed": seed},
                "num_items": num_items, "num_users": num_users, "num_events": num_events,
                "impressions": {s: int(c) for s, c in zip(("train", "val", "test"), counts)},
                "split_times": {"val": t_val, "test": t_test},
                "oracle": {"test": {"ne": 0.9, "auc": 0.7, "base_rate": 0.4}}, "skew": {}, "seconds": 0.0}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return {"eu": eu, "ei": ei, "et": et, "iu": iu, "ii": ii, "it": it, "label": label, "p_true": p_true,
            "split": split}


@pytest.fixture(scope="session")
def wheel() -> Path:
    """The recbole wheel holding MovieLens-100K (fetched once into the cache)."""
    from torchrec_side.data import fetch

    return fetch.ensure_recbole_wheel()


@pytest.fixture(scope="session")
def ml(wheel: Path) -> "MovieLens100K":
    """MovieLens-100K loaded from ``wheel`` (shared by the data tests: treat as read-only)."""
    from torchrec_side.data.movielens import load_movielens

    return load_movielens(wheel)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> "ExampleStore":
    """A small example store from synthetic ratings (40 users, 30 items, 3000 events, histories
    of at most 12), built once per test module."""
    from torchrec_side.data.protocol import ExamplesConfig
    from torchrec_side.data.store import prepare_store

    cfg = ExamplesConfig(dataset="synthetic", synthetic_users=40, synthetic_items=30, synthetic_events=3000,
                         max_history=12, row_group_size=256)
    return prepare_store(cfg, tmp_path_factory.mktemp("ex"))


@pytest.fixture
def fake_world(tmp_path: Path) -> Callable[..., Dict[str, np.ndarray]]:
    """``fake_world(name, **kw)`` writes a world under ``tmp_path / name`` and returns its arrays
    (plus ``"dir"``)."""

    def make(name: str = "world", **kw: int) -> Dict[str, np.ndarray]:
        d = write_fake_world(tmp_path / name, **kw)
        d["dir"] = tmp_path / name  # type: ignore[assignment]
        return d

    return make


@pytest.fixture(scope="session")
def world_writer() -> Callable[..., Dict[str, np.ndarray]]:
    """:func:`write_fake_world` itself (for hypothesis tests, which take no function-scoped fixtures)."""
    return write_fake_world
