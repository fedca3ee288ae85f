# pyre-strict
"""Small evaluation helpers in plain torch: AUC, accuracy, reconstruction cosine, a linear probe."""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F

__all__ = ["binary_auc", "multilabel_auc", "multiclass_scores", "mean_cosine", "fit_linear_probe"]


def binary_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC of ``scores [N]`` for 0/1 ``labels [N]`` (Mann-Whitney, ties count 1/2).

    Returns ``nan`` when only one class is present.

    Example::

        binary_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))   # 0.75
    """
    s = scores.detach().double().flatten().cpu()
    y = labels.detach().flatten().cpu().bool()
    n_pos = int(y.sum())
    n_neg = int(y.numel() - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(s)
    s_sorted = s[order]
    ranks = torch.empty_like(s)
    # Average ranks of ties.
    uniq, inverse, counts = torch.unique_consecutive(s_sorted, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg = ends - (counts.double() - 1) / 2.0
    ranks[order] = avg[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def multilabel_auc(scores: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
    """``{"auc_macro", "auc_micro"}`` of ``scores [N, C]`` vs 0/1 ``labels [N, C]``.

    The macro average skips classes with a single label value among the ``N`` rows.
    """
    per = [binary_auc(scores[:, j], labels[:, j]) for j in range(scores.shape[1])]
    valid = [a for a in per if a == a]
    return {
        "auc_macro": float(sum(valid) / len(valid)) if valid else float("nan"),
        "auc_micro": binary_auc(scores.flatten(), labels.flatten()),
    }


def multiclass_scores(logits: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
    """``{"accuracy", "auc_macro"}`` (one-vs-rest) of ``logits [N, C]`` vs class indices ``labels [N]``.

    Rows with label ``-1`` are ignored.
    """
    keep = labels >= 0
    logits, labels = logits[keep], labels[keep].long()
    if labels.numel() == 0:
        return {"accuracy": float("nan"), "auc_macro": float("nan")}
    acc = float((logits.argmax(1) == labels).double().mean())
    prob = logits.softmax(1)
    per = [binary_auc(prob[:, j], labels == j) for j in range(logits.shape[1])]
    valid = [a for a in per if a == a]
    return {"accuracy": acc, "auc_macro": float(sum(valid) / len(valid)) if valid else float("nan")}


def mean_cosine(x_hat: torch.Tensor, x: torch.Tensor, present: Optional[torch.Tensor] = None) -> float:
    """Mean cosine similarity of the rows of ``x_hat [N, d]`` and ``x [N, d]`` (present rows only)."""
    if present is None:
        present = x.abs().sum(1) > 0
    if not bool(present.any()):
        return float("nan")
    return float(F.cosine_similarity(x_hat[present].double(), x[present].double(), dim=1, eps=1e-12).mean())


def fit_linear_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    multi_label: bool = True,
    l2: float = 1e-3,
    iters: int = 200,
) -> torch.nn.Linear:
    """Fits a logistic-regression probe (L-BFGS, standardized features) on ``x [N, d]``.

    Args:
        x: features.
        y: ``[N, C]`` 0/1 (``multi_label``) or ``[N]`` class indices.
        multi_label: BCE per class, else softmax cross-entropy.
        l2: weight of the L2 penalty on the weights.
        iters: L-BFGS iterations.

    Returns:
        an ``nn.Linear`` that takes *raw* ``x`` (the standardization is folded in).
    """
    x = x.detach().double().cpu()
    mu = x.mean(0)
    sd = x.std(0).clamp_min(1e-8)
    xs = (x - mu) / sd
    c = int(y.shape[1]) if multi_label else int(y.max()) + 1
    w = torch.zeros(x.shape[1], c, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(c, dtype=torch.float64, requires_grad=True)
    yt = y.detach().cpu().double() if multi_label else y.detach().cpu().long()
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = xs @ w + b
        loss = F.binary_cross_entropy_with_logits(logits, yt) if multi_label else F.cross_entropy(logits, yt)
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    lin = torch.nn.Linear(x.shape[1], c)
    with torch.no_grad():
        wf = (w / sd[:, None]).detach()
        lin.weight.copy_(wf.T.float())
        lin.bias.copy_((b - mu @ wf).detach().float())
    return lin
