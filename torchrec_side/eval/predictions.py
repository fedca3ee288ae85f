# pyre-strict
"""Per-run test predictions (``predictions_test.parquet``) and their pairing across variants.

Format (written by the trainer beside ``metrics.json``, one row per test example, in store
order): ``user_id`` int64, ``item_id`` int64, ``label`` float32, ``score`` float32 (predicted
click probability), ``hist_len`` int32 (history events the model saw), ``item_train_freq`` int64
(the target item's count in the training split; 0 = cold), and ``p_true`` float32 when the data
has an oracle.

Runs of different variants with the same seed have the same rows in the same order; pairing
checks it (``user_id``, ``item_id``, ``label``) and fails naming the two files otherwise.

Example::

    seed0 = pair_runs({"control": Path("runs/.../control/seed0"), "side": Path("runs/.../side/seed0")}, seed=0)
    seed0.scores["side"]          # float64 [N]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

__all__ = ["PREDICTIONS_FILE", "REQUIRED_COLUMNS", "read_predictions", "SeedPredictions", "pair_runs"]

PREDICTIONS_FILE: str = "predictions_test.parquet"
REQUIRED_COLUMNS: List[str] = ["user_id", "item_id", "label", "score", "hist_len", "item_train_freq"]


def read_predictions(path: Path) -> Dict[str, np.ndarray]:
    """Reads one predictions file into numpy columns, checking names and values.

    Args:
        path (Path): a ``predictions_test.parquet`` file (or its run folder).

    Returns:
        Dict[str, np.ndarray]: ``[N]`` arrays for the required columns (and ``p_true`` if present):
        user_id/item_id/item_train_freq int64, hist_len int64, label/score/p_true float64.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column, or a label/score/p_true outside [0, 1] or not finite.
    """
    import pyarrow.parquet as pq

    p = Path(path)
    if p.is_dir():
        p = p / PREDICTIONS_FILE
    if not p.is_file():
        raise FileNotFoundError(f"predictions file not found: {p}")
    tab = pq.read_table(p)
    missing = [c for c in REQUIRED_COLUMNS if c not in tab.column_names]
    if missing:
        raise ValueError(f"{p}: missing column(s) {missing}; has {tab.column_names}")
    out: Dict[str, np.ndarray] = {}
    for c in ("user_id", "item_id", "item_train_freq", "hist_len"):
        out[c] = tab.column(c).to_numpy().astype(np.int64)
    for c in ("label", "score", "p_true"):
        if c not in tab.column_names:
            continue
        a = tab.column(c).to_numpy().astype(np.float64)
        bad = ~np.isfinite(a) | (a < 0) | (a > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{p}: column {c!r} has {int(bad.sum())} value(s) outside [0, 1] or not finite "
                             f"(first at row {i}: {a[i]!r})")
        out[c] = a
    if (out["item_train_freq"] < 0).any() or (out["hist_len"] < 0).any():
        raise ValueError(f"{p}: negative item_train_freq or hist_len")
    return out


@dataclass
class SeedPredictions:
    """The paired test predictions of every variant of one seed.

    Args:
        seed (int): the seed.
        user_id (np.ndarray): ``[N]`` int64.
        item_id (np.ndarray): ``[N]`` int64.
        label (np.ndarray): ``[N]`` float64.
        hist_len (np.ndarray): ``[N]`` int64, the longest history any variant of the seed saw for
            the row (control sees none; history variants may cap differently).
        item_train_freq (np.ndarray): ``[N]`` int64 target item's training count (0 = cold).
        p_true (Optional[np.ndarray]): ``[N]`` float64 true click probability, when known.
        scores (Dict[str, np.ndarray]): ``{variant: [N] float64 probability}``.
        files (Dict[str, str]): ``{variant: predictions file}``.
        warnings (List[str]): non-fatal disagreements found while pairing.
    """

    seed: int
    user_id: np.ndarray
    item_id: np.ndarray
    label: np.ndarray
    hist_len: np.ndarray
    item_train_freq: np.ndarray
    p_true: Optional[np.ndarray]
    scores: Dict[str, np.ndarray]
    files: Dict[str, str] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(self.label.size)


def pair_runs(run_dirs: Mapping[str, Path], seed: int) -> Optional[SeedPredictions]:
    """Loads and pairs the predictions of one seed's runs (variants without a file are skipped).

    Args:
        run_dirs (Mapping[str, Path]): ``{variant: run folder}`` of this seed.
        seed (int): the seed (for messages).

    Returns:
        Optional[SeedPredictions]: None when no run of the seed has predictions.

    Raises:
        ValueError: two runs of the seed disagree on row count, ``user_id``, ``item_id`` or
            ``label`` (the message names both files and the first differing row).
    """
    first: Optional[Dict[str, np.ndarray]] = None
    first_file = ""
    out: Optional[SeedPredictions] = None
    for v, d in run_dirs.items():
        f = Path(d) / PREDICTIONS_FILE
        if not f.is_file():
            continue
        cols = read_predictions(f)
        if first is None or out is None:
            first, first_file = cols, str(f)
            out = SeedPredictions(seed=seed, user_id=cols["user_id"], item_id=cols["item_id"], label=cols["label"],
                                  hist_len=cols["hist_len"].copy(), item_train_freq=cols["item_train_freq"],
                                  p_true=cols.get("p_true"), scores={v: cols["score"]}, files={v: str(f)})
            continue
        if cols["label"].size != first["label"].size:
            raise ValueError(f"seed {seed}: {f} has {cols['label'].size} rows, {first_file} has "
                             f"{first['label'].size}: the runs are not paired (same store and test split?)")
        for c in ("user_id", "item_id", "label"):
            diff = np.flatnonzero(cols[c] != first[c])
            if diff.size:
                i = int(diff[0])
                raise ValueError(f"seed {seed}: column {c!r} of {f} differs from {first_file} at {diff.size} "
                                 f"row(s) (first row {i}: {cols[c][i]!r} vs {first[c][i]!r}): the runs are not paired")
        if (cols["item_train_freq"] != first["item_train_freq"]).any():
            out.warnings.append(f"seed {seed}: item_train_freq of {f} differs from {first_file}; using the first")
        if out.p_true is None and "p_true" in cols:
            out.p_true = cols["p_true"]
        out.hist_len = np.maximum(out.hist_len, cols["hist_len"])
        out.scores[v] = cols["score"]
        out.files[v] = str(f)
    return out
