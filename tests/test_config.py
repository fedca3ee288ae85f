"""Config checks shared by every schema: 32-bit seeds, and size caps that stop a typo before it
allocates (second bad-input round, issue 17)."""

from __future__ import annotations

from typing import Callable, List

import pytest

from torchrec_side.config import ConfigError, load_config, MAX_SEED
from torchrec_side.data.adsworld_config import load_world_config
from torchrec_side.tokenizer.config import TokenizeJobConfig
from torchrec_side.train.config import load_train_config

Loader = Callable[[List[str]], object]

LOADERS = {
    "train": lambda ov: load_train_config("ml100k/dlrm_control", ov),
    "tokenize": lambda ov: load_config(TokenizeJobConfig, "ml100k/tokenizer_fused_dpca", ov),
    "world": lambda ov: load_world_config("tiny", ov),
}


@pytest.mark.parametrize("loader, key", [("train", "seed"), ("train", "data.synthetic_seed"),
                                         ("tokenize", "train.seed"), ("tokenize", "data.cf_seed"),
                                         ("tokenize", "data.synthetic_seed"), ("world", "seed")])
def test_seeds_are_32_bit(loader: str, key: str) -> None:
    load = LOADERS[loader]
    load([f"{key}={MAX_SEED}"])  # the largest is accepted
    for bad in (-1, MAX_SEED + 1, 10**20):
        with pytest.raises(ConfigError, match=rf"{key.split('.')[-1]}.*{bad}"):
            load([f"{key}={bad}"])


@pytest.mark.parametrize("loader, override", [("train", "data.synthetic_items=100000000000"),
                                              ("train", "data.synthetic_events=1000000000"),
                                              ("tokenize", "data.synthetic_items=100000000000")])
def test_synthetic_sizes_are_capped(loader: str, override: str) -> None:
    with pytest.raises(ConfigError, match="must be <="):
        LOADERS[loader]([override])


def test_a_malformed_yaml_file_is_one_line_naming_it(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(TokenizeJobConfig, str(bad))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
