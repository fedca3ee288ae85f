# pyre-strict
"""Batches of the example store (docs/design.md sections 7 and 7c) for TorchRec models.

**Loading** (:class:`ExampleDataset`, :func:`make_dataloader`). Batches come out as
:class:`ExampleBatch`: a ``KeyedJaggedTensor`` (``user_id``, ``item_id``, the history keys), a
dense tensor and labels, built in a DataLoader worker. A batch's histories are windows of the
store's per-user event logs: example ``k`` of user ``u`` with ``num_prior = n`` gets log rows
``offsets[u] + max(0, n - cap) : offsets[u] + n`` (``cap``: the store's ``max_history``, and the
loader's if smaller): long windows copied as contiguous log runs (one copy per example and
column), short ones gathered for the whole batch through one ``repeat`` + ``arange`` index
(:func:`torchrec_side.data.store.window_index`), no Python loop per event; every key's values are
written straight into one preallocated buffer (``ExampleDataset._make_batch``). Every rank
sees the same global batch sequence and takes its own slice, so all ranks run the same number of
steps (which sharded modules require). A :class:`TargetInput` adds the *target* item's values from a
column's item table (one event per example, ``table[item_id]`` for the batch at once).

Example::

    from torchrec_side.data.loader import HistoryInput, make_dataloader

    loader = make_dataloader(store, "train", [HistoryInput("hist_sid")], batch_size=256)
    batch = next(iter(loader))
    batch.sparse_features.keys()          # ['user_id', 'item_id', 'hist_sid']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable

from torchrec_side.data.protocol import DENSE_FEATURES, ID_FEATURES
from torchrec_side.data.store import _min_cap, _pa, _pq, ColumnInfo, ExampleStore, StoreError

__all__ = [
    "DENSE_FEATURES",
    "ID_FEATURES",
    "HistoryInput",
    "TargetInput",
    "ExampleBatch",
    "ExampleDataset",
    "make_dataloader",
]


# --------------------------------------------------------------------------------------------
# Loading


def _resolve_keys(what: str, column: str, keys: Optional[Tuple[str, ...]], flatten: bool, width: int,
                  base: str) -> List[str]:
    """The KJT keys of a ``W = width`` column: ``keys`` if given (checked), else ``[base]`` (one key:
    ``W == 1`` or ``flatten``) or ``[base_0 .. base_{W-1}]``."""
    want = 1 if (width == 1 or flatten) else width
    if keys is not None:
        if len(keys) != want:
            raise StoreError(f"{what} {column!r}: {len(keys)} keys given, {want} needed")
        return list(keys)
    return [base] if want == 1 else [f"{base}_{j}" for j in range(width)]


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
        return _resolve_keys("history input", self.column, self.keys, self.flatten, width, self.column)


@dataclass(frozen=True)
class TargetInput:
    """How the loader represents the *target item* through a column's item -> value table.

    The target of each example is looked up in the store's item table of ``column``
    (:meth:`~torchrec_side.data.store.ExampleStore.item_values`: the table the history column was
    written from; the identity for ``hist_item_id``), one event per example: the target's packed
    SID, its prefix-ngram token ids, or its item id (raw content and sparse-ID embed item ids in the
    model). So a content variant sees the target through the same path as the history
    (docs/design.md section 7b).

    Args:
        column (str): the store's history column whose item table is used.
        keys (Optional[Tuple[str, ...]]): KJT key names. Default: ``[f"{column}_target"]`` for
            ``W == 1`` (or ``flatten``), else ``[f"{column}_target_{j}"]`` per slot.
        flatten (bool): ``W`` values per example in one key.

    Example::

        TargetInput("hist_sid")                      # KJT key "hist_sid_target", lengths all 1
    """

    column: str
    keys: Optional[Tuple[str, ...]] = None
    flatten: bool = False

    def resolve_keys(self, width: int) -> List[str]:
        return _resolve_keys("target input", self.column, self.keys, self.flatten, width, f"{self.column}_target")


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
        self.sparse_features.record_stream(stream)  # pyright: ignore[reportArgumentType]  (torchrec types it as a CUDA stream)
        self.labels.record_stream(stream)
        self.weights.record_stream(stream)

    def pin_memory(self) -> "ExampleBatch":  # pragma: no cover - CUDA only
        return ExampleBatch(self.dense_features.pin_memory(), self.sparse_features.pin_memory(),
                            self.labels.pin_memory(), self.weights.pin_memory())

    @property
    def batch_size(self) -> int:
        return int(self.labels.numel())


class ExampleDataset(torch.utils.data.IterableDataset):  # pyre-ignore[13]
    """Batches of one split for one rank: the split's examples (``base.parquet``), each with its
    history windows gathered from the store's event log (see the module docstring).

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
        history (Sequence[Union[HistoryInput, TargetInput]]): history columns to load and target
            lookups (:class:`TargetInput`: the target item's values from a column's item table, one
            event per example), in KJT key order.
        batch_size (int): ``B``, rows per rank per batch.
        rank (int): this rank.
        world_size (int): number of ranks.
        shuffle (bool): training order (see above); else time order with padding.
        seed (int): shuffle seed.
        shuffle_row_groups (int): row groups per shuffle buffer.
        transform (Optional[Callable[[KeyedJaggedTensor], KeyedJaggedTensor]]): applied to the
            KJT in the worker (e.g. a SID -> token-id mapper).
        max_history (Optional[int]): keep only the last ``max_history`` events of each history
            (``None``: the store's cap, ``store.max_history``; the smaller of the two applies).
        item_rows (Optional[np.ndarray]): ``[num_items]`` int64 row of the ``item_id`` feature per
            item id (id admission, ``torchrec_side.models.builder.admitted_item_rows``); target
            lookups (:class:`TargetInput`) still use the item id. ``None``: the item id.

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
        history: Sequence[Union[HistoryInput, TargetInput]] = (),
        batch_size: int = 256,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_row_groups: int = 8,
        transform: Optional[Callable[[KeyedJaggedTensor], KeyedJaggedTensor]] = None,
        max_history: Optional[int] = None,
        item_rows: Optional[npt.NDArray[np.int64]] = None,
    ) -> None:
        super().__init__()
        rows_map = None if item_rows is None else np.asarray(item_rows, dtype=np.int64)
        if rows_map is not None and (rows_map.ndim != 1 or rows_map.shape[0] != store.num_items):
            raise ValueError(f"item_rows must be [num_items={store.num_items}], got {list(rows_map.shape)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_history is not None and max_history < 1:
            raise ValueError(f"max_history must be >= 1 or None, got {max_history}")
        self.store = store
        self.split = split
        self.history: List[Union[HistoryInput, TargetInput]] = list(history)
        self.infos: List[ColumnInfo] = [store.column(h.column) for h in self.history]
        for h, info in zip(self.history, self.infos):
            if not isinstance(h, (HistoryInput, TargetInput)):
                raise TypeError(f"history inputs must be HistoryInput or TargetInput, got {type(h).__name__}")
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
        self.item_rows = rows_map
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
    def _files(self) -> Any:
        return _pq().ParquetFile(self.store.file(self.split))

    def _row_group(self, f: Any, i: int) -> Any:
        return f.read_row_group(i)

    def _global_batches(self) -> Iterator[Tuple[int, Any, int]]:
        """Yields ``(index, table of <= G rows, G)`` for each global batch of the epoch."""
        pa = _pa()
        files = self._files()
        n_rg = files.num_row_groups
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

    #: Mean events per history window from which a batch's windows are copied as contiguous log
    #: slices (one copy per example and column, no index array: 3-5x faster at 10^3 events) rather
    #: than gathered through one ``window_index`` (faster for short windows: no per-example loop).
    slice_min_mean_events: int = 32

    def _make_batch(self, t: Any) -> ExampleBatch:
        """Arrow rows -> ExampleBatch, padded to ``batch_size`` rows (vectorized).

        The KJT's values are written once, into one preallocated int64 buffer, each key into its
        slice: no per-key array is concatenated. A history window is a contiguous run of log rows,
        so long windows (mean at least :attr:`slice_min_mean_events`) are copied run by run
        straight from the log (a ``W``-value column's run transposed into its ``W`` keys' slices,
        which are consecutive); short ones are gathered through the windows' row index
        (:func:`~torchrec_side.data.store.window_index`, ``np.take``). Both give, bit for bit, the
        per-key values ``log[index][:, j]`` concatenated in key order
        (``tests/data/test_data_loader_batch.py`` checks both against a plain per-example
        reference). At 10^3 events per window this is 3-5x faster than one fancy-indexed gather
        plus per-key copies and a concatenation (``benchmarks/train_throughput.py``, loader phase).
        """
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
        end = col("num_prior", np.int64)[:n]
        cap = _min_cap(self.store.max_history, self.max_history)
        keep = end if cap is None else np.minimum(end, cap)
        events = int(keep.sum())
        lens = np.concatenate([keep, np.zeros(pad, np.int64)]) if pad else keep.astype(np.int64, copy=False)
        ones = np.ones(b, np.int64)
        runs: Optional[List[Tuple[int, int]]] = None  # each window's log rows [lo, hi), or:
        index: npt.NDArray[np.int64] = np.zeros(0, np.int64)  # the windows' log rows, concatenated
        if self.history and n and events >= self.slice_min_mean_events * n:
            hi = self.store.log_offsets()[user[:n]] + end
            runs = list(zip((hi - keep).tolist(), hi.tolist()))
        else:
            index = self.store.windows(user[:n], end, self.max_history)[1]

        def history_rows(src: npt.NDArray[Any]) -> npt.NDArray[Any]:  # [events] or [events, W]
            if runs is None:
                return np.take(src, index, axis=0)
            return np.concatenate([src[a:z] for a, z in runs]) if runs else src[:0]

        def fill_history(src: npt.NDArray[Any], out: npt.NDArray[np.int64]) -> None:  # W == 1
            if runs is None:
                if src.dtype == np.int64:  # index holds log rows: in range by construction
                    np.take(src, index, out=out, mode="clip")
                else:
                    out[:] = np.take(src, index)
                return
            o = 0
            for a, z in runs:
                out[o: o + z - a] = src[a:z]
                o += z - a

        def fill_slots(src: npt.NDArray[Any], out: npt.NDArray[np.int64]) -> None:  # W > 1, runs
            view, o = out.reshape(src.shape[1], -1), 0
            for a, z in runs or ():
                view[:, o: o + z - a] = src[a:z].T
                o += z - a

        # the plan, per KJT key (or block of consecutive keys): (lengths, value count, how to fill its slice)
        plan: List[Tuple[npt.NDArray[np.int64], int, Callable[[npt.NDArray[np.int64]], None]]] = []
        plan.append((ones, b, lambda out: out.__setitem__(slice(None), user)))
        ids = item if self.item_rows is None else self.item_rows[item]
        plan.append((ones, b, lambda out: out.__setitem__(slice(None), ids)))
        for h, info in zip(self.history, self.infos):
            w = info.width
            if isinstance(h, TargetInput):  # one event per example: the target's row of the item table
                rows = np.take(self.store.item_values(h.column), item, axis=0)  # [B, W]
                if w == 1 or h.flatten:
                    plan.append((ones * (w if h.flatten else 1), b * w,
                                 lambda out, r=rows: out.__setitem__(slice(None), r.reshape(-1))))
                else:
                    for j in range(w):
                        plan.append((ones, b, lambda out, r=rows, j=j: out.__setitem__(slice(None), r[:, j])))
                continue
            src = self.store.log_values(h.column)
            if w == 1:
                plan.append((lens, events, lambda out, s=src.reshape(-1): fill_history(s, out)))
                continue
            cache: List[npt.NDArray[Any]] = []  # this column's [events, W] rows, built once for its slots

            def get(s: npt.NDArray[Any] = src, c: List[npt.NDArray[Any]] = cache) -> npt.NDArray[Any]:
                if not c:
                    c.append(history_rows(s))
                return c[0]

            if h.flatten:  # W values per event, event-major
                plan.append((lens * w, events * w, lambda out, g=get: out.__setitem__(slice(None), g().reshape(-1))))
            elif runs is not None:  # the W keys' slices are consecutive: [W, events], each run transposed in
                plan.append((np.tile(lens, w), events * w, lambda out, s=src: fill_slots(s, out)))
            else:
                for j in range(w):
                    plan.append((lens, events, lambda out, g=get, j=j: out.__setitem__(slice(None), g()[:, j])))
        values = np.empty(sum(c for _, c, _ in plan), dtype=np.int64)
        lo = 0
        for _, c, fill in plan:
            fill(values[lo: lo + c])
            lo += c
        kjt = KeyedJaggedTensor(
            keys=self.keys,
            values=torch.from_numpy(values),
            lengths=torch.from_numpy(np.concatenate([lg for lg, _, _ in plan])),
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
    history: Sequence[Union[HistoryInput, TargetInput]] = (),
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
