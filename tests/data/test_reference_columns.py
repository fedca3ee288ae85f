# pyre-strict
"""The world's reference columns (``p_true`` and the ceilings ``p_content``, ``p_id``,
``p_content_item``) travel world -> store -> predictions file -> pairing unchanged, and worlds
written before the ceilings existed keep working without them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from torchrec_side.data.protocol import ExamplesConfig, REFERENCE_COLUMNS, world_source
from torchrec_side.data.store import prepare_store
from torchrec_side.eval.predictions import pair_runs, read_predictions, REFERENCE_VARIANTS, shared_references
from torchrec_side.train.predictions import example_columns, write_predictions

CEILINGS = ("p_content", "p_id", "p_content_item")


def _impressions_in_store_order(world: Path) -> Dict[str, np.ndarray]:
    """The world's impressions sorted as the store sorts them: by (timestamp, user, item)."""
    t = pq.read_table(world / "impressions.parquet")
    d = {c: t.column(c).to_numpy() for c in t.column_names}
    o = np.lexsort((d["item_id"], d["user_id"], d["timestamp"]))
    return {c: x[o] for c, x in d.items()}


def _write_run(store: object, d: Path, seed: int) -> None:
    cols = example_columns(store, "test")
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.05, 0.95, cols["label"].size).astype(np.float32)
    d.mkdir(parents=True)
    write_predictions(d / "predictions_test.parquet", cols, scores, cols["label"])


def test_names_agree() -> None:
    assert tuple(REFERENCE_VARIANTS) == REFERENCE_COLUMNS and REFERENCE_VARIANTS["p_true"] == "oracle"


def test_generated_tiny_world_ceilings_reach_the_pairing(tmp_path: Path) -> None:
    from torchrec_side.data.adsworld import generate_world
    from torchrec_side.data.adsworld_config import load_world_config

    w = tmp_path / "w"
    generate_world(load_world_config("tiny"), w, progress=False)
    src = world_source(w)
    assert list(src.references()) == list(REFERENCE_COLUMNS)
    store = prepare_store(ExamplesConfig(dataset="adsworld", world_dir=str(w), max_history=8), tmp_path / "ex")
    assert store.reference_columns == list(REFERENCE_COLUMNS) and store.has_p_true
    imp = _impressions_in_store_order(w)
    for k, split in enumerate(("train", "val", "test")):
        ex = store.examples(split)
        sel = imp["split"] == k
        assert np.array_equal(ex["item_id"], imp["item_id"][sel])
        for c in REFERENCE_COLUMNS:
            # copied as written, NaN included (p_content_item has none on training rows)
            np.testing.assert_array_equal(ex[c], imp[c][sel])
    assert np.isnan(store.examples("train")["p_content_item"]).all()
    cols = example_columns(store, "test")
    assert all(cols[c].dtype == np.float32 for c in REFERENCE_COLUMNS)
    for v in ("control", "side"):
        _write_run(store, tmp_path / "runs" / v, seed=len(v))
    f = read_predictions(tmp_path / "runs" / "side")
    test = imp["split"] == 2
    for c in REFERENCE_COLUMNS:
        np.testing.assert_allclose(f[c], imp[c][test].astype(np.float64))
    seed = pair_runs({v: tmp_path / "runs" / v for v in ("control", "side")}, seed=0)
    assert seed is not None and shared_references({0: seed}) == list(REFERENCE_COLUMNS)
    sc = seed.reference_scores(REFERENCE_COLUMNS)
    assert set(sc) == {"oracle", "ceiling_content", "ceiling_id", "ceiling_content_item"}
    np.testing.assert_allclose(sc["ceiling_content"], imp["p_content"][test])
    assert seed.p_true is not None and np.array_equal(seed.p_true, sc["oracle"])


def test_world_without_ceilings_keeps_working(fake_world: Callable[..., Dict[str, np.ndarray]],
                                              tmp_path: Path) -> None:
    w = fake_world("old")
    src = world_source(w["dir"])
    assert list(src.references()) == ["p_true"] and src.ceilings == {}
    store = prepare_store(ExamplesConfig(dataset="adsworld", world_dir=str(w["dir"]), max_history=4), tmp_path / "ex")
    assert store.reference_columns == ["p_true"]
    cols = example_columns(store, "test")
    assert "p_true" in cols and not set(CEILINGS) & set(cols)
    _write_run(store, tmp_path / "runs" / "a", seed=0)
    assert set(pq.read_schema(tmp_path / "runs" / "a" / "predictions_test.parquet").names) & set(CEILINGS) == set()
    seed = pair_runs({"a": tmp_path / "runs" / "a"}, seed=0)
    assert seed is not None and list(seed.references) == ["p_true"]
    assert seed.reference_scores(REFERENCE_COLUMNS).keys() == {"oracle"}


def test_world_with_some_ceilings(fake_world: Callable[..., Dict[str, np.ndarray]], tmp_path: Path) -> None:
    """A world storing only some of the ceilings carries exactly those."""
    w = fake_world("partial")
    f = w["dir"] / "impressions.parquet"
    t = pq.read_table(f)
    t = t.append_column("p_content", pa.array(np.linspace(0.1, 0.9, t.num_rows).astype(np.float32)))
    pq.write_table(t, f)
    src = world_source(w["dir"])
    assert list(src.references()) == ["p_true", "p_content"]
    store = prepare_store(ExamplesConfig(dataset="adsworld", world_dir=str(w["dir"]), max_history=4), tmp_path / "ex")
    assert store.reference_columns == ["p_true", "p_content"]
    ex = store.examples("val")
    imp = _impressions_in_store_order(w["dir"])
    np.testing.assert_array_equal(ex["p_content"], imp["p_content"][imp["split"] == 1])
