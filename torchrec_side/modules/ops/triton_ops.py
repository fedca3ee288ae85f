# pyre-strict
"""The CUDA kernels of ``torchrec_side::sid_pool`` / ``sid_embed``, in Triton.

Used by the ops' default kernel (:mod:`.library`) for CUDA tensors when triton is importable; the
ops are then defined with ``torch.library.triton_op`` and the kernels launched through
``torch.library.wrap_triton`` (so ``torch.compile`` can see the kernels on CUDA; in eager the
launch is direct). On CPU they run only under ``TRITON_INTERPRET=1`` (the parity check in
``tests/modules/side_triton_check.py`` calls :func:`pool` / :func:`embed` directly).

* ``_pool_kernel``: one program per (bag, block of ``D``). Unweighted bags with at least
  ``HIST_MIN`` events build per-group byte histograms (``tl.histogram`` over blocks of events,
  exact int32 counts) and add ``count * row`` over the 256 rows of each group table; shorter or
  weighted bags sum the ``G`` rows of each event directly, in blocks of ``BLOCK_N`` events.
* ``_embed_kernel``: one program per (block of events, block of ``D``): ``out[e] = sum_g row_g``.

Inputs are checked inside the kernels, with no host synchronization: a bag whose offsets are out
of order or outside ``[0, N]`` reads nothing, a byte above its group's limit (or a non-zero byte
above the last group) is noticed while pooling; either sets a bit of a one-element error tensor on
the device, and ``torch._assert_async`` on that tensor fails the stream with a message naming the
problem (a device-side assert: the CUDA context is unusable afterwards, like any device assert).
docs/design.md, section 5.
"""


import os
from typing import Any, Optional

import torch

__all__ = ["AVAILABLE", "HIST_MIN", "IMPORT_ERROR", "embed", "interpret_mode", "pool", "triton_status"]

HIST_MIN: int = 512
ERR_OFFSETS: int = 1
ERR_SID: int = 2

# triton is optional (present on CUDA machines, absent from the default CPU install).
# ``TRITON_INTERPRET=1`` must be in the environment before triton is imported.
triton: Any
tl: Any
IMPORT_ERROR: Optional[str] = None
try:
    import triton  # pyright: ignore[reportMissingImports]
    import triton.language as tl  # pyright: ignore[reportMissingImports]
except Exception as _e:  # pragma: no cover - depends on the machine
    triton, tl = None, None
    IMPORT_ERROR = f"{type(_e).__name__}: {_e}"

AVAILABLE: bool = triton is not None


def interpret_mode() -> bool:
    """True when ``TRITON_INTERPRET=1`` (kernels run on CPU tensors in the Triton interpreter)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_status(device: torch.device) -> str:
    """``"ok"`` if the Triton kernels can run on ``device``, else why not."""
    if not AVAILABLE:
        return f"unavailable: triton not importable ({IMPORT_ERROR})"
    dev = torch.device(device)
    if dev.type == "cuda":
        return "ok" if torch.cuda.is_available() else "unavailable: no CUDA device"
    if dev.type == "cpu":
        return "ok (interpreter)" if interpret_mode() else "unavailable: CPU tensors need TRITON_INTERPRET=1"
    return f"unavailable: device {dev.type}"


if AVAILABLE:

    @triton.jit
    def _pool_kernel(sids_ptr, offsets_ptr, weights_ptr, table_ptr, limits_ptr, out_ptr, err_ptr, N, B, D,  # noqa: ANN
                     G: tl.constexpr, HAS_W: tl.constexpr, CHECK: tl.constexpr,  # pyright: ignore[reportInvalidTypeForm]
                     HIST_MIN_N: tl.constexpr, BLOCK_N: tl.constexpr,  # pyright: ignore[reportInvalidTypeForm]
                     BLOCK_D: tl.constexpr):  # pyright: ignore[reportInvalidTypeForm]
        b = tl.program_id(0)
        pd = tl.program_id(1)
        d = pd * BLOCK_D + tl.arange(0, BLOCK_D)
        dmask = d < D
        s = tl.load(offsets_ptr + b)
        e = tl.load(offsets_ptr + b + 1)
        bad_off = (s < 0) | (e < s) | (e > N) | ((b == 0) & (s != 0)) | ((b == B - 1) & (e != N))
        e = tl.where(bad_off, s, e)  # a bag with bad offsets reads nothing
        n = e - s
        acc = tl.zeros([BLOCK_D], dtype=tl.float32)
        bins = tl.arange(0, 256)
        bad_ev = tl.zeros([BLOCK_N], dtype=tl.int32)
        bad_bin = tl.zeros([256], dtype=tl.int32)
        if n >= HIST_MIN_N:  # the launcher passes a huge HIST_MIN_N for weighted bags
            nblocks = tl.cdiv(n, BLOCK_N)
            for g in tl.static_range(G):
                cnt = tl.zeros([256], dtype=tl.int32)
                for blk in range(0, nblocks):
                    ev = s + blk * BLOCK_N + tl.arange(0, BLOCK_N)
                    m = ev < e
                    v = tl.load(sids_ptr + ev, mask=m, other=0)
                    byte = ((v >> (8 * g)) & 0xFF).to(tl.int32)
                    cnt += tl.histogram(byte, 256)
                    if CHECK and g == 0 and G < 8:
                        bad_ev = bad_ev | (m & ((v >> (8 * G)) != 0)).to(tl.int32)
                # masked lanes were counted as byte 0: remove them
                masked = nblocks * BLOCK_N - n
                cnt -= tl.where(bins == 0, masked, 0).to(tl.int32)
                if CHECK:
                    lim = tl.load(limits_ptr + g).to(tl.int32)
                    bad_bin = bad_bin | tl.where(bins > lim, cnt, 0)
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
                    if CHECK:
                        lim = tl.load(limits_ptr + g).to(tl.int64)
                        bad_ev = bad_ev | (m & (byte > lim)).to(tl.int32)
                    row = (g * 256 + byte).to(tl.int64)
                    part += tl.load(table_ptr + row[:, None] * D + d[None, :],
                                    mask=m[:, None] & dmask[None, :], other=0.0)
                if CHECK and G < 8:
                    bad_ev = bad_ev | (m & ((v >> (8 * G)) != 0)).to(tl.int32)
                if HAS_W:
                    w = tl.load(weights_ptr + ev, mask=m, other=0.0)
                    part = part * w[:, None]
                acc += tl.sum(part, axis=0)
        code = tl.where(bad_off, 1, 0) | tl.where((tl.max(bad_ev, axis=0) > 0) | (tl.max(bad_bin, axis=0) > 0), 2, 0)
        tl.atomic_or(err_ptr, code.to(tl.int32), mask=code != 0)
        tl.store(out_ptr + b.to(tl.int64) * D + d, acc, mask=dmask)

    @triton.jit
    def _embed_kernel(sids_ptr, table_ptr, limits_ptr, out_ptr, err_ptr, N, D,  # noqa: ANN
                      G: tl.constexpr, CHECK: tl.constexpr,  # pyright: ignore[reportInvalidTypeForm]
                      BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):  # pyright: ignore[reportInvalidTypeForm]
        pn = tl.program_id(0)
        pd = tl.program_id(1)
        ev = pn * BLOCK_N + tl.arange(0, BLOCK_N)
        d = pd * BLOCK_D + tl.arange(0, BLOCK_D)
        m = ev < N
        dmask = d < D
        v = tl.load(sids_ptr + ev, mask=m, other=0)
        acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        bad_ev = tl.zeros([BLOCK_N], dtype=tl.int32)
        for g in tl.static_range(G):
            byte = (v >> (8 * g)) & 0xFF
            if CHECK:
                lim = tl.load(limits_ptr + g).to(tl.int64)
                bad_ev = bad_ev | (m & (byte > lim)).to(tl.int32)
            row = (g * 256 + byte).to(tl.int64)
            acc += tl.load(table_ptr + row[:, None] * D + d[None, :], mask=m[:, None] & dmask[None, :], other=0.0)
        if CHECK and G < 8:
            bad_ev = bad_ev | (m & ((v >> (8 * G)) != 0)).to(tl.int32)
        code = tl.where(tl.max(bad_ev, axis=0) > 0, 2, 0)
        tl.atomic_or(err_ptr, code.to(tl.int32), mask=code != 0)
        tl.store(out_ptr + ev.to(tl.int64)[:, None] * D + d[None, :], acc, mask=m[:, None] & dmask[None, :])


def _next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def _raise_async(err: torch.Tensor) -> None:
    """Device-side checks of the kernels' error bits (no host synchronization)."""
    torch._assert_async((err[0] & ERR_OFFSETS) == 0,
                        "torchrec_side::sid_pool: bad offsets (they must start at 0, never decrease and end "
                        "at the number of values)")
    torch._assert_async((err[0] & ERR_SID) == 0,
                        "torchrec_side: invalid SID (a byte above its group's limit, or a non-zero byte "
                        "above the last group); run on CPU for the offending index")


def pool(sids: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor], table: torch.Tensor,
         limits: torch.Tensor, check: bool = True) -> torch.Tensor:
    """Pooled SIDE sums ``[B, D]`` with the Triton kernel (histogram or direct sums per bag).

    Args:
        sids (torch.Tensor): int64 ``[N]`` byte-addressable packed SIDs.
        offsets (torch.Tensor): integer ``[B + 1]`` bag offsets (checked on the device).
        weights (Optional[torch.Tensor]): ``[N]`` per-event weights or None.
        table (torch.Tensor): float32 ``[G * 256, D]`` byte-group tables.
        limits (torch.Tensor): uint8 ``[G]``: the largest valid value of each byte.
        check (bool): check the SID bytes on the device.

    Returns:
        torch.Tensor: float32 ``[B, D]``.

    Example::

        out = pool(sids.cuda(), offsets.cuda(), None, grouped.cuda(), group_max.cuda())   # [B, D]
    """
    from torch.library import wrap_triton

    B = offsets.shape[0] - 1
    N = sids.shape[0]
    D = table.shape[1]
    G = int(limits.shape[0])
    out = torch.empty(B, D, dtype=torch.float32, device=table.device)
    err = torch.zeros(1, dtype=torch.int32, device=table.device)
    if B > 0:
        BLOCK_D = min(64, _next_pow2(D))  # the histogram branch holds [256, BLOCK_D] rows
        grid = (B, triton.cdiv(D, BLOCK_D))
        w = weights.float().contiguous() if weights is not None else out  # a dummy pointer when unweighted
        wrap_triton(_pool_kernel)[grid](
            sids.contiguous(), offsets.long().contiguous(), w, table.float().contiguous(), limits.contiguous(),
            out, err, N, B, D, G=G, HAS_W=weights is not None, CHECK=bool(check),
            HIST_MIN_N=HIST_MIN if weights is None else 2**62, BLOCK_N=64, BLOCK_D=BLOCK_D, num_warps=8)
    else:  # no bag: the offsets must be [0] and there must be no values
        err = err | ((offsets.long()[0] != 0) | (N != 0)).to(torch.int32).reshape(1)
    _raise_async(err)
    return out


def embed(sids: torch.Tensor, table: torch.Tensor, limits: torch.Tensor, check: bool = True) -> torch.Tensor:
    """Per-event SIDE ``[N, D]`` with the Triton kernel.

    Args:
        sids (torch.Tensor): int64 ``[N]`` byte-addressable packed SIDs.
        table (torch.Tensor): float32 ``[G * 256, D]`` byte-group tables.
        limits (torch.Tensor): uint8 ``[G]``.
        check (bool): check the SID bytes on the device.

    Example::

        emb = embed(sids.cuda(), grouped.cuda(), group_max.cuda())      # [N, D]
    """
    from torch.library import wrap_triton

    N = sids.shape[0]
    D = table.shape[1]
    out = torch.empty(N, D, dtype=torch.float32, device=table.device)
    err = torch.zeros(1, dtype=torch.int32, device=table.device)
    if N > 0:
        BLOCK_D = min(128, _next_pow2(D))
        BLOCK_N = 32
        grid = (triton.cdiv(N, BLOCK_N), triton.cdiv(D, BLOCK_D))
        wrap_triton(_embed_kernel)[grid](sids.contiguous(), table.float().contiguous(), limits.contiguous(), out, err,
                                         N, D, G=int(limits.shape[0]), CHECK=bool(check), BLOCK_N=BLOCK_N,
                                         BLOCK_D=BLOCK_D)
    _raise_async(err)
    return out
