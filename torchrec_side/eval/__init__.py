# pyre-strict
"""Evaluation statistics: NE, the paired two-level bootstrap over seeds and test users, slices
(docs/design.md section 7b).

Example::

    from torchrec_side.eval import BootstrapConfig, PairedBootstrap, UserTable
"""

from torchrec_side.eval.predictions import PREDICTIONS_FILE, SeedPredictions, pair_runs, read_predictions
from torchrec_side.eval.slices import FREQ_BUCKETS, ORACLE, SliceConfig, frequency_cuts, slice_report
from torchrec_side.eval.stats import (
    BootstrapConfig,
    Estimate,
    PairedBootstrap,
    RatioEstimate,
    UserTable,
    auc,
    log_loss,
    normalized_entropy,
)

__all__ = [
    "PREDICTIONS_FILE", "SeedPredictions", "pair_runs", "read_predictions",
    "FREQ_BUCKETS", "ORACLE", "SliceConfig", "frequency_cuts", "slice_report",
    "BootstrapConfig", "Estimate", "PairedBootstrap", "RatioEstimate", "UserTable", "auc", "log_loss",
    "normalized_entropy",
]
