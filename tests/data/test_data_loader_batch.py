"""The loader's batch building (one preallocated values buffer, per-slot gathers) against a plain
per-example reference: every KJT key's values and lengths, the dense features, labels and weights,
for one-value, split multi-value, flattened, narrower-dtype, target and id-admission inputs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from hypothesis import given, settings, strategies as st

from torchrec_side.data.loader import ExampleDataset, HistoryInput, TargetInput
from torchrec_side.data.protocol import ExamplesConfig
from torchrec_side.data.store import prepare_store

from factories import plain_history


def _plain_batch(world: Dict[str, np.ndarray], ex: Dict[str, np.ndarray], rows: List[int], b: int,
                 cap: Optional[int], tables: Dict[str, np.ndarray], inputs: List[object],
                 item_rows: Optional[np.ndarray]) -> Tuple[Dict[str, List[List[int]]], List[str]]:
    """Per example, per KJT key: the list of values (a Python loop over examples and events)."""
    keys: List[str] = ["user_id", "item_id"]
    out: Dict[str, List[List[int]]] = {"user_id": [], "item_id": []}
    per_input: List[Tuple[object, List[str]]] = []
    for inp in inputs:
        tab = tables[inp.column]  # type: ignore[attr-defined]
        w = tab.shape[1]
        ks = inp.resolve_keys(w)  # type: ignore[attr-defined]
        per_input.append((inp, ks))
        keys += ks
        for k in ks:
            out[k] = []
    for k in range(b):
        real = k < len(rows)
        r = rows[k] if real else None
        u = int(ex["user_id"][r]) if real else 0
        it = int(ex["item_id"][r]) if real else 0
        out["user_id"].append([u])
        out["item_id"].append([int(item_rows[it]) if item_rows is not None else it])
        hist = plain_history(world, u, int(ex["timestamp"][r]), cap) if real else []
        for inp, ks in per_input:
            tab = tables[inp.column]  # type: ignore[attr-defined]
            w = tab.shape[1]
            events = [it] if isinstance(inp, TargetInput) else hist
            if len(ks) == 1:  # one value per event, or W values per event (flatten), event-major
                out[ks[0]].append([int(tab[e, j]) for e in events for j in range(w)])
            else:
                for j, key in enumerate(ks):
                    out[key].append([int(tab[e, j]) for e in events])
    return out, keys


@settings(max_examples=16, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([None, 3]), st.sampled_from([3, 5]), st.booleans(), st.booleans(),
       st.sampled_from([0, 10**9]))
def test_batches_equal_a_plain_per_example_reference(world_writer, seed, cap, b, shuffle, admit, slice_min) -> None:
    """``slice_min`` 0: windows copied as log slices; 10^9: gathered through the row index."""
    with tempfile.TemporaryDirectory() as d:
        w = world_writer(Path(d) / "w", seed=seed, num_events=int(np.random.default_rng(seed).integers(1, 120)))
        store = prepare_store(ExamplesConfig(dataset="adsworld", world_dir=str(Path(d) / "w"), max_history=cap,
                                             row_group_size=4), Path(d) / "ex")
        g = np.random.default_rng(seed)
        n = store.num_items
        tables = {
            "hist_item_id": np.arange(n, dtype=np.int64)[:, None],
            "hist_sid": g.integers(0, 2**62, (n, 1), dtype=np.int64),
            "hist_tok": g.integers(0, 1 << 40, (n, 3), dtype=np.int64),
            "hist_small": g.integers(-(2**31), 2**31 - 1, (n, 2), dtype=np.int64).astype(np.int32),
        }
        for c in ("hist_sid", "hist_tok", "hist_small"):
            store.add_history_column(c, tables[c])
        inputs: List[object] = [
            HistoryInput("hist_item_id"), HistoryInput("hist_sid"), HistoryInput("hist_tok"),
            HistoryInput("hist_tok", keys=("tok_flat",), flatten=True), HistoryInput("hist_small"),
            TargetInput("hist_sid"), TargetInput("hist_tok"), TargetInput("hist_tok", keys=("tt_flat",), flatten=True),
        ]
        item_rows = g.integers(0, n + 1, n).astype(np.int64) if admit else None
        for split in ("train", "test"):
            ex = store.examples(split)
            for rank in (0, 1):
                ds = ExampleDataset(store, split, inputs, batch_size=b, rank=rank, world_size=2, shuffle=shuffle,
                                    seed=seed, item_rows=item_rows)
                ds.slice_min_mean_events = slice_min
                order = _row_order(ds)
                for (index, rows), batch in zip(order, ds):
                    want, keys = _plain_batch(w, ex, rows, b, _caps(store.max_history, None), tables, inputs,
                                              item_rows)
                    kjt = batch.sparse_features
                    assert kjt.keys() == keys
                    got = kjt.to_dict()
                    for key in keys:
                        jt = got[key]
                        assert jt.values().dtype.is_floating_point is False
                        off = jt.offsets().tolist()
                        assert [jt.values()[off[k]: off[k + 1]].tolist() for k in range(b)] == want[key], (key, index)
                    np.testing.assert_array_equal(batch.labels.numpy(), np.array(
                        [ex["label"][r] for r in rows] + [0.0] * (b - len(rows)), dtype=np.float32))
                    np.testing.assert_array_equal(batch.weights.numpy(), np.array(
                        [1.0] * len(rows) + [0.0] * (b - len(rows)), dtype=np.float32))
                    prior = np.array([ex["num_prior"][r] for r in rows] + [0] * (b - len(rows)), dtype=np.float32)
                    np.testing.assert_allclose(batch.dense_features[:, 1].numpy(), (prior == 0).astype(np.float32))
                    np.testing.assert_allclose(batch.dense_features[:, 0].numpy(),
                                               np.log1p(prior) / np.log1p(1000.0), rtol=1e-6)


def _caps(a: Optional[int], b: Optional[int]) -> Optional[int]:
    c = [x for x in (a, b) if x is not None]
    return min(c) if c else None


def _row_order(ds: ExampleDataset) -> List[Tuple[int, List[int]]]:
    """The store rows of each of this rank's batches, from the dataset's own global-batch order
    (rows identified through a row-number column the test adds to each table)."""
    pa = __import__("pyarrow")
    files = ds._files()  # noqa: SLF001 - the order is the dataset's; the batch contents are what is tested
    sizes = [files.metadata.row_group(i).num_rows for i in range(files.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)])

    class _Numbered(ExampleDataset):
        def _row_group(self, f, i):  # type: ignore[override]
            t = f.read_row_group(i)
            return t.append_column("__row", pa.array(np.arange(starts[i], starts[i + 1], dtype=np.int64)))

    probe = _Numbered(ds.store, ds.split, ds.history, ds.batch_size, ds.rank, ds.world_size, shuffle=ds.shuffle,
                      seed=ds.seed, shuffle_row_groups=ds.shuffle_row_groups, item_rows=ds.item_rows)
    out = []
    for index, table, _ in probe._global_batches():  # noqa: SLF001
        lo = ds.rank * ds.batch_size
        part = table.slice(lo, max(0, min(ds.batch_size, table.num_rows - lo)))
        out.append((index, part.column("__row").to_pylist()))
    return out
