# pyre-strict
"""The experiment driver (``torchrec-side demo``): packaged configs from any folder and from an
installed wheel, argument checks, and a tiny simulated world end to end through TorchX."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import List

import pytest

from torchrec_side.config import packaged_configs, resolve_config

REPO = Path(__file__).resolve().parents[2]


def test_packaged_configs_listed_and_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchrec_side.experiments import ml100k, sim
    from torchrec_side.train.config import load_train_config

    names = packaged_configs()
    for v in ml100k.VARIANTS + sim.VARIANTS:  # every variant's config ships with the package
        assert v.config in names, v.config
    assert "adsworld/tokenizer_fused_dpca" in names and "ml100k/tokenizer_fused_dpca" in names
    monkeypatch.chdir(tmp_path)  # nothing resolves from the repository root
    pkg = Path(__import__("importlib.resources").resources.files("torchrec_side.configs"))
    assert pkg == REPO / "configs"  # the editable install maps the top-level folder: one copy
    for spec in ("ml100k/dlrm_side", "ml100k/dlrm_side.yaml", "configs/ml100k/dlrm_side.yaml"):
        p = resolve_config(spec)
        assert p.is_file() and p.parent.parent == pkg and p.name == "dlrm_side.yaml", spec
    own = tmp_path / "ml100k" / "dlrm_side.yaml"  # an existing file wins over the packaged name
    own.parent.mkdir()
    own.write_text("name: mine\n")
    assert resolve_config("ml100k/dlrm_side.yaml") == Path("ml100k/dlrm_side.yaml")
    assert load_train_config("adsworld/dlrm_control").data.dataset == "adsworld"
    with pytest.raises(FileNotFoundError, match="packaged configs: .*ml100k/dlrm_control"):
        resolve_config("ml100k/nope")


def test_sim_configs_share_the_budget() -> None:
    from torchrec_side.experiments.sim import VARIANTS
    from torchrec_side.train.config import load_train_config

    cfgs = {v.name: load_train_config(v.config) for v in VARIANTS}
    base = cfgs["control"]
    for name, c in cfgs.items():
        assert c.data == base.data and c.optim == base.optim, name
        assert c.model.embedding_dim == base.model.embedding_dim, name
        assert c.model.over_arch_layer_sizes == base.model.over_arch_layer_sizes, name
        assert c.train.batch_size == base.train.batch_size, name
        assert c.model.id_features == ["user_id", "item_id"], name  # the target's id row everywhere
        for h in c.model.history:  # every variant sees the target through its history's path
            assert h.options.get("target") is True, (name, h.kind)
            if h.kind in ("sparse_id", "sparse_id_zch"):  # in the history's own table
                assert h.options.get("share_with_target") is True, (name, h.kind)
    assert {h.options["collection"] for h in cfgs["raw_content"].model.history} == {"text", "image"}
    for name in ("sparse_id_hashed", "sparse_id_zch"):  # N/10 of the quick world (the driver writes N/10 of its world)
        assert cfgs[name].model.history[0].options["num_rows"] == 10_000, name


def test_sim_ablation_grid_variants_and_artifacts(tmp_path: Path) -> None:
    """The tokenizer x embedding grid: six variants, each cell's history reads the tokenizer and
    embedding its row and column name; the driver fits exactly the artifacts each one names; the
    report's grid is the driver's; the no-label tokenizer is the labelled one without targets."""
    from torchrec_side.config import load_config
    from torchrec_side.experiments.sim import ABLATION_GRID, BUDGETS, VARIANTS, world_spec
    from torchrec_side.report import ABLATION_COLUMNS, ABLATION_ROWS
    from torchrec_side.tokenizer import TokenizeJobConfig
    from torchrec_side.train.config import load_train_config

    assert {k: dict(zip([c for c, _ in ABLATION_COLUMNS], cells)) for k, _, cells in ABLATION_ROWS} == ABLATION_GRID
    by_name = {v.name: v for v in VARIANTS}
    spec = world_spec(BUDGETS["quick"])
    want_kind = {"prefix_ngram": "prefix_ngram", "side": "side"}
    want_source = {"rq_kmeans": ["quantizers/rq_text.", "quantizers/rq_image."],
                   "fusion_nolabels": ["tokenize/fused_dpca_nolabels"], "fusion_labels": ["tokenize/fused_dpca"]}
    want_needed = {"rq_kmeans": ["rq_text", "rq_image"], "fusion_nolabels": ["fused_dpca_nolabels"],
                   "fusion_labels": ["fused_dpca"]}
    for row, cols in ABLATION_GRID.items():
        for col, name in cols.items():
            v = by_name[name]
            if name not in ("traditional_sid", "side"):
                assert v.role == "ablation" and v.description.startswith("ablation cell"), name
            hist = load_train_config(v.config).model.history
            assert len(hist) == len(want_source[row]), name  # one feature per collection for RQ-KMeans
            for h, src in zip(hist, want_source[row]):
                assert h.kind == want_kind[col], name
                assert src in str(h.options.get("artifact") or h.options.get("quantizer")), name
                assert h.options["target"] is True and h.options["pooling"] == "mean", name
            assert [a.name for a in spec.needed([v])] == want_needed[row], name
    # prefix-ngram over the 40-digit SID: prefix lengths 1..15 in traditional_sid's 65,536-row budget
    trad = load_train_config(by_name["traditional_sid"].config).model.history[0].options
    for name in ("prefix_fused", "prefix_fused_nolabels"):
        o = load_train_config(by_name[name].config).model.history[0].options
        assert o["num_tokens"] == 15 and o["max_rows"] == trad["max_rows"] == 65536, name
    assert [a.name for a in spec.needed([by_name["side_permuted_sid"]])] == ["fused_dpca", "fused_dpca_perm"]
    lab = load_config(TokenizeJobConfig, "adsworld/tokenizer_fused_dpca", [])
    nolab = load_config(TokenizeJobConfig, "adsworld/tokenizer_fused_dpca_nolabels", [])
    assert [t.name for t in lab.model.targets] == ["category", "subcategory"] and nolab.model.targets == []
    assert nolab.name == "fused_dpca_nolabels"
    assert dataclasses.replace(nolab, name=lab.name, model=dataclasses.replace(nolab.model, targets=lab.model.targets)) == lab


@pytest.mark.slow
def test_wheel_ships_configs_and_resolves_installed(tmp_path: Path) -> None:
    """``pip wheel`` of the repository holds the configs; installed into a bare folder, they
    resolve from another working folder through importlib.resources (no repository on the path)."""
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = list(wheels.glob("torchrec_side-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    for n in packaged_configs():
        assert f"torchrec_side/configs/{n}.yaml" in names, n
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(whl)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import torchrec_side, torchrec_side.config as c; "
            "print(torchrec_side.__file__); print(c.resolve_config('adsworld/dlrm_side')); "
            "print(c.resolve_config('configs/ml100k/dlrm_control.yaml'))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    # -S: no site-packages, so the repository's editable install cannot answer the import; only
    # the wheel's files under `site` can (resolving a config needs nothing but the standard library)
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=work, capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert all(line.startswith(str(site)) for line in lines), lines


@pytest.mark.parametrize("argv, message", [
    (["--quick", "--size", "full"], "exclude each other"),
    (["--variants", "control,side"], "one world's variants"),
    (["--seeds", "0,x"], "comma-separated integers"),
    (["--seeds", "-1"], ">= 0"),
    (["--nproc", "0"], ">= 1"),
    (["--world", "moon"], "invalid choice"),
])
def test_demo_argument_checks(argv: List[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from torchrec_side.cli import main

    assert main(["demo", "--out", str(tmp_path / "d"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # nothing written before the arguments are checked


def test_demo_unknown_variant_fails_before_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from torchrec_side.cli import main

    assert main(["demo", "--world", "sim", "--quick", "--variants", "control,sidee", "--out", str(tmp_path)]) == 2
    assert "unknown simulated-world variants ['sidee']" in capsys.readouterr().err
    assert not (tmp_path / "sim_tiny_id_dominant" / "world").exists()
    assert main(["demo", "--world", "ml100k", "--variants", "side", "--out", str(tmp_path)]) == 2
    assert "control variant is needed" in capsys.readouterr().err


def test_demo_writes_only_into_its_own_folder_and_needs_its_extras(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from torchrec_side.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["demo", "--world", "sim", "--quick", "--out", str(mine)]) == 2
    assert "no demo.json" in capsys.readouterr().err and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchx" else find_spec(name, *a))
    assert main(["demo", "--world", "sim", "--quick", "--out", str(tmp_path / "d")]) == 2
    assert "pip install 'torchrec-side[launch]'" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_overrides_and_finished_runs(tmp_path: Path) -> None:
    from torchrec_side.experiments.common import run_finished, train_overrides

    ov = train_overrides(tmp_path, tmp_path / "train", 3, 1)
    assert "train.validate_every_epoch=true" in ov and "train.early_stop_patience=1" in ov
    assert f"examples_dir={tmp_path / 'examples'}" in ov and "train.epochs=3" in ov
    run = tmp_path / "r"
    run.mkdir()
    assert not run_finished(run, 3)
    (run / "metrics.json").write_text("{not json")
    assert not run_finished(run, 3)
    (run / "metrics.json").write_text(json.dumps({"epochs": 2.0, "stopped_early": False}))
    assert not run_finished(run, 3) and run_finished(run, 2)
    (run / "metrics.json").write_text(json.dumps({"epochs": 2.0, "stopped_early": True}))
    assert run_finished(run, 3)  # stopped on validation counts as finished


@pytest.mark.slow
def test_tiny_world_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny world -> store -> tokenizer -> control, SIDE and permuted SIDE through the tuning
    protocol (2 settings on validation with seed 0, then the seeds at the chosen setting; the
    permuted ablation, not a headline variant, at the secondary seed only; TorchX, 2 ranks) ->
    report with the new fields; a rerun trains nothing. Run from an unrelated folder (TorchX's
    local_cwd scheduler starts the ranks there): nothing depends on the repository root."""
    import dataclasses

    from torchrec_side.experiments.common import Tuning, TuningSetting
    from torchrec_side.experiments.sim import BUDGETS, run_sim

    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "sim_tiny"
    grid = Tuning((TuningSetting("base"), TuningSetting("emb_lr_low", ("optim.embedding_lr=0.02",))))
    budget = dataclasses.replace(BUDGETS["tiny"], seeds=(0, 1), secondary_seeds=(0,), tuning=grid)
    names = ["control", "side", "side_permuted_sid"]
    rec = run_sim(out, budget, variants=names, mode="quick")
    assert rec["failed"] == [] and rec["unavailable"] == {}
    assert (out / "world" / "manifest.json").is_file() and (out / "tokenize" / "fused_dpca" / "sid_table.parquet").is_file()
    assert (out / "item_train_counts.npy").is_file()
    from torchrec_side.tokenizer.sid_table import read_sid_table

    real, perm = (read_sid_table(out / "tokenize" / n / "sid_table.parquet") for n in ("fused_dpca", "fused_dpca_perm"))
    assert sorted(real.sids.tolist()) == sorted(perm.sids.tolist()) and not bool((real.sids == perm.sids).all())
    # tuning: every variant ran both settings with seed 0, test never scored; the choice is the lower val NE
    tuning = rec["tuning"]
    assert tuning["seed"] == 0 and set(tuning["settings"]) == {"base", "emb_lr_low"}
    for name in names:
        res = tuning["variants"][name]["settings"]
        assert set(res) == {"base", "emb_lr_low"}
        assert tuning["variants"][name]["chosen"] == min(res, key=lambda k: (res[k]["val_ne"], k != "base"))
        for setting in res:
            m = json.loads((out / "tune" / setting / f"dlrm_{name}" / "seed0" / "metrics.json").read_text())
            assert m["test"] is None
    assert rec["variant_seeds"] == {"side_permuted_sid": [0]}
    assert 0 <= rec["world"]["target_in_history"]["share"] <= 1
    assert "**Repeat exposure**" in (out / "report.md").read_text()
    rep = json.loads((out / "report.json").read_text())
    assert rep["world"] == "adsworld_tiny" and rep["world_kind"] == "simulated" and rep["quick"] is True
    assert set(rep["ne_gain_ci95"]) >= {"side"} and rep["ne_gain_ci95"]["side"] is not None
    assert rep["oracle_share"]["side"]["point"] is not None
    assert "item_freq" in rep["slices"] and rep["statistics"]["paired_seeds"] == 2
    prot = rep["protocol"]  # 1 epoch allowed: every final run's best epoch is the last allowed
    assert prot["max_epochs"] == 1 and prot["patience"] == 1 and prot["tuning_seed"] == 0
    assert set(prot["tuning_settings"]) == {"base", "emb_lr_low"} and prot["runs"] == 5
    assert sorted(prot["best_epoch_at_cap"]) == ["control s0", "control s1", "side s0", "side s1",
                                                 "side_permuted_sid s0"]
    assert "Runs whose best epoch was the last allowed (more epochs might have helped): 5 of 5" in \
        (out / "report.md").read_text()
    for v in rep["rows"]:
        assert v["seeds"] == ([0] if v["variant"] == "side_permuted_sid" else [0, 1])
        assert v["tuned"]["setting"] == tuning["variants"][v["variant"]]["chosen"]
    m = json.loads((Path(rec["variants"][1]["run_dirs"]["0"]) / "metrics.json").read_text())
    assert m["val_history"] and m["best_epoch"] == 1 and m["test"] is not None  # stopped on validation, 1 epoch
    rec2 = run_sim(out, budget, variants=names, mode="quick", report=False)
    assert rec2["failed"] == [] and rec2["train_seconds"] < 30  # resumed: nothing left to train
    assert sorted(p.name for p in work.iterdir()) == []  # every output under the demo folder


def test_world_items_for_the_tokenizer(tmp_path: Path) -> None:
    """The tokenizer's world source: content collections as written, category and the
    sub-category's index within its category (plus the global leaf id), against items.parquet."""
    import numpy as np
    import pyarrow.parquet as pq

    from torchrec_side.data.adsworld import generate_world
    from torchrec_side.data.adsworld_config import load_world_config
    from torchrec_side.tokenizer.data import load_world_items

    m = generate_world(load_world_config("tiny"), tmp_path / "w", progress=False)
    items = load_world_items(str(tmp_path / "w"))
    assert items.dims == {"text": 384, "image": 128} and len(items) == m["num_items"]
    t = pq.read_table(tmp_path / "w" / "items.parquet")
    per = m["config"]["catalogue"]["subcategories_per_category"]
    cat, leaf = t.column("category").to_numpy(), t.column("subcategory").to_numpy()
    assert np.array_equal(items.targets["category"].numpy(), cat)
    assert np.array_equal(items.targets["subcategory"].numpy() + per * cat, leaf)
    assert items.num_classes["subcategory"] == per and int(items.targets["subcategory"].max()) < per
    text = np.load(tmp_path / "w" / "content" / "text.npy")
    assert np.array_equal(items.collections["text"].numpy(), text.astype(np.float32))
    from torchrec_side.io import ArtifactError

    with pytest.raises(ArtifactError, match="not an ads-world folder.*manifest.json"):
        load_world_items(str(tmp_path / "missing"))


def test_existing_world_of_another_config_is_refused(tmp_path: Path) -> None:
    """A rerun reuses the world folder only when it holds the world this budget asks for."""
    import dataclasses

    from torchrec_side.experiments.sim import BUDGETS, _world

    tiny = dataclasses.replace(BUDGETS["tiny"], world_overrides=("users.num_users=20",))
    m = _world(tmp_path, tiny, None, 1)
    assert _world(tmp_path, tiny, None, 1)["num_users"] == m["num_users"] == 20
    with pytest.raises(ValueError, match=r"another config .*preset"):
        _world(tmp_path, tiny, "id_dominant", 1)
    # a world written before an option existed reads it as its default
    man = json.loads((tmp_path / "world" / "manifest.json").read_text())
    del man["config"]["users"]["fresh_impressions"]
    (tmp_path / "world" / "manifest.json").write_text(json.dumps(man))
    assert _world(tmp_path, tiny, None, 1)["num_users"] == 20
