"""The real MovieLens-100K path: item preparation without leakage, and a short fused training."""

from __future__ import annotations

import pytest
import torch

from torchrec_side.config import load_config
from torchrec_side.tokenizer import DataConfig, ItemData, TokenizeJobConfig, Tokenizer, load_items_for, load_ml100k_items, train_tokenizer

from .test_config import CONFIGS


@pytest.fixture(scope="module")
def ml_items() -> ItemData:
    return load_ml100k_items(DataConfig())


def test_ml100k_items_and_no_leakage(ml_items: ItemData) -> None:
    from torchrec_side.data import content, movielens
    from torchrec_side.data.protocol import time_split

    assert ml_items.dims == {"minilm": 384, "collaborative": 64}
    assert ml_items.targets["genres"].shape == (1682, 19) and ml_items.target_kinds["year_bucket"] == "single_label"
    assert ml_items.num_classes == {"genres": 19, "year_bucket": 7}
    r = movielens.load_movielens().ratings
    train = torch.from_numpy(time_split(r.timestamp, 0.8, 0.1).mask("train"))
    assert ml_items.info["cf_train_events"] == int(train.sum())
    assert ml_items.info["cf_last_train_timestamp"] < int(r.timestamp[~train].min())
    expected = content.collaborative_embeddings(r.user_id[train], r.item_id[train], 943, 1682, dim=64, seed=0)
    assert torch.equal(ml_items.collections["collaborative"], expected)
    # Items rated only after the training cut have no collaborative vector (missing row).
    only_late = set(r.item_id[~train].tolist()) - set(r.item_id[train].tolist())
    zero = (ml_items.collections["collaborative"].abs().sum(1) == 0).nonzero().flatten().tolist()
    assert set(zero) == only_late and ml_items.info["items_without_train_events"] == len(only_late)


def test_short_fused_training_on_ml100k(ml_items: ItemData) -> None:
    job = load_config(TokenizeJobConfig, CONFIGS / "tokenizer_fused_dpca.yaml",
                      ["train.epochs=2", "train.warmup_epochs=1", "train.progress=false", "train.device=cpu"])
    items = load_items_for(job.data, job.model)
    res = train_tokenizer(job.model, job.train, items)
    tok = Tokenizer(res.model)
    out = tok.tokenize(items)
    assert out.codes.shape == (1682, 40) and tok.codec.layout == "byte_grouped" and tok.bits_per_item > 63
    assert len(torch.unique(out.sids)) > 1500
