# pyre-strict
"""Several EBC-like modules behind one ``EmbeddingBagCollectionInterface``."""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping

import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollectionInterface
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

__all__ = ["MultiEmbeddingBagCollection"]


class MultiEmbeddingBagCollection(EmbeddingBagCollectionInterface):
    """Runs several pooled-embedding modules on the same KJT and concatenates their KeyedTensors.

    Use it where one ``EmbeddingBagCollection`` is expected (e.g. ``torchrec.models.dlrm.DLRM``'s
    ``embedding_bag_collection``) but the features are served by different modules: a stock EBC for
    ids, :class:`~torchrec_side.modules.SIDEmbeddingBagCollection` for the SID history,
    :class:`~torchrec_side.modules.TraditionalSIDEmbeddingBagCollection`, ... Each child sees the
    whole KJT and reads its own features. The children stay ordinary submodules, so DMP shards any
    stock EBC among them and replicates the rest (this module implements TorchRec's
    ``EmbeddingBagCollectionInterface`` but no sharder matches its type, so DMP looks inside it).

    Args:
        collections (Mapping[str, nn.Module]): name -> module with ``forward(kjt) -> KeyedTensor``
            and ``embedding_bag_configs()``; output keys must be distinct.

    Output: ``KeyedTensor`` with the children's keys in order, values ``[B, sum D]``.

    Example::

        sparse = MultiEmbeddingBagCollection({"ids": ebc, "history": side})
        dlrm = DLRM(embedding_bag_collection=sparse, dense_in_features=13,
                    dense_arch_layer_sizes=[32, 64], over_arch_layer_sizes=[32, 1])
    """

    def __init__(self, collections: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not collections:
            raise ValueError("MultiEmbeddingBagCollection needs at least one module")
        self.collections = nn.ModuleDict(dict(collections))
        keys: List[str] = []
        for name, m in self.collections.items():
            if not hasattr(m, "embedding_bag_configs"):
                raise TypeError(f"{name}: {type(m).__name__} has no embedding_bag_configs()")
            keys.extend(f for c in _bag_configs(m) for f in c.feature_names)
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"features served by more than one module: {dup}")

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        """
        Args:
            features (KeyedJaggedTensor): all features.

        Returns:
            KeyedTensor: concatenation of the children's outputs.
        """
        outs = [m(features) for m in self.collections.values()]
        return _concat(outs)

    def embedding_bag_configs(self) -> List[EmbeddingBagConfig]:
        """The children's ``embedding_bag_configs()``, in order (the output's features and widths)."""
        return [c for m in self.collections.values() for c in _bag_configs(m)]

    def is_weighted(self) -> bool:
        """True if any child reads the KJT's per-event weights."""
        return any(bool(getattr(m, "is_weighted", lambda: False)()) for m in self.collections.values())


def _bag_configs(m: nn.Module) -> List[EmbeddingBagConfig]:
    """``m.embedding_bag_configs()`` of an EBC-like child (``nn.Module`` declares no such method)."""
    configs: Callable[[], List[EmbeddingBagConfig]] = getattr(m, "embedding_bag_configs")
    return configs()


@torch.fx.wrap
def _concat(outs: List[KeyedTensor]) -> KeyedTensor:
    if len(outs) == 1:
        return outs[0]
    keys = [k for kt in outs for k in kt.keys()]
    lengths = [n for kt in outs for n in kt.length_per_key()]
    return KeyedTensor(keys=keys, length_per_key=lengths, values=torch.cat([kt.values() for kt in outs], dim=1), key_dim=1)
