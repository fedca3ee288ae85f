# pyre-strict
"""The per-world report from a fake demo folder with tiny predictions files (the agreed format)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from torchrec_side.eval.stats import normalized_entropy
from torchrec_side.report import control_world_verdict, ReportConfig, report_main, world_kind, write_report

HIST: Dict[str, List[Dict[str, Any]]] = {
    "control": [],
    "side": [{"kind": "side", "model_bytes_per_event": 8, "footprint": {"file_bytes_per_event": 3.0}}],
    "traditional_sid": [{"kind": "prefix_ngram", "model_bytes_per_event": 24}] * 2,
    "raw_content": [{"kind": "raw_content", "model_bytes_per_event": 768}],
    "sparse_id": [{"kind": "sparse_id", "footprint": {"value_bytes_per_event": 8.0}}],
    "side_permuted_sid": [{"kind": "side", "model_bytes_per_event": 8, "footprint": {"file_bytes_per_event": 3.0}}],
    # the tokenizer x embedding ablation grid's other four cells
    "side_rq": [{"kind": "side", "model_bytes_per_event": 8}] * 2,
    "side_fused_nolabels": [{"kind": "side", "model_bytes_per_event": 8}],
    "prefix_fused": [{"kind": "prefix_ngram", "model_bytes_per_event": 120}],
    "prefix_fused_nolabels": [{"kind": "prefix_ngram", "model_bytes_per_event": 120}],
    # the DIN sequence variants
    "seq_side": [{"kind": "side", "model_bytes_per_event": 8}],
    "seq_sparse_id": [{"kind": "sparse_id", "footprint": {"value_bytes_per_event": 8.0}}],
}
#: prediction noise per variant (smaller = better); oracle = p_true
NOISE = {"control": 1.2, "sparse_id": 1.0, "raw_content": 0.6, "traditional_sid": 0.8, "side": 0.5,
         "side_permuted_sid": 0.9, "side_rq": 0.7, "side_fused_nolabels": 0.6, "prefix_fused": 0.65,
         "prefix_fused_nolabels": 0.75, "seq_side": 0.45, "seq_sparse_id": 1.1}


def _rows(n: int = 800) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    uid = rng.integers(0, 50, n).astype(np.int64)
    item = rng.integers(0, 80, n).astype(np.int64)
    freq = np.where(np.arange(80) < 8, 0, (rng.zipf(1.4, 80) * 5).clip(max=10_000)).astype(np.int64)
    logit = rng.normal(-0.5, 1.2, n)
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < p).astype(np.float32)
    # ceilings: the oracle's logit seen through noise (more noise = less reachable)
    ceil = {c: (1 / (1 + np.exp(-(logit + rng.normal(0, sd, n))))).astype(np.float32)
            for c, sd in (("p_content", 0.45), ("p_content_item", 0.35), ("p_id", 0.9))}
    return {"user_id": uid, "item_id": item, "label": y, "hist_len": rng.integers(0, 300, n).astype(np.int32),
            "item_train_freq": freq[item], "p_true": p.astype(np.float32), "logit": logit, **ceil}


def _write_preds(d: Path, base: Dict[str, np.ndarray], variant: str, seed: int, oracle: bool,
                 ceilings: bool = False, noise: Optional[Dict[str, float]] = None) -> np.ndarray:
    rng = np.random.default_rng(1000 * seed + sum(map(ord, variant)))
    sd = {**NOISE, **(noise or {})}[variant]
    score = 1 / (1 + np.exp(-(base["logit"] + rng.normal(0, sd, base["logit"].size))))
    cols: Dict[str, Any] = {k: base[k] for k in ("user_id", "item_id", "label")}
    cols["score"] = score.astype(np.float32)
    cols["hist_len"] = (base["hist_len"] if variant != "control" else np.zeros_like(base["hist_len"]))
    cols["item_train_freq"] = base["item_train_freq"]
    if oracle:
        cols["p_true"] = base["p_true"]
    if ceilings:
        for c in ("p_content", "p_id", "p_content_item"):
            cols[c] = base[c]
    pq.write_table(pa.table(cols), d / "predictions_test.parquet")
    return score


def _fabricate(tmp: Path, variants: List[str], seeds: List[int], oracle: bool, world: Optional[str] = None,
               skip: Optional[List[tuple]] = None,
               seeds_of: Optional[Dict[str, List[int]]] = None, ceilings: bool = False,
               noise: Optional[Dict[str, float]] = None, tuned: Optional[Dict[str, Any]] = None,
               control_world: Optional[str] = None) -> Dict[str, Dict[int, np.ndarray]]:
    base = _rows()
    recs = []
    scores: Dict[str, Dict[int, np.ndarray]] = {}
    for v in variants:
        dirs = {}
        for s in (seeds_of or {}).get(v, seeds):
            d = tmp / "train" / v / f"seed{s}"
            d.mkdir(parents=True)
            sc = _write_preds(d, base, v, s, oracle, ceilings, noise)
            ne = normalized_entropy(base["label"], np.clip(sc.astype(np.float32), 1e-7, 1 - 1e-7))
            if skip and (v, s) in skip:
                (d / "predictions_test.parquet").unlink()
            scores.setdefault(v, {})[s] = sc
            m = {"name": v, "seed": s, "arch": "dlrm", "epochs": 3.0, "best_epoch": 2 + s % 2, "test": {"ne": ne, "auc": 0.7},
                 "val": {"ne": ne, "auc": 0.7}, "learned_params": {"total": 100}, "train_examples_per_s": 1000.0,
                 "history": HIST[v]}
            (d / "metrics.json").write_text(json.dumps(m))
            dirs[str(s)] = str(d)
        recs.append({"name": v, "config": "", "role": v, "description": v, "run_dirs": dirs})
        if tuned and v in tuned:
            recs[-1]["tuned"] = tuned[v]
    rec: Dict[str, Any] = {"mode": "full", "seeds": seeds, "epochs": 3, "nproc": 2, "variants": recs, "failed": []}
    if world:
        rec["world"] = world
    if control_world:
        rec["control_world"] = control_world
    (tmp / "pipeline.json").write_text(json.dumps(rec))
    return scores


ALL = ["control", "sparse_id", "raw_content", "traditional_sid", "side"]


def test_simulated_world_report_fields_and_numbers(tmp_path: Path) -> None:
    scores = _fabricate(tmp_path, ALL, [0, 1, 2], oracle=True, world="adsworld")
    rep = write_report(tmp_path, cfg=ReportConfig(n_boot=200, slice_n_boot=50))
    assert rep["world"] == "adsworld" and rep["world_kind"] == "simulated"
    # old fields are kept
    for k in ("mode", "quick", "seeds", "rows", "details", "side_vs_traditional_ne_gain", "targets", "failed"):
        assert k in rep
    # the gain equals the paired gain computed directly from the predictions
    y = _rows()["label"]
    direct = [100 * (normalized_entropy(y, scores["control"][s]) - normalized_entropy(y, scores["side"][s]))
              / normalized_entropy(y, scores["control"][s]) for s in (0, 1, 2)]
    rows = {r["variant"]: r for r in rep["rows"]}
    assert rows["side"]["ne_gain_pct_mean"] == pytest.approx(np.mean(direct), rel=1e-5)
    lo, hi = rep["ne_gain_ci95"]["side"]
    assert lo <= rows["side"]["ne_gain_pct_mean"] <= hi
    assert rep["ne_gain"]["side"]["level"] == "seeds x users x items" == rep["statistics"]["level"]
    assert set(rep["oracle_share"]) == {"sparse_id", "raw_content", "traditional_sid", "side"}
    sh = rep["oracle_share"]["side"]
    assert 0 < sh["point"] < 1 and sh["ci95"][0] <= sh["point"] <= sh["ci95"][1]
    assert rep["oracle_ne_gain"]["point"] > rep["ne_gain"]["side"]["point"]
    assert set(rep["slices"]) == {"item_freq", "hist_len"}
    assert set(rep["slices"]["item_freq"]["buckets"]) == {"head", "torso", "tail", "cold"}
    assert rep["slices"]["item_freq"]["buckets"]["cold"]["rows"] > 0
    # hist_len comes from the history variants (control's files say 0)
    assert rep["slices"]["hist_len"]["buckets"]["0"]["rows"] < 50
    names = [t["target"] for t in rep["targets"]]
    assert any("oracle" in n for n in names) and any("cold items" in n for n in names)
    assert any("2.4" in n for n in names)
    for t in rep["targets"]:
        assert t["met"] in (True, False, None)
    assert rep["statistics"]["ne_check"]["max_abs_diff_predictions_vs_metrics"] < 1e-5
    for png in ("ne_gain.png", "gain_by_item_freq.png", "oracle_share.png", "bytes_per_event.png"):
        assert (tmp_path / png).is_file() and png in rep["plots"]
    md = (tmp_path / "report.md").read_text()
    assert "simulated ads world" in md and "oracle share" in md and "By target-item training frequency" in md
    assert "separated" in md and "docs/design.md section 8" in md
    assert "at least 10" in md  # 3 seeds < 10: said
    assert "test users and test items" in md and "`seeds x users x items`" in md
    assert json.loads((tmp_path / "report.json").read_text())["world"] == "adsworld"


def test_movielens_report_and_missing_predictions_fallback(tmp_path: Path) -> None:
    _fabricate(tmp_path, ALL, [0, 1, 2, 3], oracle=False, skip=[("raw_content", 1)])
    rep = write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=200, slice_n_boot=0))
    assert rep["world"] == "movielens" and rep["oracle_share"] is None
    miss = rep["statistics"]["runs_without_predictions"]
    assert miss == [{"variant": "raw_content", "seed": 1}]
    assert rep["ne_gain"]["raw_content"]["level"] == "seeds"
    assert rep["ne_gain"]["side"]["level"] == "seeds x users x items" == rep["statistics"]["level"]
    # the raw-content slices use the seeds that have its predictions only: it is left out
    assert "raw_content" not in rep["slices"]["item_freq"]["buckets"]["head"]["ne"]
    t = {x["target"]: x for x in rep["targets"]}
    sep = t["SIDE vs traditional SID: separated, or reported as not separated with the interval's width"]
    assert sep["met"] is True and ("not separated" in sep["measured"] or "separated" in sep["measured"])
    md = (tmp_path / "report.md").read_text()
    assert "Predictions missing" in md and "raw_content/seed1" in md and "MovieLens-100K" in md


def test_variant_with_fewer_seeds_is_paired_on_its_own(tmp_path: Path) -> None:
    """The main job gives ablations 5 of control's 10 seeds: they pair on those, the rest keep all."""
    scores = _fabricate(tmp_path, ["control", "side", "sparse_id"], [0, 1, 2, 3], oracle=False,
                        seeds_of={"sparse_id": [0, 2]})
    rep = write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=200, slice_n_boot=0))
    rows = {r["variant"]: r for r in rep["details"]}
    assert rows["sparse_id"]["seeds"] == [0, 2] and rows["side"]["seeds"] == [0, 1, 2, 3]
    assert sorted(rows["sparse_id"]["ne_gain_pct_per_seed"]) == ["0", "2"]
    base = _rows()
    for v in ("sparse_id", "side"):
        ne = {s: normalized_entropy(base["label"], np.clip(scores[v][s].astype(np.float32), 1e-7, 1 - 1e-7))
              for s in scores[v]}
        ctrl = {s: normalized_entropy(base["label"], np.clip(scores["control"][s].astype(np.float32), 1e-7, 1 - 1e-7))
                for s in scores[v]}
        want = np.mean([100 * (ctrl[s] - ne[s]) / ctrl[s] for s in ne])
        assert abs(rows[v]["ne_gain_pct_mean"] - want) < 1e-6, (v, rows[v]["ne_gain_pct_mean"], want)
    assert rep["ne_gain"]["sparse_id"]["level"] == "seeds x users x items"
    # the users-only bootstrap stays selectable: same points, its own level
    one = write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=50, slice_n_boot=0, resample_items=False))
    assert one["statistics"]["level"] == "seeds x users" == one["ne_gain"]["side"]["level"]
    assert one["ne_gain"]["side"]["point"] == pytest.approx(rep["ne_gain"]["side"]["point"])


def test_side_over_permuted_sid_is_reported(tmp_path: Path) -> None:
    _fabricate(tmp_path, ["control", "side", "side_permuted_sid"], [0, 1], oracle=True, world="adsworld_quick")
    rep = write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=200, slice_n_boot=0))
    p = rep["pairs"]["side_over_side_permuted_sid"]
    assert p["point"] is not None and len(p["ci95"]) == 2
    assert "SIDE on permuted SIDs" in (tmp_path / "report.md").read_text()


GRID = ["traditional_sid", "side_rq", "prefix_fused_nolabels", "side_fused_nolabels", "prefix_fused", "side"]


def _paired_gain(y: np.ndarray, scores: Dict[str, Dict[int, np.ndarray]], a: str, b: str, seeds: List[int]) -> float:
    """Mean over seeds of ``100 (NE_b - NE_a) / NE_b``, straight from the prediction arrays."""
    ne = {v: {s: _ne(y, scores[v][s]) for s in seeds} for v in (a, b)}
    return float(np.mean([100 * (ne[b][s] - ne[a][s]) / ne[b][s] for s in seeds]))


def test_ablation_grid_and_contrasts(tmp_path: Path) -> None:
    """The tokenizer x embedding grid: every cell the variant's own gain over control, and the three
    steps of SIDE's lead (labels, fusion, embedding) as paired gains that match the files, whose
    differences of control gains add up to SIDE's gain minus traditional SID's."""
    seeds = [0, 1, 2]
    scores = _fabricate(tmp_path, ["control", *GRID], seeds, oracle=True, world="adsworld")
    rep = write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=200, slice_n_boot=0))
    y = _rows()["label"]
    grid = rep["ablation_grid"]
    assert list(grid) == ["rq_kmeans", "fusion_nolabels", "fusion_labels"]
    cells = {(r, c): grid[r][c]["variant"] for r in grid for c in grid[r]}
    assert cells == {("rq_kmeans", "prefix_ngram"): "traditional_sid", ("rq_kmeans", "side"): "side_rq",
                     ("fusion_nolabels", "prefix_ngram"): "prefix_fused_nolabels",
                     ("fusion_nolabels", "side"): "side_fused_nolabels",
                     ("fusion_labels", "prefix_ngram"): "prefix_fused", ("fusion_labels", "side"): "side"}
    for (r, c), v in cells.items():
        g = grid[r][c]["gain"]
        assert g == rep["ne_gain"][v]
        assert g["point"] == pytest.approx(_paired_gain(y, scores, v, "control", seeds), rel=1e-6)
        assert g["ci95"][0] <= g["point"] <= g["ci95"][1]
    con = rep["ablation_contrasts"]
    assert [(k, c["variant"], c["reference"]) for k, c in con.items()] == [
        ("labels", "side", "side_fused_nolabels"), ("fusion", "side_fused_nolabels", "side_rq"),
        ("embedding", "side_rq", "traditional_sid")]
    for c in con.values():
        assert c["gain"] == rep["pairs"][c["pair"]]
        assert c["gain"]["point"] == pytest.approx(_paired_gain(y, scores, c["variant"], c["reference"], seeds), rel=1e-6)
        # points: the difference of the two gains over control, seed by seed
        assert c["points"]["point"] == pytest.approx(rep["ne_gain"][c["variant"]]["point"]
                                                     - rep["ne_gain"][c["reference"]]["point"], rel=1e-6)
    lead = rep["ne_gain"]["side"]["point"] - rep["ne_gain"]["traditional_sid"]["point"]
    assert sum(c["points"]["point"] for c in con.values()) == pytest.approx(lead, rel=1e-6)
    # noise 0.5 (side) < 0.6 (side_fused_nolabels) < 0.7 (side_rq) < 0.8 (traditional): every step helps here
    assert all(c["gain"]["point"] > 0 for c in con.values())
    md = (tmp_path / "report.md").read_text()
    assert "## Tokenizer x embedding ablation" in md
    g = grid["fusion_nolabels"]["side"]["gain"]
    row = next(line for line in md.splitlines() if line.startswith("| VQ fusion (text + image), no label heads |"))
    assert f"`side_fused_nolabels` {g['point']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]" in row
    assert "`prefix_fused_nolabels`" in row and "` not run" not in md and "| not run |" not in md
    assert md.count("| labels | ") == 1 and "`side_rq_over_traditional_sid`" in md


def test_ablation_grid_cells_not_run(tmp_path: Path) -> None:
    """Cells whose variant did not run say so; a world without any of the four ablation-only cells
    has no grid section (the JSON still names every cell, with no gain)."""
    _fabricate(tmp_path, ["control", "traditional_sid", "side", "side_rq"], [0, 1], oracle=True, world="adsworld")
    rep = write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=100, slice_n_boot=0))
    assert rep["ablation_grid"]["fusion_labels"]["prefix_ngram"] == {"variant": "prefix_fused", "gain": None}
    assert rep["ablation_grid"]["rq_kmeans"]["side"]["gain"]["point"] is not None
    con = rep["ablation_contrasts"]
    assert con["labels"]["gain"] is None and con["fusion"]["gain"] is None and con["labels"]["points"] is None
    assert con["embedding"]["gain"]["point"] is not None
    md = (tmp_path / "report.md").read_text()
    assert "`prefix_fused` not run" in md and "`side_fused_nolabels` not run" in md
    assert "| labels | " in md and "`side_over_side_fused_nolabels` | not run |" in md
    other = tmp_path / "other"
    other.mkdir()
    _fabricate(other, ["control", "traditional_sid", "side"], [0, 1], oracle=True, world="adsworld")
    rep = write_report(other, plots=False, cfg=ReportConfig(n_boot=50, slice_n_boot=0))
    assert rep["ablation_grid"]["rq_kmeans"]["prefix_ngram"]["gain"]["point"] is not None
    assert "Tokenizer x embedding ablation" not in (other / "report.md").read_text()


def test_slice_calibration_table(tmp_path: Path) -> None:
    _fabricate(tmp_path, ["control", "side"], [0, 1], oracle=True, world="adsworld_quick")
    rep = write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=50, slice_n_boot=0))
    cold = rep["slices"]["item_freq"]["buckets"]["cold"]
    assert 0.0 < cold["mean_pred"]["side"] < 1.0
    md = (tmp_path / "report.md").read_text()
    assert md.count("Calibration, mean predicted click probability") == 2  # item frequency and history length


def test_id_dominant_world_target(tmp_path: Path) -> None:
    _fabricate(tmp_path, ["control", "sparse_id", "side"], [0, 1], oracle=True)
    rep = write_report(tmp_path, plots=False, world="adsworld_id_dominant", cfg=ReportConfig(n_boot=100, slice_n_boot=0))
    assert rep["world_kind"] == "id_dominant"
    t = [x for x in rep["targets"] if "sparse-ID beats SIDE" in x["target"]][0]
    # in this fake world SIDE's predictions are the better ones: the instrument says so
    assert t["met"] is False and "sparse-ID over SIDE" in t["measured"]


def test_control_world_target_is_linked(tmp_path: Path) -> None:
    ctrl = tmp_path / "id_dominant"
    ctrl.mkdir()
    _fabricate(ctrl, ["control", "sparse_id", "side"], [0, 1], oracle=True, world="adsworld_id_dominant")
    write_report(ctrl, plots=False, cfg=ReportConfig(n_boot=50, slice_n_boot=0))
    main = tmp_path / "adsworld"
    main.mkdir()
    _fabricate(main, ["control", "sparse_id", "side"], [0, 1], oracle=True, world="adsworld")
    rep = write_report(main, plots=False, cfg=ReportConfig(n_boot=50, slice_n_boot=0, control_world=str(ctrl)))
    linked = [t for t in rep["targets"] if "sparse-ID beats SIDE" in t["target"]]
    assert len(linked) == 1 and str(ctrl) in linked[0]["target"] and linked[0]["met"] is False
    rep2 = write_report(main, plots=False, cfg=ReportConfig(n_boot=50, slice_n_boot=0,
                                                            control_world=str(tmp_path / "nope")))
    assert [t["met"] for t in rep2["targets"] if "sparse-ID beats SIDE" in t["target"]] == [None]


def test_unpaired_predictions_fail_clearly(tmp_path: Path) -> None:
    _fabricate(tmp_path, ["control", "side"], [0], oracle=False)
    f = tmp_path / "train" / "side" / "seed0" / "predictions_test.parquet"
    t = pq.read_table(f).to_pydict()
    t["item_id"][3] += 1
    pq.write_table(pa.table(t), f)
    with pytest.raises(ValueError, match="item_id.*not paired"):
        write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=20, slice_n_boot=0))
    assert report_main([str(tmp_path), "--no-plots", "--n-boot", "20"]) == 2


def test_world_kind_rules() -> None:
    assert world_kind("movielens", False) == "movielens"
    assert world_kind("adsworld", True) == "simulated"
    assert world_kind("adsworld_id_dominant", True) == "id_dominant"
    assert world_kind("w", True, {"world": {"config": {"preset": "id_dominant"}}}) == "id_dominant"
    assert world_kind("w", False) == "movielens"


@pytest.mark.slow
def test_report_from_real_trainer_predictions(tmp_path: Path) -> None:
    """The trainer's predictions_test.parquet (agreed format) feeds the report: 2 variants x 2 seeds."""
    import yaml

    from torchrec_side.train.cli import train_main

    hist: Dict[str, List[Dict[str, Any]]] = {
        "control": [], "sparse_id": [{"kind": "sparse_id", "column": "hist_item_id", "options": {"pooling": "mean"}}]}
    variants = []
    for name, h in hist.items():
        cfg = {"name": name, "output_dir": str(tmp_path / "runs"), "examples_dir": str(tmp_path / "examples"),
               "data": {"dataset": "synthetic", "synthetic_users": 60, "synthetic_items": 40, "synthetic_events": 2000,
                        "max_history": 20, "row_group_size": 512},
               "model": {"arch": "dlrm", "embedding_dim": 8, "dense_arch_layer_sizes": [16, 8],
                         "over_arch_layer_sizes": [16, 1], "history": h},
               "train": {"batch_size": 64, "eval_batch_size": 256, "epochs": 1, "checkpoint_every": 0,
                         "num_workers": 0, "progress": False, "threads": 1}}
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump(cfg))
        dirs = {}
        for s in (0, 1):
            assert train_main(["--config", str(p), f"seed={s}"]) == 0
            dirs[str(s)] = str(tmp_path / "runs" / name / f"seed{s}")
        variants.append({"name": name, "config": str(p), "role": name, "description": name, "run_dirs": dirs})
    (tmp_path / "pipeline.json").write_text(json.dumps({"mode": "full", "seeds": [0, 1], "epochs": 1, "nproc": 1,
                                                        "variants": variants, "failed": []}))
    rep = write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=100, slice_n_boot=20))
    st = rep["statistics"]
    assert st["runs_with_predictions"] == 4 and st["runs_without_predictions"] == []
    assert st["ne_check"]["max_abs_diff_predictions_vs_metrics"] < 1e-5
    assert rep["ne_gain"]["sparse_id"]["level"] == "seeds x users x items" and rep["world"] == "movielens"
    assert sum(b["rows"] for b in rep["slices"]["hist_len"]["buckets"].values()) > 0


def _ne(y: np.ndarray, p: np.ndarray) -> float:
    return normalized_entropy(y, np.clip(p.astype(np.float32), 1e-7, 1 - 1e-7))


def test_ceilings_share_protocol_table_and_plot(tmp_path: Path) -> None:
    """A world that stores its ceilings: each one scored as a pseudo-variant, paired like a variant."""
    tuned = {"side": {"setting": "lr_x3", "overrides": ["train.embedding_lr=0.03"]},
             "control": {"setting": "reference", "overrides": []}}
    scores = _fabricate(tmp_path, ALL, [0, 1, 2], oracle=True, world="adsworld", ceilings=True, tuned=tuned)
    rep = write_report(tmp_path, cfg=ReportConfig(n_boot=200, slice_n_boot=30))
    base = _rows()
    y = base["label"]
    c = rep["ceilings"]
    assert list(c) == ["content", "content_item", "id", "oracle"]
    for key, col in (("content", "p_content"), ("content_item", "p_content_item"), ("id", "p_id"), ("oracle", "p_true")):
        ne = _ne(y, base[col])
        assert c[key]["ne"] == pytest.approx(ne, rel=1e-6)
        # the paired gain over control, computed directly from the files
        want = np.mean([100 * (_ne(y, scores["control"][s]) - ne) / _ne(y, scores["control"][s]) for s in (0, 1, 2)])
        assert c[key]["ne_gain_pct"] == pytest.approx(want, rel=1e-6)
        lo, hi = c[key]["ne_gain_ci95"]
        assert lo <= c[key]["ne_gain_pct"] <= hi
    assert c["oracle"]["ne_gain_pct"] > c["content_item"]["ne_gain_pct"] > c["content"]["ne_gain_pct"] > c["id"]["ne_gain_pct"]
    assert c["oracle"]["ne_gain_pct"] == pytest.approx(rep["oracle_ne_gain"]["point"])
    rows = {r["variant"]: r for r in rep["rows"]}
    for v in ("side", "raw_content", "traditional_sid", "sparse_id"):
        cs = rows[v]["ceiling_share"]
        assert cs["point"] == pytest.approx(rep["ne_gain"][v]["point"] / c["content"]["ne_gain_pct"], rel=1e-9)
        assert cs["ci95"][0] <= cs["point"] <= cs["ci95"][1]
        assert rep["ceiling_share"][v]["point"] == cs["point"]
    assert rows["control"]["ceiling_share"] is None
    # best epochs per seed and the tuned setting
    assert rows["side"]["best_epochs"] == {"0": 2, "1": 3, "2": 2}
    assert rows["side"]["tuned"] == tuned["side"] and rows["raw_content"]["tuned"] is None
    # slices score the ceilings too
    assert "ceiling_content" in rep["slices"]["item_freq"]["buckets"]["head"]["ne"]
    names = [t["target"] for t in rep["targets"]]
    assert any("content ceiling" in n for n in names)
    assert "gain_vs_ceilings.png" in rep["plots"] and (tmp_path / "gain_vs_ceilings.png").is_file()
    md = (tmp_path / "report.md").read_text()
    assert "content-ceiling share [95% CI]" in md and "Ceilings, NE gain over control" in md
    assert "content + item posterior" in md and "## Training protocol" in md
    assert "`lr_x3` (train.embedding_lr=0.03)" in md and "not tuned" in md and "s1: 3" in md
    assert "![NE gain against the ceilings](gain_vs_ceilings.png)" in md


def test_no_ceilings_without_the_columns(tmp_path: Path) -> None:
    """Old predictions (p_true only), or a seed whose files all lack the ceilings: no ceilings."""
    _fabricate(tmp_path, ["control", "side"], [0, 1], oracle=True, world="adsworld", ceilings=True)
    for v in ("control", "side"):  # seed 1 written before the ceilings were carried
        f = tmp_path / "train" / v / "seed1" / "predictions_test.parquet"
        pq.write_table(pq.read_table(f).drop(["p_content", "p_id", "p_content_item"]), f)
    rep = write_report(tmp_path, cfg=ReportConfig(n_boot=50, slice_n_boot=0))
    assert rep["ceilings"] is None and rep["ceiling_share"] is None
    assert rep["oracle_share"]["side"]["point"] is not None  # the oracle still is
    assert {r["variant"]: r for r in rep["rows"]}["side"]["ceiling_share"] is None
    assert "gain_vs_ceilings.png" not in rep["plots"] and not (tmp_path / "gain_vs_ceilings.png").exists()
    md = (tmp_path / "report.md").read_text()
    assert "content-ceiling share" not in md and "Ceilings," not in md and "Oracle (true click" in md
    assert "ceiling_content" not in rep["ne_gain"]
    # a ceiling in only one variant's file of a seed is the seed's (pairing takes it from any file)
    f = tmp_path / "train" / "side" / "seed1" / "predictions_test.parquet"
    t = pq.read_table(f)
    pq.write_table(t.append_column("p_content", pa.array(_rows()["p_content"])), f)
    rep2 = write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=50, slice_n_boot=0))
    assert list(rep2["ceilings"]) == ["content", "oracle"]


def _control_folder(tmp: Path, sparse_wins: bool) -> Path:
    ctrl = tmp / ("ctrl_pass" if sparse_wins else "ctrl_fail")
    ctrl.mkdir()
    noise = {"sparse_id": 0.2, "side": 1.1} if sparse_wins else None
    _fabricate(ctrl, ["control", "sparse_id", "side"], [0, 1], oracle=True, world="adsworld_id_dominant",
               noise=noise)
    write_report(ctrl, plots=False, cfg=ReportConfig(n_boot=100, slice_n_boot=0))
    return ctrl


def _side_targets(rep: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [t for t in rep["targets"] if "SIDE" in t["target"] and "sparse-ID beats SIDE" not in t["target"]
            and not t["target"].startswith("footprint")]


def test_control_world_verdict_passed_failed_missing(tmp_path: Path) -> None:
    cfg = ReportConfig(n_boot=100, slice_n_boot=0)
    # passed: sparse-ID beats SIDE, separated, in the control world
    ctrl = _control_folder(tmp_path, sparse_wins=True)
    own = json.loads((ctrl / "report.json").read_text())["control_world"]
    assert own["verdict"] == "passed" and own["source"] == "this report"
    assert own["sparse_over_side"] > 0 and own["sparse_over_side_ci95"][0] > 0
    assert (ctrl / "report.md").read_text().splitlines()[2].startswith("**Control world verdict: passed** (this world)")
    main = tmp_path / "main_pass"
    main.mkdir()
    _fabricate(main, ALL, [0, 1], oracle=True, world="adsworld", control_world=str(ctrl))
    rep = write_report(main, plots=False, cfg=cfg)
    cw = rep["control_world"]
    assert cw["verdict"] == "passed" and cw["sparse_over_side"] == own["sparse_over_side"]
    assert cw["sparse_over_side_ci95"] == own["sparse_over_side_ci95"] and str(ctrl) in cw["source"]
    assert _side_targets(rep) and all(t["validated"] is True for t in _side_targets(rep))
    md = (main / "report.md").read_text()
    assert md.splitlines()[2].startswith("**Control world verdict: passed**") and "not validated" not in md

    # failed: in this control world SIDE's predictions are the better ones
    bad = _control_folder(tmp_path, sparse_wins=False)
    assert json.loads((bad / "report.json").read_text())["control_world"]["verdict"] == "failed"
    main2 = tmp_path / "main_fail"
    main2.mkdir()
    _fabricate(main2, ALL, [0, 1], oracle=True, world="adsworld", control_world=str(bad))
    rep = write_report(main2, plots=False, cfg=cfg)
    assert rep["control_world"]["verdict"] == "failed" and rep["control_world"]["sparse_over_side"] < 0
    assert all(t["validated"] is False for t in _side_targets(rep))
    md = (main2 / "report.md").read_text()
    first = md.splitlines()[2]
    assert first.startswith("**Control world verdict: failed**") and "**not validated**" in first
    assert "**Not validated**" in md.split("## SIDE vs traditional SID")[1]
    table = md.split("docs/design.md section 8 targets")[1]
    assert table.count("(**not validated**: control world)") == sum(t["met"] is not None for t in _side_targets(rep)) > 0

    # missing: no control world linked, or its report absent
    main3 = tmp_path / "main_none"
    main3.mkdir()
    _fabricate(main3, ["control", "side", "traditional_sid"], [0, 1], oracle=True, world="adsworld")
    rep = write_report(main3, plots=False, cfg=cfg)
    assert rep["control_world"]["verdict"] == "missing" and rep["control_world"]["sparse_over_side"] is None
    assert all(t["validated"] is False for t in _side_targets(rep))
    assert "Control world verdict: missing" in (main3 / "report.md").read_text().splitlines()[2]
    rep = write_report(main3, plots=False, cfg=ReportConfig(n_boot=50, slice_n_boot=0,
                                                            control_world=str(tmp_path / "nope")))
    assert rep["control_world"]["verdict"] == "missing"


def test_movielens_report_is_not_gated(tmp_path: Path) -> None:
    _fabricate(tmp_path, ["control", "side", "traditional_sid"], [0, 1], oracle=False)
    rep = write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=50, slice_n_boot=0))
    assert rep["control_world"]["verdict"] == "missing" and rep["ceilings"] is None
    assert all("validated" not in t for t in rep["targets"])
    assert "not validated" not in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("met,confident,verdict", [(True, True, "passed"), (True, False, "failed"),
                                                   (False, True, "failed"), (False, False, "failed"),
                                                   (None, None, "missing")])
def test_verdict_rule(met: Optional[bool], confident: Optional[bool], verdict: str) -> None:
    line = {"target": "control world (id-only term dominates): sparse-ID beats SIDE", "measured": "x",
            "met": met, "interval": [0.1, 0.3], "confident": confident}
    cfg = ReportConfig()
    assert control_world_verdict("simulated", [line], {"pairs": {}}, cfg, None)["verdict"] == verdict
    assert control_world_verdict("simulated", [], {"pairs": {}}, cfg, None)["verdict"] == "missing"


def test_sequence_pairs_section_and_target(tmp_path: Path) -> None:
    """DIN against DLRM on the same features: the paired gains match the files, the markdown has the
    section, and the simulated world's target line reads DIN over SIDE against DLRM over SIDE."""
    seeds = [0, 1, 2]
    scores = _fabricate(tmp_path, ["control", "sparse_id", "side", "seq_sparse_id", "seq_side"], seeds, oracle=True,
                        world="adsworld")
    rep = write_report(tmp_path, plots=False, cfg=ReportConfig(n_boot=200, slice_n_boot=0))
    y = _rows()["label"]
    for v, r in (("seq_side", "side"), ("seq_sparse_id", "sparse_id"), ("seq_sparse_id", "seq_side")):
        g = rep["pairs"][f"{v}_over_{r}"]
        assert g["point"] == pytest.approx(_paired_gain(y, scores, v, r, seeds), rel=1e-6)
    assert "seq_traditional_sid_over_traditional_sid" not in rep["pairs"]  # not run: not reported
    md = (tmp_path / "report.md").read_text()
    assert "## Sequence models" in md and "| `seq_side` | `side` |" in md and "`seq_raw_content`" not in md
    line = next(t for t in rep["targets"] if t["target"].startswith("sequence models: DIN over SIDE"))
    g = rep["pairs"]["seq_side_over_side"]
    assert line["met"] == (g["point"] > 0) and f"{g['point']:+.3f}" in line["measured"]
    (tmp2 := tmp_path / "no_seq").mkdir()
    _fabricate(tmp2, ["control", "side"], seeds, oracle=True, world="adsworld")
    rep2 = write_report(tmp2, plots=False, cfg=ReportConfig(n_boot=50, slice_n_boot=0))
    assert "## Sequence models" not in (tmp2 / "report.md").read_text()
    assert not any(t["target"].startswith("sequence models") for t in rep2["targets"])
