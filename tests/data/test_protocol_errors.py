"""Bad input to the protocol is one of the package's errors (still a ValueError), and the protocol's
modules keep their old import path (torchrec_side.data.protocol)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchrec_side.config import ConfigError
from torchrec_side.data.events import ratings_source, SourceError
from torchrec_side.data.examples import ExamplesConfig
from torchrec_side.data.movielens import Ratings
from torchrec_side.data.split import time_split
from torchrec_side.errors import TorchRecSideError


@pytest.mark.parametrize("kw", [{"dataset": "nope"}, {"dataset": "adsworld"}, {"max_history": 0},
                                {"train_fraction": 0.95}, {"row_group_size": 0}, {"compression": "xz"}])
def test_bad_examples_config_is_a_config_error(kw) -> None:
    with pytest.raises(ConfigError) as e:
        ExamplesConfig(**kw)
    assert isinstance(e.value, (TorchRecSideError, ValueError))


def test_unsplittable_ratings_are_a_source_error() -> None:
    r = Ratings(user_id=torch.tensor([0, 1]), item_id=torch.tensor([0, 1]),
                rating=torch.tensor([5.0, 1.0]), timestamp=torch.tensor([1, 2]))
    with pytest.raises(SourceError, match="need at least 3 events"):
        ratings_source(r, 2, 2)
    same_time = Ratings(user_id=torch.zeros(10, dtype=torch.int64), item_id=torch.arange(10),
                        rating=torch.full((10,), 5.0), timestamp=torch.zeros(10, dtype=torch.int64))
    with pytest.raises(SourceError, match="empty split"):
        ratings_source(same_time, 1, 10)
    with pytest.raises(ValueError, match="empty split"):  # the function itself: a plain argument check
        time_split(np.zeros(10, dtype=np.int64))


def test_protocol_reexports_the_split_modules() -> None:
    from torchrec_side.data import events, examples, protocol, split

    for mod in (events, examples, split):
        for name in mod.__all__:
            assert getattr(protocol, name) is getattr(mod, name), name
