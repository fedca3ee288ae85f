# pyre-strict
"""Model config and assembly: ids + history features -> DLRM or the target-attention model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from torchrec_side.config import ConfigError
from torchrec_side.data.loader import DENSE_FEATURES, ExampleBatch, ID_FEATURES
from torchrec_side.models.din import DINRanker
from torchrec_side.models.dlrm import combine_pooled, DLRMRanker, id_embedding_bag_collection
from torchrec_side.models.history import HistoryFeature, HistoryFeatureConfig

__all__ = ["ModelConfig", "RankingModel", "admitted_item_rows", "build_ranker", "count_parameters"]

ARCHS: Tuple[str, ...] = ("dlrm", "din")


@dataclass
class ModelConfig:
    """The ranking model of a variant.

    Args:
        arch (str): ``"dlrm"`` (``torchrec.models.dlrm.DLRM`` over pooled features) or ``"din"``
            (target attention over per-event history embeddings).
        embedding_dim (int): ``D`` of every id table and history feature.
        id_features (List[str]): per-example id features embedded with learned tables
            (``user_id``, ``item_id``; DIN needs ``item_id``).
        dense_arch_layer_sizes (List[int]): dense MLP; for DLRM the last size must be ``D``.
        over_arch_layer_sizes (List[int]): over MLP, last size 1.
        attention_layer_sizes (List[int]): DIN's attention scoring MLP.
        max_events (int): DIN attends over each history's last ``max_events`` events only (0,
            default: the whole window of ``data.max_history``). The store's window stays the
            same for every variant (one example store per world); the trainer's loaders cut the
            windows to ``max_events`` and the ranker cuts them again (serving feeds the store's
            window). DLRM refuses it (it pools the whole window).
        history (List[HistoryFeatureConfig]): history features (empty: the control variant).
        item_min_count (int): id admission of the target-item table: items with fewer than this
            many training impressions (cold items among them) share one learned row, row
            ``num_items``, as production tables admit ids by frequency; 0 (default): every item its
            own row, an untrained item keeps its initial row. Serving does not support it yet.

    Example (YAML)::

        model:
          arch: dlrm
          embedding_dim: 16
          history:
            - {kind: sparse_id, column: hist_item_id}
    """

    arch: str = "dlrm"
    embedding_dim: int = 16
    id_features: List[str] = field(default_factory=lambda: list(ID_FEATURES))
    dense_arch_layer_sizes: List[int] = field(default_factory=lambda: [32, 16])
    over_arch_layer_sizes: List[int] = field(default_factory=lambda: [64, 32, 1])
    attention_layer_sizes: List[int] = field(default_factory=lambda: [32])
    max_events: int = 0
    history: List[HistoryFeatureConfig] = field(default_factory=list)
    item_min_count: int = 0

    @property
    def event_cap(self) -> Optional[int]:
        """``max_events`` as the loaders and DIN take it: None for the whole window."""
        return self.max_events or None

    def __post_init__(self) -> None:
        if self.max_events < 0:
            raise ConfigError(f"model.max_events must be >= 0 (0: the whole window), got {self.max_events}")
        if self.max_events and self.arch != "din":
            raise ConfigError(f"model.max_events caps the attention of arch din; arch {self.arch!r} pools the "
                             f"whole window (set data.max_history instead)")
        if self.item_min_count < 0:
            raise ConfigError(f"model.item_min_count must be >= 0, got {self.item_min_count}")
        if self.item_min_count and "item_id" not in self.id_features:
            raise ConfigError("model.item_min_count admits target-item ids: model.id_features needs 'item_id'")
        if self.arch not in ARCHS:
            raise ConfigError(f"model.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.embedding_dim < 1:
            raise ConfigError(f"model.embedding_dim must be >= 1, got {self.embedding_dim}")
        bad = [f for f in self.id_features if f not in ID_FEATURES]
        if bad or not self.id_features:
            raise ConfigError(f"model.id_features must be a non-empty subset of {list(ID_FEATURES)}, got {self.id_features}")
        if self.arch == "din" and "item_id" not in self.id_features:
            raise ConfigError("model.arch din attends with the target item: model.id_features needs 'item_id'")
        if not self.dense_arch_layer_sizes or not self.over_arch_layer_sizes or self.over_arch_layer_sizes[-1] != 1:
            raise ConfigError("model.dense_arch_layer_sizes must be non-empty and model.over_arch_layer_sizes must end in 1")
        if self.arch == "dlrm" and self.dense_arch_layer_sizes[-1] != self.embedding_dim:
            raise ConfigError(
                f"model.dense_arch_layer_sizes must end in embedding_dim={self.embedding_dim} for dlrm "
                f"(got {self.dense_arch_layer_sizes})"
            )
        names = [h.name or h.column for h in self.history]
        if len(set(names)) != len(names):
            raise ConfigError(f"model.history: feature names must be unique, got {names} (set 'name')")


class RankingModel(nn.Module):
    """Training wrapper: batch in, ``(loss, logits)`` out (what DMP wraps and the trainer calls).

    ``loss`` is the weighted mean binary cross-entropy (padding rows have weight 0).

    Args:
        ranker (nn.Module): ``forward(dense_features [B, F], sparse_features KJT) -> logits [B]``.

    Call Args:
        batch (ExampleBatch): one rank's batch.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: scalar loss, ``[B]`` logits.

    Example::

        loss, logits = RankingModel(ranker)(batch)
    """

    def __init__(self, ranker: nn.Module) -> None:
        super().__init__()
        self.ranker = ranker

    def forward(self, batch: ExampleBatch) -> Tuple[torch.Tensor, torch.Tensor]:
        logits = self.ranker(batch.dense_features, batch.sparse_features)
        per = F.binary_cross_entropy_with_logits(logits, batch.labels, reduction="none")
        loss = (per * batch.weights).sum() / batch.weights.sum().clamp_min(1.0)
        return loss, logits.detach()


def admitted_item_rows(train_item_ids: npt.NDArray[np.int64], num_items: int, min_count: int) -> npt.NDArray[np.int64]:
    """``[num_items]`` int64 target-item table row of every item id under id admission: the item's
    own row when it has at least ``min_count`` training impressions, else the shared row
    ``num_items``.

    Args:
        train_item_ids (np.ndarray): ``[N]`` target item ids of the training impressions.
        num_items (int): item ids.
        min_count (int): admission threshold (>= 1).

    Example::

        admitted_item_rows(np.array([0, 0, 2]), 4, 2)   # [0, 4, 4, 4]
    """
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    ids = np.asarray(train_item_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= num_items):
        raise ValueError(f"training item ids outside [0, {num_items})")
    counts = np.bincount(ids, minlength=num_items)
    return np.where(counts >= min_count, np.arange(num_items, dtype=np.int64), np.int64(num_items))


def build_ranker(
    cfg: ModelConfig,
    num_users: int,
    num_items: int,
    features: List[HistoryFeature],
    keys: Mapping[str, List[str]],
) -> nn.Module:
    """Assembles the ranker of ``cfg`` from the id tables and the history features' modules.

    Args:
        cfg (ModelConfig): the model config.
        num_users (int): rows of the user table.
        num_items (int): item ids; the target-item table has one more row with
            ``cfg.item_min_count`` (the admission row, see :func:`admitted_item_rows`).
        features (List[HistoryFeature]): instantiated history features, in config order.
        keys (Mapping[str, List[str]]): ``{feature name: its history KJT keys}`` (from the loader
            inputs); a feature with ``target: true`` also reads :meth:`HistoryFeature.target_keys`
            of them (the loader's :class:`~torchrec_side.data.loader.TargetInput` keys).

    Returns:
        nn.Module: :class:`DLRMRanker` or :class:`DINRanker`.

    Example::

        ranker = build_ranker(ModelConfig(), 943, 1682, [], {})     # the control variant
    """
    item_rows = num_items + (1 if cfg.item_min_count else 0)  # + the shared row of the rare items
    ids = id_embedding_bag_collection(num_users, item_rows, cfg.embedding_dim, list(cfg.id_features))
    targets = {f.name: f.target_keys(list(keys[f.name])) for f in features}
    if cfg.arch == "dlrm":
        parts: Dict[str, nn.Module] = {"ids": ids}
        for f in features:  # with target: true the module also pools the target keys (more DLRM features)
            tk = targets[f.name]
            parts[f.name] = f.pooled(list(keys[f.name]), tk) if tk else f.pooled(list(keys[f.name]))
        return DLRMRanker(combine_pooled(parts), len(DENSE_FEATURES), list(cfg.dense_arch_layer_sizes),
                          list(cfg.over_arch_layer_sizes))
    sequences = {f.name: (f.sequence(list(keys[f.name]), targets[f.name]) if targets[f.name]
                          else f.sequence(list(keys[f.name]))) for f in features}
    return DINRanker(ids, sequences, len(DENSE_FEATURES), list(cfg.dense_arch_layer_sizes),
                     list(cfg.attention_layer_sizes), list(cfg.over_arch_layer_sizes),
                     targets={n: tk for n, tk in targets.items() if tk}, max_events=cfg.event_cap)


def count_parameters(model: nn.Module) -> Dict[str, Any]:
    """Learned parameters of an unsharded model: ``embedding`` (stock EBC/EC tables), ``dense``
    (everything else that trains), ``total``, and ``tables``: ``{table name: rows x dim}`` of every
    stock table (a hashed sparse-ID table counts its hashed rows); frozen buffers (SIDE tables, raw
    content vectors) are not counted.

    Example::

        count_parameters(ranker)        # {'embedding': 42000, 'dense': 5000, 'total': 47000,
                                        #  'tables': {'t_user_id': 15088, 't_item_id': 26912}}
    """
    from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection

    emb_ids = set()
    tables: Dict[str, int] = {}
    for path, m in model.named_modules():
        if isinstance(m, (EmbeddingBagCollection, EmbeddingCollection)):
            emb_ids.update(id(p) for p in m.parameters())
            named = m.embedding_bags if isinstance(m, EmbeddingBagCollection) else m.embeddings
            for name, t in named.items():
                key = name if name not in tables else f"{path}.{name}"
                tables[key] = int(sum(p.numel() for p in t.parameters() if p.requires_grad))
    emb = dense = 0
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in emb_ids:
            emb += p.numel()
        else:
            dense += p.numel()
    return {"embedding": int(emb), "dense": int(dense), "total": int(emb + dense), "tables": tables}
