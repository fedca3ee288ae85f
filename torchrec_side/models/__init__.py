# pyre-strict
"""Ranking models: DLRM and a target-attention (DIN-style) sequence model.

* :class:`DLRMRanker`: ``torchrec.models.dlrm.DLRM`` whose sparse arch is any EBC-like module
  (``KJT -> KeyedTensor``): stock ``EmbeddingBagCollection`` tables for ``user_id`` /
  ``item_id``, plus one module per history feature, owned and concatenated by
  :func:`combine_pooled`.
* :class:`DINRanker`: target attention over per-event history embeddings from EC-like modules
  (``KJT -> Dict[str, JaggedTensor]``).
* :mod:`~torchrec_side.models.history`: history feature kinds (column + module), a registry the
  variants extend.
* :class:`ModelConfig`, :func:`build_ranker`, :class:`RankingModel`: config -> model -> training
  wrapper ``batch -> (loss, logits)``.
"""

from torchrec_side.models.builder import build_ranker, count_parameters, ModelConfig, RankingModel
from torchrec_side.models.din import DINRanker, sequence_feature_dims, TargetAttention
from torchrec_side.models.dlrm import combine_pooled, DLRMRanker, id_embedding_bag_collection, pooled_feature_dims
from torchrec_side.models.history import (
    history_feature_kinds,
    HistoryContext,
    HistoryFeature,
    HistoryFeatureConfig,
    make_history_feature,
    register_history_feature,
    SparseIdHistory,
)
from torchrec_side.models import sid_history  # noqa: F401  (registers side, prefix_ngram, raw_content)
from torchrec_side.models import zch_history  # noqa: F401  (registers sparse_id_zch)

__all__ = [
    "DINRanker",
    "DLRMRanker",
    "HistoryContext",
    "HistoryFeature",
    "HistoryFeatureConfig",
    "ModelConfig",
    "RankingModel",
    "SparseIdHistory",
    "TargetAttention",
    "build_ranker",
    "combine_pooled",
    "count_parameters",
    "history_feature_kinds",
    "id_embedding_bag_collection",
    "make_history_feature",
    "pooled_feature_dims",
    "register_history_feature",
    "sequence_feature_dims",
]
