"""Trainer reliability (issue 10): non-finite options and losses, one run per run folder,
verified checkpoints (truncation falls back, planted files are refused), artifact checks before
any data is written."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from hypothesis import given, settings, strategies as st

from test_train_trainer import _flat, _load_ckpt, _synthetic, _write  # tests/train is on sys.path (rootdir)
from torchrec_side.config import check_finite, ConfigError, load_config
from torchrec_side.models.history import HistoryFeature
from torchrec_side.tokenizer.config import TokenizeJobConfig
from torchrec_side.train.checkpoint import CheckpointError, CheckpointManager, MANIFEST
from torchrec_side.train.cli import train_main
from torchrec_side.train.config import load_train_config
from torchrec_side.train.lock import RunLock, RunLockedError
from torchrec_side.train.trainer import run_training, TrainingDivergedError


# ---------------------------------------------------------------------------------------------
# NaN / inf options are refused at load, by the shared loader (train and tokenizer configs)


@pytest.mark.parametrize("override", ["optim.embedding_lr=nan", "optim.dense_lr=inf", "optim.dense_lr=-inf",
                                      "optim.embedding_weight_decay=.nan", "train.sleep_per_step=.inf"])
def test_train_config_rejects_non_finite_floats(tmp_path: Path, override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"'{key}'.*not a finite number"):
        load_train_config(None, [override])
    job = _write(tmp_path, _synthetic(tmp_path))
    assert train_main(["--config", str(job), override]) == 2
    assert not (tmp_path / "runs").exists() and not (tmp_path / "examples").exists()


def test_tokenizer_config_rejects_non_finite_lr() -> None:
    with pytest.raises(ConfigError, match="'train.lr'.*nan is not a finite number"):
        load_config(TokenizeJobConfig, None, ["train.lr=nan"])


def test_non_finite_value_in_a_file_names_the_file(tmp_path: Path) -> None:
    cfg = _synthetic(tmp_path)
    cfg["optim"]["dense_lr"] = float("nan")  # type: ignore[index]
    job = _write(tmp_path, cfg)
    with pytest.raises(ConfigError, match=rf"'optim.dense_lr' \(file {job}\)"):
        load_train_config(job)


def _reference_non_finite(tree: object, prefix: str = "") -> List[str]:
    if isinstance(tree, float):
        return [] if tree == tree and abs(tree) != float("inf") else [prefix]
    if isinstance(tree, dict):
        return [k for key, v in tree.items() for k in _reference_non_finite(v, f"{prefix}.{key}" if prefix else key)]
    if isinstance(tree, list):
        return [k for i, v in enumerate(tree) for k in _reference_non_finite(v, f"{prefix}.{i}" if prefix else str(i))]
    return []


_leaf = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=3), st.none())
_tree = st.recursive(_leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                 st.dictionaries(st.sampled_from("abc"), c, max_size=3)), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(tree=st.dictionaries(st.sampled_from(["x", "y", "z"]), _tree, max_size=3))
def test_check_finite_matches_a_plain_walk(tree: Dict[str, object]) -> None:
    bad = _reference_non_finite(tree)
    if bad:
        with pytest.raises(ConfigError, match=f"'{bad[0]}'"):
            check_finite(tree, "test")
    else:
        check_finite(tree, "test")


# ---------------------------------------------------------------------------------------------
# one run per run folder


_HOLDER = """
import sys, time
from torchrec_side.train.lock import RunLock
lock = RunLock(sys.argv[1], purpose="holder").acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_second_run_into_a_locked_run_folder_fails_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = _write(tmp_path, _synthetic(tmp_path, **{"train.max_steps": 4}))
    run = tmp_path / "runs" / "tiny" / "seed0"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        assert train_main(["--config", str(job), "optim.dense_lr=0.01"]) == 2
        err = capsys.readouterr().err
        assert "RunLockedError" in err and f"pid {holder.pid}" in err and "holder" in err
        # nothing of the second run reached the folder
        assert sorted(p.name for p in run.iterdir()) == [".lock"]
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            run_training(load_train_config(job))
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its lock is gone with it (no stale lock), the run proceeds and releases it
    m = run_training(load_train_config(job))
    assert m["steps"] == 4
    RunLock(run).acquire().release()


def test_lock_is_exclusive_within_a_process_and_released(tmp_path: Path) -> None:
    a = RunLock(tmp_path).acquire()
    info = json.loads((tmp_path / ".lock").read_text())
    assert info["pid"] > 0 and info["host"] and info["started"]
    with pytest.raises(RunLockedError, match=str(info["pid"])):
        RunLock(tmp_path).acquire()
    a.release()
    with RunLock(tmp_path) as b:
        assert b.held
    assert not b.held
