"""The GPU device scripts and the CUDA benchmark code, checked as far as a CPU machine allows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["gpu_check.sh", "fetch_gpu_wheels.sh"])
def test_scripts_parse(script: str) -> None:
    r = subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_fetch_lists_the_matching_builds() -> None:
    r = subprocess.run(["bash", str(ROOT / "scripts" / "fetch_gpu_wheels.sh"), "--print"], capture_output=True,
                       text=True, timeout=30)
    reqs = r.stdout.split()
    assert r.returncode == 0 and "torchrec==1.6.1" in reqs and "fbgemm-gpu-cpu==1.6.0" in reqs
    assert not any(q.startswith("torch==") or q.startswith("triton") for q in reqs)  # the machine has them


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_without_cuda(tmp_path: Path) -> None:
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable)
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "no CUDA device" in r.stderr
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["status"] == "no_cuda" and summary["machine"]["cuda_available"] is False


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_benchmarks_refuse_without_cuda() -> None:
    for script in ("lookup.py",):  # train_throughput.py refuses the same way before importing torchrec
        r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--device", "cuda"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "no CUDA device" in r.stderr, (script, r.stderr[-2000:])


@pytest.mark.slow
def test_cuda_lookup_code_runs_simulated_on_cpu(tmp_path: Path) -> None:
    """The --device cuda code path (methods, fallbacks, ratios, HBM fractions, JSON) on CPU tensors."""
    out = tmp_path / "lookup.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lookup.py"), "--device", "cuda", "--simulate-on-cpu",
                        "--batch", "4", "--lens", "300", "--dims", "8", "--repeats", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    methods = {row["method"] for row in data["rows"]}
    assert "side_dpca_ternary40/grouped_bag" in methods and "sparse_id/embedding_bag" in methods
    assert all(row["hbm_fraction_measured"] > 0 for row in data["rows"])
    assert data["simulated"] is True
