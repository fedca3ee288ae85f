# pyre-strict
"""Shared pieces of the SIDE ops: the compute enum, byte indices, bag ids and offsets checks.

Everything here exists once; the compute paths in this folder import it (docs/design.md, section 5).
"""

from __future__ import annotations

from enum import Enum
from typing import Optional, Tuple

import torch

from torchrec_side.errors import TorchRecSideError
from torchrec_side.sid.codec import sid_bytes

__all__ = [
    "BYTE_BINS",
    "Compute",
    "SIDOffsetsError",
    "bag_ids",
    "byte_indices",
    "check_offsets",
    "finish",
    "validate_offsets",
    "sub_bags",
]

BYTE_BINS: int = 256
# Float32 lookups that reduce more than this many events into one sum are split into blocks of
# this size, whose partial sums are added in float64 (see :func:`sub_bags`).
ACCUMULATE_BLOCK: int = 4096


class Compute(str, Enum):
    """SIDE compute algorithms (a ``str`` enum: ``Compute("kernel") is Compute.KERNEL``).

    A member names an algorithm only; the device comes from the inputs (the dispatcher of the
    registered ops picks the CPU, CUDA or Meta implementation).

    ==================  =================================================================================
    ``auto``            chosen per device and codec by measurement (:func:`~.dispatch.resolve_compute`)
    ``reference``       unpack digits, decode each event in float64, ``index_add`` (tests, checks)
    ``per_level``       one ``F.embedding_bag`` over the stacked level tables (``L`` rows per event)
    ``scalar``          rank-1 levels (DPCA ``m_l = 1``): codeword sums per level, one ``[L, D]`` matmul
    ``grouped_bag``     byte-addressable codecs: ``F.embedding_bag`` over the ``[G * 256, D]`` tables
    ``grouped_hist``    byte-addressable codecs: per-bag ``bincount`` of the ``G * 256`` bins, one matmul
    ``kernel``          byte-addressable: the registered ops ``torchrec_side::sid_pool`` / ``sid_embed``
                        (C++ on CPU, Triton on CUDA where triton is importable, pure torch otherwise)
    ``fbgemm``          byte-addressable: FBGEMM's inference TBE over ``G`` tables of 256 rows, fp32
    ``fbgemm_fp16``     the same with fp16 weights
    ``fbgemm_int8``     the same with int8 row-wise quantized weights
    ==================  =================================================================================
    """

    AUTO = "auto"
    REFERENCE = "reference"
    PER_LEVEL = "per_level"
    SCALAR = "scalar"
    GROUPED_BAG = "grouped_bag"
    GROUPED_HIST = "grouped_hist"
    KERNEL = "kernel"
    FBGEMM = "fbgemm"
    FBGEMM_FP16 = "fbgemm_fp16"
    FBGEMM_INT8 = "fbgemm_int8"

    def __str__(self) -> str:
        return self.value

    @property
    def byte_addressable_only(self) -> bool:
        """True for paths that read SID bytes directly (need a byte-addressable codec)."""
        return self not in (Compute.AUTO, Compute.REFERENCE, Compute.PER_LEVEL, Compute.SCALAR)

    @property
    def is_fbgemm(self) -> bool:
        return self in (Compute.FBGEMM, Compute.FBGEMM_FP16, Compute.FBGEMM_INT8)


class SIDOffsetsError(TorchRecSideError, ValueError):
    """Bag offsets that do not describe the values: not starting at 0, decreasing, or not ending at N."""


def _offsets_ok(off: torch.Tensor, num_values: int) -> torch.Tensor:
    ok = (off[0] == 0) & (off[-1] == num_values)
    if off.numel() > 1:
        ok = ok & (off[1:] >= off[:-1]).all()
    return ok


def _offsets_shape(offsets: torch.Tensor) -> None:
    if offsets.dim() != 1 or offsets.numel() < 1:
        raise SIDOffsetsError(f"offsets must be 1-D [B + 1], got shape {tuple(offsets.shape)}")
    if offsets.dtype.is_floating_point or offsets.dtype == torch.bool or offsets.dtype.is_complex:
        raise SIDOffsetsError(f"offsets must be an integer tensor, got {offsets.dtype}")


def check_offsets(offsets: torch.Tensor, num_values: int) -> None:
    """Checks that ``offsets [B + 1]`` start at 0, never decrease and end at ``num_values``.

    A public validation helper (eager; it reads the offsets on the host, so on CUDA it
    synchronizes). The SIDE ops do not call it on their hot path: the registered ops validate
    offsets inside their kernels, the pure-torch paths call :func:`validate_offsets`. Under
    ``torch.compile`` / ``torch.export`` the same check runs as one ``torch._assert_async``.

    Args:
        offsets (torch.Tensor): integer ``[B + 1]``.
        num_values (int): ``N``, the number of values the offsets index.

    Raises:
        SIDOffsetsError: naming the first bad entry.

    Example::

        check_offsets(torch.tensor([0, 3, 5]), 5)          # fine
        check_offsets(torch.tensor([0, 100000000]), 5)     # SIDOffsetsError
    """
    _offsets_shape(offsets)
    off = offsets.long()
    if torch.compiler.is_compiling():
        torch._assert_async(_offsets_ok(off, num_values), "SIDE: bad offsets (must start at 0, never decrease, end at N)")
        return
    if bool(_offsets_ok(off, num_values)):  # one fused check; the details below only on failure
        return
    first, last = int(off[0]), int(off[-1])
    if first != 0:
        raise SIDOffsetsError(f"offsets[0] = {first}; bag offsets must start at 0")
    if off.numel() > 1:
        dec = torch.nonzero(off[1:] < off[:-1])
        if dec.numel() > 0:
            i = int(dec[0, 0]) + 1
            raise SIDOffsetsError(
                f"offsets decrease at position {i} ({int(off[i - 1])} -> {int(off[i])}); a negative "
                "length (e.g. a KeyedJaggedTensor built from negative lengths) is not a bag"
            )
    if last != num_values:
        raise SIDOffsetsError(
            f"offsets[-1] = {last} but there are {num_values} values; the last offset must equal the "
            "number of values"
        )


def validate_offsets(offsets: torch.Tensor, num_values: int) -> None:
    """The offsets check of the pure-torch paths, without a device synchronization.

    CPU tensors in eager mode: :func:`check_offsets` (the values are in host memory, nothing to
    wait for; a :class:`SIDOffsetsError` names the problem). Other devices, and traced code: one
    ``torch._assert_async`` (a device-side check that fails the stream, not a host sync).

    Args:
        offsets (torch.Tensor): integer ``[B + 1]``.
        num_values (int): ``N``.

    Example::

        validate_offsets(kjt.offsets(), kjt.values().numel())
    """
    if offsets.device.type == "cpu" and not torch.compiler.is_compiling():
        check_offsets(offsets, num_values)
        return
    _offsets_shape(offsets)
    torch._assert_async(_offsets_ok(offsets.long(), num_values),
                        "SIDE: bad offsets (must start at 0, never decrease, end at the number of values)")


def bag_ids(offsets: torch.Tensor, num_events: int) -> torch.Tensor:
    """int64 ``[N]``: the bag of each event, from checked ``offsets [B + 1]``."""
    lengths = offsets[1:] - offsets[:-1]
    return torch.repeat_interleave(
        torch.arange(lengths.numel(), device=offsets.device), lengths, output_size=num_events
    )


def byte_indices(sids: torch.Tensor, num_groups: int, dtype: torch.dtype = torch.int32,
                 table_major: bool = False) -> torch.Tensor:
    """Row indices into the ``[G * 256, D]`` byte-group tables: ``g * 256 + byte_g(sid)``.

    Args:
        sids (torch.Tensor): int64 ``[N]`` byte-addressable packed SIDs (unvalidated).
        num_groups (int): ``G``.
        dtype (torch.dtype): index dtype (int32 is what the fast lookups want).
        table_major (bool): return ``[G, N]`` byte values *without* the ``g * 256`` shift (one row
            of indices per group table, FBGEMM's layout) instead of ``[N, G]`` shifted indices.

    Returns:
        torch.Tensor: ``[N, G]`` (or ``[G, N]`` when ``table_major``).

    Example::

        byte_indices(torch.tensor([0x0201]), 2)            # [[1, 258]]
    """
    by = sid_bytes(sids)[:, :num_groups]
    if table_major:
        return by.t().to(dtype)
    shift = torch.arange(0, num_groups * BYTE_BINS, BYTE_BINS, dtype=dtype, device=sids.device)
    return by.to(dtype) + shift


def finish(out: torch.Tensor, offsets: torch.Tensor, mean: bool) -> torch.Tensor:
    """Divides each bag by its number of events when ``mean`` (empty bags stay zero)."""
    if mean:
        lengths = (offsets[1:] - offsets[:-1]).clamp(min=1).to(out.dtype)
        out = out / lengths.unsqueeze(1)
    return out


def sub_bags(offsets: torch.Tensor, block: int = ACCUMULATE_BLOCK) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """Splits bags longer than ``block`` events into blocks, for accurate float32 lookups.

    A float32 sum over 10^6 events drifts by percents; summing each block of at most ``block``
    events in float32 and the blocks in float64 keeps the error at float32 rounding of the result.

    Args:
        offsets (torch.Tensor): int64 ``[B + 1]`` checked bag offsets.
        block (int): largest block.

    Returns:
        Optional[Tuple[torch.Tensor, torch.Tensor]]: None if no bag is longer than ``block``, else
        ``(sub_offsets [S + 1], owner [S])``: block boundaries and the bag each block belongs to.
    """
    lengths = offsets[1:] - offsets[:-1]
    if lengths.numel() == 0 or int(lengths.max()) <= block:
        return None
    nblk = ((lengths + block - 1) // block).clamp(min=1)  # empty bags keep one empty block
    owner = torch.repeat_interleave(torch.arange(lengths.numel(), device=offsets.device), nblk)
    first = torch.cumsum(nblk, 0) - nblk  # first block of each bag
    k = torch.arange(owner.numel(), device=offsets.device) - first[owner]
    starts = torch.minimum(offsets[:-1][owner] + k * block, offsets[1:][owner])
    sub = torch.cat([starts, offsets[-1:]])
    return sub, owner
