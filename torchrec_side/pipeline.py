# pyre-strict
"""Former home of the main job; the driver is now :mod:`torchrec_side.experiments` (one module per
world, no repository layout assumed). Kept so ``torchrec_side.pipeline`` imports keep working.

Example::

    from torchrec_side.pipeline import pipeline_main
    pipeline_main(["--world", "ml100k", "--quick", "--out", "/tmp/demo"])
"""

from __future__ import annotations

from torchrec_side.experiments import demo_main as pipeline_main
from torchrec_side.experiments.common import Variant
from torchrec_side.experiments.ml100k import QUICK_VARIANTS, VARIANTS, fit_sid_artifacts
from torchrec_side.experiments.ml100k import run_ml100k as run_pipeline

__all__ = ["Variant", "VARIANTS", "QUICK_VARIANTS", "pipeline_main", "run_pipeline", "fit_sid_artifacts"]
