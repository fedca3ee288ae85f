# pyre-strict
"""SIDE ops: one registered operator per operation, one reference, the fast paths beside it.

Importing this package registers the operator library (:mod:`.library`):
``torch.ops.torchrec_side.sid_pool`` and ``torch.ops.torchrec_side.sid_embed`` with their schemas,
fake (Meta) kernels, autograd for the per-event weights and default kernels; the C++ CPU kernels
are compiled on first CPU use (:mod:`.cpu_kernel`), the Triton CUDA kernels come with triton.

* :func:`sid_pool` / :func:`sid_embed` (:mod:`.dispatch`): what the ``SIDE*`` modules call, with a
  :class:`Compute` algorithm (``kernel`` is the registered operator; the device comes from the inputs).
* :mod:`.library`: the registered operators (schemas, fake, autograd, default kernels).
* :mod:`.reference`: the float64 decoder and reference pooling (the one decoder of the package).
* :mod:`.torch_ops`: pure-torch paths (``per_level``, ``scalar``, ``grouped_bag``, ``grouped_hist``).
* :mod:`.cpu_kernel`: builds and loads the C++ CPU kernels (``csrc/side_kernels.cpp``, ``at::parallel_for``).
* :mod:`.triton_ops`: the Triton CUDA kernels.
* :mod:`.fbgemm_ops`: FBGEMM's inference table-batched embedding over the byte-group tables.
* :mod:`.common`: the compute enum, byte indices, bag ids, offsets checks.

See docs/design.md, section 5.
"""

from torchrec_side.modules.ops import library  # noqa: F401  (registers the operators at import)
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
