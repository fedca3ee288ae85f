# pyre-strict
"""Training: a DistributedModelParallel trainer with fused embedding optimizers, torchrec.metrics
NE / AUC, atomic torch.distributed.checkpoint checkpoints with resume, and a run folder.

* :mod:`~torchrec_side.train.config`: :class:`TrainJobConfig` and its sections (YAML + overrides).
* :mod:`~torchrec_side.train.trainer`: :func:`run_training`, the run from start to end, in pieces:
  :mod:`~torchrec_side.train.run_setup` (start checks, example store and features, ``inputs.json``,
  the checkpoint to resume), :mod:`~torchrec_side.train.model` (the sharded model),
  :mod:`~torchrec_side.train.loop` (steps, validation, early stop, checkpoints) and
  :mod:`~torchrec_side.train.scoring` (the best epoch on test, ``metrics.json``).
* :mod:`~torchrec_side.train.checkpoint`: :class:`CheckpointManager` (manifest-verified DCP checkpoints).
* :mod:`~torchrec_side.train.lock`: :class:`RunLock` (one run per run folder).
* :mod:`~torchrec_side.train.predictions`: ``predictions_test.parquet`` (:func:`read_predictions`,
  :func:`check_paired`).
* :mod:`~torchrec_side.train.metrics`: :func:`evaluate`.
* :mod:`~torchrec_side.train.cli`: ``torchrec-side train`` (:func:`train_main`).

Names are imported lazily (``import torchrec_side.train`` stays light for the CLI).
"""

from __future__ import annotations

from torchrec_side._lazy import lazy_getattr

_LAZY = {
    "TrainJobConfig": "config", "TrainConfig": "config", "OptimConfig": "config",
    "ShardingConfig": "config", "load_train_config": "config",
    "run_training": "trainer", "TrainingDivergedError": "trainer",
    "CheckpointManager": "checkpoint", "CheckpointError": "checkpoint", "evaluate": "metrics",
    "RunLock": "lock", "RunLockedError": "lock",
    "read_predictions": "predictions", "check_paired": "predictions", "PredictionsError": "predictions",
    "train_main": "cli",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, {k: f".{v}" for k, v in _LAZY.items()}, globals())
