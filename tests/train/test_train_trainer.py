"""The DMP trainer: clear start-up failures, checkpoint/resume equivalence, 2-rank runs with a
killed rank resumed by rerunning the same TorchX command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch
import yaml

from torchrec_side.config import ConfigError
from torchrec_side.models.history import HistoryFeature
from torchrec_side.train.checkpoint import CheckpointManager
from torchrec_side.train.cli import train_main
from torchrec_side.train.config import load_train_config
from torchrec_side.train.trainer import run_training

from factories import fitted_dpca, seeded_content

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _synthetic(tmp: Path, **extra: object) -> Dict[str, object]:
    """A small synthetic job: 2 id tables + a row-wise sparse-ID history table, DLRM."""
    cfg: Dict[str, object] = {
        "name": "tiny", "output_dir": str(tmp / "runs"), "examples_dir": str(tmp / "examples"),
        "data": {"dataset": "synthetic", "synthetic_users": 60, "synthetic_items": 40, "synthetic_events": 3000,
                 "max_history": 20, "row_group_size": 512},
        "model": {"embedding_dim": 8, "dense_arch_layer_sizes": [16, 8], "over_arch_layer_sizes": [16, 1],
                  "history": [{"kind": "sparse_id", "column": "hist_item_id"}]},
        "optim": {"embedding_lr": 0.05, "dense_lr": 0.003},
        "sharding": {"tables": {"t_hist_item_id": "row_wise", "t_item_id": "column_wise"}},
        "train": {"batch_size": 32, "eval_batch_size": 256, "epochs": 2, "checkpoint_every": 0, "num_workers": 0,
                  "progress": False, "log_every": 10, "threads": 1},
    }
    for k, v in extra.items():
        node = cfg
        *path, leaf = k.split(".")
        for p in path:
            node = node.setdefault(p, {})  # type: ignore[assignment]
        node[leaf] = v  # type: ignore[index]
    return cfg


def _write(tmp: Path, cfg: Dict[str, object], name: str = "job.yaml") -> Path:
    p = tmp / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def _load_ckpt(path: Path, tmp: Path) -> Dict[str, object]:
    """A DCP checkpoint as plain tensors (sharded tables gathered), without a process group."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = tmp / f"{path.parent.parent.name}_{path.name}.pt"
    dcp_to_torch_save(str(path), str(out))
    return torch.load(out, weights_only=False)


def _flat(d: object, prefix: str = "") -> Dict[str, object]:
    if isinstance(d, dict):
        out: Dict[str, object] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(d, (list, tuple)):
        out = {}
        for i, v in enumerate(d):
            out.update(_flat(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: d}


def _latest_tensors(run: Path, tmp: Path) -> Dict[str, torch.Tensor]:
    """The tensors of ``run``'s latest complete checkpoint, by flat name (``model.x.weight``, ...)."""
    last = CheckpointManager(run / "checkpoints").latest()
    assert last is not None
    return {k: v for k, v in _flat(_load_ckpt(last, tmp)).items() if isinstance(v, torch.Tensor)}


# ---------------------------------------------------------------------------------------------
# start-up failures


def test_unknown_config_key_fails_before_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write(tmp_path, _synthetic(tmp_path))
    assert train_main(["--config", str(cfg), "model.embeding_dim=8"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'model.embeding_dim'" in err and "model.embedding_dim" in err
    bad = _synthetic(tmp_path)
    bad["train"]["batchsize"] = 3  # type: ignore[index]
    assert train_main(["--config", str(_write(tmp_path, bad, "bad.yaml"))]) == 2
    assert "unknown config key 'train.batchsize'" in capsys.readouterr().err
    assert train_main(["--config", str(cfg), "optim.embedding_optimizer=adamw"]) == 2
    assert "optim.embedding_optimizer must be one of" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "examples").exists()


class MissingArtifactHistory(HistoryFeature):
    """A history kind whose artifact is missing: must fail at start."""

    def check(self) -> None:
        raise ConfigError(f"{self.where}: SID table /nonexistent/sid_table.safetensors not found")


def test_missing_artifact_or_column_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kind = f"{__name__}:MissingArtifactHistory"
    cfg = _write(tmp_path, _synthetic(tmp_path, **{"model.history": [{"kind": kind, "column": "hist_sid"}]}))
    assert train_main(["--config", str(cfg)]) == 2
    assert "sid_table.safetensors not found" in capsys.readouterr().err
    cfg2 = _write(tmp_path, _synthetic(tmp_path, **{"model.history": [{"kind": "sparse_id", "column": "hist_nope"}]}))
    assert train_main(["--config", str(cfg2)]) == 2
    assert "history column 'hist_nope' is not in the store" in capsys.readouterr().err
    cfg3 = _write(tmp_path, _synthetic(tmp_path, **{"sharding.tables": {"t_nope": "row_wise"}}))
    assert train_main(["--config", str(cfg3)]) == 2
    assert "unknown tables ['t_nope']" in capsys.readouterr().err
    run = tmp_path / "runs" / "tiny" / "seed0"
    assert not (run / "checkpoints").exists() and not (run / "train_log.jsonl").exists()


# ---------------------------------------------------------------------------------------------
# checkpoint -> resume == uninterrupted


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path: Path) -> None:
    base = _write(tmp_path, _synthetic(tmp_path))
    a = run_training(load_train_config(base, ["run_dir=" + str(tmp_path / "a")]))
    spe = a["steps_per_epoch"]
    assert a["steps"] == 2 * spe and a["resumed_from_step"] is None
    stop = spe + 3  # mid second epoch
    b1 = run_training(load_train_config(base, ["run_dir=" + str(tmp_path / "b"), f"train.max_steps={stop}"]))
    assert b1["steps"] == stop
    b2 = run_training(load_train_config(base, ["run_dir=" + str(tmp_path / "b")]))
    assert b2["resumed_from_step"] == stop and b2["steps"] == a["steps"]
    ca = _flat(_load_ckpt(CheckpointManager(tmp_path / "a" / "checkpoints").latest(), tmp_path))
    cb = _flat(_load_ckpt(CheckpointManager(tmp_path / "b" / "checkpoints").latest(), tmp_path))
    tensors = [k for k, v in ca.items() if isinstance(v, torch.Tensor)]
    assert set(ca) == set(cb) and any("t_hist_item_id" in k for k in tensors) and any("exp_avg" in k for k in tensors)
    for k in tensors:
        assert torch.equal(ca[k], cb[k]), k  # model and optimizer states, bit for bit
    assert a["test"]["ne"] == b2["test"]["ne"] and a["test"]["ne"] < 1.0
    # a different seed is refused by the run folder's checkpoints (not silently mixed)
    with pytest.raises(ConfigError, match="another config"):
        run_training(load_train_config(base, ["run_dir=" + str(tmp_path / "b"), "seed=1"]))


def test_din_trains_with_planner_sharding(tmp_path: Path) -> None:
    cfg = load_train_config(_write(tmp_path, _synthetic(tmp_path)), [
        "model.arch=din", "model.dense_arch_layer_sizes=[16]", "sharding.mode=planner",
        "sharding.tables={t_hist_item_id: table_wise, t_item_id: column_wise}", "train.epochs=1",
        "optim.embedding_optimizer=adagrad", "optim.dense_optimizer=adagrad", "optim.dense_lr=0.02"])
    m = run_training(cfg)
    assert m["arch"] == "din" and m["sharding"]["tables"]["t_item_id"] == "column_wise"
    assert abs(m["val"]["ne"] - m["val"]["ne_exact"]) < 1e-5 and m["val"]["ne"] < 1.02


# ---------------------------------------------------------------------------------------------
# 2 ranks through the TorchX component: kill a rank, rerun the same command


def _children(pid: int) -> List[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _rank_process(root: int, rank: int) -> Optional[int]:
    """The trainer process of ``rank`` below ``root`` (not its DataLoader workers)."""
    stack, found = [root], None
    while stack:
        pid = stack.pop()
        kids = _children(pid)
        stack += kids
        try:
            env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
            parent_env = (Path("/proc") / str(int((Path("/proc") / str(pid) / "stat").read_text()
                                                  .rsplit(")", 1)[1].split()[1])) / "environ").read_bytes()
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and f"RANK={rank}".encode() not in parent_env.split(b"\0"):
            found = pid
    return found


@pytest.mark.slow
def test_two_ranks_torchx_kill_one_rank_then_rerun_resumes(tmp_path: Path) -> None:
    cfg = _synthetic(tmp_path, **{"data.synthetic_events": 5000, "train.checkpoint_every": 15,
                                  "train.sleep_per_step": 0.04, "train.num_workers": 1, "train.batch_size": 32})
    job = _write(tmp_path, cfg)
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "LOGLEVEL": "WARNING"}
    cmd = [str(VENV_BIN / "torchx"), "run", "-s", "local_cwd", "-cfg", f"log_dir={tmp_path / 'torchx'}",
           "torchrec_side/components.py:train", "--nproc", "2", "--", "--config", str(job)]
    run = tmp_path / "runs" / "tiny" / "seed0"
    ckpts = CheckpointManager(run / "checkpoints")

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while ckpts.latest() is None and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert ckpts.latest() is not None, "no checkpoint before the deadline"
        victim = _rank_process(proc.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)  # one rank dies mid-training
        out = proc.communicate(timeout=120)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, out[-3000:]
    assert not (run / "metrics.json").exists()
    last = ckpts.latest()
    assert last is not None
    killed_at = int(last.name.split("_")[1])
    # debris a crash could leave: never picked, removed on restart
    (run / "checkpoints" / ".step_99999998.tmp").mkdir()
    fake = run / "checkpoints" / "step_99999999"
    fake.mkdir()
    (fake / "trainer_state.json").write_text(json.dumps({"step": 99999999}))

    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240)
    log = done.stdout.decode(errors="replace")
    assert done.returncode == 0, log[-4000:]
    m = json.loads((run / "metrics.json").read_text())
    expected = 2 * (m["data"]["train"]["rows"] // 64)
    assert m["world_size"] == 2 and m["steps"] == expected and m["resumed_from_step"] == killed_at
    assert 0 < killed_at < expected
    assert not fake.exists() and not (run / "checkpoints" / ".step_99999998.tmp").exists()
    assert [p.name for p in ckpts.complete()][-1] == f"step_{expected:08d}"
    for split in ("val", "test"):
        assert m[split]["ne"] < 1.0 and abs(m[split]["ne"] - m[split]["ne_exact"]) < 1e-5
    assert (run / "config.yaml").is_file() and (run / "logs" / "rank1.log").is_file()
    assert (run / "train_log.jsonl").read_text().count("\n") >= 2
    # per-epoch validation, the best epoch's test predictions gathered from both ranks in store order
    assert [h["epoch"] for h in m["val_history"]] == [1, 2] and m["best_epoch"] in (1, 2)
    from torchrec_side.train.lock import RunLock
    from torchrec_side.train.predictions import read_predictions

    preds = read_predictions(run / "predictions_test.parquet")
    assert preds["user_id"].size == m["data"]["test"]["rows"]
    RunLock(run).acquire().release()  # released at exit


def test_cli_seeds_print_config_and_restart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = _write(tmp_path, _synthetic(tmp_path, **{"train.max_steps": 12, "model.history": [], "sharding.tables": {}}))
    assert train_main(["--config", str(job), "--print-config", "seed=4"]) == 0
    assert "seed: 4" in capsys.readouterr().out
    assert train_main(["--config", str(job), "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    assert "tiny seed 0: 12 steps" in out and "tiny seed 1: 12 steps" in out
    runs = tmp_path / "runs" / "tiny"
    m0 = json.loads((runs / "seed0" / "metrics.json").read_text())
    m1 = json.loads((runs / "seed1" / "metrics.json").read_text())
    assert m0["test"]["ne"] != m1["test"]["ne"]  # seeds differ
    # resume=false starts over: old checkpoints are dropped, not resumed
    assert train_main(["--config", str(job), "seed=0", "resume=false", "train.max_steps=6"]) == 0
    m = json.loads((runs / "seed0" / "metrics.json").read_text())
    assert m["steps"] == 6 and m["resumed_from_step"] is None
    assert [p.name for p in CheckpointManager(runs / "seed0" / "checkpoints").complete()] == ["step_00000006"]


def test_checkpoint_manager_picks_only_complete_checkpoints(tmp_path: Path) -> None:
    ck = CheckpointManager(tmp_path, keep=2)
    assert ck.latest() is None and ck.cleanup() == []

    def make(name: str, metadata: bool = True, state: bool = True, manifest: bool = True) -> Path:
        p = tmp_path / name
        p.mkdir()
        if metadata:
            (p / ".metadata").write_bytes(b"x")
        if state:
            (p / "trainer_state.json").write_text("{}")
        if manifest and name.startswith("step_"):
            CheckpointManager._write_manifest(p, int(name.split("_")[1]))
        return p

    make("step_00000010")
    make("step_00000030")
    make("step_00000040", manifest=False)   # the save never finished (the manifest is written last)
    make("step_00000050", state=False, manifest=False)
    make(".step_00000060.tmp")              # being written when the job died
    make("notes")                           # not ours: untouched
    assert ck.latest() == tmp_path / "step_00000030"
    assert [p.name for p in ck.complete()] == ["step_00000010", "step_00000030"]
    assert sorted(ck.cleanup()) == [".step_00000060.tmp", "step_00000040", "step_00000050"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "step_00000010", "step_00000030"]


class SIDEHistoryForTest(HistoryFeature):
    """How a SIDE history plugs in: a packed-SID column written from an item table, pooled by
    SIDEmbeddingBagCollection (DLRM) or embedded per event by SIDEmbeddingCollection (DIN)."""

    def _fit(self) -> None:
        if not hasattr(self, "sid"):
            from torchrec_side.sid.codec import SIDCodec

            x = seeded_content(self.ctx.num_items, self.ctx.embedding_dim, seed=0)
            self.quantizer = fitted_dpca(10, x, seed=0)
            self.codec = SIDCodec.byte_grouped(self.quantizer.radices)
            self.sid = self.codec.pack(self.quantizer.encode(x))

    def item_table(self) -> torch.Tensor:
        self._fit()
        return self.sid[:, None]

    def pooled(self, keys: List[str]) -> torch.nn.Module:
        from torchrec_side.modules import SIDEmbeddingBagCollection, SIDEmbeddingBagConfig

        self._fit()
        return SIDEmbeddingBagCollection(tables=[SIDEmbeddingBagConfig(
            name=f"t_{self.name}", feature_names=keys, codec=self.codec, pooling="mean")],
            sid_tables={f"t_{self.name}": self.quantizer})

    def sequence(self, keys: List[str]) -> torch.nn.Module:
        from torchrec_side.modules import SIDEmbeddingCollection, SIDEmbeddingConfig

        self._fit()
        return SIDEmbeddingCollection(tables=[SIDEmbeddingConfig(
            name=f"t_{self.name}", feature_names=keys, codec=self.codec)],
            sid_tables={f"t_{self.name}": self.quantizer})


@pytest.mark.parametrize("arch", ["dlrm", "din"])
def test_a_sid_history_module_plugs_in_through_config(tmp_path: Path, arch: str) -> None:
    pytest.importorskip("torchrec_side.modules")
    cfg = load_train_config(_write(tmp_path, _synthetic(tmp_path, **{"sharding.tables": {}})), [
        f"model.arch={arch}", "model.dense_arch_layer_sizes=[16, 8]", "train.max_steps=20",
        f"model.history=[{{kind: '{__name__}:SIDEHistoryForTest', column: hist_sid}}]"])
    m = run_training(cfg)
    assert m["steps"] == 20 and m["history"][0]["keys"] == ["hist_sid"]
    assert m["history"][0]["footprint"]["value_bytes_per_event"] == 8  # one packed int64 SID per event
    assert m["learned_params"]["embedding"] == (60 + 40) * 8  # SIDE adds no learned table
