# pyre-strict
"""The end of a run: the best validation epoch's model scored on test, and the run's results.

:func:`score_best_epoch` reloads the best validation epoch's checkpoint (validating the final model
first when its step has no validation yet) and scores test with NE and AUC (torchrec.metrics),
collecting the per-example scores for ``predictions_test.parquet``; :func:`run_metrics` is what
``metrics.json`` holds; :func:`write_results` writes (rank 0) the predictions and then
``metrics.json``, last: its presence means the run finished.

Example::

    scores = score_best_epoch(loop, stepper, state, steps_per_epoch)
    metrics = run_metrics(loop, built, state, steps_per_epoch, resumed_from, stopped_early, scores, t_start)
    write_results(run_dir, env, data.store, scores, metrics)
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import numpy.typing as npt

from torchrec_side.config import config_to_dict
from torchrec_side.data.store import ExampleStore
from torchrec_side.records import RunRecord
from torchrec_side.train.dist import DistEnv
from torchrec_side.train.loop import Collected, Loop, TrainingDivergedError, TrainState, _Stepper
from torchrec_side.train.model import BuiltModel
from torchrec_side.train.predictions import example_columns, gather_in_store_order, PREDICTIONS_FILE, write_predictions

__all__ = ["Scores", "run_metrics", "score_best_epoch", "write_results"]

logger: logging.Logger = logging.getLogger("torchrec_side.train")


@dataclass
class Scores:
    """The reported model's scores.

    Args:
        best (Dict[str, Any]): the best validation record (``epoch``, ``step``, ``ne``, ...).
        val (Dict[str, Any]): its validation metrics (``best`` without ``epoch`` and ``step``).
        test (Optional[Dict[str, float]]): its test metrics (``None``: ``train.score_test=false``).
        predictions (Optional[Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]): on rank 0,
            the test scores and labels in store order
            (:func:`~torchrec_side.train.predictions.gather_in_store_order`); ``None`` on other
            ranks, or when no predictions are written.
    """

    best: Dict[str, Any]
    val: Dict[str, Any]
    test: Optional[Dict[str, float]]
    predictions: Optional[Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]


def score_best_epoch(loop: Loop, stepper: _Stepper, state: TrainState, spe: int) -> Scores:
    """Loads the best validation epoch's model and scores test with it (collective).

    Raises:
        TrainingDivergedError: the validation or test metrics are not finite.
    """
    t = loop.cfg.train
    stepper.before_eval()
    if not state.val_history or state.val_history[-1]["step"] != state.step:
        loop.validate(state, spe)  # the final model is an evaluation point too
    best = state.best()
    assert best is not None
    if best["step"] != state.step:
        path = loop.ckpt.directory / f"step_{int(best['step']):08d}"
        logger.info("best validation epoch %s (step %d, val NE %.5f): loading %s", best["epoch"], best["step"],
                    best["ne"], path.name)
        loop.load(path)
    collected: Collected = []
    predict = t.write_predictions and t.score_test
    # score_test=false (tuning runs): the test split is never read
    test = loop.evaluate("test", collect=collected if predict else None) if t.score_test else None
    val = {k: v for k, v in best.items() if k not in ("epoch", "step")}
    if test is not None:
        logger.info("best epoch %s: val NE %.5f AUC %.5f; test NE %.5f AUC %.5f (exact NE %.5f, %d examples)",
                    best["epoch"], val["ne"], val["auc"], test["ne"], test["auc"], test["ne_exact"],
                    int(test["examples"]))
    else:
        logger.info("best epoch %s: val NE %.5f AUC %.5f; test not scored (train.score_test=false)",
                    best["epoch"], val["ne"], val["auc"])
    for split, m in (("val", val), ("test", test)):
        if m is not None and not all(math.isfinite(float(m[k])) for k in ("ne", "auc", "log_loss")):
            raise TrainingDivergedError(f"{split} metrics are not finite ({m}); no metrics.json written")
    gathered = gather_in_store_order(collected) if predict else None
    return Scores(best=best, val=val, test=test, predictions=gathered)


def run_metrics(loop: Loop, built: BuiltModel, state: TrainState, spe: int, resumed_from: Optional[int],
                stopped_early: bool, scores: Scores, t_start: float) -> Dict[str, Any]:
    """What ``metrics.json`` holds (see :func:`~torchrec_side.train.trainer.run_training`)."""
    cfg, env, t, store = loop.cfg, loop.env, loop.cfg.train, loop.data.store
    return {
        "name": cfg.name,
        "seed": cfg.seed,
        "arch": cfg.model.arch,
        "world_size": env.world_size,
        "device": str(env.device),
        "steps": state.step,
        "steps_per_epoch": spe,
        "epochs": state.step / spe,
        "resumed_from_step": resumed_from,
        "global_batch_size": t.batch_size * env.world_size,
        "train_examples": state.examples,
        "train_time_s": state.train_time_s,
        "train_examples_per_s": state.examples / state.train_time_s if state.train_time_s > 0 else None,
        "val": scores.val,
        "test": scores.test,
        "best_epoch": scores.best["epoch"],
        "best_step": scores.best["step"],
        "val_history": state.val_history,
        "stopped_early": stopped_early,
        "early_stop_patience": t.early_stop_patience,
        "learned_params": built.params,
        "history": loop.data.history(with_footprint=loop.rank0),
        "sharding": {"mode": cfg.sharding.mode, "tables": built.choice},
        "pipeline": t.pipeline,
        "optim": config_to_dict(cfg.optim),
        "store": str(store.path),
        "data": {s: store.manifest["splits"][s] for s in ("train", "val", "test")},
        "wall_s": time.time() - t_start,
    }


def write_results(run_dir: Path, env: DistEnv, store: ExampleStore, scores: Scores, metrics: Dict[str, Any]) -> None:
    """Rank 0 writes ``predictions_test.parquet`` (when scored; its name goes into ``metrics``) and
    then ``metrics.json``."""
    if not env.is_rank0:
        return
    if scores.predictions is not None:
        p = write_predictions(run_dir / PREDICTIONS_FILE, example_columns(store, "test"), *scores.predictions)
        metrics["predictions"] = p.name
        logger.info("wrote %s (%d rows, best epoch %s)", p, scores.predictions[0].size, scores.best["epoch"])
    RunRecord.from_dict(metrics, source="metrics").write(run_dir / "metrics.json")  # last: marks the run finished
    logger.info("wrote %s", run_dir / "metrics.json")
