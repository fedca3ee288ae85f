# pyre-strict
"""SID-aware TorchRec modules.

* SIDE (parameter-free): :class:`SIDEmbeddingBagCollection` (pooled, a drop-in for an
  ``EmbeddingBagCollection``) and :class:`SIDEmbeddingCollection` (per-event, for attention),
  built from frozen quantizer tables (:class:`SIDTables`).
* Traditional SID embeddings (learned baselines): :class:`SIDTokenMapper` maps packed SIDs to
  unigram / bigram / prefix-ngram / full-hash token ids, and
  :class:`TraditionalSIDEmbeddingBagCollection` looks them up in a stock TorchRec
  ``EmbeddingBagCollection`` it owns (so DMP shards it); :func:`sparse_id_embedding_bag_collection`
  builds the sparse-ID baseline.
* :class:`MultiEmbeddingBagCollection` puts several EBC-like modules behind one EBC interface
  (e.g. a stock EBC for ids plus SIDE for the history, for ``torchrec.models.dlrm``).
* DMP plans, sharders and optimizers live in :mod:`torchrec_side.distributed`.
* :mod:`torchrec_side.modules.ops`: the SIDE ops the modules call (``sid_pool`` / ``sid_embed``), one
  reference and the fast paths: torch, the C++ op registered with ``torch.library``, FBGEMM's
  table-batched embedding, Triton (docs/design.md, section 5).
"""

from torchrec_side.modules.combined import MultiEmbeddingBagCollection
from torchrec_side.modules.side import (
    SIDEmbedding,
    SIDEmbeddingBag,
    SIDEmbeddingBagCollection,
    SIDEmbeddingBagConfig,
    SIDEmbeddingCollection,
    SIDEmbeddingConfig,
    SIDInputError,
)
from torchrec_side.modules.tables import SIDTables
from torchrec_side.modules.traditional import (
    SIDTokenConfig,
    SIDTokenMapper,
    TraditionalSIDEmbeddingBagCollection,
    sparse_id_embedding_bag_collection,
)

__all__ = [
    "MultiEmbeddingBagCollection",
    "SIDEmbedding",
    "SIDEmbeddingBag",
    "SIDEmbeddingBagCollection",
    "SIDEmbeddingBagConfig",
    "SIDEmbeddingCollection",
    "SIDEmbeddingConfig",
    "SIDInputError",
    "SIDTables",
    "SIDTokenConfig",
    "SIDTokenMapper",
    "TraditionalSIDEmbeddingBagCollection",
    "sparse_id_embedding_bag_collection",
]
