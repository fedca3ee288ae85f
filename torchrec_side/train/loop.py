# pyre-strict
"""The training loop: steps, validation after every epoch, early stop and checkpoints.

:class:`Loop` trains a built model to the run's step count with the plain step loop or a TorchRec
train pipeline (:class:`_Stepper`, ``train.pipeline``), tqdm progress on rank 0 and
``train_log.jsonl``; a non-finite loss stops the run with :class:`TrainingDivergedError` (step and
epoch named). Validation after every epoch (``val_history.json``), early stop after
``train.early_stop_patience`` epochs without a better validation NE. A checkpoint every
``checkpoint_every`` steps, at every epoch end and at the end
(:class:`~torchrec_side.train.checkpoint.CheckpointManager`, the best epoch's pinned);
:meth:`Loop.restore` resumes from a checkpoint at the exact batch. :class:`TrainState` is the
loop's position and validation record (what ``trainer_state.json`` holds besides bookkeeping).

Example::

    loop = Loop(cfg, env, run_dir, data, built, ckpt)
    state, resumed_from = loop.restore(latest, total)
    stopped_early = loop.train(stepper, train_loader, state, total, steps_per_epoch)
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from torchrec_side.config import ConfigError
from torchrec_side.data.loader import ExampleDataset
from torchrec_side.errors import TorchRecSideError
from torchrec_side.io import write_json
from torchrec_side.train.checkpoint import CheckpointManager
from torchrec_side.train.config import TrainJobConfig
from torchrec_side.train.dist import DistEnv
from torchrec_side.train.metrics import evaluate
from torchrec_side.train.model import BuiltModel, params_digest
from torchrec_side.train.run_setup import RunData

__all__ = ["Loop", "TrainState", "TrainingDivergedError"]

logger: logging.Logger = logging.getLogger("torchrec_side.train")

#: ``[(scores, labels, weights)]`` batches collected by an evaluation (test predictions).
Collected = List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class TrainingDivergedError(TorchRecSideError, RuntimeError):
    """The training loss (or an evaluation metric) became NaN or infinite: the run stops, no
    ``metrics.json`` is written, and the process exits non-zero."""


class TrainState:
    """Position of the loop and the validation record (what ``trainer_state.json`` holds besides
    bookkeeping)."""

    def __init__(self) -> None:
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.train_time_s = 0.0
        self.examples = 0
        self.val_history: List[Dict[str, Any]] = []

    def to_dict(self) -> Dict[str, Any]:
        return dict(step=self.step, epoch=self.epoch, batch_in_epoch=self.batch_in_epoch,
                    train_time_s=self.train_time_s, examples=self.examples, val_history=self.val_history)

    def load(self, d: Dict[str, Any]) -> None:
        self.step, self.epoch, self.batch_in_epoch = int(d["step"]), int(d["epoch"]), int(d["batch_in_epoch"])
        self.train_time_s, self.examples = float(d.get("train_time_s", 0.0)), int(d.get("examples", 0))
        self.val_history = list(d.get("val_history", []))

    def best(self) -> Optional[Dict[str, Any]]:
        """The validation record with the lowest NE (the earliest on ties), or ``None``."""
        if not self.val_history:
            return None
        return min(self.val_history, key=lambda r: (r["ne"], r["step"]))

    def epochs_since_best(self) -> int:
        b = self.best()
        return 0 if b is None else sum(1 for r in self.val_history if r["step"] > b["step"])


# --------------------------------------------------------------------------------------------
# the step loop: plain, or a TorchRec train pipeline


class _LabelTap:
    """Iterator wrapper that remembers each batch's labels and weights (FIFO), so the loss of a
    pipeline step (which returns only the model's output) can be computed from its logits."""

    def __init__(self, it: Iterator[Any]) -> None:
        self.it = it
        self.queue: Deque[Tuple[torch.Tensor, torch.Tensor]] = deque()

    def __iter__(self) -> "_LabelTap":
        return self

    def __next__(self) -> Any:
        batch = next(self.it)
        self.queue.append((batch.labels, batch.weights))
        return batch


class _Stepper:
    """Runs training steps over an epoch's batches and yields each step's loss (scalar tensor).

    ``"loop"``: ``loss, _ = dmp(batch); opt.zero_grad(); loss.backward(); opt.step()``.
    ``"base"`` / ``"sparse_dist"``: TorchRec's ``TrainPipelineBase`` / ``TrainPipelineSparseDist``
    over the same DMP model and optimizer (same order of operations: zero_grad, forward, backward,
    step); the loss is recomputed from the returned logits exactly as
    :class:`~torchrec_side.models.RankingModel` computes it.
    """

    def __init__(self, kind: str, dmp: nn.Module, opt: Any, device: torch.device) -> None:
        self.kind, self.dmp, self.opt, self.device = kind, dmp, opt, device
        self.pipe: Any = None
        self.logged = False
        if kind == "base":
            from torchrec.distributed.train_pipeline import TrainPipelineBase

            self.pipe = TrainPipelineBase(dmp, opt, device)
        elif kind == "sparse_dist":
            from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

            self.pipe = TrainPipelineSparseDist(dmp, opt, device, execute_all_batches=True)

    def steps(self, loader: Any) -> Iterator[torch.Tensor]:
        if self.pipe is None:
            for batch in loader:
                batch = batch.to(self.device, non_blocking=True)
                loss, _ = self.dmp(batch)
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                yield loss.detach()
            return
        self.pipe.reset()
        tap = _LabelTap(iter(loader))
        while True:
            try:
                logits = self.pipe.progress(tap)
            except StopIteration:
                return
            if not self.logged and self.kind == "sparse_dist":
                self.logged = True
                mods = [type(m).__name__ for m in getattr(self.pipe, "_pipelined_modules", [])]
                logger.info("train pipeline sparse_dist: input dist pipelined for %d sharded module(s) %s",
                            len(mods), mods)
            labels, weights = tap.queue.popleft()
            labels, weights = labels.to(logits.device), weights.to(logits.device)
            per = torch.nn.functional.binary_cross_entropy_with_logits(logits.detach(), labels, reduction="none")
            yield (per * weights).sum() / weights.sum().clamp_min(1.0)

    def before_eval(self) -> None:
        """Gives the model its own forward back (a sparse-dist pipeline rewrote it); the pipeline
        re-attaches itself on its next step."""
        if self.kind == "sparse_dist" and self.pipe is not None:
            self.pipe.detach()


class _LogWindow:
    """The steps since the last ``train_log.jsonl`` line: their loss sum and examples."""

    def __init__(self) -> None:
        self.loss_sum, self.n, self.t0, self.examples = 0.0, 0, time.time(), 0

    def add(self, loss: float, examples: int) -> None:
        self.loss_sum += loss
        self.n += 1
        self.examples += examples

    def close(self, step: int, epoch: int) -> Dict[str, Any]:
        """The log line of the window (mean loss, examples per second), and a new window."""
        now = time.time()
        rec = {"step": step, "epoch": epoch, "loss": self.loss_sum / max(self.n, 1),
               "examples_per_s": self.examples / max(now - self.t0, 1e-9), "time": now}
        self.loss_sum, self.n, self.t0, self.examples = 0.0, 0, now, 0
        return rec


# --------------------------------------------------------------------------------------------
# the loop


class Loop:
    """Trains, validates and checkpoints one run's model on this rank (collective: every rank runs
    the same calls)."""

    def __init__(self, cfg: TrainJobConfig, env: DistEnv, run_dir: Path, data: RunData, built: BuiltModel,
                 ckpt: CheckpointManager) -> None:
        self.cfg, self.env, self.run_dir, self.data, self.ckpt = cfg, env, run_dir, data, ckpt
        self.dmp, self.opt = built.dmp, built.opt
        self.rank0 = env.is_rank0
        self.last_saved = 0

    def progress(self, iterable: Any = None, **kw: Any) -> Any:
        from tqdm import tqdm

        return tqdm(iterable, disable=not (self.rank0 and self.cfg.train.progress), dynamic_ncols=True,
                    mininterval=1.0, file=sys.stderr, **kw)

    # ---- checkpoints

    def load(self, path: Path) -> Dict[str, Any]:
        """Loads checkpoint ``path`` into the model and the optimizer; returns its trainer state."""
        for _, o in self.opt.optimizers:  # lazy dense states (Adam moments) must exist to be loaded
            if not o.state_dict()["state"] and o.params:
                o.init_state()
        app = {"model": self.dmp.state_dict(), "optim": self.opt.state_dict()}
        loaded = self.ckpt.load(path, app)
        self.dmp.load_state_dict(app["model"])
        self.opt.load_state_dict(app["optim"])
        return loaded

    def save(self, state: TrainState) -> None:
        best = state.best()
        self.ckpt.pinned = {int(best["step"])} if best is not None else set()
        app = {"model": self.dmp.state_dict(), "optim": self.opt.state_dict()}
        extra = {**state.to_dict(), "fingerprint": self.cfg.resume_fingerprint(), "world_size": self.env.world_size,
                 "time": time.time()}
        path = self.ckpt.save(state.step, app, extra)
        self.last_saved = state.step
        logger.info("checkpoint %s", path)

    def restore(self, latest: Optional[str], total: int) -> Tuple[TrainState, Optional[int]]:
        """The loop's state: from checkpoint ``latest`` (loaded into the model), else step 0.

        Returns:
            ``(state, resumed_from_step)`` (``None`` when not resumed).

        Raises:
            ConfigError: the checkpoint is beyond the run's ``total`` steps.
        """
        state = TrainState()
        resumed_from: Optional[int] = None
        if latest is not None:
            state.load(self.load(Path(latest)))
            resumed_from = state.step
            logger.info("resumed from %s (step %d, epoch %d, batch %d)", latest, state.step, state.epoch,
                        state.batch_in_epoch)
        if state.step > total:
            raise ConfigError(f"the checkpoint is at step {state.step}, beyond this run's {total} steps")
        best = state.best()
        self.ckpt.pinned = {int(best["step"])} if best is not None else set()
        return state, resumed_from

    # ---- evaluation

    def evaluate(self, split: str, collect: Optional[Collected] = None) -> Dict[str, float]:
        """NE / AUC of the model on ``split`` (:func:`~torchrec_side.train.metrics.evaluate`)."""
        loader = self.data.eval_loader(self.cfg, self.env, split)
        bs = self.cfg.train.eval_batch_size
        return evaluate(self.dmp, loader, self.env.device, bs, self.data.store.rows(split),
                        progress=lambda it: self.progress(it, desc=f"eval {split}", leave=False), collect=collect)

    def validate(self, state: TrainState, spe: int) -> Dict[str, Any]:
        """Evaluates validation now, appends it to ``state.val_history`` and ``val_history.json``."""
        m = self.evaluate("val")
        epoch = state.epoch if state.batch_in_epoch == 0 else round(state.step / spe, 4)
        rec = {"epoch": epoch, "step": state.step, **m}
        if not (math.isfinite(m["ne"]) and math.isfinite(m["log_loss"])):
            raise TrainingDivergedError(
                f"validation NE is {m['ne']} after epoch {epoch} (step {state.step}): the model's predictions are "
                f"not finite; the run stops without metrics"
            )
        state.val_history.append(rec)
        best = state.best()
        logger.info("epoch done: val NE %.5f AUC %.5f (epoch %s, step %d; best: epoch %s, NE %.5f)", m["ne"], m["auc"],
                    epoch, state.step, best["epoch"] if best else "-", best["ne"] if best else float("nan"))
        if self.rank0:
            write_json(self.run_dir / "val_history.json", state.val_history)
        return rec

    # ---- training

    def train(self, stepper: _Stepper, loader: Any, state: TrainState, total: int, spe: int) -> bool:
        """Trains to ``total`` steps (or an early stop); returns whether it stopped early."""
        t = self.cfg.train
        patience = t.early_stop_patience if t.validate_every_epoch else 0
        if patience and state.val_history and state.epochs_since_best() >= patience:
            logger.info("early stop already reached (no val NE improvement for %d epochs)", patience)
            return True
        if state.step >= total:
            logger.info("already trained %d steps", state.step)
            return False
        logger.info("training %d steps (%d per epoch, global batch %d) from step %d", total, spe,
                    t.batch_size * self.env.world_size, state.step)
        bar = self.progress(total=total, initial=state.step, desc=self.cfg.name)
        self.dmp.train()
        window = _LogWindow()
        self.last_saved = state.step
        stopped = False
        try:
            while state.step < total and not stopped:
                end_of_epoch = self._pass(stepper, loader, state, total, spe, bar, window)
                if end_of_epoch and t.validate_every_epoch:
                    stopped = self._validate_epoch(stepper, state, spe, patience)
                if end_of_epoch or state.step >= total:
                    self.save(state)  # every epoch end: the best epoch's model can be restored
        finally:
            bar.close()
        if self.last_saved != state.step:
            self.save(state)
        logger.info("trained %d steps in %.1fs of training time; parameter digest %.6f", state.step,
                    state.train_time_s, params_digest(self.dmp))
        return stopped

    def _pass(self, stepper: _Stepper, loader: Any, state: TrainState, total: int, spe: int, bar: Any,
              window: _LogWindow) -> bool:
        """Steps from the current batch to the epoch's end or ``total``, with the periodic
        checkpoints in between; returns whether the epoch ended."""
        t = self.cfg.train
        ds: ExampleDataset = loader.dataset
        ds.set_epoch(state.epoch, state.batch_in_epoch)
        t0 = time.time()
        step_before = state.step
        end_of_epoch = False
        for loss in stepper.steps(loader):
            self._step(loss, state, total, spe, bar, window)
            end_of_epoch = state.batch_in_epoch >= spe
            if end_of_epoch:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            if t.checkpoint_every and state.step % t.checkpoint_every == 0 and state.step < total and not end_of_epoch:
                state.train_time_s += time.time() - t0
                self.save(state)
                t0 = time.time()
            if state.step >= total or end_of_epoch:
                break
        state.train_time_s += time.time() - t0
        if state.step == step_before:
            raise RuntimeError(f"the training loader produced no batch in epoch {state.epoch}")
        return end_of_epoch

    def _step(self, loss: torch.Tensor, state: TrainState, total: int, spe: int, bar: Any,
              window: _LogWindow) -> None:
        """Counts one finished step (its loss checked across ranks) and writes a log line when due."""
        t = self.cfg.train
        lv = self._global_loss(loss)
        if not math.isfinite(lv):
            raise TrainingDivergedError(
                f"training loss is {lv} at step {state.step + 1} (epoch {state.epoch}, batch "
                f"{state.batch_in_epoch} of {spe}): the run stops, no metrics are written; lower "
                f"optim.dense_lr / optim.embedding_lr or check the data ("
                + (f"last checkpoint: step {self.last_saved})" if self.last_saved else "no checkpoint yet)")
            )
        state.step += 1
        state.batch_in_epoch += 1
        n = t.batch_size * self.env.world_size
        state.examples += n
        window.add(lv, n)
        bar.update(1)
        if t.sleep_per_step:
            time.sleep(t.sleep_per_step)
        if state.step % t.log_every == 0 or state.step == total:
            rec = window.close(state.step, state.epoch)
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
            if self.rank0:
                with open(self.run_dir / "train_log.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")

    def _validate_epoch(self, stepper: _Stepper, state: TrainState, spe: int, patience: int) -> bool:
        """Validates at an epoch's end; returns whether the run stops early."""
        stepper.before_eval()
        self.validate(state, spe)
        self.dmp.train()
        if patience and state.epochs_since_best() >= patience:
            b = state.best()
            logger.info("early stop after epoch %d: val NE has not improved for %d epoch(s) since "
                        "epoch %s (NE %.5f)", state.epoch, patience, b["epoch"] if b else "-",
                        b["ne"] if b else float("nan"))
            return True
        return False

    def _global_loss(self, loss: torch.Tensor) -> float:
        """This step's loss averaged over ranks (every rank sees a NaN of any rank)."""
        if dist.is_initialized() and self.env.world_size > 1:
            x = loss.detach().float().reshape(1).clone()
            dist.all_reduce(x)
            return float(x) / self.env.world_size
        return float(loss)
