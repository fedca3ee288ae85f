# pyre-strict
"""The world runner over a declarative world spec: specs are checked as they are built, configs
are filled by interpolation (every placeholder, or a clear error), only the artifacts the chosen
variants need are built, and a tiny spec runs to the expected plan (the launch mocked)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest
import yaml

from torchrec_side.config import ConfigError
from torchrec_side.experiments import common, runner
from torchrec_side.experiments.runner import fill_config, placeholders, run_world, variant_context
from torchrec_side.experiments.spec import Artifact, Budget, Tuning, TuningSetting, Variant, WorldInfo, WorldSpec
from torchrec_side.train.config import load_train_config


@dataclass(frozen=True)
class _Source:
    """A world with no data of its own: records what it is asked to build."""

    built: List[List[str]] = field(default_factory=list)

    def prepare(self, out: Path) -> WorldInfo:
        return WorldInfo({"dir": (out / "world").as_posix()}, {"num_items": 10})

    def build(self, out: Path, store: Any, artifacts: Sequence[Artifact]) -> Dict[str, Any]:
        self.built.append([a.name for a in artifacts])
        return {a.name: {} for a in artifacts}

    def describe(self, out: Path, info: WorldInfo, store: Any) -> Dict[str, Any]:
        return {"world": {"name": "toy"}}


def _quantizer(name: str) -> Artifact:
    return Artifact(name, "rq_kmeans", "minilm", {"quantizer": f"quantizers/{name}.safetensors",
                                                  "sid_table": f"quantizers/{name}_sids.parquet"})


ARTIFACTS = (Artifact("fused_dpca", "tokenizer", "ml100k/tokenizer_fused_dpca", {"dir": "tokenize/fused_dpca"}),
             _quantizer("rq_minilm"), _quantizer("rq_cf"), _quantizer("dpca_minilm"),
             Artifact("fused_dpca_perm", "permuted", "fused_dpca", {"dir": "tokenize/fused_dpca_perm"},
                      after=("fused_dpca",)))
VARIANTS = (Variant("control", "ml100k/dlrm_control", "control", "no history"),
            Variant("side", "ml100k/dlrm_side", "side", "SIDE", ("fused_dpca",)),
            Variant("traditional_sid", "ml100k/dlrm_traditional_sid", "traditional", "RQ", ("rq_minilm", "rq_cf")))


def _spec(source: Any = None, variants: Sequence[Variant] = VARIANTS, **budget: Any) -> WorldSpec:
    b = Budget(**{"seeds": (0, 1), "max_epochs": 2, "patience": 1, **budget})
    return WorldSpec("toy", "toy-world", source or _Source(), tuple(variants), ARTIFACTS, b,
                     secondary=("side",), label="toy: ")


def test_spec_refuses_an_undeclared_artifact_naming_both() -> None:
    bad = Variant("side", "ml100k/dlrm_side", "side", "", ("fused_dpcaa",))
    with pytest.raises(ValueError, match=r"variant 'side' needs artifact\(s\) \['fused_dpcaa'\] the spec does not declare"):
        _spec(variants=(VARIANTS[0], bad))
    with pytest.raises(ValueError, match="no control variant"):
        _spec(variants=VARIANTS[1:])
    with pytest.raises(ValueError, match=r"artifact 'perm' is built from \['fused_dpca'\], not declared before it"):
        WorldSpec("toy", "toy", _Source(), VARIANTS[:1],
                  (Artifact("perm", "permuted", "fused_dpca", {"dir": "p"}, after=("fused_dpca",)), ARTIFACTS[0]),
                  Budget((0,), 1, 1))
    with pytest.raises(ValueError, match=r"secondary names unknown variants \['nope'\]"):
        WorldSpec("toy", "toy", _Source(), VARIANTS, ARTIFACTS, Budget((0,), 1, 1), secondary=("nope",))
    with pytest.raises(ValueError, match="among seeds"):
        Budget((0, 1), 1, 1, secondary_seeds=(2,))
    spec = _spec()
    with pytest.raises(ValueError, match=r"unknown toy-world variants \['sidee'\]"):
        spec.select(["control", "sidee"])
    with pytest.raises(ValueError, match="control variant is needed"):
        spec.select(["side"])


def test_needed_is_the_closure_of_the_chosen_variants_in_declared_order() -> None:
    from torchrec_side.experiments import sim

    spec = _spec(variants=(*VARIANTS, Variant("perm", "adsworld/dlrm_side_permuted_sid", "ablation", "",
                                              ("fused_dpca_perm",))))
    assert [a.name for a in spec.needed(spec.select(["control"]))] == []
    assert [a.name for a in spec.needed(spec.select(["traditional_sid", "control"]))] == ["rq_minilm", "rq_cf"]
    assert [a.name for a in spec.needed(spec.select(["control", "perm"]))] == ["fused_dpca", "fused_dpca_perm"]
    # the shipped worlds: every artifact some variant needs is declared, each variant's config reads its own
    s = sim.world_spec(sim.BUDGETS["quick"])
    assert [a.name for a in s.needed(s.select(None))] == ["fused_dpca", "fused_dpca_nolabels", "rq_text", "rq_image"]


def test_fill_config_fills_every_placeholder(tmp_path: Path) -> None:
    from torchrec_side.config import resolve_config
    from torchrec_side.experiments import ml100k, sim

    out = tmp_path / "w"
    spec = sim.world_spec(sim.BUDGETS["quick"])
    for v in spec.variants:  # every shipped simulated-world config
        keys = placeholders(yaml.safe_load(resolve_config(v.config).read_text()))
        assert "world.dir" in keys, v.name
        dst = fill_config(v, variant_context(spec, v, out, {"dir": f"{out}/world", "hash_rows": 7}),
                          out / "configs" / f"{v.name}.yaml")
        assert "${" not in dst.read_text(), v.name
        cfg = load_train_config(dst)
        assert cfg.data.world_dir == f"{out}/world", v.name
        for h in cfg.model.history:
            paths = [str(h.options[k]) for k in ("artifact", "quantizer", "sid_table") if k in h.options]
            assert all(p.startswith(f"{out}/tokenize/") or p.startswith(f"{out}/quantizers/") for p in paths), v.name
            if "num_rows" in h.options:
                assert h.options["num_rows"] == 7, v.name
    side = load_train_config(out / "configs" / "side_permuted_sid.yaml").model.history[0].options
    assert side["artifact"] == f"{out}/tokenize/fused_dpca_perm"
    ml = ml100k.world_spec()
    for v in ml.variants:
        dst = fill_config(v, variant_context(ml, v, out, {}), out / "ml" / f"{v.name}.yaml")
        assert "${" not in dst.read_text() and "runs/demo" not in dst.read_text(), v.name
    # a variant's own overrides are merged into its filled config
    v = Variant("control", "ml100k/dlrm_control", "control", "", overrides=("optim.embedding_lr=0.01",))
    assert load_train_config(fill_config(v, {}, tmp_path / "c.yaml")).optim.embedding_lr == 0.01


def test_fill_config_names_an_unfilled_placeholder_and_the_config(tmp_path: Path) -> None:
    # side_rq reads rq_text and rq_image; declaring only one leaves the other's placeholders unfilled
    v = Variant("side_rq", "adsworld/dlrm_side_rq", "ablation", "", ("rq_text",))
    ctx = {"world": {"dir": "/w/world"},
           "artifacts": {"rq_text": {"quantizer": "/w/q.safetensors", "sid_table": "/w/q.parquet"}}}
    with pytest.raises(ConfigError, match=r"config adsworld/dlrm_side_rq \(variant side_rq\): placeholder\(s\) "
                                          r"\$\{artifacts\.rq_image\.quantizer\}, \$\{artifacts\.rq_image\.sid_table\} "
                                          r"not filled"):
        fill_config(v, ctx, tmp_path / "a.yaml")
    own = tmp_path / "own.yaml"  # a plain interpolation without a default, and an unknown world key
    own.write_text("name: own\ndata: {dataset: adsworld, world_dir: '${world.root}/w'}\n")
    with pytest.raises(ConfigError, match=r"config .*own\.yaml \(variant x\): placeholder\(s\) \$\{world\.root\} not filled"):
        fill_config(Variant("x", str(own), "control", ""), {"world": {"dir": "/w"}}, tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match=r"declares artifact\(s\) \['rq_text'\] that the config never reads"):
        fill_config(Variant("c", "adsworld/dlrm_control", "control", "", ("rq_text",)),
                    {"world": {"dir": "/w"}, "artifacts": {"rq_text": {"quantizer": "q"}}}, tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"override optim\.nope='1' names no key of the config"):
        fill_config(Variant("c", "ml100k/dlrm_control", "control", "", overrides=("optim.nope=1",)), {},
                    tmp_path / "d.yaml")
    assert not (tmp_path / "a.yaml").exists()


class _Store:
    path = "fake"
    max_history = 5

    def rows(self, split: str) -> int:
        return 1


def _fake_launch(calls: List[List[common.PlannedRun]]) -> Any:
    def launch(runs: List[common.PlannedRun], log_dir: Path, nproc: int = 2, progress: Any = None,
               poll_s: float = 1.0) -> int:
        calls.append(list(runs))
        for r in runs:
            lr = next((float(o.split("=")[1]) for o in r.overrides if o.startswith("optim.embedding_lr=")), 0.05)
            r.run_dir.mkdir(parents=True, exist_ok=True)
            (r.run_dir / "metrics.json").write_text(json.dumps({
                "epochs": 1.0, "stopped_early": True, "best_epoch": 1, "val": {"ne": 0.9 - lr},
                "val_history": [{"epoch": 1, "ne": 0.9 - lr}]}))
        return 0

    return launch


def test_runner_on_a_tiny_spec_builds_only_what_it_needs_and_plans_the_runs(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import torchrec_side.data.store as store

    calls: List[List[common.PlannedRun]] = []
    monkeypatch.setattr(common, "launch", _fake_launch(calls))
    monkeypatch.setattr(runner, "check_variants", lambda configs, overrides: (list(configs), {}))
    monkeypatch.setattr(runner, "write_item_counts", lambda out, s: out / "counts.npy")
    monkeypatch.setattr(store, "prepare_store", lambda *a, **k: _Store())
    src = _Source()
    grid = Tuning((TuningSetting("base"), TuningSetting("lr_high", ("optim.embedding_lr=0.2",))))
    spec = _spec(src, secondary_seeds=(0,), tuning=grid)
    out = tmp_path / "toy"
    rec = run_world(spec, out, variants=["side", "control"], report=False)

    assert src.built == [["fused_dpca"]]  # traditional_sid's quantizers are not built
    assert len(calls) == 2  # one launch for the tuning runs, one for the final runs
    tune, final = calls
    assert [(r.variant, r.key) for r in tune] == [("control", "base"), ("control", "lr_high"),
                                                  ("side", "base"), ("side", "lr_high")]
    assert all("seed=0" in r.overrides and "train.score_test=false" in r.overrides for r in tune)
    assert tune[3].run_dir == out / "tune" / "lr_high" / "dlrm_side" / "seed0"
    # side is secondary: only the secondary seed; both chose the higher learning rate on validation
    assert [(r.variant, r.key) for r in final] == [("control", 0), ("control", 1), ("side", 0)]
    assert all("optim.embedding_lr=0.2" in r.overrides for r in final)
    assert final[2].run_dir == out / "train" / "dlrm_side" / "seed0"
    filled = load_train_config(final[2].config, list(final[2].overrides))
    assert filled.model.history[0].options["artifact"] == f"{out.as_posix()}/tokenize/fused_dpca"
    assert filled.train.epochs == 2 and filled.seed == 0
    assert rec["variant_seeds"] == {"side": [0]} and rec["world"] == {"name": "toy"}
    assert rec["fitted"] == {"fused_dpca": {}} and [v["name"] for v in rec["variants"]] == ["control", "side"]
    assert {"mode", "seeds", "max_epochs", "early_stop_patience", "overrides", "unavailable", "failed", "tuning",
            "train_seconds", "total_seconds"} <= set(rec)
    assert json.loads((out / "pipeline.json").read_text())["tuning"]["variants"]["side"]["chosen"] == "lr_high"
    # a rerun of the same command trains nothing
    run_world(spec, out, variants=["side", "control"], report=False)
    assert len(calls) == 2
