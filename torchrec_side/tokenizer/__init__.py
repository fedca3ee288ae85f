# pyre-strict
"""VQ fusion: a multi-task tokenizer that fuses content embeddings and categorical targets into one SID.

Pieces (docs/design.md section 4):

* :class:`VQFusionModel` — per-collection normalization and projection, encoder MLP, a
  differentiable residual bottleneck (:class:`ResidualBottleneck`: RQ with learned codebooks or
  Discrete-PCA), one decoder per collection and one head per categorical target.
* :func:`train_tokenizer` — mini-batch training with validation split, early stopping and a
  JSON-lines log of every loss term.
* :class:`Tokenizer` — the frozen artifact (atomic folder, checksummed, versioned):
  items -> codes -> packed SIDs; ``level_tables()`` and ``quantizer`` (a fitted DPCA) for SIDE.
* :func:`build_sid_table` / :func:`write_sid_table` / :func:`tokenizer_stats` — the SID table
  and its statistics.
* :func:`tokenize_main` — the ``torchrec-side tokenize`` command.

Example::

    from torchrec_side.tokenizer import (
        BottleneckConfig, CollectionConfig, FusionModelConfig, TargetConfig, TrainConfig,
        Tokenizer, load_ml100k_items, train_tokenizer,
    )

    items = load_ml100k_items()
    cfg = FusionModelConfig(
        collections=[CollectionConfig("minilm"), CollectionConfig("collaborative", normalize="standardize")],
        targets=[TargetConfig("genres", "multi_label"), TargetConfig("year_bucket", "single_label")],
        bottleneck=BottleneckConfig(kind="dpca", num_levels=40, codes=3),
    )
    result = train_tokenizer(cfg, TrainConfig(epochs=100), items)
    tok = Tokenizer(result.model)
    tok.save("runs/tok")
    sids = Tokenizer.load("runs/tok").tokenize(items).sids          # int64 [1682]
"""

from torchrec_side.tokenizer.artifact import FORMAT_VERSION, TokenizeOutput, Tokenizer, make_codec
from torchrec_side.tokenizer.bottleneck import BottleneckOutput, ResidualBottleneck
from torchrec_side.tokenizer.cli import run_tokenize, tokenize_main
from torchrec_side.tokenizer.config import (
    BottleneckConfig,
    CollectionConfig,
    DataConfig,
    FusionModelConfig,
    TargetConfig,
    TokenizeJobConfig,
    TrainConfig,
)
from torchrec_side.tokenizer.data import (
    ItemData,
    load_items_for,
    load_ml100k_items,
    make_synthetic_items,
    split_items,
)
from torchrec_side.tokenizer.model import FusionOutput, VQFusionModel, resolve_model_config
from torchrec_side.tokenizer.sid_table import (
    SIDTable,
    build_sid_table,
    load_sid_table,
    read_sid_table,
    tokenizer_stats,
    write_sid_table,
)
from torchrec_side.tokenizer.trainer import TrainResult, evaluate_losses, train_tokenizer

__all__ = [
    "FORMAT_VERSION",
    "BottleneckConfig",
    "BottleneckOutput",
    "CollectionConfig",
    "DataConfig",
    "FusionModelConfig",
    "FusionOutput",
    "ItemData",
    "ResidualBottleneck",
    "SIDTable",
    "TargetConfig",
    "TokenizeJobConfig",
    "TokenizeOutput",
    "Tokenizer",
    "TrainConfig",
    "TrainResult",
    "VQFusionModel",
    "build_sid_table",
    "evaluate_losses",
    "load_items_for",
    "load_ml100k_items",
    "load_sid_table",
    "make_codec",
    "make_synthetic_items",
    "read_sid_table",
    "resolve_model_config",
    "run_tokenize",
    "split_items",
    "tokenize_main",
    "tokenizer_stats",
    "train_tokenizer",
    "write_sid_table",
]
