# pyre-strict
"""The ctypes build of the CPU SIDE kernels: the baseline the registered op is measured against.

Benchmark-only (``benchmarks/lookup.py`` reports the ratio of the two in one run); SIDE itself calls
the ``torch.library`` op (:mod:`torchrec_side.modules.ops`). This module compiles the op's C++ source
(``torchrec_side/modules/ops/csrc/side_kernels.cpp``) with ``-DSIDE_NO_TORCH`` into a plain shared
library (no torch headers, about a second) in the kernel folder
(:func:`torchrec_side.modules.ops.cpu_kernel.kernel_dir`), written atomically, and calls its
``extern "C"`` functions through ``ctypes`` (which releases the GIL), as SIDE did before the op was
registered. torch.compile and torch.export cannot see into this path, and it has no autograd.

Where torch runs on GNU OpenMP the library is built with ``-fopenmp`` and binds to torch's own
libgomp, else it runs serially. Threads: ``torch.get_num_threads()`` for calls with at least
:data:`PARALLEL_MIN_WORK` units of work, one below (fixed, no timing-based choice).

Example::

    import _ctypes_kernel                       # with benchmarks/ on sys.path
    if _ctypes_kernel.kernels_available():
        pooled, first_bad = _ctypes_kernel.pool_grouped(sids, offsets, None, grouped, group_max)
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from torchrec_side.modules.ops.cpu_kernel import SOURCE_PATH, disabled, kernel_dir, torch_uses_gomp

__all__ = [
    "kernels_available",
    "kernel_status",
    "pool_grouped",
    "embed_grouped",
]

# hist_min of the op (the kernel's own rule, hist_min_events(D) * G): bags whose events x groups reach
# it are pooled through histograms, shorter ones add rows directly.
HIST_MIN_WORK: int = -1
# Below this much work (events x groups) the kernel stays on one thread.
PARALLEL_MIN_WORK: int = 1 << 15

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_status: str = "not built yet"
_tried: bool = False

# Tried in order: OpenMP (binds to torch's libgomp; only where torch uses GNU OpenMP), serial,
# then without target_clones (compilers or platforms without ifunc multiversioning).
_FLAG_SETS: List[List[str]] = [
    ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-DSIDE_NO_TORCH", "-fopenmp"],
    ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-DSIDE_NO_TORCH"],
    ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-DSIDE_NO_TORCH", "-DSIDE_NO_CLONES"],
]


def _compiler() -> Optional[str]:
    for cand in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def _build(cxx: str, flags: List[str], source: str) -> Path:
    """Compiles ``source`` once per (source, compiler, flags, machine); the file name carries the digest."""
    tag = "\0".join([source, cxx, " ".join(flags), platform.machine()])
    digest = hashlib.sha256(tag.encode()).hexdigest()[:16]
    out_dir = kernel_dir()
    target = out_dir / f"side_kernels_ctypes_{digest}.so"
    if target.is_file():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        src = Path(tmp) / "side_kernels.cpp"
        src.write_text(source)
        so = Path(tmp) / "side_kernels.so"
        proc = subprocess.run(
            [cxx, *flags, "-o", str(so), str(src)], capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{cxx} failed: {proc.stderr.strip()[-2000:]}")
        os.replace(so, target)  # atomic: other processes see either nothing or the whole library
    return target


def _gomp_shared() -> bool:
    """True unless two different libgomp files are mapped in this process."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:  # pragma: no cover
        return True
    return len({line.split()[-1] for line in maps if "libgomp" in line}) <= 1


def _load() -> Optional[ctypes.CDLL]:
    global _lib, _status, _tried
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        try:
            if disabled():
                raise RuntimeError("disabled by TORCHREC_SIDE_DISABLE_KERNELS")
            cxx = _compiler()
            if cxx is None:
                raise RuntimeError("no C++ compiler found (set $CXX)")
            source = SOURCE_PATH.read_text()
            errors = []
            lib = None
            threading_kind = ""
            for flags in _FLAG_SETS if torch_uses_gomp() else _FLAG_SETS[1:]:
                try:
                    lib = ctypes.CDLL(str(_build(cxx, flags, source)))
                    threading_kind = "openmp" if "-fopenmp" in flags else "serial"
                    if "-DSIDE_NO_CLONES" in flags:
                        threading_kind += ", no target_clones"
                    if "-fopenmp" in flags and not _gomp_shared():
                        raise RuntimeError("the OpenMP build loaded a second libgomp")
                    break
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    errors.append(str(e))
                    lib = None
            if lib is None:
                raise RuntimeError("; ".join(errors))
            i64, ptr, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
            lib.side_pool_grouped.restype = i64
            lib.side_pool_grouped.argtypes = [ptr, i64, ptr, i64, ptr, cint, ptr, ptr, i64, ptr, cint, i64, cint, i64]
            lib.side_embed_grouped.restype = i64
            lib.side_embed_grouped.argtypes = [ptr, i64, cint, ptr, ptr, i64, ptr, cint, cint, i64]
            _lib = lib
            _status = f"ok ({threading_kind})"
        except Exception as e:  # any failure means: the benchmark leaves this baseline out
            _lib = None
            _status = f"unavailable: {e}"
            warnings.warn(f"ctypes SIDE kernel {_status}", stacklevel=3)
        _tried = True
        return _lib


def kernels_available() -> bool:
    """True if the ctypes build can be used (builds it on the first call)."""
    return _load() is not None


def kernel_status() -> str:
    """``"ok (openmp)"`` / ``"ok (serial)"``, or why the build is unavailable (``"not built yet"``
    before the first use)."""
    return _status


def _check_inputs(sids: torch.Tensor, table: torch.Tensor, limits: torch.Tensor) -> None:
    if sids.device.type != "cpu" or table.device.type != "cpu":
        raise ValueError("the ctypes SIDE kernels run on CPU tensors only")
    if sids.dtype != torch.int64 or table.dtype != torch.float32 or limits.dtype != torch.uint8:
        raise TypeError("the ctypes SIDE kernels need int64 sids, float32 tables and uint8 limits")


def pool_grouped(
    sids: torch.Tensor,
    offsets: torch.Tensor,
    weights: Optional[torch.Tensor],
    table: torch.Tensor,
    limits: torch.Tensor,
    check: bool = True,
    hist_min: int = HIST_MIN_WORK,
) -> Tuple[torch.Tensor, int]:
    """Pooled sum of byte-grouped SIDs over bags.

    Args:
        sids (torch.Tensor): int64 ``[N]`` packed SIDs (byte ``g`` = group ``g``'s value).
        offsets (torch.Tensor): ``[B + 1]`` bag offsets into ``sids``.
        weights (Optional[torch.Tensor]): float32 ``[N]`` per-event weights, or None.
        table (torch.Tensor): float32 ``[G * 256, D]`` group tables, stacked.
        limits (torch.Tensor): uint8 ``[G]``: largest valid value of byte ``g``.
        check (bool): validate the bytes while pooling.
        hist_min (int): bags with ``n * G >= hist_min`` use the histogram method; negative (default):
            the registered op's threshold, so both give the same bits.

    Returns:
        Tuple[torch.Tensor, int]: ``[B, D]`` float32 sums and the first invalid event index (-1 if none).
    """
    lib = _load()
    if lib is None:
        raise RuntimeError(f"ctypes SIDE kernel {_status}")
    _check_inputs(sids, table, limits)
    sids = sids.contiguous()
    offsets = offsets.to(torch.int64).contiguous()
    table = table.contiguous()
    limits = limits.contiguous()
    B = offsets.numel() - 1
    G = limits.numel()
    D = table.shape[1]
    out = torch.empty(B, D, dtype=torch.float32)
    w_ptr = None
    if weights is not None:
        weights = weights.to(torch.float32).contiguous()
        w_ptr = weights.data_ptr()
    bad = lib.side_pool_grouped(
        sids.data_ptr(), sids.numel(), offsets.data_ptr(), B, w_ptr, G, limits.data_ptr(), table.data_ptr(), D,
        out.data_ptr(), int(check), int(hist_min), torch.get_num_threads(), PARALLEL_MIN_WORK,
    )
    if bad == -2:
        raise ValueError(f"ctypes SIDE kernel: bad arguments (G={G}, D={D}, B={B})")
    if bad == -3:
        raise ValueError(f"ctypes SIDE kernel: bad offsets (must start at 0, never decrease, end at {sids.numel()})")
    return out, int(bad)


def embed_grouped(
    sids: torch.Tensor, table: torch.Tensor, limits: torch.Tensor, check: bool = True
) -> Tuple[torch.Tensor, int]:
    """Per-event embeddings ``[N, D]`` of byte-grouped SIDs; see :func:`pool_grouped`."""
    lib = _load()
    if lib is None:
        raise RuntimeError(f"ctypes SIDE kernel {_status}")
    _check_inputs(sids, table, limits)
    sids = sids.contiguous()
    table = table.contiguous()
    limits = limits.contiguous()
    N = sids.numel()
    D = table.shape[1]
    out = torch.empty(N, D, dtype=torch.float32)
    bad = lib.side_embed_grouped(
        sids.data_ptr(), N, limits.numel(), limits.data_ptr(), table.data_ptr(), D, out.data_ptr(),
        int(check), torch.get_num_threads(), PARALLEL_MIN_WORK * 64,
    )
    if bad == -2:
        raise ValueError(f"ctypes SIDE kernel: bad arguments (G={limits.numel()}, D={D}, N={N})")
    return out, int(bad)
