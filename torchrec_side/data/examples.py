# pyre-strict
"""The examples config (:class:`ExamplesConfig`): which events to build examples from, the history
cap, the split fractions and the store's Parquet layout, and the fingerprint that names the store
written from it; plus the feature names every store and batch carries.

Example::

    from torchrec_side.data.examples import ExamplesConfig

    cfg = ExamplesConfig(dataset="ml100k", max_history=200)
    cfg.store_name()                   # "ml100k-h200-<fingerprint>"
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from torchrec_side.config import check_seed, ConfigError

__all__ = ["DENSE_FEATURES", "ID_FEATURES", "STORE_FORMAT_VERSION", "DATASETS", "ExamplesConfig"]

#: Dense features built by the loader: ``log1p(num_prior) / log1p(1000)`` and ``num_prior == 0``.
DENSE_FEATURES: Tuple[str, ...] = ("log_num_prior", "no_history")
#: The id features every batch carries (one value per example), in KJT key order.
ID_FEATURES: Tuple[str, ...] = ("user_id", "item_id")
#: Version of the store layout (:mod:`torchrec_side.data.store`); part of every fingerprint.
STORE_FORMAT_VERSION: int = 2
#: Datasets :class:`ExamplesConfig` knows.
DATASETS: Tuple[str, ...] = ("ml100k", "synthetic", "adsworld")


#: Largest synthetic catalogue / user count and event count (:class:`ExamplesConfig`).
MAX_SYNTHETIC_ROWS: int = 10**7
MAX_SYNTHETIC_EVENTS: int = 10**8


@dataclass
class ExamplesConfig:
    """What examples to build and how to store them.

    Args:
        dataset (str): ``"ml100k"`` (MovieLens-100K), ``"synthetic"``
            (:func:`~torchrec_side.data.events.synthetic_ratings`) or ``"adsworld"`` (a simulated-world
            folder, ``world_dir``).
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
            raise ConfigError(f"data.dataset must be one of {list(DATASETS)}, got {self.dataset!r}")
        if self.dataset == "adsworld" and not self.world_dir:
            raise ConfigError("data.world_dir must name the simulated-world folder when data.dataset is 'adsworld'")
        if self.max_history is not None and self.max_history < 1:
            raise ConfigError(f"data.max_history must be >= 1 or null (all), got {self.max_history}")
        if not (0.0 < self.train_fraction < 1.0 and 0.0 < self.val_fraction < 1.0
                and self.train_fraction + self.val_fraction < 1.0):
            raise ConfigError(
                f"data.train_fraction ({self.train_fraction}) and data.val_fraction "
                f"({self.val_fraction}) must be in (0, 1) with a sum below 1"
            )
        if self.max_events < 0 or self.row_group_size < 1:
            raise ConfigError("data.max_events must be >= 0 and data.row_group_size >= 1")
        if min(self.synthetic_users, self.synthetic_items, self.synthetic_events) < 1:
            raise ConfigError("data.synthetic_users/items/events must be >= 1")
        # synthetic data is for tests and examples: caps keep a typo from allocating terabytes
        if max(self.synthetic_users, self.synthetic_items) > MAX_SYNTHETIC_ROWS or self.synthetic_events > MAX_SYNTHETIC_EVENTS:
            raise ConfigError(f"data.synthetic_users/items must be <= {MAX_SYNTHETIC_ROWS:,} and data.synthetic_events "
                              f"<= {MAX_SYNTHETIC_EVENTS:,}, got {self.synthetic_users:,} / {self.synthetic_items:,} / "
                              f"{self.synthetic_events:,}")
        check_seed(self.synthetic_seed, "data.synthetic_seed")
        if self.compression.lower() not in ("zstd", "snappy", "gzip", "lz4", "brotli", "none"):
            raise ConfigError(f"data.compression {self.compression!r} is not a Parquet codec")

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
