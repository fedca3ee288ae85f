# pyre-strict
"""The plain reference of both SIDE ops: decode every event in float64, then sum into bags.

This is the one decoder of the package (``SIDTables.decode`` and the tests use it); every fast path
in this folder is checked against it (docs/design.md, section 5)::

    e(event) = offset + sum_l T_l[c_l]            out[b] = pool_{e in bag b} w_e * e(event)
"""

from __future__ import annotations

from typing import Optional

import torch

from torchrec_side.modules.ops.common import bag_ids, finish

__all__ = ["decode", "pool_reference", "embed_reference"]


def decode(codes: torch.Tensor, offset: torch.Tensor, stacked: torch.Tensor, level_offsets: torch.Tensor,
           dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``offset + sum_l T_l[c_l]`` for each row of ``codes``, accumulated in ``dtype``.

    Args:
        codes (torch.Tensor): integer ``[N, L]`` digits.
        offset (torch.Tensor): ``[D]`` decoder offset.
        stacked (torch.Tensor): ``[sum_l K_l, D]`` level tables stacked (without the offset).
        level_offsets (torch.Tensor): int64 ``[L]``: first row of level ``l`` in ``stacked``.
        dtype (torch.dtype): accumulation and output dtype (float64 for the reference).

    Returns:
        torch.Tensor: ``[N, D]`` in ``dtype``.

    Example::

        emb = decode(codes, tables.offset, tables.stacked(), tables.level_offsets())   # [N, D]
    """
    codes = codes.long()
    emb = offset.to(dtype).expand(codes.shape[0], -1).clone()
    table = stacked.to(dtype)
    for level in range(codes.shape[1]):
        emb += table[codes[:, level] + level_offsets[level]]
    return emb


def pool_reference(codes: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor],
                   offset: torch.Tensor, stacked: torch.Tensor, level_offsets: torch.Tensor,
                   mean: bool = False) -> torch.Tensor:
    """Reference pooled SIDE in float64, returned as float32 ``[B, D]``.

    Args:
        codes (torch.Tensor): int64 ``[N, L]`` digits (``codec.unpack(sids)``).
        offsets (torch.Tensor): ``[B + 1]`` checked bag offsets.
        weights (Optional[torch.Tensor]): ``[N]`` per-event weights or None.
        offset (torch.Tensor): ``[D]``.
        stacked (torch.Tensor): ``[sum_l K_l, D]``.
        level_offsets (torch.Tensor): int64 ``[L]``.
        mean (bool): divide each bag by its number of events.

    Example::

        ref = pool_reference(codec.unpack(sids), offsets, None, t.offset, t.stacked(), t.level_offsets())
    """
    emb = decode(codes, offset, stacked, level_offsets)
    if weights is not None:
        emb = emb * weights.double().unsqueeze(1)
    B = offsets.numel() - 1
    out = torch.zeros(B, emb.shape[1], dtype=torch.float64, device=emb.device)
    out = out.index_add(0, bag_ids(offsets.long(), codes.shape[0]), emb)
    return finish(out, offsets, mean).float()


def embed_reference(codes: torch.Tensor, offset: torch.Tensor, stacked: torch.Tensor,
                    level_offsets: torch.Tensor) -> torch.Tensor:
    """Reference per-event SIDE: :func:`decode` in float64, returned as float32 ``[N, D]``."""
    return decode(codes, offset, stacked, level_offsets).float()
