# pyre-strict
"""Slices: the head/torso/tail/cold cuts and per-slice NE / AUC / gains against plain loops."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrec_side.eval.predictions import SeedPredictions
from torchrec_side.eval.slices import (
    SliceConfig,
    frequency_bucket,
    frequency_cuts,
    history_bucket,
    history_labels,
    slice_report,
)
from torchrec_side.eval.stats import auc, normalized_entropy


def _cuts_loop(counts: List[int], head: float, torso: float) -> Tuple[int, int]:
    c = sorted([x for x in counts if x > 0], reverse=True)
    if not c:
        return 1, 1
    total = float(sum(c))
    acc = 0.0
    head_min: Optional[int] = None
    torso_min: Optional[int] = None
    for x in c:
        acc += x
        if head_min is None and acc / total >= head - 1e-12:
            head_min = x
        if torso_min is None and acc / total >= head + torso - 1e-12:
            torso_min = x
    assert head_min is not None and torso_min is not None
    return head_min, min(torso_min, head_min)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 200), min_size=1, max_size=50))
def test_frequency_cuts_match_plain_loop(counts: List[int]) -> None:
    assert frequency_cuts(np.array(counts)) == _cuts_loop(counts, 0.5, 0.3)


def test_frequency_buckets_by_share_of_traffic() -> None:
    counts = np.array([50, 30, 10, 5, 5, 0])
    h, t = frequency_cuts(counts)
    assert (h, t) == (50, 30)
    assert frequency_bucket(counts, h, t).tolist() == ["head", "torso", "tail", "tail", "tail", "cold"]
    # ties fall on the same side of a cut
    h2, t2 = frequency_cuts(np.array([10, 10, 10, 10]))
    assert frequency_bucket(np.array([10, 10, 10, 10]), h2, t2).tolist() == ["head"] * 4


def test_history_buckets() -> None:
    assert history_labels((1, 10, 100, 1000)) == ["0", "1-9", "10-99", "100-999", "1000+"]
    got = history_bucket(np.array([0, 1, 9, 10, 99, 100, 999, 1000, 5000]))
    assert got.tolist() == ["0", "1-9", "1-9", "10-99", "10-99", "100-999", "100-999", "1000+", "1000+"]
    with pytest.raises(ValueError, match="hist_edges"):
        SliceConfig(hist_edges=(10, 5))
    with pytest.raises(ValueError, match="head_share"):
        SliceConfig(head_share=0.8, torso_share=0.3)


def _fake(seed: int, n: int = 600, oracle: bool = True) -> SeedPredictions:
    rng = np.random.default_rng(100)  # the same rows for every seed (same test split)
    uid = rng.integers(0, 40, n)
    item = rng.integers(0, 60, n)
    freq_of_item = np.where(np.arange(60) < 5, 0, rng.zipf(1.5, 60) * 3)
    p = rng.uniform(0.05, 0.9, n)
    y = (rng.random(n) < p).astype(float)
    r = np.random.default_rng(seed)
    ctrl = np.clip(p + r.normal(0, 0.25, n), 0.01, 0.99)
    side = np.clip(p + r.normal(0, 0.15, n), 0.01, 0.99)
    raw = np.clip(p + r.normal(0, 0.2, n), 0.01, 0.99)
    return SeedPredictions(seed=seed, user_id=uid, item_id=item, label=y, hist_len=rng.integers(0, 1500, n),
                           item_train_freq=freq_of_item[item], p_true=p if oracle else None,
                           scores={"control": ctrl, "side": side, "raw_content": raw})


def test_slice_numbers_match_plain_loop() -> None:
    per = {s: _fake(s) for s in (0, 1, 2)}
    rep = slice_report(per, ["control", "side", "raw_content"], cfg=SliceConfig(n_boot=50),
                       pairs=[("side", "raw_content")])
    p0 = per[0]
    _, first = np.unique(p0.item_id, return_index=True)
    h, t = frequency_cuts(p0.item_train_freq[first])
    assert rep["item_freq"]["cuts"] == {"head_min_count": h, "torso_min_count": t}
    for b, stats in rep["item_freq"]["buckets"].items():
        rows = [i for i in range(p0.rows) if (
            "cold" if p0.item_train_freq[i] == 0 else "head" if p0.item_train_freq[i] >= h
            else "torso" if p0.item_train_freq[i] >= t else "tail") == b]
        assert stats["rows"] == len(rows)
        if not rows:
            continue
        assert stats["users"] == len({int(p0.user_id[i]) for i in rows})
        for v in ("control", "side", "raw_content", "oracle"):
            nes, aucs, means = [], [], []
            for s in per:
                sc = per[s].p_true if v == "oracle" else per[s].scores[v]
                nes.append(normalized_entropy(per[s].label[rows], sc[rows]))
                aucs.append(auc(per[s].label[rows], sc[rows]))
                means.append(sum(float(sc[i]) for i in rows) / len(rows))
            assert stats["mean_pred"][v] == pytest.approx(np.mean(means))
            assert stats["positive_rate"] == pytest.approx(sum(float(p0.label[i]) for i in rows) / len(rows))
            if not all(map(math.isnan, nes)):
                assert stats["ne"][v] == pytest.approx(np.nanmean(nes))
            if not all(map(math.isnan, aucs)):
                assert stats["auc"][v] == pytest.approx(np.nanmean(aucs))
        if len(rows) > 20:
            gains = []
            for s in per:
                c = normalized_entropy(per[s].label[rows], per[s].scores["control"][rows])
                v = normalized_entropy(per[s].label[rows], per[s].scores["side"][rows])
                gains.append(100 * (c - v) / c)
            g = stats["gain"]["side"]
            assert g["point"] == pytest.approx(np.mean(gains))
            assert g["ci95"][0] <= g["point"] <= g["ci95"][1]
            assert "side_over_raw_content" in stats["pairs"]
            assert "side" in stats["oracle_share"]
    # history-length slices partition the rows
    hb = rep["hist_len"]["buckets"]
    assert sum(b["rows"] for b in hb.values()) == p0.rows
    assert list(hb) == ["0", "1-9", "10-99", "100-999", "1000+"]


def test_slices_without_oracle_or_bootstrap() -> None:
    per = {s: _fake(s, oracle=False) for s in (0, 1)}
    table = np.zeros(70, dtype=np.int64)  # item id -> training count, 10 items never shown in test
    table[per[0].item_id] = per[0].item_train_freq
    table[60:] = 1
    rep = slice_report(per, ["control", "side"], cfg=SliceConfig(n_boot=0), item_counts=table)
    cold = rep["item_freq"]["buckets"]["cold"]
    assert "oracle_share" not in cold and cold["gain"]["side"]["ci95"] is None
    assert rep["item_freq"]["source"].startswith("all items")
    assert cold["rows"] == int((per[0].item_train_freq == 0).sum()) > 0
    counts: Dict[str, int] = {b: s["rows"] for b, s in rep["item_freq"]["buckets"].items()}
    assert sum(counts.values()) == per[0].rows
