# pyre-strict
"""The ctypes build of the CPU SIDE kernels: the baseline the registered op is measured against.

SIDE itself calls the ``torch.library`` op (:mod:`torchrec_side.modules.ops.cpu_kernel`). This module
compiles the same C++ source (``ops/csrc/side_kernels.cpp``) with ``-DSIDE_NO_TORCH`` into a plain
shared library (no torch headers, about a second) in ``$TORCHREC_SIDE_KERNEL_DIR`` (default
``kernels/`` in the project cache), written atomically, and calls it through ``ctypes`` (which
releases the GIL), as SIDE did before the op was registered. ``benchmarks/lookup.py`` reports the
ratio of the two in one run. torch.compile and torch.export cannot see into this path, and it has
no autograd.

Where torch runs on GNU OpenMP the library is built with ``-fopenmp`` and binds to torch's own
libgomp (its worker threads), else it uses ``std::thread``. Thread choice: as the op
(:class:`~torchrec_side.modules.ops.cpu_kernel.ThreadTuner`).
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
import time
import warnings
from pathlib import Path
from typing import List, Optional

import torch

from torchrec_side.modules.ops.cpu_kernel import KERNEL_VERSION, SOURCE_PATH
from torchrec_side.modules.ops.cpu_kernel import ThreadTuner as _ThreadTuner
from torchrec_side.modules.ops.cpu_kernel import kernel_dir, kernel_threads, torch_uses_gomp

SOURCE: str = SOURCE_PATH.read_text()

__all__ = [
    "kernel_threads",
    "kernels_available",
    "kernel_status",
    "pool_grouped",
    "embed_grouped",
]

# Bags whose (events x groups) reach this use the per-bag histogram, shorter ones add rows directly.
HIST_MIN_WORK: int = 192
# Below this much work (events x groups) the kernel stays on one thread.
PARALLEL_MIN_WORK: int = 1 << 15

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_status: str = "not built yet"
_tried: bool = False

# Tried in order: OpenMP (binds to torch's libgomp; only where torch uses GNU OpenMP), std::thread,
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


def _build(cxx: str, flags: List[str]) -> Path:
    tag = "\0".join([SOURCE, cxx, " ".join(flags), platform.machine(), str(KERNEL_VERSION)])
    digest = hashlib.sha256(tag.encode()).hexdigest()[:16]
    out_dir = kernel_dir()
    target = out_dir / f"side_kernels_ctypes_v{KERNEL_VERSION}_{digest}.so"
    if target.is_file():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        src = Path(tmp) / "side_kernels.cpp"
        src.write_text(SOURCE)
        so = Path(tmp) / "side_kernels.so"
        proc = subprocess.run(
            [cxx, *flags, "-o", str(so), str(src)], capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{cxx} failed: {proc.stderr.strip()[-2000:]}")
        os.replace(so, target)  # atomic: other ranks see either nothing or the whole library
    return target


_pool_tuner = _ThreadTuner()
_embed_tuner = _ThreadTuner()


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
            if os.environ.get("TORCHREC_SIDE_DISABLE_KERNELS", "0") not in ("", "0"):
                raise RuntimeError("disabled by TORCHREC_SIDE_DISABLE_KERNELS")
            cxx = _compiler()
            if cxx is None:
                raise RuntimeError("no C++ compiler found (set $CXX)")
            errors = []
            lib = None
            threading_kind = ""
            for flags in _FLAG_SETS if torch_uses_gomp() else _FLAG_SETS[1:]:
                try:
                    lib = ctypes.CDLL(str(_build(cxx, flags)))
                    if lib.side_kernel_version() != KERNEL_VERSION:
                        raise RuntimeError("stale kernel library")
                    threading_kind = "openmp" if "-fopenmp" in flags else "std::thread"
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
        except Exception as e:  # any failure means: use the torch paths
            _lib = None
            _status = f"unavailable: {e}"
            if os.environ.get("TORCHREC_SIDE_DISABLE_KERNELS", "0") in ("", "0"):
                warnings.warn(
                    f"torchrec_side: CPU SIDE kernel {_status}; using the pure-torch paths", stacklevel=3
                )
        _tried = True
        return _lib


def kernels_available() -> bool:
    """True if the compiled CPU kernels can be used (builds them on the first call)."""
    return _load() is not None


def kernel_status() -> str:
    """``"ok (openmp)"`` / ``"ok (std::thread)"``, or why the kernels are unavailable
    (``"not built yet"`` before the first use)."""
    return _status


def _check_inputs(sids: torch.Tensor, table: torch.Tensor, limits: torch.Tensor) -> None:
    if sids.device.type != "cpu" or table.device.type != "cpu":
        raise ValueError("SIDE kernels run on CPU tensors only")
    if sids.dtype != torch.int64 or table.dtype != torch.float32 or limits.dtype != torch.uint8:
        raise TypeError("SIDE kernels need int64 sids, float32 tables and uint8 limits")


def pool_grouped(
    sids: torch.Tensor,
    offsets: torch.Tensor,
    weights: Optional[torch.Tensor],
    table: torch.Tensor,
    limits: torch.Tensor,
    check: bool = True,
    hist_min: int = HIST_MIN_WORK,
) -> "tuple[torch.Tensor, int]":
    """Pooled sum of byte-grouped SIDs over bags (CPU kernel).

    Args:
        sids (torch.Tensor): int64 ``[N]`` packed SIDs (byte ``g`` = group ``g``'s value).
        offsets (torch.Tensor): ``[B + 1]`` bag offsets into ``sids``.
        weights (Optional[torch.Tensor]): float32 ``[N]`` per-event weights, or None.
        table (torch.Tensor): float32 ``[G * 256, D]`` group tables, stacked.
        limits (torch.Tensor): uint8 ``[G]``: largest valid value of byte ``g``.
        check (bool): validate the bytes while pooling.
        hist_min (int): bags with ``n * G >= hist_min`` use the histogram method.

    Returns:
        Tuple[torch.Tensor, int]: ``[B, D]`` float32 sums and the first invalid event index (-1 if none).
    """
    lib = _load()
    assert lib is not None, "SIDE kernels unavailable"
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
    work = sids.numel() * G
    threads = kernel_threads(work, _pool_tuner, PARALLEL_MIN_WORK)
    t0 = time.perf_counter()
    bad = lib.side_pool_grouped(
        sids.data_ptr(), sids.numel(), offsets.data_ptr(), B, w_ptr, G, limits.data_ptr(), table.data_ptr(), D,
        out.data_ptr(), int(check), int(hist_min), threads, PARALLEL_MIN_WORK,
    )
    if work >= PARALLEL_MIN_WORK:
        _pool_tuner.record(threads, time.perf_counter() - t0, work)
    if bad == -2:
        raise ValueError(f"SIDE kernel: bad arguments (G={G}, D={D}, B={B})")
    if bad == -3:
        raise ValueError(f"SIDE kernel: bad offsets (must start at 0, never decrease, end at {sids.numel()})")
    return out, int(bad)


def embed_grouped(
    sids: torch.Tensor, table: torch.Tensor, limits: torch.Tensor, check: bool = True
) -> "tuple[torch.Tensor, int]":
    """Per-event embeddings ``[N, D]`` of byte-grouped SIDs (CPU kernel); see :func:`pool_grouped`."""
    lib = _load()
    assert lib is not None, "SIDE kernels unavailable"
    _check_inputs(sids, table, limits)
    sids = sids.contiguous()
    table = table.contiguous()
    limits = limits.contiguous()
    N = sids.numel()
    D = table.shape[1]
    out = torch.empty(N, D, dtype=torch.float32)
    work = N * limits.numel() * D
    threads = kernel_threads(work, _embed_tuner, PARALLEL_MIN_WORK * 64)
    t0 = time.perf_counter()
    bad = lib.side_embed_grouped(
        sids.data_ptr(), N, limits.numel(), limits.data_ptr(), table.data_ptr(), D, out.data_ptr(),
        int(check), threads, PARALLEL_MIN_WORK * 64,
    )
    if work >= PARALLEL_MIN_WORK * 64:
        _embed_tuner.record(threads, time.perf_counter() - t0, work)
    if bad == -2:
        raise ValueError(f"SIDE kernel: bad arguments (G={limits.numel()}, D={D}, N={N})")
    return out, int(bad)
