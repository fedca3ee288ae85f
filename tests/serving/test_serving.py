"""Serving: export a trained run, load it in a fresh process without the trainer, score; the scores
equal the trainer's own evaluation scores (``predictions_test.parquet``, the DMP model) to 1e-5;
predict over a request file equals the scorer; corrupt artifacts and bad requests are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings, strategies as st

from torchrec_side.data import ExampleStore
from torchrec_side.io import ArtifactError
from torchrec_side.serving import (
    export_run,
    load_exported,
    predict,
    read_spec,
    request_tensors,
    ServingError,
    ServingSpec,
    write_requests_from_store,
)
from torchrec_side.serving.artifact import (
    file_entry,
    HistoryInputSpec,
    SAMPLE_FILE,
    SPEC_DIGEST_KEY,
    SPEC_FILE,
    spec_digest,
)

from serving_helpers import fresh_process_scores as _fresh_process_scores, trainer_scores as _trainer_scores


def _signed(d: Any) -> Any:
    """``serving.json`` content edited on purpose, with its checksum made right again."""
    return {**d, SPEC_DIGEST_KEY: spec_digest(d)}


@pytest.mark.slow
def test_dlrm_export_matches_trainer_eval_in_a_fresh_process(dlrm_run: Path, dlrm_export: Path, tmp_path: Path) -> None:
    spec = read_spec(dlrm_export)
    metrics = json.loads((dlrm_run / "metrics.json").read_text())
    assert spec.source["selection"] == "best_validation" and spec.source["step"] == metrics["best_step"]
    assert spec.keys == ["user_id", "item_id", "hist_item_id", "hist_sid", "hist_pn__p1", "hist_pn__p2",
                         "hist_pn__p3", "hist_sid_rq"]
    assert set(spec.sid_codecs) == {"hist_sid", "hist_sid_rq"} and spec.key_rows["hist_item_id"] == 40
    assert {"model.pt2", "sample.safetensors", "run_config.yaml"} <= set(spec.files)
    # aten, plus at most fbgemm's jagged ops and, where SIDE runs the registered op, torchrec_side's
    kernel = "kernel" in spec.side_compute.values()
    assert all(op.startswith("fbgemm.") or (kernel and op.startswith("torchrec_side.")) for op in spec.ops)
    scores = _fresh_process_scores(dlrm_export, tmp_path)
    want = _trainer_scores(dlrm_run)  # the trainer's own evaluation (DMP, sharded tables), store order
    assert scores.shape == (len(want),) and len(want) == metrics["test"]["examples"]
    np.testing.assert_allclose(scores.numpy(), want, atol=1e-5, rtol=0)
    # and the trainer's NE follows from these scores
    labels = pq.read_table(dlrm_run / "predictions_test.parquet").column("label").to_numpy()
    p = scores.double().clamp(1e-12, 1 - 1e-12).numpy()
    ll = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean()
    base = labels.mean()
    ne = ll / -(base * np.log(base) + (1 - base) * np.log(1 - base))
    assert abs(ne - metrics["test"]["ne_exact"]) < 1e-5


@pytest.mark.slow
def test_din_export_matches_trainer_eval(din_run: Path, tmp_path: Path) -> None:
    from torchrec_side.serving import predict_from_store

    res = export_run(din_run, tmp_path / "din_export")
    assert res.spec.arch == "din" and res.spec.fixed_history_length == 20 and res.max_abs_diff <= 1e-6
    kernel = "kernel" in res.spec.side_compute.values()  # what the loading process must register:
    assert all(op.startswith("fbgemm.") or (kernel and op.startswith("torchrec_side.")) for op in res.spec.ops)
    # the program pads to 20 events, the trainer to each batch's longest history: same scores
    out = predict_from_store(tmp_path / "din_export", "test", tmp_path / "din_scores.parquet", progress=False)
    np.testing.assert_allclose(pq.read_table(out.out).column("score").to_numpy(), _trainer_scores(din_run),
                               atol=1e-5, rtol=0)
    scorer = load_exported(tmp_path / "din_export")
    spec = scorer.spec
    b = 2
    long = [torch.zeros(b, dtype=torch.long), torch.zeros(b, dtype=torch.long)]
    lens = [torch.ones(b, dtype=torch.long)] * 2
    for k in spec.keys[2:]:
        long.append(torch.zeros(0, dtype=torch.long) if k != "hist_item_id" else torch.zeros(21, dtype=torch.long))
        lens.append(torch.tensor([21, 0]) if k == "hist_item_id" else torch.zeros(b, dtype=torch.long))
    with pytest.raises(ServingError, match="history of 21 events exceeds the exported model's 20"):
        scorer.score_tensors(torch.zeros(b, 2), long, lens)


@pytest.mark.slow
def test_predict_file_equals_scorer_and_loader_batches(dlrm_run: Path, dlrm_export: Path, tmp_path: Path) -> None:
    from torchrec_side.data import ExampleStore, HistoryInput, make_dataloader

    scorer = load_exported(dlrm_export)
    spec = scorer.spec
    store = ExampleStore(spec.source["store"])
    req = tmp_path / "requests.parquet"
    n = write_requests_from_store(store, "val", spec, req)
    table = pq.read_table(req)
    assert n == table.num_rows == store.rows("val") and set(spec.history_columns) <= set(table.schema.names)
    table = table.append_column("request_id", pa.array([f"r{i}" for i in range(n)]))
    pq.write_table(table, req, row_group_size=37)
    out = tmp_path / "scores.parquet"
    res = predict(dlrm_export, req, out, batch_size=7, progress=False)
    got = pq.read_table(out)
    assert res.rows == n and got.schema.names == ["user_id", "item_id", "num_prior", "label", "timestamp",
                                                  "request_id", "score"]
    assert got.column("request_id").to_pylist() == table.column("request_id").to_pylist()
    # reference: the scorer on the training loader's batches of the same split (independent conversion)
    inputs = [HistoryInput("hist_item_id"), HistoryInput("hist_sid"),
              HistoryInput("hist_pn", keys=("hist_pn__p1", "hist_pn__p2", "hist_pn__p3")), HistoryInput("hist_sid_rq")]
    ref = torch.cat([scorer(b)[b.weights > 0] for b in make_dataloader(store, "val", inputs, 50, shuffle=False,
                                                                        num_workers=0)])
    np.testing.assert_allclose(got.column("score").to_numpy(), ref.numpy(), atol=1e-6, rtol=0)
    # a run folder works too: its export/ (the fixture wrote it) is reused while the checkpoint is the same
    out2 = tmp_path / "scores_run.parquet"
    from torchrec_side.cli import main

    assert dlrm_export == dlrm_run / "export"
    mtime = (dlrm_run / "export" / "model.pt2").stat().st_mtime_ns
    assert main(["predict", str(dlrm_run), "--input", str(req), "--out", str(out2), "--no-progress", "--threads", "1"]) == 0
    np.testing.assert_allclose(pq.read_table(out2).column("score").to_numpy(), ref.numpy(), atol=1e-6, rtol=0)
    assert main(["predict", str(dlrm_run), "--from-store", "test", "--out", str(out2), "--no-progress", "--threads", "1"]) == 0
    assert (dlrm_run / "export" / "model.pt2").stat().st_mtime_ns == mtime
    np.testing.assert_allclose(pq.read_table(out2).column("score").to_numpy(), _trainer_scores(dlrm_run),
                               atol=1e-5, rtol=0)


def test_predict_never_overwrites_files_it_did_not_write(dlrm_export: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from torchrec_side.cli import main
    from torchrec_side.io import parquet_kind

    req = tmp_path / "requests.parquet"
    write_requests_from_store(ExampleStore(load_exported(dlrm_export).spec.source["store"]), "val",
                              load_exported(dlrm_export).spec, req)
    before = req.read_bytes()
    args = ["predict", str(dlrm_export), "--no-progress", "--threads", "1"]
    assert main(args + ["--input", str(req), "--out", str(req)]) == 2  # the request file itself
    assert "is the request file itself" in capsys.readouterr().err and req.read_bytes() == before
    mine = tmp_path / "mine.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), mine)
    mine_bytes = mine.read_bytes()
    assert main(args + ["--input", str(req), "--out", str(mine)]) == 2  # a Parquet file predict did not write
    assert "--overwrite" in capsys.readouterr().err and mine.read_bytes() == mine_bytes
    assert main(args + ["--from-store", "val", "--input", str(mine), "--out", str(tmp_path / "s.parquet")]) == 2
    assert "not a request file" in capsys.readouterr().err and mine.read_bytes() == mine_bytes
    (tmp_path / "dir.parquet").mkdir()
    assert main(args + ["--input", str(req), "--out", str(tmp_path / "dir.parquet")]) == 2
    assert "not a file" in capsys.readouterr().err
    # its own outputs are replaced on a rerun; --overwrite replaces anything else that is a file
    out = tmp_path / "scores.parquet"
    assert main(args + ["--input", str(req), "--out", str(out)]) == 0 and parquet_kind(out) == "scores"
    assert main(args + ["--input", str(req), "--out", str(out)]) == 0
    assert main(args + ["--input", str(req), "--out", str(mine), "--overwrite"]) == 0 and parquet_kind(mine) == "scores"
    assert parquet_kind(req) == "requests"


def _corrupt(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
def test_corrupt_or_mismatched_artifacts_are_refused(dlrm_export: Path, tmp_path: Path) -> None:
    load_exported(dlrm_export)  # the original loads and reproduces its sample
    d = _corrupt(dlrm_export, tmp_path / "flip")
    raw = bytearray((d / "model.pt2").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "model.pt2").write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="model.pt2 fails its SHA-256 check"):
        load_exported(d)
    d = _corrupt(dlrm_export, tmp_path / "trunc")
    (d / SAMPLE_FILE).write_bytes((d / SAMPLE_FILE).read_bytes()[:100])
    with pytest.raises(ArtifactError, match="sample.safetensors has 100 bytes"):
        load_exported(d)
    d = _corrupt(dlrm_export, tmp_path / "missing")
    (d / "model.pt2").unlink()
    with pytest.raises(ArtifactError, match="model.pt2 is missing"):
        load_exported(d)
    d = _corrupt(dlrm_export, tmp_path / "version")
    spec = json.loads((d / SPEC_FILE).read_text())
    (d / SPEC_FILE).write_text(json.dumps({**spec, "format_version": 99}))
    with pytest.raises(ArtifactError, match="serving.json: fails its SHA-256 check"):  # issue 17: edited
        load_exported(d)
    (d / SPEC_FILE).write_text(json.dumps(_signed({**spec, "format_version": 99})))
    with pytest.raises(ArtifactError, match="format version 99"):
        load_exported(d)
    (d / SPEC_FILE).write_text(json.dumps({k: v for k, v in spec.items() if k != SPEC_DIGEST_KEY}))
    with pytest.raises(ArtifactError, match="no spec_sha256"):
        load_exported(d)
    # a program that does not reproduce its recorded scores (files consistent with serving.json)
    from torchrec_side.io import load_tensors, save_tensors

    d = _corrupt(dlrm_export, tmp_path / "sample")
    tensors, meta = load_tensors(d / SAMPLE_FILE)
    save_tensors(d / SAMPLE_FILE, {**tensors, "scores": tensors["scores"] + 0.01}, meta)
    spec["files"][SAMPLE_FILE] = file_entry(d / SAMPLE_FILE)
    (d / SPEC_FILE).write_text(json.dumps(_signed(spec)))
    with pytest.raises(ArtifactError, match="scores the recorded sample"):
        load_exported(d)
    with pytest.raises(ArtifactError, match="missing serving.json"):
        load_exported(tmp_path)


@pytest.mark.slow
def test_bad_requests_are_refused_with_the_column_or_key(dlrm_export: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from torchrec_side.cli import main
    from torchrec_side.data import ExampleStore

    scorer = load_exported(dlrm_export)
    spec = scorer.spec
    req = tmp_path / "req.parquet"
    write_requests_from_store(ExampleStore(spec.source["store"]), "test", spec, req)
    table = pq.read_table(req).slice(0, 8)
    pq.write_table(table.drop_columns(["hist_sid"]), tmp_path / "nosid.parquet")
    assert main(["predict", str(dlrm_export), "--input", str(tmp_path / "nosid.parquet"), "--out",
                 str(tmp_path / "o.parquet"), "--no-progress", "--threads", "1"]) == 2
    assert "missing columns ['hist_sid']" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()
    # a truncated request file (issue 17, moderate): one line naming the error, status 2, no traceback
    raw = req.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(raw[: len(raw) // 2])
    assert main(["predict", str(dlrm_export), "--input", str(tmp_path / "cut.parquet"), "--out",
                 str(tmp_path / "o.parquet"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("torchrec-side predict: ")
    assert "cut.parquet: not a readable Parquet file" in err
    assert not (tmp_path / "o.parquet").exists()
    dense, values, lengths = request_tensors(table, spec)
    i = spec.keys.index("item_id")
    bad = [v.clone() for v in values]
    bad[i][0] = 40
    with pytest.raises(ServingError, match=r"key 'item_id': values must lie in \[0, 40\)"):
        scorer.score_tensors(dense, bad, lengths)
    j = spec.keys.index("hist_sid")
    bad = [v.clone() for v in values]
    bad[j][0] = 255  # byte 0 of a 5-ternary-digit group holds at most 3**5 - 1 = 242
    with pytest.raises(ServingError, match="key 'hist_sid': invalid packed SID"):
        scorer.score_tensors(dense, bad, lengths)
    with pytest.raises(ServingError, match="dense features must be"):
        scorer.score_tensors(dense[:, :1], values, lengths)


@pytest.mark.slow
def test_export_cli_and_checkpoint_choice(dlrm_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from torchrec_side.cli import main

    assert main(["export", str(dlrm_run), "--out", str(tmp_path / "e"), "--checkpoint", "latest"]) == 0
    assert "exported" in capsys.readouterr().out
    assert read_spec(tmp_path / "e").source["selection"] == "latest"
    assert main(["export", str(dlrm_run), "--out", str(tmp_path / "e2"), "--checkpoint", "step_00000001"]) == 2
    assert "checkpoint 'step_00000001' is not usable" in capsys.readouterr().err and not (tmp_path / "e2").exists()
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "e3")]) == 2
    assert "not a training run folder" in capsys.readouterr().err
    # issue 17 (severe): `export RUN --out RUN` deleted the run's checkpoints and metrics; now refused
    before = sorted(str(q.relative_to(dlrm_run)) for q in dlrm_run.rglob("*"))
    for out in (dlrm_run, dlrm_run.parent):
        assert main(["export", str(dlrm_run), "--out", str(out)]) == 2
        assert "refusing to replace" in capsys.readouterr().err
    assert sorted(str(q.relative_to(dlrm_run)) for q in dlrm_run.rglob("*")) == before
    assert main(["export", str(dlrm_run), "--out", str(tmp_path / "e")]) == 0  # its own earlier export: replaced
    # predict RUN re-exports when RUN/export holds another checkpoint than the one it would serve
    run = tmp_path / "run_copy"
    shutil.copytree(dlrm_run, run, ignore=shutil.ignore_patterns("export"))
    shutil.copytree(tmp_path / "e", run / "export")
    spec = json.loads((run / "export" / SPEC_FILE).read_text())
    (run / "export" / SPEC_FILE).write_text(json.dumps({**spec, "source": {**spec["source"], "checkpoint": "step_0"}}))
    from torchrec_side.serving import resolve_export

    assert resolve_export(run) == run / "export"
    best = f"step_{json.loads((run / 'metrics.json').read_text())['best_step']:08d}"
    assert read_spec(run / "export").source["checkpoint"] == best
    # a damaged checkpoint is refused by the trainer's manifest check before DCP reads it
    shard = next((run / "checkpoints" / best).glob("*.distcp"))
    raw = bytearray(shard.read_bytes())
    raw[0] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(ServingError, match=f"best validation checkpoint {best} is not usable: .*SHA-256"):
        export_run(run, tmp_path / "e4", checkpoint="best")


# ---------------------------------------------------------------------------------------------
# request conversion against a plain reference (no model)


def _spec(cap: int, width: int) -> ServingSpec:
    hist = [HistoryInputSpec(column="h1", width=1, flatten=False, keys=["h1"]),
            HistoryInputSpec(column="hw", width=width, flatten=False, keys=[f"hw_{j}" for j in range(width)])]
    keys = ["user_id", "item_id", "h1"] + [f"hw_{j}" for j in range(width)]
    return ServingSpec(keys=keys, id_features=["user_id", "item_id"], dense_features=["log_num_prior", "no_history"],
                       history=hist, max_history=cap)


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.lists(st.integers(0, 1000), max_size=9), min_size=1, max_size=8),
       cap=st.integers(1, 6), width=st.integers(2, 3))
def test_request_tensors_match_a_per_row_reference(rows: List[List[int]], cap: int, width: int) -> None:
    spec = _spec(cap, width)
    wide = [[[v * 10 + j for j in range(width)] for v in r] for r in rows]
    table = pa.table({
        "user_id": pa.array(list(range(len(rows))), pa.int64()), "item_id": pa.array([3] * len(rows), pa.int32()),
        "num_prior": pa.array([len(r) for r in rows], pa.int64()),
        "h1": pa.array(rows, pa.list_(pa.int64())),
        "hw": pa.array(wide, pa.list_(pa.list_(pa.int64(), width))),
    })
    dense, values, lengths = request_tensors(table, spec)
    kept = [r[-cap:] if len(r) > cap else r for r in rows]
    assert values[2].tolist() == [v for r in kept for v in r]
    assert lengths[2].tolist() == [len(r) for r in kept]
    for j in range(width):
        assert values[3 + j].tolist() == [v * 10 + j for r in kept for v in r]
        assert lengths[3 + j].tolist() == lengths[2].tolist()
    assert values[1].tolist() == [3] * len(rows) and all(n.dtype == torch.int64 for n in lengths)
    prior = np.array([len(r) for r in rows], dtype=np.float64)
    np.testing.assert_allclose(dense[:, 0].numpy(), np.log1p(prior) / np.log1p(1000.0), rtol=1e-6)
    assert dense[:, 1].tolist() == [float(len(r) == 0) for r in rows]


def test_request_schema_errors_name_the_column() -> None:
    spec = _spec(4, 2)
    ok = {"user_id": pa.array([0], pa.int64()), "item_id": pa.array([1], pa.int64()),
          "num_prior": pa.array([0], pa.int64()), "h1": pa.array([[1]], pa.list_(pa.int64())),
          "hw": pa.array([[[1, 2]]], pa.list_(pa.list_(pa.int64(), 2)))}

    def table(**over: Any) -> pa.Table:
        d = {**ok, **over}
        return pa.table({k: v for k, v in d.items() if v is not None})

    with pytest.raises(ServingError, match=r"missing columns \['num_prior'\]"):
        request_tensors(table(num_prior=None), spec)
    with pytest.raises(ServingError, match="column 'user_id' must hold integers"):
        request_tensors(table(user_id=pa.array([0.5])), spec)
    with pytest.raises(ServingError, match="history column 'h1' must be a list column"):
        request_tensors(table(h1=pa.array([1], pa.int64())), spec)
    with pytest.raises(ServingError, match="history column 'hw' needs 2 values per event"):
        request_tensors(table(hw=pa.array([[[1, 2, 3]]], pa.list_(pa.list_(pa.int64())))), spec)
    with pytest.raises(ServingError, match="'num_prior' has negative values"):
        request_tensors(table(num_prior=pa.array([-1], pa.int64())), spec)


def test_a_null_event_is_refused_and_never_changes_other_requests() -> None:
    """Issue 17 (severe): one null inside one request's history list turned the column into
    float64, rounded the packed SIDs of every request above 2^53 and scored with exit 0."""
    spec = _spec(8, 2)
    big = (1 << 62) + 12345  # a packed SID float64 cannot hold
    rows = 3
    base = {"user_id": pa.array([0, 1, 2], pa.int64()), "item_id": pa.array([1, 1, 1], pa.int64()),
            "num_prior": pa.array([1, 2, 1], pa.int64()),
            "hw": pa.array([[[1, 2]], [[3, 4], [5, 6]], [[7, 8]]], pa.list_(pa.list_(pa.int64(), 2)))}
    good = pa.table({**base, "h1": pa.array([[big], [big + 1, 5], [big + 2]], pa.list_(pa.int64()))})
    _, values, _ = request_tensors(good, spec)
    assert values[2].tolist() == [big, big + 1, 5, big + 2]  # exact: no float round trip
    for col, arr, row in (("h1", pa.array([[big], [big + 1, None], [big + 2]], pa.list_(pa.int64())), 1),
                          ("hw", pa.array([[[1, 2]], [[3, 4], [5, 6]], [[7, None]]], pa.list_(pa.list_(pa.int64(), 2))), 2),
                          ("hw", pa.array([[[1, 2]], [None, [5, 6]], [[7, 8]]], pa.list_(pa.list_(pa.int64(), 2))), 1)):
        t = good.set_column(good.schema.get_field_index(col), col, arr)
        assert t.num_rows == rows
        with pytest.raises(ServingError, match=rf"history column '{col}' has 1 null event.*first in row {row}"):
            request_tensors(t, spec)


def test_history_column_missing_from_the_store_is_a_serving_error() -> None:
    """Rebuilding resolves the feature keys through the trainer's own function; a column the
    store lacks is reported as a ServingError naming the feature."""
    from torchrec_side.data import StoreError
    from torchrec_side.serving.rebuild import _feature_keys

    class Store:
        def column(self, name: str) -> Any:
            raise StoreError(f"history column {name!r} is not in the store")

    class Input:
        column = "hist_gone"

    class Feature:
        where = "model.history[0] (sparse_id)"
        name = "h"

        def inputs(self) -> List[Any]:
            return [Input()]

    with pytest.raises(ServingError, match=r"model\.history\[0\] \(sparse_id\): history column 'hist_gone' is not"):
        _feature_keys(Store(), [Feature()])


@pytest.mark.slow
def test_a_replaced_sid_artifact_is_refused_on_resume_and_export(tmp_path: Path, make_tiny_job: Any) -> None:
    """Issue 17 (severe): a second ``tokenize`` / ``quantize --out`` at the same path swapped the
    SIDs under a run: a resume continued on new SIDs with the old tables, a finished run scored
    differently, export did not check. The run records its item tables' digests and refuses."""
    from torchrec_side.tokenizer.sid_table import permuted_sid_table, read_sid_table, write_sid_table
    from torchrec_side.train.config import load_train_config
    from torchrec_side.train.trainer import INPUTS_FILE, run_training

    import yaml

    job = make_tiny_job(tmp_path, "dlrm")
    cfg = load_train_config(job, ["train.epochs=1", "train.checkpoint_every=5"])
    run_training(cfg)
    run = cfg.run_path()
    assert "hist_sid" in json.loads((run / INPUTS_FILE).read_text())["item_tables"]
    export_run(run, tmp_path / "ok")  # unchanged inputs: exported
    table = Path(yaml.safe_load(job.read_text())["model"]["history"][1]["options"]["sid_table"])
    write_sid_table(table, permuted_sid_table(read_sid_table(table), seed=3))  # same path, other SIDs
    with pytest.raises(ServingError, match=r"history columns \['hist_sid'\] differ"):
        export_run(run, tmp_path / "e")
    with pytest.raises(ArtifactError, match="retrain into a new run folder"):
        run_training(load_train_config(job, ["train.epochs=2", "train.checkpoint_every=5"]))  # a resume
    assert not (tmp_path / "e").exists()
    # the resume attempt rewrote the shared store's column: the earlier export no longer scores from it
    from torchrec_side.serving import predict_from_store

    with pytest.raises(ServingError, match=r"history columns \['hist_sid'\] now hold other item tables"):
        predict_from_store(tmp_path / "ok", "test", tmp_path / "scores.parquet", progress=False)
    assert not (tmp_path / "scores.parquet").exists()
