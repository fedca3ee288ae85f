"""Serving runs whose history features see the target item through their path (``target: true``,
docs/design.md section 7b): the request schema stays item_id + history (+ num_prior); the program
derives the target keys from ``item_id`` through the item tables it carries (the store's
``items/<column>.npy``). Exported scores equal the trainer's evaluation to 1e-5 in a fresh
process, predict equals the scorer, unknown item ids are refused; the derivation equals a plain
per-example reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from torchrec_side.io import ArtifactError
from torchrec_side.serving import export_run, load_exported, predict, predict_from_store, read_spec, ServingError
from torchrec_side.serving.artifact import ServingSpec, SPEC_FILE, TargetInputSpec
from torchrec_side.serving.export import ServingModule, TargetTable

from serving_helpers import fresh_process_scores, trainer_scores


def _loader_batches(store: Any, spec: ServingSpec, split: str, with_targets: bool) -> List[Any]:
    """The training loader's batches of ``split``; ``with_targets``: the target keys filled by the
    loader's own ``TargetInput`` (as in training), else history keys only."""
    from torchrec_side.data import HistoryInput, make_dataloader
    from torchrec_side.data.loader import TargetInput

    inputs: List[Any] = [HistoryInput(h.column, keys=tuple(h.keys), flatten=h.flatten) for h in spec.history]
    if with_targets:
        inputs += [TargetInput(t.column, keys=tuple(t.keys), flatten=t.flatten) for t in spec.targets]
    return list(make_dataloader(store, split, inputs, 50, shuffle=False, num_workers=0))


@pytest.mark.slow
def test_dlrm_target_export_matches_trainer_in_a_fresh_process(dlrm_target_run: Path, tmp_path: Path) -> None:
    from torchrec_side.data import ExampleStore

    res = export_run(dlrm_target_run, tmp_path / "export")
    spec = read_spec(res.out_dir)
    # the request schema has no target keys; the program derives them
    assert spec.keys == ["user_id", "item_id", "hist_item_id_h16", "hist_sid", "hist_pn__p1", "hist_pn__p2",
                         "hist_pn__p3"]
    assert spec.target_keys == ["hist_item_id_h16_target", "hist_sid_target", "hist_pn_target__p1",
                                "hist_pn_target__p2", "hist_pn_target__p3"]
    assert [(t.column, t.kind, t.source, t.rows) for t in spec.targets] == [
        ("hist_item_id_h16", "sparse_id", "table", 40), ("hist_sid", "side", "table", 40),
        ("hist_pn", "prefix_ngram", "table", 40)]
    assert sorted(spec.model_keys) == sorted(spec.keys + spec.target_keys)
    kernel = "kernel" in spec.side_compute.values()
    assert all(op.startswith("fbgemm.") or (kernel and op.startswith("torchrec_side.")) for op in spec.ops)
    # the program's buffers are the store's item tables (the ones the trainer's loader read)
    store = ExampleStore(spec.source["store"])
    scorer = load_exported(res.out_dir)
    for i, t in enumerate(spec.targets):
        buf = scorer.program.state_dict[f"target_table_{i}"]
        assert str(buf.dtype) == f"torch.{t.dtype}"
        assert torch.equal(buf.long(), torch.from_numpy(store.item_values(t.column).astype(np.int64)))
    # a fresh interpreter (no trainer, no model code) scores the test split like the trainer did
    want = trainer_scores(dlrm_target_run)
    got = fresh_process_scores(res.out_dir, tmp_path)
    assert got.shape == (len(want),)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=0)
    # predict over a request file equals the scorer on loader batches that carry the loader's target
    # keys (ignored: the program derives its own) and the trainer
    req = tmp_path / "requests.parquet"
    out = predict_from_store(res.out_dir, "test", tmp_path / "scores.parquet", requests_out=req, batch_size=9,
                             progress=False)
    assert "hist_sid_target" not in pq.read_table(req).schema.names
    scores = pq.read_table(out.out).column("score").to_numpy()
    ref = torch.cat([scorer(b)[b.weights > 0] for b in _loader_batches(store, spec, "test", with_targets=True)])
    np.testing.assert_allclose(scores, ref.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(scores, want, atol=1e-5, rtol=0)
    # one request at a time gives the batch's scores (no batch-size specialization in the program)
    table = pq.read_table(req).slice(0, 3)
    from torchrec_side.serving import request_tensors

    dense, values, lengths = request_tensors(table, spec)
    whole = scorer.score_tensors(dense, values, lengths)
    for r in range(3):
        one = request_tensors(table.slice(r, 1), spec)
        assert float((scorer.score_tensors(*one) - whole[r]).abs().max()) <= 1e-6
    # an item id beyond the training store's items is refused, naming the key and the table size
    i = spec.keys.index("item_id")
    for bad_id in (40, -1):
        bad = [v.clone() for v in values]
        bad[i][1] = bad_id
        with pytest.raises(ServingError, match=rf"key 'item_id': unknown item id {bad_id}: .*40 items"):
            scorer.score_tensors(dense, bad, lengths)


@pytest.mark.slow
def test_din_target_export_matches_trainer(din_target_run: Path, tmp_path: Path) -> None:
    res = export_run(din_target_run, tmp_path / "din_export")
    spec = res.spec
    assert spec.arch == "din" and spec.fixed_history_length == 20
    # sparse-ID: the target key is the item id itself (no table); SIDE: the store's SID table
    assert [(t.keys, t.source) for t in spec.targets] == [(["hist_item_id_target"], "identity"),
                                                         (["hist_sid_target"], "table")]
    out = predict_from_store(res.out_dir, "test", tmp_path / "din_scores.parquet", progress=False)
    np.testing.assert_allclose(pq.read_table(out.out).column("score").to_numpy(), trainer_scores(din_target_run),
                               atol=1e-5, rtol=0)


@pytest.mark.slow
def test_raw_content_world_target_export_matches_trainer(raw_world_run: Path, tmp_path: Path) -> None:
    """Tiny simulated world: raw content (frozen 384-d text vectors) and SIDE, both ``target: true``."""
    res = export_run(raw_world_run, tmp_path / "export")
    spec = res.spec
    # raw content: the target key is the item id, looked up in the frozen table the program holds
    assert [(t.keys, t.kind, t.source) for t in spec.targets] == [
        (["hist_raw_text_target"], "raw_content", "identity"), (["hist_sid_target"], "side", "table")]
    assert spec.targets[1].rows == 2000 and spec.targets[1].dtype == "int32"  # 9-bit mixed-radix SIDs
    want = trainer_scores(raw_world_run)
    got = fresh_process_scores(res.out_dir, tmp_path)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_predict_cli_on_a_target_run(dlrm_target_run: Path, tmp_path: Path) -> None:
    """``torchrec-side predict RUN --from-store test`` exports the run (RUN/export) and scores it."""
    from torchrec_side.cli import main

    out = tmp_path / "s.parquet"
    assert main(["predict", str(dlrm_target_run), "--from-store", "test", "--out", str(out), "--no-progress",
                 "--threads", "1"]) == 0
    np.testing.assert_allclose(pq.read_table(out).column("score").to_numpy(), trainer_scores(dlrm_target_run),
                               atol=1e-5, rtol=0)
    assert read_spec(dlrm_target_run / "export").target_keys  # the run's own export folder


# ---------------------------------------------------------------------------------------------
# the in-program derivation against a plain per-example reference (no training)


class _Recorder(nn.Module):
    """A stand-in ranker: keeps the KJT it is given, returns zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Optional[Any] = None

    def forward(self, dense: torch.Tensor, kjt: Any) -> torch.Tensor:
        self.seen = kjt
        return dense[:, 0] * 0


def _reference(items: List[int], tables: List[Tuple[List[str], Optional[np.ndarray], bool]]) -> Dict[str, Tuple[List[int], List[int]]]:
    """Per example, the loader's rule: one event per example, ``table[item]`` (the item id itself
    for the identity), ``W`` values in one key when flattened, else one key per slot."""
    out: Dict[str, Tuple[List[int], List[int]]] = {}
    for keys, table, flatten in tables:
        rows = [[i] if table is None else [int(x) for x in table[i]] for i in items]
        w = len(rows[0]) if rows else 1
        if w == 1 or flatten:
            out[keys[0]] = ([x for r in rows for x in r], [w if flatten else 1 for _ in rows])
        else:
            for j, k in enumerate(keys):
                out[k] = ([r[j] for r in rows], [1 for _ in rows])
    return out


@settings(max_examples=25, deadline=None)
@given(items=st.lists(st.integers(0, 9), min_size=1, max_size=6), width=st.integers(1, 3), flatten=st.booleans(),
       big=st.booleans(), seed=st.integers(0, 2**16))
def test_derived_target_keys_match_a_per_example_reference(items: List[int], width: int, flatten: bool, big: bool,
                                                          seed: int) -> None:
    rng = np.random.default_rng(seed)
    hi = 2**40 if big else 1000  # int64 tables (packed SIDs) and int32-narrowed ones
    wide = rng.integers(0, hi, size=(10, width), dtype=np.int64)
    sids = rng.integers(0, hi, size=(10, 1), dtype=np.int64)
    wide_keys = ["w_target"] if (width == 1 or flatten) else [f"w_target_{j}" for j in range(width)]
    spec_tables: List[Tuple[List[str], Optional[np.ndarray], bool]] = [
        (["h_target"], None, False), (["s_target"], sids, False), (wide_keys, wide, flatten)]
    b = len(items)
    keys = ["user_id", "item_id", "h"]
    hist = torch.tensor([5, 6, 7][: b] + [1] * max(0, b - 3), dtype=torch.int64)
    model_keys = ["user_id", "item_id", "h", "h_target", "s_target"] + wide_keys
    rec = _Recorder()
    targets = [TargetTable(k, None if t is None else torch.from_numpy(t if big else t.astype(np.int32)), f)
               for k, t, f in spec_tables]
    m = ServingModule(rec, keys, targets, model_keys)
    item = torch.tensor(items, dtype=torch.int64)
    ones = torch.ones(b, dtype=torch.int64)
    m(torch.zeros(b, 2), [torch.arange(b), item, hist], [ones, ones, ones])
    assert rec.seen is not None and rec.seen.keys() == model_keys
    d = rec.seen.to_dict()
    want = _reference(items, spec_tables)
    for k, (vals, lens) in want.items():
        assert d[k].values().tolist() == vals and d[k].lengths().tolist() == lens, k
    assert d["h"].values().tolist() == hist.tolist() and d["item_id"].values().tolist() == items


def test_serving_module_and_spec_refuse_inconsistent_target_keys() -> None:
    rec = _Recorder()
    with pytest.raises(ValueError, match="model keys"):
        ServingModule(rec, ["user_id", "item_id"], [TargetTable(["t"], None)], ["user_id", "item_id"])
    with pytest.raises(ValueError, match="looked up at item_id"):
        ServingModule(rec, ["user_id"], [TargetTable(["t"], None)])
    with pytest.raises(ValueError, match="3 keys needed"):
        ServingModule(rec, ["user_id", "item_id"], [TargetTable(["t"], torch.zeros(4, 3, dtype=torch.int64))])
    with pytest.raises(ValueError, match="int32/int64"):
        ServingModule(rec, ["user_id", "item_id"], [TargetTable(["t"], torch.zeros(4, 1))])
    spec = ServingSpec(keys=["user_id", "item_id"], id_features=["user_id", "item_id"],
                       targets=[TargetInputSpec(column="hist_sid", width=1, flatten=False, keys=["hist_sid_target"],
                                                rows=4)],
                       model_keys=["user_id", "item_id", "hist_sid_target"])
    d = spec.to_dict()
    assert ServingSpec.from_dict(d).targets == spec.targets
    with pytest.raises(ArtifactError, match="model keys"):
        ServingSpec.from_dict({**d, "model_keys": ["user_id", "item_id", "other"]}, where=SPEC_FILE)
    # a spec written before target keys existed (no targets / model_keys fields) still reads
    old = {k: v for k, v in d.items() if k not in ("targets", "model_keys")}
    assert ServingSpec.from_dict(old).targets == [] and json.dumps(old)
