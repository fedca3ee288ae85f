# pyre-strict
"""SIDE Triton kernels (CUDA; on CPU under ``TRITON_INTERPRET=1`` for tests).

* ``_pool_kernel_src``: one program per (bag, block of ``D``). Bags with at least ``HIST_MIN`` events and
  no weights build per-group byte histograms (``tl.histogram`` over blocks of events, exact int32
  counts) and add ``count * row`` over the 256 rows of each group table; shorter or weighted bags
  sum the ``G`` rows of each event directly, in blocks of ``BLOCK_N`` events (float32 block sums,
  float32 accumulator across blocks).
* ``_embed_kernel_src``: one program per (block of events, block of ``D``): ``out[e] = sum_g row_g``.

Inputs are validated by the caller (offsets and SID bytes, in torch); per-event weights get their
gradient from the embed kernel, ``dL/dw_e = <dL/dout[bag(e)], e(event)>``. docs/design.md, section 5.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import torch

__all__ = ["triton_status", "pool", "embed", "HIST_MIN"]

HIST_MIN: int = 512

# triton is optional (present on CUDA machines, absent from the default CPU install) and imported on
# first use. ``TRITON_INTERPRET=1`` must be in the environment before anything imports triton
# (torch and fbgemm_gpu may), so CPU tests run the kernels in a fresh process with it set.
triton: Any = None
tl: Any = None
_IMPORT_ERROR: Optional[str] = None
_imported: bool = False


def _import_triton() -> Optional[str]:
    """Imports triton once; returns None, or why it is not importable."""
    global triton, tl, _IMPORT_ERROR, _imported
    if not _imported:
        _imported = True
        try:
            # triton is optional (not in the default install): unresolved where it is absent
            import triton as _triton  # pyright: ignore[reportMissingImports]
            import triton.language as _tl  # pyright: ignore[reportMissingImports]

            triton, tl = _triton, _tl
        except Exception as e:  # pragma: no cover - depends on the machine
            _IMPORT_ERROR = f"{type(e).__name__}: {e}"
    return _IMPORT_ERROR


def interpret_mode() -> bool:
    """True when ``TRITON_INTERPRET=1`` (kernels run on CPU tensors in the Triton interpreter)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_status(device: torch.device) -> str:
    """``"ok"`` if the Triton kernels can run on ``device``, else why not."""
    err = _import_triton()
    if err is not None:
        return f"unavailable: triton not importable ({err})"
    dev = torch.device(device)
    if dev.type == "cuda":
        return "ok" if torch.cuda.is_available() else "unavailable: no CUDA device"
    if dev.type == "cpu":
        return "ok (interpreter)" if interpret_mode() else "unavailable: CPU tensors need TRITON_INTERPRET=1"
    return f"unavailable: device {dev.type}"


def _pool_kernel_src(sids_ptr, offsets_ptr, weights_ptr, table_ptr, out_ptr, D,
                 G: tl.constexpr, HAS_W: tl.constexpr, HIST_MIN_N: tl.constexpr,  # pyright: ignore[reportInvalidTypeForm]  # triton reads tl.constexpr annotations; tl is imported lazily
                 BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):  # pyright: ignore[reportInvalidTypeForm]  # triton reads tl.constexpr annotations; tl is imported lazily
    b = tl.program_id(0)
    pd = tl.program_id(1)
    d = pd * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = d < D
    s = tl.load(offsets_ptr + b)
    e = tl.load(offsets_ptr + b + 1)
    n = e - s
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    if n >= HIST_MIN_N:  # the launcher passes a huge HIST_MIN_N for weighted bags
        bins = tl.arange(0, 256)
        nblocks = tl.cdiv(n, BLOCK_N)
        for g in tl.static_range(G):
            cnt = tl.zeros([256], dtype=tl.int32)
            for blk in range(0, nblocks):
                ev = s + blk * BLOCK_N + tl.arange(0, BLOCK_N)
                m = ev < e
                v = tl.load(sids_ptr + ev, mask=m, other=0)
                byte = ((v >> (8 * g)) & 0xFF).to(tl.int32)
                cnt += tl.histogram(byte, 256)
            # masked lanes counted as byte 0: remove them
            masked = nblocks * BLOCK_N - n
            cnt -= tl.where(bins == 0, masked, 0).to(tl.int32)
            rows = tl.load(table_ptr + (g * 256 + bins)[:, None].to(tl.int64) * D + d[None, :],
                           mask=dmask[None, :], other=0.0)
            acc += tl.sum(cnt.to(tl.float32)[:, None] * rows, axis=0)
    else:
        for start in range(s, e, BLOCK_N):
            ev = start + tl.arange(0, BLOCK_N)
            m = ev < e
            v = tl.load(sids_ptr + ev, mask=m, other=0)
            part = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
            for g in tl.static_range(G):
                byte = (v >> (8 * g)) & 0xFF
                row = (g * 256 + byte).to(tl.int64)
                part += tl.load(table_ptr + row[:, None] * D + d[None, :],
                                mask=m[:, None] & dmask[None, :], other=0.0)
            if HAS_W:
                w = tl.load(weights_ptr + ev, mask=m, other=0.0)
                part = part * w[:, None]
            acc += tl.sum(part, axis=0)
    tl.store(out_ptr + b.to(tl.int64) * D + d, acc, mask=dmask)

def _embed_kernel_src(sids_ptr, table_ptr, out_ptr, N, D,
                  G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):  # pyright: ignore[reportInvalidTypeForm]  # triton reads tl.constexpr annotations; tl is imported lazily
    pn = tl.program_id(0)
    pd = tl.program_id(1)
    ev = pn * BLOCK_N + tl.arange(0, BLOCK_N)
    d = pd * BLOCK_D + tl.arange(0, BLOCK_D)
    m = ev < N
    dmask = d < D
    v = tl.load(sids_ptr + ev, mask=m, other=0)
    acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for g in tl.static_range(G):
        row = (g * 256 + ((v >> (8 * g)) & 0xFF)).to(tl.int64)
        acc += tl.load(table_ptr + row[:, None] * D + d[None, :], mask=m[:, None] & dmask[None, :], other=0.0)
    tl.store(out_ptr + ev.to(tl.int64)[:, None] * D + d[None, :], acc, mask=m[:, None] & dmask[None, :])


_jitted: Dict[bool, Tuple[Any, Any]] = {}


def _kernels() -> Tuple[Any, Any]:
    """The jitted (or, under ``TRITON_INTERPRET=1``, interpreted) kernels, decorated on first use so
    the interpreter flag is read when the kernels run, not when this module is imported."""
    mode = interpret_mode()
    if mode not in _jitted:
        err = _import_triton()
        if err is not None:
            raise RuntimeError(f"SIDE Triton path: triton not importable ({err})")
        _jitted[mode] = (triton.jit(_pool_kernel_src), triton.jit(_embed_kernel_src))  # pyre-ignore[16]
    return _jitted[mode]


def _block_d(D: int) -> int:
    return min(128, triton.next_power_of_2(D))  # pyre-ignore[16]


def _pool_forward(sids: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor], table: torch.Tensor,
                  num_groups: int, hist_min: int) -> torch.Tensor:
    B = offsets.numel() - 1
    D = table.shape[1]
    out = torch.empty(B, D, dtype=torch.float32, device=table.device)
    if B == 0:
        return out
    kernels = _kernels()
    BLOCK_D = min(64, _block_d(D))  # the histogram branch holds [256, BLOCK_D] rows
    grid = (B, triton.cdiv(D, BLOCK_D))  # pyre-ignore[16]
    w = weights.float().contiguous() if weights is not None else sids  # dummy pointer when unweighted
    kernels[0][grid](sids.contiguous(), offsets.long().contiguous(), w, table.float().contiguous(), out, D,
                     G=num_groups, HAS_W=weights is not None,
                     HIST_MIN_N=hist_min if weights is None else 2**62, BLOCK_N=64, BLOCK_D=BLOCK_D,
                     num_warps=8)
    return out


def embed(sids: torch.Tensor, table: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Per-event SIDE ``[N, D]`` with the Triton kernel.

    Args:
        sids (torch.Tensor): int64 ``[N]`` validated byte-addressable SIDs.
        table (torch.Tensor): float32 ``[G * 256, D]`` byte-group tables.
        num_groups (int): ``G``.

    Example::

        emb = embed(sids.cuda(), grouped.cuda(), codec.num_groups)      # [N, D]
    """
    N = sids.numel()
    D = table.shape[1]
    out = torch.empty(N, D, dtype=torch.float32, device=table.device)
    if N == 0:
        return out
    kernels = _kernels()
    BLOCK_D = _block_d(D)
    BLOCK_N = 32
    grid = (triton.cdiv(N, BLOCK_N), triton.cdiv(D, BLOCK_D))  # pyre-ignore[16]
    kernels[1][grid](sids.contiguous(), table.float().contiguous(), out, N, D, G=num_groups,
                        BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D)
    return out


class _TritonPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, sids: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor],  # pyre-ignore[14]
                table: torch.Tensor, num_groups: int, hist_min: int) -> torch.Tensor:
        ctx.save_for_backward(sids, offsets, table)
        ctx.num_groups = num_groups
        return _pool_forward(sids, offsets, weights, table, num_groups, hist_min)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:  # pyre-ignore[14]
        sids, offsets, table = ctx.saved_tensors
        grad_w = None
        if ctx.needs_input_grad[2]:
            emb = embed(sids, table, ctx.num_groups)
            lengths = (offsets[1:] - offsets[:-1]).long()
            grad_w = (emb * torch.repeat_interleave(grad, lengths, dim=0, output_size=sids.shape[0])).sum(1)
        return None, None, grad_w, None, None, None


def pool(sids: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor], table: torch.Tensor,
         num_groups: int, hist_min: int = HIST_MIN) -> torch.Tensor:
    """Pooled SIDE sums ``[B, D]`` with the Triton kernel (histogram or direct sums per bag).

    Args:
        sids (torch.Tensor): int64 ``[N]`` validated byte-addressable SIDs.
        offsets (torch.Tensor): ``[B + 1]`` checked offsets.
        weights (Optional[torch.Tensor]): ``[N]`` per-event weights (differentiable) or None.
        table (torch.Tensor): float32 ``[G * 256, D]`` byte-group tables.
        num_groups (int): ``G``.
        hist_min (int): unweighted bags with at least this many events use the histogram method.

    Example::

        out = pool(sids.cuda(), offsets.cuda(), None, grouped.cuda(), codec.num_groups)   # [B, D]
    """
    status = triton_status(sids.device)
    if not status.startswith("ok"):
        raise RuntimeError(f"SIDE Triton path: {status}")
    return _TritonPool.apply(sids, offsets, weights, table, num_groups, hist_min)
