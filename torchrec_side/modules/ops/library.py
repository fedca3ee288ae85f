# pyre-strict
"""The SIDE operator library: ``torchrec_side::sid_pool`` and ``torchrec_side::sid_embed``.

Everything is registered when this module is imported (``import torchrec_side.modules.ops`` does):
the schemas, the fake (Meta) kernels used by ``torch.compile`` / ``torch.export`` / meta-device
modules, the autograd formula for the per-event weights, and the default kernel. The schemas carry
no tuning argument::

    torchrec_side::sid_pool(Tensor sids, Tensor offsets, Tensor? weights, Tensor table,
                            Tensor limits, bool check=True) -> Tensor          # [B, D]
    torchrec_side::sid_embed(Tensor sids, Tensor table, Tensor limits, bool check=True) -> Tensor   # [N, D]

``sids`` int64 ``[N]`` byte-addressable packed SIDs; ``offsets`` integer ``[B + 1]`` bag offsets;
``weights`` ``[N]`` per-event weights or None; ``table`` float32 ``[G * 256, D]`` byte-group tables;
``limits`` uint8 ``[G]``, the largest valid value of each byte; ``check`` validates the SID bytes.
The offsets are always validated, inside the kernels (no extra host synchronization).

Kernels, chosen by the dispatcher from the inputs' device:

* **CPU**: the C++ kernels (``csrc/side_kernels.cpp``, :mod:`.cpu_kernel`), registered for the CPU
  dispatch key when the extension is loaded; it is built the first time a CPU call reaches the
  default kernel. Without a compiler (or with ``TORCHREC_SIDE_DISABLE_KERNELS=1``) the default
  kernel's pure-torch implementation serves CPU calls. Errors name the problem (``ValueError``).
* **CUDA**: the Triton kernels (:mod:`.triton_ops`) where triton is importable; the ops are then
  defined with ``torch.library.triton_op`` and launch through ``torch.library.wrap_triton`` (under
  ``torch.compile`` the kernels are visible to the compiler on CUDA; CPU calls stay opaque ops).
  Errors are device-side asserts. Without triton: the pure-torch implementation.
* **Meta / fake**: shapes only.
* **Autograd**: ``dL/dw_e = <dL/dout[bag(e)], e(event e)>`` with ``e(event)`` from ``sid_embed``; the
  tables are frozen buffers and get no gradient.

Example::

    out = torch.ops.torchrec_side.sid_pool(sids, offsets, None, grouped, group_max)   # [B, D]
"""

from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor

from torchrec_side.modules.ops import cpu_kernel, triton_ops
from torchrec_side.modules.ops.common import BYTE_BINS, byte_indices, validate_offsets
from torchrec_side.modules.ops.torch_ops import embed_grouped_bag, pool_grouped_bag
from torchrec_side.sid.codec import sid_bytes

__all__ = ["EMBED_SCHEMA", "POOL_SCHEMA", "sid_embed_op", "sid_pool_op", "implementation"]

#: The registered schemas (a test pins them: changing one is a breaking change for saved programs).
POOL_SCHEMA: str = ("torchrec_side::sid_pool(Tensor sids, Tensor offsets, Tensor? weights, Tensor table, "
                    "Tensor limits, bool check=True) -> Tensor")
EMBED_SCHEMA: str = "torchrec_side::sid_embed(Tensor sids, Tensor table, Tensor limits, bool check=True) -> Tensor"


def implementation(device: torch.device) -> str:
    """Which implementation the ops run on ``device``: ``"cpp"``, ``"triton"`` or ``"torch"``.

    On CPU this builds the C++ kernels if they are not built yet.
    """
    dev = torch.device(device)
    if dev.type == "cpu":
        return "cpp" if cpu_kernel.kernels_available() else "torch"
    if dev.type == "cuda" and triton_ops.AVAILABLE:
        return "triton"
    return "torch"


# ------------------------------------------------------------------------------ pure torch


def _check_args(sids: Tensor, table: Tensor, limits: Tensor) -> None:
    if sids.dtype != torch.int64 or sids.dim() != 1:
        raise ValueError(f"torchrec_side: sids must be 1-D int64, got {sids.dtype} {tuple(sids.shape)}")
    if table.dtype != torch.float32 or table.dim() != 2:
        raise ValueError(f"torchrec_side: table must be 2-D float32 [G * 256, D], got {table.dtype} "
                         f"{tuple(table.shape)}")
    if limits.dtype != torch.uint8 or limits.dim() != 1 or not 1 <= limits.numel() <= 8:
        raise ValueError(f"torchrec_side: limits must be uint8 [G] with 1 <= G <= 8, got {limits.dtype} "
                         f"{tuple(limits.shape)}")
    if table.shape[0] != limits.numel() * BYTE_BINS:
        raise ValueError(f"torchrec_side: table has {table.shape[0]} rows, expected G * 256 = "
                         f"{limits.numel() * BYTE_BINS}")


def _check_bytes(sids: Tensor, limits: Tensor) -> None:
    """SID bytes against ``limits``: a ``ValueError`` naming the first bad SID on CPU, a device-side
    assert elsewhere (no host synchronization)."""
    G = limits.numel()
    by = sid_bytes(sids)
    bad = (by[:, :G] > limits.unsqueeze(0)).any(1)
    if G < 8:
        bad = bad | (by[:, G:] != 0).any(1)
    if sids.device.type != "cpu":
        torch._assert_async(~bad.any(), "torchrec_side: invalid SID (a byte above its group's limit, or a "
                                        "non-zero byte above the last group)")
        return
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        raise ValueError(f"torchrec_side: invalid SID {int(sids[i])} at index {i}: a byte above its group's "
                         f"limit {limits.tolist()}, or a non-zero byte above group {G - 1}")


def pool_torch(sids: Tensor, offsets: Tensor, weights: Optional[Tensor], table: Tensor, limits: Tensor,
               check: bool = True) -> Tensor:
    """``sid_pool`` in pure torch (any device): checks, then ``F.embedding_bag`` over the group tables."""
    _check_args(sids, table, limits)
    validate_offsets(offsets, sids.shape[0])
    if weights is not None and (weights.dim() != 1 or weights.shape[0] != sids.shape[0]):
        raise ValueError(f"torchrec_side::sid_pool: weights have {weights.numel()} entries for {sids.shape[0]} SIDs")
    if check:
        _check_bytes(sids, limits)
    return pool_grouped_bag(sids, offsets, weights, table, limits.numel())


def embed_torch(sids: Tensor, table: Tensor, limits: Tensor, check: bool = True) -> Tensor:
    """``sid_embed`` in pure torch (any device)."""
    _check_args(sids, table, limits)
    if check:
        _check_bytes(sids, limits)
    return embed_grouped_bag(sids, table, limits.numel())


# ------------------------------------------------------------------------------ default kernels


def sid_pool_op(sids: Tensor, offsets: Tensor, weights: Optional[Tensor], table: Tensor, limits: Tensor,
                check: bool = True) -> Tensor:
    """The default kernel of ``torchrec_side::sid_pool`` (every device without a dedicated kernel).

    CPU: builds and loads the C++ kernel (then calls the op again, which now dispatches to it), or
    runs pure torch. CUDA with triton: the Triton kernel. Elsewhere: pure torch.
    """
    if sids.device.type == "cpu" and cpu_kernel.kernels_available():
        return torch.ops.torchrec_side.sid_pool.default(sids, offsets, weights, table, limits, check)
    if sids.device.type == "cuda" and triton_ops.AVAILABLE:
        return triton_pool(sids, offsets, weights, table, limits, check)
    return pool_torch(sids, offsets, weights, table, limits, check)


def sid_embed_op(sids: Tensor, table: Tensor, limits: Tensor, check: bool = True) -> Tensor:
    """The default kernel of ``torchrec_side::sid_embed`` (see :func:`sid_pool_op`)."""
    if sids.device.type == "cpu" and cpu_kernel.kernels_available():
        return torch.ops.torchrec_side.sid_embed.default(sids, table, limits, check)
    if sids.device.type == "cuda" and triton_ops.AVAILABLE:
        return triton_embed(sids, table, limits, check)
    return embed_torch(sids, table, limits, check)


# plain names: torch.library.triton_op finds the kernels behind direct calls
triton_pool: Callable[..., Tensor] = triton_ops.pool
triton_embed: Callable[..., Tensor] = triton_ops.embed


# ------------------------------------------------------------------------------ fake kernels


def _pool_fake(sids: Tensor, offsets: Tensor, weights: Optional[Tensor], table: Tensor, limits: Tensor,
               check: bool = True) -> Tensor:
    torch._check(sids.dim() == 1, lambda: "torchrec_side::sid_pool: sids must be 1-D")
    torch._check(offsets.dim() == 1, lambda: "torchrec_side::sid_pool: offsets must be 1-D [B + 1]")
    torch._check(table.dim() == 2, lambda: "torchrec_side::sid_pool: table must be 2-D")
    if weights is not None:
        torch._check(weights.dim() == 1, lambda: "torchrec_side::sid_pool: weights must be 1-D [N]")
    return table.new_empty(offsets.shape[0] - 1, table.shape[1])


def _embed_fake(sids: Tensor, table: Tensor, limits: Tensor, check: bool = True) -> Tensor:
    torch._check(sids.dim() == 1, lambda: "torchrec_side::sid_embed: sids must be 1-D")
    torch._check(table.dim() == 2, lambda: "torchrec_side::sid_embed: table must be 2-D")
    return table.new_empty(sids.shape[0], table.shape[1])


# ------------------------------------------------------------------------------ autograd


def _pool_setup(ctx: Any, inputs: Tuple[Any, ...], output: Tensor) -> None:
    sids, offsets, weights, table, limits, _check = inputs
    ctx.weights_dtype = None if weights is None else weights.dtype
    ctx.save_for_backward(sids, offsets, table, limits)


def _pool_backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], ...]:
    sids, offsets, table, limits = ctx.saved_tensors
    grad_w = None
    if ctx.weights_dtype is not None and ctx.needs_input_grad[2]:
        emb = torch.ops.torchrec_side.sid_embed(sids, table, limits, False)  # [N, D]
        lengths = (offsets[1:] - offsets[:-1]).long()
        per_event = torch.repeat_interleave(grad, lengths, dim=0, output_size=sids.shape[0])
        grad_w = (emb * per_event).sum(1).to(ctx.weights_dtype)
    return None, None, grad_w, None, None, None


# ------------------------------------------------------------------------------ registration


def _define() -> Tuple[Any, Any]:
    if triton_ops.AVAILABLE:  # the kernels become visible to torch.compile on CUDA
        from torch._subclasses.functional_tensor import FunctionalTensorMode

        pool = torch.library.triton_op("torchrec_side::sid_pool", sid_pool_op, mutates_args=())
        embed = torch.library.triton_op("torchrec_side::sid_embed", sid_embed_op, mutates_args=())
        # triton_op decomposes the op into its kernels under AOT functionalization; keep the op
        # whole for other devices (CPU compiles call the C++ kernel) and for the fake kernels.
        for op, fn in ((pool, sid_pool_op), (embed, sid_embed_op)):
            def decompose(mode: Any, func: Any, types: Any, args: Any, kwargs: Any, fn: Any = fn) -> Any:
                if any(isinstance(a, Tensor) and a.device.type == "cuda" for a in args):
                    with mode:
                        return fn(*args, **kwargs)
                return mode.__torch_dispatch__(func, types, args, kwargs)

            op.register_torch_dispatch(FunctionalTensorMode, decompose)
    else:
        pool = torch.library.custom_op("torchrec_side::sid_pool", sid_pool_op, mutates_args=())
        embed = torch.library.custom_op("torchrec_side::sid_embed", sid_embed_op, mutates_args=())
    pool.register_fake(_pool_fake)
    embed.register_fake(_embed_fake)
    pool.register_autograd(_pool_backward, setup_context=_pool_setup)
    return pool, embed


sid_pool, sid_embed = _define()
