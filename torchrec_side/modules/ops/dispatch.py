# pyre-strict
"""The two public SIDE ops, each dispatching to one reference and its fast paths.

:func:`sid_pool` (pooled, ``SIDEmbeddingBag``) and :func:`sid_embed` (per event, ``SIDEmbedding``) take
the packed SIDs, the bag offsets, optional per-event weights, the frozen tables
(:class:`SIDEOpTables`, built by the modules from their buffers) and a :class:`~.common.Compute`
algorithm. Every path equals :func:`~.reference.pool_reference` up to float rounding (tests check
this); docs/design.md, section 5.

The ``Compute`` value picks the algorithm only; the device comes from the inputs. ``kernel`` calls
the registered ops ``torch.ops.torchrec_side.sid_pool`` / ``sid_embed`` (:mod:`.library`), whose
dispatcher runs the C++ kernel on CPU, the Triton kernel on CUDA (where triton is importable) and
pure torch elsewhere; they validate offsets (and, with ``validate``, SID bytes) inside the kernel.
The pure-torch paths validate offsets with :func:`~.common.validate_offsets` (an eager check on
CPU, a device-side assert elsewhere: no host synchronization).

``auto`` (by measurement, ``benchmarks/lookup.py``, docs/benchmarks.md): on CPU ``kernel`` when the
C++ kernel is built, else ``grouped_bag``; FBGEMM's CPU TBE measured several times slower than the
kernel (one thread) and is never the CPU default. On CUDA ``grouped_bag`` (no CUDA measurement of
the Triton kernel has been made yet; ``kernel`` and ``fbgemm`` are selectable). Codecs that are not
byte-addressable use ``per_level``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, NoReturn, Optional, Tuple, Union

import torch

from torchrec_side.modules.ops import cpu_kernel, fbgemm_ops, library, reference, torch_ops, triton_ops
from torchrec_side.modules.ops.common import Compute, check_offsets, finish, validate_offsets
from torchrec_side.sid.codec import SIDCodec, sid_bytes

__all__ = [
    "POOLED_COMPUTE",
    "UNPOOLED_COMPUTE",
    "SIDEOpTables",
    "path_status",
    "resolve_compute",
    "sid_embed",
    "sid_pool",
]

POOLED_COMPUTE: Tuple[Compute, ...] = tuple(Compute)
UNPOOLED_COMPUTE: Tuple[Compute, ...] = tuple(c for c in Compute if c not in (Compute.SCALAR, Compute.GROUPED_HIST))

_FBGEMM_WEIGHTS: Dict[Compute, str] = {Compute.FBGEMM: "fp32", Compute.FBGEMM_FP16: "fp16", Compute.FBGEMM_INT8: "int8"}


@dataclass
class SIDEOpTables:
    """The frozen tensors the SIDE ops read (a view of a module's buffers; nothing is copied).

    Args:
        codec (SIDCodec): the SID packing.
        offset (torch.Tensor): ``[D]`` decoder offset.
        level_tables (torch.Tensor): ``[sum_l K_l, D]`` level tables stacked, without the offset.
        level_offsets (torch.Tensor): int64 ``[L]``: first row of each level.
        stacked_with_offset (torch.Tensor): ``level_tables`` with the offset added to level 0's rows.
        grouped (Optional[torch.Tensor]): ``[G * 256, D]`` byte-group tables (byte-addressable codecs).
        group_max (Optional[torch.Tensor]): uint8 ``[G]``: largest valid value of each byte.
        scalar_values (Optional[torch.Tensor]): ``[sum_l K_l]`` for rank-1 levels.
        scalar_dirs (Optional[torch.Tensor]): ``[L, D]`` for rank-1 levels.
        cache (Dict[Any, Any]): where derived objects (FBGEMM TBEs) are kept; the owner clears it
            when the tables change.

    Example::

        t = SIDEOpTables.from_tables(SIDTables.from_quantizer(dpca), codec)
        sid_pool(sids, offsets, None, t, Compute.AUTO)
    """

    codec: SIDCodec
    offset: torch.Tensor
    level_tables: torch.Tensor
    level_offsets: torch.Tensor
    stacked_with_offset: torch.Tensor
    grouped: Optional[torch.Tensor] = None
    group_max: Optional[torch.Tensor] = None
    scalar_values: Optional[torch.Tensor] = None
    scalar_dirs: Optional[torch.Tensor] = None
    cache: Dict[Any, Any] = field(default_factory=dict)

    @classmethod
    def from_tables(cls, tables: Any, codec: SIDCodec, device: Optional[torch.device] = None) -> "SIDEOpTables":
        """From :class:`~torchrec_side.modules.SIDTables` and a codec (derived tables computed here)."""
        from torchrec_side.modules.tables import byte_groups

        dev = torch.device("cpu") if device is None else torch.device(device)
        grouped = byte_groups(codec) is not None
        sf = tables.scalar_factors()
        return cls(
            codec=codec, offset=tables.offset.to(dev), level_tables=tables.stacked(with_offset=False).to(dev),
            level_offsets=tables.level_offsets().to(dev), stacked_with_offset=tables.stacked(with_offset=True).to(dev),
            grouped=tables.grouped(codec).to(dev) if grouped else None,
            group_max=tables.group_max(codec).to(dev) if grouped else None,
            scalar_values=sf[0].to(dev) if sf is not None else None,
            scalar_dirs=sf[1].to(dev) if sf is not None else None,
        )

    @property
    def byte_addressable(self) -> bool:
        return self.grouped is not None

    @property
    def num_groups(self) -> int:
        return 0 if self.group_max is None else int(self.group_max.numel())

    @property
    def scalar(self) -> bool:
        return self.scalar_values is not None


def path_status(compute: Union[str, Compute], device: torch.device) -> str:
    """``"ok..."`` if the path ``compute`` can run on ``device``, else why not.

    For ``kernel`` the text says which implementation the registered ops run there (``C++``,
    ``triton`` or the pure-torch fallback and why); on CPU this builds the C++ kernel once.
    """
    c = Compute(compute)
    dev = torch.device(device)
    if c == Compute.KERNEL:
        if dev.type == "meta":
            return "ok (meta: the fake kernels, shapes only)"
        impl = library.implementation(dev)
        if impl == "cpp":
            return cpu_kernel.kernel_status()
        if impl == "triton":
            return "ok (triton)"
        why = cpu_kernel.kernel_status() if dev.type == "cpu" else triton_ops.triton_status(dev)
        return f"ok (pure-torch fallback; {why})"
    if c.is_fbgemm:
        return fbgemm_ops.fbgemm_status(dev)
    return "ok"


def resolve_compute(compute: Union[str, Compute], device: torch.device, byte_addressable: bool, scalar: bool,
                    pooled: bool = True) -> Compute:
    """Concrete compute path for ``compute`` (``"auto"`` or a path name) on ``device``.

    Args:
        compute (Union[str, Compute]): requested path.
        device (torch.device): where the inputs live.
        byte_addressable (bool): the codec stores one digit group per byte.
        scalar (bool): every level is rank 1.
        pooled (bool): for :func:`sid_pool` (else :func:`sid_embed`).

    Raises:
        ValueError: unknown path, or a path the tables, codec or machine cannot run.
    """
    allowed = POOLED_COMPUTE if pooled else UNPOOLED_COMPUTE
    try:
        c = Compute(compute)
    except ValueError:
        c = None
    if c is None or c not in allowed:
        raise ValueError(f"unknown SIDE compute path {compute!r}; expected one of {[str(a) for a in allowed]}")
    dev = torch.device(device)
    if c == Compute.AUTO:
        if byte_addressable:
            if dev.type == "cpu" and cpu_kernel.kernels_available():
                return Compute.KERNEL
            return Compute.GROUPED_BAG
        return Compute.PER_LEVEL
    if c.byte_addressable_only and not byte_addressable:
        raise ValueError(
            f"compute={c.value!r} needs a byte-addressable codec (byte_grouped, or mixed_radix with all radices 256)"
        )
    if c == Compute.SCALAR and not scalar:
        raise ValueError("compute='scalar' needs rank-1 levels (m_l = 1, e.g. ternary DPCA)")
    status = path_status(c, dev)
    if not status.startswith("ok"):
        raise ValueError(f"compute={c.value!r} on {dev.type}: {status}")
    return c


def _traced_check(tables: SIDEOpTables, values: torch.Tensor) -> None:
    """SID validation inside torch.compile / torch.export: the same conditions as
    ``codec.validate_sids`` as one ``torch._assert_async`` (no data-dependent Python branch)."""
    if tables.group_max is not None:
        by = sid_bytes(values)
        G = tables.num_groups
        bad = (by[:, :G] > tables.group_max.unsqueeze(0)).any()
        if G < 8:
            bad = bad | (by[:, G:] != 0).any()
    else:
        bad = (values < 0).any() | (values >= tables.codec.num_sids).any()
    torch._assert_async(~bad, "SIDE: invalid SID for the codec (run eagerly for the offending level and value)")


def _validate_bytes(tables: SIDEOpTables, values: torch.Tensor) -> None:
    if torch.compiler.is_compiling():
        _traced_check(tables, values)
    else:
        tables.codec.validate_sids(values)


def _unpack(tables: SIDEOpTables, values: torch.Tensor, validate: bool) -> torch.Tensor:
    if torch.compiler.is_compiling():
        if validate:
            _traced_check(tables, values)
        return tables.codec.unpack(values, validate=False)
    return tables.codec.unpack(values, validate=validate)


def _diagnose(tables: SIDEOpTables, values: torch.Tensor, offsets: Optional[torch.Tensor], validate: bool,
              err: Exception) -> NoReturn:
    """After a registered op failed on CPU: re-checks its inputs in Python, which raise the
    package's error types (:class:`SIDOffsetsError`; the codec's ``SIDValueError`` naming level and
    value). Runs only on failure; if both checks pass, the op's own error is raised."""
    if offsets is not None:
        check_offsets(offsets, values.shape[0])
    if validate:
        tables.codec.validate_sids(values)
    raise err


def sid_pool(values: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor], tables: SIDEOpTables,
             compute: Union[str, Compute] = Compute.AUTO, mean: bool = False, validate: bool = True) -> torch.Tensor:
    """Pooled SIDE: ``out[b] = pool_{e in bag b} w_e * (offset + sum_l T_l[c_{l,e}])``.

    Args:
        values (torch.Tensor): int64 ``[N]`` packed SIDs.
        offsets (torch.Tensor): integer ``[B + 1]`` bag offsets; always checked (first 0, never
            decreasing, last ``N``), whatever ``validate`` says: inside the kernel for ``kernel``,
            by :func:`~.common.validate_offsets` for the other paths.
        weights (Optional[torch.Tensor]): ``[N]`` per-event weights or None; differentiable on the
            ``reference``, ``per_level``, ``scalar``, ``grouped_*`` and ``kernel`` paths.
        tables (SIDEOpTables): the frozen tables.
        compute (Union[str, Compute]): an algorithm, or ``auto``.
        mean (bool): divide each bag by its number of events (empty bags give zeros).
        validate (bool): check every SID against the codec.

    Returns:
        torch.Tensor: ``[B, D]`` float32.

    Raises:
        SIDOffsetsError: bad offsets (CPU; on CUDA the ``kernel`` path fails a device-side assert).
        SIDValueError: an invalid SID (with ``validate``).

    Example::

        out = sid_pool(sids, torch.tensor([0, 3, 5]), None, op_tables, "kernel")     # [2, D]
    """
    c = resolve_compute(compute, values.device, tables.byte_addressable, tables.scalar, True)
    N = values.shape[0]
    if weights is not None and weights.numel() != N:
        raise ValueError(f"weights have {weights.numel()} entries for {N} SIDs")
    if c == Compute.KERNEL:  # the op checks the offsets (and the SIDs) inside its kernels
        assert tables.grouped is not None and tables.group_max is not None
        op = torch.ops.torchrec_side.sid_pool.default
        if torch.compiler.is_compiling() or values.device.type != "cpu":
            out = op(values, offsets, weights, tables.grouped, tables.group_max, validate)
        else:
            try:
                out = op(values, offsets, weights, tables.grouped, tables.group_max, validate)
            except (ValueError, RuntimeError) as e:
                _diagnose(tables, values, offsets, validate, e)
        return finish(out, offsets, mean)
    validate_offsets(offsets, N)
    if c in (Compute.REFERENCE, Compute.PER_LEVEL, Compute.SCALAR):
        codes = _unpack(tables, values, validate)
        if c == Compute.REFERENCE:
            return reference.pool_reference(codes, offsets, weights, tables.offset, tables.level_tables,
                                            tables.level_offsets, mean)
        if c == Compute.SCALAR:
            assert tables.scalar_values is not None and tables.scalar_dirs is not None
            return torch_ops.pool_scalar(codes, offsets, weights, tables.scalar_values, tables.scalar_dirs,
                                         tables.offset, tables.level_offsets, mean)
        return torch_ops.pool_per_level(codes, offsets, weights, tables.stacked_with_offset, tables.level_offsets, mean)
    assert tables.grouped is not None
    if validate:
        _validate_bytes(tables, values)
    G = tables.num_groups
    if c == Compute.GROUPED_BAG:
        return torch_ops.pool_grouped_bag(values, offsets, weights, tables.grouped, G, mean)
    if c == Compute.GROUPED_HIST:
        return torch_ops.pool_grouped_hist(values, offsets, weights, tables.grouped, G, mean)
    if c.is_fbgemm:
        if weights is not None and weights.requires_grad and torch.is_grad_enabled():
            raise ValueError(
                f"compute={c.value!r}: FBGEMM's inference TBE gives no gradient for per-event weights that "
                "require one; use 'kernel' or 'grouped_bag' to train through the weights"
            )
        tbe = fbgemm_ops.get_tbe(tables.cache, tables.grouped, G, _FBGEMM_WEIGHTS[c])
        return fbgemm_ops.pool(values, offsets, weights, tbe, G, mean)
    raise AssertionError(f"unhandled compute path {c}")  # pragma: no cover


def sid_embed(values: torch.Tensor, tables: SIDEOpTables, compute: Union[str, Compute] = Compute.AUTO,
              validate: bool = True) -> torch.Tensor:
    """Per-event SIDE: ``out[e] = offset + sum_l T_l[c_{l,e}]``.

    Args:
        values (torch.Tensor): int64 ``[N]`` packed SIDs.
        tables (SIDEOpTables): the frozen tables.
        compute (Union[str, Compute]): a path of :data:`UNPOOLED_COMPUTE`, or ``auto``.
        validate (bool): check every SID against the codec.

    Returns:
        torch.Tensor: ``[N, D]`` float32; row ``i`` is the decode of SID ``i``.

    Example::

        emb = sid_embed(sids, op_tables)          # [N, D]
    """
    c = resolve_compute(compute, values.device, tables.byte_addressable, tables.scalar, False)
    if c == Compute.KERNEL:
        assert tables.grouped is not None and tables.group_max is not None
        op = torch.ops.torchrec_side.sid_embed.default
        if torch.compiler.is_compiling() or values.device.type != "cpu":
            return op(values, tables.grouped, tables.group_max, validate)
        try:
            return op(values, tables.grouped, tables.group_max, validate)
        except (ValueError, RuntimeError) as e:
            _diagnose(tables, values, None, validate, e)
    if c in (Compute.REFERENCE, Compute.PER_LEVEL):
        codes = _unpack(tables, values, validate)
        if c == Compute.REFERENCE:
            return reference.embed_reference(codes, tables.offset, tables.level_tables, tables.level_offsets)
        return torch_ops.embed_per_level(codes, tables.stacked_with_offset, tables.level_offsets)
    assert tables.grouped is not None
    if validate:
        _validate_bytes(tables, values)
    G = tables.num_groups
    if c == Compute.GROUPED_BAG:
        return torch_ops.embed_grouped_bag(values, tables.grouped, G)
    if c.is_fbgemm:
        tbe = fbgemm_ops.get_tbe(tables.cache, tables.grouped, G, _FBGEMM_WEIGHTS[c])
        return fbgemm_ops.embed(values, tbe, G)
    raise AssertionError(f"unhandled compute path {c}")  # pragma: no cover
