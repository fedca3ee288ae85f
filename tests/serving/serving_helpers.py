"""Helpers shared by the serving tests: the trainer's own test scores and scores from a fresh
interpreter that loads an export folder without the trainer or the model code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

# Runs in a fresh interpreter: loads the folder, scores the store's test split through the
# training loader's batches (history columns only: target keys are the program's business), and
# reports which torchrec_side modules it needed.
FRESH = r"""
import json, sys, torch
from torchrec_side.serving import load_exported
from torchrec_side.data import ExampleStore, HistoryInput, make_dataloader
torch.set_num_threads(1)
scorer = load_exported(sys.argv[1])
spec = scorer.spec
store = ExampleStore(spec.source["store"])
inputs = [HistoryInput(h.column, keys=tuple(h.keys), flatten=h.flatten)
          for h in spec.history]
out = []
for b in make_dataloader(store, "test", inputs, 64, shuffle=False, num_workers=0):
    out.append(scorer(b)[b.weights > 0])
torch.save(torch.cat(out), sys.argv[2])
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("torchrec_side.train", "torchrec_side.models")))))
"""


def trainer_scores(run: Path) -> np.ndarray:
    """The trainer's own test-split scores (``predictions_test.parquet``, store order)."""
    t = pq.read_table(run / "predictions_test.parquet")
    return t.column("score").to_numpy()


def fresh_process_scores(export_dir: Path, tmp: Path) -> torch.Tensor:
    """Test-split scores of ``export_dir`` computed in a new interpreter (asserts it imported
    neither the trainer nor the model code)."""
    out = tmp / "fresh_scores.pt"
    proc = subprocess.run([sys.executable, "-c", FRESH, str(export_dir), str(out)], capture_output=True, text=True,
                          cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []  # neither the trainer nor the model code
    return torch.load(out)
