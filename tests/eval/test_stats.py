# pyre-strict
"""NE / AUC against direct computations; the paired bootstrap: coverage on synthetic paired data
with a known difference (users only; two-way users x items against users-only on crossed data with
item effects), shared resamples, the vectorised replicate NE against an explicit resample (users
only and two-way), the per-cell table against a plain group-by, ratios (undefined cases),
contrasts, oracle share, seed-level fallback."""

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


# ------------------------------------------------------------------ two-way (users x items)


def _rows(rng: np.random.Generator, N: int, U: int, I: int, seeds: Tuple[int, ...] = (0, 1)
          ) -> Dict[int, Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray], np.ndarray]]:
    uid = rng.integers(1000, 1000 + U, N)  # sparse ids
    iid = rng.integers(50, 50 + I, N)
    y = (rng.random(N) < 0.35).astype(float)
    return {s: (uid, y, {"control": rng.random(N), "v": rng.random(N)}, iid) for s in seeds}


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.integers(1, 6), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_two_way_table_matches_group_by(N: int, U: int, I: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    per = _rows(rng, N, U, I)
    t = UserTable.from_arrays(per)
    assert t.has_items and t.items is not None and t.cell_user is not None and t.cell_item is not None
    uid, y, probs, iid = per[0]
    ref: Dict[Tuple[int, int], List[int]] = {}
    for r in range(N):
        ref.setdefault((int(uid[r]), int(iid[r])), []).append(r)
    assert t.count.shape == (2, len(ref))
    for c in range(t.count.shape[1]):
        rows = ref[(int(t.users[t.cell_user[c]]), int(t.items[t.cell_item[c]]))]
        assert t.count[0, c] == len(rows) and t.positives[0, c] == pytest.approx(y[rows].sum())
        for vi, v in enumerate(t.variants):
            assert t.loss[vi, 0, c] == pytest.approx(log_loss(y[rows], probs[v][rows]).sum())
    # the same NE as the users-only table of the same rows
    u_only = UserTable.from_arrays({s: a[:3] for s, a in per.items()})
    assert np.allclose(t.ne(), u_only.ne(), equal_nan=True)


def test_two_way_replicate_ne_equals_explicit_resample() -> None:
    rng = np.random.default_rng(4)
    N = 300
    per = _rows(rng, N, U=25, I=12)
    uid, y, _, iid = per[0]
    t = UserTable.from_arrays(per)
    boot = PairedBootstrap(t, BootstrapConfig(n_boot=20, chunk=8, seed=9))
    assert boot.level == "seeds x users x items"
    assert t.items is not None
    for block in range(2):
        wu, wi = boot.user_weights(block), boot.item_weights(block)
        assert wu.shape == (8, t.users.size) and np.all(wu.sum(1) == t.users.size)
        assert wi.shape == (8, t.items.size) and np.all(wi.sum(1) == t.items.size)
        # users and items are drawn independently (different streams)
        assert not np.array_equal(wu[:, :5], wi[:, :5])
        for r in range(3):
            # the resampled rows explicitly: each row repeated (user draws x item draws) times
            mult = (wu[r][np.searchsorted(t.users, uid)] * wi[r][np.searchsorted(t.items, iid)]).astype(int)
            rows = np.repeat(np.arange(N), mult)
            for vi, v in enumerate(t.variants):
                for si, s in enumerate(t.seeds):
                    ref = normalized_entropy(y[rows], per[s][2][v][rows])
                    assert boot.ne_boot[block * 8 + r, vi, si] == pytest.approx(ref, rel=1e-10)
    # sub-blocks under a tight memory cap give the same replicates
    tight = PairedBootstrap(t, BootstrapConfig(n_boot=20, chunk=8, seed=9, max_block_cells=3 * t.count.shape[1]))
    assert np.allclose(tight.ne_boot, boot.ne_boot, rtol=1e-12)


def test_levels_and_users_only_selectable() -> None:
    rng = np.random.default_rng(5)
    per = _rows(rng, 200, U=20, I=15)
    two = UserTable.from_arrays(per)
    users_only = PairedBootstrap(two, BootstrapConfig(n_boot=30, seed=1, resample_items=False))
    assert users_only.level == "seeds x users" and users_only.gain("v").level == "seeds x users"
    # users-only on a two-way table == the bootstrap of the users-only table (same user draws)
    plain = PairedBootstrap(UserTable.from_arrays({s: a[:3] for s, a in per.items()}),
                            BootstrapConfig(n_boot=30, seed=1))
    assert plain.level == "seeds x users"
    assert np.allclose(users_only.ne_boot, plain.ne_boot, rtol=1e-12)
    g2 = PairedBootstrap(two, BootstrapConfig(n_boot=30, seed=1)).gain("v")
    assert g2.level == "seeds x users x items" and g2.point == pytest.approx(users_only.gain("v").point)
    items_only = PairedBootstrap(two, BootstrapConfig(n_boot=30, seed=1, resample_users=False))
    assert items_only.level == "seeds x items"
    assert PairedBootstrap(two, BootstrapConfig(n_boot=30, resample_users=False, resample_items=False)).level == "seeds"


def test_two_way_table_errors() -> None:
    rng = np.random.default_rng(6)
    per = _rows(rng, 50, U=5, I=5)
    with pytest.raises(ValueError, match="some seeds only"):
        UserTable.from_arrays({0: per[0], 1: per[1][:3]})
    with pytest.raises(ValueError, match="item ids"):
        UserTable.from_arrays(per, items=np.array([1, 2]))
    with pytest.raises(ValueError, match="items and cell_item"):
        UserTable(users=np.arange(2), variants=["a"], seeds=[0], count=np.ones((1, 2)), positives=np.ones((1, 2)),
                  loss=np.ones((1, 1, 2)), has=np.ones((1, 1), bool), items=np.arange(3))
    with pytest.raises(ValueError, match="cell_item outside"):
        UserTable(users=np.arange(2), variants=["a"], seeds=[0], count=np.ones((1, 2)), positives=np.ones((1, 2)),
                  loss=np.ones((1, 1, 2)), has=np.ones((1, 1), bool), items=np.arange(3),
                  cell_user=np.array([0, 1]), cell_item=np.array([0, 3]))


def _crossed(rng: np.random.Generator, delta: float, s_item: float, U: int = 400, I: int = 60, per_user: int = 8,
             s_user: float = 0.02, s_cell: float = 0.02) -> UserTable:
    """Crossed per-cell log-loss sums with a known paired NE gain of ``100 * delta`` %.

    Each of ``U`` users meets ``per_user`` items drawn from ``I`` with a skewed popularity
    (``1 / (rank + 10)``; repeated draws merge into one cell). Control: ``L_c = n_c a_u b_i``;
    variant: ``L_v = L_c (1 - delta - e_u - f_i - g_c)`` with user, item and cell effects
    ``N(0, s_user^2)``, ``N(0, s_item^2)``, ``N(0, s_cell^2)``, independent of the weights
    ``L_c``: the gain ``100 sum(L_c d) / sum(L_c)`` has expectation exactly ``100 delta``. With
    ``s_item > 0`` the item effects are shared by every user who meets the item, so a users-only
    resample sees only a small part of their variance.
    """
    pop = 1.0 / (np.arange(I) + 10.0)
    pop /= pop.sum()
    cu = np.repeat(np.arange(U), per_user)
    key = np.unique(cu * I + rng.choice(I, size=cu.size, p=pop))
    cu, ci = key // I, key % I
    n = 1.0 + rng.poisson(2.0, key.size)
    lc = n * rng.uniform(0.5, 1.0, U)[cu] * rng.uniform(0.5, 1.0, I)[ci]
    d = delta + rng.normal(0, s_user, U)[cu] + rng.normal(0, s_item, I)[ci] + rng.normal(0, s_cell, key.size)
    return UserTable(users=np.arange(U), variants=["control", "v"], seeds=[0], count=n[None], positives=0.3 * n[None],
                     loss=np.stack([lc, lc * (1 - d)])[:, None], has=np.ones((2, 1), bool), items=np.arange(I),
                     cell_user=cu, cell_item=ci)


def _coverage(rng: np.random.Generator, s_item: float, datasets: int) -> Dict[bool, Tuple[float, float]]:
    """``{resample_items: (coverage of the true 1.0% gain, mean interval width)}``."""
    hits = {True: 0, False: 0}
    width: Dict[bool, List[float]] = {True: [], False: []}
    for r in range(datasets):
        t = _crossed(rng, 0.01, s_item)
        for items in (True, False):
            g = PairedBootstrap(t, BootstrapConfig(n_boot=400, seed=r, resample_items=items)).gain("v")
            assert g.lo is not None and g.hi is not None
            hits[items] += g.lo <= 1.0 <= g.hi
            width[items].append(g.hi - g.lo)
    return {k: (hits[k] / datasets, float(np.mean(width[k]))) for k in hits}


def test_two_way_bootstrap_covers_where_users_only_undercovers() -> None:
    # 300 datasets: the Monte Carlo sd of a 95% coverage estimate is sqrt(.95 * .05 / 300) = 0.013,
    # so the band [0.90, 0.99] is about 4 sd either side; users-only sits near 0.5 (sd 0.03)
    rng = np.random.default_rng(2024)
    cov = _coverage(rng, s_item=0.02, datasets=300)
    (two, w2), (one, w1) = cov[True], cov[False]
    assert 0.90 <= two <= 0.99, cov
    assert one <= 0.75 and two - one >= 0.2, cov
    assert w2 > 2.0 * w1, cov


def test_two_way_bootstrap_without_item_effects_is_mildly_conservative() -> None:
    # no item effect: users-only is right; the two-way interval still covers and is only somewhat
    # wider (Owen's bootstrap errs on the conservative side). 150 datasets: sd of 0.95 is 0.018
    rng = np.random.default_rng(77)
    cov = _coverage(rng, s_item=0.0, datasets=150)
    (two, w2), (one, w1) = cov[True], cov[False]
    assert 0.88 <= one <= 0.99 and 0.90 <= two <= 1.0, cov
    assert w1 < w2 < 1.5 * w1, cov
