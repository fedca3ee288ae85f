# pyre-strict
"""The DMP trainer: config -> example store -> sharded model -> training -> NE / AUC -> run folder.

One call of :func:`run_training` does, on every rank:

1. **Start checks** (:func:`~torchrec_side.train.run_setup.start_checks`, before any data is written
   or any step runs): the config is typed and validated (float options finite); rank 0 takes the
   run folder's lock (:class:`~torchrec_side.train.lock.RunLock`: a second run into the same
   folder fails naming the holder); every history feature checks its artifacts
   (:func:`~torchrec_side.train.run_setup.history_context_before_data` gives them the store's sizes
   without writing it); the run folder, if it holds checkpoints, must come from a compatible
   config (same model, data, optimizers, seed, batch size and world size) or the run stops with a
   message.
2. **Data** (:func:`~torchrec_side.train.run_setup.prepare_run_data`): rank 0 writes the example store
   once (and every history column a feature needs from its item table); the other ranks wait and
   open it.
3. **Model** (:func:`~torchrec_side.train.model.build_model`): the ranker of ``model`` (DLRM or the
   target-attention model), wrapped by :class:`~torchrec_side.models.RankingModel`, sharded by
   ``DistributedModelParallel`` with a hand-written plan (or planner constraints) and the fused
   embedding optimizer set explicitly; embedding tables are initialized from the seed,
   independently of sharding and world size.
4. **Training** (:class:`~torchrec_side.train.loop.Loop`): the plain step loop or a TorchRec train
   pipeline (``train.pipeline``), tqdm progress on rank 0, ``train_log.jsonl``; a non-finite loss
   stops the run with :class:`TrainingDivergedError` (step and epoch named). Validation after
   every epoch (``val_history.json``), early stop after ``train.early_stop_patience`` epochs
   without a better validation NE. A checkpoint every ``checkpoint_every`` steps, at every epoch
   end and at the end (:class:`~torchrec_side.train.checkpoint.CheckpointManager`:
   manifest-verified, the best epoch's pinned); a rerun of the same command resumes from the
   newest checkpoint that passes verification, at the exact batch (a damaged newer one is set
   aside, logged; :func:`~torchrec_side.train.run_setup.resume_point`).
5. **Evaluation** (:mod:`~torchrec_side.train.scoring`): the best validation epoch's model
   (reloaded from its checkpoint) is scored on test with NE and AUC (torchrec.metrics); rank 0
   writes ``predictions_test.parquet`` and then ``metrics.json`` (last: its presence means the run
   finished).

Run folder (``cfg.run_path()``)::

    .lock                    held by the running trainer (pid, host, start time)
    config.yaml              the resolved config of the latest invocation
    inputs.json              SHA-256 of every history feature's item table (SIDs, vectors) it trained
                             on; a resume, an export or a score refuses when they changed
    metrics.json             final metrics (see :func:`run_training`)
    val_history.json         validation NE / AUC after every epoch so far
    predictions_test.parquet per-test-example scores of the best epoch (see predictions.py)
    train_log.jsonl          one line per log interval (rank 0)
    logs/rank<r>.log         per-rank logs
    checkpoints/             step_<N>/ (DCP + manifest), see checkpoint.py

Trust: resuming reads the checkpoint through DCP, whose reader unpickles ``.metadata``; the
manifest check refuses files that differ from what the trainer wrote, but whoever can write a run
folder can also write a matching manifest: a run folder is trusted input, like a pickle file
(checkpoint and resume: docs/design.md section 6).
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List

import torch
import torch.distributed as dist

from torchrec_side.train.checkpoint import CheckpointManager
from torchrec_side.train.config import TrainJobConfig
from torchrec_side.train.dist import DistEnv, init_distributed, run_on_rank0, shutdown_distributed
from torchrec_side.train.lock import RunLock
from torchrec_side.train.loop import _Stepper, Loop, TrainingDivergedError, TrainState
from torchrec_side.train.model import build_model, build_sharded_model, init_embedding_tables
from torchrec_side.train.scoring import run_metrics, score_best_epoch, write_results
from torchrec_side.train.run_setup import (
    check_run_folder,
    check_run_inputs,
    feature_keys,
    INPUTS_FILE,
    prepare_data,
    prepare_run_data,
    resume_point,
    start_checks,
    train_steps,
)

# names kept importable from here: cli.py, serving/rebuild.py, benchmarks and tests import them
__all__ = ["run_training", "prepare_data", "build_sharded_model", "init_embedding_tables", "TrainState",
           "TrainingDivergedError", "INPUTS_FILE", "check_run_inputs"]

#: The trainer's resolution of loader inputs and KJT keys (serving/rebuild.py and
#: tests/models/test_target_features.py import it under this name).
_feature_keys = feature_keys

logger: logging.Logger = logging.getLogger("torchrec_side.train")


@contextmanager
def _logging(run_dir: Path, env: DistEnv) -> Iterator[None]:
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter(f"%(asctime)s [rank{env.rank}] %(levelname)s %(name)s: %(message)s")
    handlers: List[logging.Handler] = [logging.FileHandler(run_dir / "logs" / f"rank{env.rank}.log")]
    if env.is_rank0:
        handlers.append(logging.StreamHandler(sys.stderr))
    root = logging.getLogger("torchrec_side")
    old_level, old_propagate = root.level, root.propagate
    root.setLevel(logging.INFO)
    root.propagate = False  # our handlers only (no duplicate lines through the root logger)
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    try:
        yield
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(old_level)
        root.propagate = old_propagate


def run_training(cfg: TrainJobConfig) -> Dict[str, Any]:
    """Trains and evaluates one variant / seed; resumes if the run folder holds a checkpoint.

    Works under torchrun / TorchX (any number of ranks) and as a plain process (one rank). Rank 0
    holds the run folder's lock (:class:`~torchrec_side.train.lock.RunLock`) for the whole run.

    Args:
        cfg (TrainJobConfig): the validated config.

    Returns:
        Dict[str, Any]: the metrics written to ``metrics.json`` (on every rank): ``val`` and
        ``test`` of the best validation epoch's model (``ne``, ``auc``, ``ne_exact``,
        ``log_loss``, ``base_rate``, ``examples``), ``best_epoch``, ``best_step``, ``val_history``
        (per evaluated epoch: ``epoch``, ``step``, ``ne``, ``auc``, ...), ``stopped_early``,
        ``steps``, ``epochs``, ``resumed_from_step``, ``train_examples_per_s``, ``learned_params``,
        ``history`` (per feature: kind, column, KJT keys, footprint), ``sharding``, ``pipeline``, ...

    Raises:
        ConfigError: anything wrong in the config or its artifacts, before training starts.
        RunLockedError: another run holds the run folder.
        TrainingDivergedError: the loss or a validation metric became NaN / infinite (nothing
            written as if the run had succeeded).

    Example::

        metrics = run_training(load_train_config("configs/ml100k/dlrm_sparse_id.yaml", ["seed=1"]))
        metrics["test"]["ne"], metrics["best_epoch"]
    """
    env = init_distributed(cfg.train.device)
    try:
        run_dir = cfg.run_path()
        lock = RunLock(run_dir, purpose=f"torchrec-side train {cfg.name} seed {cfg.seed}")
        # rank 0 checks the folder is a run's, creates it and takes its lock before anything is
        # written into it (collective)
        run_on_rank0(lambda: (check_run_folder(run_dir), lock.acquire(), None)[2])
        threads = torch.get_num_threads()
        try:
            with _logging(run_dir, env):
                return _Run(cfg, env, run_dir).run()
        finally:
            torch.set_num_threads(threads)
            lock.release()
    finally:
        shutdown_distributed(env)


class _Run:
    def __init__(self, cfg: TrainJobConfig, env: DistEnv, run_dir: Path) -> None:
        self.cfg = cfg
        self.env = env
        self.run_dir = run_dir

    def run(self) -> Dict[str, Any]:
        cfg, env, t = self.cfg, self.env, self.cfg.train
        t_start = time.time()
        if t.threads:
            torch.set_num_threads(t.threads)
        ckpt = CheckpointManager(self.run_dir / "checkpoints", keep=t.keep_checkpoints)
        ctx0, features = start_checks(cfg, env, self.run_dir, ckpt)  # collective, before any data is written
        logger.info("run %s: %d rank(s), %s, backend %s, host %s, step loop %s", self.run_dir, env.world_size,
                    env.device, env.backend, socket.gethostname(), t.pipeline)
        data = prepare_run_data(cfg, ctx0, features)
        built = build_model(cfg, env, data)
        train_loader = data.train_loader(cfg, env)
        spe, total = train_steps(cfg, env, train_loader.dataset, data.store)
        latest = resume_point(cfg, env, self.run_dir, ckpt, data.digests)
        loop = Loop(cfg, env, self.run_dir, data, built, ckpt)
        state, resumed_from = loop.restore(latest, total)

        stepper = _Stepper(t.pipeline, built.dmp, built.opt, env.device)
        stopped_early = loop.train(stepper, train_loader, state, total, spe)
        scores = score_best_epoch(loop, stepper, state, spe)  # the model to report: the best validation epoch's
        metrics = run_metrics(loop, built, state, spe, resumed_from, stopped_early, scores, t_start)
        write_results(self.run_dir, env, data.store, scores, metrics)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()
        return metrics
