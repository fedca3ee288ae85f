"""Shared fixtures of the tokenizer tests: small synthetic items and one trained tokenizer."""

from __future__ import annotations

from typing import Dict, Iterator, List

import pytest

from torchrec_side.tokenizer import (
    BottleneckConfig,
    CollectionConfig,
    FusionModelConfig,
    ItemData,
    TargetConfig,
    Tokenizer,
    TrainConfig,
    TrainResult,
    make_synthetic_items,
    train_tokenizer,
)

from factories import one_torch_thread


def small_model_config(
    collections: Dict[str, int] | None = None,
    targets: bool = True,
    kind: str = "dpca",
    radices: List[int] | None = None,
    **bottleneck: object,
) -> FusionModelConfig:
    """A tiny fused model for the synthetic items."""
    names = collections or {"a": 0, "b": 0, "c": 0}
    cols = [
        CollectionConfig(name=n, dim=d, proj_dim=16, decoder_hidden=[32], normalize="standardize" if n == "b" else "l2",
                         loss="mse" if n == "b" else "cosine")
        for n, d in names.items()
    ]
    tgts = [TargetConfig("multi", "multi_label"), TargetConfig("single", "single_label", hidden=[16])] if targets else []
    bcfg = BottleneckConfig(kind=kind, radices=list(radices or [3] * 8), **bottleneck)  # type: ignore[arg-type]
    return FusionModelConfig(collections=cols, targets=tgts, latent_dim=8, encoder_hidden=[32], bottleneck=bcfg)


def small_train_config(**kw: object) -> TrainConfig:
    base = dict(epochs=12, warmup_epochs=2, batch_size=64, lr=3e-3, val_fraction=0.2, patience=0, device="cpu",
                progress=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def synthetic_items() -> ItemData:
    return make_synthetic_items(num_items=480, num_clusters=12, seed=0)


@pytest.fixture(scope="session")
def trained(synthetic_items: ItemData) -> TrainResult:
    return train_tokenizer(small_model_config(), small_train_config(), synthetic_items)


@pytest.fixture(scope="session")
def tokenizer(trained: TrainResult) -> Tokenizer:
    return Tokenizer(trained.model)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The tokenizer's ops are tiny: one thread is fastest and immune to CPU oversubscription."""
    with one_torch_thread():
        yield
