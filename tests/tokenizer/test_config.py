"""torchrec_side.config: YAML -> dataclass, key=value overrides, clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import pytest

from torchrec_side.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_overrides,
    save_config,
)
from torchrec_side.tokenizer.config import TokenizeJobConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ml100k"


@dataclass
class Item:
    name: str = "x"
    size: int = 1


@dataclass
class Optim:
    lr: float = 1e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class Job:
    name: str = "demo"
    steps: Optional[int] = None
    optim: Optim = field(default_factory=Optim)
    items: List[Item] = field(default_factory=lambda: [Item("a"), Item("b")])


def test_defaults_file_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "job.yaml"
    f.write_text("name: fromfile\noptim:\n  lr: 0.5\nitems:\n  - {name: q, size: 3}\n")
    cfg = load_config(Job, f, ["optim.lr=0.01", "steps=7", "optim.betas=[1,2]", "items.0.size=9"])
    assert isinstance(cfg, Job) and isinstance(cfg.optim, Optim) and isinstance(cfg.items[0], Item)
    assert cfg.name == "fromfile" and cfg.steps == 7 and cfg.optim.lr == 0.01
    assert cfg.optim.betas == [1.0, 2.0] and cfg.items == [Item("q", 9)]
    assert load_config(Job) == Job()


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["optim.lrr=1"], r"unknown config key 'optim.lrr'.*did you mean 'optim.lr'"),
        (["nme=x"], r"unknown config key 'nme'.*'name'"),
        (["optim.lr=abc"], r"invalid value for config key 'optim.lr'"),
        (["optim.lr=-1"], r"lr must be > 0"),
        (["justtext"], r"not of the form key=value"),
        (["name.sub=1"], r"'name' is not a section"),
        (["items.5.size=1"], r"no list element '5'"),
    ],
)
def test_override_errors(overrides: List[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(Job, overrides=overrides)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("optim:\n  lr: 0.1\n  bets: [1]\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.bets' \(file .*bad.yaml\).*'optim.betas'"):
        load_config(Job, f)
    f.write_text("items:\n  - {name: a, sise: 2}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'sise'.*size"):
        load_config(Job, f)
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Job, f)
    with pytest.raises(ConfigError, match="not found"):
        load_config(Job, tmp_path / "missing.yaml")


def test_roundtrip_yaml_and_dict(tmp_path: Path) -> None:
    cfg = load_config(Job, overrides=["steps=3", "items.1.size=4"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(Job, tmp_path / "c.yaml") == cfg
    assert config_from_dict(Job, config_to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown config key"):
        config_from_dict(Job, {"nope": 1})
    assert parse_overrides(["a.b=1", "c=x=y"]) == [("a.b", "1"), ("c", "x=y")]


@pytest.mark.parametrize("name", ["tokenizer_fused_dpca", "tokenizer_fused_rq", "tokenizer_single_minilm"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(TokenizeJobConfig, CONFIGS / f"{name}.yaml", ["train.epochs=3"])
    assert cfg.name == name.replace("tokenizer_", "") and cfg.train.epochs == 3
    kinds = {"tokenizer_fused_dpca": "dpca", "tokenizer_fused_rq": "rq", "tokenizer_single_minilm": "dpca"}
    assert cfg.model.bottleneck.kind == kinds[name]


def test_tokenizer_config_validation() -> None:
    with pytest.raises(ConfigError, match="bottleneck.kind"):
        load_config(TokenizeJobConfig, overrides=["model.bottleneck.kind=pq"])
    with pytest.raises(ConfigError, match="block width"):
        load_config(TokenizeJobConfig, overrides=["model.bottleneck.width=100", "model.latent_dim=8"])
    with pytest.raises(ConfigError, match="unique"):
        load_config(TokenizeJobConfig, overrides=["model.collections=[{name: a}, {name: a}]"])
    with pytest.raises(ConfigError, match="train.device"):
        load_config(TokenizeJobConfig, overrides=["train.device=tpu"])


def test_unpackable_level_count_fails_before_training() -> None:
    # 41 ternary digits: too many for the 8 byte groups and 3^41 > 2^63 for mixed radix
    with pytest.raises(ConfigError, match=r"41 levels .* do not pack into one int64"):
        load_config(TokenizeJobConfig, overrides=["model.bottleneck.num_levels=41"])
    with pytest.raises(ConfigError, match="codec='mixed_radix'.*40 levels"):
        load_config(TokenizeJobConfig, overrides=["model.bottleneck.num_levels=40", "codec=mixed_radix"])
    with pytest.raises(ConfigError, match="codec='byte_grouped'"):
        load_config(TokenizeJobConfig, overrides=["model.bottleneck.radices=[300]", "codec=byte_grouped"])
    assert load_config(TokenizeJobConfig, overrides=["model.bottleneck.num_levels=40"]).codec == "auto"
    assert load_config(TokenizeJobConfig, overrides=["model.bottleneck.num_levels=39", "codec=mixed_radix"])
