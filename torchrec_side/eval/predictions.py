# pyre-strict
"""Per-run test predictions (``predictions_test.parquet``) and their pairing across variants.

Format (written by the trainer beside ``metrics.json``, one row per test example, in store
order): ``user_id`` int64, ``item_id`` int64, ``label`` float32, ``score`` float32 (predicted
click probability), ``hist_len`` int32 (history events the model saw), ``item_train_freq`` int64
(the target item's count in the training split; 0 = cold), and the reference columns the data
has, float32: ``p_true`` (the oracle) and a simulated world's ceilings ``p_content``, ``p_id``,
``p_content_item`` (:data:`REFERENCE_VARIANTS` names the pseudo-variant the report scores each as;
files written before the ceilings were carried simply lack them).

Runs of different variants with the same seed have the same rows in the same order; pairing
checks it (``user_id``, ``item_id``, ``label``) and fails naming the two files otherwise.

Example::

    seed0 = pair_runs({"control": Path("runs/.../control/seed0"), "side": Path("runs/.../side/seed0")}, seed=0)
    seed0.scores["side"]          # float64 [N]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["PREDICTIONS_FILE", "REQUIRED_COLUMNS", "REFERENCE_VARIANTS", "read_predictions", "SeedPredictions",
           "pair_runs", "shared_references"]

PREDICTIONS_FILE: str = "predictions_test.parquet"
REQUIRED_COLUMNS: List[str] = ["user_id", "item_id", "label", "score", "hist_len", "item_train_freq"]
#: Optional reference columns (``torchrec_side.data.protocol.REFERENCE_COLUMNS``, same order) ->
#: the pseudo-variant the report scores with them: the oracle and the world's ceilings.
REFERENCE_VARIANTS: Dict[str, str] = {"p_true": "oracle", "p_content": "ceiling_content", "p_id": "ceiling_id",
                                      "p_content_item": "ceiling_content_item"}


def read_predictions(path: Path) -> Dict[str, np.ndarray]:
    """Reads one predictions file into numpy columns, checking names and values.

    Args:
        path (Path): a ``predictions_test.parquet`` file (or its run folder).

    Returns:
        Dict[str, np.ndarray]: ``[N]`` arrays for the required columns (and the reference columns
        ``p_true``, ``p_content``, ... present): user_id/item_id/item_train_freq int64, hist_len
        int64, label/score/references float64.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column, or a label/score/reference value outside [0, 1] or not finite.
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
    for c in ("label", "score", *REFERENCE_VARIANTS):
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
        references (Dict[str, np.ndarray]): ``{column: [N] float64}`` every reference column known
            (``p_true`` included; keys of :data:`REFERENCE_VARIANTS`).
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
    references: Dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # p_true is the oracle's reference column: keep the two views in step
        if self.p_true is not None:
            self.references.setdefault("p_true", self.p_true)
        elif "p_true" in self.references:
            self.p_true = self.references["p_true"]

    @property
    def rows(self) -> int:
        return int(self.label.size)

    def add_reference(self, column: str, values: np.ndarray) -> None:
        """Records reference ``column`` (a key of :data:`REFERENCE_VARIANTS`) if not known yet."""
        if column not in REFERENCE_VARIANTS:
            raise ValueError(f"unknown reference column {column!r}; known: {list(REFERENCE_VARIANTS)}")
        self.references.setdefault(column, values)
        if column == "p_true" and self.p_true is None:
            self.p_true = values

    def reference_scores(self, columns: Sequence[str], mask: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
        """``{pseudo-variant: [N'] scores}`` of the given reference ``columns`` this seed has (rows in
        ``mask`` when given), e.g. ``{"oracle": p_true, "ceiling_content": p_content}``."""
        return {REFERENCE_VARIANTS[c]: (self.references[c] if mask is None else self.references[c][mask])
                for c in columns if c in self.references}


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
                                  p_true=None, scores={v: cols["score"]}, files={v: str(f)})
            for c in REFERENCE_VARIANTS:
                if c in cols:
                    out.add_reference(c, cols[c])
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
        for c in REFERENCE_VARIANTS:  # a reference a first file lacks is taken from the next
            if c in cols:
                out.add_reference(c, cols[c])
        out.hist_len = np.maximum(out.hist_len, cols["hist_len"])
        out.scores[v] = cols["score"]
        out.files[v] = str(f)
    return out


def shared_references(per_seed: Mapping[int, SeedPredictions]) -> List[str]:
    """The reference columns every seed has (:data:`REFERENCE_VARIANTS` order; empty without seeds).

    Example::

        shared_references(per_seed)   # ["p_true", "p_content", "p_id", "p_content_item"] on a new world
    """
    if not per_seed:
        return []
    return [c for c in REFERENCE_VARIANTS if all(c in p.references for p in per_seed.values())]
