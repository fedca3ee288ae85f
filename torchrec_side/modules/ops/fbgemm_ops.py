# pyre-strict
"""SIDE on FBGEMM: the byte-group tables as one frozen table-batched embedding (inference TBE).

The ``G`` byte-group tables (256 rows each, ``[G * 256, D]`` stacked) become the ``G`` tables of one
``IntNBitTableBatchedEmbeddingBagsCodegen`` with fp32, fp16 or int8 (row-wise scale and bias)
weights. One SID event is one lookup in each of the ``G`` tables (index = byte ``g``), so a bag of
``n`` events is ``G`` bags of ``n`` lookups, pooled with per-sample weights if given; the ``G``
pooled outputs ``[B, G * D]`` are summed to ``[B, D]``. Runs on CPU (fbgemm-gpu-cpu) and on CUDA
(the CUDA fbgemm-gpu build). Bags longer than ``ACCUMULATE_BLOCK`` events are pooled in blocks whose
sums are added in float64, like the torch paths. docs/design.md, section 5.

FBGEMM's CPU TBE runs on one thread in the fbgemm-gpu-cpu wheel (docs/design.md, section 2):
measured against the registered CPU op in ``benchmarks/lookup.py``, it is not the CPU default.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Tuple

import torch

from torchrec_side.modules.ops.common import ACCUMULATE_BLOCK, BYTE_BINS, byte_indices, finish, sub_bags

__all__ = ["WEIGHT_TYPES", "fbgemm_status", "build_tbe", "quantize_int8_rowwise", "pool", "embed", "get_tbe"]

WEIGHT_TYPES: Tuple[str, ...] = ("fp32", "fp16", "int8")

_status: Dict[str, str] = {}
_lock = threading.Lock()


def _sparse_type(weight_type: str) -> Any:
    from fbgemm_gpu.split_embedding_configs import SparseType

    try:
        return {"fp32": SparseType.FP32, "fp16": SparseType.FP16, "int8": SparseType.INT8}[weight_type]
    except KeyError:
        raise ValueError(f"FBGEMM weight_type must be one of {WEIGHT_TYPES}, got {weight_type!r}") from None


def quantize_int8_rowwise(rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """FBGEMM's int8 row-wise format: ``q = round((x - bias) / scale)``, scale and bias in fp16.

    Args:
        rows (torch.Tensor): float ``[R, D]``.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: uint8 ``[R, D]`` codes and uint8 ``[R, 4]`` (fp16 scale,
        fp16 bias, as bytes).

    Example::

        q, scale_bias = quantize_int8_rowwise(torch.randn(256, 64))
    """
    lo = rows.min(dim=1).values
    hi = rows.max(dim=1).values
    scale = ((hi - lo) / 255.0).clamp(min=1e-8).half()
    bias = lo.half()
    q = ((rows - bias.float().unsqueeze(1)) / scale.float().unsqueeze(1)).round().clamp(0, 255).to(torch.uint8)
    sb = torch.stack([scale, bias], dim=1).contiguous().view(torch.uint8).view(rows.shape[0], 4)
    return q, sb


def build_tbe(grouped: torch.Tensor, num_groups: int, weight_type: str = "fp32",
              device: Optional[torch.device] = None) -> torch.nn.Module:
    """A frozen ``IntNBitTableBatchedEmbeddingBagsCodegen`` holding the ``G`` byte-group tables.

    Args:
        grouped (torch.Tensor): float32 ``[G * 256, D]`` byte-group tables (``D`` a multiple of 4).
        num_groups (int): ``G``.
        weight_type (str): ``"fp32"``, ``"fp16"`` or ``"int8"``.
        device (Optional[torch.device]): CPU (default) or a CUDA device.

    Returns:
        torch.nn.Module: the TBE; call it as ``tbe(indices, offsets, per_sample_weights)``.

    Example::

        tbe = build_tbe(tables.grouped(codec), codec.num_groups, "fp16")
    """
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import (
        BoundsCheckMode,
        EmbeddingLocation,
        PoolingMode,
    )
    from fbgemm_gpu.split_table_batched_embeddings_ops_inference import IntNBitTableBatchedEmbeddingBagsCodegen
    from fbgemm_gpu.split_embedding_configs import SparseType

    dev = torch.device("cpu") if device is None else torch.device(device)
    G, D = num_groups, int(grouped.shape[1])
    if D % 4 != 0:
        raise ValueError(f"FBGEMM TBE needs the embedding dim to be a multiple of 4, got D={D}")
    if grouped.shape[0] != G * BYTE_BINS:
        raise ValueError(f"grouped tables have {grouped.shape[0]} rows, expected G * 256 = {G * BYTE_BINS}")
    ty = _sparse_type(weight_type)
    loc = EmbeddingLocation.HOST if dev.type == "cpu" else EmbeddingLocation.DEVICE
    tbe = IntNBitTableBatchedEmbeddingBagsCodegen(
        [(f"side_group{g}", BYTE_BINS, D, ty, loc) for g in range(G)], device=dev,
        output_dtype=SparseType.FP32, pooling_mode=PoolingMode.SUM, bounds_check_mode=BoundsCheckMode.NONE,
    )
    tbe.initialize_weights()
    rows = grouped.detach().float().cpu().view(G, BYTE_BINS, D)
    for g, (w, sb) in enumerate(tbe.split_embedding_weights()):
        t = rows[g]
        if weight_type == "fp32":
            w.copy_(t.contiguous().view(torch.uint8).view(BYTE_BINS, -1).to(w.device))
        elif weight_type == "fp16":
            w.copy_(t.half().contiguous().view(torch.uint8).view(BYTE_BINS, -1).to(w.device))
        else:
            q, scale_bias = quantize_int8_rowwise(t)
            w.copy_(q.to(w.device))
            assert sb is not None
            sb.copy_(scale_bias.to(sb.device))
    tbe.eval()
    for p in tbe.parameters():
        p.requires_grad_(False)
    return tbe


def fbgemm_status(device: torch.device) -> str:
    """``"ok"`` if FBGEMM's inference TBE runs on ``device`` here, else why not (probed once)."""
    key = torch.device(device).type
    with _lock:
        if key not in _status:
            try:
                grouped = torch.randn(BYTE_BINS, 4)
                tbe = build_tbe(grouped, 1, "fp32", torch.device(device))
                idx = torch.tensor([1, 2], dtype=torch.int32, device=device)
                off = torch.tensor([0, 2], dtype=torch.int32, device=device)
                out = tbe(idx, off)
                ok = torch.allclose(out.cpu(), grouped[1] + grouped[2], atol=1e-5)
                _status[key] = "ok" if ok else "wrong result in the probe"
            except Exception as e:  # no fbgemm_gpu, or no kernels for this device
                _status[key] = f"unavailable: {type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
        return _status[key]


def get_tbe(cache: Dict[Any, Any], grouped: torch.Tensor, num_groups: int, weight_type: str) -> torch.nn.Module:
    """The TBE for these tables from ``cache`` (a dict the owning module clears when tables change)."""
    key = ("fbgemm", weight_type, str(grouped.device), grouped.data_ptr(), grouped._version)
    tbe = cache.get(key)
    if tbe is None:
        for k in [k for k in cache if isinstance(k, tuple) and k[:3] == key[:3]]:
            del cache[k]  # stale tables
        tbe = build_tbe(grouped, num_groups, weight_type, grouped.device)
        cache[key] = tbe
    return tbe


def _lookup(tbe: torch.nn.Module, idx_gn: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor],
            G: int) -> torch.Tensor:
    """Pools ``G`` tables over bags ``offsets``; ``idx_gn`` is ``[G, N]`` byte values. -> ``[B, D]``."""
    N = idx_gn.shape[1]
    B = offsets.numel() - 1
    dtype = torch.int32 if G * N < 2**31 else torch.int64
    base = (torch.arange(G, device=offsets.device, dtype=torch.int64) * N).unsqueeze(1)
    offs = torch.cat([(base + offsets[:-1].long().unsqueeze(0)).reshape(-1),
                      torch.tensor([G * N], device=offsets.device)]).to(dtype)
    psw = None if weights is None else weights.float().repeat(G)
    out = tbe(idx_gn.reshape(-1).to(dtype), offs, psw)  # [B, G * D]
    return out.view(B, G, out.shape[1] // G).sum(1)


def pool(sids: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor], tbe: torch.nn.Module,
         num_groups: int, mean: bool = False) -> torch.Tensor:
    """Pooled SIDE ``[B, D]`` through the FBGEMM TBE (see :func:`build_tbe`).

    Args:
        sids (torch.Tensor): int64 ``[N]`` byte-addressable packed SIDs (validated by the caller).
        offsets (torch.Tensor): ``[B + 1]`` checked offsets.
        weights (Optional[torch.Tensor]): ``[N]`` per-event weights or None (not differentiable).
        tbe (torch.nn.Module): from :func:`build_tbe`.
        num_groups (int): ``G``.
        mean (bool): divide each bag by its number of events.
    """
    G = num_groups
    idx = byte_indices(sids, G, torch.int32, table_major=True)  # [G, N]
    offsets = offsets.long()
    split = sub_bags(offsets, ACCUMULATE_BLOCK)
    if split is None:
        out = _lookup(tbe, idx, offsets, weights, G)
    else:
        sub, owner = split
        part = _lookup(tbe, idx, sub, weights, G)
        out = torch.zeros(offsets.numel() - 1, part.shape[1], dtype=torch.float64, device=part.device)
        out = out.index_add(0, owner, part.double()).float()
    return finish(out, offsets, mean)


def embed(sids: torch.Tensor, tbe: torch.nn.Module, num_groups: int) -> torch.Tensor:
    """Per-event SIDE ``[N, D]`` through the FBGEMM TBE: each event is a bag of one lookup per table."""
    N = sids.shape[0]
    idx = byte_indices(sids, num_groups, torch.int32, table_major=True)
    offsets = torch.arange(N + 1, device=sids.device)
    return _lookup(tbe, idx, offsets, None, num_groups)
