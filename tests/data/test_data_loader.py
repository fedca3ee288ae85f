"""The loader (docs/design.md section 7): histories are windows of the stored event logs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from torchrec_side.data.loader import HistoryInput, make_dataloader
from torchrec_side.data.protocol import ExamplesConfig
from torchrec_side.data.store import ExampleStore, prepare_store, StoreError

from factories import plain_history


def _caps(a: Optional[int], b: Optional[int]) -> Optional[int]:
    c = [x for x in (a, b) if x is not None]
    return min(c) if c else None


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([None, 2, 6]), st.sampled_from([None, 1, 3]),
       st.sampled_from([4, 7]))
def test_loader_history_is_the_log_prefix_before_the_impression(world_writer, seed, store_cap, loader_cap, b) -> None:
    with tempfile.TemporaryDirectory() as d:
        w = world_writer(Path(d) / "w", seed=seed, num_events=int(np.random.default_rng(seed).integers(1, 150)))
        store = prepare_store(ExamplesConfig(dataset="adsworld", world_dir=str(Path(d) / "w"),
                                             max_history=store_cap, row_group_size=8), Path(d) / "ex")
        tok = (np.arange(store.num_items)[:, None] * 10 + np.arange(2)[None, :]).astype(np.int64)
        store.add_history_column("hist_tok", tok)
        cap = _caps(store_cap, loader_cap)
        for split in ("train", "val", "test"):
            ex = store.examples(split)
            dl = make_dataloader(store, split, [HistoryInput("hist_item_id"), HistoryInput("hist_tok")],
                                 batch_size=b, num_workers=0, max_history=loader_cap, shuffle=False)
            r = 0
            for batch in dl:
                kjt = batch.sparse_features.to_dict()
                hist, t0, t1 = kjt["hist_item_id"], kjt["hist_tok_0"], kjt["hist_tok_1"]
                off = hist.offsets().tolist()
                for k in range(batch.batch_size):
                    got = hist.values()[off[k]: off[k + 1]].tolist()
                    if batch.weights[k] == 0:
                        assert got == []  # padding rows carry no history
                        continue
                    u, ts = int(ex["user_id"][r]), int(ex["timestamp"][r])
                    assert int(kjt["user_id"].values()[k]) == u and int(kjt["item_id"].values()[k]) == ex["item_id"][r]
                    want = plain_history(w, u, ts, cap)
                    assert got == want
                    assert t0.values()[off[k]: off[k + 1]].tolist() == [10 * i for i in want]
                    assert t1.values()[off[k]: off[k + 1]].tolist() == [10 * i + 1 for i in want]
                    r += 1
            assert r == store.rows(split)


# the ``store`` fixture (a small synthetic-ratings store) is in tests/data/conftest.py


def _rows(batches) -> List[tuple]:
    out = []
    for b in batches:
        kjt = b.sparse_features.to_dict()
        users, items = kjt["user_id"].values(), kjt["item_id"].values()
        hist = kjt["hist_item_id"]
        off = hist.offsets()
        for k in range(b.batch_size):
            if b.weights[k] > 0:
                out.append((int(users[k]), int(items[k]), tuple(hist.values()[off[k]: off[k + 1]].tolist())))
    return out


def test_eval_loader_covers_split_once_across_ranks(store: ExampleStore) -> None:
    t = store.read("test", ["hist_item_id"])
    want = sorted(zip(t.column("user_id").to_pylist(), t.column("item_id").to_pylist(),
                      map(tuple, t.column("hist_item_id").to_pylist())))
    got, steps = [], []
    for rank in range(3):
        dl = make_dataloader(store, "test", [HistoryInput("hist_item_id")], batch_size=64, rank=rank,
                             world_size=3, num_workers=0)
        bs = list(dl)
        steps.append(len(bs))
        assert all(b.batch_size == 64 for b in bs)  # padded: every rank, every step, same shape
        got += _rows(bs)
    assert len(set(steps)) == 1 and steps[0] == len(dl.dataset)
    assert sorted(got) == want


def test_train_loader_deterministic_resumable_and_worker_free(store: ExampleStore) -> None:
    store.add_history_column("hist_tok2", np.arange(store.num_items * 2).reshape(-1, 2) % 7)
    kw = dict(batch_size=32, rank=1, world_size=2, seed=5, shuffle_row_groups=2)
    inputs = [HistoryInput("hist_item_id"), HistoryInput("hist_tok2")]
    dl = make_dataloader(store, "train", inputs, num_workers=0, **kw)
    dl.dataset.set_epoch(1)
    full = list(dl)
    assert len(full) == store.rows("train") // 64
    b = full[0]
    assert b.sparse_features.keys() == ["user_id", "item_id", "hist_item_id", "hist_tok2_0", "hist_tok2_1"]
    assert b.dense_features.shape == (32, 2) and b.labels.shape == (32,)
    lens = b.sparse_features.length_per_key()
    assert lens[0] == lens[1] == 32 and lens[2] == lens[3] == lens[4]
    # same (seed, epoch): same batches, with a DataLoader worker too; another epoch: another order
    dl_w = make_dataloader(store, "train", inputs, num_workers=1, **kw)
    dl_w.dataset.set_epoch(1)
    assert _rows(dl_w) == _rows(full)
    dl.dataset.set_epoch(2)
    assert _rows(dl) != _rows(full)
    # resuming at batch k yields exactly the tail
    dl.dataset.set_epoch(1, start_batch=5)
    assert _rows(dl) == _rows(full[5:])
    # training rows are distinct examples of the split
    all_rows = []
    for rank in range(2):
        d = make_dataloader(store, "train", inputs, num_workers=0, **{**kw, "rank": rank})
        d.dataset.set_epoch(1)
        all_rows += _rows(d)
    assert len(all_rows) == 2 * 32 * len(full)


def test_loader_rejects_float_columns_and_trims_history(store: ExampleStore) -> None:
    store.add_history_column("hist_raw16", np.ones((store.num_items, 4), dtype=np.float16))
    with pytest.raises(StoreError, match="integer ids"):
        make_dataloader(store, "val", [HistoryInput("hist_raw16")])
    with pytest.raises(StoreError, match="not in the store"):
        make_dataloader(store, "val", [HistoryInput("hist_nope")])
    with pytest.raises(ValueError, match="max_history"):
        make_dataloader(store, "val", [HistoryInput("hist_item_id")], max_history=0)
    full = list(make_dataloader(store, "val", [HistoryInput("hist_item_id")], batch_size=50, num_workers=0))
    cut = list(make_dataloader(store, "val", [HistoryInput("hist_item_id")], batch_size=50, num_workers=0,
                               max_history=3))
    wide = list(make_dataloader(store, "val", [HistoryInput("hist_item_id")], batch_size=50, num_workers=0,
                                max_history=1000))  # the store's cap (12) still applies
    assert max(int(b.sparse_features["hist_item_id"].lengths().max()) for b in full) == 12
    for a, b, c in zip(full, cut, wide):
        ja, jb = a.sparse_features["hist_item_id"], b.sparse_features["hist_item_id"]
        assert np.array_equal(ja.values(), c.sparse_features["hist_item_id"].values())
        for k in range(50):
            va = ja.values()[ja.offsets()[k]: ja.offsets()[k + 1]].tolist()
            vb = jb.values()[jb.offsets()[k]: jb.offsets()[k + 1]].tolist()
            assert vb == va[-3:]
