"""Ranking models: DLRM over EBC-like sparse arches, target attention, history feature registry."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, EmbeddingCollection, EmbeddingConfig
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor, KeyedTensor

from torchrec_side.config import ConfigError
from torchrec_side.data.loader import ExampleBatch
from torchrec_side.models import (
    build_ranker,
    combine_pooled,
    count_parameters,
    DINRanker,
    DLRMRanker,
    history_feature_kinds,
    HistoryContext,
    HistoryFeature,
    HistoryFeatureConfig,
    id_embedding_bag_collection,
    make_history_feature,
    ModelConfig,
    RankingModel,
    TargetAttention,
)

U, I, D, B = 7, 11, 8, 5


def _kjt(hist_lengths: List[int], seed: int = 0, extra: Dict[str, List[int]] | None = None) -> KeyedJaggedTensor:
    g = torch.Generator().manual_seed(seed)
    b = len(hist_lengths)
    keys = ["user_id", "item_id", "hist_item_id"] + list(extra or {})
    lengths = [1] * b + [1] * b + hist_lengths + [x for v in (extra or {}).values() for x in v]
    n = sum(lengths)
    values = torch.randint(0, I, (n,), generator=g)
    values[:b] = torch.randint(0, U, (b,), generator=g)
    return KeyedJaggedTensor(keys=keys, values=values, lengths=torch.tensor(lengths), stride=b)


def _sparse_id(arch: str) -> HistoryFeature:
    return make_history_feature(HistoryFeatureConfig(), HistoryContext(U, I, D, arch))


class ConstantPooled(nn.Module):
    """A parameter-free KJT -> KeyedTensor module (stands in for a SIDE module): mean of a fixed
    per-item vector table held as a buffer, with EBC-style configs."""

    def __init__(self, feature: str) -> None:
        super().__init__()
        self.feature = feature
        self.register_buffer("table", torch.randn(I, D, generator=torch.Generator().manual_seed(1)))

    def forward(self, kjt: KeyedJaggedTensor) -> KeyedTensor:
        jt = kjt[self.feature]
        pooled = torch.zeros(jt.lengths().numel(), D).index_add_(
            0, torch.repeat_interleave(torch.arange(jt.lengths().numel()), jt.lengths()), self.table[jt.values()])
        return KeyedTensor(keys=[self.feature], length_per_key=[D], values=pooled, key_dim=1)

    def embedding_bag_configs(self) -> List[EmbeddingBagConfig]:
        return [EmbeddingBagConfig(name="frozen", embedding_dim=D, num_embeddings=I, feature_names=[self.feature])]


def test_dlrm_with_stock_and_custom_pooled_modules() -> None:
    torch.manual_seed(0)
    kjt = _kjt([3, 0, 2, 5, 1])
    ids = id_embedding_bag_collection(U, I, D)
    sparse = combine_pooled({"ids": ids, "hist": _sparse_id("dlrm").pooled(["hist_item_id"]),
                             "frozen": ConstantPooled("hist_item_id_copy")})
    model = DLRMRanker(sparse, 2, [16, D], [16, 1])
    kjt2 = _kjt([3, 0, 2, 5, 1], extra={"hist_item_id_copy": [1, 1, 0, 2, 1]})
    logits = model(torch.randn(B, 2), kjt2)
    assert logits.shape == (B,)
    logits.sum().backward()
    assert ids.embedding_bags["t_item_id"].weight.grad is not None
    assert model.feature_names == ["user_id", "item_id", "hist_item_id", "hist_item_id_copy"]
    # control: ids only
    assert DLRMRanker(id_embedding_bag_collection(U, I, D), 2, [16, D], [16, 1])(torch.randn(B, 2), kjt).shape == (B,)


def test_dlrm_rejects_mixed_widths_clearly() -> None:
    other = EmbeddingBagCollection(tables=[EmbeddingBagConfig(name="t_h", embedding_dim=D + 1, num_embeddings=I,
                                                              feature_names=["hist_item_id"])])
    with pytest.raises(ValueError, match="one embedding width.*hist_item_id"):
        DLRMRanker(combine_pooled({"ids": id_embedding_bag_collection(U, I, D), "h": other}), 2, [16, D], [16, 1])
    with pytest.raises(ValueError, match="dense arch's last layer"):
        DLRMRanker(id_embedding_bag_collection(U, I, D), 2, [16, D + 2], [16, 1])
    with pytest.raises(TypeError, match="not EBC-like"):
        DLRMRanker(nn.Linear(2, 2), 2, [16, D], [16, 1])


def _attention_reference(att: TargetAttention, events: JaggedTensor, target: torch.Tensor) -> torch.Tensor:
    out = []
    off = events.offsets()
    for b in range(target.shape[0]):
        h = events.values()[off[b]: off[b + 1]]
        if h.shape[0] == 0:
            out.append(torch.zeros(target.shape[1]))
            continue
        t = target[b].expand_as(h)
        s = att.score(torch.cat([h, t, h * t, h - t], dim=-1)).squeeze(-1)
        out.append((torch.softmax(s, 0)[:, None] * h).sum(0))
    return torch.stack(out)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=6), st.integers(0, 1000))
def test_target_attention_matches_per_user_reference(lengths: List[int], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    att = TargetAttention(D, [6])
    events = JaggedTensor(values=torch.randn(sum(lengths), D, generator=g), lengths=torch.tensor(lengths))
    target = torch.randn(len(lengths), D, generator=g)
    got = att(events, target)
    torch.testing.assert_close(got, _attention_reference(att, events, target), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(att(events, target, max_len=10), got, rtol=1e-5, atol=1e-6)  # padding-free


def test_din_ranker_with_embedding_collection() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="din", embedding_dim=D, dense_arch_layer_sizes=[16], history=[HistoryFeatureConfig()])
    ranker = build_ranker(cfg, U, I, [_sparse_id("din")], {"hist_item_id": ["hist_item_id"]})
    assert isinstance(ranker, DINRanker)
    kjt = _kjt([3, 0, 2, 5, 1])
    logits = ranker(torch.randn(B, 2), kjt)
    assert logits.shape == (B,)
    logits.sum().backward()
    # a user's score does not depend on the other users of the batch
    one = KeyedJaggedTensor(keys=kjt.keys(), values=torch.cat([kjt["user_id"].values()[:1], kjt["item_id"].values()[:1],
                                                               kjt["hist_item_id"].values()[:3]]),
                            lengths=torch.tensor([1, 1, 3]), stride=1)
    dense = torch.randn(B, 2)
    torch.testing.assert_close(ranker(dense[:1], one), ranker(dense, kjt)[:1], rtol=1e-5, atol=1e-6)
    ec = EmbeddingCollection(tables=[EmbeddingConfig(name="t", embedding_dim=D + 1, num_embeddings=I,
                                                     feature_names=["hist_item_id"])])
    with pytest.raises(ValueError, match="must equal the target"):
        DINRanker(id_embedding_bag_collection(U, I, D), {"h": ec}, 2, [16], [8], [8, 1])


def test_ranking_model_loss_ignores_padding() -> None:
    torch.manual_seed(0)
    model = RankingModel(build_ranker(ModelConfig(embedding_dim=D, dense_arch_layer_sizes=[16, D]), U, I, [], {}))
    kjt = _kjt([0] * B)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    full = ExampleBatch(torch.randn(B, 2), kjt, labels, torch.ones(B))
    loss_all, logits = model(full)
    w = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0])
    loss_pad, _ = model(ExampleBatch(full.dense_features, kjt, labels, w))
    expect = torch.nn.functional.binary_cross_entropy_with_logits(logits[:2], labels[:2])
    torch.testing.assert_close(loss_pad, expect)
    counts = count_parameters(model)
    assert counts["embedding"] == (U + I) * D and counts["total"] == counts["embedding"] + counts["dense"]


@dataclass
class _Opts:
    scale: float = 1.0


class ScaledHistory(HistoryFeature):
    """A plugged-in kind (by import path): frozen item vectors, scaled."""

    Options = _Opts

    def pooled(self, keys: List[str]) -> nn.Module:
        return ConstantPooled(keys[0])


def test_history_registry_errors_and_import_path_kinds() -> None:
    ctx = HistoryContext(U, I, D, "dlrm")
    assert "sparse_id" in history_feature_kinds()
    with pytest.raises(ConfigError, match="unknown history feature kind 'sidee'.*sparse_id"):
        make_history_feature(HistoryFeatureConfig(kind="sidee"), ctx)
    with pytest.raises(ConfigError, match=r"unknown config key 'pooling_type'.*(?i:did you mean:? 'pooling')"):
        make_history_feature(HistoryFeatureConfig(options={"pooling_type": "sum"}), ctx)
    with pytest.raises(ConfigError, match="pooling must be"):
        make_history_feature(HistoryFeatureConfig(options={"pooling": "max"}), ctx)
    f = make_history_feature(HistoryFeatureConfig(kind=f"{__name__}:ScaledHistory", options={"scale": 2.0}), ctx)
    assert isinstance(f, ScaledHistory) and f.options.scale == 2.0
    with pytest.raises(ConfigError, match="no per-event module"):
        f.sequence(["hist_item_id"])
    with pytest.raises(ConfigError, match="is not imported"):
        make_history_feature(HistoryFeatureConfig(kind="no_such_module:X"), ctx)


def test_a_config_never_imports_a_planted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17 (severe): a kind ``"module:Class"`` used to import the module named by the config
    before any check; with the working folder on ``sys.path`` (``python -m``, torchrun) a planted
    file ran. Now nothing is imported: the kind resolves only for modules already imported."""
    marker = tmp_path / "ran"
    (tmp_path / "planted_kind.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nclass X: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    ctx = HistoryContext(U, I, D, "dlrm")
    with pytest.raises(ConfigError, match="'planted_kind' is not imported.*never imports code"):
        make_history_feature(HistoryFeatureConfig(kind="planted_kind:X"), ctx)
    assert not marker.exists() and "planted_kind" not in sys.modules
    importlib.import_module("planted_kind")  # imported by the program: now it resolves (and is no HistoryFeature)

    with pytest.raises(ConfigError, match="not a HistoryFeature subclass"):
        make_history_feature(HistoryFeatureConfig(kind="planted_kind:X"), ctx)


def test_model_config_validation() -> None:
    with pytest.raises(ValueError, match="must end in embedding_dim"):
        ModelConfig(embedding_dim=8, dense_arch_layer_sizes=[16])
    with pytest.raises(ValueError, match="needs 'item_id'"):
        ModelConfig(arch="din", id_features=["user_id"])
    with pytest.raises(ValueError, match="unique"):
        ModelConfig(history=[HistoryFeatureConfig(), HistoryFeatureConfig()])
