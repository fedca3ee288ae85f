"""Export's SIDE compute choice (the registered op where available, recorded in ``serving.json``),
its pure-torch fallback, the projection fold, and ``benchmarks/serving.py`` (its request
builder against the store's item tables, and a ``--quick`` run's JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from torchrec_side.serving import export_run, load_exported, read_spec, request_tensors, ServingError
from torchrec_side.serving.requests import write_requests_from_store

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "serving.py"


def _expected_path(codec_dict: Any) -> str:
    from torchrec_side.modules.ops import cpu_kernel
    from torchrec_side.modules.tables import byte_groups
    from torchrec_side.sid import SIDCodec

    if byte_groups(SIDCodec.from_dict(codec_dict)) is None:
        return "per_level"
    return "kernel" if cpu_kernel.kernels_available() else "grouped_bag"


def _test_requests(export_dir: Path, tmp: Path) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
    from torchrec_side.data import ExampleStore

    spec = read_spec(export_dir)
    req = tmp / "requests.parquet"
    write_requests_from_store(ExampleStore(spec.source["store"]), "test", spec, req)
    return request_tensors(pq.read_table(req), spec)


@pytest.mark.slow
def test_export_keeps_the_registered_op_and_records_the_path(dlrm_export: Path) -> None:
    spec = read_spec(dlrm_export)
    assert set(spec.side_compute) == set(spec.sid_codecs) == {"hist_sid", "hist_sid_rq"}
    for key, codec in spec.sid_codecs.items():
        assert spec.side_compute[key] == _expected_path(codec), key
    uses_op = any(op.startswith("torchrec_side.") for op in spec.ops)
    assert uses_op == ("kernel" in spec.side_compute.values())
    scorer = load_exported(dlrm_export)  # registers the op before loading; the sample self-check passes
    # keys the program checks itself are not validated again before the call
    assert set(scorer._codecs) == {k for k, p in spec.side_compute.items() if p != "kernel"}


@pytest.mark.slow
def test_a_program_calling_an_unknown_side_op_is_refused_by_name(dlrm_export: Path, tmp_path: Path) -> None:
    import shutil

    from torchrec_side.io import ArtifactError
    from torchrec_side.serving.artifact import SPEC_DIGEST_KEY, spec_digest, SPEC_FILE

    d = tmp_path / "renamed"
    shutil.copytree(dlrm_export, d)
    raw = json.loads((d / SPEC_FILE).read_text())
    raw["ops"] = raw["ops"] + ["torchrec_side.sid_pool_renamed_long_ago.default"]
    raw[SPEC_DIGEST_KEY] = spec_digest(raw)  # edited on purpose: signed again
    (d / SPEC_FILE).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match=r"calls \['torchrec_side\.sid_pool_renamed_long_ago\.default'\], which "
                                            r"the torchrec_side here .* does not define; export the run again"):
        load_exported(d)


@pytest.mark.slow
def test_torch_export_scores_like_the_kernel_export(dlrm_export: Path, dlrm_run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``side_compute="torch"`` (what export falls back to where the op is unavailable) uses
    grouped_bag / per_level, records it, the scorer validates those SIDs eagerly, and the scores
    equal the kernel program's."""
    from torchrec_side.cli import main

    assert main(["export", str(dlrm_run), "--out", str(tmp_path / "fallback"), "--side-compute", "torch"]) == 0
    assert "SIDE compute {'hist_sid': 'grouped_bag', 'hist_sid_rq': 'per_level'}" in capsys.readouterr().out
    spec = read_spec(tmp_path / "fallback")
    assert spec.side_compute == {"hist_sid": "grouped_bag", "hist_sid_rq": "per_level"}
    assert not any(op.startswith("torchrec_side.") for op in spec.ops)
    with pytest.raises(ServingError, match=r"side_compute='fast': expected one of \['auto', 'torch'\]"):
        export_run(dlrm_run, tmp_path / "bad", side_compute="fast")
    dense, values, lengths = _test_requests(dlrm_export, tmp_path)
    fast, slow = load_exported(dlrm_export), load_exported(tmp_path / "fallback")
    assert set(slow._codecs) == {"hist_sid", "hist_sid_rq"}
    np.testing.assert_allclose(fast.score_tensors(dense, values, lengths).numpy(),
                               slow.score_tensors(dense, values, lengths).numpy(), atol=1e-5, rtol=0)
    # an invalid SID is named by both (the kernel program refuses it in-graph, the scorer names it)
    j = fast.keys.index("hist_sid")
    bad = [v.clone() for v in values]
    bad[j][0] = 255  # byte 0 of a 5-ternary-digit group holds at most 3**5 - 1 = 242
    for scorer in (fast, slow):
        with pytest.raises(ServingError, match="key 'hist_sid': invalid packed SID"):
            scorer.score_tensors(dense, bad, lengths)


@pytest.mark.slow
def test_projection_fold_keeps_the_scores(dlrm_run: Path, dlrm_export: Path, tmp_path: Path) -> None:
    """The program pools SIDE at the projected width; scores equal the unfolded model's on the
    whole test split (and a module with a projection was folded)."""
    from torchrec_side.modules.side import _SIDTableBase
    from torchrec_side.serving.export import _model_keys, _serving_copy, _target_tables, ServingModule
    from torchrec_side.serving.rebuild import load_run

    run = load_run(dlrm_run)
    folded, _ = _serving_copy(run, fold=True)
    plain, _ = _serving_copy(run, fold=False)
    had = [n for n, m in plain.named_modules() if isinstance(m, _SIDTableBase) and m.projection is not None]
    assert had, "the fixture's SIDE modules have projections (embedding_dim 8 < D)"
    assert all(getattr(folded.get_submodule(n), "projection") is None for n in had)
    for n in had:
        assert folded.get_submodule(n).get_buffer("offset").shape[0] == plain.get_submodule(n).embedding_dim
    spec = read_spec(dlrm_export)
    targets, _ = _target_tables(run)
    dense, values, lengths = _test_requests(dlrm_export, tmp_path)
    with torch.no_grad():
        a = ServingModule(folded, spec.keys, targets, _model_keys(run)).eval()(dense, values, lengths)
        b = ServingModule(plain, spec.keys, targets, _model_keys(run)).eval()(dense, values, lengths)
    assert a.shape == (dense.shape[0],)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_bench_requests_have_the_asked_length_and_aligned_columns(dlrm_export: Path) -> None:
    """Every synthetic request has exactly E events per history column, and the columns describe
    the same events (each SIDE value is the SID of the item at the same position)."""
    import importlib.util

    spec_ = importlib.util.spec_from_file_location("bench_serving", BENCH)
    assert spec_ is not None and spec_.loader is not None
    bench = importlib.util.module_from_spec(spec_)
    sys.modules["bench_serving"] = bench  # its dataclasses look their module up there
    try:
        spec_.loader.exec_module(bench)
    finally:
        del sys.modules["bench_serving"]
    request_table = bench.request_table
    from torchrec_side.data import ExampleStore

    spec = read_spec(dlrm_export)
    store = ExampleStore(spec.source["store"])
    table = request_table(store, ["hist_item_id", "hist_sid"], 37, 11, seed=3)
    assert table.num_rows == 11
    for c in ("hist_item_id", "hist_sid"):
        assert set(table.column(c).combine_chunks().value_lengths().to_numpy().tolist()) == {37}
    items = table.column("hist_item_id").combine_chunks().flatten().to_numpy()
    sids = table.column("hist_sid").combine_chunks().flatten().to_numpy()
    np.testing.assert_array_equal(store.item_values("hist_sid")[items, 0], sids)
    again = request_table(store, ["hist_item_id", "hist_sid"], 37, 11, seed=3)
    assert again.equals(table)  # seeded
