# pyre-strict
"""Pure-torch SIDE paths (every device, no compiler needed): per-level, scalar, grouped bag / histogram.

Float32 lookups that reduce bags of more than ``ACCUMULATE_BLOCK`` table rows are split into blocks
of about that many rows whose partial sums are added in float64 (:func:`~.common.sub_bags`): a 10^6-event bag then stays within
float32 rounding of the float64 reference instead of drifting by percents.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from torchrec_side.modules.ops.common import ACCUMULATE_BLOCK, BYTE_BINS, bag_ids, byte_indices, finish, sub_bags

__all__ = [
    "pool_per_level",
    "pool_scalar",
    "pool_grouped_bag",
    "pool_grouped_hist",
    "embed_per_level",
    "embed_grouped_bag",
]


def _blocked_embedding_bag(idx: torch.Tensor, table: torch.Tensor, offsets: torch.Tensor, rows_per_event: int,
                           psw: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.embedding_bag`` sum over bags of ``rows_per_event`` rows per event, blocked for accuracy."""
    B = offsets.numel() - 1
    # blocks of about ACCUMULATE_BLOCK rows (not events): float32 drift grows with rows summed
    split = None if torch.compiler.is_compiling() else sub_bags(offsets, max(1, ACCUMULATE_BLOCK // rows_per_event))
    if split is None:
        return F.embedding_bag(idx, table, (offsets * rows_per_event).to(idx.dtype), mode="sum",
                               per_sample_weights=psw, include_last_offset=True)
    sub, owner = split
    # offsets in the indices' dtype: mixed int32 / int64 makes embedding_bag convert (several x slower)
    part = F.embedding_bag(idx, table, (sub * rows_per_event).to(idx.dtype), mode="sum", per_sample_weights=psw,
                           include_last_offset=True)
    out = torch.zeros(B, table.shape[1], dtype=torch.float64, device=table.device)
    return out.index_add(0, owner, part.double()).to(table.dtype)


def pool_per_level(codes: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor],
                   stacked_with_offset: torch.Tensor, level_offsets: torch.Tensor, mean: bool = False) -> torch.Tensor:
    """Per-level lookups: one ``F.embedding_bag`` over the stacked tables, ``L`` rows per event.

    Args:
        codes (torch.Tensor): int64 ``[N, L]`` digits.
        offsets (torch.Tensor): int64 ``[B + 1]`` checked offsets.
        weights (Optional[torch.Tensor]): ``[N]`` or None.
        stacked_with_offset (torch.Tensor): ``[sum_l K_l, D]``, level 0's rows including the offset.
        level_offsets (torch.Tensor): int64 ``[L]``.
        mean (bool): divide each bag by its number of events.

    Returns:
        torch.Tensor: ``[B, D]``.
    """
    L = codes.shape[1]
    idx = (codes + level_offsets.unsqueeze(0)).reshape(-1)
    psw = None
    if weights is not None:
        psw = weights.to(stacked_with_offset.dtype).unsqueeze(1).expand(-1, L).reshape(-1)
    out = _blocked_embedding_bag(idx, stacked_with_offset, offsets.long(), L, psw)  # int64 idx and offsets
    return finish(out, offsets, mean)


def pool_scalar(codes: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor], values: torch.Tensor,
                dirs: torch.Tensor, offset: torch.Tensor, level_offsets: torch.Tensor, mean: bool = False) -> torch.Tensor:
    """Rank-1 levels: ``S[b, l] = sum_e w_e C_l[c_{l,e}]`` (float64), ``out = S @ dirs + W_b offset``.

    Args:
        codes (torch.Tensor): int64 ``[N, L]``.
        offsets (torch.Tensor): ``[B + 1]``.
        weights (Optional[torch.Tensor]): ``[N]`` or None.
        values (torch.Tensor): ``[sum_l K_l]`` scalar codewords, stacked by level.
        dirs (torch.Tensor): ``[L, D]`` level directions.
        offset (torch.Tensor): ``[D]``.
        level_offsets (torch.Tensor): int64 ``[L]``.
        mean (bool): divide each bag by its number of events.

    Returns:
        torch.Tensor: ``[B, D]`` in the tables' dtype.
    """
    N = codes.shape[0]
    B = offsets.numel() - 1
    vals = values[codes + level_offsets.unsqueeze(0)].double()  # [N, L]
    if weights is not None:
        vals = vals * weights.double().unsqueeze(1)
    ids = bag_ids(offsets.long(), N)
    S = torch.zeros(B, codes.shape[1], dtype=torch.float64, device=vals.device).index_add(0, ids, vals)
    if weights is None:
        wsum = (offsets[1:] - offsets[:-1]).double()
    else:
        wsum = torch.zeros(B, dtype=torch.float64, device=vals.device).index_add(0, ids, weights.double())
    out = torch.addmm(wsum.unsqueeze(1) * offset.double().unsqueeze(0), S, dirs.double())
    return finish(out.to(dirs.dtype), offsets, mean)


def pool_grouped_bag(sids: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor],
                     grouped: torch.Tensor, num_groups: int, mean: bool = False) -> torch.Tensor:
    """``F.embedding_bag`` over the ``[G * 256, D]`` group tables with int32 byte indices, ``[B, D]``."""
    G = num_groups
    idx = byte_indices(sids, G).reshape(-1)
    psw = None
    if weights is not None:
        psw = weights.to(grouped.dtype).unsqueeze(1).expand(-1, G).reshape(-1)
    off = offsets.to(torch.int32) if sids.numel() * G < 2**31 else offsets.long()
    if off.dtype == torch.int32:
        idx = idx.to(torch.int32)
    else:
        idx = idx.long()
    out = _blocked_embedding_bag(idx, grouped, off, G, psw)
    return finish(out, offsets, mean)


def pool_grouped_hist(sids: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor],
                      grouped: torch.Tensor, num_groups: int, mean: bool = False) -> torch.Tensor:
    """Per-bag histogram of the ``G * 256`` byte bins, then one matmul, ``[B, D]``.

    Unweighted counts are exact integers (``bincount``); weighted counts are accumulated in float64
    with ``index_add`` (differentiable in the weights).
    """
    G = num_groups
    N = sids.shape[0]
    B = offsets.numel() - 1
    bins = G * BYTE_BINS
    base = (bag_ids(offsets.long(), N) * bins).unsqueeze(1)
    idx = (byte_indices(sids, G, torch.int64) + base).reshape(-1)
    if weights is None:
        counts = torch.bincount(idx, minlength=B * bins).to(grouped.dtype).view(B, bins)
        out = counts @ grouped
    else:
        w = weights.double().unsqueeze(1).expand(-1, G).reshape(-1)
        counts = torch.zeros(B * bins, dtype=torch.float64, device=sids.device).index_add(0, idx, w)
        out = (counts.view(B, bins) @ grouped.double()).to(grouped.dtype)
    return finish(out, offsets, mean)


def embed_per_level(codes: torch.Tensor, stacked_with_offset: torch.Tensor, level_offsets: torch.Tensor) -> torch.Tensor:
    """Each event is a bag of its ``L`` level rows: one ``F.embedding_bag`` -> ``[N, D]``."""
    N, L = codes.shape
    idx = (codes + level_offsets.unsqueeze(0)).reshape(-1)
    offs = torch.arange(0, N * L + 1, L, device=codes.device)
    return F.embedding_bag(idx, stacked_with_offset, offs, mode="sum", include_last_offset=True)


def embed_grouped_bag(sids: torch.Tensor, grouped: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Each event is a bag of its ``G`` byte-group rows: one ``F.embedding_bag`` -> ``[N, D]``."""
    G = num_groups
    N = sids.shape[0]
    idx = byte_indices(sids, G, torch.int64).reshape(-1)
    offs = torch.arange(0, N * G + 1, G, dtype=torch.int64, device=sids.device)
    return F.embedding_bag(idx, grouped, offs, mode="sum", include_last_offset=True)
