# pyre-strict
"""SIDE compute paths: one reference and several fast implementations of the same two ops.

Pooled (``SIDEmbeddingBag``): for bags given by ``offsets [B + 1]`` over packed SIDs ``[N]``::

    out[b] = pool_{e in bag b} w_e * (offset + sum_l T_l[c_{l,e}])       (sum, or mean = sum / n_b)

Unpooled (``SIDEmbedding``): ``out[e] = offset + sum_l T_l[c_{l,e}]`` per event, ``[N, D]``.

Paths (all equal to :func:`pool_reference` up to float rounding; tests check this):

==============  =======================================================================================
``reference``   unpack digits, decode each event in float64, ``index_add`` into bags (tests only)
``per_level``   unpack digits, one ``F.embedding_bag`` over the stacked level tables (L rows per event)
``scalar``      rank-1 levels (DPCA ``m_l = 1``): sum codeword values per level, one ``[L, D]`` matmul
``grouped_bag`` byte-addressable codecs: ``F.embedding_bag`` over the ``[G * 256, D]`` group tables
                with int32 byte indices (G rows per event, no digit unpacking)
``grouped_hist`` byte-addressable codecs: per-bag ``bincount`` of the ``G * 256`` bins, one matmul
``kernel``      byte-addressable codecs on CPU: the compiled kernel (per-bag histogram in L1 for long
                bags, direct row sums for short ones, validation fused in, all cores)
==============  =======================================================================================

``auto`` picks, by measurement on a 2-core CPU (see ``benchmarks/lookup.py``): ``kernel`` on CPU
when the codec is byte-addressable and the kernel compiled, else ``grouped_bag``; ``per_level``
for codecs that are not byte-addressable (e.g. mixed radix with ternary digits). On CUDA:
``grouped_bag``, else ``per_level``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from torchrec_side.modules import _kernels
from torchrec_side.modules.tables import BYTE_BINS
from torchrec_side.sid.codec import SIDCodec, SIDValueError, sid_bytes

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
    "pool_kernel",
    "embed_reference",
    "embed_per_level",
    "embed_grouped_bag",
    "embed_kernel",
]

POOLED_COMPUTE: Tuple[str, ...] = (
    "auto", "reference", "per_level", "scalar", "grouped_bag", "grouped_hist", "kernel",
)
UNPOOLED_COMPUTE: Tuple[str, ...] = ("auto", "reference", "per_level", "grouped_bag", "kernel")


def resolve_compute(
    compute: str, device: torch.device, byte_addressable: bool, scalar: bool, pooled: bool = True
) -> str:
    """Concrete compute path for ``compute`` (``"auto"`` or a path name) on ``device``.

    Raises:
        ValueError: unknown path, or a path the tables/codec cannot use.
    """
    allowed = POOLED_COMPUTE if pooled else UNPOOLED_COMPUTE
    if compute not in allowed:
        raise ValueError(f"unknown SIDE compute path {compute!r}; expected one of {allowed}")
    if compute == "auto":
        if byte_addressable:
            if device.type == "cpu" and _kernels.kernels_available():
                return "kernel"
            return "grouped_bag"
        return "per_level"
    if compute in ("grouped_bag", "grouped_hist", "kernel") and not byte_addressable:
        raise ValueError(
            f"compute={compute!r} needs a byte-addressable codec (byte_grouped, or mixed_radix with "
            "all radices 256)"
        )
    if compute == "kernel":
        if device.type != "cpu":
            raise ValueError("compute='kernel' runs on CPU only; use 'grouped_bag' on this device")
        if not _kernels.kernels_available():
            raise ValueError(f"compute='kernel': the CPU kernel is {_kernels.kernel_status()}")
    if compute == "scalar" and not scalar:
        raise ValueError("compute='scalar' needs rank-1 levels (m_l = 1, e.g. ternary DPCA)")
    return compute


def bag_ids(offsets: torch.Tensor, num_events: int) -> torch.Tensor:
    """int64 ``[N]``: the bag of each event, from ``offsets [B + 1]``."""
    lengths = offsets[1:] - offsets[:-1]
    return torch.repeat_interleave(
        torch.arange(lengths.numel(), device=offsets.device), lengths, output_size=num_events
    )


def _finish(out: torch.Tensor, offsets: torch.Tensor, mean: bool) -> torch.Tensor:
    if mean:
        lengths = (offsets[1:] - offsets[:-1]).clamp(min=1).to(out.dtype)
        out = out / lengths.unsqueeze(1)
    return out


def _bytes(sids: torch.Tensor, num_groups: int) -> torch.Tensor:
    """uint8 ``[N, G]``: byte ``g`` of each int64 SID, unvalidated."""
    return sid_bytes(sids)[:, :num_groups]


# ----------------------------------------------------------------------------- pooled


def pool_reference(
    sids: torch.Tensor,
    offsets: torch.Tensor,
    weights: Optional[torch.Tensor],
    codec: SIDCodec,
    offset: torch.Tensor,
    stacked: torch.Tensor,
    level_offsets: torch.Tensor,
    mean: bool = False,
) -> torch.Tensor:
    """Plain reference: decode every event in float64, then sum into bags. Returns ``[B, D]`` float32.

    Args:
        sids: int64 ``[N]`` packed SIDs.
        offsets: ``[B + 1]`` bag offsets.
        weights: ``[N]`` per-event weights or None.
        codec: the SID codec (digits come from ``codec.unpack``).
        offset: ``[D]`` decoder offset.
        stacked: ``[sum_l K_l, D]`` level tables stacked (without offset).
        level_offsets: int64 ``[L]`` first row of each level in ``stacked``.
        mean: divide each bag by its number of events.
    """
    codes = codec.unpack(sids)
    emb = offset.double().expand(codes.shape[0], -1).clone()
    table = stacked.double()
    for level in range(codes.shape[1]):
        emb += table[codes[:, level] + level_offsets[level]]
    if weights is not None:
        emb = emb * weights.double().unsqueeze(1)
    B = offsets.numel() - 1
    out = torch.zeros(B, emb.shape[1], dtype=torch.float64, device=emb.device)
    out.index_add_(0, bag_ids(offsets.long(), codes.shape[0]), emb)
    return _finish(out, offsets, mean).float()


def pool_per_level(
    codes: torch.Tensor,
    offsets: torch.Tensor,
    weights: Optional[torch.Tensor],
    stacked_with_offset: torch.Tensor,
    level_offsets: torch.Tensor,
    mean: bool = False,
) -> torch.Tensor:
    """Per-level lookups: one ``F.embedding_bag`` over the stacked tables, ``L`` rows per event.

    Args:
        codes: int64 ``[N, L]`` digits.
        offsets: ``[B + 1]`` bag offsets.
        weights: ``[N]`` or None.
        stacked_with_offset: ``[sum_l K_l, D]``, level 0's rows including the decoder offset.
        level_offsets: int64 ``[L]``.
        mean: divide each bag by its number of events.
    """
    L = codes.shape[1]
    idx = (codes + level_offsets.unsqueeze(0)).reshape(-1)
    psw = None
    if weights is not None:
        psw = weights.to(stacked_with_offset.dtype).unsqueeze(1).expand(-1, L).reshape(-1)
    out = F.embedding_bag(
        idx, stacked_with_offset, offsets.long() * L, mode="sum", per_sample_weights=psw,
        include_last_offset=True,
    )
    return _finish(out, offsets, mean)


def pool_scalar(
    codes: torch.Tensor,
    offsets: torch.Tensor,
    weights: Optional[torch.Tensor],
    values: torch.Tensor,
    dirs: torch.Tensor,
    offset: torch.Tensor,
    level_offsets: torch.Tensor,
    mean: bool = False,
) -> torch.Tensor:
    """Scalar path for rank-1 levels: ``S[b, l] = sum_e w_e C_l[c_{l,e}]``, ``out = S @ dirs + W_b offset``.

    Args:
        codes: int64 ``[N, L]`` digits.
        offsets: ``[B + 1]``.
        weights: ``[N]`` or None.
        values: ``[sum_l K_l]`` scalar codewords, stacked by level.
        dirs: ``[L, D]`` level directions.
        offset: ``[D]``.
        level_offsets: int64 ``[L]``.
        mean: divide each bag by its number of events.
    """
    N = codes.shape[0]
    B = offsets.numel() - 1
    vals = values[codes + level_offsets.unsqueeze(0)]  # [N, L]
    if weights is not None:
        vals = vals * weights.to(vals.dtype).unsqueeze(1)
    ids = bag_ids(offsets.long(), N)
    S = torch.zeros(B, codes.shape[1], dtype=vals.dtype, device=vals.device).index_add_(0, ids, vals)
    if weights is None:
        wsum = (offsets[1:] - offsets[:-1]).to(vals.dtype)
    else:
        wsum = torch.zeros(B, dtype=vals.dtype, device=vals.device).index_add_(0, ids, weights.to(vals.dtype))
    out = torch.addmm(wsum.unsqueeze(1) * offset.unsqueeze(0), S, dirs)
    return _finish(out, offsets, mean)


def pool_grouped_bag(
    sids: torch.Tensor,
    offsets: torch.Tensor,
    weights: Optional[torch.Tensor],
    grouped: torch.Tensor,
    num_groups: int,
    mean: bool = False,
) -> torch.Tensor:
    """``F.embedding_bag`` over the ``[G * 256, D]`` group tables with int32 byte indices."""
    G = num_groups
    by = _bytes(sids, G)
    idx = (by.to(torch.int32) + torch.arange(0, G * BYTE_BINS, BYTE_BINS, dtype=torch.int32, device=sids.device)).reshape(-1)
    psw = None
    if weights is not None:
        psw = weights.to(grouped.dtype).unsqueeze(1).expand(-1, G).reshape(-1)
    out = F.embedding_bag(
        idx, grouped, (offsets * G).to(torch.int32), mode="sum", per_sample_weights=psw,
        include_last_offset=True,
    )
    return _finish(out, offsets, mean)


def pool_grouped_hist(
    sids: torch.Tensor,
    offsets: torch.Tensor,
    weights: Optional[torch.Tensor],
    grouped: torch.Tensor,
    num_groups: int,
    mean: bool = False,
) -> torch.Tensor:
    """Per-bag histogram of the ``G * 256`` byte bins (``bincount`` on int32), then one matmul."""
    G = num_groups
    N = sids.shape[0]
    B = offsets.numel() - 1
    bins = G * BYTE_BINS
    by = _bytes(sids, G)
    base = (bag_ids(offsets.long(), N).to(torch.int32) * bins).unsqueeze(1)
    idx = (by.to(torch.int32) + torch.arange(0, bins, BYTE_BINS, dtype=torch.int32, device=sids.device) + base).reshape(-1)
    w = None
    if weights is not None:
        w = weights.to(grouped.dtype).unsqueeze(1).expand(-1, G).reshape(-1)
    counts = torch.bincount(idx, weights=w, minlength=B * bins).to(grouped.dtype).view(B, bins)
    return _finish(counts @ grouped, offsets, mean)


def pool_kernel(
    sids: torch.Tensor,
    offsets: torch.Tensor,
    weights: Optional[torch.Tensor],
    grouped: torch.Tensor,
    group_max: torch.Tensor,
    codec: SIDCodec,
    validate: bool = True,
    mean: bool = False,
) -> torch.Tensor:
    """The compiled CPU kernel (validation fused in; errors come from ``codec.validate_sids``)."""
    out, bad = _kernels.pool_grouped(sids, offsets, weights, grouped, group_max, check=validate)
    if bad >= 0:
        _raise_bad(codec, sids, bad)
    return _finish(out, offsets, mean)


def _raise_bad(codec: SIDCodec, sids: torch.Tensor, index: int) -> None:
    codec.validate_sids(sids[index : index + 1])  # raises the codec's message for that SID
    raise SIDValueError(f"invalid SID {int(sids[index])} at index {index} for codec {codec}")


# ----------------------------------------------------------------------------- unpooled


def embed_reference(codes: torch.Tensor, offset: torch.Tensor, stacked: torch.Tensor, level_offsets: torch.Tensor) -> torch.Tensor:
    """Plain reference: ``offset + sum_l T_l[c_l]`` per event in float64 -> ``[N, D]`` float32."""
    emb = offset.double().expand(codes.shape[0], -1).clone()
    table = stacked.double()
    for level in range(codes.shape[1]):
        emb += table[codes[:, level] + level_offsets[level]]
    return emb.float()


def embed_per_level(codes: torch.Tensor, stacked_with_offset: torch.Tensor, level_offsets: torch.Tensor) -> torch.Tensor:
    """Each event is a bag of its ``L`` level rows: one ``F.embedding_bag`` -> ``[N, D]``."""
    N, L = codes.shape
    idx = (codes + level_offsets.unsqueeze(0)).reshape(-1)
    offs = torch.arange(0, N * L + 1, L, device=codes.device)
    return F.embedding_bag(idx, stacked_with_offset, offs, mode="sum", include_last_offset=True)


def embed_grouped_bag(sids: torch.Tensor, grouped: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Each event is a bag of its ``G`` byte-group rows: one ``F.embedding_bag`` (int32) -> ``[N, D]``."""
    G = num_groups
    N = sids.shape[0]
    by = _bytes(sids, G)
    idx = (by.to(torch.int32) + torch.arange(0, G * BYTE_BINS, BYTE_BINS, dtype=torch.int32, device=sids.device)).reshape(-1)
    offs = torch.arange(0, N * G + 1, G, dtype=torch.int32, device=sids.device)
    return F.embedding_bag(idx, grouped, offs, mode="sum", include_last_offset=True)


def embed_kernel(
    sids: torch.Tensor, grouped: torch.Tensor, group_max: torch.Tensor, codec: SIDCodec, validate: bool = True
) -> torch.Tensor:
    """The compiled CPU kernel for per-event embeddings -> ``[N, D]``."""
    out, bad = _kernels.embed_grouped(sids, grouped, group_max, check=validate)
    if bad >= 0:
        _raise_bad(codec, sids, bad)
    return out
