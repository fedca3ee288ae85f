# pyre-strict
"""SID-aware TorchRec modules.

* SIDE (parameter-free): :class:`SIDEmbeddingBagCollection` (pooled; TorchRec's
  ``EmbeddingBagCollectionInterface``, a drop-in for an ``EmbeddingBagCollection``) and
  :class:`SIDEmbeddingCollection` (per-event, for attention; ``EmbeddingCollectionInterface``).
  Their configs are metadata only; the frozen quantizer tables (:class:`SIDTables`) are given to
  the collection (``sid_tables={table: tables}``) or loaded from a state dict (a collection built
  on the meta device is filled by ``to_empty`` + ``load_state_dict``).
* Traditional SID embeddings (learned baselines): :class:`SIDTokenMapper` maps packed SIDs to
  unigram / bigram / prefix-ngram / full-hash token ids, and
  :class:`TraditionalSIDEmbeddingBagCollection` looks them up in a stock TorchRec
  ``EmbeddingBagCollection`` it owns (so DMP shards it), and
  :class:`TraditionalSIDEmbeddingCollection` its per-event form over an owned stock
  ``EmbeddingCollection`` (for attention); :func:`sparse_id_embedding_bag_collection`
  builds the sparse-ID baseline.
* :class:`MultiEmbeddingBagCollection` puts several EBC-like modules behind one
  ``EmbeddingBagCollectionInterface``
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
    TraditionalSIDEmbeddingCollection,
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
    "TraditionalSIDEmbeddingCollection",
    "sparse_id_embedding_bag_collection",
]
