# pyre-strict
"""NE / AUC against direct computations; the paired two-level bootstrap: coverage on synthetic
paired data with a known difference, shared user resamples, the vectorised replicate NE against an
explicit resample, ratios (undefined cases), contrasts, oracle share, seed-level fallback."""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrec_side.eval.stats import (
    EPS,
    BootstrapConfig,
    PairedBootstrap,
    UserTable,
    auc,
    log_loss,
    normalized_entropy,
    percentile_interval,
    verdict,
)


def _ne_direct(y: List[float], p: List[float]) -> float:
    n = len(y)
    ll = 0.0
    for yi, pi in zip(y, p):
        q = min(max(pi, EPS), 1 - EPS)
        ll -= yi * math.log(q) + (1 - yi) * math.log(1 - q)
    r = sum(y) / n
    return (ll / n) / (-(r * math.log(r) + (1 - r) * math.log(1 - r)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0.0, 1.0)), min_size=2, max_size=60))
def test_ne_matches_direct_computation(rows: List[Tuple[int, float]]) -> None:
    y = [float(a) for a, _ in rows]
    p = [b for _, b in rows]
    if 0 < sum(y) < len(y):
        assert normalized_entropy(np.array(y), np.array(p)) == pytest.approx(_ne_direct(y, p), rel=1e-9)
    else:
        assert math.isnan(normalized_entropy(np.array(y), np.array(p)))


def _auc_pairs(y: List[int], s: List[float]) -> float:
    pos = [a for a, b in zip(s, y) if b]
    neg = [a for a, b in zip(s, y) if not b]
    tot = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return tot / (len(pos) * len(neg))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=2, max_size=40))
def test_auc_matches_pair_count_with_ties(rows: List[Tuple[int, int]]) -> None:
    y = [a for a, _ in rows]
    s = [b / 5.0 for _, b in rows]
    got = auc(np.array(y), np.array(s))
    if 0 < sum(y) < len(y):
        assert got == pytest.approx(_auc_pairs(y, s))
    else:
        assert math.isnan(got)


def test_user_table_ne_equals_ne_of_rows() -> None:
    rng = np.random.default_rng(0)
    uid = rng.integers(0, 20, 500)
    y = (rng.random(500) < 0.3).astype(float)
    p = {"a": rng.random(500), "b": rng.random(500)}
    t = UserTable.from_arrays({0: (uid, y, p), 1: (uid[:300], y[:300], {"a": p["a"][:300]})})
    ne = t.ne()
    assert ne[0, 0] == pytest.approx(normalized_entropy(y, p["a"]))
    assert ne[1, 0] == pytest.approx(normalized_entropy(y, p["b"]))
    assert ne[0, 1] == pytest.approx(normalized_entropy(y[:300], p["a"][:300]))
    assert not t.has[1, 1] and math.isnan(ne[1, 1])
    assert t.count.sum() == 800 and log_loss(y, p["a"]).sum() == pytest.approx(t.loss[0, 0].sum())


def _synthetic(rng: np.random.Generator, delta: float, S: int = 10, U: int = 200, sig_seed: float = 0.01,
               sig_user: float = 0.05) -> UserTable:
    """Per-user log-loss sums with a known paired NE gain of ``100 * delta`` %.

    control: ``L_c[s, u] = n_u c_u (1 + zeta_s)``; variant: ``L_v = L_c (1 - delta_u - eta_s)``
    with ``E[delta_u] = delta``, ``E[eta_s] = 0``: the per-seed gain is ``100 (eta_s + weighted mean
    of delta_u)`` (weights ``n_u c_u``, independent of delta_u), whose expectation is ``100 delta``.
    """
    n = (1 + rng.poisson(30, U)).astype(float)
    c = rng.uniform(0.5, 1.0, U)
    zeta = rng.normal(0, 0.02, S)
    eta = rng.normal(0, sig_seed, S)
    du = rng.normal(delta, sig_user, U)
    lc = (n * c)[None, :] * (1 + zeta)[:, None]
    lv = lc * (1 - du[None, :] - eta[:, None])
    return UserTable(users=np.arange(U), variants=["control", "v"], seeds=list(range(S)),
                     count=np.tile(n, (S, 1)), positives=np.tile(0.4 * n, (S, 1)), loss=np.stack([lc, lv]),
                     has=np.ones((2, S), dtype=bool))


def test_bootstrap_covers_known_difference() -> None:
    rng = np.random.default_rng(12345)
    cover = 0
    for e in range(200):
        g = PairedBootstrap(_synthetic(rng, 0.01), BootstrapConfig(n_boot=300, seed=e)).gain("v", "control")
        assert g.lo is not None and g.hi is not None and g.level == "seeds x users"
        cover += g.lo <= 1.0 <= g.hi
    assert 0.90 <= cover / 200 <= 0.99, cover


def test_bootstrap_separates_large_effect_and_not_a_null_one() -> None:
    rng = np.random.default_rng(7)
    large = [PairedBootstrap(_synthetic(rng, 0.05), BootstrapConfig(n_boot=200, seed=e)).gain("v").verdict
             for e in range(30)]
    assert large.count("separated") == 30
    null = [PairedBootstrap(_synthetic(rng, 0.0), BootstrapConfig(n_boot=200, seed=e)).gain("v").verdict
            for e in range(60)]
    assert null.count("not separated") >= 52  # ~95% expected


def test_users_resample_is_shared_by_both_sides_of_a_pair() -> None:
    # an exactly proportional improvement for every user: any shared resample gives the same gain,
    # so the interval has zero width; independent resamples per variant would spread it
    rng = np.random.default_rng(0)
    U, S = 50, 4
    n = (1 + rng.poisson(5, U)).astype(float)
    lc = np.tile(n * rng.uniform(0.3, 1.2, U), (S, 1))
    t = UserTable(users=np.arange(U), variants=["control", "v"], seeds=list(range(S)), count=np.tile(n, (S, 1)),
                  positives=np.tile(0.5 * n, (S, 1)), loss=np.stack([lc, 0.97 * lc]), has=np.ones((2, S), bool))
    g = PairedBootstrap(t, BootstrapConfig(n_boot=200)).gain("v")
    assert g.point == pytest.approx(3.0) and g.lo == pytest.approx(3.0) and g.hi == pytest.approx(3.0)
    # but the NE of each side does vary across replicates (users really are resampled)
    boot = PairedBootstrap(t, BootstrapConfig(n_boot=200))
    assert np.std(boot.ne_boot[:, 0, 0]) > 0


def test_replicate_ne_equals_explicit_resample() -> None:
    rng = np.random.default_rng(3)
    N = 400
    uid = rng.integers(100, 130, N)  # 30 users with sparse ids
    y = (rng.random(N) < 0.35).astype(float)
    per = {s: (uid, y, {"control": rng.random(N), "v": rng.random(N)}) for s in (0, 1)}
    t = UserTable.from_arrays(per)
    boot = PairedBootstrap(t, BootstrapConfig(n_boot=20, chunk=8, seed=5))
    for block in range(2):
        W = boot.user_weights(block)
        assert W.shape == (8, t.users.size) and np.all(W.sum(1) == t.users.size)
        for r in range(3):
            # build the resampled event set explicitly: each drawn user's events, once per draw
            rows = [i for u, w in zip(t.users, W[r]) for _ in range(int(w)) for i in np.flatnonzero(uid == u)]
            for vi, v in enumerate(t.variants):
                for si, s in enumerate(t.seeds):
                    ref = normalized_entropy(y[rows], per[s][2][v][rows])
                    assert boot.ne_boot[block * 8 + r, vi, si] == pytest.approx(ref, rel=1e-10)


def test_seed_resample_gain_matches_plain_loop() -> None:
    rng = np.random.default_rng(1)
    t = _synthetic(rng, 0.01, S=6, U=40)
    boot = PairedBootstrap(t, BootstrapConfig(n_boot=50, resample_users=False, seed=2))
    g = boot.gain("v")
    ne = t.ne()
    per_seed = 100 * (ne[0] - ne[1]) / ne[0]
    idx = boot.seed_resample(6)
    ref = np.array([np.mean([per_seed[j] for j in row]) for row in idx])
    assert np.allclose(g.replicates, ref)
    assert g.point == pytest.approx(per_seed.mean())
    assert (g.lo, g.hi) == pytest.approx(percentile_interval(ref))


def _three(gc: float, ga: float, gb: float, noise: float, S: int = 8, U: int = 60, seed: int = 0) -> UserTable:
    rng = np.random.default_rng(seed)
    n = (1 + rng.poisson(20, U)).astype(float)
    lc = np.tile(n * rng.uniform(0.5, 1.0, U), (S, 1))
    a = lc * (1 - ga - rng.normal(0, noise, (S, 1)))
    b = lc * (1 - gb - rng.normal(0, noise, (S, 1)))
    o = lc * (1 - gc)
    return UserTable(users=np.arange(U), variants=["control", "a", "b", "oracle"], seeds=list(range(S)),
                     count=np.tile(n, (S, 1)), positives=np.tile(0.3 * n, (S, 1)), loss=np.stack([lc, a, b, o]),
                     has=np.ones((4, S), bool))


def test_ratio_defined_and_undefined_cases() -> None:
    ok = PairedBootstrap(_three(0.1, 0.03, 0.01, 0.001), BootstrapConfig(n_boot=300)).ratio(("a", "control"), ("b", "control"))
    assert ok.status == "ok" and ok.point == pytest.approx(3.0, rel=0.1) and ok.lo <= ok.point <= ok.hi
    cover = PairedBootstrap(_three(0.1, 0.03, 0.0005, 0.003), BootstrapConfig(n_boot=300)).ratio(("a", "control"),
                                                                                               ("b", "control"))
    assert cover.lo is None and "covers 0" in cover.status and cover.denominator.verdict == "not separated"
    neg = PairedBootstrap(_three(0.1, 0.03, -0.01, 0.001), BootstrapConfig(n_boot=300)).ratio(("a", "control"),
                                                                                            ("b", "control"))
    assert neg.point is None and "not positive" in neg.status and neg.nonpositive_denominator_share > 0.9


def test_contrast_and_oracle_share() -> None:
    boot = PairedBootstrap(_three(0.10, 0.05, 0.02, 0.0003), BootstrapConfig(n_boot=300))
    c = boot.contrast(("a", "control"), ("b", "control"), 2.4)
    ga, gb = boot.gain("a"), boot.gain("b")
    assert c.point == pytest.approx(ga.point - 2.4 * gb.point)
    assert c.verdict == "separated" and c.lo > 0  # 5 - 4.8 with tiny noise
    share = boot.ratio(("a", "control"), ("oracle", "control"))
    assert share.point == pytest.approx(0.5, abs=0.02) and share.lo <= 0.5 <= share.hi + 0.02
    exact = PairedBootstrap(_three(0.10, 0.05, 0.02, 0.0), BootstrapConfig(n_boot=100))
    sh = exact.ratio(("a", "control"), ("oracle", "control"))
    assert sh.point == pytest.approx(0.5) and sh.lo == pytest.approx(0.5) and sh.hi == pytest.approx(0.5)


def test_seed_level_fallback_for_runs_without_predictions() -> None:
    rng = np.random.default_rng(0)
    uid = rng.integers(0, 10, 100)
    y = (rng.random(100) < 0.4).astype(float)
    per = {s: (uid, y, {"control": rng.random(100)}) for s in (0, 1, 2)}
    t = UserTable.from_arrays(per, variants=["control", "v"])
    ne = t.ne()
    seed_ne: Dict[Tuple[str, int], float] = {("v", s): float(ne[0, s]) * 0.98 for s in (0, 1, 2)}
    boot = PairedBootstrap(t, BootstrapConfig(n_boot=100), seed_level_ne=seed_ne)
    g = boot.gain("v")
    assert g.level == "seeds" and g.point == pytest.approx(2.0) and g.seeds == [0, 1, 2]
    assert boot.gain("v").lo == pytest.approx(2.0)  # every seed gains exactly 2%
    one = PairedBootstrap(UserTable.from_arrays({0: per[0]}, variants=["control", "v"]), BootstrapConfig(n_boot=20),
                          seed_level_ne={("v", 0): 0.5})
    e = one.gain("v")
    assert e.level == "seeds" and e.lo is None and e.verdict == "n/a"
    with pytest.raises(KeyError, match="unknown variant"):
        boot.gain("nope")


def test_config_and_helpers_errors() -> None:
    with pytest.raises(ValueError, match="n_boot"):
        BootstrapConfig(n_boot=3)
    with pytest.raises(ValueError, match="level"):
        BootstrapConfig(level=1.5)
    with pytest.raises(ValueError, match="shape"):
        log_loss(np.zeros(3), np.zeros(4))
    assert verdict(0.1, 0.2) == "separated" and verdict(-0.1, 0.2) == "not separated" and verdict(None, 1.0) == "n/a"
    with pytest.raises(ValueError, match="user ids"):
        UserTable.from_arrays({0: (np.array([5]), np.array([1.0]), {"a": np.array([0.5])})}, users=np.array([1, 2]))
