# pyre-strict
"""The request file of ``torchrec-side predict``: one row per (user, candidate item) to score.

**Schema** (Parquet; column names as in the example store, docs/design.md section 7):

=====================  =========================================================================
``user_id``            int (required): the user, ``[0, num_users)`` of the training store.
``item_id``            int (required): the candidate (target) item, ``[0, num_items)``.
``num_prior``          int (required): how many events the user had before this one (uncapped);
                       the dense features are derived from it exactly as in training:
                       ``log1p(num_prior) / log1p(1000)`` and ``num_prior == 0``.
history columns        one list column per history column the model reads, named as in the store
                       (``serving.json`` lists them: e.g. ``hist_item_id`` item ids, ``hist_sid``
                       packed SIDs, ``hist_pn_*`` prefix-ngram token ids): the user's earlier
                       events, oldest first, ``list<int64>`` (one value per event) or, for a column
                       of width ``W > 1``, ``list<fixed_size_list<int64, W>>``. Histories longer than
                       the store's ``max_history`` are cut to their last ``max_history`` events, as
                       the store does.
anything else          passed through to the output unchanged (``label``, ``timestamp``, request ids).
=====================  =========================================================================

Output (``--out scores.parquet``): every request column except the history lists, plus
``score`` (float32, the predicted probability), in request order.

:func:`write_requests_from_store` writes a split of the run's store in this schema (what
``torchrec-side predict RUN --from-store test`` scores).

Example::

    spec = read_spec("runs/x/export")
    dense, values, lengths = request_tensors(pq.read_table("requests.parquet"), spec)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import numpy.typing as npt
import torch

from torchrec_side.io import atomic_path, PARQUET_KIND_KEY, PathLike
from torchrec_side.serving.artifact import ServingSpec
from torchrec_side.serving.rebuild import ServingError

__all__ = ["REQUIRED_COLUMNS", "SCORE_COLUMN", "REQUESTS_KIND", "dense_from_num_prior", "request_tensors", "write_requests_from_store"]

#: Columns every request file needs besides the model's history columns.
REQUIRED_COLUMNS: Tuple[str, ...] = ("user_id", "item_id", "num_prior")
#: Name of the output column.
SCORE_COLUMN: str = "score"


def dense_from_num_prior(num_prior: npt.NDArray[Any]) -> torch.Tensor:
    """``[B, 2]`` float32 dense features (``log_num_prior``, ``no_history``) from ``num_prior [B]``,
    the training loader's formula."""
    x = np.asarray(num_prior, dtype=np.float32)
    dense = np.stack([np.log1p(x) / math.log1p(1000.0), (x == 0).astype(np.float32)], axis=1)
    return torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32))


def _int_column(table: Any, name: str, where: str) -> npt.NDArray[np.int64]:
    import pyarrow as pa

    col = table.column(name)
    if not pa.types.is_integer(col.type):
        raise ServingError(f"{where}: column {name!r} must hold integers, found {col.type}")
    if col.null_count:
        raise ServingError(f"{where}: column {name!r} has {col.null_count} missing values")
    return np.asarray(col.to_numpy(), dtype=np.int64)


def _list_column(table: Any, name: str, width: int, where: str) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(lengths [B], values [N] or [N, W])`` of a history list column."""
    import pyarrow as pa

    arr = table.column(name)
    if isinstance(arr, pa.ChunkedArray):  # a Table's column; a RecordBatch's is an Array already
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        raise ServingError(f"{where}: history column {name!r} must be a list column, found {arr.type}")
    if arr.null_count:
        raise ServingError(f"{where}: history column {name!r} has {arr.null_count} null rows (use empty lists)")
    offsets = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    start, end = int(offsets[0]), int(offsets[-1])
    inner = arr.values.slice(start, end - start)
    # a null event would turn the whole column into float64 (NaN) and round every packed SID of
    # every request in the batch above 2^53: refused, naming the first row that has one

    def refuse_nulls(per_event: npt.NDArray[np.bool_]) -> None:
        if per_event.any():
            first = int(np.searchsorted(offsets - start, int(np.flatnonzero(per_event)[0]), side="right") - 1)
            raise ServingError(f"{where}: history column {name!r} has {int(per_event.sum())} null event(s) inside "
                               f"its lists (the first in row {first}); every event must be an integer")

    refuse_nulls(np.asarray(inner.is_null().to_numpy(zero_copy_only=False), dtype=bool))
    if width == 1:
        if not pa.types.is_integer(inner.type):
            raise ServingError(f"{where}: history column {name!r} must be list<int64>, found {arr.type}")
        flat = np.asarray(inner.to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        if not (pa.types.is_fixed_size_list(inner.type) or pa.types.is_list(inner.type)
                or pa.types.is_large_list(inner.type)) or not pa.types.is_integer(inner.type.value_type):
            raise ServingError(f"{where}: history column {name!r} must be list<fixed_size_list<int64, {width}>>, "
                               f"found {arr.type}")
        sub = np.diff(np.asarray(inner.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)) \
            if not pa.types.is_fixed_size_list(inner.type) else np.full(len(inner), inner.type.list_size)
        if len(sub) and not (sub == width).all():
            raise ServingError(f"{where}: history column {name!r} needs {width} values per event, found "
                               f"{sorted(set(sub.tolist()))[:5]}")
        values = inner.flatten()  # every event has its `width` values now: a null value's event is its row / width
        null_values = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool).reshape(-1, width)
        refuse_nulls(np.asarray(null_values.any(axis=1), dtype=bool))
        flat = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64).reshape(-1, width)
    return np.diff(offsets - start), flat


def request_tensors(table: Any, spec: ServingSpec, where: str = "requests") -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
    """Request rows -> the program's inputs: ``(dense [B, F], values per key, lengths per key)``.

    Args:
        table (pyarrow.Table or RecordBatch): request rows (see the module docstring).
        spec (ServingSpec): the artifact's ``serving.json``.
        where (str): name used in error messages (e.g. the file).

    Returns:
        ``dense`` float32 ``[B, F]``; ``values`` / ``lengths``: int64 tensors in ``spec.keys`` order.

    Raises:
        ServingError: a missing column (named, with what the model needs), a wrong type, nulls.
    """
    names = list(table.schema.names)
    need = list(REQUIRED_COLUMNS) + spec.history_columns
    missing = [c for c in need if c not in names]
    if missing:
        raise ServingError(f"{where}: missing columns {missing}; this model needs {need} "
                           f"(see torchrec_side/serving/requests.py for the schema)")
    user = _int_column(table, "user_id", where)
    item = _int_column(table, "item_id", where)
    num_prior = _int_column(table, "num_prior", where)
    if (num_prior < 0).any():
        raise ServingError(f"{where}: column 'num_prior' has negative values (min {int(num_prior.min())})")
    b = len(user)
    ids = {"user_id": user, "item_id": item}
    values: List[torch.Tensor] = [torch.from_numpy(ids[k].copy()) for k in spec.id_features]
    lengths: List[torch.Tensor] = [torch.ones(b, dtype=torch.int64) for _ in spec.id_features]
    cap = spec.max_history
    for h in spec.history:
        lens, flat = _list_column(table, h.column, h.width, where)
        if cap is not None and (lens > cap).any():  # keep the last `cap` events, as the store does
            offsets = np.concatenate([[0], np.cumsum(lens)])
            keep = np.minimum(lens, cap)
            idx = np.repeat(offsets[1:] - keep, keep) + (np.arange(int(keep.sum())) - np.repeat(np.cumsum(keep) - keep, keep))
            flat, lens = flat[idx], keep
        if h.width == 1 or h.flatten:
            values.append(torch.from_numpy(np.array(flat.reshape(-1), dtype=np.int64)))
            lengths.append(torch.from_numpy(np.array(lens * (h.width if h.flatten else 1), dtype=np.int64)))
        else:
            for j in range(h.width):
                values.append(torch.from_numpy(np.array(flat[:, j], dtype=np.int64)))
                lengths.append(torch.from_numpy(np.array(lens, dtype=np.int64)))
    return dense_from_num_prior(num_prior), values, lengths


#: :data:`~torchrec_side.io.PARQUET_KIND_KEY` of the request files written from a store.
REQUESTS_KIND: str = "requests"


def write_requests_from_store(store: Any, split: str, spec: ServingSpec, out: PathLike) -> int:
    """Writes a split of an example store as a request file (atomically).

    Args:
        store (ExampleStore): the run's store.
        split (str): ``train``, ``val`` or ``test``.
        spec (ServingSpec): which history columns the model reads.
        out (PathLike): the Parquet file to write.

    Returns:
        int: rows written.

    Example::

        write_requests_from_store(run.store, "test", spec, "runs/x/requests_test.parquet")
    """
    import pyarrow.parquet as pq

    try:
        table = store.read(split, spec.history_columns)
    except (ValueError, KeyError) as e:
        raise ServingError(f"store {store.path}: cannot read split {split!r}: {e}") from e
    keep = [c for c in ("user_id", "item_id", "num_prior", "label", "timestamp") if c in table.schema.names]
    table = table.select(keep + spec.history_columns)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), PARQUET_KIND_KEY: REQUESTS_KIND.encode()})
    with atomic_path(Path(out)) as tmp:
        pq.write_table(table, tmp)
    return int(table.num_rows)
