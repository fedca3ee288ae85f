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
    for name in ("items.parquet", "events.parquet", "impressions.parquet"):
        assert pq.read_table(again / name).equals(pq.read_table(tiny["dir"] / name)), name
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
    assert m["format"] == FORMAT and m["version"] == 1 and m["num_items"] == n
    assert m["config"]["size"] == "tiny" and m["num_users"] == cfg.users.num_users
    assert items["item_id"] == list(range(n))
    schema = pq.read_schema(tiny["dir"] / "items.parquet")
    assert [str(schema.field(c).type) for c in ("item_id", "category", "subcategory", "release_time", "quality")] == \
        ["int64", "int32", "int32", "int64", "float"]  # fmt: skip
    schema = pq.read_schema(tiny["dir"] / "impressions.parquet")
    assert [str(schema.field(c).type) for c in ("user_id", "item_id", "timestamp", "label", "p_true", "split")] == \
        ["int64", "int64", "int64", "float", "float", "int8"]  # fmt: skip
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
    assert idd.preset == "id_dominant" and idd.seed == 4 and idd.catalogue.num_items == 2_000
    assert idd.clicks.w_quality == PRESETS["id_dominant"]["clicks"]["w_quality"] > idd.clicks.w_match
    assert idd.content.text_noise > q.content.text_noise
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
    cfgs = {p: load_world_config("tiny", [f"preset={p}", "users.num_users=20"]) for p in ("default", "id_dominant")}
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
    (out / "manifest.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ArtifactError, match="format"):
        read_manifest(out)


@pytest.mark.slow
def test_worker_processes_give_the_same_world(tiny: Dict[str, Any], tmp_path: Path) -> None:
    generate_world(load_world_config("tiny"), tmp_path / "w2", progress=False, workers=2)
    for name in ("events.parquet", "impressions.parquet"):
        assert pq.read_table(tmp_path / "w2" / name).equals(pq.read_table(tiny["dir"] / name)), name


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
