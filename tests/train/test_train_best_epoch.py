"""Stopped on validation (issue 8): per-epoch validation, the best epoch's model kept and reported,
early stop, per-run test predictions that pair row by row across variants."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from test_train_trainer import _synthetic, _write  # tests/train is on sys.path (rootdir)
from torchrec_side.train.checkpoint import CheckpointManager
from torchrec_side.train.config import load_train_config
from torchrec_side.train.loop import Loop
from torchrec_side.train.predictions import (
    check_paired,
    order_rows,
    PREDICTIONS_FILE,
    PredictionsError,
    read_predictions,
)
from torchrec_side.train.trainer import run_training


def _scripted_val(monkeypatch: pytest.MonkeyPatch, nes: List[float]) -> None:
    """Validation NE follows ``nes`` (everything else is measured), to drive the selection logic."""
    real = Loop.evaluate
    script: Iterator[float] = iter(nes)

    def fake(self: Any, split: str, collect: Optional[List[Any]] = None) -> Dict[str, float]:
        m = real(self, split, collect)
        return {**m, "ne": next(script)} if split == "val" else m

    monkeypatch.setattr(Loop, "evaluate", fake)


def test_best_epoch_is_kept_reported_and_early_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = _write(tmp_path, _synthetic(tmp_path, **{"train.epochs": 6, "train.early_stop_patience": 2,
                                                  "data.synthetic_events": 1500}))
    ref = run_training(load_train_config(job, ["run_dir=" + str(tmp_path / "ref"), "train.epochs=2"]))
    spe = ref["steps_per_epoch"]

    _scripted_val(monkeypatch, [0.9, 0.8, 0.85, 0.86, 0.7, 0.6])
    run = tmp_path / "runs" / "tiny" / "seed0"
    m = run_training(load_train_config(job))
    assert m["stopped_early"] and m["steps"] == 4 * spe  # epochs 3 and 4 did not beat epoch 2
    assert m["best_epoch"] == 2 and m["best_step"] == 2 * spe and m["val"]["ne"] == 0.8
    assert [(h["epoch"], h["step"], h["ne"]) for h in m["val_history"]] == [
        (1, spe, 0.9), (2, 2 * spe, 0.8), (3, 3 * spe, 0.85), (4, 4 * spe, 0.86)]
    assert json.loads((run / "val_history.json").read_text()) == m["val_history"]
    assert json.loads((run / "metrics.json").read_text())["best_epoch"] == 2
    # the best epoch's checkpoint survives keep_checkpoints=2 (pinned), and test is scored with it:
    # exactly what a 2-epoch run reports
    names = [p.name for p in CheckpointManager(run / "checkpoints").complete()]
    assert names == [f"step_{s * spe:08d}" for s in (2, 3, 4)]
    assert m["test"] == ref["test"]
    pa, pr = read_predictions(run / PREDICTIONS_FILE), read_predictions(tmp_path / "ref" / PREDICTIONS_FILE)
    assert np.array_equal(pa["score"], pr["score"])
    # rerunning the finished command: nothing more to train, same report
    monkeypatch.undo()
    again = run_training(load_train_config(job))
    assert again["resumed_from_step"] == 4 * spe and again["steps"] == 4 * spe and again["stopped_early"]
    assert again["best_epoch"] == 2 and again["test"] == m["test"]


def test_patience_zero_trains_all_epochs_and_picks_the_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = _write(tmp_path, _synthetic(tmp_path, **{"train.epochs": 3, "train.early_stop_patience": 0,
                                                  "data.synthetic_events": 1500}))
    _scripted_val(monkeypatch, [0.9, 0.95, 0.85])
    m = run_training(load_train_config(job))
    assert not m["stopped_early"] and m["steps"] == 3 * m["steps_per_epoch"]
    assert m["best_epoch"] == 3 and len(m["val_history"]) == 3


def test_predictions_file_schema_order_and_pairing(tmp_path: Path) -> None:
    from torchrec_side.data.store import ExampleStore

    cfg = _synthetic(tmp_path, **{"train.epochs": 1})
    job = _write(tmp_path, cfg)
    side = run_training(load_train_config(job, ["name=sparse"]))
    control = _synthetic(tmp_path, **{"train.epochs": 1, "name": "control", "model.history": [],
                                      "sharding.tables": {"t_item_id": "column_wise"}})
    run_training(load_train_config(_write(tmp_path, control, "control.yaml")))
    runs = tmp_path / "runs"
    a = read_predictions(runs / "sparse" / "seed0" / PREDICTIONS_FILE)
    b = read_predictions(runs / "control" / "seed0" / PREDICTIONS_FILE)
    assert list(a) == ["user_id", "item_id", "label", "score", "hist_len", "item_train_freq"]  # no oracle here
    dtypes = {k: v.dtype for k, v in a.items()}
    assert dtypes == {"user_id": np.int64, "item_id": np.int64, "label": np.float32, "score": np.float32,
                      "hist_len": np.int32, "item_train_freq": np.int64}
    store = ExampleStore(side["store"])
    t = store.read("test")
    assert a["user_id"].size == store.rows("test") == int(side["test"]["examples"])
    assert np.array_equal(a["user_id"], t.column("user_id").to_numpy())
    assert np.array_equal(a["item_id"], t.column("item_id").to_numpy())
    assert np.array_equal(a["label"], t.column("label").to_numpy().astype(np.float32))
    # a plain reference for the derived columns
    train_items = store.read("train").column("item_id").to_numpy()
    assert np.array_equal(a["item_train_freq"], np.array([(train_items == i).sum() for i in a["item_id"]]))
    prior = t.column("num_prior").to_numpy()
    assert np.array_equal(a["hist_len"], np.minimum(prior, 20))
    # the scores are the model's: their NE is the reported one
    p = a["score"].astype(np.float64).clip(1e-7, 1 - 1e-7)
    y = a["label"].astype(np.float64)
    ll = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    r = y.mean()
    assert math.isclose(ll / -(r * math.log(r) + (1 - r) * math.log(1 - r)), side["test"]["ne_exact"], rel_tol=1e-5)
    check_paired(a, b, "sparse", "control")  # same seed, same data: rows pair up
    assert not np.array_equal(a["score"], b["score"])
    other = run_training(load_train_config(job, ["name=other", "data.synthetic_seed=1"]))
    c = read_predictions(runs / "other" / "seed0" / PREDICTIONS_FILE)
    assert other["store"] != side["store"]
    with pytest.raises(PredictionsError, match="not the same test examples|cannot be paired"):
        check_paired(a, c, "sparse", "other")


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 60), world=st.integers(1, 4), b=st.integers(1, 9))
def test_order_rows_matches_the_loaders_split(n: int, world: int, b: int) -> None:
    """Reference: global batches of ``world * b`` rows, the last padded with weight 0; rank ``r``
    keeps rows ``[r * b, (r + 1) * b)`` of each (what ExampleDataset does for evaluation)."""
    g = world * b
    nb = -(-n // g)
    full = torch.zeros(nb, world, 3, b)
    for i in range(nb):
        for r in range(world):
            for j in range(b):
                row = i * g + r * b + j
                if row < n:
                    full[i, r, 0, j], full[i, r, 1, j], full[i, r, 2, j] = float(row), float(row % 2), 1.0
    scores, labels = order_rows(full)
    assert np.array_equal(scores, np.arange(n, dtype=np.float32))
    assert np.array_equal(labels, (np.arange(n) % 2).astype(np.float32))
