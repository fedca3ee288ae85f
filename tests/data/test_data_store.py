"""The example store (docs/design.md sections 7, 7c): event logs stored once, windows, sources."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from torchrec_side.data.protocol import (
    ExamplesConfig,
    load_source,
    ratings_source,
    SourceError,
    synthetic_ratings,
    world_source,
)
from torchrec_side.data.store import ExampleStore, prepare_store, StoreError, window_index, write_store

from factories import plain_history


# ---------------------------------------------------------------------------------------------
# the window gather vs a plain loop


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 20)), min_size=0, max_size=30),
       st.sampled_from([None, 1, 2, 5, 100]))
def test_window_index_matches_plain_loop(rows, cap) -> None:
    start = np.array([r[0] for r in rows], dtype=np.int64)
    end = np.array([r[1] for r in rows], dtype=np.int64)
    lengths, index = window_index(start, end, cap)
    want_len, want_idx = [], []
    for s, e in rows:
        lo = 0 if cap is None else max(0, e - cap)
        want_len.append(e - lo)
        want_idx += list(range(s + lo, s + e))
    assert lengths.tolist() == want_len and index.tolist() == want_idx


@settings(max_examples=120, deadline=None)
@given(st.integers(0, 60), st.sampled_from([1, 10**12]), st.booleans(), st.integers(0, 2**31))
def test_lex_order_equals_lexsort(n: int, scale: int, presorted: bool, seed: int) -> None:
    from torchrec_side.data.protocol import _lex_order

    g = np.random.default_rng(seed)
    a, b, c = g.integers(0, 5, n) * scale, g.integers(-3, 4, n) * (scale // 1000 or 1), g.integers(0, 6, n)
    if presorted:  # the events' case: already sorted by (user, timestamp), ties unordered
        o = np.lexsort((b, a))
        a, b = a[o], b[o]
    assert np.array_equal(_lex_order(a, b, c.astype(np.int8)), np.lexsort((c, b, a)))


# ---------------------------------------------------------------------------------------------
# a simulated-world store vs a plain reference


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([None, 1, 4]))
def test_world_store_histories_are_the_log_prefix_before_each_impression(world_writer, seed: int, cap) -> None:
    with tempfile.TemporaryDirectory() as d:
        w = world_writer(Path(d) / "w", seed=seed, num_events=int(np.random.default_rng(seed).integers(1, 120)))
        store = prepare_store(ExamplesConfig(dataset="adsworld", world_dir=str(Path(d) / "w"), max_history=cap,
                                             row_group_size=16), Path(d) / "ex")
        assert store.has_p_true and store.log_events == w["eu"].size
        log_ts = store.log_values("timestamp")
        off = store.log_offsets()
        train_items = np.concatenate([w["ii"][w["split"] == 0], w["ei"][w["et"] < 60]])
        total = 0
        for k, split in enumerate(("train", "val", "test")):
            t = store.read(split, ["hist_item_id"])
            ex = store.examples(split)
            assert store.rows(split) == int((w["split"] == k).sum()) == t.num_rows
            hist = t.column("hist_item_id").to_pylist()
            lengths, index = store.windows(ex["user_id"], ex["num_prior"])
            rows = np.split(index, np.cumsum(lengths)[:-1]) if lengths.size else []
            for r in range(t.num_rows):
                u, ts = int(ex["user_id"][r]), int(ex["timestamp"][r])
                assert hist[r] == plain_history(w, u, ts, cap)
                assert int(ex["num_prior"][r]) == int(((w["eu"] == u) & (w["et"] < ts)).sum())
                assert int(ex["hist_len"][r]) == len(hist[r])
                # no event at or after the impression leaks in; the rows are the user's own
                assert (log_ts[rows[r]] < ts).all() and ((rows[r] >= off[u]) & (rows[r] < off[u + 1])).all()
                assert int(ex["item_train_freq"][r]) == int((train_items == ex["item_id"][r]).sum())
            total += t.num_rows
            # store order is time order; p_true and labels are the impressions'
            assert (np.diff(ex["timestamp"]) >= 0).all()
            sel = np.lexsort((w["ii"], w["iu"], w["it"]))
            sel = sel[w["split"][sel] == k]
            assert np.array_equal(ex["p_true"], w["p_true"][sel]) and np.array_equal(ex["label"], w["label"][sel])
        assert total == w["iu"].size


def test_world_source_rejects_bad_folders(fake_world: Callable[..., Dict[str, np.ndarray]], tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pytest.raises(SourceError, match="no manifest.json"):
        world_source(tmp_path / "nothing")
    w = fake_world("w1")
    m = json.loads((w["dir"] / "manifest.json").read_text())
    (w["dir"] / "manifest.json").write_text(json.dumps({**m, "version": 7}))
    with pytest.raises(SourceError, match="version 7, expected .torchrec-side-adsworld. version 1"):
        world_source(w["dir"])
    w = fake_world("w2")
    t = pq.read_table(w["dir"] / "events.parquet")
    pq.write_table(t.drop(["timestamp"]), w["dir"] / "events.parquet")
    with pytest.raises(SourceError, match=r"events.parquet: missing column 'timestamp'"):
        world_source(w["dir"])
    w = fake_world("w3")
    t = pq.read_table(w["dir"] / "impressions.parquet")
    items = t.column("item_id").to_numpy().copy()
    items[5] = 12  # num_items == 12
    pq.write_table(t.set_column(t.column_names.index("item_id"), "item_id", pa.array(items)),
                   w["dir"] / "impressions.parquet")
    with pytest.raises(SourceError, match=r"impressions.parquet: item_id 12 outside \[0, 12\)"):
        world_source(w["dir"])
    w = fake_world("w4")
    t = pq.read_table(w["dir"] / "impressions.parquet")
    split = t.column("split").to_numpy().copy()
    split[0] = 2  # the impression at t_val - 1 is a training one
    pq.write_table(t.set_column(t.column_names.index("split"), "split", pa.array(split)),
                   w["dir"] / "impressions.parquet")
    with pytest.raises(SourceError, match="contradicts split_times"):
        world_source(w["dir"])
    # prepare_store reports it as a store error, naming the file
    with pytest.raises(StoreError, match="impressions.parquet"):
        prepare_store(ExamplesConfig(dataset="adsworld", world_dir=str(w["dir"])), tmp_path / "ex")
    with pytest.raises(ValueError, match="world_dir"):
        ExamplesConfig(dataset="adsworld")


def test_world_store_is_rewritten_when_the_world_changes(fake_world, tmp_path: Path) -> None:
    w = fake_world("w")
    cfg = ExamplesConfig(dataset="adsworld", world_dir=str(w["dir"]), max_history=None)
    s1 = prepare_store(cfg, tmp_path / "ex")
    assert prepare_store(cfg, tmp_path / "ex").path == s1.path
    fake_world("w", seed=3)  # regenerated: another manifest (config.seed)
    s2 = prepare_store(cfg, tmp_path / "ex")
    assert s2.path != s1.path and s2.manifest["fingerprint"] == cfg.fingerprint()


# ---------------------------------------------------------------------------------------------
# derived log columns, footprint, atomic writes (synthetic ratings, fast)


# the ``store`` fixture (a small synthetic-ratings store) is in tests/data/conftest.py


def test_ratings_store_is_events_once_and_windows(store: ExampleStore) -> None:
    assert store.log_events == 3000 and sum(store.rows(s) for s in ("train", "val", "test")) == 3000
    assert not store.has_p_true and "p_true" not in store.examples("val")
    # events are impressions: the training frequency counts each training event once
    tr = store.examples("train")
    te = store.examples("test")
    want = np.bincount(tr["item_id"], minlength=store.num_items)[te["item_id"]]
    assert np.array_equal(te["item_train_freq"], want)
    assert store.manifest["splits"]["test"]["cold_examples"] == int((want == 0).sum())


def test_history_columns_footprint_and_idempotence(store: ExampleStore) -> None:
    g = np.random.default_rng(0)
    sid = g.integers(0, 2**62, size=(store.num_items, 1), dtype=np.int64)
    tok = g.integers(0, 1000, size=(store.num_items, 3), dtype=np.int64)
    raw = g.normal(size=(store.num_items, 8)).astype(np.float16)
    for name, tab in [("hist_sid", sid), ("hist_tok", tok), ("hist_raw", raw)]:
        info = store.add_history_column(name, tab)
        assert info.width == tab.shape[1] and info.dtype == tab.dtype.name
    s2 = ExampleStore(store.path)
    # each log column is the item log mapped through its table, stored once
    items = s2.log_values("hist_item_id")
    assert np.array_equal(s2.log_values("hist_sid"), sid[items, 0])
    assert np.array_equal(s2.log_values("hist_tok"), tok[items])
    assert np.array_equal(s2.log_values("hist_raw"), raw[items])
    t = s2.read("val", ["hist_item_id", "hist_sid", "hist_tok", "hist_raw"])
    hist_items = np.concatenate(t.column("hist_item_id").to_pylist())
    assert np.array_equal(np.concatenate(t.column("hist_sid").to_pylist()), sid[hist_items, 0])
    assert np.array_equal(np.array([v for row in t.column("hist_tok").to_pylist() for v in row]), tok[hist_items])
    # footprint: measured on the written files, raw (plain pages) and compressed (the file)
    for name, value_bytes in [("hist_item_id", 8), ("hist_sid", 8), ("hist_tok", 24), ("hist_raw", 16)]:
        fp = s2.footprint(name)
        size = s2.log_file(name).stat().st_size
        assert fp["value_bytes_per_event"] == value_bytes and fp["log_events"] == 3000
        assert fp["compressed_bytes_per_event"] == pytest.approx(size / 3000) and fp["file_bytes"] == size
        assert value_bytes <= fp["raw_bytes_per_event"] <= value_bytes + 2  # plain encoding + levels
        assert fp["history_events"] == s2.history_events() > fp["log_events"]  # windows overlap
    # random 62-bit SIDs do not compress; a 30-item id log does
    assert s2.footprint("hist_item_id")["compressed_bytes_per_event"] < 2
    assert s2.footprint("hist_sid")["compressed_bytes_per_event"] < 8.5
    before = s2.log_file("hist_sid").stat().st_mtime_ns
    s2.add_history_column("hist_sid", sid)  # same table: nothing rewritten
    assert s2.log_file("hist_sid").stat().st_mtime_ns == before
    with pytest.raises(StoreError, match="another table"):
        s2.add_history_column("hist_sid", sid + 1)
    with pytest.raises(StoreError, match="num_items"):
        s2.add_history_column("hist_bad", sid[:-1])
    with pytest.raises(StoreError, match="bad history column name"):
        s2.add_history_column("timestamp", sid)
    with pytest.raises(StoreError, match="not in the store"):
        s2.footprint("hist_nope")


def test_write_store_is_atomic(tmp_path: Path) -> None:
    src = ratings_source(synthetic_ratings(20, 10, 500), 20, 10)
    with pytest.raises(RuntimeError):
        class Boom(ExamplesConfig):
            def fingerprint(self) -> str:  # fails inside the atomic folder
                raise RuntimeError("boom")
        write_store(src, tmp_path / "s", Boom(dataset="synthetic"))
    assert not (tmp_path / "s").exists() and not any(tmp_path.iterdir())
    s = write_store(src, tmp_path / "s", ExamplesConfig(dataset="synthetic"))
    assert s.log_events == 500 and (tmp_path / "s" / "log" / "offsets.npy").is_file()


def test_old_format_store_is_rewritten(tmp_path: Path) -> None:
    cfg = ExamplesConfig(dataset="synthetic", synthetic_users=10, synthetic_items=8, synthetic_events=300)
    s = prepare_store(cfg, tmp_path)
    m = json.loads((s.path / "manifest.json").read_text())
    (s.path / "manifest.json").write_text(json.dumps({**m, "format_version": 1}))
    with pytest.raises(StoreError, match="format version 1"):
        ExampleStore(s.path)
    assert prepare_store(cfg, tmp_path).manifest["format_version"] == 2
    assert len(load_source(cfg)) == 300


def test_store_from_the_generated_tiny_world(tmp_path: Path) -> None:
    """The generator's folder (torchrec_side.data.adsworld, size tiny) builds a store end to end."""
    import pyarrow.parquet as pq

    from torchrec_side.data.adsworld import generate_world
    from torchrec_side.data.adsworld_config import load_world_config

    generate_world(load_world_config("tiny"), tmp_path / "w", progress=False)
    store = prepare_store(ExamplesConfig(dataset="adsworld", world_dir=str(tmp_path / "w"), max_history=None),
                          tmp_path / "ex")
    m = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert store.log_events == m["num_events"] and store.num_items == m["num_items"] and store.has_p_true
    assert {s: store.rows(s) for s in ("train", "val", "test")} == m["impressions"]
    ev = {c: a.to_numpy() for c, a in zip(*(lambda t: (t.column_names, t.columns))(
        pq.read_table(tmp_path / "w" / "events.parquet")))}
    te = store.examples("test")
    g = np.random.default_rng(0)
    pick = g.choice(te["user_id"].size, size=40, replace=False)
    lengths, rows = store.windows(te["user_id"][pick], te["num_prior"][pick])
    got = np.split(store.log_values("hist_item_id")[rows], np.cumsum(lengths)[:-1])
    for k, r in enumerate(pick):
        sel = (ev["user_id"] == te["user_id"][r]) & (ev["timestamp"] < te["timestamp"][r])
        mine = sorted(zip(ev["timestamp"][sel].tolist(), ev["item_id"][sel].tolist()))
        assert got[k].tolist() == [i for _, i in mine]
    # items released at or after t_test are cold: no training impression or event
    items = pq.read_table(tmp_path / "w" / "items.parquet")
    late = items.column("item_id").to_numpy()[items.column("release_time").to_numpy() >= m["split_times"]["test"]]
    assert late.size and (te["item_train_freq"][np.isin(te["item_id"], late)] == 0).all()
