"""VQFusionModel: heads, losses, M = 1 and M = 3, missing collections, gradients through the bottleneck."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torchrec_side.tokenizer import (
    BottleneckConfig,
    CollectionConfig,
    FusionModelConfig,
    ItemData,
    TargetConfig,
    VQFusionModel,
    resolve_model_config,
)

from .conftest import small_model_config


def build(items: ItemData, cfg: FusionModelConfig) -> VQFusionModel:
    torch.manual_seed(0)
    model = VQFusionModel(resolve_model_config(cfg, items.dims, items.num_classes))
    model.fit_normalizers(items.collections)
    with torch.no_grad():
        model.bottleneck.initialize(model.encode(items.collections))
    return model


@pytest.mark.parametrize("collections", [{"a": 0}, {"a": 0, "b": 0, "c": 0}])
def test_shapes_and_losses_m1_m3(synthetic_items: ItemData, collections: dict) -> None:
    model = build(synthetic_items, small_model_config(collections))
    batch = synthetic_items.subset(torch.arange(40))
    out = model(batch.collections, batch.targets)
    assert out.z.shape == (40, 8) and out.z_hat.shape == (40, 8) and out.codes.shape == (40, 8)
    assert set(out.recon) == set(collections)
    for name in collections:
        assert out.recon[name].shape == batch.collections[name].shape
    assert out.logits["multi"].shape == (40, 6) and out.logits["single"].shape == (40, 5)
    expected = {f"recon/{n}" for n in collections} | {"task/multi", "task/single", "commitment", "codebook", "total"}
    assert set(out.losses) == expected
    # Head losses are the textbook BCE / CE of the logits.
    torch.testing.assert_close(
        out.losses["task/multi"], F.binary_cross_entropy_with_logits(out.logits["multi"], batch.targets["multi"])
    )
    torch.testing.assert_close(out.losses["task/single"], F.cross_entropy(out.logits["single"], batch.targets["single"]))
    cfg = model.config
    total = sum(c.weight * out.losses[f"recon/{c.name}"] for c in cfg.collections)
    total = total + sum(t.weight * out.losses[f"task/{t.name}"] for t in cfg.targets)
    total = total + cfg.bottleneck.commitment * out.losses["commitment"] + out.losses["codebook"]
    torch.testing.assert_close(out.losses["total"], total)


def test_single_label_ignores_unknown_and_no_targets(synthetic_items: ItemData) -> None:
    model = build(synthetic_items, small_model_config({"a": 0}))
    batch = synthetic_items.subset(torch.arange(20))
    y = batch.targets["single"].clone()
    y[:10] = -1
    out = model(batch.collections, {"single": y})
    logits = out.logits["single"]
    torch.testing.assert_close(out.losses["task/single"], F.cross_entropy(logits[10:], y[10:]))
    assert "task/multi" not in out.losses
    out = model(batch.collections)  # no targets: reconstruction + commitment only
    assert not any(k.startswith("task/") for k in out.losses)


def test_wrong_label_shapes_raise(synthetic_items: ItemData) -> None:
    model = build(synthetic_items, small_model_config({"a": 0}))
    batch = synthetic_items.subset(torch.arange(8))
    with pytest.raises(ValueError, match="multi"):
        model(batch.collections, {"multi": torch.zeros(8, 3)})
    with pytest.raises(ValueError, match="single"):
        model(batch.collections, {"single": torch.zeros(8, 5)})
    with pytest.raises(KeyError, match="missing content collections"):
        model({}, {})
    with pytest.raises(ValueError, match=r"expected shape \[N, 32\]"):
        model({"a": torch.zeros(8, 7)})


def test_gradients_reach_encoder_through_bottleneck(synthetic_items: ItemData) -> None:
    # Only decoder / head losses (commitment off): any encoder gradient must cross the bottleneck.
    cfg = small_model_config(commitment=0.0)
    model = build(synthetic_items, cfg)
    batch = synthetic_items.subset(torch.arange(64))
    out = model(batch.collections, batch.targets)
    loss = sum(v for k, v in out.losses.items() if k.startswith(("recon/", "task/")))
    loss.backward()
    for name, p in list(model.encoder.named_parameters()) + list(model.projections.named_parameters()):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_missing_collection_rows_are_masked(synthetic_items: ItemData) -> None:
    model = build(synthetic_items, small_model_config({"a": 0, "c": 0}))
    batch = synthetic_items.subset(torch.arange(16))
    cols = {k: v.clone() for k, v in batch.collections.items()}
    cols["c"][:8] = 0.0
    out = model(cols)
    assert out.present["c"].tolist() == [False] * 8 + [True] * 8
    expect = (1 - F.cosine_similarity(out.recon["c"][8:], out.targets_in["c"][8:], dim=1)).mean()
    torch.testing.assert_close(out.losses["recon/c"], expect)
    cols["c"][:] = 0.0
    assert float(model(cols).losses["recon/c"].detach()) == 0.0


def test_resolve_model_config_errors() -> None:
    cfg = FusionModelConfig(collections=[CollectionConfig("x")], targets=[TargetConfig("t", "single_label")],
                            bottleneck=BottleneckConfig(num_levels=2))
    with pytest.raises(ValueError, match="dim unknown"):
        resolve_model_config(cfg, {}, {"t": 3})
    with pytest.raises(ValueError, match="num_classes unknown"):
        resolve_model_config(cfg, {"x": 4}, {})
    cfg.collections[0].dim = 5
    with pytest.raises(ValueError, match="config says dim=5, data has 4"):
        resolve_model_config(cfg, {"x": 4}, {"t": 3})
    with pytest.raises(ValueError, match="dim must be set"):
        VQFusionModel(FusionModelConfig(collections=[CollectionConfig("x")], bottleneck=BottleneckConfig(num_levels=2)))
