# pyre-strict
"""Statistics that can separate variants (docs/design.md section 7b).

* **NE** (normalized entropy): mean log loss of the predicted probabilities divided by the
  entropy of the base rate of the same examples (lower is better). Probabilities are clipped to
  ``[1e-7, 1 - 1e-7]`` before the log, so a saturated float32 score costs at most ``-log(1e-7)``.
* **NE gain** of variant ``v`` over reference ``r`` (usually the control) for one seed:
  ``100 * (NE_r - NE_v) / NE_r``; a variant's gain is the mean of its per-seed gains over the seeds
  both runs have (paired: the same seed means the same data order and initialisation of the
  shared parts, and the same test rows).
* **Paired two-level bootstrap.** Each replicate resamples the *seeds* with replacement and the
  *test users* with replacement (users, not events, are the independent units: a user's events
  share the user's taste and history). One user resample is drawn per replicate and applied to
  every run of every variant and seed, so both sides of a pair always see the same users. Each
  run is reduced once to per-user sufficient statistics (sum of log loss, number of events,
  number of positives), so a replicate's NE is a weighted sum: ``W @ L`` with ``W`` the
  ``[replicates, users]`` resample counts, computed in vectorised blocks.
* **Intervals**: percentile intervals of the replicates (95% by default). An interval that covers
  zero is reported as **"not separated"**, one that excludes it as **"separated"**.
* **Ratio of two gains** (e.g. SIDE's gain / traditional SID's gain), each replicate's ratio from
  the same seed and user resample. How undefined ratios are reported:

  - denominator's point gain <= 0: the ratio is ``None`` (``status`` says so) and no interval;
  - denominator's interval covers 0 (or lies below it): the point ratio is given, the interval is
    ``None`` (replicate ratios are unbounded there) and ``status`` names the denominator's interval;
  - otherwise: point ratio and percentile interval of the replicate ratios.

  A threshold on a ratio (``gain_a >= t * gain_b``) is always testable as the **contrast**
  ``gain_a - t * gain_b`` (:meth:`PairedBootstrap.contrast`), whose interval is always defined.
* **Fallback**: a run without per-user predictions (older run folders) enters at seed level only:
  every quantity it takes part in is bootstrapped over seeds alone from the seed-level NE
  (``level = "seeds"``), never mixing a user-resampled side with a fixed one.

Example::

    table = UserTable.build(preds, variants=["control", "side"])   # preds: {seed: SeedPredictions}
    boot = PairedBootstrap(table, BootstrapConfig(n_boot=2000, seed=0))
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
    """Settings of the paired two-level bootstrap.

    Args:
        n_boot (int): replicates (1,000-2,000 for reported intervals).
        seed (int): RNG seed; the same seed and table give the same intervals.
        level (float): interval coverage, in (0, 1).
        chunk (int): replicates per vectorised block (memory: ``chunk x users`` float64).
        resample_users (bool): resample test users (False: seeds only).
        progress (bool): a tqdm bar over the blocks.
    """

    n_boot: int = 2000
    seed: int = 0
    level: float = 0.95
    chunk: int = 100
    resample_users: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.n_boot, int) or self.n_boot < 10:
            raise ValueError(f"BootstrapConfig.n_boot must be an int >= 10, got {self.n_boot!r}")
        if not (0.0 < float(self.level) < 1.0):
            raise ValueError(f"BootstrapConfig.level must be in (0, 1), got {self.level!r}")
        if not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"BootstrapConfig.chunk must be an int >= 1, got {self.chunk!r}")


@dataclass
class UserTable:
    """Per-user sufficient statistics of paired runs on one test set.

    Runs are indexed by ``(variant, seed)``; every seed has its own test rows (normally the same
    rows for all seeds), reduced over a shared user index so that one user resample applies to
    all runs.

    Args:
        users (np.ndarray): ``[U]`` int64 user ids (the resampling units).
        variants (List[str]): ``V`` variant names.
        seeds (List[int]): ``S`` seeds.
        count (np.ndarray): ``[S, U]`` float64 events per user in each seed's test set.
        positives (np.ndarray): ``[S, U]`` float64 sum of labels per user.
        loss (np.ndarray): ``[V, S, U]`` float64 sum of log loss per user (0 where absent).
        has (np.ndarray): ``[V, S]`` bool, True where the run has predictions.

    Example::

        t = UserTable.from_arrays({0: (user_id, label, {"control": p0, "side": p1})})
    """

    users: np.ndarray
    variants: List[str]
    seeds: List[int]
    count: np.ndarray
    positives: np.ndarray
    loss: np.ndarray
    has: np.ndarray

    @staticmethod
    def from_arrays(
        per_seed: Mapping[int, Tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray]]],
        variants: Optional[Sequence[str]] = None,
        users: Optional[np.ndarray] = None,
    ) -> "UserTable":
        """Reduces per-seed rows to per-user sums.

        Args:
            per_seed: ``{seed: (user_id [N], label [N], {variant: prob [N]})}``.
            variants: variant order (default: every name seen, in first-seen order).
            users: the user index (default: the sorted union of the user ids seen).

        Returns:
            UserTable: the table; runs absent from ``per_seed`` have ``has = False``.
        """
        seeds = sorted(int(s) for s in per_seed)
        if variants is None:
            seen: List[str] = []
            for s in seeds:
                for v in per_seed[s][2]:
                    if v not in seen:
                        seen.append(v)
            variants = seen
        names = list(variants)
        if users is None:
            users = np.unique(np.concatenate([np.asarray(per_seed[s][0], dtype=np.int64) for s in seeds])) \
                if seeds else np.zeros(0, dtype=np.int64)
        users = np.asarray(users, dtype=np.int64)
        U, V, S = users.size, len(names), len(seeds)
        count = np.zeros((S, U))
        pos = np.zeros((S, U))
        loss = np.zeros((V, S, U))
        has = np.zeros((V, S), dtype=bool)
        for j, s in enumerate(seeds):
            uid, lab, probs = per_seed[s]
            uid = np.asarray(uid, dtype=np.int64)
            lab = np.asarray(lab, dtype=np.float64)
            idx = np.searchsorted(users, uid)
            if uid.size and (np.any(idx >= U) or np.any(users[np.minimum(idx, U - 1)] != uid)):
                raise ValueError(f"seed {s}: user ids not in the user index")
            count[j] = np.bincount(idx, minlength=U)
            pos[j] = np.bincount(idx, weights=lab, minlength=U)
            for v, p in probs.items():
                if v not in names:
                    continue
                i = names.index(v)
                loss[i, j] = np.bincount(idx, weights=log_loss(lab, np.asarray(p)), minlength=U)
                has[i, j] = True
        return UserTable(users=users, variants=names, seeds=seeds, count=count, positives=pos, loss=loss, has=has)

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
        level (str): ``"seeds x users"`` or ``"seeds"`` (see the module docstring).
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
    """The paired two-level bootstrap over seeds and test users (see the module docstring).

    Computes, once, the NE of every run in every replicate (``[n_boot, V, S]``); gains, ratios,
    contrasts and oracle shares are then cheap functions of it. Two instances built with the same
    config over tables with the same user index and seeds draw identical resamples (used by the
    slices, so a slice's interval uses the same users as the overall one).

    Args:
        table (UserTable): per-user sums of the runs with predictions.
        cfg (BootstrapConfig): replicates, RNG seed, level.
        seed_level_ne (Optional[Mapping[Tuple[str, int], float]]): ``{(variant, seed): NE}`` of
            runs known only at seed level (e.g. ``metrics.json`` of runs without predictions);
            they enter at seed level (see the module docstring).

    Example::

        boot = PairedBootstrap(table, BootstrapConfig(n_boot=1000))
        boot.gain("side").to_dict()
        boot.ratio(("side", "control"), ("traditional_sid", "control")).to_dict()
    """

    def __init__(self, table: UserTable, cfg: Optional[BootstrapConfig] = None,
                 seed_level_ne: Optional[Mapping[Tuple[str, int], float]] = None) -> None:
        self.table = table
        self.cfg: BootstrapConfig = cfg or BootstrapConfig()
        self.seed_level: Dict[Tuple[str, int], float] = dict(seed_level_ne or {})
        self.ne_point: np.ndarray = table.ne()
        B = self.cfg.n_boot
        # seed resample: uniforms, mapped per subset size k to indices floor(u * k)
        self._u: np.ndarray = np.random.default_rng([self.cfg.seed, 2]).random((B, max(len(table.seeds), 1)))
        self.ne_boot: np.ndarray = self._replicate_ne()

    # ------------------------------------------------------------------ resamples

    def user_weights(self, block: int) -> np.ndarray:
        """``[rows, U]`` float64 resample counts of block ``block`` (each row sums to ``U``).

        Deterministic in (config seed, block, U): every instance with the same user count draws
        the same users.
        """
        U = self.table.users.size
        B = self.cfg.n_boot
        start = block * self.cfg.chunk
        rows = min(self.cfg.chunk, B - start)
        if rows <= 0:
            raise IndexError(f"block {block} is past n_boot={B}")
        if not self.cfg.resample_users or U == 0:
            return np.ones((rows, U))
        rng = np.random.default_rng([self.cfg.seed, 1, block])
        idx = rng.integers(0, U, size=(rows, U)) + (np.arange(rows) * U)[:, None]
        return np.bincount(idx.ravel(), minlength=rows * U).reshape(rows, U).astype(np.float64)

    def _replicate_ne(self) -> np.ndarray:
        t = self.table
        V, S, U = t.loss.shape
        B = self.cfg.n_boot
        out = np.full((B, V, S), np.nan)
        if U == 0 or V == 0 or S == 0:
            return out
        L = t.loss.reshape(V * S, U).T  # [U, V*S]
        blocks = range(math.ceil(B / self.cfg.chunk))
        if self.cfg.progress:
            from tqdm import tqdm

            blocks = tqdm(blocks, desc="bootstrap", unit="block", leave=False)
        for b in blocks:
            W = self.user_weights(b)
            r0 = b * self.cfg.chunk
            num = (W @ L).reshape(-1, V, S)
            n = W @ t.count.T  # [rows, S]
            pos = W @ t.positives.T
            with np.errstate(invalid="ignore", divide="ignore"):
                h = binary_entropy(pos / n)
                out[r0:r0 + W.shape[0]] = num / n[:, None, :] / h[:, None, :]
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
        users = all(self._has_pred(v, s) for v in names for s in common) and self.cfg.resample_users
        B = self.cfg.n_boot
        k = len(common)
        if users:
            t = self.table
            vi = [t.variants.index(v) for v in names]
            si = [t.seeds.index(s) for s in common]
            point = self.ne_point[np.ix_(vi, si)]
            boot = self.ne_boot[:, vi][:, :, si]
            return common, "seeds x users", point, boot
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
