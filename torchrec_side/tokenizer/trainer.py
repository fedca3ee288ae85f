# pyre-strict
"""Mini-batch training of the VQ-fusion tokenizer.

:func:`train_tokenizer` splits the items into train / validation, initializes the bottleneck
from the encoder's output on the first shuffled training batches (PCA + k-means), trains with
AdamW, logs every loss term per epoch (JSON lines), stops early on the validation loss and
restores the best epoch's weights.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
from tqdm.auto import tqdm

from torchrec_side.quantizers.base import codebook_stats
from torchrec_side.tokenizer.config import FusionModelConfig, TrainConfig
from torchrec_side.tokenizer.data import ItemData, split_items
from torchrec_side.tokenizer.model import VQFusionModel, resolve_model_config

__all__ = ["TrainResult", "resolve_device", "train_tokenizer", "evaluate_losses"]

logger: logging.Logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` fails clearly without a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available (use device=cpu or auto)")
    return torch.device(name)


@dataclass
class TrainResult:
    """What :func:`train_tokenizer` returns.

    Args:
        model: the trained model (eval mode, best epoch's weights when ``restore_best``).
        history: one dict per epoch (the JSON-lines records).
        train_index: ``int64 [N_train]`` positions of the training items in the data.
        val_index: ``int64 [N_val]`` positions of the held-out items.
        best_epoch: epoch (1-based) whose weights were kept.
        stopped_early: whether early stopping ended training.
        seconds: wall-clock training time.
        config: the model config with data-derived sizes filled in.
    """

    model: VQFusionModel
    history: List[Dict[str, Any]]
    train_index: torch.Tensor
    val_index: torch.Tensor
    best_epoch: int
    stopped_early: bool
    seconds: float
    config: FusionModelConfig


def _to_device(d: Mapping[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in d.items()}


@torch.no_grad()
def evaluate_losses(model: VQFusionModel, data: ItemData, batch_size: int = 1024) -> Dict[str, float]:
    """Mean of every loss term over ``data`` (eval mode, no codebook updates).

    Returns:
        ``{"recon/<name>", "task/<name>", "commitment", "codebook", "total"}`` plus
        ``"utilization"`` and ``"perplexity"`` (means over levels of the codes of ``data``).
    """
    was_training = model.training
    model.eval()
    device = model.bottleneck.offset.device
    sums: Dict[str, float] = {}
    codes: List[torch.Tensor] = []
    n = len(data)
    for s in range(0, n, batch_size):
        inputs = {k: v[s : s + batch_size].to(device) for k, v in data.collections.items()}
        targets = {k: v[s : s + batch_size].to(device) for k, v in data.targets.items()}
        out = model(inputs, targets)
        b = next(iter(inputs.values())).shape[0]
        for k, v in out.losses.items():
            sums[k] = sums.get(k, 0.0) + float(v) * b
        codes.append(out.codes.cpu())
    model.train(was_training)
    res = {k: v / max(n, 1) for k, v in sums.items()}
    if codes:
        st = codebook_stats(torch.cat(codes), model.radices)
        res["utilization"] = sum(st.utilization) / len(st.utilization)
        res["perplexity"] = sum(st.perplexity) / len(st.perplexity)
        res["collision_rate"] = st.collision_rate
    return res


def train_tokenizer(
    model_config: FusionModelConfig,
    train_config: TrainConfig,
    data: ItemData,
    log_path: Optional[Path] = None,
    on_epoch: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> TrainResult:
    """Trains a :class:`VQFusionModel` on ``data``.

    Args:
        model_config: model config; collection dims and class counts left at 0 are taken from
            ``data``.
        train_config: :class:`~torchrec_side.tokenizer.config.TrainConfig`.
        data: items with every collection and target the model config names.
        log_path: JSON-lines file receiving one record per epoch (created / truncated).
        on_epoch: called with each epoch's record.

    Returns:
        :class:`TrainResult`.

    Example::

        data = make_synthetic_items(500)
        res = train_tokenizer(FusionModelConfig(collections=[CollectionConfig("a")]),
                              TrainConfig(epochs=5, device="cpu", progress=False), data)
        res.history[-1]["val/total"], res.model.tokenize(data.collections).shape
    """
    threads = torch.get_num_threads()
    if train_config.num_threads > 0:
        torch.set_num_threads(train_config.num_threads)
    try:
        return _train(model_config, train_config, data, log_path, on_epoch)
    finally:
        torch.set_num_threads(threads)


def _train(
    model_config: FusionModelConfig,
    train_config: TrainConfig,
    data: ItemData,
    log_path: Optional[Path],
    on_epoch: Optional[Callable[[Dict[str, Any]], None]],
) -> TrainResult:
    cfg = train_config
    t0 = time.time()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(cfg.seed)
    mcfg = resolve_model_config(model_config, data.dims, data.num_classes)
    for t in mcfg.targets:
        if data.target_kinds.get(t.name) not in (None, t.kind):
            raise ValueError(f"target {t.name!r}: data has {data.target_kinds[t.name]}, config says {t.kind}")
    data = data.select([c.name for c in mcfg.collections], [t.name for t in mcfg.targets])
    train_idx, val_idx = split_items(len(data), cfg.val_fraction, cfg.seed)
    if data.fit_mask is not None:  # fit on the allowed items only (e.g. released before validation)
        train_idx, val_idx = train_idx[data.fit_mask[train_idx]], val_idx[data.fit_mask[val_idx]]
    train_data, val_data = data.subset(train_idx), data.subset(val_idx)
    model = VQFusionModel(mcfg).to(device)
    model.fit_normalizers(_to_device(train_data.collections, device))

    gen = torch.Generator().manual_seed(cfg.seed)
    n_train = len(train_data)
    x_train = _to_device(train_data.collections, device)
    y_train = _to_device(train_data.targets, device)

    codebooks = {id(p) for p in model.bottleneck.codebooks.parameters()}
    decay = [p for p in model.parameters() if p.requires_grad and id(p) not in codebooks and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and id(p) not in codebooks and p.dim() <= 1]
    cb_params = [p for p in model.bottleneck.codebooks.parameters() if p.requires_grad]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cb_params:
        groups.append({"params": cb_params, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=cfg.lr)

    steps_per_epoch = max(1, math.ceil(n_train / cfg.batch_size))
    history: List[Dict[str, Any]] = []
    best = math.inf
    best_epoch = 0
    best_state: Optional[Dict[str, torch.Tensor]] = None
    bad_epochs = 0
    stopped_early = False
    log_file = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "w")
    total_epochs = cfg.warmup_epochs + cfg.epochs
    bar = tqdm(total=total_epochs * steps_per_epoch, desc="tokenizer", unit="step", disable=not cfg.progress, dynamic_ncols=True)

    def run_epoch(quantize: bool) -> Dict[str, float]:
        model.train()
        perm = torch.randperm(n_train, generator=gen).to(device)
        sums: Dict[str, float] = {}
        seen = 0
        restarted = 0
        for s in range(0, n_train, cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            bar.update(1)
            if idx.numel() < 2 and n_train >= 2:  # a 1-row batch gives degenerate statistics
                continue
            out = model({k: v[idx] for k, v in x_train.items()}, {k: v[idx] for k, v in y_train.items()}, quantize)
            opt.zero_grad(set_to_none=True)
            out.losses["total"].backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            restarted += out.restarted
            b = int(idx.numel())
            seen += b
            for k, v in out.losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * b
        res = {f"train/{k}": v / max(seen, 1) for k, v in sums.items()}
        res["train/restarted_codes"] = float(restarted)
        return res

    def write(record: Dict[str, Any]) -> None:
        history.append(record)
        if log_file is not None:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
        if on_epoch is not None:
            on_epoch(record)

    try:
        for epoch in range(1, cfg.warmup_epochs + 1):
            te = time.time()
            record: Dict[str, Any] = {"epoch": epoch - cfg.warmup_epochs - 1, "phase": "warmup"}
            record.update(run_epoch(quantize=False))
            record["seconds"] = round(time.time() - te, 4)
            write(record)

        # Bottleneck initialization from the encoder's output on the first shuffled batches.
        first = torch.randperm(n_train, generator=gen)[: mcfg.bottleneck.init_samples].to(device)
        model.eval()
        with torch.no_grad():
            z0 = model.encode({k: v[first] for k, v in x_train.items()})
        model.bottleneck.initialize(z0, torch.Generator().manual_seed(cfg.seed + 1))

        monitor_data = val_data if len(val_data) > 0 else train_data
        prefix = "val" if len(val_data) > 0 else "train_eval"
        for epoch in range(1, cfg.epochs + 1):
            te = time.time()
            record = {"epoch": epoch, "phase": "train"}
            record.update(run_epoch(quantize=True))
            ev = evaluate_losses(model, monitor_data)
            record.update({f"{prefix}/{k}": v for k, v in ev.items()})
            monitor = ev["total"]
            if monitor < best - cfg.min_delta:
                best, best_epoch, bad_epochs = monitor, epoch, 0
                if cfg.restore_best:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            record["best_epoch"] = best_epoch
            record["seconds"] = round(time.time() - te, 4)
            write(record)
            bar.set_postfix(
                {"train": f"{record.get('train/total', float('nan')):.4f}", prefix: f"{monitor:.4f}", "best": best_epoch},
                refresh=False,
            )
            if cfg.patience and bad_epochs >= cfg.patience:
                stopped_early = True
                bar.update(bar.total - bar.n)
                break
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()
    if cfg.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        history=history,
        train_index=train_idx,
        val_index=val_idx,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        seconds=time.time() - t0,
        config=mcfg,
    )
