"""Trainer reliability (issue 10): non-finite options and losses, one run per run folder,
verified checkpoints (truncation falls back, planted files are refused), artifact checks before
any data is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from hypothesis import given, settings, strategies as st

from test_train_trainer import _latest_tensors, _synthetic, _write  # tests/train is on sys.path (rootdir)
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


# ---------------------------------------------------------------------------------------------
# a non-finite loss stops the run: clear error, no metrics, non-zero exit


def test_non_finite_loss_stops_without_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = _write(tmp_path, _synthetic(tmp_path, **{"optim.dense_optimizer": "sgd", "optim.dense_lr": 1e30}))
    assert train_main(["--config", str(job)]) == 3
    err = capsys.readouterr().err
    assert "TrainingDivergedError" in err and "training loss is nan at step" in err and "(epoch 0, batch" in err
    run = tmp_path / "runs" / "tiny" / "seed0"
    assert not (run / "metrics.json").exists() and not (run / "predictions_test.parquet").exists()
    with pytest.raises(TrainingDivergedError, match=r"at step \d+ \(epoch 0"):
        run_training(load_train_config(job, ["resume=false"]))


def test_a_run_never_writes_into_a_folder_it_did_not_create(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "checkpoints" / "notes.txt").write_text("keep")
    job = _write(tmp_path, _synthetic(tmp_path))
    assert train_main(["--config", str(job), f"run_dir={mine}", "resume=false"]) == 2
    assert "no config.yaml, so it is not a run folder" in capsys.readouterr().err
    assert (mine / "checkpoints" / "notes.txt").read_text() == "keep"
    assert sorted(q.name for q in mine.iterdir()) == ["checkpoints"]  # no lock, logs or config written
    (tmp_path / "afile").write_text("x")
    assert train_main(["--config", str(job), f"output_dir={tmp_path / 'afile'}"]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# artifacts are checked before the example store is written


class MissingArtifactHistory(HistoryFeature):
    def check(self) -> None:
        raise ConfigError(f"{self.where}: SID table /nonexistent/sid_table.safetensors not found")


def test_missing_artifact_is_reported_before_the_store_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kind = f"{__name__}:MissingArtifactHistory"
    job = _write(tmp_path, _synthetic(tmp_path, **{"model.history": [{"kind": kind, "column": "hist_sid"}]}))
    assert train_main(["--config", str(job)]) == 2
    assert "sid_table.safetensors not found" in capsys.readouterr().err
    assert not (tmp_path / "examples").exists()  # no example store was written first


# ---------------------------------------------------------------------------------------------
# verified checkpoints: a truncated latest one falls back, a planted one is refused


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    job = _write(tmp_path, _synthetic(tmp_path))
    a = run_training(load_train_config(job, ["run_dir=" + str(tmp_path / "a")]))
    spe = a["steps_per_epoch"]
    b = tmp_path / "b"
    run_training(load_train_config(job, ["run_dir=" + str(b), f"train.max_steps={spe + 3}"]))
    ck = CheckpointManager(b / "checkpoints")
    assert [p.name for p in ck.complete()] == [f"step_{spe:08d}", f"step_{spe + 3:08d}"]
    shard = next((b / "checkpoints" / f"step_{spe + 3:08d}").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # a crash mid-write of the file system
    assert "truncated" in (ck.verify(b / "checkpoints" / f"step_{spe + 3:08d}") or "")
    assert ck.latest() == b / "checkpoints" / f"step_{spe:08d}"
    b2 = run_training(load_train_config(job, ["run_dir=" + str(b)]))
    assert b2["resumed_from_step"] == spe and b2["steps"] == a["steps"]
    log = (b / "logs" / "rank0.log").read_text()
    assert f"step_{spe + 3:08d} fails verification" in log and "moved aside" in log
    assert list((b / "checkpoints").glob(f".rejected.step_{spe + 3:08d}.*"))
    pa, pb = _latest_tensors(tmp_path / "a", tmp_path), _latest_tensors(b, tmp_path)
    assert set(pa) == set(pb)
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    assert a["test"]["ne"] == b2["test"]["ne"]


class _Planted:
    """Unpickling this runs code: it creates the file named by its argument."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> object:
        return (Path.touch, (Path(self.path),))


def test_planted_metadata_is_refused_before_unpickling(tmp_path: Path) -> None:
    import pickle

    job = _write(tmp_path, _synthetic(tmp_path, **{"train.epochs": 1}))
    run = tmp_path / "runs" / "tiny" / "seed0"
    run_training(load_train_config(job, ["train.max_steps=8"]))
    last = CheckpointManager(run / "checkpoints").latest()
    assert last is not None
    marker = tmp_path / "code_ran"
    (last / ".metadata").write_bytes(pickle.dumps(_Planted(str(marker))))  # trainer_state.json still matches
    with pytest.raises(CheckpointError, match=r"\.metadata"):
        CheckpointManager(run / "checkpoints").load(last, {})
    # a planted file the manifest does not list is refused too
    (last / "__9_0.distcp").write_bytes(b"x")
    assert "['__9_0.distcp']" in (CheckpointManager.check(last) or "")
    with pytest.raises(CheckpointError, match="not written by the trainer"):
        CheckpointManager(run / "checkpoints").load(last, {})
    m = run_training(load_train_config(job))  # the rerun refuses it and starts over
    assert m["resumed_from_step"] is None and m["steps"] == m["steps_per_epoch"]
    assert not marker.exists()


def test_manifest_detects_any_single_byte_change(tmp_path: Path) -> None:
    folder = tmp_path / "step_00000001"
    folder.mkdir()
    for name, size in (("a.distcp", 3000), (".metadata", 70), ("trainer_state.json", 10)):
        (folder / name).write_bytes(bytes(range(256)) * (size // 256) + b"z" * (size % 256))
    CheckpointManager._write_manifest(folder, 1)
    assert CheckpointManager.check(folder) is None
    man = json.loads((folder / MANIFEST).read_text())
    assert set(man["files"]) == {"a.distcp", ".metadata", "trainer_state.json"}
    for name in man["files"]:
        data = bytearray((folder / name).read_bytes())
        for pos in (0, len(data) // 2, len(data) - 1):
            old = data[pos]
            data[pos] = (old + 1) % 256
            (folder / name).write_bytes(bytes(data))
            assert CheckpointManager.is_complete(folder)  # same size: only the hash sees it
            assert "SHA-256" in (CheckpointManager.check(folder) or "")
            data[pos] = old
            (folder / name).write_bytes(bytes(data))
    assert CheckpointManager.check(folder) is None


@pytest.mark.slow
def test_two_trainings_into_one_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's scenario: the same config, different overrides, started together."""
    job = _write(tmp_path, _synthetic(tmp_path, **{"train.sleep_per_step": 0.05, "train.epochs": 3}))
    run = tmp_path / "runs" / "tiny" / "seed0"
    first = subprocess.Popen([sys.executable, "-m", "torchrec_side.train", "--config", str(job), "optim.dense_lr=0.01"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time

        deadline = time.time() + 120
        while time.time() < deadline and not (run / "config.yaml").is_file():
            time.sleep(0.2)
        assert RunLock(run).holder().get("pid") == first.pid
        assert train_main(["--config", str(job), "optim.dense_lr=0.02"]) == 2
        err = capsys.readouterr().err
        assert f"in use by pid {first.pid}" in err
        assert "dense_lr: 0.01" in (run / "config.yaml").read_text()  # the first run's config stays
    finally:
        first.kill()
        first.wait()


def test_history_context_before_data_knows_the_sizes_without_writing(tmp_path: Path) -> None:
    from torchrec_side.train.run_setup import history_context_before_data

    syn = load_train_config(_write(tmp_path, _synthetic(tmp_path)))
    ctx = history_context_before_data(syn)
    assert ctx is not None and (ctx.num_users, ctx.num_items, ctx.max_history) == (60, 40, 20)
    world = tmp_path / "world"
    world.mkdir()
    from torchrec_side.data.adsworld import FORMAT, VERSION

    (world / "manifest.json").write_text(json.dumps({"format": FORMAT, "version": VERSION, "num_users": 7,
                                                     "num_items": 11}))
    ads = load_train_config(None, ["data.dataset=adsworld", f"data.world_dir={world}", f"examples_dir={tmp_path}"])
    ctx = history_context_before_data(ads)
    assert ctx is not None and (ctx.num_users, ctx.num_items) == (7, 11)
    assert not list(tmp_path.glob("adsworld*"))  # nothing written
