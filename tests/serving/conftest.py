"""Fixtures of the serving tests: tiny trained runs (one process, world size 1, synthetic data)
with a sparse-ID history, SIDE histories (byte-grouped DPCA and mixed-radix RQ SIDs) and a
prefix-ngram history, so every history kind that needs no downloaded data is exported."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import yaml

from factories import one_torch_thread, write_tiny_sid_files

NUM_ITEMS = 40


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny batches on a shared 2-core machine: one torch thread is several times faster."""
    with one_torch_thread():
        yield


def tiny_job(tmp: Path, arch: str) -> Path:
    """Writes the SID artifacts and a tiny job config; returns the config path."""
    sid_files = write_tiny_sid_files(tmp, num_items=NUM_ITEMS)
    dpca, rq = sid_files["dpca"], sid_files["rq"]
    history = [{"kind": "sparse_id", "column": "hist_item_id"},
               {"kind": "side", "column": "hist_sid", "options": dpca}]
    if arch == "dlrm":
        history += [{"kind": "prefix_ngram", "column": "hist_pn", "options": {**rq, "max_rows": 32}},
                    {"kind": "side", "column": "hist_sid_rq", "options": rq}]
    cfg = {
        "name": f"tiny_{arch}", "run_dir": str(tmp / f"run_{arch}"), "examples_dir": str(tmp / "examples"),
        "data": {"dataset": "synthetic", "synthetic_users": 60, "synthetic_items": NUM_ITEMS,
                 "synthetic_events": 3000, "max_history": 20, "row_group_size": 512},
        "model": {"arch": arch, "embedding_dim": 8, "dense_arch_layer_sizes": [16, 8] if arch == "dlrm" else [16],
                  "over_arch_layer_sizes": [16, 1], "history": history},
        "optim": {"embedding_lr": 0.05, "dense_lr": 0.003},
        "sharding": {"tables": {"t_hist_item_id": "row_wise", "t_item_id": "column_wise"}},
        "train": {"batch_size": 32, "eval_batch_size": 128, "epochs": 2, "checkpoint_every": 0, "num_workers": 0,
                  "progress": False, "log_every": 10, "threads": 1},
    }
    path = tmp / f"job_{arch}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(tmp: Path, arch: str) -> Path:
    from torchrec_side.train.config import load_train_config
    from torchrec_side.train.trainer import run_training

    cfg = load_train_config(tiny_job(tmp, arch))
    run_training(cfg)
    return cfg.run_path()


@pytest.fixture(scope="session")
def dlrm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished DLRM run: sparse-ID, SIDE (DPCA, RQ) and prefix-ngram histories."""
    return _train(tmp_path_factory.mktemp("serve_dlrm"), "dlrm")


@pytest.fixture(scope="session")
def din_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished target-attention (DIN) run: sparse-ID and SIDE histories."""
    return _train(tmp_path_factory.mktemp("serve_din"), "din")


@pytest.fixture(scope="session")
def dlrm_export(dlrm_run: Path) -> Path:
    """The DLRM run exported to its default place, ``<run>/export``."""
    from torchrec_side.serving import export_run

    return export_run(dlrm_run).out_dir
