# pyre-strict
"""SID packing, validation and footprint accounting (docs/design.md section 5).

Example::

    from torchrec_side.sid import SIDCodec

    codec = SIDCodec.byte_grouped([3] * 40)      # 40 ternary digits, 8 bytes
    sids = codec.pack(codes)                     # int64 [N] from codes [N, 40]
    codes_again = codec.unpack(sids)             # int64 [N, 40]
    group_values = codec.group_bytes(sids)       # uint8 [N, 8]
"""

from torchrec_side.sid.codec import (
    BYTE_GROUPED,
    LAYOUTS,
    MIXED_RADIX,
    SIDCodec,
    SIDValueError,
    sid_bytes,
)
from torchrec_side.sid.footprint import (
    INT64_BYTES,
    Footprint,
    footprint_table,
    raw_embedding_bytes_per_event,
    side_bytes_per_event,
    sparse_id_bytes_per_event,
    token_bytes_per_event,
    tokens_per_event,
)

__all__ = [
    "BYTE_GROUPED",
    "Footprint",
    "INT64_BYTES",
    "LAYOUTS",
    "MIXED_RADIX",
    "SIDCodec",
    "SIDValueError",
    "sid_bytes",
    "footprint_table",
    "raw_embedding_bytes_per_event",
    "side_bytes_per_event",
    "sparse_id_bytes_per_event",
    "token_bytes_per_event",
    "tokens_per_event",
]
