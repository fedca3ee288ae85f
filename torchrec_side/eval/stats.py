# pyre-strict
"""Statistics that can separate variants (docs/design.md section 7b).

* **NE** (normalized entropy): mean log loss of the predicted probabilities divided by the
  entropy of the base rate of the same examples (lower is better). Probabilities are clipped to
  ``[1e-7, 1 - 1e-7]`` before the log, so a saturated float32 score costs at most ``-log(1e-7)``.
* **NE gain** of variant ``v`` over reference ``r`` (usually the control) for one seed:
  ``100 * (NE_r - NE_v) / NE_r``; a variant's gain is the mean of its per-seed gains over the seeds
  both runs have (paired: the same seed means the same data order and initialisation of the
  shared parts, and the same test rows).
* **Paired bootstrap over seeds and the test rows' random units.** Each replicate resamples the
  *seeds* with replacement and, independently, the random units of the test rows with
  replacement. One resample of the units is drawn per replicate and applied to every run of every
  variant and seed, so both sides of a pair always see the same rows with the same weights.
  Test rows are **crossed**: a user's rows share the user's taste and history, and an item's rows
  (across many users) share the item, its quality and how well each variant represents it, so
  neither events, nor users alone, nor items alone are independent units.

  - **Two-way (users x items), the default where the rows carry item ids**: the pigeonhole
    bootstrap of A. B. Owen, "The pigeonhole bootstrap", Annals of Applied Statistics 1(2),
    386-411, 2007. Users and items are drawn independently with replacement (multinomial counts
    ``wu[u]``, ``wi[i]``, each summing to the number of users / items) and every test row of user
    ``u`` and item ``i`` enters with weight ``wu[u] * wi[i]``. Owen shows that for crossed,
    unbalanced, heteroscedastic random-effects data this variance is "mean consistent": in
    expectation it contains every variance component of the true variance, and errs only on the
    conservative side (Owen and Eckles, AOAS 6(3), 2012: "mildly conservative"), whereas
    resampling one margin misses the other margin's component: with test items shared by many
    users, a users-only interval is too narrow. ``tests/eval/test_stats.py`` simulates crossed
    data with user, item and row effects (400 users, 60 items, 300 datasets): the two-way 95%
    interval covers the known difference 95% of the time, the users-only one 48%; without item
    effects the two-way interval still covers (98%) and is about 25% wider than the users-only one.
    ``level = "seeds x users x items"``.
  - **Users only** (``BootstrapConfig(resample_items=False)``, or rows without item ids):
    ``level = "seeds x users"``, the earlier default; kept for comparison and for data whose
    items are not a sample (e.g. a fixed, exhaustively tested catalogue).

  Each run is reduced once to sufficient statistics per **cell** (a distinct (user, item) pair
  of the test rows; per user when items are not resampled): sum of log loss, number of rows,
  number of positives. A replicate's NE is then a weighted sum: ``Wc @ L`` with ``Wc[b, c] =
  wu[b, user(c)] * wi[b, item(c)]`` (``[replicates, cells]``) and ``L`` the ``[cells, runs]``
  sums, computed in vectorised blocks (no loop over rows; the full simulated world, ~145k test
  rows, 25k users, 10^5 items, 2,000 replicates and 50 runs takes seconds, see
  :class:`PairedBootstrap`).
  ``statistics.level`` in ``report.json`` names the units of the headline numbers.
* **Intervals**: percentile intervals of the replicates (95% by default). An interval that covers
  zero is reported as **"not separated"**, one that excludes it as **"separated"**.
* **Ratio of two gains** (e.g. SIDE's gain / traditional SID's gain), each replicate's ratio from
  the same seed and unit resample. How undefined ratios are reported:

  - denominator's point gain <= 0: the ratio is ``None`` (``status`` says so) and no interval;
  - denominator's interval covers 0 (or lies below it): the point ratio is given, the interval is
    ``None`` (replicate ratios are unbounded there) and ``status`` names the denominator's interval;
  - otherwise: point ratio and percentile interval of the replicate ratios.

  A threshold on a ratio (``gain_a >= t * gain_b``) is always testable as the **contrast**
  ``gain_a - t * gain_b`` (:meth:`PairedBootstrap.contrast`), whose interval is always defined.
* **Fallback**: a run without per-user predictions (older run folders) enters at seed level only:
  every quantity it takes part in is bootstrapped over seeds alone from the seed-level NE
  (``level = "seeds"``), never mixing a resampled side with a fixed one.

Example::

    # per seed: user ids [N], labels [N], {variant: probabilities [N]}, item ids [N]
    table = UserTable.from_arrays({0: (uid, y, {"control": p0, "side": p1}, iid)})
    boot = PairedBootstrap(table, BootstrapConfig(n_boot=2000, seed=0))
    boot.level                              # "seeds x users x items"
    g = boot.gain("side", "control")
    g.point, g.lo, g.hi, g.verdict          # e.g. 0.74, 0.21, 1.30, "separated"
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "EPS",
    "SeedRows",
    "log_loss",
    "binary_entropy",
    "normalized_entropy",
    "auc",
    "BootstrapConfig",
    "UserTable",
    "Estimate",
    "RatioEstimate",
    "PairedBootstrap",
    "percentile_interval",
    "verdict",
]

#: Probability clip used in the log loss.
EPS: float = 1e-7

#: One seed's test rows: ``(user_id [N], label [N], {variant: probability [N]})``, optionally with
#: ``item_id [N]`` as a fourth element (for the two-way bootstrap).
SeedRows = Union[Tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray]],
                 Tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray], np.ndarray]]


def log_loss(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-example binary log loss (nats).

    Args:
        labels (np.ndarray): ``[N]`` labels in ``[0, 1]``.
        probs (np.ndarray): ``[N]`` predicted probabilities (clipped to ``[EPS, 1 - EPS]``).

    Returns:
        np.ndarray: ``[N]`` float64 ``-(y log p + (1 - y) log(1 - p))``.

    Example::

        log_loss(np.array([1.0, 0.0]), np.array([0.9, 0.2]))  # [0.105, 0.223]
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0 - EPS)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} differ in shape")
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def binary_entropy(rate: np.ndarray) -> np.ndarray:
    """Entropy (nats) of Bernoulli(rate), elementwise; NaN where rate is 0, 1 or not finite.

    Args:
        rate (np.ndarray): base rates (any shape).

    Returns:
        np.ndarray: same shape, float64.

    Example::

        binary_entropy(np.array([0.5]))  # [0.693]
    """
    p = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log(p) + (1.0 - p) * np.log1p(-p))
    return np.where((p > 0.0) & (p < 1.0), h, np.nan)


def normalized_entropy(labels: np.ndarray, probs: np.ndarray) -> float:
    """NE = mean log loss / entropy of the base rate (NaN when all labels are equal or empty).

    Args:
        labels (np.ndarray): ``[N]`` labels in ``[0, 1]``.
        probs (np.ndarray): ``[N]`` predicted probabilities.

    Returns:
        float: the NE.

    Example::

        normalized_entropy(np.array([1.0, 0.0, 0.0]), np.array([0.5, 0.3, 0.2]))
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.size == 0:
        return float("nan")
    return float(log_loss(y, probs).mean() / binary_entropy(np.array(y.mean())))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties counted one half); labels >= 0.5 are positives.

    Args:
        labels (np.ndarray): ``[N]`` labels.
        scores (np.ndarray): ``[N]`` scores (any monotone scale).

    Returns:
        float: AUC, NaN when one class is absent.

    Example::

        auc(np.array([0, 1, 1]), np.array([0.1, 0.4, 0.35]))  # 1.0
    """
    y = np.asarray(labels, dtype=np.float64) >= 0.5
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    # average ranks (1-based) over runs of equal scores
    starts = np.r_[0, np.flatnonzero(np.diff(ss)) + 1]
    ends = np.r_[starts[1:], ss.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> Tuple[Optional[float], Optional[float]]:
    """Percentile interval of the finite replicates; ``(None, None)`` when fewer than 2 are finite."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return None, None
    a = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(r, [a, 100.0 - a])
    return float(lo), float(hi)


def verdict(lo: Optional[float], hi: Optional[float]) -> str:
    """``"separated"`` when ``[lo, hi]`` excludes 0, ``"not separated"`` when it covers 0, else ``"n/a"``."""
    if lo is None or hi is None:
        return "n/a"
    return "separated" if (lo > 0.0 or hi < 0.0) else "not separated"


@dataclass(frozen=True)
class BootstrapConfig:
    """Settings of the paired bootstrap over seeds and test units (users, items).

    Args:
        n_boot (int): replicates (1,000-2,000 for reported intervals).
        seed (int): RNG seed; the same seed and table give the same intervals.
        level (float): interval coverage, in (0, 1).
        chunk (int): replicates per resample block (the RNG stream of a block depends on the
            block only, so two tables with the same unit counts draw the same resamples).
        resample_users (bool): resample test users (False: no user resample).
        resample_items (bool): also resample test items, independently of the users (the
            two-way pigeonhole bootstrap); applies only to tables built with item ids.
            False: the users-only bootstrap.
        max_block_cells (int): memory cap of the two-way replicate weights: at most this many
            ``replicates x cells`` float64 weights at once (default 2^23, 64 MiB; the peak is
            about twice that).
        progress (bool): a tqdm bar over the blocks.
    """

    n_boot: int = 2000
    seed: int = 0
    level: float = 0.95
    chunk: int = 100
    resample_users: bool = True
    resample_items: bool = True
    max_block_cells: int = 1 << 23
    progress: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.n_boot, int) or self.n_boot < 10:
            raise ValueError(f"BootstrapConfig.n_boot must be an int >= 10, got {self.n_boot!r}")
        if not (0.0 < float(self.level) < 1.0):
            raise ValueError(f"BootstrapConfig.level must be in (0, 1), got {self.level!r}")
        if not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"BootstrapConfig.chunk must be an int >= 1, got {self.chunk!r}")
        if not isinstance(self.max_block_cells, int) or self.max_block_cells < 1:
            raise ValueError(f"BootstrapConfig.max_block_cells must be an int >= 1, got {self.max_block_cells!r}")


@dataclass
class UserTable:
    """Per-cell sufficient statistics of paired runs on one test set.

    Runs are indexed by ``(variant, seed)``; every seed has its own test rows (normally the same
    rows for all seeds), reduced over a shared cell index so that one resample applies to all
    runs. A **cell** is a distinct (user, item) pair of the test rows when the table has items;
    without items the cells are the users themselves (``C = U``, ``cell_user = None``).

    Args:
        users (np.ndarray): ``[U]`` int64 sorted user ids (a resampling unit).
        variants (List[str]): ``V`` variant names.
        seeds (List[int]): ``S`` seeds.
        count (np.ndarray): ``[S, C]`` float64 rows per cell in each seed's test set.
        positives (np.ndarray): ``[S, C]`` float64 sum of labels per cell.
        loss (np.ndarray): ``[V, S, C]`` float64 sum of log loss per cell (0 where absent).
        has (np.ndarray): ``[V, S]`` bool, True where the run has predictions.
        items (Optional[np.ndarray]): ``[I]`` int64 sorted item ids (the second resampling unit);
            None: users only.
        cell_user (Optional[np.ndarray]): ``[C]`` int64 position in ``users`` of each cell's user
            (None: cell ``c`` is user ``c``).
        cell_item (Optional[np.ndarray]): ``[C]`` int64 position in ``items`` of each cell's
            item (required with ``items``).

    Example::

        t = UserTable.from_arrays({0: (user_id, label, {"control": p0, "side": p1}, item_id)})
        t.ne()  # [V, S]
    """

    users: np.ndarray
    variants: List[str]
    seeds: List[int]
    count: np.ndarray
    positives: np.ndarray
    loss: np.ndarray
    has: np.ndarray
    items: Optional[np.ndarray] = None
    cell_user: Optional[np.ndarray] = None
    cell_item: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        C = self.count.shape[-1]
        if self.cell_user is None and C != self.users.size:
            raise ValueError(f"UserTable: {C} cells but {self.users.size} users and no cell_user index")
        if self.cell_user is not None and self.cell_user.shape != (C,):
            raise ValueError(f"UserTable: cell_user has shape {self.cell_user.shape}, expected ({C},)")
        if (self.items is None) != (self.cell_item is None):
            raise ValueError("UserTable: items and cell_item go together (both or neither)")
        if self.items is not None and self.cell_item is not None:
            if self.cell_item.shape != (C,):
                raise ValueError(f"UserTable: cell_item has shape {self.cell_item.shape}, expected ({C},)")
            if C and (self.cell_item.min() < 0 or self.cell_item.max() >= self.items.size):
                raise ValueError(f"UserTable: cell_item outside [0, {self.items.size})")
        if self.cell_user is not None and C and (self.cell_user.min() < 0 or self.cell_user.max() >= self.users.size):
            raise ValueError(f"UserTable: cell_user outside [0, {self.users.size})")

    @property
    def has_items(self) -> bool:
        """True when the cells carry items (the two-way bootstrap is possible)."""
        return self.items is not None

    def user_of_cell(self) -> np.ndarray:
        """``[C]`` int64 position in ``users`` of each cell."""
        return np.arange(self.users.size, dtype=np.int64) if self.cell_user is None else self.cell_user

    @staticmethod
    def from_arrays(
        per_seed: Mapping[int, SeedRows],
        variants: Optional[Sequence[str]] = None,
        users: Optional[np.ndarray] = None,
        items: Optional[np.ndarray] = None,
    ) -> "UserTable":
        """Reduces per-seed rows to per-cell sums.

        Args:
            per_seed: ``{seed: (user_id [N], label [N], {variant: prob [N]})}``, or with a fourth
                element ``item_id [N]`` (every seed or none) for a users x items table.
            variants: variant order (default: every name seen, in first-seen order).
            users: the user index (default: the sorted union of the user ids seen).
            items: the item index (default: the sorted union of the item ids seen; only with
                item ids).

        Returns:
            UserTable: the table; runs absent from ``per_seed`` have ``has = False``.

        Raises:
            ValueError: ids not in the given index, rows of mismatched lengths, or item ids for
                some seeds only.
        """
        seeds = sorted(int(s) for s in per_seed)
        item_ids: Dict[int, np.ndarray] = {}
        for s in seeds:
            r = per_seed[s]
            if len(r) == 4:
                item_ids[s] = np.asarray(r[3], dtype=np.int64)
        with_items = [s in item_ids for s in seeds]
        if any(with_items) and not all(with_items):
            raise ValueError("UserTable.from_arrays: item ids given for some seeds only "
                             f"({[s for s, w in zip(seeds, with_items) if w]} of {seeds})")
        two_way = bool(seeds) and all(with_items)
        if variants is None:
            seen: List[str] = []
            for s in seeds:
                for v in per_seed[s][2]:
                    if v not in seen:
                        seen.append(v)
            variants = seen
        names = list(variants)
        empty = np.zeros(0, dtype=np.int64)

        uid = [np.asarray(per_seed[s][0], dtype=np.int64) for s in seeds]
        if users is None:
            users = np.unique(np.concatenate(uid)) if seeds else empty
        users = np.asarray(users, dtype=np.int64)

        def locate(index: np.ndarray, x: np.ndarray, what: str, s: int) -> np.ndarray:
            n = index.size
            pos = np.searchsorted(index, x)
            if x.size and (n == 0 or np.any(pos >= n) or np.any(index[np.minimum(pos, n - 1)] != x)):
                raise ValueError(f"seed {s}: {what} ids not in the {what} index")
            return pos

        uidx = {s: locate(users, uid[j], "user", s) for j, s in enumerate(seeds)}
        cell_of: Dict[int, np.ndarray] = {}
        cell_user: Optional[np.ndarray] = None
        cell_item: Optional[np.ndarray] = None
        if two_way:
            iid = [item_ids[s] for s in seeds]
            items = np.unique(np.concatenate(iid)) if items is None else np.asarray(items, dtype=np.int64)
            iidx = {s: locate(items, iid[j], "item", s) for j, s in enumerate(seeds)}
            I = max(int(items.size), 1)
            keys = {s: uidx[s] * I + iidx[s] for s in seeds}
            cells = np.unique(np.concatenate([keys[s] for s in seeds]))
            cell_user, cell_item = cells // I, cells % I
            cell_of = {s: np.searchsorted(cells, keys[s]) for s in seeds}
            C = int(cells.size)
        else:
            items = None
            cell_of = uidx
            C = int(users.size)
        V, S = len(names), len(seeds)
        count = np.zeros((S, C))
        pos = np.zeros((S, C))
        loss = np.zeros((V, S, C))
        has = np.zeros((V, S), dtype=bool)
        for j, s in enumerate(seeds):
            lab = np.asarray(per_seed[s][1], dtype=np.float64)
            idx = cell_of[s]
            if lab.shape != idx.shape:
                raise ValueError(f"seed {s}: {idx.size} ids but {lab.size} labels")
            count[j] = np.bincount(idx, minlength=C)
            pos[j] = np.bincount(idx, weights=lab, minlength=C)
            for v, p in per_seed[s][2].items():
                if v not in names:
                    continue
                i = names.index(v)
                loss[i, j] = np.bincount(idx, weights=log_loss(lab, np.asarray(p)), minlength=C)
                has[i, j] = True
        return UserTable(users=users, variants=names, seeds=seeds, count=count, positives=pos, loss=loss, has=has,
                         items=items, cell_user=cell_user, cell_item=cell_item)

    def ne(self) -> np.ndarray:
        """``[V, S]`` NE of every run on its full test set (NaN where the run has no predictions)."""
        n = self.count.sum(1)
        rate = self.positives.sum(1) / np.maximum(n, 1e-300)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = self.loss.sum(2) / n[None, :] / binary_entropy(rate)[None, :]
        return np.where(self.has, out, np.nan)


@dataclass
class Estimate:
    """A bootstrapped quantity: point estimate, percentile interval, verdict.

    Args:
        point (Optional[float]): the estimate on the full data.
        lo (Optional[float]): lower interval bound.
        hi (Optional[float]): upper interval bound.
        seeds (List[int]): seeds it was computed on.
        level (str): the resampled units: ``"seeds x users x items"``, ``"seeds x users"`` or
            ``"seeds"`` (see the module docstring).
        per_seed (List[float]): the per-seed point values (when it is a mean over seeds).
        replicates (np.ndarray): ``[n_boot]`` replicate values (not serialised).
    """

    point: Optional[float]
    lo: Optional[float]
    hi: Optional[float]
    seeds: List[int]
    level: str
    per_seed: List[float] = field(default_factory=list)
    replicates: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def verdict(self) -> str:
        """``separated`` / ``not separated`` (from zero) / ``n/a``."""
        return verdict(self.lo, self.hi)

    @property
    def width(self) -> Optional[float]:
        return None if self.lo is None or self.hi is None else self.hi - self.lo

    def to_dict(self) -> Dict[str, object]:
        return {"point": self.point, "ci95": [self.lo, self.hi] if self.lo is not None else None,
                "verdict": self.verdict, "width": self.width, "seeds": self.seeds, "level": self.level,
                "per_seed": self.per_seed}


@dataclass
class RatioEstimate:
    """Ratio of two gains with its interval and a status saying when it is undefined.

    Args:
        point (Optional[float]): ratio of the point gains (None when the denominator is <= 0).
        lo (Optional[float]): lower bound (None when undefined, see the module docstring).
        hi (Optional[float]): upper bound.
        status (str): ``"ok"`` or why the ratio or its interval is undefined.
        numerator (Estimate): the numerator gain.
        denominator (Estimate): the denominator gain.
        nonpositive_denominator_share (float): share of replicates whose denominator is <= 0.
        replicates (np.ndarray): ``[n_boot]`` replicate ratios (NaN where the denominator <= 0).
    """

    point: Optional[float]
    lo: Optional[float]
    hi: Optional[float]
    status: str
    numerator: Estimate
    denominator: Estimate
    nonpositive_denominator_share: float
    replicates: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> Dict[str, object]:
        return {"point": self.point, "ci95": [self.lo, self.hi] if self.lo is not None else None,
                "status": self.status, "numerator": self.numerator.to_dict(),
                "denominator": self.denominator.to_dict(),
                "nonpositive_denominator_share": self.nonpositive_denominator_share}


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


class PairedBootstrap:
    """The paired bootstrap over seeds and test units, two-way where the table has items.

    See the module docstring for the method. Computes, once, the NE of every run in every
    replicate (``[n_boot, V, S]``); gains, ratios, contrasts and oracle shares are then cheap
    functions of it. Two instances built with the same config over tables with the same number of
    users (and items) draw identical unit resamples.

    Cost: the two-way replicates are ``n_boot x cells`` products of gathered weights and one
    ``[rows, cells] @ [cells, V * S + 2 S]`` matrix product per block; on 2 CPU cores, 2,000
    replicates over 145k test rows (25k users, 77k distinct items of 10^5) took 2.8 s for
    10 variants x 5 seeds and 4.6 s for 17 x 5 with one BLAS thread (users only: 0.4-0.9 s);
    when other processes load the cores, OpenBLAS's own threads can stretch that to 10-40 s
    (``OPENBLAS_NUM_THREADS=1`` avoids it).

    Args:
        table (UserTable): per-cell sums of the runs with predictions.
        cfg (BootstrapConfig): replicates, RNG seed, level, units.
        seed_level_ne (Optional[Mapping[Tuple[str, int], float]]): ``{(variant, seed): NE}`` of
            runs known only at seed level (e.g. ``metrics.json`` of runs without predictions);
            they enter at seed level (see the module docstring).

    Example::

        boot = PairedBootstrap(table, BootstrapConfig(n_boot=1000))
        boot.level                      # "seeds x users x items" for a table with item ids
        boot.gain("side").to_dict()
        boot.ratio(("side", "control"), ("traditional_sid", "control")).to_dict()
    """

    def __init__(self, table: UserTable, cfg: Optional[BootstrapConfig] = None,
                 seed_level_ne: Optional[Mapping[Tuple[str, int], float]] = None) -> None:
        self.table = table
        self.cfg: BootstrapConfig = cfg or BootstrapConfig()
        self.seed_level: Dict[Tuple[str, int], float] = dict(seed_level_ne or {})
        self.ne_point: np.ndarray = table.ne()
        self._by_users: bool = self.cfg.resample_users and table.users.size > 0
        self._by_items: bool = (self.cfg.resample_items and table.items is not None and table.items.size > 0)
        B = self.cfg.n_boot
        # seed resample: uniforms, mapped per subset size k to indices floor(u * k)
        self._u: np.ndarray = np.random.default_rng([self.cfg.seed, 2]).random((B, max(len(table.seeds), 1)))
        self.ne_boot: np.ndarray = self._replicate_ne()

    @property
    def level(self) -> str:
        """The units of the quantities computed from predictions: ``"seeds x users x items"``
        (two-way), ``"seeds x users"``, ``"seeds x items"`` or ``"seeds"``."""
        return " x ".join(["seeds"] + (["users"] if self._by_users else []) + (["items"] if self._by_items else []))

    # ------------------------------------------------------------------ resamples

    def _block_rows(self, block: int) -> int:
        """Replicates in block ``block`` (``chunk``, fewer in the last block)."""
        rows = min(self.cfg.chunk, self.cfg.n_boot - block * self.cfg.chunk)
        if rows <= 0:
            raise IndexError(f"block {block} is past n_boot={self.cfg.n_boot}")
        return rows

    def _counts(self, block: int, n: int, stream: int) -> np.ndarray:
        rows = self._block_rows(block)
        if n == 0:
            return np.ones((rows, 0))
        rng = np.random.default_rng([self.cfg.seed, stream, block])
        # int32 draws are the same numbers as int64 ones for n < 2^31, and faster
        idx = rng.integers(0, n, size=(rows, n), dtype=np.int32 if n < 2**31 else np.int64).astype(np.int64)
        idx += (np.arange(rows, dtype=np.int64) * n)[:, None]
        return np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)

    def user_weights(self, block: int) -> np.ndarray:
        """``[rows, U]`` float64 user resample counts of block ``block`` (each row sums to ``U``;
        all ones when users are not resampled).

        Deterministic in (config seed, block, U): every instance with the same user count draws
        the same users.
        """
        if not self._by_users:
            return np.ones((self._block_rows(block), self.table.users.size))
        return self._counts(block, self.table.users.size, 1)

    def item_weights(self, block: int) -> np.ndarray:
        """``[rows, I]`` float64 item resample counts of block ``block`` (each row sums to ``I``;
        all ones when items are not resampled; ``[rows, 0]`` for a table without items).

        Drawn from an RNG stream independent of the users' (deterministic in config seed, block, I).
        """
        items = self.table.items
        I = 0 if items is None else int(items.size)
        if not self._by_items:
            return np.ones((self._block_rows(block), I))
        return self._counts(block, I, 3)

    def _replicate_ne(self) -> np.ndarray:
        t = self.table
        V, S, C = t.loss.shape
        B = self.cfg.n_boot
        out = np.full((B, V, S), np.nan)
        if C == 0 or V == 0 or S == 0:
            return out
        K = V * S
        # one matrix of every per-cell sum: [C, runs' loss | counts | positives]
        X = np.concatenate([t.loss.reshape(K, C).T, t.count.T, t.positives.T], axis=1)
        cu = t.user_of_cell()
        ci = t.cell_item
        two_way = self._by_users and self._by_items
        if not two_way:
            # one margin (or none): reduce the cells to that margin's units once
            if self._by_users:
                group, G = cu, t.users.size
            elif self._by_items and ci is not None and t.items is not None:
                group, G = ci, int(t.items.size)
            else:
                group, G = np.zeros(C, dtype=np.int64), 1
            if not (G == C and t.cell_user is None and group is cu):
                X = np.stack([np.bincount(group, weights=X[:, k], minlength=G) for k in range(X.shape[1])], axis=1)
        blocks = range(math.ceil(B / self.cfg.chunk))
        if self.cfg.progress:
            from tqdm import tqdm

            blocks = tqdm(blocks, desc="bootstrap", unit="block", leave=False)
        sub = max(1, self.cfg.max_block_cells // max(C, 1))
        for b in blocks:
            r0 = b * self.cfg.chunk
            if two_way and ci is not None:
                wu = self.user_weights(b)  # [rows, U]
                wi = self.item_weights(b)  # [rows, I]
                rows = wu.shape[0]
                R = np.empty((rows, X.shape[1]))
                for q0 in range(0, rows, sub):
                    q1 = min(rows, q0 + sub)
                    wc = np.take(wu[q0:q1], cu, axis=1)  # [q, C]: weight of each cell = wu[user] * wi[item]
                    wc *= np.take(wi[q0:q1], ci, axis=1)
                    R[q0:q1] = wc @ X
            elif self._by_users:
                R = self.user_weights(b) @ X
            elif self._by_items:
                R = self.item_weights(b) @ X
            else:
                R = np.broadcast_to(X, (self._block_rows(b), X.shape[1]))
            num = R[:, :K].reshape(-1, V, S)
            n = R[:, K:K + S]
            pos = R[:, K + S:]
            with np.errstate(invalid="ignore", divide="ignore"):
                h = binary_entropy(pos / n)
                out[r0:r0 + R.shape[0]] = num / n[:, None, :] / h[:, None, :]
        out[:, ~t.has] = np.nan
        return out

    # ------------------------------------------------------------------ building blocks

    def _vidx(self, v: str) -> int:
        if v not in self.table.variants and not any(k[0] == v for k in self.seed_level):
            raise KeyError(f"unknown variant {v!r}; known: {self.variants()}")
        return self.table.variants.index(v) if v in self.table.variants else -1

    def variants(self) -> List[str]:
        """Variant names with predictions or seed-level NE."""
        out = list(self.table.variants)
        for v, _ in self.seed_level:
            if v not in out:
                out.append(v)
        return out

    def _has_pred(self, v: str, s: int) -> bool:
        t = self.table
        return v in t.variants and s in t.seeds and bool(t.has[t.variants.index(v), t.seeds.index(s)])

    def seeds_of(self, v: str) -> List[int]:
        """Seeds where variant ``v`` has predictions or a seed-level NE."""
        out = {s for s in self.table.seeds if self._has_pred(v, s)} | {s for (w, s) in self.seed_level if w == v}
        return sorted(out)

    def _ne_matrix(self, names: Sequence[str]) -> Tuple[List[int], str, np.ndarray, np.ndarray]:
        """Common seeds, level, point NE ``[n, k]`` and replicate NE ``[B, n, k]`` of ``names``."""
        for v in names:
            self._vidx(v)
        common = sorted(set.intersection(*[set(self.seeds_of(v)) for v in names])) if names else []
        users = all(self._has_pred(v, s) for v in names for s in common) and (self._by_users or self._by_items)
        B = self.cfg.n_boot
        k = len(common)
        if users:
            t = self.table
            vi = [t.variants.index(v) for v in names]
            si = [t.seeds.index(s) for s in common]
            point = self.ne_point[np.ix_(vi, si)]
            boot = self.ne_boot[:, vi][:, :, si]
            return common, self.level, point, boot
        point = np.empty((len(names), k))
        for i, v in enumerate(names):
            for j, s in enumerate(common):
                if (v, s) in self.seed_level:
                    point[i, j] = self.seed_level[(v, s)]
                else:
                    point[i, j] = self.ne_point[self.table.variants.index(v), self.table.seeds.index(s)]
        return common, "seeds", point, np.broadcast_to(point, (B, len(names), k))

    def seed_resample(self, k: int) -> np.ndarray:
        """``[n_boot, k]`` seed positions (with replacement) for a quantity over ``k`` seeds.

        The same for every quantity over ``k`` seeds, so a ratio's numerator and denominator see
        the same seeds.
        """
        return np.minimum((self._u[:, :k] * k).astype(np.int64), max(k - 1, 0))

    def _mean_over_seeds(self, per_seed_point: np.ndarray, per_seed_boot: np.ndarray) -> Tuple[float, np.ndarray]:
        k = per_seed_point.shape[-1]
        idx = self.seed_resample(k)
        reps = np.take_along_axis(per_seed_boot, idx, axis=1).mean(1)
        return float(per_seed_point.mean()), reps

    def _estimate(self, point: float, reps: np.ndarray, seeds: List[int], level: str,
                  per_seed: Union[Sequence[float], np.ndarray]) -> Estimate:
        if not seeds:
            return Estimate(None, None, None, [], level, [], np.zeros(0))
        lo, hi = percentile_interval(reps, self.cfg.level)
        if level == "seeds" and len(seeds) < 2:
            lo = hi = None
        return Estimate(point if math.isfinite(point) else None, lo, hi, list(seeds), level,
                        [float(x) for x in per_seed], reps)

    # ------------------------------------------------------------------ quantities

    def _gain_parts(self, pairs: Sequence[Tuple[str, str]]) -> Tuple[List[int], str, List[np.ndarray], List[np.ndarray]]:
        names: List[str] = []
        for a, b in pairs:
            for x in (a, b):
                if x not in names:
                    names.append(x)
        seeds, level, point, boot = self._ne_matrix(names)
        pts, bts = [], []
        for a, b in pairs:
            i, j = names.index(a), names.index(b)
            with np.errstate(invalid="ignore", divide="ignore"):
                pts.append(100.0 * (point[j] - point[i]) / point[j])
                bts.append(100.0 * (boot[:, j] - boot[:, i]) / boot[:, j])
        return seeds, level, pts, bts

    def gain(self, variant: str, reference: str = "control") -> Estimate:
        """NE gain (%) of ``variant`` over ``reference``: mean over their common seeds, with interval.

        Args:
            variant (str): the variant.
            reference (str): the reference (control, or traditional SID for gain over it).

        Returns:
            Estimate: point, 95% interval, verdict (separated from 0 or not).
        """
        seeds, level, pts, bts = self._gain_parts([(variant, reference)])
        if not seeds:
            return Estimate(None, None, None, [], level)
        point, reps = self._mean_over_seeds(pts[0], bts[0])
        return self._estimate(point, reps, seeds, level, pts[0])

    def contrast(self, a: Tuple[str, str], b: Tuple[str, str], factor: float = 1.0) -> Estimate:
        """``gain(a) - factor * gain(b)`` on their common seeds (a threshold on a ratio, always defined).

        Args:
            a (Tuple[str, str]): ``(variant, reference)`` of the first gain.
            b (Tuple[str, str]): ``(variant, reference)`` of the second gain.
            factor (float): the threshold (e.g. 2.4 for "a >= 2.4 x b").

        Returns:
            Estimate: the contrast; separated and > 0 means the threshold is cleared with confidence.
        """
        seeds, level, pts, bts = self._gain_parts([a, b])
        if not seeds:
            return Estimate(None, None, None, [], level)
        p = pts[0] - factor * pts[1]
        point, reps = self._mean_over_seeds(p, bts[0] - factor * bts[1])
        return self._estimate(point, reps, seeds, level, p)

    def ratio(self, num: Tuple[str, str], den: Tuple[str, str]) -> RatioEstimate:
        """``gain(num) / gain(den)`` on their common seeds, same resamples for both.

        Args:
            num (Tuple[str, str]): ``(variant, reference)`` of the numerator gain.
            den (Tuple[str, str]): ``(variant, reference)`` of the denominator gain.

        Returns:
            RatioEstimate: see the module docstring for the undefined cases.
        """
        seeds, level, pts, bts = self._gain_parts([num, den])
        if not seeds:
            e = Estimate(None, None, None, [], level)
            return RatioEstimate(None, None, None, "undefined: no seeds in common", e, e, float("nan"))
        pn, rn = self._mean_over_seeds(pts[0], bts[0])
        pd, rd = self._mean_over_seeds(pts[1], bts[1])
        en = self._estimate(pn, rn, seeds, level, pts[0])
        ed = self._estimate(pd, rd, seeds, level, pts[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = np.where(rd > 0, rn / rd, np.nan)
        share = float(np.mean(~(rd > 0)))
        if not (pd > 0):
            return RatioEstimate(None, None, None, f"undefined: the denominator's gain ({_fmt(pd)}%) is not positive",
                                 en, ed, share, reps)
        point = pn / pd
        if ed.lo is None or ed.lo <= 0:
            why = ("has no interval (one seed, seed level)" if ed.lo is None else
                   f"95% interval [{_fmt(ed.lo)}, {_fmt(ed.hi)}]% covers 0")
            return RatioEstimate(point, None, None, f"interval undefined: the denominator's gain {why}",
                                 en, ed, share, reps)
        lo, hi = percentile_interval(reps, self.cfg.level)
        return RatioEstimate(point, lo, hi, "ok", en, ed, share, reps)
