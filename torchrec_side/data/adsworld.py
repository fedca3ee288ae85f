# pyre-strict
"""A simulated ads world with a known optimum (docs/design.md section 7c).

MovieLens-100K has 1,682 well-trained items; this seeded generator stands in for an ads system at
the scale SIDE is meant for, and keeps the hidden truth, so the best possible NE is known.

Generative process (every knob, with its default and reason: :mod:`.adsworld_config`):

* **items**: a category tree (Zipf-sized categories, Zipf-sized sub-categories below each); a
  hidden attribute vector ``a_i = sqrt(.4) mu_cat + sqrt(.3) mu_sub + sqrt(.3) e_i`` (k = 32);
  Zipf-Mandelbrot base popularity fitted to Meta's ads skew; a release day (half the catalogue is
  released during the log, so the catalogue grows and items released in the test window are
  cold); a freshness boost ``floor + (1 - floor) 2^(-age / half_life)``; a quality ``q_i ~ N(0,1)``
  that no content view sees (the id-only signal a learned item row can pick up); a collaborative
  factor ``g_i ~ N(0, I_r)`` from its own random stream, independent of everything else about the
  item.
* **content**: a 384-d "text" and a 128-d "image" view, each a fixed random tanh map of an
  overlapping slice of ``a_i`` plus noise, L2-normalized, float16; category and sub-category labels.
* **users**: a few interest components (one category each, a taste vector ``taste_uj``), mixture
  weights ``pi_j(t)`` whose logits rotate slowly (so their spread stays constant); a collaborative
  factor ``f_u`` uniform on the sphere of radius ``sqrt(r)``; heavy-tailed log lengths (log-normal,
  capped).
* **match**: ``z_j = <taste_uj, a_i>`` standardized; ``clicks.interest_pooling: softmax`` (default)
  pools the components by a soft maximum ``T log sum_j pi_j exp(z_j / T)`` (multi-interest users),
  ``mean`` by the mixture mean (the single mixed interest vector of worlds before issue 15).
* **draws** (events and impressions alike, one day at a time): pick a category (the user's
  mixture, or with prob. ``explore`` any category by popularity), retrieve a shortlist of
  ``shortlist`` items released by that day by freshness-weighted popularity, then pick one by
  ``softmax(sharpness * s)``, ``s = m + x`` the click logit without its bias: the content-visible
  part ``m = w_match z_match`` and the id-only part ``x = w_collab <f_u, g_i> / sqrt(r) +
  w_quality q_i``. Events (the user's past clicks) use sharpness 1 (click odds) and, with softmax
  pooling, the match of the component they were drawn from (events follow the interests);
  impressions use ``clicks.targeting`` and the pooled match.
* **labels**: ``p_true = sigmoid(bias + s)`` (bias solved on a pilot so the mean is
  ``clicks.base_rate``), ``label ~ Bernoulli(p_true)``; ``p_true`` is kept: the oracle.
* **ceilings** (:func:`ceilings`), per impression: ``p_content = E[p | m, shortlist]`` (the id-only
  part integrated over its exact Gaussian prior, tilted by the ad system's pick; Gauss-Hermite)
  and ``p_id = E[p | x, shortlist]`` (the match over the pilot's candidate distribution; an
  approximation), with their NE in the manifest (``ceilings``).

Sizes ``tiny`` (tests), ``quick`` (10^5 items, 10^4 users) and ``full`` (10^6 items, 2.5 x 10^4
users); ``preset=id_dominant`` (the positive control) makes the collaborative term dominate, content
weak and the catalogue small and dense, so the world can show SIDE losing to a learned sparse-ID
history.

Folder written (atomically) by :func:`generate_world` / ``torchrec-side world``::

    manifest.json        format, version, config, counts, split_times, oracle, ceilings, skew, seconds
    items.parquet        item_id, category, subcategory, release_time, quality (hidden)
    content/text.npy     float16 [N, 384]    content/image.npy  float16 [N, 128]
    hidden/item_collab.npy  float32 [N, r]   hidden/user_collab.npy  float32 [U, r]  (collaborative factors)
    events.parquet       user_id, item_id, timestamp; sorted by (user_id, timestamp)
    impressions.parquet  user_id, item_id, timestamp, label, p_true, split, p_content, p_id,
                         p_content_item (NaN on train), logit_content, logit_id, pick_logr,
                         pick_dup; sorted by timestamp

An impression's history is its user's events with timestamp strictly below its own. Splits by
global time: train < t_val <= val < t_test <= test; items released at or after t_test are cold
and appear in no train or validation row.

Example::

    >>> from torchrec_side.data.adsworld import generate_world
    >>> from torchrec_side.data.adsworld_config import load_world_config
    >>> m = generate_world(load_world_config("tiny"), "runs/world_tiny", progress=False)  # doctest: +SKIP
    >>> m["oracle"]["test"]["ne"] < 1.0                                                     # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections import deque
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from torchrec_side.config import ConfigError, config_to_dict, config_to_yaml
from torchrec_side.data.adsworld_config import LEGACY, AdsWorldConfig, load_world_config, with_legacy
from torchrec_side.io import ArtifactError, atomic_dir, write_json

__all__ = ["FORMAT", "VERSION", "DAY", "ceilings", "item_posterior_ceiling", "soft_max_pool", "generate_world",
           "read_manifest", "target_in_history", "normalized_entropy", "auc", "world_main"]

FORMAT: str = "torchrec-side-adsworld"
VERSION: int = 1
#: Seconds in a simulated day; release times fall on day boundaries.
DAY: int = 86_400
#: Meta's ads skew (Zheng et al., arXiv 2504.02137): item fraction -> impression share.
META_TOP: Tuple[float, float] = (0.001, 0.25)
META_BOTTOM: Tuple[float, float] = (0.944, 0.25)
_CONTENT_CHUNK: int = 65_536
_PILOT_USERS: int = 1_000
_MATCH_NODES: int = 64
_CEILING_CHUNK: int = 65_536
_SHIFT_SAMPLE: int = 10_000

PathLike = Union[str, Path]
Array = np.ndarray


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _zipf(n: int, s: float) -> Array:
    p = np.arange(1, n + 1, dtype=np.float64) ** -s
    return p / p.sum()


@dataclass
class _Catalogue:
    category: Array  # int32 [N]
    subcategory: Array  # int32 [N] (global id: category * S + local)
    release_day: Array  # int64 [N], absolute day
    quality: Array  # float32 [N]
    weight: Array  # float64 [N], base popularity
    attrs: Array  # float32 [N, k]
    by_cat: Array  # int64 [N], item ids grouped by category
    bounds: Array  # int64 [C + 1], category ranges in by_cat
    cat_mu: Array  # float32 [C, k]
    sub_mu: Array  # float32 [C * S, k]
    sub_p: Array  # float64 [S], local sub-category probabilities
    collab: Array  # float32 [N, r], item factors g_i ~ N(0, I_r) (their own stream: independent of all else)


def _shares(cfg: AdsWorldConfig) -> Tuple[float, float, float]:
    c = cfg.catalogue
    tot = c.category_share + c.subcategory_share + c.item_share
    return c.category_share / tot, c.subcategory_share / tot, c.item_share / tot


def _build_catalogue(cfg: AdsWorldConfig) -> _Catalogue:
    c, t = cfg.catalogue, cfg.timeline
    rng = _rng(cfg.seed, 1)
    n, nc, ns, k = c.num_items, c.num_categories, c.subcategories_per_category, c.attr_dim
    category = np.empty(n, dtype=np.int32)
    category[:nc] = np.arange(nc)  # one anchor item per category, released on day 0
    category[nc:] = rng.choice(nc, n - nc, p=_zipf(nc, c.category_zipf))
    anchor = np.zeros(n, dtype=bool)
    anchor[:nc] = True
    perm = rng.permutation(n)
    category, anchor = category[perm], anchor[perm]
    sub_p = _zipf(ns, c.subcategory_zipf)
    subcategory = (category.astype(np.int64) * ns + rng.choice(ns, n, p=sub_p)).astype(np.int32)
    sc, ss, si = _shares(cfg)
    cat_mu = rng.standard_normal((nc, k), dtype=np.float32) / np.float32(math.sqrt(k))
    sub_mu = rng.standard_normal((nc * ns, k), dtype=np.float32) / np.float32(math.sqrt(k))
    attrs = rng.standard_normal((n, k), dtype=np.float32) * np.float32(math.sqrt(si / k))
    attrs += cat_mu[category] * np.float32(math.sqrt(sc))
    attrs += sub_mu[subcategory] * np.float32(math.sqrt(ss))
    rank = rng.permutation(n).astype(np.float64) + 1.0
    weight = (rank + c.popularity_offset * n) ** -c.popularity_zipf
    is_new = rng.random(n) < c.new_item_fraction
    release_day = np.where(is_new, t.back_catalogue_days + rng.integers(0, t.log_days, n),
                           rng.integers(0, t.back_catalogue_days, n)).astype(np.int64)
    release_day[anchor] = 0
    quality = rng.standard_normal(n, dtype=np.float32)
    by_cat = np.argsort(category, kind="stable").astype(np.int64)
    bounds = np.searchsorted(category[by_cat], np.arange(nc + 1)).astype(np.int64)
    # stream 6: nothing about an item's attributes, content, popularity or quality enters here
    collab = _rng(cfg.seed, 6).standard_normal((n, cfg.collab.rank), dtype=np.float32)
    return _Catalogue(category, subcategory, release_day, quality, weight, attrs, by_cat, bounds,
                      cat_mu, sub_mu, sub_p, collab)  # fmt: skip


class _DayTables:
    """Freshness-weighted popularity of one day: a cumulative sum over items grouped by category."""

    def __init__(self, cat: _Catalogue, cfg: AdsWorldConfig) -> None:
        c = cfg.catalogue
        self.w = cat.weight[cat.by_cat]
        self.rd = cat.release_day[cat.by_cat]
        max_age = cfg.timeline.back_catalogue_days + cfg.timeline.log_days + 1
        age = np.arange(max_age + 1, dtype=np.float64)
        self.fresh = c.freshness_floor + (1.0 - c.freshness_floor) * np.exp2(-age / c.freshness_half_life_days)
        self.bounds = cat.bounds

    def day(self, d: int) -> Tuple[Array, Array, Array]:
        age = d - self.rd
        w = np.where(age >= 0, self.w * self.fresh[np.clip(age, 0, len(self.fresh) - 1)], 0.0)
        cs = np.cumsum(w)
        cs0 = np.concatenate([[0.0], cs])
        lo, hi = cs0[self.bounds[:-1]], cs0[self.bounds[1:]]
        return cs, lo, hi


@dataclass
class _Users:
    cats: Array  # int64 [n, K]
    lam0: Array  # float64 [n, K] mixture logits at the log start
    lam1: Array  # float64 [n, K] the orthogonal direction they rotate towards
    taste: Array  # float32 [n, K, k]
    num_events: Array  # int64 [n]
    num_impressions: Array  # int64 [n]
    factor: Array  # float32 [n, r], uniform on the sphere of radius sqrt(r)


def _user_factors(cfg: AdsWorldConfig, n: int, rng: np.random.Generator) -> Array:
    """``float32 [n, r]`` user factors, uniform on the sphere of radius ``sqrt(r)`` (so
    ``<f_u, g_i> / sqrt(r) ~ N(0, 1)`` exactly for every user when ``g_i ~ N(0, I_r)``)."""
    r = cfg.collab.rank
    f = rng.standard_normal((n, r))
    f *= math.sqrt(r) / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return f.astype(np.float32)


def _make_users(cfg: AdsWorldConfig, cat: _Catalogue, n: int, rng: np.random.Generator,
                factor_rng: np.random.Generator) -> _Users:  # fmt: skip
    u, c = cfg.users, cfg.catalogue
    nc, ns, k = c.num_categories, c.subcategories_per_category, c.attr_dim
    kk = min(u.categories_per_user, nc)
    mass = np.bincount(cat.category, weights=cat.weight, minlength=nc)
    g = np.log(mass / mass.sum())[None, :] + rng.gumbel(size=(n, nc))  # Gumbel top-K: no repeats
    cats = np.argpartition(-g, kk - 1, axis=1)[:, :kk].astype(np.int64)
    lam0 = rng.standard_normal((n, kk)) * u.interest_logit_std
    lam1 = rng.standard_normal((n, kk)) * u.interest_logit_std
    sub = cats * ns + rng.choice(ns, (n, kk), p=cat.sub_p)
    sc, ss, _ = _shares(cfg)
    keep = 1.0 - u.taste_noise_share
    taste = rng.standard_normal((n, kk, k), dtype=np.float32) * np.float32(math.sqrt(u.taste_noise_share / k))
    taste += cat.cat_mu[cats] * np.float32(math.sqrt(keep * sc / (sc + ss or 1.0)))
    taste += cat.sub_mu[sub] * np.float32(math.sqrt(keep * ss / (sc + ss or 1.0)))
    lengths = np.exp(math.log(u.median_events) + u.events_sigma * rng.standard_normal(n))
    num_events = np.clip(np.rint(lengths), 1, u.max_events).astype(np.int64)
    num_impressions = rng.poisson(u.impressions_per_user, n).astype(np.int64)
    return _Users(cats, lam0, lam1, taste, num_events, num_impressions, _user_factors(cfg, n, factor_rng))


@dataclass
class _Calibration:
    """Standardization of the matches and the bias, from the pilot (:func:`_calibrate`).

    ``comp_mean`` / ``comp_std``: moments of one interest component's raw match over candidates
    (``softmax`` pooling); ``match_mean`` / ``match_std``: of the pooled match; ``match_nodes``:
    64 mid-quantiles of the standardized pooled match over candidates (the id ceiling's prior of
    the content match)."""

    match_mean: float = 0.0
    match_std: float = 1.0
    bias: float = 0.0
    comp_mean: float = 0.0
    comp_std: float = 1.0
    match_nodes: List[float] = field(default_factory=list)


@dataclass
class _Drawn:
    """What :func:`_draw` returns per row: the item, its click logit without bias ``s = m + x``,
    the content-visible part ``m`` (``w_match z_match``), the id-only part ``x`` (collaborative
    term + quality), and what the pick's likelihood needs: ``logr`` (log of the sum of
    ``exp(sharpness * s_k)`` over the shortlist's other items; -inf when there is none) and
    ``dup`` (copies of the picked item in the shortlist)."""

    item: Array  # int64 [R]
    s: Array  # float32 [R]
    m: Array  # float32 [R]
    x: Array  # float32 [R]
    logr: Array  # float64 [R]
    dup: Array  # int16 [R]

    def take(self, idx: Array) -> "_Drawn":
        return _Drawn(self.item[idx], self.s[idx], self.m[idx], self.x[idx], self.logr[idx], self.dup[idx])

    def put(self, idx: Array, other: "_Drawn") -> None:
        for name in ("item", "s", "m", "x", "logr", "dup"):
            getattr(self, name)[idx] = getattr(other, name)


def _times(cfg: AdsWorldConfig) -> Dict[str, int]:
    t = cfg.timeline
    d0 = t.back_catalogue_days
    return {
        "log_start": d0 * DAY,
        "log_end": (d0 + t.log_days) * DAY,
        "impressions_start": (d0 + int(round(t.warmup * t.log_days))) * DAY,
        "val": (d0 + int(round(t.val_start * t.log_days))) * DAY,
        "test": (d0 + int(round(t.test_start * t.log_days))) * DAY,
    }


def _draw(cfg: AdsWorldConfig, cat: _Catalogue, tables: _DayTables, users: _Users, row_user: Array,
          row_t: Array, sharpness: Union[float, Array], cal: _Calibration, rng: np.random.Generator,
          stats: Optional[Dict[str, Any]] = None, event: Optional[Array] = None) -> _Drawn:  # fmt: skip
    """One item per row (user-local index, timestamp); see :class:`_Drawn`.

    ``sharpness`` (a float or one per row) multiplies the logit in the pick. ``event`` (bool per
    row): with ``softmax`` pooling an event row picks by the match of the interest component it
    was drawn from (explore rows: the pooled match). With ``stats`` the raw matches of all
    shortlisted candidates are accumulated there: ``stats["comp"]`` / ``stats["pooled"]`` as
    ``[count, sum, sum of squares]`` of the component / pooled raw match, ``stats["z"]`` a list
    of the standardized pooled matches.
    """
    times = _times(cfg)
    span = float(times["log_end"] - times["log_start"])
    m, explore = cfg.users.shortlist, cfg.users.explore
    ck = cfg.clicks
    wm, wq, wc = ck.w_match, ck.w_quality, ck.w_collab
    softmax = ck.interest_pooling == "softmax"
    temp = ck.interest_temperature
    inv_sqrt_r = 1.0 / math.sqrt(cfg.collab.rank)
    n_rows = len(row_user)
    out = _Drawn(np.empty(n_rows, dtype=np.int64), np.empty(n_rows, dtype=np.float32),
                 np.empty(n_rows, dtype=np.float32), np.empty(n_rows, dtype=np.float32),
                 np.empty(n_rows, dtype=np.float64), np.empty(n_rows, dtype=np.int16))  # fmt: skip
    sharp = np.broadcast_to(np.asarray(sharpness, dtype=np.float32), (n_rows,))
    is_event = np.zeros(n_rows, dtype=bool) if event is None else event
    days = row_t // DAY
    order = np.argsort(days, kind="stable")
    uniq, starts = np.unique(days[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    for d, a, b in zip(uniq.tolist(), starts.tolist(), ends.tolist()):
        idx = order[a:b]
        r = len(idx)
        ru = row_user[idx]
        cs, lo, hi = tables.day(int(d))
        frac = (row_t[idx] - times["log_start"]) / span
        ang = (cfg.users.interest_drift * frac)[:, None]  # rotation keeps the logits' spread constant
        lam = np.cos(ang) * users.lam0[ru] + np.sin(ang) * users.lam1[ru]
        pi = np.exp(lam - lam.max(axis=1, keepdims=True))
        pi /= pi.sum(axis=1, keepdims=True)
        j = np.minimum((rng.random(r)[:, None] > np.cumsum(pi, axis=1)).sum(axis=1), pi.shape[1] - 1)
        c = users.cats[ru, j]
        ex = rng.random(r) < explore
        if ex.any():
            ccum = np.cumsum(hi - lo)
            pick_c = np.searchsorted(ccum, rng.random(int(ex.sum())) * ccum[-1], side="right")
            c[ex] = np.minimum(pick_c, len(ccum) - 1)
        clo, chi = lo[c][:, None], hi[c][:, None]
        u = clo + rng.random((r, m)) * (chi - clo)
        u = np.minimum(u, np.nextafter(chi, -np.inf))  # stay inside the category's mass
        cand = cat.by_cat[np.searchsorted(cs, u, side="right")]
        attrs = cat.attrs[cand]  # [r, m, k]
        zc: Optional[Array] = None
        if softmax:  # soft maximum over the interest components
            comp = np.matmul(users.taste[ru], attrs.transpose(0, 2, 1))  # [r, K, m]
            if stats is not None and "comp" in stats:
                _accumulate(stats["comp"], comp)
            z: Array = (comp - cal.comp_mean) / cal.comp_std
            zc = z
            raw = soft_max_pool(pi, z, temp)
        else:  # the single mixed interest vector
            interest = np.einsum("rj,rjd->rd", pi.astype(np.float32), users.taste[ru])
            raw = np.einsum("rd,rmd->rm", interest, attrs)
        if stats is not None and "pooled" in stats:
            _accumulate(stats["pooled"], raw)
        content = wm * (raw - cal.match_mean) / cal.match_std
        if stats is not None and "z" in stats:
            stats["z"].append(((raw - cal.match_mean) / cal.match_std).ravel())
        idpart = wq * cat.quality[cand]
        if wc > 0:
            cu = np.matmul(cat.collab[cand], users.factor[ru][:, :, None])[:, :, 0]  # [r, m]
            idpart = idpart + (wc * inv_sqrt_r) * cu
        s = content + idpart
        s_pick = s
        ev = is_event[idx]
        if zc is not None and ev.any():  # an event follows the one interest component it was drawn from
            z_ev = zc[np.arange(r), j]
            z_ev = np.where(ex[:, None], (raw - cal.match_mean) / cal.match_std, z_ev)
            s_pick = np.where(ev[:, None], wm * z_ev + idpart, s)
        sh = sharp[idx][:, None]
        pick = np.argmax(sh * s_pick + rng.gumbel(size=(r, m)), axis=1)
        rows = np.arange(r)
        item = cand[rows, pick]
        same = cand == item[:, None]
        others = np.where(same, -np.inf, sh.astype(np.float64) * s_pick)
        omax = others.max(axis=1)
        safe = np.where(np.isfinite(omax), omax, 0.0)
        with np.errstate(divide="ignore"):
            logr = safe + np.log(np.exp(others - safe[:, None]).sum(axis=1))
        out.item[idx] = item
        out.s[idx] = s[rows, pick]
        out.m[idx] = content[rows, pick]
        out.x[idx] = idpart[rows, pick]
        out.logr[idx] = np.where(np.isfinite(omax), logr, -np.inf)
        out.dup[idx] = same.sum(axis=1)
    return out


def soft_max_pool(pi: Array, z: Array, temperature: float) -> Array:
    """The multi-interest match: ``T log sum_j pi_j exp(z_j / T)`` over interest components j.

    Args:
        pi: float [R, K] mixture weights (rows sum to 1).
        z: float32 [R, K, M] standardized match of component j with candidate m.
        temperature: ``T`` (> 0); ``T -> 0`` gives ``max_j z_j`` over components with weight,
            ``T -> inf`` the mixture mean ``sum_j pi_j z_j``.

    Returns:
        float32 [R, M].

    Example::

        soft_max_pool(np.array([[.5, .5]]), np.array([[[0.], [2.]]], np.float32), 0.25)  # about [[1.83]]
    """
    logpi = np.log(np.maximum(pi, 1e-30)).astype(np.float32)[:, :, None]
    y = logpi + z / np.float32(temperature)
    ymax = y.max(axis=1, keepdims=True)
    return (np.float32(temperature) * (ymax[:, 0] + np.log(np.exp(y - ymax).sum(axis=1)))).astype(np.float32)


def _accumulate(acc: List[float], x: Array) -> None:
    acc[0] += x.size
    acc[1] += float(x.sum(dtype=np.float64))
    acc[2] += float(np.square(x, dtype=np.float64).sum())


def _moments(acc: List[float]) -> Tuple[float, float]:
    mean = acc[1] / max(acc[0], 1.0)
    return mean, math.sqrt(max(acc[2] / max(acc[0], 1.0) - mean * mean, 1e-12))


def _sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


def _impression_rows(cfg: AdsWorldConfig, users: _Users, rng: np.random.Generator) -> Tuple[Array, Array]:
    times = _times(cfg)
    row_user = np.repeat(np.arange(len(users.num_impressions)), users.num_impressions)
    row_t = rng.integers(times["impressions_start"], times["log_end"], len(row_user))
    return row_user, row_t


def _calibrate(cfg: AdsWorldConfig, cat: _Catalogue, tables: _DayTables) -> _Calibration:
    """Match moments and bias from a pilot of separate users (stream 3), deterministic per seed.

    Candidate draws do not depend on the calibration (the pick comes after them), so the
    ``softmax`` pooling's two moment passes (components, then the pooled match) see the same
    shortlists."""
    n = min(cfg.users.num_users, _PILOT_USERS)
    rng = _rng(cfg.seed, 3)
    users = _make_users(cfg, cat, n, rng, _rng(cfg.seed, 8))
    row_user, row_t = _impression_rows(cfg, users, rng)
    cal = _Calibration()
    if cfg.clicks.interest_pooling == "softmax":
        comp = [0.0, 0.0, 0.0]
        _draw(cfg, cat, tables, users, row_user, row_t, 0.0, cal, _rng(cfg.seed, 3, 1), {"comp": comp})
        cal.comp_mean, cal.comp_std = _moments(comp)
    pooled = [0.0, 0.0, 0.0]
    _draw(cfg, cat, tables, users, row_user, row_t, 0.0, cal, _rng(cfg.seed, 3, 1), {"pooled": pooled})
    cal.match_mean, cal.match_std = _moments(pooled)
    zs: Dict[str, Any] = {"z": []}
    s = _draw(cfg, cat, tables, users, row_user, row_t, cfg.clicks.targeting, cal, _rng(cfg.seed, 3, 2), zs).s
    z = np.concatenate(zs["z"]) if zs["z"] else np.zeros(1)
    cal.match_nodes = np.quantile(z.astype(np.float64), (np.arange(_MATCH_NODES) + 0.5) / _MATCH_NODES).tolist()
    lo, hi = -30.0, 30.0
    for _ in range(80):  # bisection: mean sigmoid(bias + s) = base_rate
        mid = 0.5 * (lo + hi)
        if float(_sigmoid(mid + s.astype(np.float64)).mean()) < cfg.clicks.base_rate:
            lo = mid
        else:
            hi = mid
    cal.bias = 0.5 * (lo + hi)
    return cal


_FRESH_TRIES = 20


def _seen_before(n_items: int, ev_user: Array, ev_t: Array, ev_item: Array, im_user: Array, im_t: Array,
                 im_item: Array) -> Array:  # fmt: skip
    """``bool [R]``: whether each impression's item is among its user's events before its time."""
    q = im_user.astype(np.int64) * n_items + im_item
    if len(ev_user) == 0:
        return np.zeros(len(q), dtype=bool)
    key = ev_user.astype(np.int64) * n_items + ev_item
    order = np.lexsort((ev_t, key))
    k, first = np.unique(key[order], return_index=True)
    first_t = ev_t[order][first]
    pos = np.minimum(np.searchsorted(k, q), len(k) - 1)
    return (k[pos] == q) & (first_t[pos] < im_t)


def _fresh(cfg: AdsWorldConfig, cat: _Catalogue, tables: _DayTables, users: _Users, cal: _Calibration,
           rng: np.random.Generator, ev_user: Array, ev_t: Array, ev_item: Array, im_user: Array, im_t: Array,
           drawn: _Drawn) -> Tuple[Array, Array, _Drawn]:  # fmt: skip
    """Impressions redrawn until none repeats an earlier event of its user (``fresh_impressions``)."""
    n_items = len(cat.category)
    drawn = drawn.take(np.arange(len(drawn.item)))  # a copy
    bad = np.flatnonzero(_seen_before(n_items, ev_user, ev_t, ev_item, im_user, im_t, drawn.item))
    for _ in range(_FRESH_TRIES):
        if bad.size == 0:
            break
        again = _draw(cfg, cat, tables, users, im_user[bad], im_t[bad], cfg.clicks.targeting, cal, rng)
        drawn.put(bad, again)
        still = _seen_before(n_items, ev_user, ev_t, ev_item, im_user[bad], im_t[bad], drawn.item[bad])
        bad = bad[still]
    keep = np.ones(len(im_user), dtype=bool)
    keep[bad] = False
    return im_user[keep], im_t[keep], drawn.take(np.flatnonzero(keep))


def _chunk(cfg: AdsWorldConfig, cat: _Catalogue, tables: _DayTables, cal: _Calibration, index: int,
           u0: int, n: int) -> Tuple[Dict[str, Array], Dict[str, Array], Array]:  # fmt: skip
    """Events, impressions and collaborative factors (float32 [n, r]) of users ``u0 .. u0 + n - 1``
    (stream 2, chunk ``index``; the user factors: stream 7, chunk ``index``)."""
    rng = _rng(cfg.seed, 2, index)
    times = _times(cfg)
    users = _make_users(cfg, cat, n, rng, _rng(cfg.seed, 7, index))
    ev_user = np.repeat(np.arange(n), users.num_events)
    ev_t = rng.integers(times["log_start"], times["log_end"], len(ev_user))
    order = np.lexsort((ev_t, ev_user))
    ev_user, ev_t = ev_user[order], ev_t[order]
    im_user, im_t = _impression_rows(cfg, users, rng)
    ne = len(ev_user)
    # one pass over the days for both: events pick by click odds, impressions by the ad system's targeting
    sharp = np.concatenate([np.ones(ne), np.full(len(im_user), cfg.clicks.targeting)]).astype(np.float32)
    is_event = np.concatenate([np.ones(ne, dtype=bool), np.zeros(len(im_user), dtype=bool)])
    drawn = _draw(cfg, cat, tables, users, np.concatenate([ev_user, im_user]), np.concatenate([ev_t, im_t]),
                  sharp, cal, rng, event=is_event)  # fmt: skip
    ev_item = drawn.item[:ne]
    im = drawn.take(np.arange(ne, len(drawn.item)))
    if cfg.users.fresh_impressions:
        im_user, im_t, im = _fresh(cfg, cat, tables, users, cal, rng, ev_user, ev_t, ev_item, im_user, im_t, im)
    p_true = _sigmoid(cal.bias + im.s.astype(np.float64)).astype(np.float32)
    label = (rng.random(len(p_true)) < p_true).astype(np.float32)
    split = np.where(im_t < times["val"], 0, np.where(im_t < times["test"], 1, 2)).astype(np.int8)
    events = {"user_id": ev_user.astype(np.int64) + u0, "item_id": ev_item, "timestamp": ev_t.astype(np.int64)}
    impressions = {"user_id": im_user.astype(np.int64) + u0, "item_id": im.item, "timestamp": im_t.astype(np.int64),
                   "label": label, "p_true": p_true, "split": split, "logit_content": im.m.astype(np.float32),
                   "logit_id": im.x.astype(np.float32), "pick_logr": im.logr.astype(np.float32),
                   "pick_dup": im.dup.astype(np.int16)}  # fmt: skip
    return events, impressions, users.factor


def _pick_logw(tau: float, logit: Array, logr: Array, dup: Array) -> Array:
    """``log P(this item is picked | its logit)`` [R, K] for logits [R, K]: the softmax pick of the
    shortlist, ``dup e^(tau s) / (dup e^(tau s) + R)``, as ``log sigmoid(tau s + log dup - log R)``."""
    with np.errstate(over="ignore"):
        y = tau * logit + np.log(np.maximum(dup, 1).astype(np.float64))[:, None] - logr[:, None]
        return -np.logaddexp(0.0, -y)


def _posterior_mean(bias: float, known: Array, nodes: Array, logprior: Array, tau: float, logr: Array,
                    dup: Array) -> Array:  # fmt: skip
    """``E[sigmoid(bias + known + V) | the pick]`` [R], ``V`` on ``nodes`` [K] with prior log-weights
    ``logprior`` [K], reweighted by the pick's likelihood (:func:`_pick_logw`)."""
    total = known.astype(np.float64)[:, None] + nodes[None, :]
    logw = logprior[None, :] + _pick_logw(tau, total, logr.astype(np.float64), dup)
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    return (w * _sigmoid(bias + total)).sum(axis=1) / w.sum(axis=1)


def ceilings(cfg: AdsWorldConfig, cal: _Calibration, m: Array, x: Array, logr: Array, dup: Array,
             shift_x: float = 0.0, shift_m: float = 0.0, nodes: int = 48) -> Tuple[Array, Array]:  # fmt: skip
    """The content and id ceilings of impressions: ``(p_content [R], p_id [R])``.

    ``p_true = sigmoid(bias + m + x)``, ``m`` the content-visible part of the logit (the match
    term) and ``x`` the id-only part (collaborative term + item quality). The impression's item was
    picked from a shortlist with probability ``dup e^(tau s) / (dup e^(tau s) + R)`` (``tau`` =
    ``clicks.targeting``, ``R`` = ``exp(logr)`` the other items' weights, ``dup`` the item's copies),
    so given what is known the unknown part is *tilted* by that pick.

    * ``p_content = E[p | m, R, dup]``: ``x`` integrated over its exact prior
      ``N(0, w_collab^2 + w_quality^2)`` (independent of ``m``, ``R`` and the shortlist) times the
      pick's likelihood, by probabilists' Gauss-Hermite quadrature with ``nodes`` nodes.
    * ``p_id = E[p | x, R, dup]``: ``m`` integrated over the pilot's distribution of a candidate's
      standardized match (64 equal-weight mid-quantiles, ``cal.match_nodes``, times ``w_match``)
      times the pick's likelihood. This prior is the marginal over users and categories, so
      ``p_id`` is approximate where ``p_content`` is exact.

    Both condition on ``R`` and ``dup``, which no model sees, so they are slightly sharper than
    ``E[p | m]`` / ``E[p | x]``. With ``users.fresh_impressions`` an impression was redrawn until its
    item was not among the user's earlier events, which the priors ignore (approximate there). ``shift_x`` / ``shift_m`` move the unknown part's prior mean: the
    priors are those of the generative process, but one world is one draw of its catalogue (a few
    head items take much of the traffic), so the realized average of the unknown part differs a
    little from 0; :func:`_fit_shift` fits it on training impressions, as any model learns its
    intercept.

    Args:
        cfg: the world's config.
        cal: its calibration (bias, match nodes).
        m, x: float [R] parts of the logit.
        logr: float [R] log weight of the shortlist's other items (-inf: none).
        dup: int [R] copies of the item in its shortlist (>= 1).
        nodes: Gauss-Hermite nodes.

    Example::

        p_content, p_id = ceilings(cfg, cal, drawn.m, drawn.x, drawn.logr, drawn.dup)
    """
    tau = cfg.clicks.targeting
    x_nodes, x_logw, mn = _ceiling_priors(cfg, cal, nodes)
    out_c = np.empty(len(m), dtype=np.float64)
    out_i = np.empty(len(m), dtype=np.float64)
    for a in range(0, len(m), _CEILING_CHUNK):
        sl = slice(a, a + _CEILING_CHUNK)
        out_c[sl] = _posterior_mean(cal.bias, m[sl], shift_x + x_nodes, x_logw, tau, logr[sl], dup[sl])
        out_i[sl] = _posterior_mean(cal.bias, x[sl], shift_m + mn, np.zeros(len(mn)), tau, logr[sl], dup[sl])
    return out_c, out_i


def _ceiling_priors(cfg: AdsWorldConfig, cal: _Calibration, nodes: int) -> Tuple[Array, Array, Array]:
    """The unknown parts' priors of :func:`ceilings` (and :func:`_fit_shift`): the id-only part's
    Gauss-Hermite nodes ``[nodes]`` and log-weights ``[nodes]`` (``N(0, w_collab^2 + w_quality^2)``),
    and the content part's equal-weight nodes ``[64]`` (``cal.match_nodes`` times ``w_match``)."""
    ck = cfg.clicks
    sd_x = math.sqrt(ck.w_quality**2 + (ck.w_collab**2 if ck.w_collab > 0 else 0.0))
    gh_x, gh_w = np.polynomial.hermite_e.hermegauss(nodes)
    mn = np.asarray(cal.match_nodes or [0.0], dtype=np.float64) * ck.w_match
    return sd_x * gh_x, np.log(gh_w), mn


def item_posterior_ceiling(cfg: AdsWorldConfig, cal: _Calibration, imp: Dict[str, Array], nodes_q: int = 49,
                           nodes_c: int = 12) -> Array:  # fmt: skip
    """The content ceiling plus each item's quality as learnable from the training impressions.

    ``p_content_item = E[p | m, shortlist, the item's training labels]``: the item's quality ``q_i``
    gets a posterior from the labels of its training impressions, prior ``N(0, 1)``, each label's
    likelihood ``P(y | m, q)`` with the collaborative term ``c ~ N(0, 1)`` integrated under that
    impression's pick tilt (independent across impressions: a user sees an item a few times at
    most); then, as for :func:`ceilings`, ``q`` and ``c`` are tilted by the evaluated impression's
    own pick. The training picks are not used as a likelihood of ``q``: only the shortlists an item
    won are recorded, not those it lost, so this is the label-only posterior (an approximation; its
    calibration is checked in the tests). Quadrature: ``q`` on ``nodes_q`` equally spaced points of
    [-4.5, 4.5] (a head item's posterior is narrow, so a fixed Gauss-Hermite rule would be too coarse
    there), ``c`` by Gauss-Hermite with ``nodes_c`` nodes. Items without a training impression get
    the content ceiling under the exact prior (no fitted shift). Training rows get NaN (their own
    label is in the posterior).

    Args:
        cfg: the world's config.
        cal: its calibration (the bias).
        imp: impression columns ``item_id``, ``label``, ``split``, ``logit_content``, ``pick_logr``,
            ``pick_dup`` (all [R]).
        nodes_q: grid points of the quality.
        nodes_c: of the collaborative term.

    Returns:
        float64 [R].

    Example::

        p = item_posterior_ceiling(cfg, cal, impressions)
    """
    ck = cfg.clicks
    tau = ck.targeting
    gq = np.linspace(-4.5, 4.5, nodes_q)
    wq = np.exp(-0.5 * gq**2)
    if ck.w_collab > 0:
        gc, wc = np.polynomial.hermite_e.hermegauss(nodes_c)
    else:
        gc, wc = np.zeros(1), np.ones(1)
    qv, cv = ck.w_quality * gq, ck.w_collab * gc
    wcn = (wc / wc.sum()).astype(np.float32)
    grid = (qv[:, None] + cv[None, :]).astype(np.float32)  # [G, C]
    item, split = imp["item_id"], imp["split"]
    train = np.flatnonzero(split == 0)
    seen = np.unique(item[train])  # rows of the posterior table: items with a training impression, then the prior
    n_items = len(seen) + 1
    slot = np.full(int(item.max(initial=-1)) + 1, len(seen), dtype=np.int64)
    slot[seen] = np.arange(len(seen))
    # per row: the pick's offset log(dup) - log R, so P(pick | s) = sigmoid(tau s + off)
    off = (np.log(np.maximum(imp["pick_dup"], 1).astype(np.float64)) - imp["pick_logr"].astype(np.float64))
    off = np.minimum(off, 80.0).astype(np.float32)  # no other item: the pick is certain
    zb = (imp["logit_content"].astype(np.float64) + cal.bias).astype(np.float32)  # bias + m
    mt = (tau * imp["logit_content"].astype(np.float64)).astype(np.float32) + off  # tau m + off
    tg = np.float32(tau) * grid
    step = max(1, (1 << 22) // grid.size)

    def parts(rows: Array) -> Tuple[Array, Array]:
        """``(P(click | q, c), wc P(pick | q, c))``, both float32 [B, G, C]."""
        with np.errstate(over="ignore"):
            sig = 1.0 / (1.0 + np.exp(-(zb[rows, None, None] + grid[None])))
            pick = wcn / (1.0 + np.exp(-(mt[rows, None, None] + tg[None])))
        return sig, pick

    loglik = np.zeros((n_items, len(qv)))
    for a in range(0, len(train), step):
        rows = train[a : a + step]
        sig, pick = parts(rows)
        y = imp["label"][rows][:, None, None] > 0.5
        # P(label | q) with c over its prior tilted by this pick, normalized per q: the picks are not
        # a likelihood of q here (only the shortlists an item won are recorded, not those it lost)
        py = np.where(y, sig, 1.0 - sig)
        l_row = np.log(np.maximum((pick * py).sum(axis=2), 1e-38) / np.maximum(pick.sum(axis=2), 1e-38))  # [B, G]
        for g in range(len(qv)):
            loglik[:, g] += np.bincount(slot[item[rows]], weights=l_row[:, g], minlength=n_items)
    logpost = np.log(wq / wq.sum())[None, :] + loglik  # [N, G], unnormalized
    post = np.exp(logpost - logpost.max(axis=1, keepdims=True)).astype(np.float32)
    out = np.full(len(item), np.nan)
    evals = np.flatnonzero(split > 0)
    for a in range(0, len(evals), step):
        rows = evals[a : a + step]
        sig, pick = parts(rows)
        w = post[slot[item[rows]]][:, :, None] * pick
        num = (w * sig).sum(axis=(1, 2), dtype=np.float64)
        out[rows] = num / np.maximum(w.sum(axis=(1, 2), dtype=np.float64), 1e-300)
    return out


def _fit_shift(cfg: AdsWorldConfig, cal: _Calibration, imp: Dict[str, Array]) -> Tuple[float, float]:
    """``(shift_x, shift_m)`` of :func:`ceilings`: each ceiling's mean equals the mean ``p_true`` on
    a seeded sample of at most 10,000 training impressions (bisection; stream 9)."""
    rows = np.flatnonzero(imp["split"] == 0)
    if rows.size == 0:
        return 0.0, 0.0
    if rows.size > _SHIFT_SAMPLE:
        rows = np.sort(_rng(cfg.seed, 9).choice(rows, _SHIFT_SAMPLE, replace=False))
    m, x = imp["logit_content"][rows], imp["logit_id"][rows]
    logr, dup = imp["pick_logr"][rows].astype(np.float64), imp["pick_dup"][rows]
    target = float(imp["p_true"][rows].astype(np.float64).mean())
    ck = cfg.clicks
    x_nodes, x_logw, mn = _ceiling_priors(cfg, cal, 48)
    setups = ((m, x_nodes, x_logw), (x, mn, np.zeros(len(mn))))
    out = []
    for known, nodes, logprior in setups:
        lo, hi = -5.0, 5.0
        for _ in range(30):  # the mean ceiling increases with the shift
            mid = 0.5 * (lo + hi)
            got = float(_posterior_mean(cal.bias, known, mid + nodes, logprior, ck.targeting, logr, dup).mean())
            lo, hi = (mid, hi) if got < target else (lo, mid)
        out.append(0.5 * (lo + hi))
    return out[0], out[1]


def _write_content(cfg: AdsWorldConfig, cat: _Catalogue, folder: Path, progress: bool) -> None:
    from tqdm import tqdm

    c = cfg.content
    folder.mkdir(parents=True, exist_ok=True)
    n = cat.attrs.shape[0]
    views = [("text", c.text_dim, c.text_slice, c.text_noise), ("image", c.image_dim, c.image_slice, c.image_noise)]
    for v, (name, dim, (lo, hi), noise) in enumerate(views):
        prng = _rng(cfg.seed, 5, v)
        w1 = prng.standard_normal((hi - lo, c.hidden_width), dtype=np.float32) * np.float32(
            math.sqrt(cfg.catalogue.attr_dim / (hi - lo)))  # pre-activation std about 1
        w2 = prng.standard_normal((c.hidden_width, dim), dtype=np.float32) / np.float32(math.sqrt(c.hidden_width))
        probe = np.tanh(cat.attrs[: min(n, _CONTENT_CHUNK), lo:hi] @ w1) @ w2
        scale = np.float32(1.0 / max(float(probe.std()), 1e-12))
        chunks = range(0, n, _CONTENT_CHUNK)
        with open(folder / f"{name}.npy", "wb") as f:  # sequential writes: no memory map held in RAM
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
                      "shape": (n, dim)}  # fmt: skip
            np.lib.format.write_array_header_1_0(f, header)
            for ci, s0 in enumerate(tqdm(chunks, desc=f"content {name}", unit="chunk", disable=not progress)):
                x = (np.tanh(cat.attrs[s0 : s0 + _CONTENT_CHUNK, lo:hi] @ w1) @ w2) * scale
                x += _rng(cfg.seed, 4, v, ci).standard_normal(x.shape, dtype=np.float32) * np.float32(noise)
                x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
                f.write(np.ascontiguousarray(x, dtype=np.float16).tobytes())


def _peak_rss_mb() -> float:
    """This process's own peak resident set (VmHWM; unlike ru_maxrss it is not inherited over exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def normalized_entropy(label: Array, p: Array, base_rate: Optional[float] = None) -> float:
    """NE: mean log loss of ``p`` [R] on ``label`` [R] over the entropy of ``base_rate``.

    Args:
        label: 0/1 labels, shape [R].
        p: predicted probabilities, shape [R] (clipped to [1e-7, 1 - 1e-7]).
        base_rate: the rate whose entropy normalizes; default the labels' mean.

    Example::

        normalized_entropy(np.array([0, 1.]), np.array([.5, .5]))   # 1.0
    """
    y = np.asarray(label, dtype=np.float64)
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    br = float(y.mean()) if base_rate is None else float(base_rate)
    if not 0.0 < br < 1.0 or len(y) == 0:
        return float("nan")
    ll = -float(np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))
    return ll / -(br * math.log(br) + (1 - br) * math.log1p(-br))


def auc(label: Array, score: Array) -> float:
    """ROC AUC of ``score`` [R] for 0/1 ``label`` [R] (rank statistic, ties averaged); nan if one class."""
    y = np.asarray(label) > 0.5
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    _, inv, counts = np.unique(np.asarray(score), return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank per distinct score
    return float((avg_rank[inv][y].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def _skew(counts: Array) -> Dict[str, float]:
    """Shares of the top 0.1% and the bottom 94.4% of items (all N, zero counts included)."""
    n = len(counts)
    srt = np.sort(counts.astype(np.float64))[::-1]
    total = max(float(srt.sum()), 1e-300)
    top = max(1, int(round(META_TOP[0] * n)))
    bottom = int(round(META_BOTTOM[0] * n))
    return {"top_0.1pct_share": float(srt[:top].sum() / total),
            "bottom_94.4pct_share": float(srt[n - bottom :].sum() / total),
            "items_seen": float((counts > 0).mean())}  # fmt: skip


def _write_parquet(path: Path, cols: Dict[str, Array]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({k: pa.array(v) for k, v in cols.items()}), path, row_group_size=1 << 20)


_WORKER: Dict[str, Any] = {}


def _init_worker(cfg: AdsWorldConfig, cal: _Calibration) -> None:
    """Pool initializer: rebuilds the (deterministic) catalogue in the worker process."""
    cat = _build_catalogue(cfg)
    _WORKER.update(cfg=cfg, cat=cat, tables=_DayTables(cat, cfg), cal=cal)


def _run_job(job: Tuple[int, int, int]) -> Tuple[Dict[str, Array], Dict[str, Array], Array, float]:
    w = _WORKER
    ev, im, fac = _chunk(w["cfg"], w["cat"], w["tables"], w["cal"], *job)
    return ev, im, fac, _peak_rss_mb()


def _bounded_map(pool: Any, jobs: List[Tuple[int, int, int]], window: int) -> Iterator[Any]:
    """Results of ``_run_job`` over ``jobs`` in order, with at most ``window`` chunks in flight."""
    pending: Deque[Any] = deque()
    for job in jobs:
        pending.append(pool.submit(_run_job, job))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def world_footprint(cfg: AdsWorldConfig) -> Tuple[int, int]:
    """A rough upper estimate of the memory and disk bytes :func:`generate_world` needs for ``cfg``.

    Calibrated on the full world (10^6 items, 5,000 users: 1.3 GB peak memory, 1.1 GB on disk):
    about 1 KB of memory per item beside a fixed 0.8 GB; on disk the float16 content plus about
    16 bytes per event. Used to refuse a world that cannot fit before anything is allocated.
    """
    u = cfg.users
    mean_events = min(float(u.max_events), u.median_events * math.exp(u.events_sigma**2 / 2))
    events = cfg.users.num_users * mean_events
    width = cfg.content.text_dim + cfg.content.image_dim
    items = cfg.catalogue.num_items
    memory = int(0.8e9 + items * (1024 + 4 * cfg.catalogue.attr_dim) + cfg.chunk_users * mean_events * 64)
    disk = int(items * width * 2 + events * 16)
    return memory, disk


def check_world_fits(cfg: AdsWorldConfig, out: PathLike) -> None:
    """Raises :class:`ConfigError` when :func:`world_footprint` exceeds this machine's memory or
    the free space where ``out`` goes, naming the sizes to lower."""
    import shutil

    memory, disk = world_footprint(cfg)
    sizes = (f"catalogue.num_items={cfg.catalogue.num_items:,}, users.num_users={cfg.users.num_users:,}, "
             f"users.median_events={cfg.users.median_events:,}")
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: skip the memory check
        ram = 0
    if ram and memory > ram:
        raise ConfigError(f"world too large for this machine: {sizes} need about {memory / 2**30:.1f} GiB of "
                          f"memory, the machine has {ram / 2**30:.1f} GiB; lower those sizes")
    target = Path(out).absolute()
    existing = next((q for q in (target, *target.parents) if q.exists()), None)
    if existing is not None:
        free = shutil.disk_usage(existing).free
        if disk > free:
            raise ConfigError(f"world too large for the disk: {sizes} need about {disk / 2**30:.1f} GiB in {existing}, "
                              f"{free / 2**30:.1f} GiB are free; lower those sizes or choose another --out")


def generate_world(cfg: AdsWorldConfig, out: PathLike, progress: bool = True, workers: int = 1) -> Dict[str, Any]:
    """Generates the world of ``cfg`` into folder ``out`` (atomically) and returns its manifest.

    Memory: the catalogue (N x k float32 attributes, a few N-vectors), one chunk of users'
    events and all impressions (small); events stream to Parquet one chunk at a time.

    Args:
        cfg: the world's config (:func:`~torchrec_side.data.adsworld_config.load_world_config`).
        out: the folder to write; a previous folder there is replaced only once this one is done.
        progress: tqdm bars over content chunks and user chunks.
        workers: processes generating user chunks (spawned; each rebuilds the catalogue). The
            world is the same for any value.

    Returns:
        The manifest (also written as ``manifest.json``).

    Example::

        manifest = generate_world(load_world_config("tiny", ["seed=1"]), "runs/w", progress=False)
        manifest["oracle"]["test"]["ne"]
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    check_world_fits(cfg, out)
    t_start = time.time()
    times = _times(cfg)
    n_items, n_users = cfg.catalogue.num_items, cfg.users.num_users
    with atomic_dir(out, "manifest.json") as tmp:
        cat = _build_catalogue(cfg)
        _write_parquet(tmp / "items.parquet", {
            "item_id": np.arange(n_items, dtype=np.int64), "category": cat.category,
            "subcategory": cat.subcategory, "release_time": cat.release_day * DAY, "quality": cat.quality})  # fmt: skip
        _write_content(cfg, cat, tmp / "content", progress)
        tables = _DayTables(cat, cfg)
        cal = _calibrate(cfg, cat, tables)
        schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.int64())])
        ev_counts = np.zeros(n_items, dtype=np.int64)
        train_items = np.zeros(n_items, dtype=bool)
        lengths: List[Array] = []
        worker_rss = 0.0
        parts: List[Dict[str, Array]] = []
        factors: List[Array] = []
        jobs = [(ci, u0, min(cfg.chunk_users, n_users - u0)) for ci, u0 in enumerate(range(0, n_users, cfg.chunk_users))]
        workers = max(1, min(workers, len(jobs)))
        pool = None
        if workers > 1:  # each chunk has its own random stream: the world does not depend on this
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                       initargs=(cfg, cal))  # fmt: skip
            results = _bounded_map(pool, jobs, 2 * workers)
        else:
            results = ((*_chunk(cfg, cat, tables, cal, *job), 0.0) for job in jobs)
        try:
            with pq.ParquetWriter(tmp / "events.parquet", schema) as writer:
                for (_, u0, n), (ev, im, fac, rss) in zip(jobs, tqdm(results, total=len(jobs), desc="users", unit="chunk",
                                                           disable=not progress)):  # fmt: skip
                    writer.write_table(pa.table({k: pa.array(v) for k, v in ev.items()}, schema=schema),
                                       row_group_size=1 << 20)  # fmt: skip
                    ev_counts += np.bincount(ev["item_id"], minlength=n_items)
                    train_items[ev["item_id"][ev["timestamp"] < times["val"]]] = True
                    lengths.append(np.bincount(ev["user_id"] - u0, minlength=n))
                    parts.append(im)
                    factors.append(fac)
                    worker_rss = max(worker_rss, rss)
                    del ev
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        imp = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        del parts
        order = np.lexsort((imp["item_id"], imp["user_id"], imp["timestamp"]))
        imp = {k: v[order] for k, v in imp.items()}
        shift_x, shift_m = _fit_shift(cfg, cal, imp)
        p_content, p_id = ceilings(cfg, cal, imp["logit_content"], imp["logit_id"],
                                   imp["pick_logr"].astype(np.float64), imp["pick_dup"], shift_x, shift_m)  # fmt: skip
        imp["p_content"], imp["p_id"] = p_content.astype(np.float32), p_id.astype(np.float32)
        imp["p_content_item"] = item_posterior_ceiling(cfg, cal, imp).astype(np.float32)
        _write_parquet(tmp / "impressions.parquet", imp)
        (tmp / "hidden").mkdir()
        np.save(tmp / "hidden" / "item_collab.npy", cat.collab)
        np.save(tmp / "hidden" / "user_collab.npy", np.concatenate(factors))
        seconds = time.time() - t_start
        manifest = _manifest(cfg, cat, cal, imp, ev_counts, train_items, np.concatenate(lengths), seconds)
        manifest["ceilings"]["prior_shift"] = {"id_part": shift_x, "content_part": shift_m}
        manifest["peak_rss_worker_mb"] = round(worker_rss, 1)
        write_json(tmp / "manifest.json", manifest)
    return manifest


def _manifest(cfg: AdsWorldConfig, cat: _Catalogue, cal: _Calibration, imp: Dict[str, Array], ev_counts: Array,
              train_items: Array, lengths: Array, seconds: float) -> Dict[str, Any]:  # fmt: skip
    times = _times(cfg)
    split, label, p_true = imp["split"], imp["label"], imp["p_true"]
    train_rate = float(label[split == 0].mean()) if (split == 0).any() else float("nan")
    oracle: Dict[str, Dict[str, float]] = {}
    for code, name in enumerate(("train", "val", "test")):
        sel = split == code
        y, p = label[sel], p_true[sel]
        oracle[name] = {
            "ne": normalized_entropy(y, p), "auc": auc(y, p), "base_rate": float(y.mean()) if sel.any() else float("nan"),
            "mean_p_true": float(p.mean()) if sel.any() else float("nan"),
            "constant_ne": normalized_entropy(y, np.full(len(y), train_rate)),  # the train base rate as predictor
        }  # fmt: skip
    ceil = _ceilings_record(cfg, imp, train_rate)
    cold = cat.release_day * DAY >= times["test"]
    test = split == 2
    im_counts = np.bincount(imp["item_id"], minlength=len(cat.category))
    train_counts = np.bincount(imp["item_id"][split == 0], minlength=len(cat.category))
    train_imp = train_counts > 0
    q = np.percentile(lengths, [50, 90, 99]).tolist() if len(lengths) else [0.0] * 3
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config_to_dict(cfg),
        "num_items": int(len(cat.category)),
        "num_users": int(cfg.users.num_users),
        "num_events": int(ev_counts.sum()),
        "impressions": {name: int((split == code).sum()) for code, name in enumerate(("train", "val", "test"))},
        "split_times": {"val": times["val"], "test": times["test"]},
        "time_range": {"log_start": times["log_start"], "impressions_start": times["impressions_start"],
                       "log_end": times["log_end"], "day_seconds": DAY},
        "oracle": oracle,
        "ceilings": ceil,
        "train_impressions_per_item": {
            "mean": float(train_counts.mean()), "median": float(np.median(train_counts)),
            "items_with_any": float((train_counts > 0).mean())},
        "skew": {
            "target": {"top_0.1pct_share": META_TOP[1], "bottom_94.4pct_share": META_BOTTOM[1],
                       "source": "Zheng et al., arXiv 2504.02137 (Meta ads catalogue)"},
            "impressions": _skew(im_counts),
            "events": _skew(ev_counts),
            "base_weights": _skew(cat.weight),
        },
        "cold": {
            "num_items": int(cold.sum()),
            "test_impression_share": float(cold[imp["item_id"][test]].mean()) if test.any() else 0.0,
            "in_train_events": int((cold & train_items).sum()),
            "in_train_impressions": int((cold & train_imp).sum()),
        },
        "events_per_user": {"median": q[0], "p90": q[1], "p99": q[2], "max": int(lengths.max(initial=0)),
                            "mean": float(lengths.mean()) if len(lengths) else 0.0},
        "num_categories": int(cfg.catalogue.num_categories),
        "num_subcategories": int(cfg.catalogue.num_categories * cfg.catalogue.subcategories_per_category),
        "calibration": {"bias": cal.bias, "match_mean": cal.match_mean, "match_std": cal.match_std,
                        "comp_mean": cal.comp_mean, "comp_std": cal.comp_std, "match_nodes": cal.match_nodes},
        "seconds": round(seconds, 2),
        "cpu_seconds": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
                             + sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2]), 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "peak_rss_worker_mb": 0.0,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
    }  # fmt: skip


_CEILING_NAMES: Tuple[Tuple[str, str], ...] = (("oracle", "p_true"), ("content", "p_content"), ("id", "p_id"),
                                               ("content_item", "p_content_item"))


def _ceilings_record(cfg: AdsWorldConfig, imp: Dict[str, Array], train_rate: float) -> Dict[str, Any]:
    """Per split: NE / AUC of the oracle, content and id ceilings and each one's NE gain (%) over
    the train base rate as a constant predictor."""
    out: Dict[str, Any] = {
        "method": ("p_true = sigmoid(bias + m + x), m = w_match z_match (content-visible), x = w_collab c_ui + "
                   "w_quality q_i (id-only). content = E[p | m, shortlist]: x over its exact prior "
                   "N(0, w_collab^2 + w_quality^2) tilted by the ad system's softmax pick (sharpness clicks.targeting) "
                   "among the shortlist's other items, Gauss-Hermite quadrature, 48 nodes. id = E[p | x, shortlist]: "
                   "m over the pilot's 64 quantiles of a candidate's standardized match, same tilt (approximate: "
                   "the marginal over users). Both condition on the shortlist's other items, which no model sees. "
                   "content_item = E[p | m, shortlist, the item's training labels]: the item quality's Bayes "
                   "posterior from its training labels (prior N(0, 1); label-only, approximate), c_ui integrated; "
                   "q on 49 grid points, c by Gauss-Hermite (12 nodes); val / test only. "
                   "Not an upper bound where the target repeats a history event: a repeat says the item was "
                   "clicked before (high x) and content can see repeats."),
        "columns": {name: col for name, col in _CEILING_NAMES},
        "logit_std": {"content": cfg.clicks.w_match,
                      "id": math.sqrt(cfg.clicks.w_quality**2 + cfg.clicks.w_collab**2)},
    }
    label, split = imp["label"], imp["split"]
    for code, name in enumerate(("train", "val", "test")):
        sel = split == code
        if not sel.any():
            continue
        y = label[sel]
        const = normalized_entropy(y, np.full(len(y), train_rate))
        rec: Dict[str, Any] = {"constant_ne": const}
        for cname, col in _CEILING_NAMES:
            if col not in imp or (cname == "content_item" and code == 0):
                continue  # content_item: no train value (the posterior holds the row's own label)
            p = imp[col][sel]
            ne = normalized_entropy(y, p)
            rec[cname] = {"ne": ne, "auc": auc(y, p), "mean_p": float(p.mean()),
                          "ne_gain_over_constant_pct": 100.0 * (const - ne) / const if const == const else float("nan")}
        og = rec["oracle"]["ne_gain_over_constant_pct"]
        for cname in [c for c, _ in _CEILING_NAMES[1:] if c in rec]:
            rec[cname]["oracle_share"] = rec[cname]["ne_gain_over_constant_pct"] / og if og else float("nan")
        out[name] = rec
    return out


def read_manifest(world: PathLike) -> Dict[str, Any]:
    """Reads and checks ``<world>/manifest.json``.

    A world written before a config option existed lacks its key; ``config`` comes back with it
    filled as that world was generated (:data:`~torchrec_side.data.adsworld_config.LEGACY`: no
    collaborative term, mean interest pooling), and ``legacy_keys`` lists what was filled.

    Raises:
        ArtifactError: missing, unreadable, or not of this format / version.
    """
    path = Path(world) / "manifest.json"
    if not path.is_file():
        raise ArtifactError(f"not an ads-world folder (no manifest.json): {Path(world)}")
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"unreadable ads-world manifest {path}: {e}") from e
    if m.get("format") != FORMAT or m.get("version") != VERSION:
        raise ArtifactError(f"{path}: format {m.get('format')!r} version {m.get('version')!r}, "
                            f"expected {FORMAT!r} version {VERSION}")  # fmt: skip
    if isinstance(m.get("config"), dict):
        filled = with_legacy(m["config"])
        m["legacy_keys"] = sorted(f"{sec}.{k}" for sec, d in LEGACY.items() for k in d
                                  if k not in (m["config"].get(sec) or {}))  # fmt: skip
        m["config"] = filled
    return m


def target_in_history(world: PathLike, split: str = "test", max_history: int = 1000, sample: int = 3000,
                      seed: int = 0) -> Dict[str, Any]:
    """How often an impression's item is already in the user's history window (repeat exposure).

    A feature that maps the target and the history events through one fixed function (SIDE, raw
    content) can count such repeats for free; learned tables with separate target and history rows
    cannot. This number says how much a world rewards that. The window is the last ``max_history``
    events strictly before the impression, as the loader builds it.

    Args:
        world: the world folder.
        split: ``train`` / ``val`` / ``test``.
        max_history: window length.
        sample: impressions drawn (seeded, without replacement); 0 = all.
        seed: sampling seed.

    Returns:
        ``{"split", "impressions", "share", "mean_count_when_in", "ctr_in", "ctr_not_in"}``.

    Example::

        target_in_history("runs/world_tiny", "test", 1000, 0)["share"]
    """
    import pyarrow.parquet as pq

    code = {"train": 0, "val": 1, "test": 2}
    if split not in code:
        raise ValueError(f"split {split!r}: expected one of {sorted(code)}")
    read_manifest(world)
    ev = pq.read_table(Path(world) / "events.parquet", columns=["user_id", "item_id", "timestamp"])
    im = pq.read_table(Path(world) / "impressions.parquet", columns=["user_id", "item_id", "timestamp", "label", "split"])
    eu, ei, et = (ev[c].to_numpy() for c in ("user_id", "item_id", "timestamp"))
    order = np.lexsort((et, eu))
    eu, ei, et = eu[order], ei[order], et[order]
    bounds = np.searchsorted(eu, np.arange(int(eu.max(initial=0)) + 2))
    rows = np.flatnonzero(im["split"].to_numpy() == code[split])
    if sample and rows.size > sample:
        rows = np.sort(np.random.default_rng(seed).choice(rows, sample, replace=False))
    iu, ii, it, lab = (im[c].to_numpy()[rows] for c in ("user_id", "item_id", "timestamp", "label"))
    counts = np.zeros(rows.size, dtype=np.int64)
    for j in range(rows.size):
        u = int(iu[j])
        if u + 1 >= bounds.size:
            continue
        s, e = int(bounds[u]), int(bounds[u + 1])
        k = s + int(np.searchsorted(et[s:e], it[j], side="left"))
        counts[j] = int((ei[max(s, k - max_history):k] == ii[j]).sum())
    hit = counts > 0
    lab = lab.astype(np.float64)
    return {"split": split, "impressions": int(rows.size), "max_history": max_history,
            "share": float(hit.mean()) if rows.size else float("nan"),
            "mean_count_when_in": float(counts[hit].mean()) if hit.any() else 0.0,
            "ctr_in": float(lab[hit].mean()) if hit.any() else float("nan"),
            "ctr_not_in": float(lab[~hit].mean()) if (~hit).any() else float("nan")}


def world_main(argv: Optional[List[str]] = None) -> int:
    """``torchrec-side world --size quick --out DIR [key=value ...]``; returns the exit code.

    Example::

        world_main(["--size", "tiny", "--out", "runs/world_tiny", "preset=id_dominant"])
    """
    p = argparse.ArgumentParser(prog="torchrec-side world",
                                description="Generate the simulated ads world (docs/design.md section 7c).",
                                epilog="Overrides: preset=id_dominant seed=1 users.num_users=5000 clicks.base_rate=0.05 ...")  # fmt: skip
    p.add_argument("--size", choices=["tiny", "quick", "full"], default="quick")
    p.add_argument("--out", default=None, help="output folder (required unless --print-config)")
    p.add_argument("--config", "-c", default=None, help="optional YAML file of AdsWorldConfig keys")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for the user chunks (default: 1 under 4 chunks, else min(2, CPUs)); "
                        "the world does not depend on it")  # fmt: skip
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_world_config(args.size, args.overrides, args.config)
    except ConfigError as e:
        print(f"torchrec-side world: config error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(config_to_yaml(cfg), end="")
        return 0
    if not args.out:
        p.error("--out is required")
    try:
        chunks = -(-cfg.users.num_users // cfg.chunk_users)
        workers = args.workers if args.workers is not None else (1 if chunks < 4 else min(2, os.cpu_count() or 1))
        m = generate_world(cfg, args.out, progress=not args.no_progress, workers=workers)
    except KeyboardInterrupt:
        print("torchrec-side world: interrupted; nothing was written", file=sys.stderr)
        return 130
    except ArtifactError as e:
        print(f"torchrec-side world: --out: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"torchrec-side world: config error: {e}", file=sys.stderr)
        return 2
    o, s = m["oracle"], m["skew"]["impressions"]
    print(f"world {args.out}: {m['num_items']:,} items, {m['num_users']:,} users, {m['num_events']:,} events, "
          f"impressions {m['impressions']} in {m['seconds']:.1f}s ({m['cpu_seconds']:.0f} CPU-s), peak RSS "
          f"{m['peak_rss_mb']:.0f} MB (workers {m['peak_rss_worker_mb']:.0f} MB)")
    print(f"oracle NE train/val/test {o['train']['ne']:.4f}/{o['val']['ne']:.4f}/{o['test']['ne']:.4f} "
          f"(AUC test {o['test']['auc']:.4f}, base rate test {o['test']['base_rate']:.4f})")
    c = m["ceilings"]["test"]
    print(f"ceilings NE test (share of the oracle's gain): oracle {c['oracle']['ne']:.4f}, content "
          f"{c['content']['ne']:.4f} ({c['content']['oracle_share']:.2f}), content + item posterior "
          f"{c['content_item']['ne']:.4f} ({c['content_item']['oracle_share']:.2f}), id {c['id']['ne']:.4f} "
          f"({c['id']['oracle_share']:.2f}); constant {c['constant_ne']:.4f}; training impressions per item "
          f"{m['train_impressions_per_item']['mean']:.1f}")
    print(f"skew (impressions): top 0.1% {s['top_0.1pct_share']:.3f} (Meta 0.25), bottom 94.4% "
          f"{s['bottom_94.4pct_share']:.3f} (Meta 0.25); cold items {m['cold']['num_items']:,}, "
          f"{m['cold']['test_impression_share']:.3f} of test impressions")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(world_main())
