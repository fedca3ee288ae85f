# pyre-strict
"""Targets as data: one rule judges every line (met / not met / no interval / undefined), and a
target's threshold lives in its declaration only."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any, Optional

import pytest

from torchrec_side.report import ReportConfig
from torchrec_side.report.analysis import SeedRatio
from torchrec_side.report.targets import TARGETS, Measure, Target, evaluate, judge

T = Target("share >= {threshold:.0%} ({world})", frozenset(("simulated",)), "oracle_share", 0.8,
           interval_strict=False)


@pytest.mark.parametrize("m,met,confident", [
    (Measure("x", 0.1, (0.05, 0.2)), True, True),      # met, interval clears the line
    (Measure("x", 0.1, (-0.05, 0.2)), True, False),    # met on the point only
    (Measure("x", 0.0, (0.0, 0.1)), True, True),       # on the line: met (>=), lower bound on it clears (>=)
    (Measure("x", -0.1, (-0.2, -0.01)), False, True),  # not met, confidently
    (Measure("x", -0.1, (-0.2, 0.01)), False, False),
    (Measure("x", 0.1), True, None),                   # no interval
    (Measure("x", None), None, None),                  # undefined point
])
def test_judge_one_rule(m: Measure, met: Optional[bool], confident: Optional[bool]) -> None:
    line = judge(T, m, "simulated")
    assert (line.met, line.confident) == (met, confident)
    assert line.target == "share >= 80% (simulated world)" and line.measured == "x"


def test_judge_strictness_and_undefined_policy() -> None:
    strict = replace(T, strict=True, interval_strict=True)
    assert judge(strict, Measure("x", 0.0, (0.0, 0.1)), "simulated").met is False
    assert judge(strict, Measure("x", 0.1, (0.0, 0.2)), "simulated").confident is False
    ratio = replace(T, undefined=False, unclear=False)  # the 2.4x ratio: undefined is "not met", no interval "no"
    line = judge(ratio, Measure("ratio undefined", None), "simulated")
    assert line.met is False and line.confident is False


def test_thresholds_are_declared_once() -> None:
    by = {t.quantity: t.threshold for t in TARGETS if t.quantity}
    assert by["side_over_traditional_ratio"] == 2.4 and by["oracle_share"] == 0.8
    assert by["content_ceiling_share"] == 0.8 and by["gain_share"] == 0.9
    assert sorted(t.threshold for t in TARGETS if t.quantity == "footprint") == [3.0, 100.0]
    names = [t.label("movielens") for t in TARGETS]
    assert "NE gain ratio SIDE / traditional SID >= 2.4 (MovieLens)" in names
    assert "footprint: SIDE <= 1/3 of traditional SID (bytes/event as consumed)" in names


def _analysis(kind: str, side_bytes: Optional[float], trad_bytes: Optional[float]) -> Any:
    """What the quantities read of an Analysis, for a world without predictions."""
    rows = {"side": side_bytes, "traditional_sid": trad_bytes}
    return SimpleNamespace(kind=kind, cfg=ReportConfig(), contrasts={}, ratio=SeedRatio(None, "n/a"), pairs={},
                           gains={}, oracle_share=None, ceiling_share=None, cold=None, throughput=None,
                           row=lambda v: SimpleNamespace(bytes_per_event=rows[v]) if rows.get(v) is not None else None)


def test_evaluate_reads_the_declarations() -> None:
    lines = {x.target: x for x in evaluate(_analysis("simulated", 8.0, 48.0))}
    fp = lines["footprint: SIDE <= 1/3 of traditional SID (bytes/event as consumed)"]
    assert fp.met is True and fp.confident is None and fp.measured == "8 vs 48 bytes/event (1/6.0)"
    # not measurable here: the declared "missing" lines, met None
    oracle = lines["SIDE captures >= 80% of the oracle's NE gain (simulated world)"]
    assert oracle.met is None and oracle.measured.startswith("not measured")
    assert not any(t.startswith("NE gain ratio") for t in lines)  # no missing text declared: no line
    # a stricter footprint declared as data: the same rule, another verdict
    tight = [replace(t, threshold=10.0) for t in TARGETS if t.quantity == "footprint"][:1]
    (line,) = evaluate(_analysis("simulated", 8.0, 48.0), tight)
    assert line.target.startswith("footprint: SIDE <= 1/10 of") and line.met is False
    # movielens: the four targets this job does not measure
    ml = evaluate(_analysis("movielens", None, None))
    assert [x.met for x in ml] == [None] * 4 and all("not measured by this job" in x.measured for x in ml)
