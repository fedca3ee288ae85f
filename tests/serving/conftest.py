"""Fixtures of the serving tests: tiny trained runs (one process, world size 1, synthetic data)
with a sparse-ID history, SIDE histories (byte-grouped DPCA and mixed-radix RQ SIDs) and a
prefix-ngram history, so every history kind that needs no downloaded data is exported; and runs
whose history features see the target item through their path (``target: true``,
docs/design.md section 7b)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import yaml

from factories import one_torch_thread, write_tiny_sid_files

NUM_ITEMS = 40


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny batches on a shared 2-core machine: one torch thread is several times faster."""
    with one_torch_thread():
        yield


def tiny_job(tmp: Path, arch: str, target: bool = False) -> Path:
    """Writes the SID artifacts and a tiny job config; returns the config path.

    ``target``: the fair-feature-set variant: DLRM with a hashed sparse-ID history (16 rows, its
    own target table), SIDE (DPCA) and prefix-ngram (RQ) histories, all with ``target: true``; DIN
    with a plain sparse-ID history (the target key is the item id itself) and SIDE, both
    ``target: true``."""
    sid_files = write_tiny_sid_files(tmp, num_items=NUM_ITEMS)
    dpca, rq = sid_files["dpca"], sid_files["rq"]
    history: List[Dict[str, Any]]
    if target and arch == "dlrm":
        history = [{"kind": "sparse_id", "column": "hist_item_id", "options": {"num_rows": 16, "target": True}},
                   {"kind": "side", "column": "hist_sid", "options": {**dpca, "target": True}},
                   {"kind": "prefix_ngram", "column": "hist_pn", "options": {**rq, "max_rows": 32, "target": True}}]
    elif target:
        history = [{"kind": "sparse_id", "column": "hist_item_id", "options": {"target": True}},
                   {"kind": "side", "column": "hist_sid", "options": {**dpca, "target": True}}]
    else:
        history = [{"kind": "sparse_id", "column": "hist_item_id"},
                   {"kind": "side", "column": "hist_sid", "options": dpca}]
        if arch == "dlrm":
            history += [{"kind": "prefix_ngram", "column": "hist_pn", "options": {**rq, "max_rows": 32}},
                        {"kind": "side", "column": "hist_sid_rq", "options": rq}]
    name = f"tiny_{arch}" + ("_target" if target else "")
    cfg = {
        "name": name, "run_dir": str(tmp / f"run_{name}"), "examples_dir": str(tmp / "examples"),
        "data": {"dataset": "synthetic", "synthetic_users": 60, "synthetic_items": NUM_ITEMS,
                 "synthetic_events": 3000, "max_history": 20, "row_group_size": 512},
        "model": {"arch": arch, "embedding_dim": 8, "dense_arch_layer_sizes": [16, 8] if arch == "dlrm" else [16],
                  "over_arch_layer_sizes": [16, 1], "history": history},
        "optim": {"embedding_lr": 0.05, "dense_lr": 0.003},
        # row-wise history table; its target table (same module, mean pooled) row-wise too: torchrec 1.8
        # divides the means of a module that mixes row-split and other tables twice (modules/sharding.py)
        "sharding": {"tables": {"t_hist_item_id": "row_wise", "t_item_id": "column_wise",
                                **({"t_hist_item_id_target": "row_wise"} if target else {})}},
        "train": {"batch_size": 32, "eval_batch_size": 128, "epochs": 2, "checkpoint_every": 0, "num_workers": 0,
                  "progress": False, "log_every": 10, "threads": 1},
    }
    path = tmp / f"job_{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def make_tiny_job() -> Any:
    """:func:`tiny_job`, for a test that trains its own run (it changes the run's inputs)."""
    return tiny_job


def _train(tmp: Path, arch: str, target: bool = False) -> Path:
    from torchrec_side.train.config import load_train_config
    from torchrec_side.train.trainer import run_training

    cfg = load_train_config(tiny_job(tmp, arch, target))
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


@pytest.fixture(scope="session")
def dlrm_target_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished DLRM run whose hashed sparse-ID, SIDE and prefix-ngram histories all have
    ``target: true`` (target keys from the store's item tables)."""
    return _train(tmp_path_factory.mktemp("serve_dlrm_target"), "dlrm", target=True)


@pytest.fixture(scope="session")
def din_target_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished DIN run: sparse-ID (target key = the item id) and SIDE, both ``target: true``."""
    return _train(tmp_path_factory.mktemp("serve_din_target"), "din", target=True)


@pytest.fixture(scope="session")
def raw_world_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished DLRM run on the tiny simulated ads world: raw content (the world's 384-d text
    vectors, frozen in the model) with ``target: true`` and a SIDE history of an RQ SID of those
    vectors with ``target: true``; one epoch."""
    import numpy as np
    import torch

    from factories import fitted_rq, write_sid_files
    from torchrec_side.data.adsworld import generate_world
    from torchrec_side.data.adsworld_config import load_world_config
    from torchrec_side.train.config import load_train_config
    from torchrec_side.train.trainer import run_training

    tmp = tmp_path_factory.mktemp("serve_raw_world")
    wdir = tmp / "world"
    generate_world(load_world_config("tiny"), wdir, progress=False)
    x = torch.from_numpy(np.load(wdir / "content" / "text.npy")).float()[:, :24]
    rq = write_sid_files(tmp, fitted_rq((8, 8, 8), x, seed=0), x, "rq", "mixed_radix")
    cfg = {
        "name": "tiny_raw_world", "run_dir": str(tmp / "run"), "examples_dir": str(tmp / "examples"),
        "data": {"dataset": "adsworld", "world_dir": str(wdir), "max_history": 30, "row_group_size": 1024},
        "model": {"arch": "dlrm", "embedding_dim": 8, "dense_arch_layer_sizes": [16, 8], "over_arch_layer_sizes": [16, 1],
                  "history": [{"kind": "raw_content", "column": "hist_item_id", "name": "hist_raw_text",
                               "options": {"collection": "text", "target": True}},
                              {"kind": "side", "column": "hist_sid", "options": {**rq, "target": True}}]},
        "optim": {"embedding_lr": 0.05, "dense_lr": 0.003},
        "train": {"batch_size": 256, "eval_batch_size": 1024, "epochs": 1, "checkpoint_every": 0, "num_workers": 0,
                  "progress": False, "log_every": 50, "threads": 1},
    }
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    job = load_train_config(path)
    run_training(job)
    return job.run_path()
