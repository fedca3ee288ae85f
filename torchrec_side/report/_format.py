# pyre-strict
"""Number formatting shared by the target lines and the markdown (``n/a`` for what is missing)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from torchrec_side.eval.stats import Estimate, RatioEstimate


def num(x: Optional[float], fmt: str = "{:.4f}") -> str:
    """``fmt`` of ``x``, ``n/a`` when None."""
    return "n/a" if x is None else fmt.format(x)


def ci_list(ci: Optional[Sequence[Optional[float]]], fmt: str = "{:+.3f}") -> str:
    """``[lo, hi]`` of an interval, ``n/a`` when it has none."""
    return "n/a" if not ci or ci[0] is None else f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def interval(e: Any) -> Optional[list]:
    """An estimate's 95% interval as ``report.json`` writes it (``ci95``): None without one."""
    return [e.lo, e.hi] if e is not None and e.lo is not None else None


def ci_of(e: "Optional[Estimate | RatioEstimate]", fmt: str = "{:+.3f}") -> str:
    """``[lo, hi]`` of an estimate's interval, ``n/a`` without one."""
    return ci_list(interval(e), fmt)


def estimate(e: Optional[Estimate], fmt: str = "{:+.3f}", unit: str = "%") -> str:
    """``+1.234% [+0.5, +2.0]%``: the point and its interval (``n/a`` when undefined)."""
    if e is None or e.point is None:
        return "n/a"
    s = fmt.format(e.point) + unit
    if e.lo is not None and e.hi is not None:
        s += f" [{fmt.format(e.lo)}, {fmt.format(e.hi)}]{unit}"
    return s
