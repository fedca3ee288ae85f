"""torchrec-side: Semantic-ID features for TorchRec.

Data flows one way: content vectors (:mod:`torchrec_side.data`) -> quantizers
(:mod:`torchrec_side.quantizers`) or the VQ-fusion tokenizer (:mod:`torchrec_side.tokenizer`)
-> packed SIDs (:mod:`torchrec_side.sid`) -> SID-aware TorchRec modules
(:mod:`torchrec_side.modules`) -> models (:mod:`torchrec_side.models`) -> the DMP trainer
(:mod:`torchrec_side.train`).

The module classes are imported lazily so ``import torchrec_side`` stays cheap.
"""

from __future__ import annotations

from torchrec_side._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    name: ".modules"
    for name in (
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
    )
}
_LAZY.update({n: ".quantizers" for n in ("DPCA", "RQKMeans", "RQKMeansConfig", "Quantizer")})
_LAZY.update({n: ".sid" for n in ("SIDCodec", "SIDValueError")})
_LAZY.update({"Tokenizer": ".tokenizer"})

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
