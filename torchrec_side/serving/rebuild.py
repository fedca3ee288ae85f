# pyre-strict
"""A trained run, rebuilt unsharded: its config, example store, history features and the
``RankingModel`` with a checkpoint loaded into it (docs/design.md section 6).

The model is assembled by the trainer's own builder (:func:`~torchrec_side.models.build_ranker`
over the same history features and KJT keys), so the state-dict keys are those the DMP-wrapped
model saved; DCP then loads the (possibly row-/column-sharded) checkpoint into the plain tensors
in one process (no process group: DCP reads every shard and reassembles the tables).

Example::

    run = load_run("runs/train/dlrm_side/seed0")
    run.model.eval()
    loss, logits = run.model(batch)
    run.checkpoint, run.selection        # Path(.../step_00000750), "latest"
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from torch import nn

from torchrec_side.errors import TorchRecSideError
from torchrec_side.config import ConfigError
from torchrec_side.io import ArtifactError, PathLike

__all__ = ["ServingError", "LoadedRun", "choose_checkpoint", "open_run_store", "load_run"]

logger: logging.Logger = logging.getLogger(__name__)


class ServingError(TorchRecSideError, ValueError):
    """A run cannot be exported or a request cannot be scored (names the file, field or value)."""


@dataclass
class LoadedRun:
    """A run rebuilt for inference.

    Args:
        run_dir (Path): the run folder.
        cfg (Any): its :class:`~torchrec_side.train.config.TrainJobConfig`.
        store (Any): its :class:`~torchrec_side.data.ExampleStore`.
        features (List[Any]): instantiated history features, in config order.
        inputs (List[Any]): the loader's :class:`~torchrec_side.data.HistoryInput` list.
        keys (Dict[str, List[str]]): ``{feature name: KJT keys}``.
        model (nn.Module): the unsharded ``RankingModel`` with the checkpoint loaded (eval mode).
        checkpoint (Path): the checkpoint folder loaded.
        step (int): its training step.
        selection (str): why it was chosen (``"best_validation"`` or ``"latest"`` or ``"given"``).
        item_tables (Dict[str, str]): ``{history column: fingerprint}`` of the item tables it was
            checked against (recorded in the export, checked again when scoring from the store).
    """

    run_dir: Path
    cfg: Any
    store: Any
    features: List[Any]
    inputs: List[Any]
    keys: Dict[str, List[str]]
    model: nn.Module
    checkpoint: Path
    step: int
    selection: str
    item_tables: Dict[str, str] = field(default_factory=dict)


def _recorded_best_step(run_dir: Path) -> Optional[int]:
    """``best_step`` of the run's ``metrics.json`` (the trainer's best validation epoch), if any."""
    p = run_dir / "metrics.json"
    if not p.is_file():
        return None
    try:
        step = json.loads(p.read_text()).get("best_step")
    except (OSError, ValueError):
        return None
    return int(step) if isinstance(step, (int, float)) else None


def choose_checkpoint(run_dir: PathLike, which: str = "auto", manager: Optional[Any] = None) -> Tuple[Path, str]:
    """The checkpoint to serve.

    ``"auto"``: the best validation epoch's checkpoint when the finished run recorded one
    (``metrics.json``'s ``best_step``; the trainer keeps that checkpoint), else the newest complete
    one; ``"best"`` or ``"latest"`` force either; a ``step_<N>`` folder name picks that one.
    Completeness and checksums are checked by the trainer's
    :class:`~torchrec_side.train.checkpoint.CheckpointManager`.

    Args:
        run_dir (PathLike): the run folder.
        which (str): ``"auto"``, ``"best"``, ``"latest"`` or ``"step_<N>"``.
        manager (Optional[CheckpointManager]): reuse this manager (its verification cache).

    Returns:
        ``(checkpoint folder, selection)`` with selection ``"best_validation"``, ``"latest"`` or ``"given"``.

    Raises:
        ServingError: no usable checkpoint, or the requested one is missing / fails verification.

    Example::

        path, why = choose_checkpoint("runs/train/dlrm_side/seed0")     # (.../step_00000750, "best_validation")
    """
    from torchrec_side.train.checkpoint import CheckpointManager

    root = Path(run_dir)
    mgr = manager if manager is not None else CheckpointManager(root / "checkpoints")
    if which in ("auto", "best"):
        best = _recorded_best_step(root)
        if best is not None:
            p = mgr.directory / f"step_{best:08d}"
            problem = _checkpoint_problem(mgr, p)
            if problem is None:
                return p, "best_validation"
            if which == "best":
                raise ServingError(f"{root}: the best validation checkpoint {p.name} is not usable: {problem}")
            logger.warning("best validation checkpoint %s is not usable (%s); using the latest", p, problem)
        elif which == "best":
            raise ServingError(f"{root}: metrics.json records no best validation step (an unfinished run?); "
                               f"use --checkpoint latest")
    if which in ("auto", "best", "latest"):
        latest = mgr.latest()
        if latest is None:
            raise ServingError(f"{root}: no complete checkpoint in {mgr.directory} (train the run first)")
        return Path(latest), "latest"
    p = mgr.directory / which
    problem = _checkpoint_problem(mgr, p)
    if problem is not None:
        raise ServingError(f"{root}: checkpoint {which!r} is not usable: {problem} "
                           f"(complete: {[c.name for c in mgr.complete()]})")
    return p, "given"


def _checkpoint_problem(mgr: Any, path: Path) -> Optional[str]:
    """Why ``path`` cannot be loaded (``None``: it passes the manager's full check)."""
    if not path.is_dir():
        return "no such folder"
    verify = getattr(mgr, "verify", None)
    if callable(verify):
        problem = verify(path)
        return None if problem is None else str(problem)
    return None if mgr.is_complete(path) else "incomplete"


def open_run_store(run_dir: Path, cfg: Any) -> Any:
    """The run's example store: the path recorded in ``metrics.json``, else the config's
    ``examples_dir / store_name`` (relative paths tried from the working directory).

    Raises:
        ServingError: no store found (naming the places looked at).
    """
    from torchrec_side.data import ExampleStore, StoreError

    candidates: List[Path] = []
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        try:
            rec = json.loads(metrics.read_text()).get("store")
        except ValueError:
            rec = None
        if rec:
            candidates.append(Path(rec))
    candidates.append(Path(cfg.examples_dir) / cfg.data.store_name())
    for c in candidates:
        if (c / "manifest.json").is_file():
            try:
                return ExampleStore(c)
            except StoreError as e:
                raise ServingError(f"{run_dir}: example store {c}: {e}") from e
    raise ServingError(f"{run_dir}: the run's example store is not at {[str(c) for c in candidates]} "
                       f"(run from the folder the run was trained from, or keep the store there)")


def _feature_keys(store: Any, features: List[Any]) -> Tuple[List[Any], Dict[str, List[str]]]:
    """The loader inputs and KJT keys per feature, as the trainer resolved them (the trainer's own
    function: target inputs included); its errors (a column missing from the store) as ServingError."""
    from torchrec_side.train.trainer import _feature_keys as trainer_feature_keys

    try:
        return trainer_feature_keys(store, features)
    except ConfigError as e:
        raise ServingError(str(e)) from e


def load_run(run_dir: PathLike, checkpoint: str = "auto") -> LoadedRun:
    """Rebuilds a run's model unsharded and loads a checkpoint into it with DCP.

    Args:
        run_dir (PathLike): the run folder (``config.yaml``, ``checkpoints/``).
        checkpoint (str): see :func:`choose_checkpoint`.

    Returns:
        LoadedRun: the model is in eval mode, on CPU.

    Raises:
        ServingError: no run / config / store / checkpoint, the checkpoint does not fit the model,
            or a history feature's item table differs from the one the run trained on.

    Example::

        run = load_run("runs/train/dlrm_side/seed0")
        run.model(batch)[1]             # logits [B]
    """
    from torchrec_side.models.builder import build_ranker, RankingModel
    from torchrec_side.data.store import table_fingerprint
    from torchrec_side.models.history import HistoryContext, make_history_feature
    from torchrec_side.train.checkpoint import CheckpointManager
    from torchrec_side.train.config import load_train_config
    from torchrec_side.train.trainer import check_run_inputs

    root = Path(run_dir)
    cfg_path = root / "config.yaml"
    if not cfg_path.is_file():
        raise ServingError(f"{root} is not a training run folder (missing config.yaml)")
    try:
        cfg = load_train_config(cfg_path)
    except ConfigError as e:
        raise ServingError(f"{cfg_path}: {e}") from e
    if cfg.model.item_min_count:
        raise ServingError(f"{cfg_path}: model.item_min_count={cfg.model.item_min_count} (id admission) is not "
                           f"supported by export/serving yet: the exported model would not know the admitted rows")
    mgr = CheckpointManager(root / "checkpoints")
    ckpt, selection = choose_checkpoint(root, checkpoint, mgr)  # verified once; load reuses the check
    store = open_run_store(root, cfg)
    ctx = HistoryContext(num_users=store.num_users, num_items=store.num_items, embedding_dim=cfg.model.embedding_dim,
                         arch=cfg.model.arch, max_history=store.max_history, seed=cfg.seed,
                         world_dir=getattr(cfg.data, "world_dir", None))
    try:
        features = [make_history_feature(h, ctx, i) for i, h in enumerate(cfg.model.history)]
    except ConfigError as e:
        raise ServingError(f"{cfg_path}: {e}") from e
    try:  # the SIDs / vectors it trained on, not a replaced artifact at the same path
        digests = {f.column: table_fingerprint(t) for f in features if (t := f.item_table()) is not None}
        if not check_run_inputs(root, digests):
            logger.warning("%s records no inputs.json (trained before the record existed): its SID artifacts "
                           "cannot be checked", root)
    except ArtifactError as e:
        raise ServingError(str(e)) from e
    inputs, keys = _feature_keys(store, features)
    model = RankingModel(build_ranker(cfg.model, store.num_users, store.num_items, features, keys))
    sd = model.state_dict()
    app: Dict[str, Any] = {"model": sd}
    try:
        with warnings.catch_warnings():  # DCP warns that it loads in a single process: that is the intent
            warnings.filterwarnings("ignore", message=".*single process.*")
            state = mgr.load(ckpt, app)
    except (RuntimeError, ValueError, KeyError, FileNotFoundError, ArtifactError) as e:
        raise ServingError(f"checkpoint {ckpt} does not load into the model of {cfg_path}: {e}") from e
    try:
        model.load_state_dict(app["model"], strict=True)
    except RuntimeError as e:
        raise ServingError(f"checkpoint {ckpt} does not fit the model of {cfg_path}: {e}") from e
    model.eval()
    step = int(state.get("step", -1)) if isinstance(state, dict) else -1
    logger.info("loaded %s (%s, step %d) into the unsharded %s model", ckpt, selection, step, cfg.model.arch)
    return LoadedRun(run_dir=root, cfg=cfg, store=store, features=features, inputs=inputs, keys=keys, model=model,
                     checkpoint=ckpt, step=step, selection=selection, item_tables=digests)


def stock_table_rows(model: nn.Module) -> Dict[str, int]:
    """``{KJT key: rows}`` of every key read by a stock ``EmbeddingBagCollection`` /
    ``EmbeddingCollection`` inside ``model`` (the values must index those rows)."""
    from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection

    out: Dict[str, int] = {}
    for m in model.modules():
        configs: List[Any] = []
        if isinstance(m, EmbeddingBagCollection):
            configs = list(m.embedding_bag_configs())
        elif isinstance(m, EmbeddingCollection):
            configs = list(m.embedding_configs())
        for c in configs:
            for f in c.feature_names:
                out[f] = min(out.get(f, c.num_embeddings), c.num_embeddings)
    return out


def side_key_codecs(model: nn.Module) -> Dict[str, Dict[str, Any]]:
    """``{KJT key: codec dict}`` of every key read by a SIDE module inside ``model``."""
    from torchrec_side.modules import SIDEmbeddingBagCollection, SIDEmbeddingCollection

    out: Dict[str, Dict[str, Any]] = {}
    for m in model.modules():
        if isinstance(m, (SIDEmbeddingBagCollection, SIDEmbeddingCollection)):
            for c in m.sid_configs():
                for f in c.feature_names:
                    out[f] = c.codec.to_dict()
    return out


def optional_int(x: Optional[Any]) -> Optional[int]:
    return None if x is None else int(x)
