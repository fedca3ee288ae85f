# pyre-strict
"""The report's PNG plots, drawn from the :class:`~torchrec_side.report.analysis.Analysis` alone.

matplotlib is the optional extra ``torchrec-side[report]``: it is imported when a plot is drawn,
and :func:`available` says whether it is installed (the report then writes no plots and says so).

Each ``*_figure`` function returns a figure (None when it has nothing to show); :func:`write_plots`
saves them atomically (:func:`torchrec_side.io.save_figure`) and returns the file names.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from torchrec_side.report._format import ci_list
from torchrec_side.report.analysis import Analysis

__all__ = ["available", "MISSING", "write_plots", "FIGURES"]

#: The line the report prints when matplotlib is missing.
MISSING: str = ("plots skipped: matplotlib is not installed (install `torchrec-side[report]`); "
                "report.json and report.md are complete")


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(a: Analysis) -> str:
    return " (QUICK)" if a.quick else ""


def _gains(a: Analysis) -> Tuple[Dict[str, Any], List[str]]:
    """The gains with a point, and their plotting order (rows first, then the pseudo-variants)."""
    gains = {v: e for v, e in a.gains.items() if e.point is not None}
    rows = [r.variant for r in a.rows]
    return gains, [v for v in rows if v in gains] + [v for v in gains if v not in set(rows)]


def _bars(es: Sequence[Any]) -> Tuple[np.ndarray, np.ndarray]:
    """Points and ``[2, n]`` error bars of estimates (no bar without an interval)."""
    pts = np.array([e.point for e in es])
    lo = np.array([e.lo if e.lo is not None else e.point for e in es])
    hi = np.array([e.hi if e.hi is not None else e.point for e in es])
    return pts, np.vstack([pts - lo, hi - pts])


def ne_gain_figure(a: Analysis) -> Any:
    """Each variant's NE gain over control with its 95% interval."""
    plt = _pyplot()
    gains, names = _gains(a)
    fig, ax = plt.subplots(figsize=(8, 4))
    if names:
        pts, err = _bars([gains[v] for v in names])
        ax.bar(names, pts, yerr=err, capsize=4, color="tab:blue")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("test NE gain vs control (%)")
    levels = {gains[v].level for v in names}
    top = a.level
    how = (f"{top} bootstrap" if levels == {top} else "seed-level bootstrap" if levels == {"seeds"}
           else f"{top} bootstrap; seed level where predictions are missing")
    ax.set_title(f"NE gain per variant, 95% interval ({how}){_label(a)}", fontsize=10)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    return fig


def item_freq_figure(a: Analysis) -> Any:
    """The gain per target-item frequency bucket (None without slices)."""
    from torchrec_side.eval.slices import FREQ_BUCKETS

    buckets = ((a.slices or {}).get("item_freq") or {}).get("buckets") or {}
    if not buckets:
        return None
    plt = _pyplot()
    _, names = _gains(a)
    vs = sorted({v for b in buckets.values() for v in (b.get("gain") or {})},
                key=lambda v: names.index(v) if v in names else len(names))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(vs), 1)
    for i, v in enumerate(vs):
        x, y, el, eh = [], [], [], []
        for k, b in enumerate(FREQ_BUCKETS):
            e = (buckets.get(b, {}).get("gain") or {}).get(v)
            if e is None or e.get("point") is None:
                continue
            x.append(k + (i - (len(vs) - 1) / 2) * width)
            y.append(e["point"])
            ci = e.get("ci95") or [e["point"], e["point"]]
            el.append(e["point"] - ci[0])
            eh.append(ci[1] - e["point"])
        if x:
            ax.bar(x, y, width=width, yerr=[el, eh], capsize=2, label=v)
    ax.set_xticks(range(len(FREQ_BUCKETS)))
    ax.set_xticklabels([f"{b}\n({buckets.get(b, {}).get('rows', 0)} rows)" for b in FREQ_BUCKETS])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("test NE gain vs control (%)")
    ax.set_title(f"NE gain by target-item training frequency, 95% interval{_label(a)}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def oracle_share_figure(a: Analysis) -> Any:
    """Each variant's share of the oracle's gain (None without an oracle)."""
    from torchrec_side.report.targets import TARGETS

    shares = {v: e for v, e in (a.oracle_share or {}).items() if e.point is not None}
    if not shares:
        return None
    plt = _pyplot()
    _, names = _gains(a)
    sn = [v for v in names if v in shares]
    pts, err = _bars([shares[v] for v in sn])
    line = next(t.threshold for t in TARGETS if t.quantity == "oracle_share")
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(sn, pts, yerr=err, capsize=4, color="tab:green")
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="oracle")
    ax.axhline(line, color="tab:red", lw=0.8, ls=":", label=f"target {line:g} (SIDE)")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_ylabel("share of the oracle's NE gain over control")
    ax.set_title(f"Share of the oracle's gain, 95% interval{_label(a)}")
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    return fig


_CEILING_STYLE = {"content": ("tab:green", "-", "content ceiling"), "content_item": ("tab:olive", "--",
                  "content + item posterior"), "id": ("tab:purple", "-.", "id ceiling"), "oracle": ("k", ":", "oracle")}


def ceilings_figure(a: Analysis) -> Any:
    """Each variant's gain against the ceilings' gains (None for worlds without ceilings)."""
    ceilings = [c for c in a.ceilings or () if c.gain is not None and c.gain.point is not None]
    gains, names = _gains(a)
    rows = {r.variant for r in a.rows}
    vn = [v for v in names if v in rows]
    if not ceilings or not vn:
        return None
    plt = _pyplot()
    pts, err = _bars([gains[v] for v in vn])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.bar(vn, pts, yerr=err, capsize=4, color="tab:blue", alpha=0.75, label="variant (95% CI)")
    for c in ceilings:
        color, ls, word = _CEILING_STYLE[c.key]
        g = c.gain
        assert g is not None and g.point is not None
        ci = [g.lo, g.hi] if g.lo is not None else None
        ax.axhline(g.point, color=color, ls=ls, lw=1.4, zorder=3,
                   label=f"{word} {g.point:+.2f}% {ci_list(ci, '{:+.2f}')}")
        if c.key == "content" and ci:  # the reference of ceiling_share: its interval shaded
            ax.axhspan(ci[0], ci[1], color=color, alpha=0.12, zorder=0, label="content ceiling's 95% interval")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("test NE gain vs control (%)")
    ax.set_title(f"NE gain against the ceilings, 95% intervals{_label(a)}", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    return fig


def bytes_figure(a: Analysis) -> Any:
    """Bytes per history event as the model consumes them, per variant (log scale)."""
    plt = _pyplot()
    rb = [r for r in a.rows if r.bytes_per_event]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([r.variant for r in rb], [r.bytes_per_event for r in rb], color="tab:orange")
    ax.set_yscale("log")
    ax.set_ylabel("bytes per history event (as consumed, log)")
    ax.set_title(f"History footprint per event{_label(a)}")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    return fig


#: ``(file name, figure function)`` in the report's order.
FIGURES: Tuple[Tuple[str, Callable[[Analysis], Optional[Any]]], ...] = (
    ("ne_gain.png", ne_gain_figure), ("gain_by_item_freq.png", item_freq_figure),
    ("oracle_share.png", oracle_share_figure), ("gain_vs_ceilings.png", ceilings_figure),
    ("bytes_per_event.png", bytes_figure))


def write_plots(a: Analysis, folder: Path) -> List[str]:
    """Draws every figure ``a`` has into ``folder``; returns the file names written."""
    from torchrec_side.io import save_figure

    plt = _pyplot()
    files = []
    for name, draw in FIGURES:
        fig = draw(a)
        if fig is None:
            continue
        save_figure(fig, Path(folder) / name)
        plt.close(fig)
        files.append(name)
    return files
