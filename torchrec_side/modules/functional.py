# pyre-strict
"""Compatibility names for the SIDE compute paths, which now live in :mod:`torchrec_side.modules.ops`.

New code should call :func:`torchrec_side.modules.ops.sid_pool` / :func:`~torchrec_side.modules.ops.sid_embed`
with a :class:`~torchrec_side.modules.ops.Compute` path; this module re-exports the pieces under their
old names.
"""

from __future__ import annotations

from torchrec_side.modules.ops.common import bag_ids
from torchrec_side.modules.ops.dispatch import POOLED_COMPUTE, UNPOOLED_COMPUTE, resolve_compute
from torchrec_side.modules.ops.reference import embed_reference, pool_reference
from torchrec_side.modules.ops.torch_ops import (
    embed_grouped_bag,
    embed_per_level,
    pool_grouped_bag,
    pool_grouped_hist,
    pool_per_level,
    pool_scalar,
)

__all__ = [
    "POOLED_COMPUTE",
    "UNPOOLED_COMPUTE",
    "resolve_compute",
    "bag_ids",
    "pool_reference",
    "pool_per_level",
    "pool_scalar",
    "pool_grouped_bag",
    "pool_grouped_hist",
    "embed_reference",
    "embed_per_level",
    "embed_grouped_bag",
]
