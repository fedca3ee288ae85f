# pyre-strict
"""The report's typed records: round trips of what the trainer and the driver write, unknown keys
kept, and one-line errors naming the file for missing, truncated or malformed input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from torchrec_side.records import PipelineRecord, RecordError, RunRecord, ThroughputRecord, VariantRecord


def _metrics() -> Dict[str, Any]:
    """A ``metrics.json`` with every key the trainer writes, in its order."""
    split = {"ne": 0.91, "auc": 0.7, "ne_exact": 0.9101, "log_loss": 0.5, "base_rate": 0.2, "examples": 100}
    return {
        "name": "side", "seed": 1, "arch": "dlrm", "world_size": 2, "device": "cpu", "steps": 40,
        "steps_per_epoch": 10, "epochs": 4.0, "resumed_from_step": None, "global_batch_size": 128,
        "train_examples": 5120, "train_time_s": 3.5, "train_examples_per_s": 1462.8, "val": split,
        "test": {**split, "ne": 0.92}, "best_epoch": 3, "best_step": 30,
        "val_history": [{"epoch": 1, "step": 10, "ne": 0.95}], "stopped_early": False, "early_stop_patience": 2,
        "learned_params": {"total": 1000, "dense": 200}, "history": [
            {"name": "hist_sid", "kind": "side", "column": "hist_sid", "keys": ["hist_sid"], "target_keys": [],
             "bits_per_sid": 24, "model_bytes_per_event": 8, "target": True, "learned_params": 0,
             "min_packed_bytes_per_event": 3, "frozen_table_floats": 64,
             "footprint": {"log_events": 10.0, "value_bytes_per_event": 8.0, "file_bytes_per_event": 2.5}}],
        "sharding": {"mode": "auto", "tables": {}}, "pipeline": "sparse_dist", "optim": {"lr": 0.01},
        "store": "/x/store", "data": {"train": 10, "val": 2, "test": 2}, "wall_s": 9.0,
        "predictions": "predictions_test.parquet",
    }


def _pipeline() -> Dict[str, Any]:
    """A ``pipeline.json`` as the simulated-world driver writes it (after tuning)."""
    return {
        "world": {"name": "adsworld_quick", "kind": "simulated", "size": "quick", "preset": "default",
                  "num_items": 100, "target_in_history": {"split": "test", "impressions": 10, "max_history": 5,
                                                          "share": 0.1, "mean_count_when_in": 1.2, "ctr_in": 0.3,
                                                          "ctr_not_in": 0.1}},
        "id_dominant": False, "mode": "full", "budget": {"size": "quick"}, "out": "/o", "seeds": [0, 1],
        "epochs": 4, "max_epochs": 4, "early_stop_patience": 2, "stopping": "every run: ...", "nproc": 2,
        "overrides": ["train.epochs=4"], "variants": [
            {"name": "control", "config": "adsworld/dlrm_control", "resolved_config": "/o/c.yaml", "role": "control",
             "seeds": [0, 1], "description": "DLRM", "run_dirs": {"0": "/o/t/0", "1": "/o/t/1"},
             "tuned": {"setting": "base", "overrides": []}}],
        "fitted": ["rq_text"], "unavailable": {}, "prep_seconds": 1.5,
        "failed": [{"variant": "side", "seeds": [1], "returncode": 1, "log": "/o/logs", "tuning": ["base"]}],
        "control_world": "/o/ctrl", "variant_seeds": {}, "tuning": {"seed": 0, "settings": {"base": []},
                                                                   "variants": {"control": {"chosen": "base"}}},
        "train_seconds": 10.0, "total_seconds": 11.5, "warnings": ["w"], "something_new": {"kept": True},
    }


def test_run_record_round_trip(tmp_path: Path) -> None:
    d = _metrics()
    rec = RunRecord.from_dict(d)
    assert rec.test is not None and rec.test.ne == 0.92 and rec.learned_total == 1000
    h = rec.history[0]
    assert h.kind == "side" and h.model_bytes_per_event == 8 and h.footprint is not None
    assert h.footprint.file_bytes_per_event == 2.5 and h.extra["bits_per_sid"] == 24
    assert rec.to_dict() == d and list(rec.to_dict()) == list(d)
    rec.write(tmp_path / "metrics.json")
    assert RunRecord.from_json(tmp_path / "metrics.json") == rec
    assert json.loads((tmp_path / "metrics.json").read_text()) == d


def test_run_record_built_in_code_writes_the_trainers_keys() -> None:
    rec = RunRecord(name="control", seed=0, arch="dlrm", test=None)
    d = rec.to_dict()
    assert d["test"] is None and d["train_examples_per_s"] is None and d["history"] == []
    assert "predictions" not in d  # written only when the run wrote predictions


def test_pipeline_record_round_trip_keeps_unknown_keys(tmp_path: Path) -> None:
    d = _pipeline()
    rec = PipelineRecord.from_dict(d)
    assert rec.extra == {"something_new": {"kept": True}}
    v = rec.variants[0]
    assert isinstance(v, VariantRecord) and v.runs() == {0: Path("/o/t/0"), 1: Path("/o/t/1")}
    assert v.tuned is not None and v.tuned.setting == "base"
    assert rec.tuning is not None and rec.tuning.settings == {"base": []} and rec.failed[0].extra == {"tuning": ["base"]}
    assert rec.to_dict() == d and list(rec.to_dict()) == list(d)
    rec.write(tmp_path / "pipeline.json")
    assert json.loads((tmp_path / "pipeline.json").read_text()) == d
    # an old / minimal record (what the report tests write) round-trips without gaining keys
    small = {"mode": "full", "seeds": [0], "epochs": 1, "nproc": 2, "failed": [],
             "variants": [{"name": "control", "config": "", "role": "control", "description": "c", "run_dirs": {}}]}
    assert PipelineRecord.from_dict(small).to_dict() == small


def test_throughput_record_round_trip() -> None:
    d = {"machine": {"cpu": "x"}, "summary": {"side_vs_sparse_id": 1.6, "side_vs_prefix_ngram": 1.2,
                                              "examples_per_s": {"side": 900.0}, "device": "cpu"}, "rows": []}
    rec = ThroughputRecord.from_dict(d)
    assert rec.side_vs_sparse_id == 1.6 and rec.examples_per_s == {"side": 900.0}
    assert rec.to_dict() == d


@pytest.mark.parametrize("text,match", [
    (None, "not found"),
    ('{"variants": [{"name": "c", "run_dirs"', "is not valid JSON"),  # truncated
    ('[1]', "must be an object"),
    ('{"variants": {}}', "a 'variants' list"),
    ('{"variants": [{"run_dirs": {}}]}', "string 'name'"),
    ('{"variants": [{"name": "c", "run_dirs": {"zero": "/x"}}]}', "is not a seed"),
    ('{"variants": [{"name": "c"}], "seeds": "0,1"}', "'seeds' must be a list"),
    ('{"variants": [{"name": "c"}], "world": 3}', "'world' must be"),
])
def test_pipeline_record_errors_name_the_file(tmp_path: Path, text: Any, match: str) -> None:
    f = tmp_path / "pipeline.json"
    if text is not None:
        f.write_text(text)
    with pytest.raises(RecordError, match=match) as e:
        PipelineRecord.from_json(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)  # callers catching ValueError still do


def test_an_empty_pipeline_is_written_but_not_reported(tmp_path: Path) -> None:
    """The driver writes pipeline.json before its first launch; only the report needs variants."""
    from torchrec_side.report.inputs import collect

    PipelineRecord.from_dict({"variants": [], "mode": "quick"}).write(tmp_path / "pipeline.json")
    with pytest.raises(RecordError, match="no variants"):
        collect(tmp_path)
    # variants whose run folders hold no metrics.json (all failed, or a hand-written record)
    PipelineRecord.from_dict({"variants": [{"name": "control", "run_dirs": {"0": str(tmp_path / "r0")}}]}).write(
        tmp_path / "pipeline.json")
    with pytest.raises(RecordError, match="none of its 1 variants has a finished run"):
        collect(tmp_path)


@pytest.mark.parametrize("change,match", [({"test": 3}, "'test' must be an object"),
                                          ({"history": {"a": 1}}, "'history' must be a list"),
                                          ({"seed": "one"}, "'seed' must be an integer"),
                                          ({"learned_params": {"total": "many"}}, "learned_params.total")])
def test_run_record_malformed_values(tmp_path: Path, change: Dict[str, Any], match: str) -> None:
    f = tmp_path / "metrics.json"
    f.write_text(json.dumps({**_metrics(), **change}))
    with pytest.raises(RecordError, match=match) as e:
        RunRecord.from_json(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_records_import_nothing_heavy() -> None:
    """The trainer imports the records: neither torch nor matplotlib comes with them."""
    code = ("import sys, torchrec_side.records; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
