# pyre-strict
"""Typed config of a training run (``torchrec-side train``): YAML + ``key=value`` overrides.

Loaded with :func:`torchrec_side.config.load_config`, so an unknown key anywhere (file or
override) fails at once with the key, its source and the closest valid names, and the
dataclasses' ``__post_init__`` checks reject bad values before any data or model is touched.

Example::

    cfg = load_train_config("configs/ml100k/dlrm_sparse_id.yaml", ["seed=3", "train.epochs=2"])
    cfg.run_path()        # runs/train/dlrm_sparse_id/seed3
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

from torchrec_side.config import check_seed, config_to_dict, ConfigError, load_config
from torchrec_side.data.examples import ExamplesConfig
from torchrec_side.models.builder import ModelConfig

__all__ = [
    "EMBEDDING_OPTIMIZERS",
    "DENSE_OPTIMIZERS",
    "SHARDING_TYPES",
    "PIPELINES",
    "OptimConfig",
    "ShardingConfig",
    "TrainConfig",
    "TrainJobConfig",
    "load_train_config",
]

#: Fused embedding optimizers (FBGEMM). On CPU, Adam is refused by the kernels.
EMBEDDING_OPTIMIZERS: Tuple[str, ...] = ("sgd", "adagrad", "rowwise_adagrad", "adam")
#: Dense optimizers (torch.optim) for everything that is not a sharded table.
DENSE_OPTIMIZERS: Tuple[str, ...] = ("adam", "adagrad", "sgd")
#: Step loops: the plain loop, TorchRec's TrainPipelineBase, TorchRec's TrainPipelineSparseDist.
PIPELINES: Tuple[str, ...] = ("loop", "base", "sparse_dist")
#: Sharding types a table may be given.
SHARDING_TYPES: Tuple[str, ...] = (
    "table_wise", "row_wise", "column_wise", "data_parallel", "table_row_wise", "grid_shard",
)


@dataclass
class OptimConfig:
    """Optimizers: a fused one for the sharded tables (set explicitly: TorchRec's silent default
    is SGD at lr 0.01) and a dense one for the rest.

    Args:
        embedding_optimizer (str): ``"rowwise_adagrad"`` (EXACT_ROWWISE_ADAGRAD), ``"adagrad"``,
            ``"sgd"``; ``"adam"`` on CUDA only.
        embedding_lr (float): its learning rate.
        embedding_eps (float): Adagrad epsilon.
        embedding_weight_decay (float): its weight decay.
        dense_optimizer (str): ``"adam"``, ``"adagrad"`` or ``"sgd"``.
        dense_lr (float): its learning rate.
        dense_weight_decay (float): its weight decay.
    """

    embedding_optimizer: str = "rowwise_adagrad"
    embedding_lr: float = 0.05
    embedding_eps: float = 1e-8
    embedding_weight_decay: float = 0.0
    dense_optimizer: str = "adam"
    dense_lr: float = 1e-3
    dense_weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.embedding_optimizer not in EMBEDDING_OPTIMIZERS:
            raise ConfigError(f"optim.embedding_optimizer must be one of {EMBEDDING_OPTIMIZERS}, got {self.embedding_optimizer!r}")
        if self.dense_optimizer not in DENSE_OPTIMIZERS:
            raise ConfigError(f"optim.dense_optimizer must be one of {DENSE_OPTIMIZERS}, got {self.dense_optimizer!r}")
        if self.embedding_lr <= 0 or self.dense_lr <= 0 or self.embedding_eps <= 0:
            raise ConfigError("optim: learning rates and eps must be > 0")
        if self.embedding_weight_decay < 0 or self.dense_weight_decay < 0:
            raise ConfigError("optim: weight decays must be >= 0")


@dataclass
class ShardingConfig:
    """How DMP places the learned tables.

    Args:
        mode (str): ``"plan"``: a hand-written ``ShardingPlan`` (any type works on CPU);
            ``"planner"``: TorchRec's ``EmbeddingShardingPlanner`` with per-table constraints (on
            CPU it offers only table_wise, column_wise, table_column_wise and data_parallel).
        default (str): sharding type of tables not named in ``tables``.
        tables (Dict[str, str]): ``{table name: sharding type}``; tables are ``t_user_id``,
            ``t_item_id`` and ``t_<history feature>`` (plus whatever history modules own).

    Example (YAML)::

        sharding: {mode: plan, default: table_wise, tables: {t_hist_item_id: row_wise}}
    """

    mode: str = "plan"
    default: str = "table_wise"
    tables: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("plan", "planner"):
            raise ConfigError(f"sharding.mode must be 'plan' or 'planner', got {self.mode!r}")
        for k, v in [("default", self.default)] + [(f"tables.{t}", s) for t, s in self.tables.items()]:
            if v not in SHARDING_TYPES:
                raise ConfigError(f"sharding.{k}: unknown sharding type {v!r}; expected one of {SHARDING_TYPES}")


@dataclass
class TrainConfig:
    """The training loop.

    Args:
        batch_size (int): examples per rank per step (the global batch is ``batch_size * world``).
        eval_batch_size (int): examples per rank per evaluation step.
        epochs (int): passes over the training split.
        max_steps (int): stop after this many steps (0: ``epochs`` full epochs).
        checkpoint_every (int): save a checkpoint every N steps (0: only at the end).
        keep_checkpoints (int): complete checkpoints kept (older ones are deleted).
        log_every (int): steps between log lines (``train_log.jsonl``).
        device (str): ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        num_workers (int): DataLoader workers per rank building batches (0: in the trainer).
        shuffle_row_groups (int): Parquet row groups per shuffle buffer.
        validate_every_epoch (bool): evaluate on validation after every epoch (recorded in
            ``val_history``); the model of the best epoch by validation NE is kept (its checkpoint
            is pinned) and reported (test metrics, ``predictions_test.parquet``). ``false``: only
            the final model is evaluated.
        early_stop_patience (int): stop when validation NE has not improved for this many epochs
            in a row (0: never stop early; needs ``validate_every_epoch``).
        pipeline (str): the step loop: ``"loop"`` (plain forward / backward / step), ``"base"``
            (TorchRec's ``TrainPipelineBase``), ``"sparse_dist"`` (``TrainPipelineSparseDist``:
            the next batch's input dist overlaps this batch's compute). All give the same parameters.
        write_predictions (bool): write ``predictions_test.parquet`` (best epoch's model) beside
            ``metrics.json``.
        score_test (bool): score the best epoch's model on the test split (default). ``false``
            never reads the test split: ``metrics.json`` has ``"test": null`` and no predictions
            are written (the tuning runs of the experiment driver, which choose on validation).
        progress (bool): tqdm progress bar on rank 0.
        threads (int): ``torch.set_num_threads`` per rank (0: leave as is).
        sleep_per_step (float): seconds to sleep after each step (fault-injection tests, demos).
    """

    batch_size: int = 256
    eval_batch_size: int = 1024
    epochs: int = 1
    max_steps: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    device: str = "auto"
    num_workers: int = 1
    shuffle_row_groups: int = 8
    validate_every_epoch: bool = True
    early_stop_patience: int = 2
    pipeline: str = "loop"
    write_predictions: bool = True
    score_test: bool = True
    progress: bool = True
    threads: int = 0
    sleep_per_step: float = 0.0

    def __post_init__(self) -> None:
        if min(self.batch_size, self.eval_batch_size, self.epochs, self.keep_checkpoints, self.log_every) < 1:
            raise ConfigError("train: batch sizes, epochs, keep_checkpoints and log_every must be >= 1")
        if min(self.max_steps, self.checkpoint_every, self.num_workers, self.threads) < 0 or self.sleep_per_step < 0:
            raise ConfigError("train: max_steps, checkpoint_every, num_workers, threads, sleep_per_step must be >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.early_stop_patience < 0:
            raise ConfigError(f"train.early_stop_patience must be >= 0 (0: off), got {self.early_stop_patience}")
        if self.pipeline not in PIPELINES:
            raise ConfigError(f"train.pipeline must be one of {PIPELINES}, got {self.pipeline!r}")


@dataclass
class TrainJobConfig:
    """A whole training run of one variant and seed.

    Args:
        name (str): variant name (the run folder's parent).
        seed (int): seeds model init, data order and everything random.
        output_dir (str): parent of run folders.
        run_dir (str): the run folder (default ``<output_dir>/<name>/seed<seed>``); it holds
            ``config.yaml``, ``metrics.json``, ``train_log.jsonl``, ``logs/`` and ``checkpoints/``.
        examples_dir (str): parent of example stores (written once, shared by runs).
        resume (bool): continue from the latest complete checkpoint in the run folder.
        data (ExamplesConfig): examples protocol and storage.
        model (ModelConfig): the ranking model and its history features.
        optim (OptimConfig): optimizers.
        sharding (ShardingConfig): table placement.
        train (TrainConfig): the loop.
    """

    name: str = "run"
    seed: int = 0
    output_dir: str = "runs/train"
    run_dir: str = ""
    examples_dir: str = "runs/examples"
    resume: bool = True
    data: ExamplesConfig = field(default_factory=ExamplesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"name must be a non-empty folder name, got {self.name!r}")
        check_seed(self.seed, "seed")

    def run_path(self) -> Path:
        """The run folder."""
        return Path(self.run_dir) if self.run_dir else Path(self.output_dir) / self.name / f"seed{self.seed}"

    def resume_fingerprint(self) -> str:
        """Hash of the settings a checkpoint depends on (everything but ``train``'s loop length,
        logging and progress settings, ``resume`` and paths): a resumed run must match it."""
        d = config_to_dict(self)
        for k in ("resume", "output_dir", "run_dir", "examples_dir"):
            d.pop(k)
        d["data"].pop("root")
        for k in ("epochs", "max_steps", "checkpoint_every", "keep_checkpoints", "log_every", "progress",
                  "num_workers", "threads", "sleep_per_step", "validate_every_epoch", "eval_batch_size", "device",
                  "early_stop_patience", "pipeline", "write_predictions", "score_test"):
            d["train"].pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_train_config(
    path: Optional[Union[str, "os.PathLike[str]"]] = None, overrides: Sequence[str] = ()
) -> TrainJobConfig:
    """Schema defaults <- YAML ``path`` <- ``key=value`` overrides.

    Raises:
        torchrec_side.config.ConfigError: unknown key, wrong type or bad value, with its source.

    Example::

        cfg = load_train_config("configs/ml100k/dlrm_control.yaml", ["seed=1"])
    """
    return load_config(TrainJobConfig, path, overrides)
