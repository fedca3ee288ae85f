# pyre-strict
"""The example store (docs/design.md section 7): examples written once, per split, as Parquet.

Examples are written once, per split, as a feature store would keep them: a base file with one row per example and one file per *history feature column*, all
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


Example::

    from torchrec_side.data.store import prepare_store
    from torchrec_side.data.protocol import ExamplesConfig

    store = prepare_store(ExamplesConfig(dataset="ml100k", max_history=200), "runs/examples")
    store.add_history_column("hist_sid", item_sid[:, None])          # [1682, 1] int64
    store.footprint("hist_sid")["file_bytes_per_event"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from torchrec_side.data.movielens import Ratings
from torchrec_side.data.protocol import (
    build_examples,
    DENSE_FEATURES,
    Examples,
    ExamplesConfig,
    SPLITS,
    synthetic_ratings,
)
from torchrec_side.io import atomic_path, write_json

__all__ = [
    "BASE_COLUMNS",
    "ITEM_HISTORY_COLUMN",
    "StoreError",
    "ColumnInfo",
    "ExampleStore",
    "write_store",
    "prepare_store",
]

logger: logging.Logger = logging.getLogger(__name__)

#: Columns of ``<split>/base.parquet``.
BASE_COLUMNS: Tuple[str, ...] = ("user_id", "item_id", "label", "timestamp", "num_prior", "hist_len")
#: The history column written with the store: the items of the history.
ITEM_HISTORY_COLUMN: str = "hist_item_id"

_FORMAT_VERSION: int = 1
_MANIFEST: str = "manifest.json"


class StoreError(ValueError):
    """An example store or column is missing, incomplete, or does not match what is asked."""



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

