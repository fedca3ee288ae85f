# pyre-strict
"""Per-run test predictions: ``predictions_test.parquet`` beside ``metrics.json``.

Every finished training run writes (rank 0, atomically) one row per test example, in store order,
scored by the model of the best validation epoch::

    user_id int64, item_id int64, label float32,
    score float32            predicted click probability
    hist_len int32           history events the model saw
    item_train_freq int64    the target item's count in the training split (0 = cold)
    p_true float32           true click probability (only when the data has an oracle)
    p_content, p_id, p_content_item float32
                             the world's ceilings, when it stores them (the reference columns
                             ``torchrec_side.data.events.REFERENCE_COLUMNS``, copied from the store)

Runs of different variants with the same seed on the same data share the store and its test
split, so their files have identical ``user_id`` / ``item_id`` / ``label`` columns in identical
order and can be paired row by row (:func:`check_paired`) for paired bootstraps over users.

Example::

    a = read_predictions("runs/demo/train/dlrm_control/seed0/predictions_test.parquet")
    b = read_predictions("runs/demo/train/dlrm_side/seed0/predictions_test.parquet")
    check_paired(a, b, "control", "side")
    gain = a["score"] - b["score"]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

from torchrec_side.errors import TorchRecSideError
from torchrec_side.data.events import REFERENCE_COLUMNS

__all__ = ["PREDICTIONS_FILE", "PAIR_COLUMNS", "gather_in_store_order", "order_rows", "example_columns", "write_predictions",
           "read_predictions", "check_paired", "PredictionsError"]

#: File name inside a run folder.
PREDICTIONS_FILE: str = "predictions_test.parquet"
#: Columns two runs' files must share, row by row, to be paired.
PAIR_COLUMNS: Tuple[str, ...] = ("user_id", "item_id", "label")


class PredictionsError(TorchRecSideError, ValueError):
    """Predictions that cannot be written or paired (misaligned rows, wrong columns)."""


def gather_in_store_order(
    collected: Sequence[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> Optional[Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
    """Assembles every rank's evaluation batches into store order (collective).

    The evaluation loader gives rank ``r`` rows ``[r * B, (r + 1) * B)`` of each global batch
    and pads the last global batch with weight-0 rows; every rank has the same number of batches.

    Args:
        collected: this rank's ``(scores [B], labels [B], weights [B])`` per batch (from
            :func:`~torchrec_side.train.metrics.evaluate`'s ``collect``).

    Returns:
        On rank 0, ``(scores [N], labels [N])`` of the split's ``N`` real rows in store order;
        ``None`` on other ranks.
    """
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    if collected:
        local = torch.stack([torch.stack([s.float(), y.float(), w.float()]) for s, y, w in collected])  # [nb, 3, B]
    else:
        local = torch.zeros(0, 3, 0)
    if world > 1:
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local)
        full = torch.stack(parts, dim=1)  # [nb, W, 3, B]
    else:
        full = local[:, None]
    if rank != 0:
        return None
    return order_rows(full)


def order_rows(full: torch.Tensor) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``[num_batches, W, 3, B]`` (per batch, per rank: scores, labels, weights) -> the real rows'
    ``(scores [N], labels [N])`` in store order: global batch by global batch, each the ranks'
    slices in rank order, weight-0 padding dropped."""
    rows = full.permute(0, 1, 3, 2).reshape(-1, 3)
    keep = rows[:, 2] > 0
    return rows[keep, 0].numpy().astype(np.float32), rows[keep, 1].numpy().astype(np.float32)


def example_columns(store: Any, split: str = "test") -> Dict[str, npt.NDArray[Any]]:
    """Per-example columns of ``split`` in store order: ``user_id``, ``item_id``, ``label``,
    ``hist_len``, ``item_train_freq`` and the reference columns the store has (``p_true`` and the
    world's ceilings, :data:`~torchrec_side.data.events.REFERENCE_COLUMNS`).

    The one place that knows where these come from: the store's per-example table when it has
    one (``store.examples(split)``), else the base file (``hist_len`` = ``min(num_prior,
    max_history)``) and the training split's item counts.
    """
    ex: Dict[str, npt.NDArray[Any]]
    if hasattr(store, "examples"):
        ex = dict(store.examples(split))
    else:
        t = store.read(split)
        ex = {c: t.column(c).to_numpy() for c in t.column_names}
    out: Dict[str, npt.NDArray[Any]] = {
        "user_id": np.asarray(ex["user_id"], dtype=np.int64),
        "item_id": np.asarray(ex["item_id"], dtype=np.int64),
        "label": np.asarray(ex["label"], dtype=np.float32),
    }
    if "hist_len" in ex:
        out["hist_len"] = np.asarray(ex["hist_len"], dtype=np.int32)
    else:
        prior = np.asarray(ex["num_prior"], dtype=np.int64)
        cap = store.max_history
        out["hist_len"] = (prior if cap is None else np.minimum(prior, int(cap))).astype(np.int32)
    if "item_train_freq" in ex:
        out["item_train_freq"] = np.asarray(ex["item_train_freq"], dtype=np.int64)
    else:
        train_items = np.asarray(store.interactions("train")["item_id"], dtype=np.int64)
        counts = np.bincount(train_items, minlength=int(store.num_items)).astype(np.int64)
        out["item_train_freq"] = counts[out["item_id"]]
    for c in REFERENCE_COLUMNS:
        if c in ex:
            out[c] = np.asarray(ex[c], dtype=np.float32)
    return out


def write_predictions(
    path: Union[str, "os.PathLike[str]"],
    columns: Dict[str, npt.NDArray[Any]],
    scores: npt.NDArray[np.float32],
    labels: npt.NDArray[np.float32],
) -> Path:
    """Writes the predictions file atomically.

    Args:
        path: the file (``<run_dir>/predictions_test.parquet``).
        columns: :func:`example_columns` of the split.
        scores (npt.NDArray[np.float32]): ``[N]`` predicted probabilities in store order.
        labels (npt.NDArray[np.float32]): ``[N]`` the labels the model was scored against (checked
            against the store's, so a misaligned gather can never be written).

    Raises:
        PredictionsError: row count or labels differ from the store's, or a score is not finite.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from torchrec_side.io import atomic_path

    n = int(columns["user_id"].size)
    if scores.shape != (n,) or labels.shape != (n,):
        raise PredictionsError(f"{path}: {scores.shape[0]} scores for {n} examples of the split")
    if not np.array_equal(labels, columns["label"]):
        bad = int(np.flatnonzero(labels != columns["label"])[0])
        raise PredictionsError(f"{path}: scored labels differ from the store's at row {bad}: rows are misaligned")
    if not np.isfinite(scores).all():
        raise PredictionsError(f"{path}: {int((~np.isfinite(scores)).sum())} non-finite scores")
    fields: List[Tuple[str, Any, Any]] = [
        ("user_id", columns["user_id"], pa.int64()), ("item_id", columns["item_id"], pa.int64()),
        ("label", columns["label"], pa.float32()), ("score", scores.astype(np.float32), pa.float32()),
        ("hist_len", columns["hist_len"], pa.int32()), ("item_train_freq", columns["item_train_freq"], pa.int64()),
    ]
    fields += [(c, columns[c], pa.float32()) for c in REFERENCE_COLUMNS if c in columns]
    table = pa.Table.from_arrays([pa.array(v, type=t) for _, v, t in fields], names=[f for f, _, _ in fields])
    target = Path(path)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return target


def read_predictions(path: Union[str, "os.PathLike[str]"]) -> Dict[str, npt.NDArray[Any]]:
    """A predictions file as ``{column: array}``.

    Raises:
        PredictionsError: missing file or a missing required column.
    """
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise PredictionsError(f"predictions file not found: {p}")
    t = pq.read_table(p)
    need = {"user_id", "item_id", "label", "score", "hist_len", "item_train_freq"}
    missing = sorted(need - set(t.column_names))
    if missing:
        raise PredictionsError(f"{p}: missing columns {missing}")
    return {c: t.column(c).to_numpy() for c in t.column_names}


def check_paired(a: Dict[str, npt.NDArray[Any]], b: Dict[str, npt.NDArray[Any]],
                 name_a: str = "a", name_b: str = "b") -> None:
    """Checks that two runs' predictions can be paired row by row.

    Raises:
        PredictionsError: different row counts, or the first row where ``user_id``, ``item_id``
            or ``label`` differ (runs of different data, seeds of a different split, or order).
    """
    na, nb = int(a["user_id"].size), int(b["user_id"].size)
    if na != nb:
        raise PredictionsError(f"predictions of {name_a} ({na} rows) and {name_b} ({nb} rows) cannot be paired")
    for c in PAIR_COLUMNS:
        diff = np.flatnonzero(np.asarray(a[c]) != np.asarray(b[c]))
        if diff.size:
            i = int(diff[0])
            raise PredictionsError(
                f"predictions of {name_a} and {name_b} differ in {c!r} at row {i} ({a[c][i]} vs {b[c][i]}; "
                f"{diff.size} rows differ): not the same test examples in the same order"
            )
