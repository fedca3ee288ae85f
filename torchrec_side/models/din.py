# pyre-strict
"""A DIN-style sequence model: target attention over per-event history embeddings.

For each history feature, the per-event embeddings ``h_e [D]`` (a ``JaggedTensor`` from an
*EC-like* module: ``forward(KeyedJaggedTensor) -> Dict[str, JaggedTensor]``, e.g. a stock
``EmbeddingCollection`` over item ids or
:class:`~torchrec_side.modules.SIDEmbeddingCollection` over packed SIDs) are scored against the
target item's embedding ``t [D]`` by a small MLP on ``[h, t, h * t, h - t]`` (Zhou et al., *Deep
Interest Network*, KDD 2018), the scores are softmax-normalized over the user's events (an empty
history gives a zero vector) and the weighted sum is the feature's interest vector. The over MLP
reads ``[dense arch(dense), user, target, interest_1, ..., target content_1, ...]``.

**The target through the history's path** (``target: true``, docs/design.md section 7b). A history
feature may also embed the target item through its own module (the target's SIDE embedding, its
raw vector through the same projection, ...: one event per example). That embedding is *added* to
the target's item-id row to form the query of that feature's attention, ``t_f = id_row + c_f``
(the query stays ``D`` wide, so the activation unit is unchanged; the query then lives partly in
the same space as the events it is compared with, which is what lets a content feature score a
cold target whose id row is untrained), and ``c_f`` is also fed to the over MLP as a feature of
its own (as DLRM interacts it). Adding was chosen over concatenating because concatenation would
widen the query to ``2D`` and need a learned projection back to the events' width.

**The last K events** (``max_events``, config ``model.max_events``). Attention costs about ``K``
times a pooled lookup per example, so a DIN variant may attend over only the last ``K`` events of
each history (the store's window can be longer: every variant of a world shares one example store).
The attention reads every history feature's last ``K`` events itself (``TargetAttention(...,
last=K)``, a static-shape gather, so serving and export, which feed the store's window, see what
training saw); the trainer also has the loader cut the windows, so nothing beyond them is read or
embedded during training.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import torch
from torch import nn
from torchrec.modules.mlp import MLP
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor

from torchrec_side.models.dlrm import pooled_feature_dims

__all__ = ["TargetAttention", "DINRanker", "sequence_feature_dims"]


def sequence_feature_dims(module: nn.Module) -> Dict[str, int]:
    """``{feature: per-event dim}`` of an EC-like module, from its ``embedding_configs()``."""
    if not hasattr(module, "embedding_configs"):
        raise TypeError(
            f"{type(module).__name__} is not EC-like: it needs embedding_configs() and "
            f"forward(KeyedJaggedTensor) -> Dict[str, JaggedTensor]"
        )
    configs = getattr(module, "embedding_configs")()
    return {f: int(c.embedding_dim) for c in configs for f in c.feature_names}


class TargetAttention(nn.Module):
    """Target attention pooling of a jagged sequence (DIN's activation unit, softmax-normalized).

    Each event ``h`` is scored by an MLP on ``[h, t, h * t, h - t]``. The first layer is computed
    factored, which is the same function: ``W [h, t, h*t, h-t] = h (W_h + W_d + diag(t) W_p) +
    t (W_t - W_d)``, one ``[D, H]`` matrix per example and one ``[H]`` vector per example instead
    of a ``4D``-wide product per event (4x fewer multiply-adds, no ``[B, L, 4D]`` concatenation).

    Args:
        embedding_dim (int): ``D`` of the events and the target.
        layer_sizes (List[int]): hidden sizes of the scoring MLP (ReLU), followed by a linear
            layer to one score.

    Call Args:
        events (JaggedTensor): values ``[N, D]``, lengths ``[B]`` (oldest event first).
        target (torch.Tensor): ``[B, D]``.
        max_len (Optional[int]): pad to this length (default: the batch's longest history, at most
            ``last``); a fixed length (export) keeps the shapes static.
        last (Optional[int]): attend over each history's last ``last`` events only (None: all).

    Returns:
        torch.Tensor: ``[B, D]`` attention-weighted sums (zeros for empty histories).

    Example::

        att = TargetAttention(16, [32])
        interest = att(ec(kjt)["hist_item_id"], target_embedding)     # [B, 16]
        recent = att(ec(kjt)["hist_item_id"], target_embedding, last=50)
    """

    def __init__(self, embedding_dim: int, layer_sizes: List[int]) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        layers: List[nn.Module] = []
        if layer_sizes:
            layers.append(MLP(4 * embedding_dim, list(layer_sizes), bias=True, activation="relu"))
        layers.append(nn.Linear(layer_sizes[-1] if layer_sizes else 4 * embedding_dim, 1))
        self.score = nn.Sequential(*layers)

    def scores(self, padded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` scores of padded events ``[B, L, D]`` against ``target [B, D]`` (factored
        first layer, see the class docstring); equals ``score(cat([h, t, h*t, h-t]))``."""
        first = self.score[0]
        if not isinstance(first, MLP):  # no hidden layer: the final linear layer, factored the same way
            last: nn.Linear = getattr(self.score, str(len(self.score) - 1))
            w, bias = last.weight, last.bias  # [1, 4D], [1]
            wh, wt, wp, wd = w.split(self.embedding_dim, dim=1)
            m = (wh + wd) + target * wp  # [B, D]
            return torch.bmm(padded, m[:, :, None]).squeeze(-1) + (target @ (wt - wd).t() + bias)  # [B, L]
        mlp: nn.Sequential = getattr(first, "_mlp")
        lin: nn.Linear = getattr(mlp[0], "_linear")
        wh, wt, wp, wd = lin.weight.split(self.embedding_dim, dim=1)  # each [H, D]
        per_example = (wh + wd).t()[None] + target[:, :, None] * wp.t()[None]  # [B, D, H]
        x = torch.bmm(padded, per_example) + (target @ (wt - wd).t() + lin.bias)[:, None, :]  # [B, L, H]
        x = torch.relu(x)
        for layer in list(mlp)[1:]:
            x = layer(x)
        return self.score[-1](x).squeeze(-1)

    def forward(self, events: JaggedTensor, target: torch.Tensor, max_len: Optional[int] = None,
                last: Optional[int] = None) -> torch.Tensor:
        lengths = events.lengths()
        b, d = target.shape
        if max_len is None:
            length = int(lengths.max().item()) if lengths.numel() else 0
            length = length if last is None else min(length, last)
        else:
            length = max_len if last is None else min(max_len, last)
        if length == 0:
            return target.new_zeros(b, d)
        if last is None:
            padded = torch.ops.fbgemm.jagged_to_padded_dense(events.values(), [events.offsets()], [length], 0.0)
            keep = lengths
        else:
            keep = lengths.clamp(max=length)
            padded = _tail_padded(events.values(), events.offsets(), keep, length)  # [B, L, D]
        mask = torch.arange(length, device=target.device)[None, :] < keep[:, None]  # [B, L]
        scores = self.scores(padded, target).masked_fill(~mask, -1e9)
        weights = torch.softmax(scores, dim=1) * mask
        return torch.bmm(weights[:, None, :], padded).squeeze(1)


def _tail_padded(values: torch.Tensor, offsets: torch.Tensor, keep: torch.Tensor, length: int) -> torch.Tensor:
    """``[B, length, D]``: bag ``b``'s last ``keep[b]`` events (oldest first), zero-padded after;
    static shapes (a gather through a ``[B, length]`` index), so it exports."""
    j = torch.arange(length, device=values.device)[None, :]  # [1, L]
    idx = (offsets[1:] - keep)[:, None] + j  # [B, L]
    idx = torch.where(j < keep[:, None], idx, values.shape[0])  # padding -> the appended zero row
    ext = torch.cat([values, values.new_zeros(1, values.shape[1])])
    return ext[idx]


class DINRanker(nn.Module):
    """Target-attention ranking model over id features and per-event history embeddings.

    Args:
        ids (nn.Module): EBC-like module with pooled features ``user_id`` and ``item_id`` (the
            target), width ``D`` (e.g. :func:`~torchrec_side.models.dlrm.id_embedding_bag_collection`).
        sequences (Mapping[str, nn.Module]): EC-like modules, each producing per-event embeddings
            of width ``D`` for its history features (their keys in the KJT).
        dense_in_features (int): width of the dense input.
        dense_arch_layer_sizes (List[int]): dense MLP (ReLU).
        attention_layer_sizes (List[int]): hidden sizes of the attention scoring MLP.
        over_arch_layer_sizes (List[int]): over MLP, last size 1 (no activation on the output).
        max_len (Optional[int]): pad histories to this length (default: per batch).
        max_events (Optional[int]): attend over each history's last ``max_events`` events only
            (None: all; see the module docstring). Padding then stops at ``min(max_len, max_events)``.
        targets (Optional[Mapping[str, List[str]]]): per sequence module, which of its keys hold the
            target item through that module's path (one event per example); each is added to the
            target id row to form the query of the module's history features' attention and fed to
            the over MLP (see the module docstring). A module whose outputs are not keyed like its
            inputs (e.g. ``TraditionalSIDEmbeddingCollection``: token keys in, one feature out)
            maps them with its ``output_names(keys)``.

    Call Args:
        dense_features (torch.Tensor): ``[B, dense_in_features]``.
        sparse_features (KeyedJaggedTensor): ``user_id``, ``item_id`` and the history keys.

    Returns:
        torch.Tensor: ``[B]`` logits.

    Example::

        ec = EmbeddingCollection(tables=[EmbeddingConfig(name="t_hist", embedding_dim=16,
                                 num_embeddings=1682, feature_names=["hist_item_id"])])
        model = DINRanker(id_embedding_bag_collection(943, 1682, 16), {"hist": ec}, 2,
                          [32, 16], [32], [64, 32, 1])
        logits = model(dense, kjt)       # [B]
    """

    def __init__(
        self,
        ids: nn.Module,
        sequences: Mapping[str, nn.Module],
        dense_in_features: int,
        dense_arch_layer_sizes: List[int],
        attention_layer_sizes: List[int],
        over_arch_layer_sizes: List[int],
        max_len: Optional[int] = None,
        targets: Optional[Mapping[str, List[str]]] = None,
        max_events: Optional[int] = None,
    ) -> None:
        super().__init__()
        id_dims = pooled_feature_dims(ids)
        if "item_id" not in id_dims:
            raise ValueError(f"DINRanker needs the target feature 'item_id' among the ids, got {list(id_dims)}")
        d = id_dims["item_id"]
        self.ids = ids
        self.id_features: List[str] = list(id_dims)
        self.sequences = nn.ModuleDict(dict(sequences))
        self.sequence_features: List[str] = []
        self.target_features: List[str] = []
        self._sequence_keys: Dict[str, List[str]] = {}
        self._target_keys: Dict[str, List[str]] = {}
        targets = dict(targets or {})
        unknown = sorted(set(targets) - set(self.sequences))
        if unknown:
            raise ValueError(f"targets name sequence modules {unknown} that are not among {list(self.sequences)}")
        for name, m in self.sequences.items():
            dims = sequence_feature_dims(m)
            tk = list(targets.get(name, []))
            if any(k not in dims for k in tk) and hasattr(m, "output_names"):
                tk = list(getattr(m, "output_names")(tk))  # input keys -> the module's output features
            missing = [k for k in tk if k not in dims]
            if missing:
                raise ValueError(f"sequence module {name!r}: target keys {missing} are not among its features {list(dims)}")
            self._target_keys[name] = tk
            self._sequence_keys[name] = [f for f in dims if f not in tk]
            bad = {f: w for f, w in dims.items() if w != d}
            if bad:
                raise ValueError(f"sequence module {name!r}: per-event widths {bad} must equal the target's D={d}")
            self.sequence_features.extend(self._sequence_keys[name])
            self.target_features.extend(tk)
        served = self.sequence_features + self.target_features
        if len(set(served)) != len(served):
            raise ValueError(f"history features served twice: {served}")
        if over_arch_layer_sizes[-1] != 1:
            raise ValueError(f"over_arch_layer_sizes must end in 1, got {over_arch_layer_sizes}")
        self.embedding_dim = d
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events must be >= 1 or None, got {max_events}")
        self.max_len = max_len
        self.max_events = max_events
        self.dense_arch = MLP(dense_in_features, list(dense_arch_layer_sizes), bias=True, activation="relu")
        self.attention = nn.ModuleDict({f: TargetAttention(d, list(attention_layer_sizes)) for f in self.sequence_features})
        over_in = dense_arch_layer_sizes[-1] + sum(id_dims.values()) + d * len(served)
        layers: List[nn.Module] = []
        if len(over_arch_layer_sizes) > 1:
            layers.append(MLP(over_in, list(over_arch_layer_sizes[:-1]), bias=True, activation="relu"))
        layers.append(nn.Linear(over_arch_layer_sizes[-2] if len(over_arch_layer_sizes) > 1 else over_in, 1))
        self.over_arch = nn.Sequential(*layers)

    def forward(self, dense_features: torch.Tensor, sparse_features: KeyedJaggedTensor) -> torch.Tensor:
        pooled = self.ids(sparse_features).to_dict()
        target = pooled["item_id"]
        parts: List[torch.Tensor] = [self.dense_arch(dense_features)] + [pooled[f] for f in self.id_features]
        contents: List[torch.Tensor] = []
        for name, m in self.sequences.items():
            seq: Dict[str, JaggedTensor] = m(sparse_features)
            query = target
            for k in self._target_keys[name]:
                c = _first_event(seq[k])  # [B, D]: the target through this module's path
                query = query + c
                contents.append(c)
            for f in self._sequence_keys[name]:
                parts.append(self.attention[f](seq[f], query, self.max_len, self.max_events))
        return self.over_arch(torch.cat(parts + contents, dim=1)).squeeze(-1)


def _first_event(jt: JaggedTensor) -> torch.Tensor:
    """``[B, D]``: each bag's first event (the target's one event; zeros for an empty bag)."""
    return torch.ops.fbgemm.jagged_to_padded_dense(jt.values(), [jt.offsets()], [1], 0.0).squeeze(1)
