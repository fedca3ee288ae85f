# pyre-strict
"""Typed configuration of the simulated ads world (docs/design.md section 7c).

Every knob below has a default and the reason for it. Defaults come from published figures where
one exists (the popularity skew: Zheng et al., arXiv 2504.02137, Meta's ads catalogue: 0.1% of
items take 25% of impressions, the least popular 94.4% take another 25%); every other default is
marked as an *assumption* with the reasoning, never tuned to make a variant win.

Sizes (``size=``): ``tiny`` (tests, under 2 s), ``quick`` (the default; 10^5 items, 10^4 users,
median 200 events, about 3 x 10^5 training impressions) and ``full`` (10^6 items, 2.5 x 10^4
users, median 1,000 events, about 10^6 training impressions). Presets (``preset=``): ``default``
and ``id_dominant`` (the collaborative user x item term dominates the click model, content is
mostly noise and the catalogue is small and dense: the world in which a learned sparse-ID history
must beat SIDE).

Example::

    cfg = load_world_config("quick", ["preset=id_dominant", "seed=3", "users.num_users=5000"])
    cfg.clicks.w_collab           # 2.0
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torchrec_side.config import ConfigError, load_config, MAX_SEED, parse_overrides

__all__ = [
    "AdsWorldConfig",
    "CatalogueConfig",
    "ClickConfig",
    "CollabConfig",
    "LEGACY",
    "POOLINGS",
    "ContentConfig",
    "PRESETS",
    "SIZES",
    "TimelineConfig",
    "UsersConfig",
    "load_world_config",
    "with_legacy",
]


@dataclass
class CatalogueConfig:
    """Items: the category tree, hidden attributes, popularity, release times.

    Args:
        num_items: N. quick 10^5, full 10^6 (issue 8).
        attr_dim: k, width of the hidden attribute vector a_i. 32 (issue 8: "k about 32").
        num_categories: top-level categories; 300 ("hundreds of categories", issue 8).
        subcategories_per_category: sub-categories under each category; 10 (assumption: a
            3,000-leaf tree at quick size, about 33 items per leaf).
        category_zipf: Zipf exponent of category sizes (item counts); 1.0 (assumption: the
            classic Zipf law for category sizes, no ads figure published).
        subcategory_zipf: Zipf exponent of sub-category sizes inside a category; 1.0 (same).
        category_share / subcategory_share / item_share: variance shares of a_i carried by the
            category mean, the sub-category mean and an item-specific part (normalized to sum 1);
            0.4 / 0.3 / 0.3 (assumption: the tree explains most, but not all, of an item).
        popularity_zipf: exponent alpha of the Zipf-Mandelbrot base popularity
            ``w_i = (rank_i + offset * N) ** -alpha``; 1.1297, solved (with ``popularity_offset``)
            so the base weights give exactly Meta's two shares (top 0.1% of items 25%, bottom
            94.4% another 25%; Zheng et al., arXiv 2504.02137). The realized impression shares
            are reported in the manifest (``skew``).
        popularity_offset: Mandelbrot offset as a fraction of N; 3.484e-4 (solved with alpha).
        new_item_fraction: share of the catalogue released during the log window (the rest is a
            back catalogue); 0.5 (assumption: ads creatives churn fast, so half the items a 90-day
            log sees are new; it puts about 5% of the catalogue in the cold test window).
        freshness_half_life_days: half-life of the freshness boost; 14 (assumption: creative
            fatigue over about two weeks).
        freshness_floor: popularity multiplier of an old item relative to a new one; 0.25
            (assumption; must be > 0 so every released item stays reachable).
    """

    num_items: int = 100_000
    attr_dim: int = 32
    num_categories: int = 300
    subcategories_per_category: int = 10
    category_zipf: float = 1.0
    subcategory_zipf: float = 1.0
    category_share: float = 0.4
    subcategory_share: float = 0.3
    item_share: float = 0.3
    popularity_zipf: float = 1.1297
    popularity_offset: float = 3.484e-4
    new_item_fraction: float = 0.5
    freshness_half_life_days: float = 14.0
    freshness_floor: float = 0.25

    def __post_init__(self) -> None:
        _check(self.num_items >= self.num_categories >= 1, "catalogue.num_items >= catalogue.num_categories >= 1",
               (self.num_items, self.num_categories))
        _check(self.attr_dim >= 2, "catalogue.attr_dim >= 2", self.attr_dim)
        _check(self.subcategories_per_category >= 1, "catalogue.subcategories_per_category >= 1",
               self.subcategories_per_category)
        shares = (self.category_share, self.subcategory_share, self.item_share)
        _check(min(shares) >= 0 and sum(shares) > 0, "catalogue.*_share >= 0 with a positive sum", shares)
        _check(self.popularity_zipf >= 0, "catalogue.popularity_zipf >= 0", self.popularity_zipf)
        _check(self.popularity_offset >= 0, "catalogue.popularity_offset >= 0", self.popularity_offset)
        _check(0.0 <= self.new_item_fraction < 1.0, "0 <= catalogue.new_item_fraction < 1", self.new_item_fraction)
        _check(self.freshness_half_life_days > 0, "catalogue.freshness_half_life_days > 0",
               self.freshness_half_life_days)
        _check(0.0 < self.freshness_floor <= 1.0, "0 < catalogue.freshness_floor <= 1", self.freshness_floor)


@dataclass
class ContentConfig:
    """The two content collections: fixed random non-linear maps of parts of a_i, plus noise.

    ``x = normalize(tanh(a_i[lo:hi] @ W1) @ W2 / s + noise * eps)`` per view, ``s`` the signal's
    standard deviation, so ``noise`` is the noise-to-signal ratio per coordinate; rows are
    L2-normalized (as sentence-embedding models emit them) and stored as float16.

    Args:
        text_dim: width of the "text" view; 384 (the MiniLM width used on MovieLens).
        image_dim: width of the "image" view; 128 (issue 8).
        text_slice: ``[lo, hi)`` of a_i the text view sees; [0, 24] (issue 8: different,
            overlapping parts; 3/4 of a_i each, overlapping on half, so only fusing both views
            sees all of a_i).
        image_slice: [8, 32] (the image view sees dims 8-31).
        hidden_width: width of the hidden tanh layer of each map; 64 (assumption).
        text_noise: noise-to-signal ratio of the text view; 0.5 (assumption: SNR 4).
        image_noise: of the image view; 0.7 (assumption: SNR 2, images are noisier).
    """

    text_dim: int = 384
    image_dim: int = 128
    text_slice: List[int] = field(default_factory=lambda: [0, 24])
    image_slice: List[int] = field(default_factory=lambda: [8, 32])
    hidden_width: int = 64
    text_noise: float = 0.5
    image_noise: float = 0.7

    def __post_init__(self) -> None:
        for name, sl in (("text_slice", self.text_slice), ("image_slice", self.image_slice)):
            _check(len(sl) == 2 and 0 <= sl[0] < sl[1], f"content.{name} is [lo, hi) with 0 <= lo < hi", sl)
        _check(min(self.text_dim, self.image_dim, self.hidden_width) >= 1, "content widths >= 1",
               (self.text_dim, self.image_dim, self.hidden_width))
        _check(min(self.text_noise, self.image_noise) >= 0, "content noise >= 0", (self.text_noise, self.image_noise))


@dataclass
class UsersConfig:
    """Users: interests, drift, event-log lengths and impressions.

    Args:
        num_users: quick 10^4 (brief: about 10^4 users x median 200 events), full 25,000.
        median_events: median event-log length; quick 200, full 1,000 (issue 8).
        events_sigma: log-normal sigma of log lengths; 1.0 (assumption: p99 is about 10x the
            median, a heavy tail).
        max_events: cap of a log; 10,000 (issue 8).
        categories_per_user: categories an interest mixes; 3 ("a few categories", issue 8).
        interest_logit_std: std of the Gaussian mixture logits (weights = their softmax); 1.0
            (assumption: with 3 categories the main one carries about 0.6 of the weight).
        taste_noise_share: variance share of a user's personal part in each per-category taste
            vector (the rest: category and a preferred sub-category, as items); 0.3 (assumption,
            mirrors ``catalogue.item_share``).
        interest_drift: angle (radians) the mixture logits rotate through over the whole log,
            ``l(t) = cos(phi t) l0 + sin(phi t) l1``, t in [0, 1]; 0.5 (assumption: "drifting
            slowly", the logits at the end correlate cos(0.5) = 0.88 with those at the start).
        explore: share of draws from a category outside the user's interests (by category
            popularity); 0.1 (assumption).
        shortlist: candidates the retrieval step draws by popularity before the pick; 16
            (assumption; the pick sharpness comes from the click model, not from this).
        impressions_per_user: Poisson mean of a user's impressions; quick 40 (3 x 10^5 training
            impressions at 10^4 users), full 52 (10^6 training impressions at 25,000 users).
        fresh_impressions: show a user only items not among their earlier events (an impression
            whose item the user engaged with before is drawn again, up to 20 times, then dropped);
            false (default: an ad system shows what the user already engaged with, so about 40-50%
            of impressions repeat an item of the history window). True removes the repeat-exposure
            channel (see :func:`torchrec_side.data.adsworld.target_in_history`).
    """

    num_users: int = 10_000
    median_events: int = 200
    events_sigma: float = 1.0
    max_events: int = 10_000
    categories_per_user: int = 3
    interest_logit_std: float = 1.0
    taste_noise_share: float = 0.3
    interest_drift: float = 0.5
    explore: float = 0.1
    shortlist: int = 16
    impressions_per_user: float = 40.0
    fresh_impressions: bool = False

    def __post_init__(self) -> None:
        _check(self.num_users >= 1, "users.num_users >= 1", self.num_users)
        _check(1 <= self.median_events <= self.max_events, "1 <= users.median_events <= users.max_events",
               (self.median_events, self.max_events))
        _check(self.events_sigma >= 0, "users.events_sigma >= 0", self.events_sigma)
        _check(self.categories_per_user >= 1, "users.categories_per_user >= 1", self.categories_per_user)
        _check(self.interest_logit_std >= 0, "users.interest_logit_std >= 0", self.interest_logit_std)
        _check(0 <= self.taste_noise_share <= 1, "0 <= users.taste_noise_share <= 1", self.taste_noise_share)
        _check(self.interest_drift >= 0, "users.interest_drift >= 0", self.interest_drift)
        _check(0 <= self.explore <= 1, "0 <= users.explore <= 1", self.explore)
        _check(self.shortlist >= 1, "users.shortlist >= 1", self.shortlist)
        _check(self.impressions_per_user > 0, "users.impressions_per_user > 0", self.impressions_per_user)


@dataclass
class ClickConfig:
    """The logistic click model: ``logit = bias + w_match z_match + w_collab c_ui + w_quality q_i``.

    ``z_match`` is the content match of the user's interest and the item's attributes (see
    ``interest_pooling``), standardized over retrieved candidates; ``c_ui = <f_u, g_i> / sqrt(r)``
    the collaborative term (:class:`CollabConfig`: ``g_i ~ N(0, I_r)`` per item, ``f_u`` uniform on
    the sphere of radius ``sqrt(r)`` per user, so ``c_ui ~ N(0, 1)`` exactly for every user), and
    ``q_i ~ N(0, 1)`` a per-item quality. Neither ``c_ui`` nor ``q_i`` is seen by any content view:
    they are the *id-only* part of the logit; ``w_match z_match`` is the *content-visible* part.
    Each weight is its term's logit standard deviation. ``bias`` is solved (on a separate pilot of
    users) so the mean click probability of impressions equals ``base_rate``. History events are the
    user's past clicks: among a shortlist the event item is drawn with probability proportional to
    ``exp(s)``, ``s`` the logit without bias (its click odds, in the rare-click limit); with
    ``interest_pooling: softmax`` an event's match is that of the one interest component it was
    drawn from (events follow the interests).

    Args:
        base_rate: mean click probability of impressions; 0.1 (assumption: raw ads CTRs are
            about 1-3%; trainers down-sample negatives (He et al., ADKDD 2014), and 10% keeps
            thousands of test positives at quick size).
        w_match: logit std of the content match; 1.0 (assumption: the content-visible part and the
            id-only part have equal variance, so the default favours neither content nor ids;
            sqrt(2) total logit std puts the oracle NE near 0.8, in the range production click
            models report).
        w_quality: logit std of the per-item quality; sqrt(1/2) = 0.7071 (the id-only variance 1
            split evenly between the item's own quality, which a target-item row learns, and the
            user x item collaborative term, which only learned history / user rows can learn; a
            world written before ``w_collab`` existed had 1.0 and no collaborative term).
        w_collab: logit std of the collaborative term ``c_ui``; sqrt(1/2) = 0.7071 (the other half
            of the id-only variance, see ``w_quality``; not tuned toward any variant: it gives
            learned ids a user-specific signal that no content view carries). 0 removes it (the
            world before this option; old world folders read it as 0).
        interest_pooling: ``mean`` or ``softmax``; ``softmax`` (multi-interest users: the match is
            a soft maximum over the user's interest components,
            ``T log sum_j pi_j exp(z_j / T)``, ``z_j`` component j's standardized match and
            ``pi_j`` its mixture weight, so a model that attends to the history events near the
            target can beat one that averages them). ``mean`` is the single mixed interest vector
            ``sum_j pi_j taste_j`` (``sum_j pi_j z_j`` up to scale; worlds written before this
            option read it as ``mean``).
        interest_temperature: ``T`` of the soft maximum, in units of a component's match standard
            deviation; 0.25 (assumption: the best-matching component decides once the components
            differ by about half a standard deviation, while a component of weight 0.1 needs to
            match about 0.6 std better than one of weight 1 to take over; ``T`` to infinity gives
            the mixture mean).
        targeting: sharpness of the ad system's own choice among the shortlist, as a multiple of
            the true logit; 0.5 (assumption: the ad ranker targets, imperfectly, so impressions
            mix good and poor matches).
    """

    base_rate: float = 0.1
    w_match: float = 1.0
    w_quality: float = 0.7071
    w_collab: float = 0.7071
    interest_pooling: str = "softmax"
    interest_temperature: float = 0.25
    targeting: float = 0.5

    def __post_init__(self) -> None:
        _check(0.0 < self.base_rate < 1.0, "0 < clicks.base_rate < 1", self.base_rate)
        _check(self.w_match >= 0 and self.w_quality >= 0 and self.w_collab >= 0,
               "clicks.w_match, clicks.w_quality, clicks.w_collab >= 0", (self.w_match, self.w_quality, self.w_collab))
        _check(self.interest_pooling in POOLINGS, f"clicks.interest_pooling is one of {list(POOLINGS)}",
               self.interest_pooling)
        _check(self.interest_temperature > 0, "clicks.interest_temperature > 0", self.interest_temperature)
        _check(self.targeting >= 0, "clicks.targeting >= 0", self.targeting)


#: Interest poolings of :class:`ClickConfig`.
POOLINGS: Tuple[str, ...] = ("mean", "softmax")


@dataclass
class CollabConfig:
    """The collaborative (user x item) term of the click logit (``clicks.w_collab``).

    Item factors ``g_i ~ N(0, I_r)`` come from their own random stream, independent of the item's
    category, attributes, content, popularity and quality, so no content view can see them; user
    factors ``f_u`` are uniform on the sphere of radius ``sqrt(r)`` (so ``<f_u, g_i> / sqrt(r)`` is
    exactly standard normal for every user). Both are stored with the world under ``hidden/``.

    Args:
        rank: r; 8 (assumption: low-rank, as collaborative-filtering factors are; large enough that
            a handful of history items do not pin a user's factor down, small enough (r <= 16,
            issue 15) that a learned history of some hundred events can).
    """

    rank: int = 8

    def __post_init__(self) -> None:
        _check(1 <= self.rank <= 16, "1 <= collab.rank <= 16", self.rank)


@dataclass
class TimelineConfig:
    """Simulated time, in whole days of 86,400 s (item releases fall on day boundaries).

    Args:
        log_days: length of the event log window; 90 (assumption: a quarter of ads logs).
        back_catalogue_days: span before the log over which back-catalogue items were released;
            90 (assumption).
        val_start: validation starts at this fraction of the log window; 0.8 (as MovieLens:
            last 10% test, previous 10% validation, docs/design.md section 7).
        test_start: 0.9.
        warmup: impressions start at this fraction of the log window, so every impression has
            some history; 0.1 (assumption).
    """

    log_days: int = 90
    back_catalogue_days: int = 90
    val_start: float = 0.8
    test_start: float = 0.9
    warmup: float = 0.1

    def __post_init__(self) -> None:
        _check(self.log_days >= 3, "timeline.log_days >= 3", self.log_days)
        _check(self.back_catalogue_days >= 1, "timeline.back_catalogue_days >= 1", self.back_catalogue_days)
        _check(0.0 <= self.warmup < self.val_start < self.test_start < 1.0,
               "0 <= timeline.warmup < timeline.val_start < timeline.test_start < 1",
               (self.warmup, self.val_start, self.test_start))


@dataclass
class AdsWorldConfig:
    """The simulated ads world (docs/design.md section 7c); see each section's docstring.

    Args:
        size: ``tiny``, ``quick`` or ``full``; the preset the other defaults came from.
        preset: ``default`` or ``id_dominant``; recorded, applied by :func:`load_world_config`.
        seed: everything is drawn from ``numpy.random.SeedSequence([seed, stream, chunk])``.
        chunk_users: users generated (and streamed to Parquet) at a time; part of the world's
            identity (the random streams are per chunk). quick 2,000, full 1,000.
        catalogue / content / users / clicks / collab / timeline: the sections.
    """

    size: str = "quick"
    preset: str = "default"
    seed: int = 0
    chunk_users: int = 2_000
    catalogue: CatalogueConfig = field(default_factory=CatalogueConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    users: UsersConfig = field(default_factory=UsersConfig)
    clicks: ClickConfig = field(default_factory=ClickConfig)
    collab: CollabConfig = field(default_factory=CollabConfig)
    timeline: TimelineConfig = field(default_factory=TimelineConfig)

    def __post_init__(self) -> None:
        _check(self.size in SIZES, f"size is one of {sorted(SIZES)}", self.size)
        _check(self.preset in PRESETS, f"preset is one of {sorted(PRESETS)}", self.preset)
        _check(self.chunk_users >= 1, "chunk_users >= 1", self.chunk_users)
        _check(0 <= self.seed <= MAX_SEED, f"0 <= seed <= {MAX_SEED} (a 32-bit seed)", self.seed)
        k = self.catalogue.attr_dim
        for name, sl in (("text_slice", self.content.text_slice), ("image_slice", self.content.image_slice)):
            _check(sl[1] <= k, f"content.{name} lies inside catalogue.attr_dim={k}", sl)


def _check(ok: bool, rule: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"adsworld config: expected {rule}, got {value!r}")


#: Size presets, merged over the dataclass defaults (which are the quick world).
SIZES: Dict[str, Dict[str, Any]] = {
    "tiny": {
        "chunk_users": 100,
        "catalogue": {"num_items": 2_000, "num_categories": 20, "subcategories_per_category": 4},
        "users": {"num_users": 300, "median_events": 50, "max_events": 1_000, "impressions_per_user": 30.0},
        "timeline": {"log_days": 30, "back_catalogue_days": 30},
    },
    "quick": {},
    "full": {
        "chunk_users": 1_000,
        "catalogue": {"num_items": 1_000_000},
        "users": {"num_users": 25_000, "median_events": 1_000, "impressions_per_user": 52.0},
    },
}

#: Named override sets. ``id_dominant`` is the positive control, the world in which a learned
#: sparse-ID history must beat SIDE (issue 15):
#:
#: * the collaborative user x item term dominates the click logit (``w_collab`` 2 against
#:   ``w_match`` and ``w_quality`` 0.5: 89% of the logit variance), and it is visible to learned
#:   ids only (history rows learn the item factors, user / history rows the user's);
#: * content carries little: the category tree explains almost nothing of an item (shares
#:   0.02 / 0.02 / 0.96) and both content views are nearly pure noise (noise-to-signal 40 per
#:   coordinate; a ridge probe recovers nothing of the attributes, tests/data/test_adsworld.py);
#: * the catalogue is small and dense: 200 items in 10 categories and 100 impressions per user, so
#:   at the main job's 3,000 users the average item has about
#:   ``3,000 x 100 x 0.778 / 200 = 1,167`` training impressions (0.778: the share of impressions
#:   before the validation window) and some 3,000 history occurrences per window; learned rows
#:   get data to learn from. 200 items is also 5x the SIDE code width (40 digits), so fixed
#:   per-item codes cannot stand in for learned rows by a linear map.
#:
#: Earlier versions made the item-quality term dominate (``w_quality`` 2): there the learned rows'
#: only job was the target row, and SIDE still won through untrained rows of rare items
#: (docs/benchmarks.md, "The control world").
PRESETS: Dict[str, Dict[str, Any]] = {
    "default": {},
    "id_dominant": {
        "clicks": {"w_collab": 2.0, "w_quality": 0.5, "w_match": 0.5},
        "catalogue": {"num_items": 200, "num_categories": 10, "category_share": 0.02, "subcategory_share": 0.02,
                      "item_share": 0.96},
        "content": {"text_noise": 40.0, "image_noise": 40.0},
        "users": {"impressions_per_user": 100.0},
    },
}

#: What a world folder written before an option existed did: its manifest lacks the key, and
#: :func:`torchrec_side.data.adsworld.read_manifest` fills it from here (not from the defaults,
#: which may have changed since). The collaborative term and the soft-maximum interest pooling
#: came with issue 15; ``users.fresh_impressions`` (false) predates the rule and equals its default.
LEGACY: Dict[str, Any] = {
    "clicks": {"w_collab": 0.0, "interest_pooling": "mean", "interest_temperature": 0.25},
    "collab": {"rank": 8},
    "users": {"fresh_impressions": False},
}


def with_legacy(config: Mapping[str, Any]) -> Dict[str, Any]:
    """``config`` (a manifest's) with every key of :data:`LEGACY` it lacks filled from there.

    Args:
        config: a world manifest's ``config`` mapping.

    Returns:
        A new dict; keys present in ``config`` are kept as they are.

    Example::

        with_legacy({"clicks": {"w_match": 1.0}})["clicks"]["w_collab"]     # 0.0
    """
    return _merge(LEGACY, config)


def _merge(a: Dict[str, Any], b: Mapping[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(a)
    for key, value in b.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_world_config(
    size: Optional[str] = None,
    overrides: Sequence[str] = (),
    path: Optional[Union[str, Path]] = None,
) -> AdsWorldConfig:
    """Builds an :class:`AdsWorldConfig`: defaults <- size preset <- named preset <- YAML <- overrides.

    ``size=`` and ``preset=`` may also appear among ``overrides`` (the last one wins, and beats
    the ``size`` argument); the other overrides are dotted keys of the config, parsed and checked
    by :func:`torchrec_side.config.load_config` (unknown keys fail with suggestions).

    Args:
        size: ``tiny`` / ``quick`` / ``full``; default quick.
        overrides: ``key=value`` strings, e.g. ``["preset=id_dominant", "users.num_users=500"]``.
        path: optional YAML file with config keys.

    Returns:
        The validated config.

    Raises:
        ConfigError: an unknown size or preset, key, or an invalid value.

    Example::

        cfg = load_world_config("tiny", ["seed=1", "clicks.base_rate=0.05"])
    """
    rest: List[str] = []
    preset = "default"
    chosen = size or "quick"
    pairs: List[Tuple[str, str]] = parse_overrides(overrides)
    for (key, value), raw in zip(pairs, overrides):
        if key == "size":
            chosen = value.strip()
        elif key == "preset":
            preset = value.strip()
        else:
            rest.append(raw)
    if chosen not in SIZES:
        raise ConfigError(f"unknown adsworld size {chosen!r}; expected one of {sorted(SIZES)}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown adsworld preset {preset!r}; expected one of {sorted(PRESETS)}")
    base = _merge(_merge(SIZES[chosen], PRESETS[preset]), {"size": chosen, "preset": preset})
    return load_config(AdsWorldConfig, path, rest, base=base)
