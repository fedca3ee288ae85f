# pyre-strict
"""Serving: export a trained run as a ``torch.export`` program and score requests with it.

* :func:`export_run` (``torchrec-side export RUN --out DIR``): rebuild the run's model unsharded
  with the trainer's builder, load the chosen checkpoint with DCP, trace it with ``torch.export``
  behind a plain-tensor wrapper (SIDE tables are buffers of the program) and write the folder
  atomically with ``serving.json`` (inputs, limits, versions, source run, SHA-256 of every file).
* :func:`load_exported`: folder -> :class:`ExportedScorer` (checksums verified, sample batch
  re-scored); call it on an ``ExampleBatch`` or a KJT + dense tensor for probabilities.
* :func:`predict` (``torchrec-side predict RUN --input requests.parquet --out scores.parquet``):
  score a request file in batches (schema: :mod:`torchrec_side.serving.requests`);
  :func:`predict_from_store` (``--from-store test``) scores a split of the run's store.

The export route and why it was chosen are described in :mod:`torchrec_side.serving.export`
(models and training: docs/design.md section 6; SIDE modules: section 5).

Example::

    from torchrec_side.serving import export_run, load_exported, predict

    export_run("runs/train/dlrm_side/seed0", "serve/dlrm_side")
    scorer = load_exported("serve/dlrm_side")
    scores = scorer(batch)                                      # [B] probabilities
    predict("serve/dlrm_side", "requests.parquet", "scores.parquet")
"""

from __future__ import annotations

from torchrec_side.serving.artifact import read_spec, ServingSpec, verify_files
from torchrec_side.serving.export import export_run, ExportResult, ServingModule
from torchrec_side.serving.predict import predict, predict_from_store, PredictResult, resolve_export
from torchrec_side.serving.rebuild import load_run, LoadedRun, ServingError
from torchrec_side.serving.requests import request_tensors, write_requests_from_store
from torchrec_side.serving.scorer import ExportedScorer, load_exported

__all__ = [
    "ExportResult",
    "ExportedScorer",
    "LoadedRun",
    "PredictResult",
    "ServingError",
    "ServingModule",
    "ServingSpec",
    "export_run",
    "load_exported",
    "load_run",
    "predict",
    "predict_from_store",
    "read_spec",
    "request_tensors",
    "resolve_export",
    "verify_files",
    "write_requests_from_store",
]
