# pyre-strict
"""DLRM over user / target-item ids and pooled history features.

The sparse arch is any *EBC-like* module: ``forward(KeyedJaggedTensor) -> KeyedTensor`` plus
``embedding_bag_configs()`` (what ``torchrec.models.dlrm.DLRM`` reads to size its arches). A stock
``EmbeddingBagCollection`` qualifies, so do
:class:`~torchrec_side.modules.SIDEmbeddingBagCollection`,
:class:`~torchrec_side.modules.TraditionalSIDEmbeddingBagCollection` and
:class:`~torchrec_side.modules.MultiEmbeddingBagCollection`, which owns several of them (the id
tables and one module per history feature) and concatenates their KeyedTensors. DMP shards every
stock EBC nested inside and replicates the rest.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import torch
from torch import nn
from torchrec.models.dlrm import DLRM
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.data.loader import ID_FEATURES

__all__ = ["DLRMRanker", "id_embedding_bag_collection", "pooled_feature_dims", "combine_pooled"]


def id_embedding_bag_collection(
    num_users: int,
    num_items: int,
    embedding_dim: int,
    features: List[str] = list(ID_FEATURES),
    device: Optional[torch.device] = None,
) -> EmbeddingBagCollection:
    """Stock EBC for the per-example id features: ``user_id`` (table ``t_user_id``, ``num_users``
    rows) and ``item_id`` (table ``t_item_id``, ``num_items`` rows), one value per example.

    Args:
        num_users (int): rows of the user table.
        num_items (int): rows of the target-item table.
        embedding_dim (int): ``D``.
        features (List[str]): which of ``user_id`` / ``item_id`` to embed.
        device (Optional[torch.device]): ``"meta"`` to defer allocation to DMP.

    Example::

        ebc = id_embedding_bag_collection(943, 1682, 16)
        ebc(kjt)["item_id"].shape         # [B, 16]
    """
    rows = {"user_id": num_users, "item_id": num_items}
    bad = [f for f in features if f not in rows]
    if bad or not features:
        raise ValueError(f"id features must be a non-empty subset of {list(rows)}, got {features}")
    return EmbeddingBagCollection(
        tables=[EmbeddingBagConfig(name=f"t_{f}", embedding_dim=embedding_dim, num_embeddings=rows[f],
                                   feature_names=[f], pooling=PoolingType.SUM) for f in features],
        device=device,
    )


def pooled_feature_dims(sparse: nn.Module) -> Dict[str, int]:
    """``{feature: output dim}`` of an EBC-like module, from its ``embedding_bag_configs()``."""
    if not hasattr(sparse, "embedding_bag_configs"):
        raise TypeError(
            f"{type(sparse).__name__} is not EBC-like: it needs embedding_bag_configs() and "
            f"forward(KeyedJaggedTensor) -> KeyedTensor"
        )
    configs = getattr(sparse, "embedding_bag_configs")()
    return {f: int(c.embedding_dim) for c in configs for f in c.feature_names}


def combine_pooled(parts: Mapping[str, nn.Module]) -> nn.Module:
    """One EBC-like module over several (a single part is returned as is).

    Uses :class:`torchrec_side.modules.MultiEmbeddingBagCollection`: it owns the parts (so DMP
    shards the stock EBCs among them) and concatenates their KeyedTensors in order.

    Example::

        sparse = combine_pooled({"ids": id_ebc, "hist_item_id": history_ebc})
    """
    if len(parts) == 1:
        return next(iter(parts.values()))
    from torchrec_side.modules import MultiEmbeddingBagCollection

    return MultiEmbeddingBagCollection(dict(parts))


class DLRMRanker(nn.Module):
    """``torchrec.models.dlrm.DLRM`` with an EBC-like sparse arch; returns one logit per example.

    DLRM interacts all pooled features pairwise (dot products), so every pooled feature and the
    dense arch's output must have the same width ``D``; a mismatch is reported with each
    feature's width.

    Args:
        sparse (nn.Module): EBC-like module (see the module docstring) producing ``F`` pooled
            features of width ``D``.
        dense_in_features (int): width of the dense input.
        dense_arch_layer_sizes (List[int]): dense MLP; the last size must be ``D``.
        over_arch_layer_sizes (List[int]): over MLP; the last size must be 1.
        dense_device (Optional[torch.device]): device of the dense arches.

    Call Args:
        dense_features (torch.Tensor): ``[B, dense_in_features]``.
        sparse_features (KeyedJaggedTensor): stride ``B``; holds (at least) the sparse arch's keys.

    Returns:
        torch.Tensor: ``[B]`` logits.

    Example::

        sparse = combine_pooled({"ids": id_embedding_bag_collection(943, 1682, 16),
                                 "hist": history_ebc})
        model = DLRMRanker(sparse, dense_in_features=2, dense_arch_layer_sizes=[32, 16],
                           over_arch_layer_sizes=[64, 32, 1])
        logits = model(dense, kjt)          # [B]
    """

    def __init__(
        self,
        sparse: nn.Module,
        dense_in_features: int,
        dense_arch_layer_sizes: List[int],
        over_arch_layer_sizes: List[int],
        dense_device: Optional[torch.device] = None,
    ) -> None:
        super().__init__()
        dims = pooled_feature_dims(sparse)
        if not dims:
            raise ValueError("DLRMRanker needs at least one pooled feature")
        widths = sorted(set(dims.values()))
        if len(widths) != 1:
            raise ValueError(f"DLRM needs one embedding width for all pooled features, got {dims}")
        if dense_arch_layer_sizes[-1] != widths[0]:
            raise ValueError(
                f"the dense arch's last layer ({dense_arch_layer_sizes[-1]}) must equal the pooled "
                f"embedding width D={widths[0]}"
            )
        if over_arch_layer_sizes[-1] != 1 or len(over_arch_layer_sizes) < 2:
            raise ValueError(f"over_arch_layer_sizes must have >= 2 layers ending in 1, got {over_arch_layer_sizes}")
        self.embedding_dim: int = widths[0]
        self.feature_names: List[str] = list(dims)
        self.model = DLRM(
            embedding_bag_collection=sparse,  # pyre-ignore[6]: EBC-like  # pyright: ignore[reportArgumentType]
            dense_in_features=dense_in_features,
            dense_arch_layer_sizes=list(dense_arch_layer_sizes),
            over_arch_layer_sizes=list(over_arch_layer_sizes),
            dense_device=dense_device,
        )

    def forward(self, dense_features: torch.Tensor, sparse_features: KeyedJaggedTensor) -> torch.Tensor:
        return self.model(dense_features, sparse_features).squeeze(-1)
