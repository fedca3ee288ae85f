# pyre-strict
"""Evaluation: torchrec.metrics NE and AUC over a whole split, on all ranks.

``NE = mean log loss / entropy of the base rate`` of the evaluated examples (torchrec's
``NEMetric``, lifetime value); ``AUC`` from torchrec's ``AUCMetric`` with a window larger than the
split, so it covers every example. Both are synchronized across ranks by torchrec (torchmetrics
states). The same NE is also computed exactly from all-reduced sums (``ne_exact``), a cross-check
that costs one all-reduce; padding rows (weight 0) count nowhere.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["evaluate", "binary_entropy"]

_TASK = "ctr"


def binary_entropy(p: float) -> float:
    """Entropy (nats) of a Bernoulli(p); 0 at p in {0, 1}."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def _metrics(world_size: int, rank: int, batch_size: int, window: int) -> Tuple[Any, Any]:
    from torchrec.metrics.auc import AUCMetric
    from torchrec.metrics.metrics_config import RecTaskInfo
    from torchrec.metrics.ne import NEMetric

    tasks = [RecTaskInfo(name=_TASK, label_name="label", prediction_name="prediction", weight_name="weight")]
    kw: Dict[str, Any] = dict(world_size=world_size, my_rank=rank, batch_size=batch_size, tasks=tasks,
                              window_size=window, compute_on_all_ranks=True)
    return NEMetric(**kw), AUCMetric(**kw)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Any],
    device: torch.device,
    batch_size: int,
    num_examples: int,
    progress: Optional[Callable[[Iterable[Any]], Iterable[Any]]] = None,
    collect: Optional[List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = None,
) -> Dict[str, float]:
    """Runs ``model`` over ``batches`` and returns NE, AUC and friends (identical on all ranks).

    Collective when a process group is initialized: every rank must iterate the same number of
    batches (:class:`~torchrec_side.data.loader.ExampleDataset` guarantees it).

    Args:
        model (nn.Module): ``batch -> (loss, logits [B])`` (e.g. DMP-wrapped
            :class:`~torchrec_side.models.RankingModel`); put in eval mode here and restored.
        batches (Iterable[ExampleBatch]): this rank's batches of the split.
        device (torch.device): where the model runs.
        batch_size (int): rows per batch per rank.
        num_examples (int): examples of the split (sizes the AUC window).
        progress: optional wrapper of the iterable (e.g. tqdm on rank 0).
        collect: if given, receives this rank's ``(scores [B], labels [B], weights [B])`` of
            every batch, on CPU, in batch order (scores = predicted probabilities, float32).

    Returns:
        Dict[str, float]: ``ne`` and ``auc`` (torchrec.metrics), ``ne_exact``, ``log_loss`` (mean),
        ``base_rate`` (positive share), ``examples`` (weighted count).

    Example::

        val = evaluate(dmp, val_loader, torch.device("cpu"), 1024, store.rows("val"))
        val["ne"], val["auc"]
    """
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    ne_m, auc_m = _metrics(world, rank, batch_size, window=max(num_examples, 1) * 2 + batch_size * world)
    ne_m, auc_m = ne_m.to(device), auc_m.to(device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # log loss, weight, positives
    was_training = model.training
    model.eval()
    try:
        for batch in (progress(batches) if progress is not None else batches):
            batch = batch.to(device, non_blocking=True)
            _, logits = model(batch)
            logits = logits.float()
            preds = torch.sigmoid(logits)
            w = batch.weights
            ne_m.update(predictions={_TASK: preds}, labels={_TASK: batch.labels}, weights={_TASK: w})
            auc_m.update(predictions={_TASK: preds}, labels={_TASK: batch.labels}, weights={_TASK: w})
            ll = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.labels, reduction="none")
            sums += torch.stack([(ll * w).sum().double(), w.sum().double(), (batch.labels * w).sum().double()])
            if collect is not None:
                collect.append((preds.detach().cpu(), batch.labels.detach().float().cpu(), w.detach().float().cpu()))
    finally:
        model.train(was_training)
    if dist.is_initialized() and world > 1:
        dist.all_reduce(sums)
    ne_out = ne_m.compute()
    auc_out = auc_m.compute()
    loss_sum, n, pos = (float(x) for x in sums.cpu())
    base = pos / n if n else float("nan")
    mean_ll = loss_sum / n if n else float("nan")
    h = binary_entropy(base) if n else float("nan")
    return {
        "ne": float(ne_out[f"ne-{_TASK}|lifetime_ne"].reshape(-1)[0]),
        "auc": float(auc_out[f"auc-{_TASK}|window_auc"].reshape(-1)[0]),
        "ne_exact": mean_ll / h if h else float("nan"),
        "log_loss": mean_ll,
        "base_rate": base,
        "examples": n,
    }
