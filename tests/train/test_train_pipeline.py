"""``train.pipeline``: TorchRec's TrainPipelineBase / TrainPipelineSparseDist around the DMP model,
SIDE modules inside, give the parameters of the plain step loop (issue 10 item 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
import torch

from test_train_trainer import _latest_tensors, _synthetic, _write  # tests/train is on sys.path (rootdir)
from torchrec_side.config import ConfigError
from torchrec_side.train.config import load_train_config
from torchrec_side.train.trainer import run_training


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
        out[kind] = _latest_tensors(run, tmp_path)
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


@pytest.mark.slow
def test_two_ranks_sparse_dist_pipeline_matches_the_loop(tmp_path: Path) -> None:
    """On 2 gloo ranks the sparse-dist pipeline's input all-to-all runs one batch ahead; the
    parameters, the metrics and the test predictions (gathered in store order) still match."""
    import os
    import subprocess
    import sys

    import numpy as np

    from torchrec_side.train.dist import free_port
    from torchrec_side.train.predictions import check_paired, PREDICTIONS_FILE, read_predictions

    repo = Path(__file__).resolve().parents[2]
    job = _write(tmp_path, _synthetic(tmp_path, **{"train.epochs": 1, "train.max_steps": 30,
                                                  "data.synthetic_events": 2500}))
    env = {**os.environ, "LOGLEVEL": "WARNING", "OMP_NUM_THREADS": "1"}
    metrics = {}
    for kind in ("loop", "sparse_dist"):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), "-m", "torchrec_side.train", "--config", str(job), f"run_dir={tmp_path / kind}",
               f"train.pipeline={kind}"]
        done = subprocess.run(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        assert done.returncode == 0, done.stdout.decode(errors="replace")[-4000:]
        import json

        metrics[kind] = json.loads((tmp_path / kind / "metrics.json").read_text())
        assert metrics[kind]["world_size"] == 2 and metrics[kind]["steps"] == 30
    a, b = _latest_tensors(tmp_path / "loop", tmp_path), _latest_tensors(tmp_path / "sparse_dist", tmp_path)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert metrics["loop"]["test"] == metrics["sparse_dist"]["test"]
    pa = read_predictions(tmp_path / "loop" / PREDICTIONS_FILE)
    pb = read_predictions(tmp_path / "sparse_dist" / PREDICTIONS_FILE)
    check_paired(pa, pb)
    assert pa["user_id"].size == metrics["loop"]["data"]["test"]["rows"]
    assert np.array_equal(pa["score"], pb["score"])
