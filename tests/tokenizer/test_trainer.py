"""train_tokenizer: loss decreases, no codebook collapse, per-epoch JSON log, early stopping, seeds."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from torchrec_side.quantizers import codebook_stats
from torchrec_side.tokenizer import ItemData, TrainResult, make_synthetic_items, train_tokenizer

from .conftest import small_model_config, small_train_config


def test_loss_goes_down(trained: TrainResult) -> None:
    h = [r for r in trained.history if r["phase"] == "train"]
    assert h[-1]["train/total"] < 0.7 * h[0]["train/total"]
    assert h[-1]["val/total"] < h[0]["val/total"]
    for name in ("a", "b", "c"):
        assert h[-1][f"val/recon/{name}"] < h[0][f"val/recon/{name}"]
    warm = [r for r in trained.history if r["phase"] == "warmup"]
    assert len(warm) == 2 and warm[-1]["train/total"] < warm[0]["train/total"]


def test_codebooks_used_on_clustered_data(trained: TrainResult, synthetic_items: ItemData) -> None:
    codes = trained.model.tokenize(synthetic_items.collections)
    st = codebook_stats(codes, trained.model.radices)
    assert min(st.utilization) == 1.0  # every ternary code of every level is used
    assert min(st.perplexity) > 1.8  # far from a collapse onto one code (perplexity 1)
    assert st.distinct_sids > 100


def test_rq_bottleneck_no_collapse(synthetic_items: ItemData) -> None:
    res = train_tokenizer(small_model_config(kind="rq", radices=[16, 16], targets=False),
                          small_train_config(epochs=6), synthetic_items)
    st = codebook_stats(res.model.tokenize(synthetic_items.collections), [16, 16])
    assert min(st.utilization) >= 0.75 and min(st.perplexity) > 8


def test_jsonl_log_has_every_term(tmp_path: Path, synthetic_items: ItemData) -> None:
    log = tmp_path / "log.jsonl"
    seen = []
    res = train_tokenizer(small_model_config({"a": 0}), small_train_config(epochs=3, warmup_epochs=1),
                          synthetic_items, log_path=log, on_epoch=seen.append)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines == res.history == seen and len(lines) == 4
    rec = lines[-1]
    for split in ("train", "val"):
        for term in ("recon/a", "task/multi", "task/single", "commitment", "codebook", "total"):
            assert f"{split}/{term}" in rec
    for key in ("val/utilization", "val/perplexity", "train/restarted_codes", "best_epoch", "seconds"):
        assert key in rec


def test_early_stopping_and_restore_best(synthetic_items: ItemData) -> None:
    # A tiny learning rate that then has nothing to gain: patience 1 stops quickly.
    res = train_tokenizer(small_model_config({"a": 0}), small_train_config(epochs=40, warmup_epochs=0, lr=1e-7,
                                                                           patience=1, min_delta=1.0), synthetic_items)
    assert res.stopped_early and len(res.history) == 2 and res.best_epoch == 1


def test_seed_determinism_and_unseen_items(synthetic_items: ItemData) -> None:
    cfg, tcfg = small_model_config({"a": 0, "c": 0}), small_train_config(epochs=3, warmup_epochs=1)
    r1 = train_tokenizer(cfg, tcfg, synthetic_items)
    r2 = train_tokenizer(cfg, tcfg, synthetic_items)
    assert torch.equal(r1.val_index, r2.val_index)
    fresh = make_synthetic_items(num_items=50, num_clusters=12, seed=5)  # never seen
    assert torch.equal(r1.model.tokenize(fresh.collections), r2.model.tokenize(fresh.collections))
    # The held-out split does not overlap the training items.
    assert not set(r1.val_index.tolist()) & set(r1.train_index.tolist())
