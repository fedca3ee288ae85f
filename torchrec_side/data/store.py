# pyre-strict
"""The example store (docs/design.md sections 7 and 7c): examples per split, event logs once.

A history is a *window of the user's event log* before the impression, so the store keeps each
user's log once and each example only says where its window ends::

    <store>/manifest.json                 config, fingerprints, counts, split boundaries, columns
    <store>/<split>/base.parquet          one row per example (impression), in time order:
                                          user_id int64, item_id int64 (target), label float32,
                                          timestamp int64, num_prior int64, hist_len int32,
                                          item_train_freq int64 [, p_true float32]
                                          [, p_content, p_id, p_content_item float32]
    <store>/log/offsets.npy               int64 [U + 1]: user u's events are rows
                                          offsets[u]:offsets[u + 1] of every log column
    <store>/log/timestamp.parquet         int64 [E]: the events' timestamps
    <store>/log/<column>.parquet          one value (int64, ...) or ``W`` values
                                          (fixed_size_list<T, W>) per event
    <store>/items/<column>.npy            the item -> value table ``[num_items, W]`` a derived
                                          column was written from (targets are looked up in it)

* ``num_prior`` = the number of the user's events with a timestamp strictly before the impression
  (the **end** of its window: the log is sorted by ``(user, timestamp, item)``);
* the example's history is ``log[offsets[u] + max(0, num_prior - max_history) : offsets[u] +
  num_prior]`` (:func:`window_index` builds these indices for a whole batch at once);
  ``hist_len = min(num_prior, max_history)``;
* ``item_train_freq`` = the target item's count in the training split (0: a cold item), for
  slices by frequency; ``p_true`` (simulated worlds only) = the true click probability, followed by
  the world's stored ceilings (``p_content``, ``p_id``, ``p_content_item``) when it has them: the
  reference columns :data:`~torchrec_side.data.protocol.REFERENCE_COLUMNS`, copied as written.

The item-id log ``hist_item_id`` is written with the store. Any other per-event representation is
derived from it with :meth:`ExampleStore.add_history_column`: an item -> value table
``[num_items, W]`` of any numeric dtype (packed SIDs ``[I, 1]`` int64; prefix-ngram token ids
``[I, L]`` int64; raw content ``[I, 384]`` float16) gives the log column ``table[hist_item_id]``,
written once; the table itself is kept as ``items/<column>.npy`` (:meth:`ExampleStore.item_values`),
so the loader can represent the *target* item through the same values (docs/design.md section 7b).
:meth:`ExampleStore.footprint` measures bytes per stored event on the written files,
raw (Parquet pages before compression, plain encoding) and compressed (the file).

Example::

    from torchrec_side.data.protocol import ExamplesConfig
    from torchrec_side.data.store import prepare_store

    store = prepare_store(ExamplesConfig(dataset="ml100k", max_history=200), "runs/examples")
    store.add_history_column("hist_sid", item_sid[:, None])          # [1682, 1] int64
    store.footprint("hist_sid")["compressed_bytes_per_event"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt
from torch import Tensor

from torchrec_side.errors import TorchRecSideError
from torchrec_side.data.protocol import (
    DENSE_FEATURES,
    EventSource,
    ExamplesConfig,
    load_source,
    SourceError,
    SPLITS,
    STORE_FORMAT_VERSION,
)
from torchrec_side.io import atomic_dir, atomic_path, write_json

__all__ = [
    "BASE_COLUMNS",
    "P_TRUE_COLUMN",
    "ITEM_HISTORY_COLUMN",
    "StoreError",
    "ColumnInfo",
    "table_fingerprint",
    "window_index",
    "ExampleStore",
    "write_store",
    "prepare_store",
]

logger: logging.Logger = logging.getLogger(__name__)

#: Columns of ``<split>/base.parquet`` (the reference columns ``p_true``, ``p_content``, ... follow when
#: the source has them).
BASE_COLUMNS: Tuple[str, ...] = (
    "user_id", "item_id", "label", "timestamp", "num_prior", "hist_len", "item_train_freq",
)
#: The optional true click probability column of ``base.parquet`` (simulated worlds).
P_TRUE_COLUMN: str = "p_true"
#: The log column written with the store: the events' items.
ITEM_HISTORY_COLUMN: str = "hist_item_id"

_MANIFEST: str = "manifest.json"
_LOG: str = "log"
_OFFSETS: str = "offsets.npy"
_LOG_TIMESTAMP: str = "timestamp"
_ITEMS: str = "items"
#: Events per row group of a log column (the unit of add_history_column's streaming rewrite).
_LOG_ROW_GROUP: int = 1 << 18


class StoreError(TorchRecSideError, ValueError):
    """An example store or column is missing, incomplete, or does not match what is asked."""


@dataclass(frozen=True)
class ColumnInfo:
    """A log column of a store (one value, or ``W`` values, per event).

    Args:
        name (str): column (and file) name, e.g. ``"hist_item_id"``, ``"hist_sid"``.
        dtype (str): numpy dtype name of the values (``"int64"``, ``"float16"``, ...).
        width (int): ``W``, values per event.
        fingerprint (str): hash of the item -> value table it was written from.
        note (str): free text (what the values are).

    Example::

        store.column("hist_sid")            # ColumnInfo(name='hist_sid', dtype='int64', width=1, ...)
    """

    name: str
    dtype: str
    width: int
    fingerprint: str
    note: str = ""

    @property
    def is_integer(self) -> bool:
        return bool(np.issubdtype(np.dtype(self.dtype), np.integer))


def window_index(
    user_start: npt.NDArray[np.int64], end: npt.NDArray[np.int64], max_history: Optional[int] = None
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Lengths and log rows of a batch of history windows (vectorized: one ``repeat`` + ``arange``).

    Example ``k``'s window is log rows ``[user_start[k] + end[k] - n_k, user_start[k] + end[k])``
    with ``n_k = min(end[k], max_history)``: its last ``max_history`` events before the impression.

    Args:
        user_start (npt.NDArray[np.int64]): ``[B]`` first log row of each example's user.
        end (npt.NDArray[np.int64]): ``[B]`` window ends within the user's log (``num_prior``).
        max_history (Optional[int]): cap (``None``: the whole prefix).

    Returns:
        Tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ``lengths [B]`` and ``index
        [sum(lengths)]``, the log rows of the windows concatenated, oldest first.

    Example::

        window_index(np.array([0, 10]), np.array([3, 1]), max_history=2)
        # (array([2, 1]), array([1, 2, 10]))
    """
    end = np.asarray(end, dtype=np.int64)
    start = np.asarray(user_start, dtype=np.int64)
    keep = end if max_history is None else np.minimum(end, int(max_history))
    if keep.size == 0:
        return keep.astype(np.int64), np.zeros(0, dtype=np.int64)
    out_start = np.cumsum(keep) - keep
    total = int(keep.sum())
    index = np.repeat(start + end - keep - out_start, keep)
    index += np.arange(total, dtype=np.int64)
    return keep.astype(np.int64), index


# --------------------------------------------------------------------------------------------
# Parquet helpers


def _pa() -> Any:
    import pyarrow as pa

    return pa


def _pq() -> Any:
    import pyarrow.parquet as pq

    return pq


def _compression(name: str) -> Optional[str]:
    return None if name.lower() == "none" else name.lower()


def table_fingerprint(table: Union[Tensor, npt.ArrayLike]) -> str:
    """The fingerprint a history column records of its item table (``ColumnInfo.fingerprint``):
    SHA-256 (16 hex digits) of the ``[num_items, W]`` table's shape, dtype and values (a
    ``[num_items]`` table counts as ``[num_items, 1]``). A run records its columns' fingerprints
    (``inputs.json``) to catch a SID artifact replaced at the same path.

    Example::

        table_fingerprint(np.arange(4, dtype=np.int64))   # same as of arange(4)[:, None]
    """
    table = np.asarray(table.detach().cpu().numpy() if isinstance(table, Tensor) else table)
    if table.ndim == 1:
        table = table[:, None]
    h = hashlib.sha256()
    h.update(str((table.shape, table.dtype.str)).encode())
    h.update(np.ascontiguousarray(table).tobytes())
    return h.hexdigest()[:16]


def _values_array(values: npt.NDArray[Any], width: int) -> Any:
    """Arrow array of ``[n]`` values (``width == 1``) or ``fixed_size_list<T, width>`` of ``[n, W]``."""
    pa = _pa()
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, width) if width > 1 else flat


def _list_array(lengths: npt.NDArray[np.int64], values: npt.NDArray[Any], width: int) -> Any:
    """Arrow ``large_list<T>`` (or ``large_list<fixed_size_list<T, W>>``) array of windows."""
    pa = _pa()
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets, type=pa.int64()), _values_array(values, width))


def _to_numpy(arr: Any) -> npt.NDArray[Any]:
    """Numpy values of an Arrow column: ``[n]``, or ``[n, W]`` for fixed-size lists."""
    pa = _pa()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_fixed_size_list(arr.type):
        w = arr.type.list_size
        return arr.flatten().to_numpy(zero_copy_only=False).reshape(-1, w)
    return arr.to_numpy(zero_copy_only=False)


def _write_log_column(path: Path, name: str, chunks: Any, width: int, compression: str) -> None:
    """Writes one log column from an iterable of ``[n(, W)]`` numpy chunks, atomically."""
    pa, pq = _pa(), _pq()
    with atomic_path(path) as tmp:
        writer = None
        try:
            for values in chunks:
                t = pa.Table.from_arrays([_values_array(values, width)], names=[name])
                if writer is None:
                    writer = pq.ParquetWriter(tmp, t.schema, compression=_compression(compression),
                                              use_dictionary=False)
                writer.write_table(t, row_group_size=_LOG_ROW_GROUP)
            if writer is None:
                raise StoreError(f"log column {name!r}: nothing to write")
        finally:
            if writer is not None:
                writer.close()


def _chunks(x: npt.NDArray[Any], size: int = _LOG_ROW_GROUP) -> Any:
    for lo in range(0, max(int(x.shape[0]), 1), size):
        yield x[lo: lo + size]


# --------------------------------------------------------------------------------------------
# the store


class ExampleStore:
    """A written example store (see the module docstring for the layout).

    Log columns are read into memory on first use (each process, or DataLoader worker, its own)
    and cached on the object; pickling drops the cache.

    Args:
        path (Union[str, os.PathLike]): the store folder (holding ``manifest.json``).

    Raises:
        StoreError: no complete store of this format at ``path``.

    Example::

        store = ExampleStore("runs/examples/ml100k-h200-0123abcd")
        store.rows("train"), store.num_items, store.log_events, list(store.columns)
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
        if self.manifest.get("format_version") != STORE_FORMAT_VERSION:
            raise StoreError(f"{mf}: format version {self.manifest.get('format_version')} != {STORE_FORMAT_VERSION}")
        self._cache: Dict[str, npt.NDArray[Any]] = {}

    def __getstate__(self) -> Dict[str, Any]:
        return {"path": self.path, "manifest": self.manifest, "_cache": {}}

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
    def has_p_true(self) -> bool:
        """Whether ``base.parquet`` carries ``p_true`` (the true click probability)."""
        return bool(self.manifest.get("has_p_true", False))

    @property
    def reference_columns(self) -> List[str]:
        """The reference columns ``base.parquet`` carries (``p_true`` and the world's ceilings; a
        store written before ceilings were carried lists ``p_true`` only)."""
        default = [P_TRUE_COLUMN] if self.has_p_true else []
        return list(self.manifest.get("reference_columns", default))

    @property
    def log_events(self) -> int:
        """``E``: events stored in the log (each once)."""
        return int(self.manifest["log"]["events"])

    @property
    def columns(self) -> Dict[str, ColumnInfo]:
        """Log columns of the store."""
        return {k: ColumnInfo(**v) for k, v in self.manifest["columns"].items()}

    def rows(self, split: str) -> int:
        return int(self.manifest["splits"][self._split(split)]["rows"])

    def history_events(self, split: Optional[str] = None) -> int:
        """Events in the examples' (capped) history windows, summed (what a materialized store keeps)."""
        names = SPLITS if split is None else (self._split(split),)
        return sum(int(self.manifest["splits"][s]["history_events"]) for s in names)

    def _split(self, split: str) -> str:
        if split not in SPLITS:
            raise StoreError(f"unknown split {split!r}; expected one of {SPLITS}")
        return split

    def file(self, split: str) -> Path:
        """``<split>/base.parquet``: the split's examples."""
        return self.path / self._split(split) / "base.parquet"

    def log_file(self, column: str) -> Path:
        """``log/<column>.parquet``."""
        return self.path / _LOG / f"{column}.parquet"

    def column(self, name: str) -> ColumnInfo:
        cols = self.columns
        if name not in cols:
            raise StoreError(
                f"history column {name!r} is not in the store {self.path} (has {sorted(cols)}); "
                f"write it with ExampleStore.add_history_column"
            )
        return cols[name]

    # ---- the log
    def log_offsets(self) -> npt.NDArray[np.int64]:
        """``[U + 1]`` int64: user ``u``'s events are log rows ``offsets[u]:offsets[u + 1]``."""
        if "__offsets" not in self._cache:
            off = np.load(self.path / _LOG / _OFFSETS)
            if off.shape != (self.num_users + 1,) or int(off[-1]) != self.log_events:
                raise StoreError(f"{self.path / _LOG / _OFFSETS}: shape {off.shape} / total {int(off[-1])} "
                                 f"do not match {self.num_users} users, {self.log_events} events")
            self._cache["__offsets"] = off.astype(np.int64, copy=False)
        return self._cache["__offsets"]

    def log_values(self, name: str) -> npt.NDArray[Any]:
        """The log column ``name`` (or ``"timestamp"``): ``[E]`` for ``W == 1``, else ``[E, W]``."""
        if name not in self._cache:
            if name != _LOG_TIMESTAMP:
                self.column(name)
            x = _to_numpy(_pq().read_table(self.log_file(name)).column(name))
            if x.shape[0] != self.log_events:
                raise StoreError(f"{self.log_file(name)}: {x.shape[0]} rows, the log has {self.log_events} events")
            self._cache[name] = x
        return self._cache[name]

    def item_table_file(self, column: str) -> Path:
        """``items/<column>.npy``: the item -> value table a derived column was written from."""
        return self.path / _ITEMS / f"{column}.npy"

    def item_values(self, column: str) -> npt.NDArray[Any]:
        """The item -> value table ``[num_items, W]`` of log column ``column`` (cached).

        ``hist_item_id`` is the identity (``arange(num_items)[:, None]``); a derived column's table
        is read from ``items/<column>.npy`` and checked against the column's fingerprint, so a
        target is never looked up in a table other than the one its history was written from.

        Raises:
            StoreError: unknown column, missing table file (stores written before item tables were
                kept: call :meth:`add_history_column` again, it writes the file), or a table whose
                shape or fingerprint does not match the column.

        Example::

            store.item_values("hist_sid")[item_id]        # [B, 1] packed SIDs of target items
        """
        key = f"__items__{column}"
        if key not in self._cache:
            info = self.column(column)
            if column == ITEM_HISTORY_COLUMN:
                tab: npt.NDArray[Any] = np.arange(self.num_items, dtype=np.int64)[:, None]
            else:
                p = self.item_table_file(column)
                if not p.is_file():
                    raise StoreError(f"{p}: the item table of column {column!r} is missing (the store predates "
                                     f"item tables); write it with ExampleStore.add_history_column({column!r}, table)")
                try:
                    tab = np.load(p, allow_pickle=False)
                except (OSError, ValueError) as e:
                    raise StoreError(f"{p}: unreadable item table: {e}") from e
                if tab.ndim != 2 or tab.shape != (self.num_items, info.width) or tab.dtype.name != info.dtype:
                    raise StoreError(f"{p}: item table {tab.dtype.name} {list(tab.shape)} does not match column "
                                     f"{column!r} ({info.dtype} [{self.num_items}, {info.width}])")
                if table_fingerprint(tab) != info.fingerprint:
                    raise StoreError(f"{p}: item table fingerprint {table_fingerprint(tab)} differs from column "
                                     f"{column!r}'s {info.fingerprint} (written by another table)")
            self._cache[key] = tab
        return self._cache[key]

    def windows(
        self, user_id: npt.NDArray[np.int64], num_prior: npt.NDArray[np.int64], max_history: Optional[int] = None
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Lengths ``[B]`` and log rows of examples' history windows (see :func:`window_index`).

        Args:
            user_id (npt.NDArray[np.int64]): ``[B]``.
            num_prior (npt.NDArray[np.int64]): ``[B]`` window ends (``base.parquet``'s ``num_prior``).
            max_history (Optional[int]): a further cap; the store's own cap always applies.

        Returns:
            Tuple: ``lengths [B]``, ``index [sum(lengths)]`` into every log column.
        """
        cap = _min_cap(self.max_history, max_history)
        offsets = self.log_offsets()
        return window_index(offsets[np.asarray(user_id, dtype=np.int64)], np.asarray(num_prior, dtype=np.int64), cap)

    # ---- reading
    def read(self, split: str, columns: Sequence[str] = (), max_history: Optional[int] = None) -> Any:
        """The whole split as one Arrow table: base columns plus the named histories as list columns
        (``large_list<T>``, or ``large_list<fixed_size_list<T, W>>``), built from the log."""
        pa, pq = _pa(), _pq()
        base = pq.read_table(self.file(split))
        arrays, names = list(base.columns), list(base.column_names)
        if columns:
            lengths, index = self.windows(base.column("user_id").to_numpy(), base.column("num_prior").to_numpy(),
                                          max_history)
            for c in columns:
                info = self.column(c)
                arrays.append(_list_array(lengths, self.log_values(c)[index], info.width))
                names.append(c)
        return pa.Table.from_arrays(arrays, names=names)

    def examples(self, split: str) -> Dict[str, npt.NDArray[Any]]:
        """Per-example columns of a split in store order (``user_id``, ``item_id``, ``label``,
        ``timestamp``, ``num_prior``, ``hist_len``, ``item_train_freq`` and the reference columns
        ``p_true``, ``p_content``, ... if present)."""
        t = _pq().read_table(self.file(split))
        return {c: t.column(c).to_numpy() for c in t.column_names}

    def interactions(self, split: str = "train") -> Dict[str, npt.NDArray[np.int64]]:
        """``{"user_id", "item_id", "timestamp"}`` of a split's impressions (``train``: what may be fitted)."""
        t = _pq().read_table(self.file(split), columns=["user_id", "item_id", "timestamp"])
        return {c: t.column(c).to_numpy() for c in t.column_names}

    # ---- writing derived columns
    def add_history_column(
        self, name: str, table: Union[Tensor, npt.ArrayLike], note: str = "", overwrite: bool = False
    ) -> ColumnInfo:
        """Writes the log column ``name``: each logged event's item mapped through ``table``.

        Written once, for the whole log (histories are windows of it): if the column exists with the
        same table fingerprint, nothing is done. The file is written to a temporary name and
        renamed, then the manifest is updated, so a column is listed only when its file is
        complete. Call it on one process only (rank 0) and synchronize.

        Args:
            name (str): column name (``[A-Za-z0-9_]``), also the KJT key the loader makes of it.
            table: ``[num_items, W]`` (or ``[num_items]``) item -> value table of a numeric dtype;
                kept as ``items/<name>.npy`` (see :meth:`item_values`).
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
        if tab.ndim != 2 or tab.shape[0] != self.num_items or tab.shape[1] < 1:
            raise StoreError(f"table for {name!r} must be [num_items={self.num_items}, W], got {list(tab.shape)}")
        if not (np.issubdtype(tab.dtype, np.integer) or np.issubdtype(tab.dtype, np.floating)):
            raise StoreError(f"table for {name!r} must be numeric, got {tab.dtype}")
        if not name.replace("_", "").isalnum() or name in (_LOG_TIMESTAMP, "offsets") + BASE_COLUMNS:
            raise StoreError(f"bad history column name {name!r}")
        fp = table_fingerprint(tab)
        existing = self.columns.get(name)
        if existing is not None:
            if existing.fingerprint == fp:
                if not self.item_table_file(name).is_file():  # stores written before item tables were kept
                    self._write_item_table(name, tab)
                return existing
            if not overwrite:
                raise StoreError(
                    f"history column {name!r} exists with another table (fingerprint "
                    f"{existing.fingerprint} != {fp}); pass overwrite=True or use a new name"
                )
        src = _pq().ParquetFile(self.log_file(ITEM_HISTORY_COLUMN))
        width = int(tab.shape[1])

        def mapped() -> Any:
            for rg in range(src.num_row_groups):
                items = src.read_row_group(rg).column(ITEM_HISTORY_COLUMN).to_numpy()
                values = tab[items]
                yield values[:, 0] if width == 1 else values

        self._write_item_table(name, tab)  # first: the manifest names the column only once both exist
        _write_log_column(self.log_file(name), name, mapped(), width, self.manifest["config"]["compression"])
        self._cache.pop(name, None)
        self._cache.pop(f"__items__{name}", None)
        info = ColumnInfo(name=name, dtype=tab.dtype.name, width=width, fingerprint=fp, note=note)
        self.manifest["columns"][name] = dataclasses.asdict(info)
        write_json(self.path / _MANIFEST, self.manifest)
        return info

    def _write_item_table(self, name: str, tab: npt.NDArray[Any]) -> None:
        p = self.item_table_file(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(tab), allow_pickle=False)

    # ---- footprint
    def footprint(self, name: str) -> Dict[str, Any]:
        """Bytes per stored event of log column ``name``, measured on its written file.

        Returns:
            Dict[str, Any]: ``log_events`` (``E``, each stored once); ``history_events`` (events in
            all examples' windows: what a materialized store would write); ``value_bytes_per_event``
            (``W * itemsize``: the values as a model consumes them); ``raw_bytes_per_event``
            (Parquet pages before compression, plain encoding, levels included);
            ``compressed_bytes_per_event`` (the file on disk, metadata included, divided by ``E``);
            ``compressed_bytes_per_history_event`` (the file divided by ``history_events``);
            ``file_bytes``; ``compression``. ``parquet_uncompressed_bytes_per_event`` and
            ``file_bytes_per_event`` repeat the raw and compressed numbers under their older names.

        Example::

            fp = store.footprint("hist_sid")
            fp["raw_bytes_per_event"], fp["compressed_bytes_per_event"]
        """
        info = self.column(name)
        p = self.log_file(name)
        file_bytes = p.stat().st_size
        md = _pq().ParquetFile(p).metadata
        raw = sum(md.row_group(rg).column(c).total_uncompressed_size
                  for rg in range(md.num_row_groups) for c in range(md.num_columns))
        events = self.log_events
        hist = self.history_events()
        per = max(events, 1)
        return {
            "log_events": float(events),
            "history_events": float(hist),
            "value_bytes_per_event": float(info.width * np.dtype(info.dtype).itemsize),
            "raw_bytes_per_event": raw / per,
            "compressed_bytes_per_event": file_bytes / per,
            "compressed_bytes_per_history_event": file_bytes / max(hist, 1),
            "parquet_uncompressed_bytes_per_event": raw / per,
            "file_bytes_per_event": file_bytes / per,
            "file_bytes": float(file_bytes),
            "compression": self.manifest["config"]["compression"],
        }


def _min_cap(a: Optional[int], b: Optional[int]) -> Optional[int]:
    caps = [c for c in (a, b) if c is not None]
    return min(caps) if caps else None


# --------------------------------------------------------------------------------------------
# writing


def write_store(
    source: EventSource,
    path: Union[str, "os.PathLike[str]"],
    config: ExamplesConfig,
    info: Optional[Mapping[str, Any]] = None,
) -> ExampleStore:
    """Writes ``source`` as a store at ``path`` (atomically: a temporary folder, then a rename).

    Args:
        source (EventSource): events (the logs) and impressions (the examples).
        path: the store folder (must not exist, or hold a store to replace).
        config (ExamplesConfig): recorded in the manifest (its ``max_history``, ``row_group_size``
            and ``compression`` apply).
        info (Optional[Mapping[str, Any]]): extra provenance recorded in the manifest.

    Returns:
        ExampleStore: the written store, with the log column ``hist_item_id``.

    Example::

        store = write_store(ratings_source(synthetic_ratings(), 200, 300), "runs/ex/s", ExamplesConfig())
    """
    pa, pq = _pa(), _pq()
    target = Path(path)
    end = source.hist_end()
    offsets = source.user_offsets()
    log_len = np.diff(offsets)
    if (end < 0).any() or (end > log_len[source.user_id]).any():
        raise StoreError("window ends outside the users' logs (events not sorted by user and time?)")
    hist_len = end if config.max_history is None else np.minimum(end, config.max_history)
    freq = source.item_train_freq()
    refs = source.references()
    splits: Dict[str, Any] = {}
    with atomic_dir(target, _MANIFEST) as tmp:
        for k, s in enumerate(SPLITS):
            idx = np.flatnonzero(source.split == k)
            (tmp / s).mkdir()
            cols: List[Any] = [source.user_id[idx], source.item_id[idx], source.label[idx].astype(np.float32),
                               source.timestamp[idx], end[idx], hist_len[idx].astype(np.int32), freq[idx]]
            names = list(BASE_COLUMNS)
            for rc, values in refs.items():
                cols.append(values[idx].astype(np.float32))
                names.append(rc)
            base = pa.Table.from_arrays([pa.array(c) for c in cols], names=names)
            pq.write_table(base, tmp / s / "base.parquet", row_group_size=config.row_group_size,
                           compression=_compression(config.compression))
            ts = source.timestamp[idx]
            splits[s] = {
                "rows": int(idx.size), "history_events": int(hist_len[idx].sum()),
                "positives": int(source.label[idx].sum()),
                "users": int(np.unique(source.user_id[idx]).size),
                "items": int(np.unique(source.item_id[idx]).size),
                "cold_examples": int((freq[idx] == 0).sum()),
                "t_min": int(ts.min()) if ts.size else None, "t_max": int(ts.max()) if ts.size else None,
            }
        (tmp / _LOG).mkdir()
        np.save(tmp / _LOG / _OFFSETS, offsets)
        _write_log_column(tmp / _LOG / f"{_LOG_TIMESTAMP}.parquet", _LOG_TIMESTAMP,
                          _chunks(source.event_timestamp), 1, config.compression)
        _write_log_column(tmp / _LOG / f"{ITEM_HISTORY_COLUMN}.parquet", ITEM_HISTORY_COLUMN,
                          _chunks(source.event_item), 1, config.compression)
        ident = np.arange(source.num_items, dtype=np.int64)[:, None]
        manifest = {
            "format_version": STORE_FORMAT_VERSION,
            "config": dataclasses.asdict(config),
            "fingerprint": config.fingerprint(),
            "num_users": int(source.num_users),
            "num_items": int(source.num_items),
            "t_val": int(source.t_val),
            "t_test": int(source.t_test),
            "has_p_true": source.p_true is not None,
            "reference_columns": list(refs),
            "splits": splits,
            "log": {"events": int(source.num_events), "users_with_events": int((log_len > 0).sum()),
                    "max_len": int(log_len.max()) if log_len.size else 0,
                    "median_len_of_users_with_events": float(np.median(log_len[log_len > 0])) if (log_len > 0).any() else 0.0},
            "dense_features": list(DENSE_FEATURES),
            "columns": {ITEM_HISTORY_COLUMN: dataclasses.asdict(ColumnInfo(
                ITEM_HISTORY_COLUMN, "int64", 1, table_fingerprint(ident), "event item ids"))},
            "info": {**source.info, **dict(info or {})},
        }
        write_json(tmp / _MANIFEST, manifest)
    return ExampleStore(target)


def prepare_store(cfg: ExamplesConfig, root: Union[str, "os.PathLike[str]"]) -> ExampleStore:
    """Opens the store of ``cfg`` under ``root``, writing it first if it does not exist yet.

    The store folder is ``root / cfg.store_name()`` (dataset, history cap and a fingerprint of the
    protocol settings, the store format and, for a simulated world, its manifest), so a different
    cap, split or world never reuses stale files. Call it on one process (rank 0), then
    synchronize; other ranks open the store with :class:`ExampleStore`.

    Args:
        cfg (ExamplesConfig): what to build (``dataset`` ``ml100k``, ``synthetic`` or ``adsworld``).
        root: parent folder of stores.

    Returns:
        ExampleStore: the store (with the ``hist_item_id`` log column).

    Raises:
        StoreError: the source cannot be read (the message names the file and field).

    Example::

        store = prepare_store(ExamplesConfig(), "runs/examples")
        store = prepare_store(ExamplesConfig(dataset="adsworld", world_dir="runs/world"), "runs/examples")
    """
    path = Path(root) / cfg.store_name()
    if (path / _MANIFEST).is_file():
        try:
            store = ExampleStore(path)
            if store.manifest.get("fingerprint") == cfg.fingerprint():
                return store
        except StoreError as e:
            logger.warning("example store %s is unusable (%s); rewriting it", path, e)
        logger.warning("example store %s has another fingerprint; rewriting it", path)
    try:
        source = load_source(cfg)
    except SourceError as e:
        raise StoreError(str(e)) from e
    logger.info("writing example store %s (%d examples, %d log events)", path, len(source), source.num_events)
    return write_store(source, path, cfg)
