# pyre-strict
"""docs/design.md section 8 targets, declared as data and judged by one function.

A :class:`Target` names its line, the world kinds it applies to, the quantity it reads and its
threshold. A quantity (:data:`QUANTITIES`) turns an :class:`~torchrec_side.report.analysis.Analysis`
into a :class:`Measure`: the text of the measurement, the **margin** (how far the point estimate
is past the line; >= 0 means met, > 0 for a ``strict`` target) and the 95% interval of that
margin. :func:`judge` is the one rule: ``met`` on the point, ``confident`` when the interval lies
on the same side of the line.

Example::

    lines = evaluate(analysis)
    [(x.target, x.met) for x in lines]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from torchrec_side.report._format import estimate, interval, num

if TYPE_CHECKING:
    from torchrec_side.report.analysis import Analysis

__all__ = ["Target", "TargetLine", "Measure", "TARGETS", "QUANTITIES", "judge", "evaluate", "ratio_target"]

_ALL: FrozenSet[str] = frozenset(("movielens", "simulated", "id_dominant"))
_WORLD_LABEL: Mapping[str, str] = {"movielens": "MovieLens", "simulated": "simulated world",
                                   "id_dominant": "control world"}


@dataclass(frozen=True)
class Target:
    """One target line.

    Args:
        name (str): the line; ``{threshold}`` and ``{world}`` (the world's label) are filled in.
        kinds (FrozenSet[str]): world kinds it applies to.
        quantity (Optional[str]): key of :data:`QUANTITIES`; None: never measured by the report
            (the line says ``missing``).
        threshold (float): the line's number (a ratio, a share, a factor, a divisor of bytes).
        roles (Tuple[str, str]): the variants it compares (:class:`ReportConfig` roles).
        contrast (bool): the analysis computes ``gain(roles[0]) - threshold x gain(roles[1])``
            (both over control) for its interval.
        strict (bool): met needs a margin > 0 (else >= 0).
        interval_strict (bool): confident needs the interval's lower bound > 0 (else >= 0).
        undefined (Optional[bool]): ``met`` when the quantity has no point estimate.
        unclear (Optional[bool]): ``confident`` when the quantity has no interval.
        missing (Optional[str]): the text when not measurable (None: no line then).
        gated (bool): a claim about SIDE in this world: a simulated world whose control world did
            not pass marks it "not validated".
    """

    name: str
    kinds: FrozenSet[str]
    quantity: Optional[str]
    threshold: float = 0.0
    roles: Tuple[str, str] = ("side", "traditional")
    contrast: bool = False
    strict: bool = False
    interval_strict: bool = True
    undefined: Optional[bool] = None
    unclear: Optional[bool] = None
    missing: Optional[str] = None
    gated: bool = True

    def label(self, kind: str) -> str:
        """The line's text in a world of ``kind``."""
        return self.name.format(threshold=self.threshold, world=_WORLD_LABEL.get(kind, kind))


@dataclass(frozen=True)
class Measure:
    """A quantity measured for a target.

    Args:
        text (str): what was measured (``measured`` of the line).
        margin (Optional[float]): the point estimate's distance past the line (None: undefined).
        bounds (Optional[Tuple[float, float]]): the 95% interval of the margin.
        interval (Optional[Sequence[Optional[float]]]): the interval the line reports.
    """

    text: str
    margin: Optional[float] = None
    bounds: Optional[Tuple[float, float]] = None
    interval: Optional[Sequence[Optional[float]]] = None


@dataclass(frozen=True)
class TargetLine:
    """A line of ``report.json``'s ``targets``: ``met`` is judged on the point estimate (None: not
    measured here), ``confident`` says whether the 95% interval also clears the line,
    ``validated`` (simulated worlds) whether the control world passed."""

    target: str
    measured: str
    met: Optional[bool]
    interval: Optional[Sequence[Optional[float]]] = None
    confident: Optional[bool] = None
    validated: Optional[bool] = None
    gated: bool = field(default=False, compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TargetLine":
        """A line of another ``report.json`` (unknown keys kept)."""
        known = ("target", "measured", "met", "interval", "confident", "validated")
        return cls(str(d.get("target")), str(d.get("measured")), d.get("met"), d.get("interval"), d.get("confident"),
                   d.get("validated"), extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"target": self.target, "measured": self.measured, "met": self.met,
                               "interval": list(self.interval) if self.interval is not None else None,
                               "confident": self.confident}
        if self.validated is not None:
            out["validated"] = self.validated
        out.update(self.extra)
        return out


def judge(t: Target, m: Measure, kind: str) -> TargetLine:
    """The line of target ``t`` measured as ``m``: the one rule of every target."""
    met = t.undefined if m.margin is None else bool(m.margin > 0 if t.strict else m.margin >= 0)
    if met is None:
        confident = None
    elif m.bounds is None:
        confident = t.unclear
    elif met:
        confident = bool(m.bounds[0] > 0 if t.interval_strict else m.bounds[0] >= 0)
    else:
        confident = bool(m.bounds[1] < 0)
    return TargetLine(t.label(kind), m.text, met, m.interval, confident, gated=t.gated)


# ------------------------------------------------------------------------------------------------
# the quantities


def _bounds(e: Any, shift: float = 0.0) -> Optional[Tuple[float, float]]:
    """An estimate's interval moved by ``shift`` (the margin's interval); None without one."""
    return None if e is None or e.lo is None or e.hi is None else (e.lo - shift, e.hi - shift)


def _ratio(a: "Analysis", t: Target) -> Optional[Measure]:
    from torchrec_side.report.analysis import BootRatio

    side, trad = a.cfg.role(t.roles[0]), a.cfg.role(t.roles[1])
    con = a.contrasts.get((side, trad, t.threshold))
    if not isinstance(a.ratio, BootRatio) or con is None:
        return None
    r = a.ratio.estimate
    if r.point is None:
        text = f"ratio undefined ({r.status})"
    else:
        text = f"ratio {r.point:.2f}" + (f" [{r.lo:.2f}, {r.hi:.2f}]" if r.lo is not None else f" (interval: {r.status})")
    text += (f"; SIDE {estimate(r.numerator)} vs traditional {estimate(r.denominator)}; "
             f"SIDE - {t.threshold:g} x traditional = {estimate(con)}")
    return Measure(text, None if r.point is None else r.point - t.threshold, _bounds(con), interval(con))


def _reported_pair(a: "Analysis", t: Target) -> Optional[Measure]:
    p = a.pairs.get(f"{a.cfg.role(t.roles[0])}_over_{a.cfg.role(t.roles[1])}")
    if p is None or p.point is None:
        return None
    text = (f"NE gain of SIDE over traditional SID {estimate(p)}: {p.verdict}"
            + (f" (interval width {p.width:.3f} points)" if p.width is not None else ""))
    # met once reported; confident when separated from 0 (either side)
    bounds = None if p.lo is None or p.hi is None else (max(p.lo, -p.hi), float("inf"))
    return Measure(text, 0.0, bounds, interval(p))


def _gain_share(a: "Analysis", t: Target) -> Optional[Measure]:
    side, raw = a.cfg.role(t.roles[0]), a.cfg.role(t.roles[1])
    gs, gr = a.gains.get(side), a.gains.get(raw)
    if gs is None or gr is None or gs.point is None or gr.point is None:
        return None
    # the line is threshold x raw's gain; with no positive raw gain, raw's gain itself
    con = a.contrasts.get((side, raw, t.threshold)) if gr.point > 0 else None
    margin = gs.point - t.threshold * gr.point if gr.point > 0 else gs.point - gr.point
    text = (f"SIDE {estimate(gs)} vs raw content {estimate(gr)}"
            + (f"; SIDE - {t.threshold:g} x raw = {estimate(con)}" if con is not None else ""))
    return Measure(text, margin, _bounds(con), interval(con))


def _gain_at_least(a: "Analysis", t: Target) -> Optional[Measure]:
    side, sparse = a.cfg.role(t.roles[0]), a.cfg.role(t.roles[1])
    gs, gsp = a.gains.get(side), a.gains.get(sparse)
    if gs is None or gsp is None or gs.point is None or gsp.point is None:
        return None
    p = a.pairs.get(f"{sparse}_over_{side}")
    text = (f"SIDE {estimate(gs)} vs sparse-ID {estimate(gsp)}; sparse-ID over SIDE {estimate(p)} "
            f"({p.verdict if p else 'n/a'})")
    # the interval is sparse-ID's gain over SIDE: the margin's, negated
    bounds = None if p is None or p.lo is None or p.hi is None else (-p.hi, -p.lo)
    return Measure(text, gs.point - gsp.point, bounds, interval(p))


def _share(reference: str, shares: Optional[Mapping[str, Any]], a: "Analysis", t: Target) -> Optional[Measure]:
    sh = (shares or {}).get(a.cfg.role(t.roles[0]))
    if sh is None:
        return None
    text = ((f"share {sh.point:.3f}" if sh.point is not None else "share undefined")
            + (f" [{sh.lo:.3f}, {sh.hi:.3f}]" if sh.lo is not None else f" ({sh.status})")
            + f"; {reference} gain {estimate(sh.denominator)}")
    return Measure(text, None if sh.point is None else sh.point - t.threshold, _bounds(sh, t.threshold), interval(sh))


def _cold(a: "Analysis", t: Target) -> Optional[Measure]:
    c = a.cold
    if c is None:
        return None
    lo_hi = c.ci95
    text = (f"NE gain of SIDE over raw content on {c.rows} cold rows: {c.point:+.3f}%"
            + (f" [{lo_hi[0]:+.3f}, {lo_hi[1]:+.3f}]%" if lo_hi else "")
            + f" ({c.verdict}); NE SIDE {num(c.ne_side, '{:.5f}')}, raw {num(c.ne_raw, '{:.5f}')}")
    return Measure(text, c.point - t.threshold, (lo_hi[0], lo_hi[1]) if lo_hi else None, lo_hi)


def _sequence(a: "Analysis", t: Target) -> Optional[Measure]:
    side = a.cfg.role(t.roles[0])
    p = a.pairs.get(f"seq_{side}_over_{side}")
    if p is None or p.point is None:
        return None
    return Measure(f"NE gain of seq_{side} over {side} {estimate(p)} ({p.verdict})", p.point, _bounds(p), interval(p))


def _sparse_over_side(a: "Analysis", t: Target) -> Optional[Measure]:
    sparse, side = a.cfg.role(t.roles[0]), a.cfg.role(t.roles[1])
    p = a.pairs.get(f"{sparse}_over_{side}")
    if p is None or p.point is None:
        return None
    text = (f"NE gain of sparse-ID over SIDE {estimate(p)} ({p.verdict}); sparse-ID {estimate(a.gains.get(sparse))}, "
            f"SIDE {estimate(a.gains.get(side))} over control")
    return Measure(text, p.point, _bounds(p), interval(p))


def _footprint(a: "Analysis", t: Target) -> Optional[Measure]:
    r_side, r_ref = a.row(a.cfg.role(t.roles[0])), a.row(a.cfg.role(t.roles[1]))
    bs = r_side.bytes_per_event if r_side is not None else None
    bt = r_ref.bytes_per_event if r_ref is not None else None
    if bs is None or not bt:
        return None
    # threshold d: SIDE's bytes x d <= the reference's
    return Measure(f"{bs:.0f} vs {bt:.0f} bytes/event (1/{bt / bs:.1f})", bt - bs * t.threshold)


def _throughput(a: "Analysis", t: Target) -> Optional[Measure]:
    return Measure(a.throughput) if a.throughput else None


#: quantity name -> measure (None: not measurable in this report)
QUANTITIES: Mapping[str, Callable[["Analysis", Target], Optional[Measure]]] = {
    "side_over_traditional_ratio": _ratio,
    "side_over_traditional_pair": _reported_pair,
    "gain_share": _gain_share,
    "gain_at_least": _gain_at_least,
    "oracle_share": lambda a, t: _share("oracle", a.oracle_share, a, t),
    "content_ceiling_share": lambda a, t: _share("content ceiling", a.ceiling_share, a, t),
    "cold_items": _cold,
    "sequence": _sequence,
    "sparse_over_side": _sparse_over_side,
    "footprint": _footprint,
    "train_throughput": _throughput,
}

_NOT_BY_THIS_JOB = ("not measured by this job (benchmarks/lookup.py, benchmarks/quantizers.py, "
                    "benchmarks/tokenizer_quality.py, .ci/run)")

#: The targets, in the report's order; each world kind reads the ones that name it.
TARGETS: Tuple[Target, ...] = (
    Target("NE gain ratio SIDE / traditional SID >= {threshold:g} ({world})", frozenset(("movielens", "simulated")),
           "side_over_traditional_ratio", 2.4, contrast=True, undefined=False, unclear=False),
    Target("SIDE vs traditional SID: separated, or reported as not separated with the interval's width",
           frozenset(("movielens",)), "side_over_traditional_pair", unclear=False),
    Target("SIDE NE gain >= {threshold:.0%} of raw-content history's", frozenset(("movielens",)), "gain_share", 0.9,
           roles=("side", "raw_content"), contrast=True),
    Target("SIDE NE gain >= sparse-ID history's", frozenset(("movielens",)), "gain_at_least",
           roles=("side", "sparse_id")),
    Target("SIDE captures >= {threshold:.0%} of the oracle's NE gain (simulated world)", frozenset(("simulated",)),
           "oracle_share", 0.8, interval_strict=False,
           missing="not measured: no p_true in the predictions (or no SIDE run)"),
    Target("SIDE captures >= {threshold:.0%} of the content ceiling's NE gain (simulated world)",
           frozenset(("simulated",)), "content_ceiling_share", 0.8, interval_strict=False),
    Target("cold items: SIDE >= raw-content history (NE on cold target items)", frozenset(("simulated",)),
           "cold_items", roles=("side", "raw_content"),
           missing="not measured: no cold target items with predictions of both variants"),
    Target("sequence models: DIN over SIDE beats DLRM over SIDE (separated)", frozenset(("simulated",)), "sequence",
           strict=True),
    Target("control world (id-only term dominates): sparse-ID beats SIDE", frozenset(("id_dominant",)),
           "sparse_over_side", roles=("sparse_id", "side"), strict=True,
           missing="not measured: needs sparse-ID and SIDE runs", gated=False),
    Target("footprint: SIDE <= 1/{threshold:g} of traditional SID (bytes/event as consumed)", _ALL, "footprint", 3.0,
           gated=False),
    Target("footprint: SIDE <= 1/{threshold:g} of raw fp16 content embedding", _ALL, "footprint", 100.0,
           roles=("side", "raw_content"), gated=False),
    Target("training throughput, DLRM with SIDE vs sparse-ID vs prefix-ngram (synthetic, 10^6 items, "
           "10^3-event histories, 2 ranks)", _ALL, "train_throughput"),
    *(Target(name, frozenset(("movielens",)), None, missing=_NOT_BY_THIS_JOB)
      for name in ("pooled history embedding (10^4-event histories): SIDE >= 5x sparse-ID EBC events/s",
                   "DPCA reconstruction <= RQ-KMeans at equal bits (held-out)",
                   "tokenizer encode throughput within 2x of faiss ResidualQuantizer",
                   "test suite < 10 min on a 2-core CPU")),
)


def ratio_target() -> Target:
    """The SIDE / traditional SID ratio target (its threshold names the reported contrast)."""
    return next(t for t in TARGETS if t.quantity == "side_over_traditional_ratio")


def evaluate(a: "Analysis", targets: Sequence[Target] = TARGETS) -> List[TargetLine]:
    """The lines of every target of ``a``'s world kind, in order.

    Args:
        a (Analysis): the analysed world.
        targets (Sequence[Target]): the targets (default :data:`TARGETS`).

    Returns:
        List[TargetLine]: measured lines, and ``missing`` lines (``met`` None) for targets that
        say what is missing.
    """
    out: List[TargetLine] = []
    for t in targets:
        if a.kind not in t.kinds:
            continue
        m = QUANTITIES[t.quantity](a, t) if t.quantity is not None else None
        if m is not None:
            out.append(judge(t, m, a.kind))
        elif t.missing is not None:
            out.append(TargetLine(t.label(a.kind), t.missing, None, gated=t.gated))
    return out
