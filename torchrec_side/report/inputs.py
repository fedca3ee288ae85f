# pyre-strict
"""The report's read step: everything it reads from a demo folder, as typed records.

:func:`collect` reads ``pipeline.json``, each finished run's ``metrics.json`` (runs without one
did not finish and are left out), ``item_train_counts.npy``'s path, ``train_throughput.json`` and
the linked control world's ``report.json``. Nothing later in the report reads a file except the
predictions (:mod:`torchrec_side.eval.predictions`) and the item counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from torchrec_side.records import PipelineRecord, RecordError, RunRecord, ThroughputRecord

__all__ = ["ITEM_COUNTS_FILE", "THROUGHPUT_FILE", "LinkedReport", "ReportInputs", "collect", "read_linked"]

#: Optional ``[num_items]`` int64 training count per item id (``np.save``) in the demo folder; when
#: present the head/torso/tail cuts rank all items, not only the test targets.
ITEM_COUNTS_FILE: str = "item_train_counts.npy"

#: Optional ``benchmarks/train_throughput.py --json`` output in the demo folder.
THROUGHPUT_FILE: str = "train_throughput.json"


@dataclass(frozen=True)
class LinkedReport:
    """The linked control world's ``report.json`` as far as this report uses it.

    Args:
        folder (Path): the control world's demo folder.
        problem (Optional[str]): why it cannot be used (``<file> not found (run ...)``, ``<file>
            is not valid JSON (...)``); None when read.
        world (Any): its ``world``.
        targets (Tuple[Mapping[str, Any], ...]): its target lines.
        pairs (Mapping[str, Any]): its ``pairs`` (paired gains, ``Estimate.to_dict``).
    """

    folder: Path
    problem: Optional[str] = None
    world: Any = None
    targets: Tuple[Mapping[str, Any], ...] = ()
    pairs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> Path:
        return self.folder / "report.json"


def read_linked(folder: Path) -> LinkedReport:
    """Reads ``folder/report.json`` (never raises for a missing or broken file: says why)."""
    f = folder / "report.json"
    if not f.is_file():
        return LinkedReport(folder, f"{f} not found (run `torchrec-side report {folder}` first)")
    try:
        rep = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        return LinkedReport(folder, f"{f} is not valid JSON ({e})")
    if not isinstance(rep, dict):
        return LinkedReport(folder, f"{f} is not a report (a JSON object)")
    targets = tuple(t for t in rep.get("targets") or [] if isinstance(t, dict))
    pairs = rep.get("pairs") or {}
    return LinkedReport(folder, None, rep.get("world"), targets, pairs if isinstance(pairs, dict) else {})


@dataclass(frozen=True)
class ReportInputs:
    """What :func:`collect` read.

    Args:
        folder (Path): the demo folder.
        pipeline (PipelineRecord): its ``pipeline.json``.
        runs (Mapping[str, Mapping[int, RunRecord]]): ``{variant: {seed: metrics}}`` of the
            finished runs, in ``pipeline.json``'s variant order.
        dirs (Mapping[str, Mapping[int, Path]]): their run folders.
        item_counts_file (Optional[Path]): :data:`ITEM_COUNTS_FILE` when present.
        throughput (Optional[ThroughputRecord]): :data:`THROUGHPUT_FILE` when present.
        linked (Optional[LinkedReport]): the control world's report (None: none linked).
    """

    folder: Path
    pipeline: PipelineRecord
    runs: Mapping[str, Mapping[int, RunRecord]]
    dirs: Mapping[str, Mapping[int, Path]]
    item_counts_file: Optional[Path] = None
    throughput: Optional[ThroughputRecord] = None
    linked: Optional[LinkedReport] = None


def collect(run: Path, control_world: Optional[str] = None) -> ReportInputs:
    """Reads one world's demo folder.

    Args:
        run (Path): the demo folder (``pipeline.json`` and the run folders it names).
        control_world (Optional[str]): the control world's folder (default: ``pipeline.json``'s).

    Returns:
        ReportInputs: the records.

    Raises:
        RecordError: ``pipeline.json`` missing or malformed, or a ``metrics.json`` malformed
            (one line naming the file).
    """
    run = Path(run)
    rec = PipelineRecord.from_json(run / "pipeline.json")
    if not rec.variants:  # the driver writes it before its first launch: nothing to report yet
        raise RecordError(f"{run / 'pipeline.json'}: no variants; expected a non-empty 'variants' list of "
                          "{'name': str, 'run_dirs': {seed: folder}} (what `torchrec-side demo` writes)")
    runs: Dict[str, Dict[int, RunRecord]] = {}
    dirs: Dict[str, Dict[int, Path]] = {}
    for v in rec.variants:
        per: Dict[int, RunRecord] = {}
        pd: Dict[int, Path] = {}
        for s, d in v.runs().items():
            m = d / "metrics.json"
            if m.is_file():
                per[s] = RunRecord.from_json(m)
                pd[s] = d
        runs[v.name] = per
        dirs[v.name] = pd
    if not any(runs.values()):
        raise RecordError(f"{run / 'pipeline.json'}: none of its {len(rec.variants)} variants has a finished run "
                          "(a metrics.json in a run folder of 'run_dirs'): nothing to report")
    counts = run / ITEM_COUNTS_FILE
    tp = run / THROUGHPUT_FILE
    cw = control_world or rec.control_world
    return ReportInputs(run, rec, runs, dirs, counts if counts.is_file() else None,
                        ThroughputRecord.from_json(tp) if tp.is_file() else None,
                        read_linked(Path(cw)) if cw else None)
