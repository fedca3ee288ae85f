"""The tuning protocol (issue 15): every variant tuned on validation with one seed, the test
split never read while tuning, every seed then trained at the chosen setting."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from test_train_trainer import _synthetic, _write  # tests/train is on sys.path (rootdir)
from torchrec_side.experiments import common
from torchrec_side.experiments.common import (
    choose_setting,
    train_overrides,
    tune_and_train,
    Tuning,
    TuningSetting,
    Variant,
)
from torchrec_side.train.config import load_train_config
from torchrec_side.train.predictions import PREDICTIONS_FILE
from torchrec_side.train.trainer import run_training


def test_choose_setting_reads_validation_and_breaks_ties_by_order() -> None:
    order = ["base", "low", "none"]
    assert choose_setting({"base": {"val_ne": 0.90}, "low": {"val_ne": 0.85}, "none": {"val_ne": 0.87}}, order) == "low"
    assert choose_setting({"none": {"val_ne": 0.8}, "base": {"val_ne": 0.8}}, order) == "base"
    assert choose_setting({"none": {"val_ne": 0.8}}, order) == "none"  # a failed setting is skipped
    with pytest.raises(ValueError, match="no finished tuning run"):
        choose_setting({}, order)
    with pytest.raises(ValueError, match="unique names"):
        Tuning((TuningSetting("a"), TuningSetting("a")))
    with pytest.raises(ValueError, match="letters"):
        TuningSetting("a/b")


def test_score_test_false_never_reads_the_test_split(tmp_path: Path) -> None:
    job = _write(tmp_path, _synthetic(tmp_path, **{"train.epochs": 1}))
    ref = run_training(load_train_config(job, ["run_dir=" + str(tmp_path / "ref")]))
    assert ref["test"] is not None and (tmp_path / "ref" / PREDICTIONS_FILE).is_file()
    (test_file,) = list((tmp_path / "examples").glob("*/test/base.parquet"))
    test_file.write_bytes(b"not parquet")  # reading the test split now fails
    with pytest.raises(Exception):
        run_training(load_train_config(job, ["run_dir=" + str(tmp_path / "scored")]))
    m = run_training(load_train_config(job, ["run_dir=" + str(tmp_path / "tune"), "train.score_test=false"]))
    assert m["test"] is None and m["val"]["ne"] == pytest.approx(ref["val"]["ne"], rel=1e-6)
    assert not (tmp_path / "tune" / PREDICTIONS_FILE).exists()
    assert json.loads((tmp_path / "tune" / "metrics.json").read_text())["test"] is None


def _fake_launch(calls: List[Dict[str, Any]]) -> Any:
    """A stand-in for the TorchX launch: writes each run's metrics.json, validation NE from the
    setting's learning rate, and a test NE that would rank the settings the other way round."""

    def launch(runs: List[common.PlannedRun], log_dir: Path, nproc: int = 2, progress: Any = None,
               poll_s: float = 1.0) -> int:
        calls.append({"runs": [(r.config.name, list(r.overrides)) for r in runs]})
        for r in runs:
            o = list(r.overrides)
            lr = next((float(x.split("=")[1]) for x in reversed(o) if x.startswith("optim.embedding_lr=")), 0.05)
            scored = "train.score_test=false" not in o
            val = 0.9 - lr if "control" not in r.config.name else 0.95
            cfg = load_train_config(r.config, o)
            assert cfg.run_path() == r.run_dir
            r.run_dir.mkdir(parents=True, exist_ok=True)
            (r.run_dir / "metrics.json").write_text(json.dumps({
                "epochs": 1.0, "stopped_early": True, "best_epoch": 1, "val": {"ne": val},
                "val_history": [{"epoch": 1, "ne": val}], "test": {"ne": 1.0 + lr} if scored else None}))
        return 0

    return launch


def test_tune_and_train_chooses_on_validation_and_records_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfgs = {}
    for name in ("control", "side"):
        cfgs[name] = _write(tmp_path, {**_synthetic(tmp_path), "name": name}, f"{name}.yaml")
    variants = [Variant("control", str(cfgs["control"]), "control", ""), Variant("side", str(cfgs["side"]), "side", "")]
    calls: List[Dict[str, Any]] = []
    monkeypatch.setattr(common, "launch", _fake_launch(calls))
    monkeypatch.setattr(common, "check_variants", lambda *a, **k: pytest.fail("not used"))
    tuning = Tuning((TuningSetting("base"), TuningSetting("lr_high", ("optim.embedding_lr=0.2",)),
                     TuningSetting("lr_low", ("optim.embedding_lr=0.01",))))
    record: Dict[str, Any] = {"variants": [], "failed": []}
    over = train_overrides(tmp_path, tmp_path / "train", 3, 2)
    tune_and_train(record, tmp_path, variants, cfgs, [0, 1, 2], over, 3, 1, tuning)

    assert len(calls) == 2  # one launch for all tuning runs, one for all final runs
    tune_runs, final_runs = calls[0]["runs"], calls[1]["runs"]
    assert len(tune_runs) == 6 and all("seed=0" in o and "train.score_test=false" in o for _, o in tune_runs)
    assert [c for c, _ in final_runs] == ["control.yaml"] * 3 + ["side.yaml"] * 3
    assert all("train.score_test=false" not in o for _, o in final_runs)
    assert [o[-1] for _, o in final_runs] == ["seed=0", "seed=1", "seed=2"] * 2
    # side: validation favours the high learning rate (test would have favoured the low one)
    assert record["tuning"]["variants"]["side"]["chosen"] == "lr_high"
    assert all("optim.embedding_lr=0.2" in o for c, o in final_runs if c == "side.yaml")
    # control: every setting ties on validation: the first (reference) setting
    assert record["tuning"]["variants"]["control"]["chosen"] == "base"
    assert [v["name"] for v in record["variants"]] == ["control", "side"]
    assert record["variants"][1]["tuned"] == {"setting": "lr_high", "overrides": ["optim.embedding_lr=0.2"]}
    res = record["tuning"]["variants"]["side"]["settings"]
    assert set(res) == {"base", "lr_high", "lr_low"} and res["lr_high"]["best_epoch"] == 1
    assert all("test" not in json.dumps(r) for r in res.values())  # the chooser never saw a test number
    for s in (0, 1, 2):
        assert (tmp_path / "train" / "side" / f"seed{s}" / "metrics.json").is_file()
    assert (tmp_path / "tune" / "lr_low" / "side" / "seed0" / "metrics.json").is_file()
    assert json.loads((tmp_path / "pipeline.json").read_text())["tuning"]["variants"]["side"]["chosen"] == "lr_high"

    n = len(calls)  # a rerun finds every tuning and final run finished
    tune_and_train({"variants": [], "failed": []}, tmp_path, variants, cfgs, [0, 1, 2], over, 3, 1, tuning)
    assert len(calls) == n


def test_trainer_sweep_runs_every_setting_in_one_launch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``torchrec-side train --sweep``: each JSON set of overrides trains with every seed, in its
    own run folder, one after the other in one process; a malformed set is refused."""
    from torchrec_side.train.cli import train_main

    job = _write(tmp_path, _synthetic(tmp_path, **{"train.epochs": 1}))
    a, b = tmp_path / "a", tmp_path / "b"
    rc = train_main(["--config", str(job), "--seeds", "0,1",
                     "--sweep", json.dumps([f"output_dir={a}", "train.score_test=false"]),
                     "--sweep", json.dumps([f"output_dir={b}", "optim.embedding_lr=0.01"])])
    assert rc == 0
    for folder, scored in ((a, False), (b, True)):
        for s in (0, 1):
            m = json.loads((folder / "tiny" / f"seed{s}" / "metrics.json").read_text())
            assert (m["test"] is not None) == scored
    import yaml

    for folder, lr in ((a, 0.05), (b, 0.01)):  # each set's overrides reached its own runs only
        assert yaml.safe_load((folder / "tiny" / "seed1" / "config.yaml").read_text())["optim"]["embedding_lr"] == lr
    for bad in ("not json", json.dumps({"a": 1}), json.dumps([1])):
        with pytest.raises(SystemExit) as e:
            train_main(["--config", str(job), "--sweep", bad])
        assert e.value.code == 2
    assert "--sweep must be a JSON list" in capsys.readouterr().err


def test_trainer_plan_runs_several_configs_in_one_launch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``torchrec-side train --plan``: each run of the JSON list trains with its own config and
    overrides, in order, in one process; malformed plans and mixed arguments are refused."""
    from torchrec_side.train.cli import train_main

    a = _write(tmp_path, {**_synthetic(tmp_path, **{"train.epochs": 1}), "name": "a"}, "a.yaml")
    b = _write(tmp_path, {**_synthetic(tmp_path, **{"train.epochs": 1}), "name": "b"}, "b.yaml")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"config": str(a), "overrides": ["seed=1", "train.score_test=false"]},
                                {"config": str(b), "overrides": ["seed=2", "optim.embedding_lr=0.01"]}]))
    assert train_main(["--plan", str(plan)]) == 0
    import yaml

    ma = json.loads((tmp_path / "runs" / "a" / "seed1" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "runs" / "b" / "seed2" / "metrics.json").read_text())
    assert ma["test"] is None and mb["test"] is not None
    assert yaml.safe_load((tmp_path / "runs" / "b" / "seed2" / "config.yaml").read_text())["optim"]["embedding_lr"] == 0.01
    for bad in ("not json", json.dumps([]), json.dumps([{"config": str(a)}]), json.dumps([{"config": str(a), "overrides": [1]}])):
        plan.write_text(bad)
        assert train_main(["--plan", str(plan)]) == 2
    assert "--plan" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        train_main(["--plan", str(plan), "--config", str(a)])
    assert e.value.code == 2


def test_run_plan_relaunches_after_a_failed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing run ends its launch; the runs after it go in the next one, and two launches in a
    row that finish nothing stop the plan."""
    runs = [common.PlannedRun("v", k, tmp_path / "c.yaml", (), tmp_path / k) for k in "abcde"]
    launches: List[List[str]] = []

    def fake(todo: List[common.PlannedRun], log_dir: Path, nproc: int = 2, progress: Any = None,
             poll_s: float = 1.0) -> int:
        launches.append([r.key for r in todo])
        for r in todo:
            if r.key in "bd":
                return 1
            r.run_dir.mkdir()
            (r.run_dir / "metrics.json").write_text(json.dumps({"epochs": 1.0}))
        return 0

    monkeypatch.setattr(common, "launch", fake)
    failed, rc = common.run_plan(runs, 1, tmp_path / "logs", 2)
    assert [r.key for r in failed] == ["b", "d"] and rc == 1
    assert launches == [list("abcde"), list("cde"), ["e"]]
    assert common.run_plan(runs[:2], 1, tmp_path / "logs", 2)[0] == [runs[1]]  # 'a' is done: only 'b' is tried

    launches.clear()
    monkeypatch.setattr(common, "launch", lambda todo, *a, **k: launches.append([r.key for r in todo]) or 1)
    fresh = [dataclasses.replace(r, run_dir=tmp_path / "never" / r.key) for r in runs[:3]]
    failed, _ = common.run_plan(fresh, 1, tmp_path / "logs", 2)  # nothing ever finishes
    assert launches == [list("abc"), list("bc")] and [r.key for r in failed] == list("abc")


def test_failed_runs_are_recorded_per_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that fails is recorded under its variant (seeds; tuning: the settings and the tuning
    seed), the others still train, and the world's record says so."""
    cfgs = {n: _write(tmp_path, {**_synthetic(tmp_path), "name": n}, f"{n}.yaml") for n in ("control", "side")}
    variants = [Variant(n, str(cfgs[n]), n, "") for n in cfgs]
    calls: List[Dict[str, Any]] = []
    ok = _fake_launch(calls)

    def flaky(runs: List[common.PlannedRun], *a: Any, **k: Any) -> int:
        keep = []
        for r in runs:  # side's lr_low tuning run and its final seed 1 never finish
            if r.variant == "side" and (r.key in ("lr_low", 1)):
                break
            keep.append(r)
        ok(keep, *a, **k)
        return 1 if len(keep) < len(runs) else 0

    monkeypatch.setattr(common, "launch", flaky)
    tuning = Tuning((TuningSetting("base"), TuningSetting("lr_low", ("optim.embedding_lr=0.01",))), seed=0)
    record: Dict[str, Any] = {"variants": [], "failed": []}
    tune_and_train(record, tmp_path, variants, cfgs, [0, 1, 2], train_overrides(tmp_path, tmp_path / "train", 1, 2),
                   1, 1, tuning)
    assert record["failed"] == [
        {"variant": "side", "seeds": [0], "returncode": 1, "log": str(tmp_path / "logs" / "tune"), "tuning": ["lr_low"]},
        {"variant": "side", "seeds": [1], "returncode": 1, "log": str(tmp_path / "logs" / "train")}]
    assert record["tuning"]["variants"]["side"]["chosen"] == "base"  # chosen among the settings that finished
    for s in (0, 2):
        assert (tmp_path / "train" / "side" / f"seed{s}" / "metrics.json").is_file()
