# pyre-strict
"""The DMP trainer: config -> example store -> sharded model -> training -> NE / AUC -> run folder.

One call of :func:`run_training` does, on every rank:

1. **Start checks** (before any data is written or any step runs): the config is typed and
   validated (float options finite); rank 0 takes the run folder's lock
   (:class:`~torchrec_side.train.lock.RunLock`: a second run into the same folder fails naming
   the holder); every history feature checks its artifacts (:func:`history_context_before_data`
   gives them the store's sizes without writing it); the run folder, if it holds checkpoints,
   must come from a compatible config (same model, data, optimizers, seed, batch size and world
   size) or the run stops with a message.
2. **Data**: rank 0 writes the example store once (and every history column a feature needs from
   its item table); the other ranks wait and open it.
3. **Model**: the ranker of ``model`` (DLRM or the target-attention model), wrapped by
   :class:`~torchrec_side.models.RankingModel`, sharded by ``DistributedModelParallel`` with a
   hand-written plan (or planner constraints) and the fused embedding optimizer set explicitly;
   embedding tables are initialized from the seed, independently of sharding and world size.
4. **Training**: the plain step loop or a TorchRec train pipeline (``train.pipeline``), tqdm
   progress on rank 0, ``train_log.jsonl``; a non-finite loss stops the run with
   :class:`TrainingDivergedError` (step and epoch named). Validation after every epoch
   (``val_history.json``), early stop after ``train.early_stop_patience`` epochs without a better
   validation NE. A checkpoint every ``checkpoint_every`` steps, at every epoch end and at the end
   (:class:`~torchrec_side.train.checkpoint.CheckpointManager`: manifest-verified, the best epoch's
   pinned); a rerun of the same command resumes from the newest checkpoint that passes
   verification, at the exact batch (a damaged newer one is set aside, logged).
5. **Evaluation**: the best validation epoch's model (reloaded from its checkpoint) is scored on
   test with NE and AUC (torchrec.metrics); rank 0 writes ``predictions_test.parquet`` and then
   ``metrics.json`` (last: its presence means the run finished).

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

import json
import logging
import math
import shutil
import socket
import sys
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from torchrec_side.errors import TorchRecSideError
from torchrec_side.config import config_to_dict, ConfigError, save_config
from torchrec_side.data.loader import ExampleDataset, HistoryInput, make_dataloader
from torchrec_side.data.store import ExampleStore, prepare_store, StoreError
from torchrec_side.io import ArtifactError, write_json
from torchrec_side.models.builder import admitted_item_rows, build_ranker, count_parameters, RankingModel
from torchrec_side.models.history import HistoryContext, HistoryFeature, make_history_feature
from torchrec_side.train.checkpoint import CheckpointManager
from torchrec_side.train.config import TrainJobConfig
from torchrec_side.train.lock import RunLock
from torchrec_side.train.dist import broadcast_object, DistEnv, init_distributed, run_on_rank0, shutdown_distributed
from torchrec_side.train.metrics import evaluate
from torchrec_side.train.predictions import example_columns, gather_in_store_order, PREDICTIONS_FILE, write_predictions

__all__ = ["run_training", "prepare_data", "build_sharded_model", "init_embedding_tables", "TrainState",
           "TrainingDivergedError", "INPUTS_FILE", "check_run_inputs"]

logger: logging.Logger = logging.getLogger("torchrec_side.train")

_INIT_CHUNK: int = 65_536


class TrainingDivergedError(TorchRecSideError, RuntimeError):
    """The training loss (or an evaluation metric) became NaN or infinite: the run stops, no
    ``metrics.json`` is written, and the process exits non-zero."""


# --------------------------------------------------------------------------------------------
# pieces


def prepare_data(cfg: TrainJobConfig, features: Optional[List[HistoryFeature]] = None
                 ) -> Tuple[ExampleStore, Dict[str, str]]:
    """Rank 0 writes (once) the example store and the history columns the features need; every
    rank returns the opened store and ``{history column: fingerprint of its item table}``
    (:func:`~torchrec_side.data.store.table_fingerprint`). Collective when a process group is
    initialized."""

    def write() -> str:
        store = prepare_store(cfg.data, cfg.examples_dir)
        return str(store.path)

    path = run_on_rank0(write)
    store = ExampleStore(path)
    digests: Dict[str, str] = {}
    if features:
        def columns() -> Dict[str, str]:
            out: Dict[str, str] = {}
            for f in features:
                table = f.item_table()
                if table is not None:
                    out[f.column] = store.add_history_column(f.column, table, note=f"{f.config.kind} ({f.name})",
                                                             overwrite=True).fingerprint
            return out
        digests = run_on_rank0(columns)
        store = ExampleStore(path)
    return store, digests


#: What a run folder records of its inputs: ``{"item_tables": {history column: digest}}``.
INPUTS_FILE: str = "inputs.json"


def check_run_inputs(run_dir: Path, digests: Dict[str, str]) -> bool:
    """Compares ``digests`` with the item tables ``run_dir`` recorded when it started.

    Returns:
        bool: True when checked, False when the run recorded nothing (written before the record).

    Raises:
        ArtifactError: a column's item table changed (a SID artifact replaced at the same path), or
            the record is unreadable; the message names the columns.
    """
    path = run_dir / INPUTS_FILE
    if not path.is_file():
        return False
    try:
        have = json.loads(path.read_text())["item_tables"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{path}: unreadable record of the run's inputs ({e})") from e
    changed = sorted(k for k in set(have) | set(digests) if have.get(k) != digests.get(k))
    if changed:
        raise ArtifactError(
            f"{run_dir}: the item tables of history columns {changed} differ from the ones this run trained on "
            f"(a SID / tokenizer / quantizer artifact was replaced at the same path); its checkpoints would "
            f"restore tables of the old SIDs: retrain into a new run folder, or restore the artifacts")
    return True


def _feature_keys(store: ExampleStore, features: List[HistoryFeature]) -> Tuple[List[HistoryInput], Dict[str, List[str]]]:
    inputs: List[Any] = []  # HistoryInput / TargetInput
    keys: Dict[str, List[str]] = {}
    for f in features:
        ks: List[str] = []
        for inp in f.inputs():
            try:
                info = store.column(inp.column)
            except StoreError as e:
                raise ConfigError(f"{f.where}: {e}") from e
            ks.extend(inp.resolve_keys(info.width))
            inputs.append(inp)
        keys[f.name] = ks
        inputs.extend(f.target_inputs(ks))  # target: true: the target item through the same path
    flat = [k for ks in keys.values() for k in ks] + [k for f in features for k in f.target_keys(keys[f.name])]
    if len(set(flat)) != len(flat):
        raise ConfigError(f"model.history: two features produce the same KJT keys {flat}; give them distinct columns/keys")
    return inputs, keys


def _table_specs(model: nn.Module) -> Dict[str, Tuple[int, int]]:
    """``{state-dict key: (rows, dim)}`` of every stock EBC / EC table of an unsharded model."""
    from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection

    out: Dict[str, Tuple[int, int]] = {}
    for path, m in model.named_modules():
        prefix = f"{path}." if path else ""
        if isinstance(m, EmbeddingBagCollection):
            for c in m.embedding_bag_configs():
                out[f"{prefix}embedding_bags.{c.name}.weight"] = (c.num_embeddings, c.embedding_dim)
        elif isinstance(m, EmbeddingCollection):
            for c in m.embedding_configs():
                out[f"{prefix}embeddings.{c.name}.weight"] = (c.num_embeddings, c.embedding_dim)
    return out


def _init_rows(key: str, rows: int, dim: int, r0: int, n: int, seed: int) -> torch.Tensor:
    """Rows ``[r0, r0 + n)`` of table ``key``'s initial weights: uniform(+-1/sqrt(rows)), generated
    in fixed chunks each from its own seeded generator (so any shard gets the same values)."""
    bound = 1.0 / math.sqrt(rows)
    out = torch.empty(n, dim)
    h = int.from_bytes(key.encode()[-16:].rjust(16, b"\0"), "little") % (2**61 - 1)
    c0, c1 = r0 // _INIT_CHUNK, (r0 + n - 1) // _INIT_CHUNK if n else -1
    for c in range(c0, c1 + 1):
        g = torch.Generator().manual_seed((seed * 1_000_003 + h * 7919 + c) % (2**63 - 1))
        lo = c * _INIT_CHUNK
        chunk = torch.empty(min(_INIT_CHUNK, rows - lo), dim).uniform_(-bound, bound, generator=g)
        a, b = max(r0, lo), min(r0 + n, lo + chunk.shape[0])
        out[a - r0: b - r0] = chunk[a - lo: b - lo]
    return out


@torch.no_grad()
def init_embedding_tables(model: nn.Module, specs: Dict[str, Tuple[int, int]], seed: int) -> None:
    """Sets every sharded (or data-parallel) table of a DMP model to its seeded initial values,
    independently of the sharding type and the world size.

    Args:
        model (nn.Module): the DMP-wrapped model.
        specs (Dict[str, Tuple[int, int]]): ``{state-dict key: (rows, dim)}`` (from the unsharded model).
        seed (int): the run's seed.
    """
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    sd = model.state_dict()
    for key, (rows, dim) in specs.items():
        t = sd.get(key)
        if t is None:
            raise KeyError(f"table {key} not in the sharded model's state dict")
        if isinstance(t, ShardedTensor):
            for shard in t.local_shards():
                (r0, c0), (n, m) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                shard.tensor.copy_(_init_rows(key, rows, dim, r0, n, seed)[:, c0: c0 + m])
        elif hasattr(t, "to_local"):  # DTensor
            raise NotImplementedError(f"{key}: DTensor tables are not supported")
        else:
            t.copy_(_init_rows(key, rows, dim, 0, rows, seed))


def _embedding_optimizer(name: str) -> Any:
    from fbgemm_gpu.split_embedding_configs import EmbOptimType

    return {"sgd": EmbOptimType.EXACT_SGD, "adagrad": EmbOptimType.EXACT_ADAGRAD,
            "rowwise_adagrad": EmbOptimType.EXACT_ROWWISE_ADAGRAD, "adam": EmbOptimType.ADAM}[name]


def build_sharded_model(
    cfg: TrainJobConfig, model: nn.Module, env: DistEnv
) -> Tuple[nn.Module, Any, Dict[str, str]]:
    """Shards ``model`` with DMP and builds the combined optimizer.

    Returns:
        ``(dmp, optimizer, {table: sharding type})``.

    Raises:
        ConfigError: a sharding entry names an unknown table, or the planner cannot satisfy it.
    """
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.distributed.types import ShardingEnv
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter

    from torchrec_side.distributed import embedding_sharders, hand_plan, learned_tables, sharding_constraints

    o = cfg.optim
    if o.embedding_optimizer == "adam" and env.device.type == "cpu":
        raise ConfigError(
            "optim.embedding_optimizer=adam is refused by FBGEMM's CPU kernels; use rowwise_adagrad, "
            "adagrad or sgd on CPU"
        )
    tables = [t for ts in learned_tables(model).values() for t in ts]
    unknown = sorted(set(cfg.sharding.tables) - set(tables))
    if unknown:
        raise ConfigError(f"sharding.tables names unknown tables {unknown}; the model's learned tables: {tables}")
    choice = {t: cfg.sharding.tables.get(t, cfg.sharding.default) for t in tables}
    fused: Dict[str, Any] = {"eps": o.embedding_eps, "weight_decay": o.embedding_weight_decay}
    if o.embedding_optimizer == "sgd":
        fused = {"weight_decay": o.embedding_weight_decay}
    sharders = embedding_sharders(_embedding_optimizer(o.embedding_optimizer), o.embedding_lr, **fused)
    sharding_env = ShardingEnv.from_process_group(dist.group.WORLD)  # pyre-ignore[6]  # pyright: ignore[reportArgumentType]
    from torchrec_side.distributed import per_module_sharding

    try:
        per_module_sharding(model, choice)
    except ValueError as e:
        raise ConfigError(f"sharding: {e}") from e
    if cfg.sharding.mode == "plan":
        plan = hand_plan(model, choice, env.world_size, local_size=env.local_world_size,
                         device_type=env.device.type, sharders=sharders)
    else:
        planner = EmbeddingShardingPlanner(
            topology=Topology(world_size=env.world_size, local_world_size=env.local_world_size,
                              compute_device=env.device.type),
            constraints=sharding_constraints(model, choice),
        )
        try:
            plan = planner.collective_plan(model, sharders, dist.GroupMember.WORLD)  # pyre-ignore[6]
        except Exception as e:  # noqa: BLE001 - planner errors are long; keep the gist
            raise ConfigError(
                f"the sharding planner cannot place the tables as asked ({choice}) on {env.device.type}: "
                f"{str(e).splitlines()[0]}; use sharding.mode=plan (hand-written plan) for other types"
            ) from e
    dmp = DistributedModelParallel(module=model, env=sharding_env, device=env.device, plan=plan, sharders=sharders)
    dense = dict(in_backward_optimizer_filter(dmp.named_parameters()))
    opts: List[Any] = [("fused", dmp.fused_optimizer)]
    if dense:
        dense_cls = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}[o.dense_optimizer]
        opts.append(("dense", KeyedOptimizerWrapper(
            dense, lambda params: dense_cls(params, lr=o.dense_lr, weight_decay=o.dense_weight_decay))))
    return dmp, CombinedOptimizer(opts), choice


# --------------------------------------------------------------------------------------------
# run folder, logging


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


def _check_resume(cfg: TrainJobConfig, ckpt: CheckpointManager, run_dir: Path, world_size: int) -> None:
    """Refuses to resume checkpoints written under an incompatible config or world size."""
    if not cfg.resume:
        return
    ck = ckpt.latest()
    if ck is None:
        return
    state = json.loads((ck / "trainer_state.json").read_text())
    if state.get("fingerprint") != cfg.resume_fingerprint():
        raise ConfigError(
            f"{run_dir} holds checkpoints of another config (model, data, optimizer, seed or batch size "
            f"differ); use another run_dir / name, or resume=false to start over"
        )
    if state.get("world_size") != world_size:
        raise ConfigError(
            f"{run_dir}: checkpoint written by {state.get('world_size')} ranks, this run has {world_size}; "
            f"resume with the same number of ranks, or resume=false"
        )


def history_context_before_data(cfg: TrainJobConfig) -> Optional[HistoryContext]:
    """The :class:`HistoryContext` the example store will give, found *without* writing it, so
    every history feature's ``check()`` (its artifacts: SID tables, tokenizers) runs before the
    store is prepared. From the store itself when it is already written, else from the source's
    sizes (synthetic: the config; MovieLens: the rating files, a fraction of a second; a simulated
    world: its manifest).

    Returns:
        Optional[HistoryContext]: ``None`` when the sizes cannot be known cheaply (features are
        then checked right after the store is prepared).
    """
    d = cfg.data
    path = Path(cfg.examples_dir) / d.store_name()
    nu: Optional[int] = None
    ni: Optional[int] = None
    try:
        store = ExampleStore(path)
        if store.manifest.get("fingerprint") == d.fingerprint():
            nu, ni = store.num_users, store.num_items
    except (StoreError, KeyError, ValueError):
        pass
    if ni is None:
        if d.dataset == "synthetic":
            nu, ni = d.synthetic_users, d.synthetic_items
        elif d.dataset == "ml100k":
            from torchrec_side.data.movielens import load_movielens

            ml = load_movielens(d.root)
            nu, ni = ml.num_users, ml.num_items
        elif d.dataset == "adsworld" and getattr(d, "world_dir", None):
            from torchrec_side.data.adsworld import read_manifest

            try:  # the world's manifest names its id spaces
                m = read_manifest(str(d.world_dir))
                nu, ni = int(m["num_users"]), int(m["num_items"])
            except ArtifactError:
                return None  # the store preparation reports what is wrong with the world folder
        else:
            return None
    return HistoryContext(num_users=int(nu), num_items=int(ni), embedding_dim=cfg.model.embedding_dim,  # type: ignore[arg-type]
                          arch=cfg.model.arch, max_history=d.max_history, seed=cfg.seed,
                          world_dir=getattr(d, "world_dir", None))


@torch.no_grad()
def _params_digest(model: nn.Module) -> float:
    """A cheap scalar summary of this rank's parameter values (logs, tests)."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    total = 0.0
    for _, t in model.state_dict().items():
        if isinstance(t, ShardedTensor):
            total += sum(float(s.tensor.double().sum()) for s in t.local_shards())
        elif isinstance(t, torch.Tensor) and t.is_floating_point():
            total += float(t.double().sum())
    return total


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


# --------------------------------------------------------------------------------------------
# the run


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
        # rank 0 creates the folder and takes its lock before anything is written into it (collective)
        run_on_rank0(lambda: (lock.acquire(), None)[1])
        threads = torch.get_num_threads()
        try:
            with _logging(run_dir, env):
                return _Run(cfg, env, run_dir).run()
        finally:
            torch.set_num_threads(threads)
            lock.release()
    finally:
        shutdown_distributed(env)


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


class _Run:
    def __init__(self, cfg: TrainJobConfig, env: DistEnv, run_dir: Path) -> None:
        self.cfg = cfg
        self.env = env
        self.run_dir = run_dir
        self.rank0 = env.is_rank0

    def _progress(self, iterable: Any = None, **kw: Any) -> Any:
        from tqdm import tqdm

        return tqdm(iterable, disable=not (self.rank0 and self.cfg.train.progress), dynamic_ncols=True,
                    mininterval=1.0, file=sys.stderr, **kw)

    def _features(self, ctx: HistoryContext) -> List[HistoryFeature]:
        return [make_history_feature(h, ctx, i) for i, h in enumerate(self.cfg.model.history)]

    def run(self) -> Dict[str, Any]:
        cfg, env, t = self.cfg, self.env, self.cfg.train
        t_start = time.time()
        if t.threads:
            torch.set_num_threads(t.threads)
        # ---- start checks (collective: every rank checks the same things), before any data is written
        if cfg.optim.embedding_optimizer == "adam" and env.device.type == "cpu":
            raise ConfigError(
                "optim.embedding_optimizer=adam is refused by FBGEMM's CPU kernels; use rowwise_adagrad, "
                "adagrad or sgd on CPU"
            )
        ckpt = CheckpointManager(self.run_dir / "checkpoints", keep=t.keep_checkpoints)
        run_on_rank0(lambda: _check_resume(cfg, ckpt, self.run_dir, env.world_size))
        ctx0 = history_context_before_data(cfg)
        features: List[HistoryFeature] = self._features(ctx0) if ctx0 is not None else []  # runs every check()
        if self.rank0:
            if not cfg.resume:  # start over: no stale checkpoint may be resumed later
                shutil.rmtree(self.run_dir / "checkpoints", ignore_errors=True)
                (self.run_dir / "train_log.jsonl").unlink(missing_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
        logger.info("run %s: %d rank(s), %s, backend %s, host %s, step loop %s", self.run_dir, env.world_size,
                    env.device, env.backend, socket.gethostname(), t.pipeline)
        store, _ = prepare_data(cfg)
        ctx = HistoryContext(num_users=store.num_users, num_items=store.num_items,
                             embedding_dim=cfg.model.embedding_dim, arch=cfg.model.arch,
                             max_history=store.max_history, seed=cfg.seed,
                             world_dir=getattr(cfg.data, "world_dir", None))
        if ctx0 is None or ctx != ctx0:
            features = self._features(ctx)
        digests: Dict[str, str] = {}
        if features:  # writes the columns features derive from item tables (rank 0, once)
            store, digests = prepare_data(cfg, features)
        inputs, keys = _feature_keys(store, features)
        transforms = [f for f in (feat.loader_transform() for feat in features) if f is not None]
        transform = _chain(transforms) if transforms else None
        self.store, self.inputs, self.transform = store, inputs, transform
        k = cfg.model.item_min_count
        self.item_rows = admitted_item_rows(store.interactions("train")["item_id"], store.num_items, k) if k else None
        if self.item_rows is not None:
            logger.info("id admission: %d of %d items have >= %d training impressions; the others share row %d",
                        int((self.item_rows < store.num_items).sum()), store.num_items, k, store.num_items)

        # ---- model
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % (2**32))
        ranker = build_ranker(cfg.model, store.num_users, store.num_items, features, keys)
        model = RankingModel(ranker)
        params = count_parameters(model)
        specs = _table_specs(model)
        dmp, opt, choice = build_sharded_model(cfg, model, env)
        init_embedding_tables(dmp, specs, cfg.seed)
        logger.info("model %s: %s learned parameters; tables %s", cfg.model.arch, params, choice)

        # ---- data loaders
        train_ds_kw: Dict[str, Any] = dict(rank=env.rank, world_size=env.world_size, seed=cfg.seed,
                                           transform=transform, shuffle_row_groups=t.shuffle_row_groups,
                                           item_rows=self.item_rows, max_history=cfg.model.max_events or None)
        train_loader = make_dataloader(store, "train", inputs, t.batch_size, shuffle=True,
                                       num_workers=t.num_workers, pin_memory=env.device.type == "cuda", **train_ds_kw)
        train_ds: ExampleDataset = train_loader.dataset  # type: ignore[assignment]
        steps_per_epoch = len(train_ds)
        if steps_per_epoch < 1:
            raise ConfigError(
                f"train.batch_size={t.batch_size} x {env.world_size} ranks exceeds the {store.rows('train')} "
                f"training examples: no full step"
            )
        total = steps_per_epoch * t.epochs
        if t.max_steps:
            total = min(total, t.max_steps)

        # ---- resume (from the newest checkpoint that matches its manifest; damaged ones are set aside)
        if self.rank0:
            ckpt.cleanup()
            for stale in ("metrics.json", PREDICTIONS_FILE):  # written again only if this run succeeds
                (self.run_dir / stale).unlink(missing_ok=True)
        found = ckpt.latest() if (cfg.resume and self.rank0) else None
        if self.rank0 and found is None:  # training from step 0: no stale validation record
            (self.run_dir / "val_history.json").unlink(missing_ok=True)

        def record_inputs() -> None:  # a resume must read the item tables it trained on
            if found is None or not check_run_inputs(self.run_dir, digests):
                write_json(self.run_dir / INPUTS_FILE, {"item_tables": digests})
        run_on_rank0(record_inputs)
        latest = broadcast_object(str(found) if found is not None else None)
        state = TrainState()
        resumed_from: Optional[int] = None
        if latest is not None:
            loaded = self._load(ckpt, Path(latest), dmp, opt)
            state.load(loaded)
            resumed_from = state.step
            logger.info("resumed from %s (step %d, epoch %d, batch %d)", latest, state.step, state.epoch,
                        state.batch_in_epoch)
        if state.step > total:
            raise ConfigError(f"the checkpoint is at step {state.step}, beyond this run's {total} steps")
        best = state.best()
        ckpt.pinned = {int(best["step"])} if best is not None else set()

        # ---- train (validation after every epoch; early stop; checkpoints)
        stepper = _Stepper(t.pipeline, dmp, opt, env.device)
        stopped_early = self._train(dmp, opt, stepper, train_loader, train_ds, ckpt, state, total, steps_per_epoch)

        # ---- the model to report: the best validation epoch's
        stepper.before_eval()
        if not state.val_history or state.val_history[-1]["step"] != state.step:
            self._validate(dmp, state, steps_per_epoch)  # the final model is an evaluation point too
        best = state.best()
        assert best is not None
        if best["step"] != state.step:
            path = ckpt.directory / f"step_{int(best['step']):08d}"
            logger.info("best validation epoch %s (step %d, val NE %.5f): loading %s", best["epoch"], best["step"],
                        best["ne"], path.name)
            self._load(ckpt, path, dmp, opt)
        collected: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        predict = t.write_predictions and t.score_test
        # score_test=false (tuning runs): the test split is never read
        test = self._evaluate(dmp, "test", collect=collected if predict else None) if t.score_test else None
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

        history = []
        for f in features:
            entry = {"name": f.name, "kind": f.config.kind, "column": f.column, "keys": keys[f.name],
                     "target_keys": f.target_keys(keys[f.name]), **f.describe()}
            if self.rank0:
                entry["footprint"] = store.footprint(f.column)
            history.append(entry)
        metrics: Dict[str, Any] = {
            "name": cfg.name,
            "seed": cfg.seed,
            "arch": cfg.model.arch,
            "world_size": env.world_size,
            "device": str(env.device),
            "steps": state.step,
            "steps_per_epoch": steps_per_epoch,
            "epochs": state.step / steps_per_epoch,
            "resumed_from_step": resumed_from,
            "global_batch_size": t.batch_size * env.world_size,
            "train_examples": state.examples,
            "train_time_s": state.train_time_s,
            "train_examples_per_s": state.examples / state.train_time_s if state.train_time_s > 0 else None,
            "val": val,
            "test": test,
            "best_epoch": best["epoch"],
            "best_step": best["step"],
            "val_history": state.val_history,
            "stopped_early": stopped_early,
            "early_stop_patience": t.early_stop_patience,
            "learned_params": params,
            "history": history,
            "sharding": {"mode": cfg.sharding.mode, "tables": choice},
            "pipeline": t.pipeline,
            "optim": config_to_dict(cfg.optim),
            "store": str(store.path),
            "data": {s: store.manifest["splits"][s] for s in ("train", "val", "test")},
            "wall_s": time.time() - t_start,
        }
        if self.rank0:
            if gathered is not None:
                p = write_predictions(self.run_dir / PREDICTIONS_FILE, example_columns(store, "test"), *gathered)
                metrics["predictions"] = p.name
                logger.info("wrote %s (%d rows, best epoch %s)", p, gathered[0].size, best["epoch"])
            write_json(self.run_dir / "metrics.json", metrics)  # last: its presence means the run finished
            logger.info("wrote %s", self.run_dir / "metrics.json")
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()
        return metrics

    # ---- pieces of the run

    def _load(self, ckpt: CheckpointManager, path: Path, dmp: nn.Module, opt: Any) -> Dict[str, Any]:
        for _, o in opt.optimizers:  # lazy dense states (Adam moments) must exist to be loaded
            if not o.state_dict()["state"] and o.params:
                o.init_state()
        app = {"model": dmp.state_dict(), "optim": opt.state_dict()}
        loaded = ckpt.load(path, app)
        dmp.load_state_dict(app["model"])
        opt.load_state_dict(app["optim"])
        return loaded

    def _evaluate(self, dmp: nn.Module, split: str,
                  collect: Optional[List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = None) -> Dict[str, float]:
        t, env = self.cfg.train, self.env
        loader = make_dataloader(self.store, split, self.inputs, t.eval_batch_size, rank=env.rank,
                                 world_size=env.world_size, shuffle=False, num_workers=t.num_workers,
                                 transform=self.transform, pin_memory=env.device.type == "cuda",
                                 item_rows=self.item_rows, max_history=self.cfg.model.max_events or None)
        return evaluate(dmp, loader, env.device, t.eval_batch_size, self.store.rows(split),
                        progress=lambda it: self._progress(it, desc=f"eval {split}", leave=False), collect=collect)

    def _validate(self, dmp: nn.Module, state: TrainState, spe: int) -> Dict[str, Any]:
        """Evaluates validation now, appends it to ``state.val_history`` and ``val_history.json``."""
        m = self._evaluate(dmp, "val")
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

    def _save(self, ckpt: CheckpointManager, dmp: nn.Module, opt: Any, state: TrainState) -> None:
        best = state.best()
        ckpt.pinned = {int(best["step"])} if best is not None else set()
        app = {"model": dmp.state_dict(), "optim": opt.state_dict()}
        extra = {**state.to_dict(), "fingerprint": self.cfg.resume_fingerprint(), "world_size": self.env.world_size,
                 "time": time.time()}
        path = ckpt.save(state.step, app, extra)
        logger.info("checkpoint %s", path)

    def _global_loss(self, loss: torch.Tensor) -> float:
        """This step's loss averaged over ranks (every rank sees a NaN of any rank)."""
        if dist.is_initialized() and self.env.world_size > 1:
            x = loss.detach().float().reshape(1).clone()
            dist.all_reduce(x)
            return float(x) / self.env.world_size
        return float(loss)

    def _train(self, dmp: nn.Module, opt: Any, stepper: _Stepper, loader: Any, ds: ExampleDataset,
               ckpt: CheckpointManager, state: TrainState, total: int, spe: int) -> bool:
        """Trains to ``total`` steps (or an early stop); returns whether it stopped early."""
        cfg, env, t = self.cfg, self.env, self.cfg.train
        patience = t.early_stop_patience if t.validate_every_epoch else 0
        if patience and state.val_history and state.epochs_since_best() >= patience:
            logger.info("early stop already reached (no val NE improvement for %d epochs)", patience)
            return True
        if state.step >= total:
            logger.info("already trained %d steps", state.step)
            return False
        logger.info("training %d steps (%d per epoch, global batch %d) from step %d", total, spe,
                    t.batch_size * env.world_size, state.step)
        log_path = self.run_dir / "train_log.jsonl"
        bar = self._progress(total=total, initial=state.step, desc=cfg.name)
        dmp.train()
        loss_sum, loss_n, t_log, ex_log = 0.0, 0, time.time(), 0
        last_saved = state.step
        stopped = False
        try:
            while state.step < total and not stopped:
                ds.set_epoch(state.epoch, state.batch_in_epoch)
                t0 = time.time()
                step_before = state.step
                end_of_epoch = False
                for loss in stepper.steps(loader):
                    lv = self._global_loss(loss)
                    if not math.isfinite(lv):
                        raise TrainingDivergedError(
                            f"training loss is {lv} at step {state.step + 1} (epoch {state.epoch}, batch "
                            f"{state.batch_in_epoch} of {spe}): the run stops, no metrics are written; lower "
                            f"optim.dense_lr / optim.embedding_lr or check the data ("
                            + (f"last checkpoint: step {last_saved})" if last_saved else "no checkpoint yet)")
                        )
                    state.step += 1
                    state.batch_in_epoch += 1
                    n = t.batch_size * env.world_size
                    state.examples += n
                    ex_log += n
                    loss_sum += lv
                    loss_n += 1
                    bar.update(1)
                    if t.sleep_per_step:
                        time.sleep(t.sleep_per_step)
                    if state.step % t.log_every == 0 or state.step == total:
                        now = time.time()
                        rec = {"step": state.step, "epoch": state.epoch, "loss": loss_sum / max(loss_n, 1),
                               "examples_per_s": ex_log / max(now - t_log, 1e-9), "time": now}
                        bar.set_postfix(loss=f"{rec['loss']:.4f}")
                        if self.rank0:
                            with open(log_path, "a") as f:
                                f.write(json.dumps(rec) + "\n")
                        loss_sum, loss_n, t_log, ex_log = 0.0, 0, now, 0
                    end_of_epoch = state.batch_in_epoch >= spe
                    if end_of_epoch:
                        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                    if (t.checkpoint_every and state.step % t.checkpoint_every == 0 and state.step < total
                            and not end_of_epoch):
                        state.train_time_s += time.time() - t0
                        self._save(ckpt, dmp, opt, state)
                        last_saved = state.step
                        t0 = time.time()
                    if state.step >= total or end_of_epoch:
                        break
                state.train_time_s += time.time() - t0
                if state.step == step_before:
                    raise RuntimeError(f"the training loader produced no batch in epoch {state.epoch}")
                if end_of_epoch and t.validate_every_epoch:
                    stepper.before_eval()
                    self._validate(dmp, state, spe)
                    dmp.train()
                    if patience and state.epochs_since_best() >= patience:
                        b = state.best()
                        logger.info("early stop after epoch %d: val NE has not improved for %d epoch(s) since "
                                    "epoch %s (NE %.5f)", state.epoch, patience, b["epoch"] if b else "-",
                                    b["ne"] if b else float("nan"))
                        stopped = True
                if end_of_epoch or state.step >= total:
                    self._save(ckpt, dmp, opt, state)  # every epoch end: the best epoch's model can be restored
                    last_saved = state.step
        finally:
            bar.close()
        if last_saved != state.step:
            self._save(ckpt, dmp, opt, state)
        logger.info("trained %d steps in %.1fs of training time; parameter digest %.6f", state.step,
                    state.train_time_s, _params_digest(dmp))
        return stopped


class _chain:
    """Applies KJT transforms in order (picklable, for DataLoader workers)."""

    def __init__(self, fns: List[Any]) -> None:
        self.fns = fns

    def __call__(self, kjt: Any) -> Any:
        for f in self.fns:
            kjt = f(kjt)
        return kjt
