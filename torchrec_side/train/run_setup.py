# pyre-strict
"""A training run's set-up, before the model: start checks, the example store and the history
features, the record of the run's inputs and the checkpoint to resume from.

* :func:`start_checks`: every rank checks the config, the run folder's checkpoints
  (:func:`check_resume`) and every history feature's artifacts before any data is written
  (:func:`history_context_before_data` gives the features the store's sizes without writing it).
* :func:`prepare_run_data`: rank 0 writes the example store once (and every history column a feature
  derives from its item table, :func:`prepare_data`); every rank opens it and resolves the
  features' loader inputs and KJT keys (:func:`feature_keys`) into a :class:`RunData`.
* :func:`resume_point`: clears what a new attempt rewrites, records the item tables the run trains
  on (``inputs.json``, :func:`check_run_inputs` on a resume) and picks the newest verified checkpoint.

Example::

    ctx0, features = start_checks(cfg, env, run_dir, ckpt)
    data = prepare_run_data(cfg, ctx0, features)
    latest = resume_point(cfg, env, run_dir, ckpt, data.digests)
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

from torchrec_side.config import ConfigError, save_config
from torchrec_side.data.loader import ExampleDataset, HistoryInput, make_dataloader
from torchrec_side.data.store import ExampleStore, prepare_store, StoreError
from torchrec_side.io import ArtifactError, file_in_the_way, write_json
from torchrec_side.models.builder import admitted_item_rows
from torchrec_side.models.history import HistoryContext, HistoryFeature, make_history_feature
from torchrec_side.train.checkpoint import CheckpointManager
from torchrec_side.train.config import TrainJobConfig
from torchrec_side.train.dist import broadcast_object, DistEnv, run_on_rank0
from torchrec_side.train.lock import LOCK_FILE
from torchrec_side.train.predictions import PREDICTIONS_FILE

__all__ = [
    "INPUTS_FILE",
    "RunData",
    "check_embedding_optimizer",
    "check_run_folder",
    "check_resume",
    "check_run_inputs",
    "feature_keys",
    "history_context_before_data",
    "prepare_data",
    "prepare_run_data",
    "resume_point",
    "start_checks",
    "train_steps",
]

logger: logging.Logger = logging.getLogger("torchrec_side.train")

#: What a run folder records of its inputs: ``{"item_tables": {history column: digest}}``.
INPUTS_FILE: str = "inputs.json"


# --------------------------------------------------------------------------------------------
# start checks


def check_resume(cfg: TrainJobConfig, ckpt: CheckpointManager, run_dir: Path, world_size: int) -> None:
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


def check_embedding_optimizer(cfg: TrainJobConfig, env: DistEnv) -> None:
    """Refuses an embedding optimizer the device's FBGEMM kernels lack (Adam on CPU)."""
    if cfg.optim.embedding_optimizer == "adam" and env.device.type == "cpu":
        raise ConfigError(
            "optim.embedding_optimizer=adam is refused by FBGEMM's CPU kernels; use rowwise_adagrad, "
            "adagrad or sgd on CPU"
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


def _features(cfg: TrainJobConfig, ctx: HistoryContext) -> List[HistoryFeature]:
    return [make_history_feature(h, ctx, i) for i, h in enumerate(cfg.model.history)]


def check_run_folder(run_dir: Path) -> None:
    """A run writes only into a new or empty folder, or one a run wrote (``config.yaml``; or only
    the lock and logs of a start that failed its checks): it deletes and overwrites files there,
    so a user's folder given as ``run_dir`` / ``output_dir`` is refused before anything is written.

    Raises:
        ConfigError: naming the folder and what it holds.
    """
    blocker = file_in_the_way(run_dir)
    if blocker is not None:
        raise ConfigError(f"run folder {run_dir}: {blocker} exists and is not a folder (check output_dir / run_dir)")
    if not run_dir.is_dir() or (run_dir / "config.yaml").is_file():
        return
    foreign = sorted(q.name for q in run_dir.iterdir() if q.name not in (LOCK_FILE, "logs"))
    if foreign:
        raise ConfigError(f"run folder {run_dir}: holds {foreign[:5]} but no config.yaml, so it is not a run folder; "
                          "refusing to write into it (choose another output_dir / run_dir)")


def start_checks(cfg: TrainJobConfig, env: DistEnv, run_dir: Path, ckpt: CheckpointManager
                 ) -> Tuple[Optional[HistoryContext], List[HistoryFeature]]:
    """The checks every rank makes before any data is written (collective); then rank 0 clears a
    run that starts over and writes ``config.yaml``.

    Returns:
        ``(context, features)``: the store's sizes known before writing it (or ``None``) and the
        history features built (and checked) from them (empty when ``None``).

    Raises:
        ConfigError: a config the devices refuse, incompatible checkpoints, or a feature's artifact.
    """
    check_embedding_optimizer(cfg, env)
    run_on_rank0(lambda: check_resume(cfg, ckpt, run_dir, env.world_size))
    ctx0 = history_context_before_data(cfg)
    features = _features(cfg, ctx0) if ctx0 is not None else []  # runs every check()
    if env.is_rank0:
        if not cfg.resume:  # start over: no stale checkpoint may be resumed later
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            (run_dir / "train_log.jsonl").unlink(missing_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    return ctx0, features


# --------------------------------------------------------------------------------------------
# data and features


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


def feature_keys(store: ExampleStore, features: List[HistoryFeature]
                 ) -> Tuple[List[HistoryInput], Dict[str, List[str]]]:
    """The loader inputs of ``features`` (target inputs included) and each feature's KJT keys.

    Raises:
        ConfigError: a feature's column is not in the store, or two features produce the same keys.
    """
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


class _chain:
    """Applies KJT transforms in order (picklable, for DataLoader workers)."""

    def __init__(self, fns: List[Any]) -> None:
        self.fns = fns

    def __call__(self, kjt: Any) -> Any:
        for f in self.fns:
            kjt = f(kjt)
        return kjt


@dataclass
class RunData:
    """The opened example store and what the model and the loaders need of it.

    Args:
        store (ExampleStore): the store, with the features' history columns.
        features (List[HistoryFeature]): the history features, built from the store's sizes.
        inputs (List[HistoryInput]): the loader inputs (history and target).
        keys (Dict[str, List[str]]): each feature's KJT keys.
        transform (Any): the features' KJT transforms chained (``None``: none).
        item_rows (Optional[npt.NDArray[np.int64]]): id admission's item -> row map (``None``: off).
        digests (Dict[str, str]): ``{history column: fingerprint of its item table}``.
    """

    store: ExampleStore
    features: List[HistoryFeature]
    inputs: List[HistoryInput]
    keys: Dict[str, List[str]]
    transform: Any
    item_rows: Optional[npt.NDArray[np.int64]]
    digests: Dict[str, str]

    def train_loader(self, cfg: TrainJobConfig, env: DistEnv) -> Any:
        """This rank's shuffled training DataLoader (its dataset is an :class:`ExampleDataset`)."""
        t = cfg.train
        kw: Dict[str, Any] = dict(rank=env.rank, world_size=env.world_size, seed=cfg.seed,
                                  transform=self.transform, shuffle_row_groups=t.shuffle_row_groups,
                                  item_rows=self.item_rows, max_history=cfg.model.event_cap)
        return make_dataloader(self.store, "train", self.inputs, t.batch_size, shuffle=True,
                               num_workers=t.num_workers, pin_memory=env.device.type == "cuda", **kw)

    def eval_loader(self, cfg: TrainJobConfig, env: DistEnv, split: str) -> Any:
        """This rank's share of ``split``, in store order."""
        t = cfg.train
        return make_dataloader(self.store, split, self.inputs, t.eval_batch_size, rank=env.rank,
                               world_size=env.world_size, shuffle=False, num_workers=t.num_workers,
                               transform=self.transform, pin_memory=env.device.type == "cuda",
                               item_rows=self.item_rows, max_history=cfg.model.event_cap)

    def history(self, with_footprint: bool) -> List[Dict[str, Any]]:
        """Per feature, what ``metrics.json`` records: name, kind, column, KJT keys (and the
        column's footprint on the store, measured where ``with_footprint``)."""
        out = []
        for f in self.features:
            entry = {"name": f.name, "kind": f.config.kind, "column": f.column, "keys": self.keys[f.name],
                     "target_keys": f.target_keys(self.keys[f.name]), **f.describe()}
            if with_footprint:
                entry["footprint"] = self.store.footprint(f.column)
            out.append(entry)
        return out


def prepare_run_data(cfg: TrainJobConfig, ctx0: Optional[HistoryContext], features: List[HistoryFeature]
                     ) -> RunData:
    """Writes (rank 0, once) and opens the example store and the features' history columns;
    rebuilds the features when the store's sizes differ from ``ctx0``. Collective."""
    store, _ = prepare_data(cfg)
    ctx = HistoryContext(num_users=store.num_users, num_items=store.num_items,
                         embedding_dim=cfg.model.embedding_dim, arch=cfg.model.arch,
                         max_history=store.max_history, seed=cfg.seed,
                         world_dir=getattr(cfg.data, "world_dir", None))
    if ctx0 is None or ctx != ctx0:
        features = _features(cfg, ctx)
    digests: Dict[str, str] = {}
    if features:  # writes the columns features derive from item tables (rank 0, once)
        store, digests = prepare_data(cfg, features)
    inputs, keys = feature_keys(store, features)
    transforms = [f for f in (feat.loader_transform() for feat in features) if f is not None]
    k = cfg.model.item_min_count
    item_rows = admitted_item_rows(store.interactions("train")["item_id"], store.num_items, k) if k else None
    if item_rows is not None:
        logger.info("id admission: %d of %d items have >= %d training impressions; the others share row %d",
                    int((item_rows < store.num_items).sum()), store.num_items, k, store.num_items)
    return RunData(store=store, features=features, inputs=inputs, keys=keys,
                   transform=_chain(transforms) if transforms else None, item_rows=item_rows, digests=digests)


# --------------------------------------------------------------------------------------------
# the run folder's record of its inputs, and the checkpoint to resume from


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


def resume_point(cfg: TrainJobConfig, env: DistEnv, run_dir: Path, ckpt: CheckpointManager,
                 digests: Dict[str, str]) -> Optional[str]:
    """Rank 0 sets damaged checkpoints aside, removes the records this attempt writes again, and
    records (or, on a resume, checks) the item tables the run trains on. Collective.

    Returns:
        Optional[str]: on every rank, the newest checkpoint that passes verification when
        ``cfg.resume`` (``None``: train from step 0).

    Raises:
        ArtifactError: resuming a run whose item tables changed (:func:`check_run_inputs`).
    """
    if env.is_rank0:
        ckpt.cleanup()
        for stale in ("metrics.json", PREDICTIONS_FILE):  # written again only if this run succeeds
            (run_dir / stale).unlink(missing_ok=True)
    found = ckpt.latest() if (cfg.resume and env.is_rank0) else None
    if env.is_rank0 and found is None:  # training from step 0: no stale validation record
        (run_dir / "val_history.json").unlink(missing_ok=True)

    def record_inputs() -> None:  # a resume must read the item tables it trained on
        if found is None or not check_run_inputs(run_dir, digests):
            write_json(run_dir / INPUTS_FILE, {"item_tables": digests})
    run_on_rank0(record_inputs)
    return broadcast_object(str(found) if found is not None else None)


def train_steps(cfg: TrainJobConfig, env: DistEnv, ds: ExampleDataset, store: ExampleStore) -> Tuple[int, int]:
    """``(steps per epoch, total steps)`` of the run (``train.epochs``, capped by ``train.max_steps``).

    Raises:
        ConfigError: the global batch exceeds the training examples (no full step).
    """
    t = cfg.train
    steps_per_epoch = len(ds)
    if steps_per_epoch < 1:
        raise ConfigError(
            f"train.batch_size={t.batch_size} x {env.world_size} ranks exceeds the {store.rows('train')} "
            f"training examples: no full step"
        )
    total = steps_per_epoch * t.epochs
    if t.max_steps:
        total = min(total, t.max_steps)
    return steps_per_epoch, total
