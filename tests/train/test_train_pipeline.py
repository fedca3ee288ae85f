"""``train.pipeline``: TorchRec's TrainPipelineBase / TrainPipelineSparseDist around the DMP model,
SIDE modules inside, give the parameters of the plain step loop (issue 10 item 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
import torch

from test_train_trainer import _flat, _load_ckpt, _synthetic, _write  # tests/train is on sys.path (rootdir)
from torchrec_side.config import ConfigError
from torchrec_side.train.checkpoint import CheckpointManager
from torchrec_side.train.config import load_train_config
from torchrec_side.train.trainer import run_training


def _state(run: Path, tmp: Path) -> Dict[str, torch.Tensor]:
    last = CheckpointManager(run / "checkpoints").latest()
    assert last is not None
    return {k: v for k, v in _flat(_load_ckpt(last, tmp)).items() if isinstance(v, torch.Tensor)}


def test_train_pipelines_give_the_plain_loops_parameters(tmp_path: Path) -> None:
    # a SIDE history (parameter-free pooling + projection) beside a row-wise sharded sparse-ID history
    side = {"kind": "test_train_trainer:SIDEHistoryForTest", "column": "hist_sid"}
    sparse = {"kind": "sparse_id", "column": "hist_item_id"}
    job = _write(tmp_path, _synthetic(tmp_path, **{"model.history": [side, sparse], "train.epochs": 1,
                                                  "train.max_steps": 40, "data.synthetic_events": 2000}))
    out: Dict[str, Dict[str, torch.Tensor]] = {}
    metrics = {}
    for kind in ("loop", "base", "sparse_dist"):
        run = tmp_path / kind
        metrics[kind] = run_training(load_train_config(job, [f"run_dir={run}", f"train.pipeline={kind}"]))
        out[kind] = _state(run, tmp_path)
        assert metrics[kind]["pipeline"] == kind and metrics[kind]["steps"] == 40
    ref = out["loop"]
    assert any("t_hist_item_id" in k for k in ref) and any("exp_avg" in k for k in ref)
    for kind in ("base", "sparse_dist"):
        assert set(out[kind]) == set(ref)
        for k in ref:
            assert torch.equal(out[kind][k], ref[k]), (kind, k)  # bit for bit: same order of operations
        assert metrics[kind]["test"] == metrics["loop"]["test"]
        assert metrics[kind]["val_history"] == metrics["loop"]["val_history"]
    log = (tmp_path / "sparse_dist" / "logs" / "rank0.log").read_text()
    assert "train pipeline sparse_dist: input dist pipelined for" in log


def test_unknown_pipeline_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="train.pipeline must be one of"):
        load_train_config(None, ["train.pipeline=fast"])
