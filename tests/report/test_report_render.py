# pyre-strict
"""The renderers are pure (same Analysis -> same markdown and JSON, no file read), and the report
is complete without matplotlib (the plots are skipped with one line)."""

from __future__ import annotations

import builtins
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from torchrec_side.report import ReportConfig, build, write_report
from torchrec_side.report import markdown, plots

NES: Dict[str, List[float]] = {"control": [1.0, 0.9, 0.8], "side": [0.97, 0.882, 0.78],
                               "traditional_sid": [0.99, 0.891, 0.792], "raw_content": [0.96, 0.88, 0.79]}
HIST: Dict[str, List[Dict[str, Any]]] = {
    "control": [], "side": [{"kind": "side", "model_bytes_per_event": 8}],
    "traditional_sid": [{"kind": "prefix_ngram", "model_bytes_per_event": 24}] * 2,
    "raw_content": [{"kind": "raw_content", "model_bytes_per_event": 768}]}


def _demo(tmp: Path) -> Path:
    """A demo folder of metrics only (seed-level report)."""
    variants = []
    for name, nes in NES.items():
        dirs = {}
        for s, ne in enumerate(nes):
            d = tmp / "train" / name / f"seed{s}"
            d.mkdir(parents=True)
            m = {"name": name, "seed": s, "arch": "dlrm", "epochs": 2.0, "best_epoch": 2, "test": {"ne": ne, "auc": 0.7},
                 "val": {"ne": ne, "auc": 0.7}, "learned_params": {"total": 10}, "train_examples_per_s": 100.0,
                 "history": HIST[name]}
            (d / "metrics.json").write_text(json.dumps(m))
            dirs[str(s)] = str(d)
        variants.append({"name": name, "config": "", "role": name, "description": name, "run_dirs": dirs})
    rec = {"mode": "full", "seeds": [0, 1, 2], "epochs": 2, "nproc": 2, "variants": variants, "failed": []}
    (tmp / "pipeline.json").write_text(json.dumps(rec))
    return tmp


def test_renderers_are_pure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = build(_demo(tmp_path / "demo"), cfg=ReportConfig(n_boot=50, slice_n_boot=0))
    md, js = markdown.render(a), a.to_json()
    shutil.rmtree(tmp_path / "demo")  # nothing left to read

    def no_files(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a renderer opened a file")

    monkeypatch.setattr(builtins, "open", no_files)
    monkeypatch.setattr(Path, "read_text", no_files)
    assert markdown.render(a) == md and a.to_json() == js
    monkeypatch.undo()
    assert "## docs/design.md section 8 targets" in md and json.dumps(js)
    assert markdown.render(a, ["ne_gain.png"]) == md[:-1] + "\n![NE gain with 95% intervals](ne_gain.png)\n\n"


def test_report_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = _demo(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    assert not plots.available()
    rep = write_report(run, cfg=ReportConfig(n_boot=50, slice_n_boot=0))
    assert rep["plots"] == [] and not list(run.glob("*.png"))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matplotlib is not installed" in err and "torchrec-side[report]" in err
    md = (run / "report.md").read_text()
    assert plots.MISSING in md and "## Variants" in md and "![" not in md
    assert json.loads((run / "report.json").read_text())["warnings"] == [plots.MISSING]


def test_package_import_leaves_matplotlib_alone() -> None:
    code = "import sys, torchrec_side.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
