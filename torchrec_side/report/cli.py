# pyre-strict
"""``torchrec-side report RUN``: read -> analyse -> render -> write (atomic).

:func:`write_report` reads the demo folder (:func:`~torchrec_side.report.inputs.collect`), analyses
it (:func:`~torchrec_side.report.analysis.analyse`), draws the plots when matplotlib is installed
(:mod:`~torchrec_side.report.plots`), and writes ``report.json`` and ``report.md``
(:mod:`~torchrec_side.report.markdown`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

from torchrec_side.report import markdown, plots as _plots
from torchrec_side.report.analysis import Analysis, ReportConfig, analyse
from torchrec_side.report.inputs import collect

__all__ = ["write_report", "report_main", "build"]


def build(run: Path, world: Optional[str] = None, cfg: Optional[ReportConfig] = None) -> Analysis:
    """Reads and analyses ``run`` (nothing written)."""
    cfg = cfg or ReportConfig()
    return analyse(collect(Path(run), cfg.control_world), cfg, world)


def write_report(run: Path, plots: bool = True, world: Optional[str] = None,
                 cfg: Optional[ReportConfig] = None) -> Dict[str, Any]:
    """Writes ``report.json``, ``report.md`` and plots into ``run``; returns the report dict.

    Args:
        run (Path): one world's demo folder (``pipeline.json`` and the run folders it names).
        plots (bool): write the PNG plots (overrides ``cfg.plots``); without matplotlib the
            plots are skipped and the report says so in one line.
        world (Optional[str]): the world's name (overrides ``cfg.world``; see :class:`ReportConfig`).
        cfg (Optional[ReportConfig]): bootstrap sizes, variant names.

    Returns:
        Dict[str, Any]: the content of ``report.json``.

    Raises:
        RecordError: ``pipeline.json`` missing or malformed, or a run's ``metrics.json`` malformed.

    Example::

        rep = write_report(Path("runs/demo"), world="movielens")
        rep["ne_gain_ci95"]["side"], rep["targets"]
    """
    from torchrec_side.io import write_json, write_text

    run = Path(run)
    cfg = cfg or ReportConfig()
    a = build(run, world, cfg)
    files: Optional[List[str]] = None
    if plots and cfg.plots:
        if _plots.available():
            files = _plots.write_plots(a, run)
        else:
            print(f"torchrec-side report: {_plots.MISSING}", file=sys.stderr)
            a = replace(a, warnings=a.warnings + (_plots.MISSING,))
            files = []
    report = a.to_json()
    if files is not None:
        report["plots"] = files
    write_json(run / "report.json", report)
    write_text(run / "report.md", markdown.render(a, files or ()))
    return report


def report_main(argv: Optional[List[str]] = None) -> int:
    """``torchrec-side report RUN``. Returns 0, or 2 when RUN is not a demo folder or its files are bad."""
    p = argparse.ArgumentParser(prog="torchrec-side report", description="Write report.md / report.json / plots of a demo folder.")
    p.add_argument("run", help="demo folder written by `torchrec-side demo` (e.g. runs/demo)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--world", default=None, help="world name (default: pipeline.json's, else inferred)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--slice-n-boot", type=int, default=500, help="bootstrap replicates per slice (default 500; 0: none)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = ReportConfig(world=args.world, plots=not args.no_plots, n_boot=args.n_boot,
                           slice_n_boot=args.slice_n_boot, progress=sys.stderr.isatty())
        write_report(Path(args.run), plots=not args.no_plots, cfg=cfg)
    except (FileNotFoundError, ValueError) as e:
        print(f"torchrec-side report: {e}", file=sys.stderr)
        return 2
    print((Path(args.run) / "report.md").read_text())
    return 0
