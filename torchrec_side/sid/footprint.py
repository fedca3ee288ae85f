# pyre-strict
"""Footprint accounting: bytes per history event as a model consumes it.

TorchRec feeds sparse features as int64 values of a KeyedJaggedTensor, so an
event costs 8 bytes per id the model reads:

* SIDE: one packed SID per event (8 bytes), whatever ``L`` is.
* traditional SID tokens: one int64 per token, e.g. prefix-ngram reads one
  token per level (``8 * L`` bytes); unigram ``L``, bigram ``L - 1`` and
  full-SID hash one token.
* sparse id: one item id (8 bytes).
* raw content embedding: ``D`` values of its dtype (fp16: ``2 * D`` bytes).

Alongside, the *minimal* packed size of a SID, ``ceil(sum_l log2 K_l / 8)``
bytes, says what a tighter container could reach.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch

from torchrec_side.sid.codec import SIDCodec, SIDValueError

__all__ = [
    "INT64_BYTES",
    "Footprint",
    "footprint_table",
    "raw_embedding_bytes_per_event",
    "side_bytes_per_event",
    "sparse_id_bytes_per_event",
    "token_bytes_per_event",
    "tokens_per_event",
]

INT64_BYTES: int = 8

# traditional SID schemes: int64 tokens per event are L, L - 1, L and 1
_TOKEN_METHODS: Tuple[str, ...] = ("unigram", "bigram", "prefix_ngram", "full_hash")


@dataclass(frozen=True)
class Footprint:
    """One row of a footprint table.

    Args:
        method (str): e.g. ``"side"``, ``"prefix_ngram"``, ``"sparse_id"``,
            ``"raw_fp16"``.
        bytes_per_event (int): bytes per history event as the model consumes it.
        ids_per_event (int): int64 values per event in the KJT (0 for dense input).
        min_bytes_per_event (Optional[int]): tightest packed size, where defined.
    """

    method: str
    bytes_per_event: int
    ids_per_event: int
    min_bytes_per_event: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict of the row."""
        return asdict(self)


def side_bytes_per_event(codec: Optional[SIDCodec] = None) -> int:
    """Bytes per event for SIDE: one packed int64 SID (8), for any codec."""
    return codec.bytes_per_event if codec is not None else INT64_BYTES


def sparse_id_bytes_per_event() -> int:
    """Bytes per event for a sparse item id: one int64 (8)."""
    return INT64_BYTES


def tokens_per_event(method: str, num_levels: int) -> int:
    """int64 tokens per event of a traditional SID scheme.

    Args:
        method (str): ``"unigram"`` (L), ``"bigram"`` (L - 1),
            ``"prefix_ngram"`` (L) or ``"full_hash"`` (1).
        num_levels (int): ``L``.

    Example::

        tokens_per_event("prefix_ngram", 3)   # 3
    """
    if num_levels < 1:
        raise SIDValueError(f"num_levels must be >= 1, got {num_levels}")
    if method == "unigram" or method == "prefix_ngram":
        return num_levels
    if method == "bigram":
        return max(1, num_levels - 1)
    if method == "full_hash":
        return 1
    raise SIDValueError(
        f"unknown traditional SID method {method!r}; expected one of "
        f"{list(_TOKEN_METHODS)}"
    )


def token_bytes_per_event(method: str, num_levels: int) -> int:
    """Bytes per event of a traditional SID scheme: 8 per int64 token.

    Example::

        token_bytes_per_event("prefix_ngram", 3)   # 24 (RQ 3 x 256)
    """
    return INT64_BYTES * tokens_per_event(method, num_levels)


def raw_embedding_bytes_per_event(
    dim: int, dtype: torch.dtype = torch.float16
) -> int:
    """Bytes per event of a raw content embedding: ``dim * itemsize`` (fp16: 2D).

    Example::

        raw_embedding_bytes_per_event(384)   # 768
    """
    if dim < 1:
        raise SIDValueError(f"embedding dim must be >= 1, got {dim}")
    return dim * torch.empty((), dtype=dtype).element_size()


def footprint_table(
    codec: SIDCodec,
    embedding_dim: Optional[int] = None,
    embedding_dtype: torch.dtype = torch.float16,
) -> List[Footprint]:
    """Footprint rows for SIDE, the traditional SID schemes, sparse id and raw content.

    Args:
        codec (SIDCodec): the SID layout (its ``L`` sets the token counts).
        embedding_dim (Optional[int]): content embedding width ``D``; adds a
            ``raw_<dtype>`` row when given.
        embedding_dtype (torch.dtype): dtype of the raw content row.

    Returns:
        List[Footprint]: one row per method.

    Example::

        rows = footprint_table(SIDCodec.byte_grouped([3] * 40), embedding_dim=384)
        {r.method: r.bytes_per_event for r in rows}
        # {'side': 8, 'unigram': 320, 'bigram': 312, 'prefix_ngram': 320,
        #  'full_hash': 8, 'sparse_id': 8, 'raw_float16': 768}
    """
    L = codec.num_levels
    rows = [
        Footprint("side", side_bytes_per_event(codec), 1, codec.min_bytes_per_event)
    ]
    for method in _TOKEN_METHODS:
        rows.append(
            Footprint(
                method,
                token_bytes_per_event(method, L),
                tokens_per_event(method, L),
            )
        )
    rows.append(Footprint("sparse_id", sparse_id_bytes_per_event(), 1))
    if embedding_dim is not None:
        name = str(embedding_dtype).replace("torch.", "")
        rows.append(
            Footprint(
                f"raw_{name}",
                raw_embedding_bytes_per_event(embedding_dim, embedding_dtype),
                0,
            )
        )
    return rows
