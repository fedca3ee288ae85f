"""Metrics (AUC, probe) and data helpers (time split, item split, ItemData)."""

from __future__ import annotations

import pytest
import torch

from torchrec_side.tokenizer import ItemData, make_synthetic_items, split_items
from torchrec_side.tokenizer.metrics import binary_auc, fit_linear_probe, mean_cosine, multiclass_scores, multilabel_auc


def test_binary_auc_small_cases() -> None:
    assert binary_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)
    assert binary_auc(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0, 1, 1])) == pytest.approx(0.5)  # ties
    assert binary_auc(torch.tensor([0.2, 0.3]), torch.tensor([1, 1])) != binary_auc(torch.tensor([0.2]), torch.tensor([1]))


def test_auc_matches_sklearn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 20, (500,), generator=g).float()  # many ties
    y = (torch.rand(500, generator=g) < 0.3).long()
    assert binary_auc(s, y) == pytest.approx(sk.roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    logits = torch.randn(300, 4, generator=g)
    labels = torch.randint(0, 4, (300,), generator=g)
    ovr = sk.roc_auc_score(labels.numpy(), logits.softmax(1).numpy(), multi_class="ovr", average="macro")
    assert multiclass_scores(logits, labels)["auc_macro"] == pytest.approx(ovr, abs=1e-9)


def test_multilabel_and_probe() -> None:
    items = make_synthetic_items(num_items=400, num_clusters=6, seed=1)
    x, y = items.collections["a"], items.targets["multi"]
    probe = fit_linear_probe(x[:300], y[:300], multi_label=True, iters=50)
    res = multilabel_auc(probe(x[300:]).detach(), y[300:])
    assert res["auc_macro"] > 0.9 and res["auc_micro"] > 0.9
    probe = fit_linear_probe(x[:300], items.targets["single"][:300], multi_label=False, iters=50)
    assert multiclass_scores(probe(x[300:]).detach(), items.targets["single"][300:])["accuracy"] > 0.8
    assert mean_cosine(x, x) == pytest.approx(1.0)


def test_split_items_and_itemdata() -> None:
    tr, va = split_items(100, 0.15, seed=0)
    assert len(va) == 15 and len(tr) == 85 and not set(tr.tolist()) & set(va.tolist())
    assert torch.equal(split_items(100, 0.15, seed=0)[1], va) and not torch.equal(split_items(100, 0.15, seed=1)[1], va)
    items = make_synthetic_items(num_items=20)
    with pytest.raises(KeyError, match="unknown collections"):
        items.select(["zz"], [])
    with pytest.raises(ValueError, match="rows"):
        ItemData(item_ids=torch.arange(3), collections={"a": torch.zeros(4, 2)})
    sub = items.subset(torch.tensor([1, 3]))
    assert len(sub) == 2 and sub.num_classes == items.num_classes
