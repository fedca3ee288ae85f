# pyre-strict
"""The simulated ads world (docs/design.md section 7c): determinism, format, causality, cold
items, the oracle against fitted baselines, popularity skew, config and command line."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings, strategies as st

from torchrec_side.config import ConfigError
from torchrec_side.data.adsworld import (
    _build_catalogue,
    _DayTables,
    _skew,
    auc,
    DAY,
    FORMAT,
    generate_world,
    normalized_entropy,
    read_manifest,
    world_main,
)
from torchrec_side.data.adsworld_config import load_world_config, PRESETS
from torchrec_side.io import ArtifactError


def _load(world: Path) -> Dict[str, Any]:
    return {
        "manifest": read_manifest(world),
        "items": pq.read_table(world / "items.parquet").to_pydict(),
        "events": {k: np.asarray(v) for k, v in pq.read_table(world / "events.parquet").to_pydict().items()},
        "imps": {k: np.asarray(v) for k, v in pq.read_table(world / "impressions.parquet").to_pydict().items()},
        "text": np.load(world / "content" / "text.npy", mmap_mode="r"),
        "image": np.load(world / "content" / "image.npy", mmap_mode="r"),
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    world = tmp_path_factory.mktemp("adsworld") / "tiny"
    generate_world(load_world_config("tiny"), world, progress=False)
    d = _load(world)
    d["dir"] = world
    return d


def test_same_seed_same_world_other_seed_other_world(tiny: Dict[str, Any], tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_world(load_world_config("tiny"), again, progress=False)
    for name in ("items.parquet", "events.parquet", "impressions.parquet"):  # (bytes: p_content_item holds NaN)
        assert (again / name).read_bytes() == (tiny["dir"] / name).read_bytes(), name
    for name in ("text.npy", "image.npy"):
        assert (again / "content" / name).read_bytes() == (tiny["dir"] / "content" / name).read_bytes()
    m0, m1 = read_manifest(tiny["dir"]), read_manifest(again)
    assert m0["oracle"] == m1["oracle"] and m0["skew"] == m1["skew"]
    other = tmp_path / "other"
    generate_world(load_world_config("tiny", ["seed=1"]), other, progress=False)
    assert not pq.read_table(other / "events.parquet").equals(pq.read_table(tiny["dir"] / "events.parquet"))


def test_format_and_orders(tiny: Dict[str, Any]) -> None:
    m, items, ev, im = tiny["manifest"], tiny["items"], tiny["events"], tiny["imps"]
    cfg = load_world_config("tiny")
    n = cfg.catalogue.num_items
    assert m["format"] == FORMAT and m["version"] == 1 and m["num_items"] == n and m["legacy_keys"] == []
    assert m["config"]["size"] == "tiny" and m["num_users"] == cfg.users.num_users
    assert items["item_id"] == list(range(n))
    schema = pq.read_schema(tiny["dir"] / "items.parquet")
    assert [str(schema.field(c).type) for c in ("item_id", "category", "subcategory", "release_time", "quality")] == \
        ["int64", "int32", "int32", "int64", "float"]  # fmt: skip
    schema = pq.read_schema(tiny["dir"] / "impressions.parquet")
    assert [str(schema.field(c).type) for c in ("user_id", "item_id", "timestamp", "label", "p_true", "split",
                                                 "p_content", "p_id", "logit_content", "logit_id")] == \
        ["int64", "int64", "int64", "float", "float", "int8"] + ["float"] * 4  # fmt: skip
    assert tiny["text"].shape == (n, 384) and tiny["text"].dtype == np.float16
    assert tiny["image"].shape == (n, 128) and tiny["image"].dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(tiny["text"].astype(np.float32), axis=1), 1.0, atol=2e-3)
    # subcategories sit below their category
    cat, sub = np.asarray(items["category"]), np.asarray(items["subcategory"])
    assert np.array_equal(sub // cfg.catalogue.subcategories_per_category, cat)
    assert len(ev["user_id"]) == m["num_events"]
    key = ev["user_id"] * (1 << 40) + ev["timestamp"]
    assert np.all(np.diff(key) >= 0), "events sorted by (user_id, timestamp)"
    assert np.all(np.diff(im["timestamp"]) >= 0), "impressions sorted by timestamp"
    tv, tt = m["split_times"]["val"], m["split_times"]["test"]
    expect = np.where(im["timestamp"] < tv, 0, np.where(im["timestamp"] < tt, 1, 2))
    assert np.array_equal(im["split"], expect)
    assert {k: int((im["split"] == i).sum()) for i, k in enumerate(("train", "val", "test"))} == m["impressions"]
    assert min(m["impressions"].values()) > 0
    assert set(np.unique(im["label"]).tolist()) == {0.0, 1.0}
    assert np.all((im["p_true"] > 0) & (im["p_true"] < 1))
    assert np.all(np.asarray(items["release_time"]) % DAY == 0)


def test_causality_every_item_released_before_use(tiny: Dict[str, Any]) -> None:
    release = np.asarray(tiny["items"]["release_time"])
    for rows in (tiny["events"], tiny["imps"]):
        assert np.all(release[rows["item_id"]] <= rows["timestamp"])
    # impressions all have some history (they start after the warm-up)
    first_event = np.full(tiny["manifest"]["num_users"], np.iinfo(np.int64).max)
    np.minimum.at(first_event, tiny["events"]["user_id"], tiny["events"]["timestamp"])
    has_history = first_event[tiny["imps"]["user_id"]] < tiny["imps"]["timestamp"]
    assert has_history.mean() > 0.95


def test_cold_items_never_in_training(tiny: Dict[str, Any]) -> None:
    m, ev, im = tiny["manifest"], tiny["events"], tiny["imps"]
    tt = m["split_times"]["test"]
    cold = np.asarray(tiny["items"]["release_time"]) >= tt
    assert cold.sum() == m["cold"]["num_items"] > 0
    before_test_ev = ev["item_id"][ev["timestamp"] < tt]
    assert not cold[before_test_ev].any()
    assert not cold[im["item_id"][im["split"] < 2]].any()
    assert m["cold"]["in_train_events"] == 0 and m["cold"]["in_train_impressions"] == 0
    # ... yet they are served in the test window (fresh items get a popularity boost)
    test_cold = cold[im["item_id"][im["split"] == 2]]
    assert test_cold.any()
    assert test_cold.mean() == pytest.approx(m["cold"]["test_impression_share"])


def test_oracle_matches_manifest_and_beats_constant(tiny: Dict[str, Any]) -> None:
    m, im = tiny["manifest"], tiny["imps"]
    base = load_world_config("tiny").clicks.base_rate
    assert abs(float(im["p_true"].mean()) - base) < 0.02  # bias calibrated on a separate pilot
    for code, name in enumerate(("train", "val", "test")):
        sel = im["split"] == code
        ref = normalized_entropy(im["label"][sel], im["p_true"][sel])
        assert m["oracle"][name]["ne"] == pytest.approx(ref)
        assert m["oracle"][name]["ne"] < m["oracle"][name]["constant_ne"]
        assert m["oracle"][name]["auc"] > 0.7


def _features(d: Dict[str, Any], idx: np.ndarray) -> torch.Tensor:
    """Target item's content and category one-hot, plus the user's mean history content."""
    ev, im = d["events"], d["imps"]
    text = torch.from_numpy(np.asarray(d["text"], dtype=np.float32))
    ncat = int(max(d["items"]["category"])) + 1
    cat = torch.nn.functional.one_hot(torch.tensor(d["items"]["category"], dtype=torch.int64), ncat).float()
    items = torch.from_numpy(im["item_id"][idx])
    # mean text of the user's events strictly before the impression, from prefix sums over the
    # (user, timestamp)-sorted log
    key = ev["user_id"] * (1 << 40) + ev["timestamp"]
    users, ts = im["user_id"][idx], im["timestamp"][idx]
    end = np.searchsorted(key, users * (1 << 40) + ts, side="left")
    start = np.searchsorted(key, users * (1 << 40), side="left")
    prefix = torch.cat([torch.zeros(1, text.shape[1], dtype=torch.float64), text[torch.from_numpy(ev["item_id"])].double().cumsum(0)])
    count = torch.from_numpy(end - start).clamp(min=1).double()[:, None]
    hist = ((prefix[torch.from_numpy(end)] - prefix[torch.from_numpy(start)]) / count).float()
    tgt = text[items]
    return torch.cat([tgt, cat[items], hist * tgt], dim=1)


def test_oracle_ne_below_fitted_logistic_regression(tiny: Dict[str, Any]) -> None:
    im = tiny["imps"]
    tr, te = np.flatnonzero(im["split"] == 0), np.flatnonzero(im["split"] == 2)
    x_tr, x_te = _features(tiny, tr), _features(tiny, te)
    y_tr = torch.from_numpy(im["label"][tr])
    torch.manual_seed(0)
    lin = torch.nn.Linear(x_tr.shape[1], 1)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=60, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(lin(x_tr).squeeze(1), y_tr)
        loss = loss + 1e-3 * lin.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        p_lr = torch.sigmoid(lin(x_te).squeeze(1)).numpy()
    y_te = im["label"][te]
    ne_lr = normalized_entropy(y_te, p_lr)
    ne_const = normalized_entropy(y_te, np.full(len(te), float(y_tr.mean())))
    ne_oracle = tiny["manifest"]["oracle"]["test"]["ne"]
    assert ne_lr < ne_const, "the features carry signal (the world is learnable)"
    assert ne_oracle < ne_lr - 0.02, (ne_oracle, ne_lr, ne_const)


def test_popularity_heavy_tailed(tiny: Dict[str, Any]) -> None:
    # the base weights hit Meta's two shares (Zheng et al., arXiv 2504.02137) at quick size
    cat = _build_catalogue(load_world_config("quick", ["users.num_users=1"]))
    s = _skew(cat.weight)
    assert s["top_0.1pct_share"] == pytest.approx(0.25, abs=0.01)
    assert s["bottom_94.4pct_share"] == pytest.approx(0.25, abs=0.01)
    # realized impressions of the tiny world: the top 1% of items take many times their share
    n = tiny["manifest"]["num_items"]
    counts = np.sort(np.bincount(tiny["imps"]["item_id"], minlength=n))[::-1]
    top1 = counts[: n // 100].sum() / counts.sum()
    assert top1 > 0.15
    assert (counts == 0).mean() > 0.2  # a long tail of items never shown in a tiny world
    # event logs: heavy-tailed lengths around the configured median
    lengths = np.bincount(tiny["events"]["user_id"])
    med = load_world_config("tiny").users.median_events
    assert 0.7 * med < np.median(lengths) < 1.3 * med
    assert np.percentile(lengths, 99) > 4 * np.median(lengths)


def test_day_tables_match_plain_reference() -> None:
    cfg = load_world_config("tiny", ["catalogue.num_items=300", "catalogue.num_categories=7"])
    cat = _build_catalogue(cfg)
    tables = _DayTables(cat, cfg)
    c = cfg.catalogue
    for d in (0, 17, cfg.timeline.back_catalogue_days + 5, cfg.timeline.back_catalogue_days + cfg.timeline.log_days - 1):
        cs, lo, hi = tables.day(d)
        for k in range(c.num_categories):
            total = 0.0
            for i in range(c.num_items):
                if cat.category[i] == k and cat.release_day[i] <= d:
                    age = d - cat.release_day[i]
                    total += cat.weight[i] * (c.freshness_floor + (1 - c.freshness_floor) * 0.5 ** (age / c.freshness_half_life_days))
            assert hi[k] - lo[k] == pytest.approx(total, rel=1e-9)
            assert total > 0  # every category has an item released on day 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=30))
def test_auc_and_ne_match_plain_reference(rows: Any) -> None:
    y = np.array([float(a) for a, _ in rows])
    s = np.array([float(b) for _, b in rows])
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        assert math.isnan(auc(y, s))
        return
    ref = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg)) / (len(pos) * len(neg))
    assert auc(y, s) == pytest.approx(ref)
    p = (s + 1) / 7.0
    br = y.mean()
    ll = -np.mean([yy * math.log(pp) + (1 - yy) * math.log(1 - pp) for yy, pp in zip(y, p)])
    assert normalized_entropy(y, p) == pytest.approx(ll / -(br * math.log(br) + (1 - br) * math.log(1 - br)))


def test_config_sizes_presets_overrides_and_errors() -> None:
    q = load_world_config()
    assert q.size == "quick" and q.catalogue.num_items == 100_000 and q.users.median_events == 200
    f = load_world_config("full")
    assert f.catalogue.num_items == 1_000_000 and f.users.median_events == 1_000 and f.users.max_events == 10_000
    idd = load_world_config("tiny", ["preset=id_dominant", "seed=4"])
    assert idd.preset == "id_dominant" and idd.seed == 4
    assert idd.catalogue.num_items == PRESETS["id_dominant"]["catalogue"]["num_items"]  # the preset sets it
    assert idd.clicks.w_collab == PRESETS["id_dominant"]["clicks"]["w_collab"] > 2 * max(idd.clicks.w_match,
                                                                                       idd.clicks.w_quality)
    assert idd.content.text_noise > q.content.text_noise
    assert q.clicks.interest_pooling == "softmax" and q.clicks.w_collab > 0 and q.collab.rank <= 16
    with pytest.raises(ConfigError, match="interest_pooling"):
        load_world_config("tiny", ["clicks.interest_pooling=max"])
    with pytest.raises(ConfigError, match="collab.rank"):
        load_world_config("tiny", ["collab.rank=17"])
    assert load_world_config("quick", ["size=tiny"]).catalogue.num_items == 2_000
    assert load_world_config("tiny", ["clicks.w_quality=3"]).clicks.w_quality == 3.0
    with pytest.raises(ConfigError, match="clicks.w_quality"):
        load_world_config("tiny", ["clicks.w_qualty=3"])
    with pytest.raises(ConfigError, match="base_rate"):
        load_world_config("tiny", ["clicks.base_rate=1.5"])
    with pytest.raises(ConfigError, match="preset"):
        load_world_config("tiny", ["preset=nope"])
    with pytest.raises(ConfigError, match="size"):
        load_world_config("huge")
    with pytest.raises(ConfigError, match="text_slice"):
        load_world_config("tiny", ["content.text_slice=[0,40]"])


def test_id_dominant_content_carries_less(tmp_path: Path) -> None:
    cfgs = {p: load_world_config("tiny", [f"preset={p}", "users.num_users=20", "catalogue.num_items=2000",
                                          "catalogue.num_categories=20"]) for p in ("default", "id_dominant")}
    r2 = {}
    for p, cfg in cfgs.items():
        generate_world(cfg, tmp_path / p, progress=False)
        text = np.load(tmp_path / p / "content" / "text.npy").astype(np.float64)
        attrs = _build_catalogue(cfg).attrs.astype(np.float64)
        lo, hi = cfg.content.text_slice
        x = np.hstack([text, np.ones((len(text), 1))])
        tr, te = slice(0, 1500), slice(1500, None)
        w = np.linalg.solve(x[tr].T @ x[tr] + 1.0 * np.eye(x.shape[1]), x[tr].T @ attrs[tr, lo:hi])
        err = ((x[te] @ w - attrs[te, lo:hi]) ** 2).sum() / ((attrs[te, lo:hi] - attrs[tr, lo:hi].mean(0)) ** 2).sum()
        r2[p] = 1 - err
    assert r2["default"] > 0.8 and r2["id_dominant"] < 0.1, r2


def test_cli_and_atomic_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from torchrec_side.cli import main

    out = tmp_path / "w"
    assert main(["world", "--size", "tiny", "--out", str(out), "--no-progress", "users.num_users=30"]) == 0
    assert "oracle NE" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["num_users"] == 30 and m["config"]["users"]["num_users"] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]  # no temporary folder left behind
    assert world_main(["--size", "tiny", "--print-config", "preset=id_dominant"]) == 0
    assert "id_dominant" in capsys.readouterr().out
    assert world_main(["--size", "tiny", "--out", str(out), "users.nope=1"]) == 2
    assert "users.nope" in capsys.readouterr().err
    mine = tmp_path / "mine"  # issue 17 (severe): --out at a folder it did not write is refused, untouched
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["world", "--size", "tiny", "--out", str(mine), "--no-progress", "users.num_users=30"]) == 2
    assert "no manifest.json" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep"
    assert sorted(q.name for q in mine.iterdir()) == ["notes.txt"]
    (out / "manifest.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ArtifactError, match="format"):
        read_manifest(out)


@pytest.mark.slow
def test_a_world_too_large_is_refused_before_anything_is_allocated(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    from torchrec_side.data import adsworld

    huge = load_world_config("tiny", ["catalogue.num_items=100000000000"])
    with pytest.raises(ConfigError, match=r"too large for this machine.*catalogue.num_items=100,000,000,000"):
        adsworld.generate_world(huge, tmp_path / "w", progress=False)
    # the full world's estimate covers what it measured (1.3 GB peak memory, 1.1 GB on disk)
    memory, disk = adsworld.world_footprint(load_world_config("full", ["users.num_users=5000"]))
    assert 1.3e9 <= memory <= 4e9 and 1.1e9 <= disk <= 2e9
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9, 10**6))
    with pytest.raises(ConfigError, match="too large for the disk"):
        adsworld.generate_world(load_world_config("tiny"), tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()
    assert adsworld.world_main(["--size", "tiny", "--out", str(tmp_path / "w"), "catalogue.num_items=100000000000"]) == 2


def test_worker_processes_give_the_same_world(tiny: Dict[str, Any], tmp_path: Path) -> None:
    generate_world(load_world_config("tiny"), tmp_path / "w2", progress=False, workers=2)
    for name in ("events.parquet", "impressions.parquet", "manifest.json"):
        a, b = (tmp_path / "w2" / name).read_bytes(), (tiny["dir"] / name).read_bytes()
        if name == "manifest.json":  # times and memory differ; everything else is the same
            a, b = (json.loads(x) for x in (a, b))
            for d in (a, b):
                for k in ("seconds", "cpu_seconds", "peak_rss_mb", "peak_rss_worker_mb"):
                    d.pop(k)
        assert a == b, name


def test_target_in_history_matches_a_plain_loop(tiny: Dict[str, Any]) -> None:
    import pyarrow.parquet as pq

    from torchrec_side.data.adsworld import target_in_history

    ev = pq.read_table(tiny["dir"] / "events.parquet").to_pylist()
    im = [r for r in pq.read_table(tiny["dir"] / "impressions.parquet").to_pylist() if r["split"] == 2]
    by_user: Dict[int, list] = {}
    for r in sorted(ev, key=lambda r: (r["user_id"], r["timestamp"])):
        by_user.setdefault(r["user_id"], []).append(r)
    counts = []
    for r in im:
        before = [e["item_id"] for e in by_user.get(r["user_id"], []) if e["timestamp"] < r["timestamp"]][-7:]
        counts.append(before.count(r["item_id"]))
    got = target_in_history(tiny["dir"], "test", max_history=7, sample=0)
    hit = [c > 0 for c in counts]
    assert got["impressions"] == len(im) > 0
    assert got["share"] == pytest.approx(sum(hit) / len(hit))
    assert got["mean_count_when_in"] == pytest.approx(sum(c for c in counts if c) / max(sum(hit), 1))
    with pytest.raises(ValueError, match="split"):
        target_in_history(tiny["dir"], "nope")


def test_fresh_impressions_repeat_no_earlier_event(tmp_path: Path, tiny: Dict[str, Any]) -> None:
    from torchrec_side.data.adsworld import target_in_history

    cfg = load_world_config("tiny", ["users.fresh_impressions=true"])
    generate_world(cfg, tmp_path / "fresh", progress=False)
    for split in ("train", "val", "test"):
        assert target_in_history(tmp_path / "fresh", split, max_history=10**9, sample=0)["share"] == 0.0
    assert target_in_history(tiny["dir"], "test", max_history=10**9, sample=0)["share"] > 0.1  # the default repeats
    generate_world(cfg, tmp_path / "again", progress=False)
    for f in ("impressions.parquet", "events.parquet"):
        assert (tmp_path / "fresh" / f).read_bytes() == (tmp_path / "again" / f).read_bytes()


# --- issue 15: the collaborative term, multi-interest users, exact ceilings, the positive control ---


def _ridge_r2(x: np.ndarray, y: np.ndarray, split: int, lam: float = 1.0) -> float:
    """Held-out R^2 of a ridge probe ``x -> y`` trained on the first ``split`` rows."""
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.solve(x[:split].T @ x[:split] + lam * np.eye(x.shape[1]), x[:split].T @ y[:split])
    err = ((x[split:] @ w - y[split:]) ** 2).sum()
    return float(1.0 - err / ((y[split:] - y[:split].mean(0)) ** 2).sum())


def test_collab_term_independent_of_every_content_view(tiny: Dict[str, Any]) -> None:
    cfg = load_world_config("tiny")
    cat = _build_catalogue(cfg)
    g = np.load(tiny["dir"] / "hidden" / "item_collab.npy")
    assert g.shape == (cfg.catalogue.num_items, cfg.collab.rank) and np.array_equal(g, cat.collab)
    f = np.load(tiny["dir"] / "hidden" / "user_collab.npy")
    assert f.shape == (cfg.users.num_users, cfg.collab.rank)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), math.sqrt(cfg.collab.rank), rtol=1e-5)
    views = {"text": np.asarray(tiny["text"], np.float64), "image": np.asarray(tiny["image"], np.float64)}
    views["both"] = np.hstack([views["text"], views["image"]])
    lo, hi = cfg.content.text_slice
    # the probe works: it reads the attributes the text view sees ...
    assert _ridge_r2(views["text"], cat.attrs[:, lo:hi].astype(np.float64), 1500) > 0.8
    for name, x in views.items():  # ... and finds nothing of the item factors in any view
        r2 = _ridge_r2(x, g.astype(np.float64), 1500, lam=10.0)
        assert r2 < 0.02, (name, r2)
    # nor in the category labels or the quality
    onehot = np.eye(cfg.catalogue.num_categories)[cat.category]
    assert _ridge_r2(np.hstack([onehot, cat.quality[:, None]]), g.astype(np.float64), 1500) < 0.02


def _posterior_mc(bias: float, known: np.ndarray, draws: np.ndarray, tau: float, logr: float, dup: int) -> float:
    """E[sigmoid(bias + known + V) | pick] by Monte Carlo: V from ``draws`` weighted by the pick's
    probability ``dup e^(tau s) / (dup e^(tau s) + e^logr)``."""
    s = known + draws
    w = 1.0 / (1.0 + np.exp(logr - tau * s - math.log(dup)))
    return float((w / (1.0 + np.exp(-(bias + s)))).sum() / w.sum())


def test_stored_ceilings_match_brute_force(tiny: Dict[str, Any]) -> None:
    m, im = tiny["manifest"], tiny["imps"]
    cfg = load_world_config("tiny")
    cal, shift = m["calibration"], m["ceilings"]["prior_shift"]
    ck = cfg.clicks
    p = 1.0 / (1.0 + np.exp(-(cal["bias"] + im["logit_content"].astype(np.float64) + im["logit_id"])))
    np.testing.assert_allclose(im["p_true"], p, rtol=2e-5)
    rng = np.random.default_rng(0)
    sd_x = math.sqrt(ck.w_quality**2 + ck.w_collab**2)
    x_draws = shift["id_part"] + sd_x * rng.standard_normal(400_000)
    m_draws = shift["content_part"] + ck.w_match * np.asarray(cal["match_nodes"])[rng.integers(0, 64, 400_000)]
    rows = rng.choice(np.flatnonzero(im["split"] == 2), 40, replace=False)
    rows = np.append(rows, np.flatnonzero(im["pick_dup"] > 2)[:5])  # shortlists with copies of the item
    for r in rows:
        args = (ck.targeting, float(im["pick_logr"][r]), int(im["pick_dup"][r]))
        want_c = _posterior_mc(cal["bias"], float(im["logit_content"][r]), x_draws, *args)
        want_i = _posterior_mc(cal["bias"], float(im["logit_id"][r]), m_draws, *args)
        assert im["p_content"][r] == pytest.approx(want_c, rel=0.01, abs=2e-4), r
        assert im["p_id"][r] == pytest.approx(want_i, rel=0.01, abs=2e-4), r
    for split in ("val", "test"):
        sel = im["split"] == ("train", "val", "test").index(split)
        for name, col in (("oracle", "p_true"), ("content", "p_content"), ("id", "p_id")):
            assert m["ceilings"][split][name]["ne"] == pytest.approx(normalized_entropy(im["label"][sel], im[col][sel]))
        rec = m["ceilings"][split]
        assert rec["oracle"]["ne"] < min(rec["content"]["ne"], rec["id"]["ne"]) < rec["constant_ne"]


def test_content_ceiling_is_calibrated_given_the_content_part(tmp_path: Path) -> None:
    """The tower property E[p_true | m, shortlist] = p_content, checked per quintile of m on a world
    whose catalogue is large and unskewed (so the realized item terms follow their prior); the same
    quadrature without the ad system's pick tilt is off (what the check can catch)."""
    from torchrec_side.data.adsworld import _Calibration, ceilings

    cfg = load_world_config("tiny", ["catalogue.popularity_zipf=0", "catalogue.num_items=20000", "users.num_users=600"])
    generate_world(cfg, tmp_path / "w", progress=False)
    im = {k: np.asarray(v) for k, v in pq.read_table(tmp_path / "w" / "impressions.parquet").to_pydict().items()}
    man = read_manifest(tmp_path / "w")
    assert abs(man["ceilings"]["prior_shift"]["id_part"]) < 0.05
    cal = _Calibration(bias=man["calibration"]["bias"], match_nodes=man["calibration"]["match_nodes"])
    untilted_cfg = load_world_config("tiny", ["clicks.targeting=0"])
    untilted, _ = ceilings(untilted_cfg, cal, im["logit_content"], im["logit_id"],
                           im["pick_logr"].astype(np.float64), im["pick_dup"])  # fmt: skip
    q = np.digitize(im["logit_content"], np.quantile(im["logit_content"], [0.2, 0.4, 0.6, 0.8]))
    for k in range(5):
        sel = q == k
        gap = float((im["p_true"][sel] - im["p_content"][sel]).mean())
        assert abs(gap) < 0.1 * float(im["p_true"][sel].mean()) + 0.002, (k, gap)
    top = q == 4
    assert float((im["p_true"][top] - untilted[top]).mean()) > 0.2 * float(im["p_true"][top].mean())


def test_control_preset_is_dense_and_id_dominated(tmp_path: Path) -> None:
    # the main job's control world: 3,000 users (tiny size: shorter logs, the same impression density)
    cfg = load_world_config("tiny", ["preset=id_dominant", "users.num_users=3000"])
    m = generate_world(cfg, tmp_path / "ctrl", progress=False)
    assert m["num_items"] == PRESETS["id_dominant"]["catalogue"]["num_items"]
    assert m["train_impressions_per_item"]["mean"] >= 1000, m["train_impressions_per_item"]
    imps = pq.read_table(tmp_path / "ctrl" / "impressions.parquet", columns=["item_id", "split"]).to_pydict()
    train = np.asarray(imps["item_id"])[np.asarray(imps["split"]) == 0]
    assert len(train) / m["num_items"] == pytest.approx(m["train_impressions_per_item"]["mean"])
    c = m["ceilings"]["test"]
    # the id-only part carries most of the signal: its ceiling gets most of the oracle's gain
    assert c["id"]["oracle_share"] > 0.6 > 0.25 > c["content"]["oracle_share"], c


def test_soft_max_pool_matches_plain_reference() -> None:
    from torchrec_side.data.adsworld import soft_max_pool

    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(3), size=5)
    z = rng.standard_normal((5, 3, 4)).astype(np.float32)
    for t in (0.05, 0.25, 1.0):
        got = soft_max_pool(pi, z, t)
        for r, k in itertools.product(range(5), range(4)):
            ref = t * math.log(sum(pi[r, j] * math.exp(z[r, j, k] / t) for j in range(3)))
            assert got[r, k] == pytest.approx(ref, rel=1e-4, abs=1e-4)
    # small T: the best component; large T: the mixture mean (mean pooling)
    np.testing.assert_allclose(soft_max_pool(pi, z, 1e-3), z.max(axis=1), atol=0.02)
    np.testing.assert_allclose(soft_max_pool(pi, z, 1e3), np.einsum("rj,rjm->rm", pi, z), atol=0.01)


def _own_component_match(world: Path, cfg: Any, max_weight: float = 0.25) -> float:
    """How much better an event's item matches the user's interest component of its category than
    that category's average item does (the pick's selection strength inside the category), over
    events whose component had a mixture weight below ``max_weight`` at the event's time (users of
    the first chunk; explore events left out). Mean pooling weighs a minor component's taste by its
    small weight in the pick; with each event following its own component, that taste decides."""
    from torchrec_side.data.adsworld import _make_users, _rng, _times

    cat = _build_catalogue(cfg)
    n = min(cfg.chunk_users, cfg.users.num_users)
    users = _make_users(cfg, cat, n, _rng(cfg.seed, 2, 0), _rng(cfg.seed, 7, 0))
    ev = pq.read_table(world / "events.parquet").to_pydict()
    eu, ei, et = (np.asarray(ev[c]) for c in ("user_id", "item_id", "timestamp"))
    keep = eu < n
    eu, ei, et = eu[keep], ei[keep], et[keep]
    t = _times(cfg)
    ang = (cfg.users.interest_drift * (et - t["log_start"]) / (t["log_end"] - t["log_start"]))[:, None]
    lam = np.cos(ang) * users.lam0[eu] + np.sin(ang) * users.lam1[eu]
    pi = np.exp(lam - lam.max(axis=1, keepdims=True))
    pi /= pi.sum(axis=1, keepdims=True)
    own = users.cats[eu] == cat.category[ei][:, None]
    sel = own.any(axis=1) & ((pi * own).sum(axis=1) < max_weight)
    eu, ei, j = eu[sel], ei[sel], own[sel].argmax(axis=1)
    nc = cfg.catalogue.num_categories
    cat_mean = np.stack([np.bincount(cat.category, weights=cat.attrs[:, d], minlength=nc) for d in
                         range(cat.attrs.shape[1])], axis=1) / np.bincount(cat.category, minlength=nc)[:, None]  # fmt: skip
    taste = users.taste[eu, j]
    return float(np.einsum("ed,ed->e", taste, cat.attrs[ei] - cat_mean[cat.category[ei]]).mean())


def test_softmax_pooling_differs_from_mean_and_events_follow_interests(tmp_path: Path) -> None:
    cfgs = {p: load_world_config("tiny", [f"clicks.interest_pooling={p}", "users.num_users=100"])
            for p in ("mean", "softmax")}  # fmt: skip
    gaps = {}
    for p, cfg in cfgs.items():
        generate_world(cfg, tmp_path / p, progress=False)
        gaps[p] = _own_component_match(tmp_path / p, cfg)
    a = pq.read_table(tmp_path / "mean" / "impressions.parquet").column("p_true").to_numpy()
    b = pq.read_table(tmp_path / "softmax" / "impressions.parquet").column("p_true").to_numpy()
    assert len(a) != len(b) or not np.allclose(a, b)
    # events follow the interest they were drawn from: with softmax pooling even a minor component's
    # taste selects the event item inside its category; mean pooling dilutes it by its small weight
    assert gaps["softmax"] > max(3 * gaps["mean"], 0.02), gaps


def test_old_world_folders_read_as_generated(tiny: Dict[str, Any], tmp_path: Path) -> None:
    from torchrec_side.config import load_config
    from torchrec_side.data.adsworld_config import AdsWorldConfig

    old = tmp_path / "old"
    old.mkdir()
    m = json.loads((tiny["dir"] / "manifest.json").read_text())
    del m["config"]["clicks"]["w_collab"], m["config"]["clicks"]["interest_pooling"], m["config"]["collab"]
    (old / "manifest.json").write_text(json.dumps(m))
    got = read_manifest(old)
    assert got["config"]["clicks"]["w_collab"] == 0.0 and got["config"]["clicks"]["interest_pooling"] == "mean"
    assert got["legacy_keys"] == ["clicks.interest_pooling", "clicks.w_collab", "collab.rank"]
    cfg = load_config(AdsWorldConfig, None, [], base=got["config"])
    assert cfg.clicks.w_collab == 0.0 and cfg.clicks.w_quality == m["config"]["clicks"]["w_quality"]
    assert read_manifest(tiny["dir"])["config"]["clicks"]["w_collab"] == load_world_config("tiny").clicks.w_collab


def test_tokenizer_fits_only_items_released_before_validation(tiny: Dict[str, Any]) -> None:
    import dataclasses

    from torchrec_side.tokenizer import CollectionConfig, FusionModelConfig, TrainConfig, train_tokenizer
    from torchrec_side.tokenizer.config import BottleneckConfig
    from torchrec_side.tokenizer.data import load_world_items, make_synthetic_items, world_fit_mask

    mask = world_fit_mask(str(tiny["dir"]))
    release = np.asarray(tiny["items"]["release_time"])
    assert np.array_equal(mask.numpy(), release < tiny["manifest"]["split_times"]["val"])
    assert 0 < int((~mask).sum()) < len(mask)  # new items exist, and are left out of the fit
    items = load_world_items(str(tiny["dir"]), ["image"])
    assert items.fit_mask is not None and torch.equal(items.fit_mask, mask) and len(items) == len(mask)
    assert torch.equal(items.subset(torch.arange(10)).fit_mask, mask[:10])
    # the trainer fits (here: the standardize normalizer) on the allowed items only
    data = make_synthetic_items(num_items=200, dims={"a": 8}, seed=0)
    allowed = torch.arange(200) < 120
    data.collections["a"][~allowed] += 50.0  # items outside the fit would move the statistics
    data = dataclasses.replace(data, fit_mask=allowed)
    mcfg = FusionModelConfig(collections=[CollectionConfig(name="a", dim=0, proj_dim=8, decoder_hidden=[8],
                                                           normalize="standardize", loss="mse")],
                             targets=[], latent_dim=4, encoder_hidden=[8],
                             bottleneck=BottleneckConfig(kind="dpca", radices=[3] * 4))  # fmt: skip
    res = train_tokenizer(mcfg, TrainConfig(epochs=1, warmup_epochs=0, batch_size=64, val_fraction=0.2, patience=0,
                                            device="cpu", progress=False, seed=0), data)  # fmt: skip
    mean = res.model.normalizers["a"].mean
    assert float(mean.max()) < 10.0  # the +50 rows were not seen
    assert float(mean.max()) == pytest.approx(float(data.collections["a"][allowed].mean(0).max()), abs=0.5)
    assert res.model.tokenize({"a": data.collections["a"]}).shape[0] == 200  # every item is still encoded


def test_item_posterior_ceiling_matches_a_fine_grid(tiny: Dict[str, Any]) -> None:
    """``p_content_item`` of some test impressions against a plain computation on a 1,201-point
    quality grid and 96 Gauss-Hermite nodes for the collaborative term; and it uses what it learns."""
    m, im = tiny["manifest"], tiny["imps"]
    ck = load_world_config("tiny").clicks
    bias, tau = m["calibration"]["bias"], ck.targeting
    q = np.linspace(-6, 6, 1201)
    gc, wc = np.polynomial.hermite_e.hermegauss(96)
    c = ck.w_collab * gc
    wc = wc / wc.sum()

    def sig(z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    def pick(s: np.ndarray, r: int) -> np.ndarray:
        return sig(tau * s + math.log(int(im["pick_dup"][r])) - float(im["pick_logr"][r]))

    train = im["split"] == 0
    counts = np.bincount(im["item_id"][train], minlength=m["num_items"])
    test = np.flatnonzero((im["split"] == 2) & (counts[im["item_id"]] >= 1) & (counts[im["item_id"]] <= 12))
    rows = np.random.default_rng(0).choice(test, 12, replace=False)
    for r in rows:
        logpost = -0.5 * q**2
        for j in np.flatnonzero(train & (im["item_id"] == im["item_id"][r])):
            s = float(im["logit_content"][j]) + ck.w_quality * q[:, None] + c[None, :]  # [Q, C]
            w = wc * pick(s, j)
            py = sig(bias + s) if im["label"][j] == 1 else 1 - sig(bias + s)
            logpost += np.log((w * py).sum(1) / w.sum(1))
        s = float(im["logit_content"][r]) + ck.w_quality * q[:, None] + c[None, :]
        w = np.exp(logpost - logpost.max())[:, None] * wc * pick(s, r)
        want = float((w * sig(bias + s)).sum() / w.sum())
        assert im["p_content_item"][r] == pytest.approx(want, rel=0.02, abs=5e-4), (r, want)
    assert np.isnan(im["p_content_item"][train]).all() and not np.isnan(im["p_content_item"][~train]).any()
    rec = m["ceilings"]["test"]
    assert rec["oracle"]["ne"] < rec["content_item"]["ne"] < rec["content"]["ne"]
