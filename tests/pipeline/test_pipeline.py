"""Part 2 of the main job: SID history kinds, their start-up checks, the variant configs and the
report's statistics (mean / std / paired NE gain / SIDE-vs-traditional ratio)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from factories import write_tiny_sid_files
from torchrec_side.config import ConfigError
from torchrec_side.models.history import HistoryContext, HistoryFeatureConfig, make_history_feature
from torchrec_side.models.sid_history import RawContentBag, RawContentSequence
from torchrec_side.report import side_vs_traditional, summarize, write_report

REPO = Path(__file__).resolve().parents[2]
MOD = "torchrec_side.models.sid_history:"
NUM_ITEMS = 40


@pytest.fixture(scope="module")
def sid_files(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Dict[str, str]]:
    return write_tiny_sid_files(tmp_path_factory.mktemp("sids"), NUM_ITEMS)


def _ctx(arch: str = "dlrm", d: int = 8) -> HistoryContext:
    return HistoryContext(num_users=10, num_items=NUM_ITEMS, embedding_dim=d, arch=arch)


def _kjt(keys: List[str], values: torch.Tensor, lengths: torch.Tensor) -> KeyedJaggedTensor:
    return KeyedJaggedTensor.from_lengths_sync(keys=keys, values=values, lengths=lengths)


def test_side_pooled_and_sequence_forward(sid_files: Dict[str, Dict[str, str]]) -> None:
    cfg = HistoryFeatureConfig(kind="side", column="hist_sid",
                               options={**sid_files["dpca"], "codec": "byte_grouped", "num_levels": 10})
    f = make_history_feature(cfg, _ctx())
    table = f.item_table()
    assert table.shape == (NUM_ITEMS, 1) and table.dtype == torch.int64
    items = torch.tensor([0, 5, 7, 39, 3])
    lengths = torch.tensor([2, 0, 3])
    kjt = _kjt(["hist_sid"], table[items, 0], lengths)
    pooled = f.pooled(["hist_sid"])(kjt)
    assert pooled.values().shape == (3, 8)  # projection 12 -> 8
    assert torch.allclose(pooled.values()[1], torch.zeros(8))  # empty bag
    # parameter-free apart from the projection: nothing grows with items
    n_params = sum(p.numel() for p in f.pooled(["hist_sid"]).parameters())
    assert n_params == 12 * 8
    seq = f.sequence(["hist_sid"])(kjt)["hist_sid"]
    assert seq.values().shape == (5, 8) and seq.lengths().tolist() == [2, 0, 3]
    # mean pooling of the per-event embeddings = the pooled output (same projection weights)
    pm = f.pooled(["hist_sid"])
    sm = f.sequence(["hist_sid"])
    sm.load_state_dict(pm.state_dict(), strict=False)
    d = f.describe()
    assert d["model_bytes_per_event"] == 8 and d["num_levels"] == 10


def test_prefix_ngram_tokens_and_forward(sid_files: Dict[str, Dict[str, str]]) -> None:
    cfg = HistoryFeatureConfig(kind="prefix_ngram", column="hist_pn",
                               options={**sid_files["rq"], "codec": "mixed_radix", "bits": 6, "max_rows": 32})
    f = make_history_feature(cfg, _ctx())
    tok = f.item_table()
    assert tok.shape == (NUM_ITEMS, 3)
    rows = [s.rows for s in f.token_config().token_specs()]
    assert rows == [4, 16, 32]  # 64 exact rows hashed into 32
    assert bool((tok >= 0).all()) and all(int(tok[:, t].max()) < rows[t] for t in range(3))
    keys = [k for inp in f.inputs() for k in inp.resolve_keys(3)]
    assert keys == ["hist_pn__p1", "hist_pn__p2", "hist_pn__p3"]
    items = torch.tensor([1, 2, 3])
    lengths = torch.tensor([1, 2])
    vals = torch.cat([tok[items, t] for t in range(3)])
    kjt = _kjt(keys, vals, lengths.repeat(3))
    out = f.pooled(keys)(kjt)
    assert out.values().shape == (2, 8) and out.keys() == ["hist_pn"]
    assert f.describe()["model_bytes_per_event"] == 24


def test_raw_content_modules() -> None:
    v = torch.randn(NUM_ITEMS, 384)
    bag = RawContentBag(v, "hist_item_id", 8)
    kjt = _kjt(["hist_item_id"], torch.tensor([1, 2, 3]), torch.tensor([2, 0, 1]))
    out = bag(kjt).values()
    assert out.shape == (3, 8)
    assert torch.allclose(out[0], bag.proj(v[[1, 2]].mean(0)), atol=1e-5)
    assert torch.allclose(out[1], torch.zeros(8))
    assert sum(p.numel() for p in bag.parameters()) == 384 * 8  # the frozen table is a buffer
    seq = RawContentSequence(v, "hist_item_id", 8)(kjt)["hist_item_id"]
    assert seq.values().shape == (3, 8)
    with pytest.raises(ConfigError, match="item-id history"):
        make_history_feature(HistoryFeatureConfig(kind="raw_content", column="hist_other"), _ctx())


def test_check_errors(sid_files: Dict[str, Dict[str, str]], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        make_history_feature(HistoryFeatureConfig(kind="side", column="h", options={"artifact": str(tmp_path / "nope")}), _ctx())
    with pytest.raises(ConfigError, match="exactly one"):
        make_history_feature(HistoryFeatureConfig(kind="side", column="h", options={}), _ctx())
    with pytest.raises(ConfigError, match="bits"):
        make_history_feature(HistoryFeatureConfig(kind="side", column="h", options={**sid_files["dpca"], "bits": 63.4}), _ctx())
    with pytest.raises(ConfigError, match="layout"):
        make_history_feature(HistoryFeatureConfig(kind="prefix_ngram", column="h",
                                                  options={**sid_files["rq"], "codec": "byte_grouped"}), _ctx())
    with pytest.raises(ConfigError, match="items"):
        make_history_feature(HistoryFeatureConfig(kind="side", column="h", options=sid_files["dpca"]),
                             HistoryContext(num_users=10, num_items=41, embedding_dim=8, arch="dlrm"))
    with pytest.raises(ConfigError, match="unknown"):  # options are strict
        make_history_feature(HistoryFeatureConfig(kind="side", column="h", options={**sid_files["dpca"], "bitz": 3}), _ctx())
    # the quantizer and the SID table must agree
    with pytest.raises(ConfigError, match="radices"):
        make_history_feature(HistoryFeatureConfig(kind="side", column="h", options={
            "quantizer": sid_files["rq"]["quantizer"], "sid_table": sid_files["dpca"]["sid_table"]}), _ctx())


def test_variant_configs_load_and_match_budget() -> None:
    from torchrec_side.pipeline import VARIANTS
    from torchrec_side.train.config import load_train_config

    cfgs = {v.name: load_train_config(v.config) for v in VARIANTS}  # packaged configs
    base = cfgs["control"]
    for name, c in cfgs.items():
        assert c.train.epochs == base.train.epochs and c.train.batch_size == base.train.batch_size, name
        assert c.model.embedding_dim == base.model.embedding_dim, name
        assert c.model.over_arch_layer_sizes == base.model.over_arch_layer_sizes, name
        assert c.data == base.data, name
        assert c.optim == base.optim, name
    kinds = {n: [h.kind.split(":")[-1] for h in c.model.history] for n, c in cfgs.items()}
    assert kinds["traditional_sid"] == ["PrefixNgramHistory", "PrefixNgramHistory"]
    assert kinds["side"] == ["SIDEHistory"] and cfgs["seq_side"].model.arch == "din"


# ---------------------------------------------------------------------------------------------
# report


def _metrics(ne: float, name: str, seed: int, hist: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"name": name, "seed": seed, "arch": "dlrm", "epochs": 1.0, "test": {"ne": ne, "auc": 0.7},
            "val": {"ne": ne + 0.01, "auc": 0.7}, "learned_params": {"total": 100}, "train_examples_per_s": 1000.0,
            "history": hist}


def _fabricate(tmp: Path, nes: Dict[str, List[float]]) -> Path:
    hist = {"control": [], "side": [{"kind": "side", "model_bytes_per_event": 8, "footprint": {"file_bytes_per_event": 3.0}}],
            "traditional_sid": [{"kind": "prefix_ngram", "model_bytes_per_event": 24}] * 2,
            "raw_content": [{"kind": "raw_content", "model_bytes_per_event": 768}],
            "sparse_id": [{"kind": "sparse_id", "footprint": {"value_bytes_per_event": 8.0}}]}
    variants = []
    for name, vals in nes.items():
        dirs = {}
        for s, ne in enumerate(vals):
            d = tmp / "train" / name / f"seed{s}"
            d.mkdir(parents=True)
            (d / "metrics.json").write_text(json.dumps(_metrics(ne, name, s, hist[name])))
            dirs[str(s)] = str(d)
        variants.append({"name": name, "config": "", "role": name, "description": name, "run_dirs": dirs})
    (tmp / "pipeline.json").write_text(json.dumps({"mode": "full", "seeds": [0, 1, 2], "epochs": 1, "nproc": 2,
                                                   "variants": variants, "failed": []}))
    return tmp


def test_report_statistics(tmp_path: Path) -> None:
    nes = {"control": [1.0, 0.9, 0.8], "side": [0.97, 0.882, 0.78], "traditional_sid": [0.99, 0.891, 0.792],
           "raw_content": [0.96, 0.88, 0.79], "sparse_id": [1.01, 0.905, 0.80]}
    run = _fabricate(tmp_path, nes)
    rep = write_report(run)
    rows = {r["variant"]: r for r in rep["rows"]}
    gains = [100 * (c - s) / c for c, s in zip(nes["control"], nes["side"])]
    assert rows["side"]["ne_gain_pct_mean"] == pytest.approx(np.mean(gains))
    assert rows["side"]["ne_gain_pct_std"] == pytest.approx(np.std(gains, ddof=1))
    assert rows["side"]["ne_mean"] == pytest.approx(np.mean(nes["side"]))
    assert rows["side"]["ne_std"] == pytest.approx(np.std(nes["side"], ddof=1))
    assert rows["control"]["ne_gain_pct_mean"] == 0.0
    assert rows["side"]["bytes_per_event"] == 8 and rows["traditional_sid"]["bytes_per_event"] == 48
    assert rows["sparse_id"]["bytes_per_event"] == 8 and rows["raw_content"]["bytes_per_event"] == 768
    assert set(rows["side"]) == {"variant", "seeds", "ne_mean", "ne_std", "ne_gain_pct_mean", "ne_gain_pct_std",
                                 "auc_mean", "bytes_per_event", "learned_params", "train_examples_per_s",
                                 "ceiling_share", "best_epochs", "tuned"}
    trad = [100 * (c - s) / c for c, s in zip(nes["control"], nes["traditional_sid"])]
    ratio = rep["side_vs_traditional_ne_gain"]
    assert ratio["ratio"] == pytest.approx(np.mean(gains) / np.mean(trad))
    assert ratio["ratio_p05"] <= ratio["ratio"] <= ratio["ratio_p95"] and ratio["ratio_std"] > 0
    assert (run / "report.md").is_file() and (run / "ne_gain.png").is_file() and (run / "bytes_per_event.png").is_file()
    md = (run / "report.md").read_text()
    assert "side_vs_traditional_ne_gain" in md and "docs/design.md section 8" in md
    met = {t["target"]: t["met"] for t in rep["targets"]}
    assert met["footprint: SIDE <= 1/3 of traditional SID (bytes/event as consumed)"] is True
    assert met["footprint: SIDE <= 1/100 of raw fp16 content embedding"] is False  # 8 > 7.68


def test_report_nonpositive_traditional_gain(tmp_path: Path) -> None:
    run = _fabricate(tmp_path, {"control": [0.9, 0.9], "side": [0.89, 0.88], "traditional_sid": [0.91, 0.9]})
    rep = write_report(run, plots=False)
    ratio = rep["side_vs_traditional_ne_gain"]
    assert ratio["ratio"] is None and "not positive" in ratio["note"]
    assert "No meaningful ratio" in (run / "report.md").read_text()
    assert rep["targets"][0]["met"] is False


def test_report_quick_label_and_cli(tmp_path: Path) -> None:
    from torchrec_side.report import report_main

    run = _fabricate(tmp_path, {"control": [0.9, 0.91], "side": [0.89, 0.9]})
    rec = json.loads((run / "pipeline.json").read_text())
    rec["mode"] = "quick"
    (run / "pipeline.json").write_text(json.dumps(rec))
    assert report_main([str(run), "--no-plots"]) == 0
    assert "QUICK" in (run / "report.md").read_text()
    assert report_main([str(tmp_path / "missing")]) == 2
    for bad in ({"world": 3}, {"variants": []}, [1], {"variants": [{"run_dirs": {}}]}):  # issue 17: refused, not
        (run / "pipeline.json").write_text(json.dumps(bad))                            # an empty report
        assert report_main([str(run), "--no-plots"]) == 2


# ---------------------------------------------------------------------------------------------
# end to end (one process, synthetic data): the SID kinds train through the real trainer


def _job(tmp: Path, history: List[Dict[str, Any]], arch: str = "dlrm") -> Path:
    import yaml

    cfg = {
        "name": f"tiny_{arch}", "output_dir": str(tmp / "runs"), "examples_dir": str(tmp / "examples"),
        "data": {"dataset": "synthetic", "synthetic_users": 60, "synthetic_items": NUM_ITEMS, "synthetic_events": 2000,
                 "max_history": 20, "row_group_size": 512},
        "model": {"arch": arch, "embedding_dim": 8, "dense_arch_layer_sizes": [16, 8], "over_arch_layer_sizes": [16, 1],
                  "history": history},
        "train": {"batch_size": 64, "eval_batch_size": 256, "epochs": 1, "checkpoint_every": 0, "num_workers": 0,
                  "progress": False, "threads": 1},
    }
    p = tmp / f"{arch}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_side_and_prefix_train_end_to_end(sid_files: Dict[str, Dict[str, str]], tmp_path: Path) -> None:
    from torchrec_side.train.cli import train_main

    hist = [{"kind": f"{MOD}SIDEHistory", "column": "hist_sid", "options": {**sid_files["dpca"], "codec": "byte_grouped"}},
            {"kind": f"{MOD}PrefixNgramHistory", "column": "hist_pn", "options": {**sid_files["rq"], "max_rows": 32}}]
    assert train_main(["--config", str(_job(tmp_path, hist))]) == 0
    m = json.loads((tmp_path / "runs" / "tiny_dlrm" / "seed0" / "metrics.json").read_text())
    assert math.isfinite(m["test"]["ne"]) and m["steps"] > 0
    by = {h["name"]: h for h in m["history"]}
    assert by["hist_sid"]["model_bytes_per_event"] == 8 and by["hist_pn"]["model_bytes_per_event"] == 24
    assert by["hist_pn"]["footprint"]["value_bytes_per_event"] == 24.0  # measured on the written column
    seq = [{"kind": f"{MOD}SIDEHistory", "column": "hist_sid", "options": sid_files["dpca"]}]
    assert train_main(["--config", str(_job(tmp_path, seq, arch="din"))]) == 0


def test_bits_mismatch_fails_before_training(sid_files: Dict[str, Dict[str, str]], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from torchrec_side.train.cli import train_main

    hist = [{"kind": f"{MOD}SIDEHistory", "column": "hist_sid", "options": {**sid_files["dpca"], "bits": 63.4}}]
    assert train_main(["--config", str(_job(tmp_path, hist))]) == 2
    assert "bits" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("*/seed0/metrics.json"))
