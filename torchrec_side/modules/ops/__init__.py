# pyre-strict
"""SIDE ops: one dispatching op per operation, one reference, the fast paths beside it.

* :func:`sid_pool` / :func:`sid_embed` (:mod:`.dispatch`): the public ops, ``compute`` a
  :class:`Compute` path; the ``SIDE*`` modules hold buffers and call these.
* :mod:`.reference`: the float64 decoder and reference pooling (the one decoder of the package).
* :mod:`.torch_ops`: pure-torch paths (``per_level``, ``scalar``, ``grouped_bag``, ``grouped_hist``).
* :mod:`.cpu_kernel`: the C++ kernels registered with ``torch.library`` (``csrc/side_kernels.cpp``).
* :mod:`.fbgemm_ops`: FBGEMM's inference table-batched embedding over the byte-group tables.
* :mod:`.triton_ops`: Triton kernels for CUDA.
* :mod:`.common`: the compute enum, byte indices, bag ids, offset checks.

See docs/design.md, section 5.
"""

from torchrec_side.modules.ops.common import BYTE_BINS, Compute, SIDOffsetsError, byte_indices, check_offsets
from torchrec_side.modules.ops.dispatch import (
    POOLED_COMPUTE,
    UNPOOLED_COMPUTE,
    SIDEOpTables,
    path_status,
    resolve_compute,
    sid_embed,
    sid_pool,
)

__all__ = [
    "BYTE_BINS",
    "Compute",
    "POOLED_COMPUTE",
    "SIDEOpTables",
    "SIDOffsetsError",
    "UNPOOLED_COMPUTE",
    "byte_indices",
    "check_offsets",
    "path_status",
    "resolve_compute",
    "sid_embed",
    "sid_pool",
]
