# pyre-strict
"""The report's analysis step: from the records (:mod:`torchrec_side.report.inputs`) to one typed
:class:`Analysis` (per-variant rows, gains and shares with their intervals, ceilings, the ablation
grid and its contrasts, the sequence comparisons, the target lines and the control-world verdict).

The statistics are :mod:`torchrec_side.eval`'s (paired bootstrap, slices); definitions in
:mod:`torchrec_side.report`. :meth:`Analysis.to_json` is ``report.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from torchrec_side.eval.stats import Estimate, RatioEstimate
from torchrec_side.report import targets as _targets
from torchrec_side.report._format import interval, num
from torchrec_side.report.inputs import LinkedReport, ReportInputs
from torchrec_side.records import PipelineRecord, RecordError, RunRecord, TunedSetting, WorldInfo
from torchrec_side.report.targets import TargetLine

__all__ = ["ReportConfig", "VariantRow", "SeedRatio", "BootRatio", "Ceiling", "AblationCell", "AblationContrast",
           "SequenceComparison", "ColdComparison", "Protocol", "Statistics", "ControlWorld", "Analysis", "analyse",
           "summarize", "side_vs_traditional", "world_kind", "control_world_verdict", "verdict_of"]

#: The ablation variant with the SIDE SIDs dealt to random items (``experiments.sim``).
PERMUTED_SIDE: str = "side_permuted_sid"

#: Sequence-model pairs ``(variant, reference)``: DIN against DLRM on the same features, and the
#: DIN variants against each other (``experiments.sim``; reported when both ran).
SEQUENCE_PAIRS: Tuple[Tuple[str, str], ...] = (
    ("seq_side", "side"), ("seq_sparse_id", "sparse_id"), ("seq_traditional_sid", "traditional_sid"),
    ("seq_raw_content", "raw_content"), ("seq_side", "seq_traditional_sid"), ("seq_side", "seq_raw_content"),
    ("seq_sparse_id", "seq_side"),
)

#: The tokenizer x embedding ablation grid (docs/design.md section 7b; ``experiments.sim``): one row per
#: tokenizer, ``(key, label, (prefix-ngram variant, SIDE variant))``; ``traditional_sid`` and ``side``
#: are two of its six cells.
ABLATION_ROWS: Tuple[Tuple[str, str, Tuple[str, str]], ...] = (
    ("rq_kmeans", "RQ-KMeans 3x256 per collection (text, image)", ("traditional_sid", "side_rq")),
    ("fusion_nolabels", "VQ fusion (text + image), no label heads", ("prefix_fused_nolabels", "side_fused_nolabels")),
    ("fusion_labels", "VQ fusion (text + image) + category heads", ("prefix_fused", "side")),
)
#: The grid's columns (embeddings), ``(key, label)``, in the order of :data:`ABLATION_ROWS`' variant pairs.
ABLATION_COLUMNS: Tuple[Tuple[str, str], ...] = (("prefix_ngram", "prefix-ngram (learned tables)"),
                                                 ("side", "SIDE (parameter-free)"))
#: SIDE's lead over traditional SID split along the grid, ``(key, what it isolates, variant, reference)``:
#: each a paired gain of ``variant`` over ``reference`` (also in ``pairs``); the three differences of
#: gains over control add up to ``side``'s gain minus ``traditional_sid``'s exactly.
ABLATION_CONTRASTS: Tuple[Tuple[str, str, str, str], ...] = (
    ("labels", "the tokenizer's label heads (VQ fusion, SIDE fixed)", "side", "side_fused_nolabels"),
    ("fusion", "fusing text + image without labels over per-collection RQ-KMeans (SIDE fixed)",
     "side_fused_nolabels", "side_rq"),
    ("embedding", "SIDE over prefix-ngram tables (RQ-KMeans SIDs fixed)", "side_rq", "traditional_sid"),
)

#: ``report.json`` ``ceilings`` keys -> reference column (docs/design.md section 7c), in display order.
CEILING_KEYS: Tuple[Tuple[str, str], ...] = (("content", "p_content"), ("content_item", "p_content_item"),
                                             ("id", "p_id"), ("oracle", "p_true"))

#: Worlds with their own target list; other names are classified by :func:`world_kind`.
WORLD_KINDS: Tuple[str, ...] = ("movielens", "simulated", "id_dominant")


@dataclass(frozen=True)
class ReportConfig:
    """What the report computes.

    Args:
        world (Optional[str]): world name (e.g. ``movielens``, ``adsworld``,
            ``adsworld_id_dominant``); default: ``pipeline.json``'s ``world``, else ``adsworld``
            when the predictions carry ``p_true``, else ``movielens``.
        plots (bool): write the PNG plots.
        n_boot (int): bootstrap replicates of the overall numbers.
        slice_n_boot (int): replicates per slice (0: point numbers only).
        seed (int): bootstrap RNG seed.
        control (str): the reference variant of the gains.
        side (str): the SIDE variant.
        traditional (str): the traditional-SID variant.
        raw_content (str): the raw-content variant.
        sparse_id (str): the sparse-ID variant.
        progress (bool): tqdm bars.
        control_world (Optional[str]): the demo folder of the control world (id-only term
            dominant) whose ``report.json`` holds the "sparse-ID must win" target; its target line
            is copied into this report. Default: ``pipeline.json``'s ``control_world``.
        extra_pairs (Tuple[Tuple[str, str], ...]): more ``(variant, reference)`` gains to report.
        resample_items (bool): the two-way bootstrap (users x items); False: users only.
    """

    world: Optional[str] = None
    plots: bool = True
    n_boot: int = 2000
    slice_n_boot: int = 500
    seed: int = 0
    control: str = "control"
    side: str = "side"
    traditional: str = "traditional_sid"
    raw_content: str = "raw_content"
    sparse_id: str = "sparse_id"
    progress: bool = False
    control_world: Optional[str] = None
    extra_pairs: Tuple[Tuple[str, str], ...] = field(default_factory=tuple)
    resample_items: bool = True

    def role(self, name: str) -> str:
        """The variant playing ``name`` (``control``, ``side``, ``traditional``, ``raw_content``,
        ``sparse_id``)."""
        return str(getattr(self, name))


def _mean(x: Sequence[float]) -> Optional[float]:
    return float(np.mean(x)) if len(x) else None


def _std(x: Sequence[float]) -> Optional[float]:
    return float(np.std(x, ddof=1)) if len(x) > 1 else (0.0 if len(x) == 1 else None)


# ------------------------------------------------------------------------------------------------
# rows


@dataclass(frozen=True)
class VariantRow:
    """One variant: seed-level numbers from ``metrics.json``, then the bootstrap's.

    ``ne_gain_pct_*`` are the paired gains over control (the bootstrap's point and per-seed gains
    when it measured the variant); ``gain``, ``gain_vs_traditional``, ``oracle_share`` and
    ``ceiling_share`` the bootstrap estimates (None when not measured); ``tuned`` the setting
    tuning chose (None: not tuned).
    """

    variant: str
    seeds: Tuple[int, ...]
    ne_mean: Optional[float]
    ne_std: Optional[float]
    ne_gain_pct_mean: Optional[float]
    ne_gain_pct_std: Optional[float]
    ne_gain_pct_per_seed: Mapping[str, float]
    auc_mean: Optional[float]
    val_ne_mean: Optional[float]
    bytes_per_event: Optional[float]
    min_packed_bytes_per_event: Optional[float]
    file_bytes_per_event: Optional[float]
    learned_params: Optional[int]
    train_examples_per_s: Optional[float]
    arch: Optional[str]
    epochs: Optional[float]
    best_epochs: Mapping[str, Optional[int]]
    gain: Optional[Estimate] = None
    gain_vs_traditional: Optional[Estimate] = None
    oracle_share: Optional[RatioEstimate] = None
    ceiling_share: Optional[RatioEstimate] = None
    tuned: Optional[TunedSetting] = None

    #: the keys of ``report.json``'s ``rows`` (``details`` has all of :meth:`to_dict`)
    SUMMARY = ("variant", "seeds", "ne_mean", "ne_std", "ne_gain_pct_mean", "ne_gain_pct_std", "auc_mean",
               "bytes_per_event", "learned_params", "train_examples_per_s", "ceiling_share", "best_epochs", "tuned")

    def to_dict(self) -> Dict[str, Any]:
        """``report.json``'s ``details`` entry."""
        e = self.gain
        return {
            "variant": self.variant, "seeds": list(self.seeds), "ne_mean": self.ne_mean, "ne_std": self.ne_std,
            "ne_gain_pct_mean": self.ne_gain_pct_mean, "ne_gain_pct_std": self.ne_gain_pct_std,
            "ne_gain_pct_per_seed": dict(self.ne_gain_pct_per_seed), "auc_mean": self.auc_mean,
            "val_ne_mean": self.val_ne_mean, "bytes_per_event": self.bytes_per_event,
            "min_packed_bytes_per_event": self.min_packed_bytes_per_event,
            "file_bytes_per_event": self.file_bytes_per_event, "learned_params": self.learned_params,
            "train_examples_per_s": self.train_examples_per_s, "arch": self.arch, "epochs": self.epochs,
            "best_epochs": dict(self.best_epochs),
            "ne_gain_ci95": interval(e),
            "ne_gain_verdict": e.verdict if e is not None else None,
            "ne_gain_level": e.level if e is not None else None,
            "ne_gain_vs_traditional": (self.gain_vs_traditional.to_dict() if self.gain_vs_traditional is not None
                                       else None),
            "oracle_share": self.oracle_share.to_dict() if self.oracle_share is not None else None,
            "ceiling_share": self.ceiling_share.to_dict() if self.ceiling_share is not None else None,
            "tuned": self.tuned.to_dict() if self.tuned is not None else None,
        }

    def summary(self) -> Dict[str, Any]:
        """``report.json``'s ``rows`` entry."""
        d = self.to_dict()
        return {k: d[k] for k in self.SUMMARY}


def _bytes_per_event(run: RunRecord) -> Tuple[float, float, float]:
    """``(as the model consumes it, as stored in the file, smallest packed)`` summed over the
    run's history features."""
    model = file_b = minimal = 0.0
    for h in run.history:
        fp_value = h.footprint.value_bytes_per_event if h.footprint else None
        consumed = float(h.model_bytes_per_event if h.model_bytes_per_event is not None
                         else (fp_value if fp_value is not None else 0.0))
        model += consumed
        minimal += float(h.min_packed_bytes_per_event if h.min_packed_bytes_per_event is not None else consumed)
        if h.kind == "raw_content":
            file_b += float(h.model_bytes_per_event or 0.0)
        else:
            fb = h.footprint.file_bytes_per_event if h.footprint else None
            file_b += float(fb if fb is not None else 0.0)
    return model, file_b, minimal


def _test(run: RunRecord, variant: str, key: str = "ne") -> float:
    """The test ``key`` (``ne`` / ``auc``) of a finished run; :class:`RecordError` when it has none."""
    v = getattr(run.test, key, None) if run.test is not None else None
    if v is None:
        raise RecordError(f"{variant} seed {run.seed}: metrics.json has no test {key} (a run that did not score test)")
    return float(v)


def _test_ne(run: RunRecord, variant: str) -> float:
    return _test(run, variant, "ne")


def _row(name: str, per: Mapping[int, RunRecord], ctrl: Mapping[int, RunRecord], control: str) -> VariantRow:
    seeds = sorted(per)
    ne = [_test_ne(per[s], name) for s in seeds]
    paired = [s for s in seeds if s in ctrl]
    gains = [100.0 * (_test_ne(ctrl[s], control) - _test_ne(per[s], name)) / _test_ne(ctrl[s], control)
             for s in paired]
    val = [float(r.val.ne) for r in (per[s] for s in seeds) if r.val is not None and r.val.ne is not None]
    speed = [float(r.train_examples_per_s) for r in (per[s] for s in seeds) if r.train_examples_per_s]
    best = {str(s): per[s].best_epoch for s in seeds}
    first = per[seeds[0]] if seeds else None
    model, file_b, minimal = _bytes_per_event(first) if first is not None else (None, None, None)
    return VariantRow(
        variant=name, seeds=tuple(seeds), ne_mean=_mean(ne), ne_std=_std(ne),
        ne_gain_pct_mean=_mean(gains), ne_gain_pct_std=_std(gains),
        ne_gain_pct_per_seed=dict(zip([str(s) for s in paired], gains)),
        auc_mean=_mean([_test(per[s], name, "auc") for s in seeds]), val_ne_mean=_mean(val),
        bytes_per_event=model, min_packed_bytes_per_event=minimal, file_bytes_per_event=file_b,
        learned_params=first.learned_total if first is not None else None, train_examples_per_s=_mean(speed),
        arch=first.arch if first is not None else None, epochs=first.epochs if first is not None else None,
        # each seed's best validation epoch (None where metrics.json has none)
        best_epochs={s: (None if b is None else int(b)) for s, b in best.items()})


def summarize(runs: Mapping[str, Mapping[int, RunRecord]], control: str = "control") -> List[VariantRow]:
    """One row per variant from the seed-level ``metrics.json`` numbers (gains paired by seed)."""
    ctrl = runs.get(control, {})
    return [_row(name, per, ctrl, control) for name, per in runs.items()]


# ------------------------------------------------------------------------------------------------
# SIDE over traditional SID


@dataclass(frozen=True)
class SeedRatio:
    """The seed-level ratio of mean NE gains, SIDE over traditional SID (bootstrap over seeds
    only): what ``side_vs_traditional_ne_gain`` holds when the two-level bootstrap could not
    measure it. ``side_gain`` is None when the ratio was not attempted (``note`` says why)."""

    ratio: Optional[float]
    note: str
    side_gain: Optional[float] = None
    traditional_gain: Optional[float] = None
    seeds: Tuple[int, ...] = ()
    ratio_std: Optional[float] = None
    ratio_p05: Optional[float] = None
    ratio_p95: Optional[float] = None
    nonpositive_resamples: Optional[int] = None

    ci: Optional[List[Optional[float]]] = None
    status: Optional[str] = None
    level: Optional[str] = None
    contrast: Optional[Estimate] = None

    def to_dict(self) -> Dict[str, Any]:
        if self.side_gain is None:
            return {"ratio": self.ratio, "note": self.note}
        out: Dict[str, Any] = {"side_gain_pct_mean": self.side_gain, "traditional_gain_pct_mean": self.traditional_gain,
                               "seeds": list(self.seeds), "ratio": self.ratio, "ratio_std": self.ratio_std,
                               "ratio_p05": self.ratio_p05, "ratio_p95": self.ratio_p95}
        if self.nonpositive_resamples is not None:
            out["bootstrap_resamples_with_nonpositive_traditional_gain"] = self.nonpositive_resamples
        out["note"] = self.note
        return out


def side_vs_traditional(rows: Sequence[VariantRow], side: str = "side", traditional: str = "traditional_sid",
                        n_boot: int = 2000, seed: int = 0) -> SeedRatio:
    """Seed-level ratio of mean NE gains, SIDE over traditional SID (bootstrap over seeds only).

    Kept for callers of the seed-level summary; :func:`analyse` computes the two-level version.
    """
    by = {r.variant: r for r in rows}
    if side not in by or traditional not in by:
        return SeedRatio(None, f"needs both {side!r} and {traditional!r} variants")
    gs, gt = by[side].ne_gain_pct_per_seed, by[traditional].ne_gain_pct_per_seed
    common = sorted(set(gs) & set(gt), key=int)
    if not common:
        return SeedRatio(None, "no seeds in common")
    a = np.array([gs[s] for s in common])
    b = np.array([gt[s] for s in common])
    base = SeedRatio(None, "", float(a.mean()), float(b.mean()), tuple(int(s) for s in common))
    if b.mean() <= 0:
        return replace(base, note=(f"traditional SID's mean NE gain is not positive ({b.mean():+.3f}%): the ratio is "
                                   f"meaningless; SIDE's mean gain is {a.mean():+.3f}%"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(common), size=(n_boot, len(common)))
    bm = b[idx].mean(1)
    ok = bm > 0
    ratios = a[idx].mean(1)[ok] / bm[ok]
    return replace(base, ratio=float(a.mean() / b.mean()),
                   ratio_std=float(ratios.std(ddof=1)) if ratios.size > 1 else None,
                   ratio_p05=float(np.percentile(ratios, 5)) if ratios.size else None,
                   ratio_p95=float(np.percentile(ratios, 95)) if ratios.size else None,
                   nonpositive_resamples=int((~ok).sum()), note="bootstrap over paired seeds")


@dataclass(frozen=True)
class BootRatio:
    """``side_vs_traditional_ne_gain`` from the two-level bootstrap: the ratio, its interval and
    status, both gains, and ``contrast`` (``gain_SIDE - threshold x gain_traditional``)."""

    estimate: RatioEstimate
    note: str
    contrast: Optional[Estimate]

    @property
    def ratio(self) -> Optional[float]:
        return self.estimate.point

    @property
    def side_gain(self) -> Optional[float]:
        return self.estimate.numerator.point

    @property
    def traditional_gain(self) -> Optional[float]:
        return self.estimate.denominator.point

    @property
    def ci(self) -> Optional[List[Optional[float]]]:
        return interval(self.estimate)

    @property
    def status(self) -> Optional[str]:
        return self.estimate.status

    @property
    def level(self) -> Optional[str]:
        return self.estimate.numerator.level

    def to_dict(self) -> Dict[str, Any]:
        r = self.estimate
        reps = r.replicates[np.isfinite(r.replicates)]
        defined = r.point is not None
        out: Dict[str, Any] = {
            "ratio": r.point,
            "ratio_ci95": interval(r),
            "ratio_std": float(reps.std(ddof=1)) if defined and reps.size > 1 else None,
            "ratio_p05": float(np.percentile(reps, 5)) if defined and reps.size else None,
            "ratio_p95": float(np.percentile(reps, 95)) if defined and reps.size else None,
            "status": r.status,
            "level": r.numerator.level,
            "side_gain_pct_mean": r.numerator.point,
            "traditional_gain_pct_mean": r.denominator.point,
            "side_gain_ci95": interval(r.numerator),
            "traditional_gain_ci95": interval(r.denominator),
            "bootstrap_share_nonpositive_traditional_gain": r.nonpositive_denominator_share,
            "seeds": r.numerator.seeds,
            "note": self.note,
        }
        if self.contrast is not None:
            out["side_minus_2_4x_traditional"] = self.contrast.to_dict()
        return out


def _boot_ratio(r: RatioEstimate, contrast: Optional[Estimate]) -> BootRatio:
    note = r.status if r.status != "ok" else f"paired bootstrap over {r.numerator.level}"
    if r.point is None and r.denominator.point is not None and r.denominator.point <= 0:
        note = (f"traditional SID's mean NE gain is not positive ({r.denominator.point:+.3f}%): the ratio is "
                f"meaningless; SIDE's mean gain is {num(r.numerator.point, '{:+.3f}')}%")
    return BootRatio(r, note, contrast)


# ------------------------------------------------------------------------------------------------
# ceilings, the ablation grid, sequence models, slices


@dataclass(frozen=True)
class Ceiling:
    """A reference column scored as a pseudo-variant: its test NE (mean over seeds) and paired NE
    gain over control (``key``: ``content``, ``content_item``, ``id``, ``oracle``)."""

    key: str
    variant: str
    column: str
    ne: Optional[float]
    gain: Optional[Estimate]

    def to_dict(self) -> Dict[str, Any]:
        return {"variant": self.variant, "column": self.column, "ne": self.ne,
                "ne_gain_pct": self.gain.point if self.gain is not None else None,
                "ne_gain_ci95": interval(self.gain)}


@dataclass(frozen=True)
class AblationCell:
    """A cell of the tokenizer x embedding grid: its variant and NE gain over control (None: not run)."""

    row: str
    label: str
    column: str
    variant: str
    gain: Optional[Estimate]


@dataclass(frozen=True)
class AblationContrast:
    """A step of SIDE's lead along the grid: the paired gain of ``variant`` over ``reference``
    and the difference of their gains over control (``points``); None when a side did not run."""

    key: str
    isolates: str
    variant: str
    reference: str
    gain: Optional[Estimate]
    points: Optional[Estimate]

    @property
    def pair(self) -> str:
        return f"{self.variant}_over_{self.reference}"

    def to_dict(self) -> Dict[str, Any]:
        return {"isolates": self.isolates, "variant": self.variant, "reference": self.reference, "pair": self.pair,
                "gain": self.gain.to_dict() if self.gain is not None else None,
                "points": self.points.to_dict() if self.points is not None else None}


@dataclass(frozen=True)
class SequenceComparison:
    """The paired gain of a DIN variant over its reference (:data:`SEQUENCE_PAIRS`)."""

    variant: str
    reference: str
    gain: Estimate


@dataclass(frozen=True)
class ColdComparison:
    """SIDE over raw content on the cold target items (the item-frequency slice ``cold``)."""

    rows: Any
    point: float
    ci95: Optional[List[float]]
    verdict: Any
    ne_side: Optional[float]
    ne_raw: Optional[float]


def _cold(slices: Mapping[str, Any], side: str, raw: str) -> Optional[ColdComparison]:
    cold = ((slices or {}).get("item_freq", {}).get("buckets", {}).get("cold") or {})
    cp = (cold.get("pairs") or {}).get(f"{side}_over_{raw}")
    if cp is None or cp.get("point") is None:
        return None
    ne = cold.get("ne", {})
    return ColdComparison(cold.get("rows"), cp["point"], cp.get("ci95"), cp.get("verdict"), ne.get(side), ne.get(raw))


# ------------------------------------------------------------------------------------------------
# protocol, statistics, control world


@dataclass(frozen=True)
class Protocol:
    """``report.json["protocol"]``: most epochs, patience, the tuning grid and seed (None: not
    tuned) and the runs whose best validation epoch was the last one allowed (``variant sN``;
    more epochs might have helped them)."""

    max_epochs: Any
    patience: Any
    tuning_settings: Optional[Mapping[str, List[str]]]
    tuning_seed: Any
    runs: int
    best_epoch_at_cap: Tuple[str, ...]

    def to_dict(self) -> Dict[str, Any]:
        return {"max_epochs": self.max_epochs, "patience": self.patience, "tuning_settings": self.tuning_settings,
                "tuning_seed": self.tuning_seed, "runs": self.runs, "best_epoch_at_cap": list(self.best_epoch_at_cap)}


def _protocol(rec: PipelineRecord, rows: Sequence[VariantRow]) -> Protocol:
    cap = rec.max_epochs
    at_cap = [f"{r.variant} s{s}" for r in rows for s, b in r.best_epochs.items()
              if cap is not None and b is not None and int(b) >= int(cap)]
    tu = rec.tuning
    return Protocol(cap, rec.early_stop_patience, tu.settings if tu else None, tu.seed if tu else None,
                    sum(len(r.best_epochs) for r in rows), tuple(at_cap))


def _units(level: str) -> str:
    """``"seeds x users x items"`` -> words for the report (two-way: Owen's pigeonhole bootstrap)."""
    parts = level.split(" x ")
    words = [{"seeds": "seeds", "users": "test users", "items": "test items"}.get(p, p) for p in parts]
    text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    two_way = "users" in parts and "items" in parts
    return text + (", resampled independently with replacement (two-way pigeonhole bootstrap, Owen 2007)" if two_way
                   else ", resampled with replacement")


@dataclass(frozen=True)
class Statistics:
    """``report.json["statistics"]``: the bootstrap's settings and units, the runs with and
    without predictions, and the check of the predictions' NE against ``metrics.json``."""

    n_boot: int
    slice_n_boot: int
    seed: int
    level: str
    runs_with_predictions: int
    runs_without_predictions: Tuple[Tuple[str, int], ...]
    max_abs_diff: Optional[float]
    runs_compared: int
    paired_seeds: int

    @property
    def units(self) -> str:
        return _units(self.level)

    def to_dict(self) -> Dict[str, Any]:
        return {"bootstrap": {"n_boot": self.n_boot, "slice_n_boot": self.slice_n_boot, "seed": self.seed,
                              "level": 0.95, "units": self.units},
                "level": self.level,
                "runs_with_predictions": self.runs_with_predictions,
                "runs_without_predictions": [{"variant": v, "seed": s} for v, s in self.runs_without_predictions],
                "ne_check": {"max_abs_diff_predictions_vs_metrics": self.max_abs_diff,
                             "runs_compared": self.runs_compared},
                "paired_seeds": self.paired_seeds}


#: the line of the control world's target (its own, or copied from the linked control world)
CONTROL_TARGET: str = "sparse-ID beats SIDE"


@dataclass(frozen=True)
class ControlWorld:
    """``report.json``'s ``control_world``: did sparse-ID beat SIDE in the control world?

    ``verdict`` -- ``passed`` (sparse-ID's gain over SIDE is positive and its 95% interval clears
    0), ``failed`` (measured, not so), ``missing`` (no control world, or it measured nothing);
    ``sparse_over_side`` (point, %) and its ``sparse_over_side_ci95``; ``measured`` (the target
    line's text) and ``source``.
    """

    verdict: str
    sparse_over_side: Optional[float]
    sparse_over_side_ci95: Optional[Sequence[Optional[float]]]
    measured: str
    source: Optional[str]

    def to_dict(self) -> Dict[str, Any]:
        ci = self.sparse_over_side_ci95
        return {"verdict": self.verdict, "sparse_over_side": self.sparse_over_side,
                "sparse_over_side_ci95": list(ci) if ci is not None else None, "measured": self.measured,
                "source": self.source}

    def __getitem__(self, key: str) -> Any:  # the dict view older callers read
        return self.to_dict()[key]


def verdict_of(lines: Sequence[TargetLine], pair: Optional[Mapping[str, Any]], source: Optional[str]) -> ControlWorld:
    """The control-world verdict from this report's target lines (the first control-world line)
    and the control world's ``sparse_id_over_side`` pair (``Estimate.to_dict``)."""
    line = next((t for t in lines if CONTROL_TARGET in t.target), None)
    if line is None or line.met is None:
        verdict = "missing"
    else:
        verdict = "passed" if line.met and line.confident else "failed"
    p = pair or {}
    return ControlWorld(verdict, p.get("point"), p.get("ci95") or (line.interval if line is not None else None),
                        (line.measured if line is not None else None)
                        or "no control world linked (pipeline.json `control_world`)", source)


def _linked_line(linked: LinkedReport) -> TargetLine:
    """The control-world line of the linked report (or why it is missing)."""
    name = "control world (id-only term dominates): sparse-ID beats SIDE"
    if linked.problem is not None:
        return TargetLine(name, f"not measured: {linked.problem}", None)
    for t in linked.targets:
        if CONTROL_TARGET in str(t.get("target")):
            line = TargetLine.from_dict(t)
            return replace(line, target=f"{t['target']} (from {linked.file})")
    return TargetLine(name, f"not measured: {linked.file} has no such target (world {linked.world!r})", None)


def control_world_verdict(kind: str, tgt: Sequence[Union[TargetLine, Mapping[str, Any]]], a: Any, cfg: ReportConfig,
                          folder: Optional[str]) -> ControlWorld:
    """The control-world verdict of a world of ``kind`` (the pre-package signature).

    Args:
        kind (str): this world's kind (:func:`world_kind`); ``id_dominant`` reads its own pair.
        tgt (Sequence[Union[TargetLine, Mapping[str, Any]]]): this report's target lines.
        a (Any): an :class:`Analysis` or a mapping with ``pairs`` (``{name: Estimate}``).
        cfg (ReportConfig): variant names.
        folder (Optional[str]): the linked control world's demo folder (None: none linked).

    Returns:
        ControlWorld: the verdict (indexable like the ``report.json`` block).

    Example::

        control_world_verdict("simulated", lines, analysis, cfg, "runs/demo/adsworld_id_dominant").verdict
    """
    from torchrec_side.report.inputs import read_linked

    lines = [t if isinstance(t, TargetLine) else TargetLine.from_dict(t) for t in tgt]
    key = f"{cfg.sparse_id}_over_{cfg.side}"
    if kind == "id_dominant":
        pairs = a.pairs if isinstance(a, Analysis) else (a.get("pairs") or {})
        e = pairs.get(key)
        return verdict_of(lines, e.to_dict() if e is not None else None, "this report")
    if folder:
        linked = read_linked(Path(folder))
        p = None if linked.problem else linked.pairs.get(key)
        return verdict_of(lines, p if isinstance(p, dict) else None, str(linked.file))
    return verdict_of(lines, None, None)


def world_kind(world: str, has_oracle: bool, record: "Optional[Union[PipelineRecord, Mapping[str, Any]]]" = None) -> str:
    """The target list a world gets: ``movielens``, ``simulated`` or ``id_dominant``.

    ``id_dominant`` (the control world where the id-only term dominates and sparse-ID must win)
    when the name contains ``id_dominant`` / ``id-dominant`` or ``pipeline.json`` says
    ``"id_dominant": true`` (or its ``world`` entry mentions the ``id_dominant`` preset); ``movielens`` for names starting with ``movielens`` / ``ml``;
    otherwise ``simulated`` when the predictions carry ``p_true``, else ``movielens``.
    """
    if isinstance(record, PipelineRecord):
        flag: Any = record.id_dominant
        blob: Any = record.world.to_dict() if isinstance(record.world, WorldInfo) else record.world
    else:
        flag, blob = (record or {}).get("id_dominant"), (record or {}).get("world")
    w = world.lower()
    if "id_dominant" in w or "id-dominant" in w or bool(flag) or "id_dominant" in json.dumps(blob, default=str):
        return "id_dominant"
    if w.startswith("movielens") or w.startswith("ml"):
        return "movielens"
    return "simulated" if (has_oracle or "adsworld" in w or "sim" in w) else "movielens"


def _world_name(cfg: ReportConfig, rec: PipelineRecord, has_oracle: bool) -> str:
    if cfg.world:
        return str(cfg.world)
    w: Any = rec.world
    if isinstance(w, WorldInfo):
        w = w.name or w.kind
    if isinstance(w, str) and w:
        return w
    return "adsworld" if has_oracle else "movielens"


# ------------------------------------------------------------------------------------------------
# the result


@dataclass(frozen=True)
class Analysis:
    """Everything the report says about one world (``report.json`` is :meth:`to_json`).

    Gains are :class:`~torchrec_side.eval.stats.Estimate` (NE gain %, 95% interval), shares and
    the ratio :class:`~torchrec_side.eval.stats.RatioEstimate`, all from one paired bootstrap.
    ``oracle_share`` / ``ceiling_share`` are None when the world has no oracle / content ceiling
    (``{}`` when it has one but no variant besides control); ``slices`` is
    :func:`torchrec_side.eval.slices.slice_report`'s JSON.
    """

    world: str
    kind: str
    cfg: ReportConfig
    pipeline: PipelineRecord
    rows: Tuple[VariantRow, ...]
    level: str
    gains: Mapping[str, Estimate]
    gains_vs_traditional: Mapping[str, Estimate]
    oracle_gain: Optional[Estimate]
    oracle_share: Optional[Mapping[str, RatioEstimate]]
    ceiling_share: Optional[Mapping[str, RatioEstimate]]
    ceilings: Optional[Tuple[Ceiling, ...]]
    pairs: Mapping[str, Estimate]
    contrasts: Mapping[Tuple[str, str, float], Estimate]
    ablation_grid: Tuple[AblationCell, ...]
    ablation_contrasts: Tuple[AblationContrast, ...]
    sequence: Tuple[SequenceComparison, ...]
    ratio: Union[BootRatio, SeedRatio]
    cold: Optional[ColdComparison]
    slices: Mapping[str, Any]
    statistics: Statistics
    protocol: Protocol
    throughput: Optional[str]
    warnings: Tuple[str, ...]
    targets: Tuple[TargetLine, ...] = ()
    control_world: Optional[ControlWorld] = None

    @property
    def quick(self) -> bool:
        return self.pipeline.mode == "quick"

    def row(self, variant: str) -> Optional[VariantRow]:
        return next((r for r in self.rows if r.variant == variant), None)

    def to_json(self) -> Dict[str, Any]:
        """``report.json`` (without ``plots``)."""
        rec = self.pipeline
        grid: Dict[str, Dict[str, Any]] = {}
        for c in self.ablation_grid:
            grid.setdefault(c.row, {})[c.column] = {"variant": c.variant,
                                                    "gain": c.gain.to_dict() if c.gain is not None else None}
        out: Dict[str, Any] = {
            "world": self.world,
            "world_kind": self.kind,
            "mode": rec.mode,
            "quick": self.quick,
            "seeds": list(rec.seeds) if rec.seeds is not None else None,
            "epochs": rec.epochs,
            "nproc": rec.nproc,
            "control_world": self.control_world.to_dict() if self.control_world is not None else None,
            "ceilings": {c.key: c.to_dict() for c in self.ceilings} if self.ceilings is not None else None,
            "protocol": self.protocol.to_dict(),
            "rows": [r.summary() for r in self.rows],
            "details": [r.to_dict() for r in self.rows],
            "ne_gain_ci95": {v: interval(e) for v, e in self.gains.items()},
            "ne_gain": {v: e.to_dict() for v, e in self.gains.items()},
            "ne_gain_vs_traditional": {v: e.to_dict() for v, e in self.gains_vs_traditional.items()},
            "oracle_share": ({v: e.to_dict() for v, e in self.oracle_share.items()}
                             if self.oracle_share is not None else None),
            "oracle_ne_gain": self.oracle_gain.to_dict() if self.oracle_gain is not None else None,
            "ceiling_share": ({v: e.to_dict() for v, e in self.ceiling_share.items()}
                              if self.ceiling_share is not None else None),
            "pairs": {k: e.to_dict() for k, e in self.pairs.items()},
            "ablation_grid": grid,
            "ablation_contrasts": {c.key: c.to_dict() for c in self.ablation_contrasts},
            "side_vs_traditional_ne_gain": self.ratio.to_dict(),
            "slices": self.slices,
            "statistics": self.statistics.to_dict(),
            "targets": [t.to_dict() for t in self.targets],
            "failed": [f.to_dict() for f in rec.failed],
            "pipeline_seconds": {"prep_seconds": rec.prep_seconds, "train_seconds": rec.train_seconds,
                                 "total_seconds": rec.total_seconds},
            "epoch_sweep": rec.epoch_sweep.to_dict() if rec.epoch_sweep is not None else None,
            "warnings": list(self.warnings),
        }
        return jsonable(out)


def jsonable(x: Any) -> Any:
    """``x`` with numpy scalars as Python numbers and non-finite floats as None (JSON null)."""
    if hasattr(x, "to_dict"):
        return jsonable(x.to_dict())
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return jsonable(x.item())
    return x


def _throughput_text(inputs: ReportInputs) -> Optional[str]:
    from torchrec_side.report.inputs import THROUGHPUT_FILE

    tp = inputs.throughput
    if tp is None:
        return None
    nan = float("nan")
    return (", ".join(f"{k} {v:.0f} ex/s" for k, v in tp.examples_per_s.items())
            + f"; SIDE / sparse-ID {tp.side_vs_sparse_id if tp.side_vs_sparse_id is not None else nan:.2f}x, "
            f"SIDE / prefix-ngram {tp.side_vs_prefix_ngram if tp.side_vs_prefix_ngram is not None else nan:.2f}x "
            f"(benchmarks/train_throughput.py, {THROUGHPUT_FILE})")


def analyse(inputs: ReportInputs, cfg: ReportConfig, world: Optional[str] = None) -> Analysis:
    """Pairs the predictions, runs the bootstrap and the slices, evaluates the targets.

    Args:
        inputs (ReportInputs): :func:`~torchrec_side.report.inputs.collect`'s records.
        cfg (ReportConfig): report settings.
        world (Optional[str]): the world's name (overrides ``cfg.world``).

    Returns:
        Analysis: the typed result.
    """
    from torchrec_side.eval import BootstrapConfig, PairedBootstrap, SliceConfig, UserTable, pair_runs, slice_report
    from torchrec_side.eval.predictions import REFERENCE_VARIANTS, shared_references
    from torchrec_side.eval.slices import CEILING_CONTENT, ORACLE

    runs, dirs, rec = inputs.runs, inputs.dirs, inputs.pipeline
    rows = summarize(runs, control=cfg.control)
    seeds = sorted({s for per in runs.values() for s in per})
    per_seed = {}
    warnings: List[str] = []
    for s in seeds:
        p = pair_runs({v: dirs[v][s] for v in dirs if s in dirs[v]}, seed=s)
        if p is not None:
            per_seed[s] = p
            warnings.extend(p.warnings)
    # reference columns every seed has (p_true, the world's ceilings) are scored as pseudo-variants
    refs = shared_references(per_seed)
    has_oracle = "p_true" in refs
    variants = list(runs)
    names = variants + [REFERENCE_VARIANTS[c] for c in refs]
    arrays = {}
    for s, p in per_seed.items():
        sc = dict(p.scores)
        sc.update(p.reference_scores(refs))
        arrays[s] = (p.user_id, p.label, sc, p.item_id)
    table = UserTable.from_arrays(arrays, variants=names)
    missing = [(v, s) for v, per in runs.items() for s in per
               if not (s in per_seed and v in per_seed[s].scores)]
    seed_level = {(v, s): _test_ne(runs[v][s], v) for v, s in missing}
    boot = PairedBootstrap(table, BootstrapConfig(n_boot=cfg.n_boot, seed=cfg.seed, progress=cfg.progress,
                                                  resample_items=cfg.resample_items), seed_level_ne=seed_level)
    # predictions vs metrics.json: the same model should give the same test NE
    ne_pred = table.ne()
    diffs = []
    for i, v in enumerate(table.variants):
        for j, s in enumerate(table.seeds):
            if table.has[i, j] and v in runs and s in runs[v]:
                diffs.append(abs(float(ne_pred[i, j]) - _test_ne(runs[v][s], v)))
    ref_ne: Dict[str, float] = {}
    for col in refs:
        i = table.variants.index(REFERENCE_VARIANTS[col])
        ref_ne[REFERENCE_VARIANTS[col]] = float(ne_pred[i][table.has[i]].mean())

    c, t = cfg.control, cfg.traditional
    has_c = c in variants
    gains = {v: boot.gain(v, c) for v in names if v != c and has_c}
    gains_vs_trad = {v: boot.gain(v, t) for v in names if v not in (t, c) and t in variants}
    oracle_share = {v: boot.ratio((v, c), (ORACLE, c)) for v in variants if v != c} if has_oracle and has_c else None
    ceiling_share = ({v: boot.ratio((v, c), (CEILING_CONTENT, c)) for v in variants if v != c}
                     if "p_content" in refs and has_c else None)
    # gain(variant) - threshold x gain(reference) for every target judged against such a line
    contrasts: Dict[Tuple[str, str, float], Estimate] = {}
    for tg in _targets.TARGETS:
        if tg.contrast:
            a_, b_ = cfg.role(tg.roles[0]), cfg.role(tg.roles[1])
            if a_ in variants and b_ in variants and has_c:
                contrasts[(a_, b_, tg.threshold)] = boot.contrast((a_, c), (b_, c), tg.threshold)
    pairs = [(cfg.side, cfg.raw_content), (cfg.side, t), (cfg.sparse_id, cfg.side), (cfg.side, PERMUTED_SIDE),
             *[(v, r) for _, _, v, r in ABLATION_CONTRASTS], *SEQUENCE_PAIRS, *cfg.extra_pairs]
    pairs = [(a_, b_) for a_, b_ in dict.fromkeys(pairs) if a_ in variants and b_ in variants]
    pair_est = {f"{a_}_over_{b_}": boot.gain(a_, b_) for a_, b_ in pairs}
    if per_seed:
        sv = [v for v in variants if all(v in p.scores for p in per_seed.values())]
        counts = np.load(inputs.item_counts_file) if inputs.item_counts_file else None
        scfg = SliceConfig(n_boot=cfg.slice_n_boot, seed=cfg.seed, resample_items=cfg.resample_items)
        slices: Mapping[str, Any] = slice_report(per_seed, sv, control=c, cfg=scfg, item_counts=counts, pairs=pairs,
                                                 progress=cfg.progress)
    else:
        slices = {}

    tuned = {v.name: v.tuned for v in rec.variants}
    full_rows = []
    for r in rows:
        e = gains.get(r.variant)
        if e is not None and e.point is not None:  # the gain the intervals belong to
            r = replace(r, ne_gain_pct_mean=e.point, ne_gain_pct_std=_std(e.per_seed),
                        ne_gain_pct_per_seed=dict(zip([str(s) for s in e.seeds], e.per_seed)))
        full_rows.append(replace(r, gain=e, gain_vs_traditional=gains_vs_trad.get(r.variant),
                                 oracle_share=(oracle_share or {}).get(r.variant),
                                 ceiling_share=(ceiling_share or {}).get(r.variant), tuned=tuned.get(r.variant)))

    ceilings = None
    if "p_content" in refs:
        ceilings = tuple(Ceiling(key, REFERENCE_VARIANTS[col], col, ref_ne.get(REFERENCE_VARIANTS[col]),
                                 gains.get(REFERENCE_VARIANTS[col])) for key, col in CEILING_KEYS if col in refs)
    grid = tuple(AblationCell(key, label, col, v, gains.get(v))
                 for key, label, cells in ABLATION_ROWS for (col, _), v in zip(ABLATION_COLUMNS, cells))
    steps = []
    for key, what, v, r in ABLATION_CONTRASTS:
        # the same step as a difference of gains over control (points; they add up to side - traditional)
        pts = boot.contrast((v, c), (r, c)) if v in variants and r in variants and has_c else None
        steps.append(AblationContrast(key, what, v, r, pair_est.get(f"{v}_over_{r}"), pts))
    sequence = tuple(SequenceComparison(v, r, pair_est[f"{v}_over_{r}"]) for v, r in SEQUENCE_PAIRS
                     if f"{v}_over_{r}" in pair_est and pair_est[f"{v}_over_{r}"].point is not None)

    rt = _targets.ratio_target()
    if cfg.side in variants and t in variants and has_c:
        ratio: Union[BootRatio, SeedRatio] = _boot_ratio(boot.ratio((cfg.side, c), (t, c)),
                                                         contrasts.get((cfg.side, t, rt.threshold)))
    else:
        ratio = side_vs_traditional(full_rows, cfg.side, cfg.traditional)

    wname = world or _world_name(cfg, rec, has_oracle)
    kind = world_kind(wname, has_oracle, rec)
    stats = Statistics(cfg.n_boot, cfg.slice_n_boot, cfg.seed, boot.level,
                       int(table.has.sum()) - len(table.seeds) * len(refs), tuple(missing),
                       max(diffs) if diffs else None, len(diffs), len({s for r in full_rows for s in r.seeds}))
    a = Analysis(
        world=wname, kind=kind, cfg=cfg, pipeline=rec, rows=tuple(full_rows), level=boot.level, gains=gains,
        gains_vs_traditional=gains_vs_trad, oracle_gain=gains.get(ORACLE), oracle_share=oracle_share,
        ceiling_share=ceiling_share, ceilings=ceilings, pairs=pair_est, contrasts=contrasts, ablation_grid=grid,
        ablation_contrasts=tuple(steps), sequence=sequence, ratio=ratio,
        cold=_cold(slices, cfg.side, cfg.raw_content), slices=jsonable(slices), statistics=stats,
        protocol=_protocol(rec, full_rows), throughput=_throughput_text(inputs),
        warnings=tuple(rec.warnings) + tuple(warnings))

    lines = list(_targets.evaluate(a))
    linked = inputs.linked
    if linked is not None and kind != "id_dominant":
        lines.append(_linked_line(linked))
    if kind == "id_dominant":
        e = pair_est.get(f"{cfg.sparse_id}_over_{cfg.side}")
        cw = verdict_of(lines, e.to_dict() if e is not None else None, "this report")
    elif linked is not None:
        p = None if linked.problem else linked.pairs.get(f"{cfg.sparse_id}_over_{cfg.side}")
        cw = verdict_of(lines, p if isinstance(p, dict) else None, str(linked.file))
    else:
        cw = verdict_of(lines, None, None)
    if kind == "simulated":  # the control world gates every SIDE claim of a simulated world
        lines = [replace(x, validated=cw.verdict == "passed") if x.gated else x for x in lines]
    return replace(a, targets=tuple(lines), control_world=cw)
