# pyre-strict
"""The registered CPU SIDE ops: ``torch.ops.torchrec_side.sid_pool_grouped`` / ``sid_embed_grouped``.

The C++ source (``csrc/side_kernels.cpp``, package data) defines the schemas and CPU kernels with
``TORCH_LIBRARY``; it is built once per machine with ``torch.utils.cpp_extension.load`` (JIT, ninja)
into ``torchrec_side.io.cache_dir()/kernels`` (or ``$TORCHREC_SIDE_KERNEL_DIR``) and loaded into the
process. This module adds, from Python:

* fake (meta) kernels, so ``torch.compile(fullgraph=True)`` and ``torch.export`` trace the ops;
* autograd for the per-event weights of ``sid_pool_grouped``:
  ``dL/dw_e = <dL/dout[bag(e)], e(event e)>``, with ``e(event)`` from ``sid_embed_grouped``
  (the tables are frozen buffers and get no gradient).

Where torch runs on GNU OpenMP the build uses ``-fopenmp`` (it then shares torch's libgomp and its
worker threads), else ``std::thread`` helpers. The thread count per eager call is 1 or
``torch.get_num_threads()``, whichever measures faster (:class:`ThreadTuner`; results do not depend
on it) or ``$TORCHREC_SIDE_KERNEL_THREADS``; traced calls use ``torch.get_num_threads()``.

If there is no C++ compiler or ninja, the build fails, or ``TORCHREC_SIDE_DISABLE_KERNELS=1`` is
set, :func:`kernels_available` returns False and SIDE uses its pure-torch paths; a warning says
why, once.
"""

from __future__ import annotations

import os
import platform
import shutil
import threading
import time
import warnings
from pathlib import Path
from typing import Dict, Optional

import torch

__all__ = [
    "KERNEL_VERSION",
    "SOURCE_PATH",
    "ThreadTuner",
    "embed",
    "kernel_status",
    "kernel_threads",
    "kernels_available",
    "pool",
]

KERNEL_VERSION: int = 8
SOURCE_PATH: Path = Path(__file__).resolve().parent / "csrc" / "side_kernels.cpp"
# Bags whose (events x groups) reach this use the per-bag histogram, shorter ones add rows directly.
HIST_MIN_WORK: int = 192
# Below this much work (events x groups) the kernel stays on one thread.
PARALLEL_MIN_WORK: int = 1 << 15

_lock = threading.Lock()
_ok: bool = False
_tried: bool = False
_status: str = "not built yet"


def kernel_dir() -> Path:
    """Where the extension is built: ``$TORCHREC_SIDE_KERNEL_DIR``, else ``cache_dir()/kernels``."""
    env = os.environ.get("TORCHREC_SIDE_KERNEL_DIR")
    if env:
        return Path(env)
    from torchrec_side.io import cache_dir

    path = cache_dir() / "kernels"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"torchrec_side_kernels_{uid}"  # read-only home


def torch_uses_gomp() -> bool:
    """True if torch runs on GNU OpenMP on Linux (an ``-fopenmp`` build then shares torch's libgomp)."""
    try:
        return platform.system() == "Linux" and "OpenMP" in torch.__config__.parallel_info()
    except Exception:  # pragma: no cover
        return False


def _compiler_missing() -> Optional[str]:
    cxx = os.environ.get("CXX") or "c++"
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx!r} not found; set $CXX)"
    try:
        from torch.utils.cpp_extension import is_ninja_available

        if not is_ninja_available():
            return "ninja is not installed (pip install ninja)"
    except Exception as e:  # pragma: no cover
        return f"torch.utils.cpp_extension unusable: {e}"
    return None


def _build_and_load() -> str:
    from torch.utils import cpp_extension

    omp = torch_uses_gomp()
    tag = f"torchrec_side_kernels_v{KERNEL_VERSION}_{'omp' if omp else 'thr'}"
    build = kernel_dir() / f"{tag}_torch{torch.__version__.replace('+', '_')}"
    build.mkdir(parents=True, exist_ok=True)
    flags = ["-O3", "-std=c++17"] + (["-fopenmp"] if omp else [])
    cpp_extension.load(
        name=tag, sources=[str(SOURCE_PATH)], extra_cflags=flags, extra_ldflags=["-fopenmp"] if omp else [],
        build_directory=str(build), is_python_module=False, verbose=False,
    )
    return "openmp" if omp else "std::thread"


def _load() -> bool:
    global _ok, _tried, _status
    if _tried:
        return _ok
    with _lock:
        if _tried:
            return _ok
        try:
            if os.environ.get("TORCHREC_SIDE_DISABLE_KERNELS", "0") not in ("", "0"):
                raise RuntimeError("disabled by TORCHREC_SIDE_DISABLE_KERNELS")
            if not hasattr(torch.ops.torchrec_side, "sid_pool_grouped"):
                missing = _compiler_missing()
                if missing:
                    raise RuntimeError(missing)
                kind = _build_and_load()
            else:
                kind = "already loaded"
            _register_python_parts()
            _ok = True
            _status = f"ok (torch.library op, {kind})"
        except Exception as e:  # any failure means: use the torch paths
            _ok = False
            _status = f"unavailable: {str(e).strip()[-1500:]}"
            if os.environ.get("TORCHREC_SIDE_DISABLE_KERNELS", "0") in ("", "0"):
                warnings.warn(f"torchrec_side: CPU SIDE kernel {_status}; using the pure-torch paths",
                              stacklevel=3)
        _tried = True
        return _ok


def kernels_available() -> bool:
    """True if the registered CPU op can be used (builds it on the first call, about 20 s)."""
    return _load()


def kernel_status() -> str:
    """``"ok (torch.library op, openmp)"`` etc., or why the kernel is unavailable."""
    return _status


# ------------------------------------------------------------------------------ fake + autograd

_registered: bool = False


def _register_python_parts() -> None:
    global _registered
    if _registered:
        return

    @torch.library.register_fake("torchrec_side::sid_pool_grouped")
    def _pool_fake(sids: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor], table: torch.Tensor,
                   limits: torch.Tensor, check: bool, hist_min: int, threads: int) -> torch.Tensor:
        torch._check(sids.dim() == 1, lambda: "SIDE: sids must be 1-D")
        torch._check(offsets.dim() == 1, lambda: "SIDE: offsets must be 1-D")
        torch._check(table.dim() == 2, lambda: "SIDE: table must be 2-D")
        return table.new_empty(offsets.shape[0] - 1, table.shape[1])

    @torch.library.register_fake("torchrec_side::sid_embed_grouped")
    def _embed_fake(sids: torch.Tensor, table: torch.Tensor, limits: torch.Tensor, check: bool,
                    threads: int) -> torch.Tensor:
        torch._check(sids.dim() == 1, lambda: "SIDE: sids must be 1-D")
        return table.new_empty(sids.shape[0], table.shape[1])

    def _setup(ctx, inputs, output) -> None:  # pyre-ignore[2]
        sids, offsets, weights, table, limits, _check, _hist, threads = inputs
        ctx.weighted = weights is not None
        ctx.threads = threads
        ctx.save_for_backward(sids, offsets, table, limits)

    def _backward(ctx, grad):  # pyre-ignore[2,3]
        sids, offsets, table, limits = ctx.saved_tensors
        grad_w = None
        if ctx.weighted and ctx.needs_input_grad[2]:
            emb = torch.ops.torchrec_side.sid_embed_grouped(sids, table, limits, False, ctx.threads)  # [N, D]
            lengths = offsets[1:] - offsets[:-1]
            per_event = torch.repeat_interleave(grad, lengths.long(), dim=0, output_size=sids.shape[0])
            grad_w = (emb * per_event).sum(1)
        return None, None, grad_w, None, None, None, None, None

    torch.library.register_autograd("torchrec_side::sid_pool_grouped", _backward, setup_context=_setup)
    _registered = True


# ------------------------------------------------------------------------------ thread choice


class ThreadTuner:
    """Picks 1 or ``torch.get_num_threads()`` kernel threads by measured time per unit of work.

    On an idle machine the threaded kernel is faster; on a machine shared with other busy processes
    a preempted helper thread stalls the whole call, and one thread measured 3-4x faster (2-core box,
    ``benchmarks/lookup.py``). Each bag is pooled by one thread either way, so results do not depend
    on the choice. Both candidates are tried first, then the faster (exponential moving average of
    seconds per unit of work) is used and the other re-probed every ``probe_every`` calls.

    Args:
        probe_every (int): calls between re-probes of the slower candidate.
        alpha (float): moving-average weight of a new measurement.
    """

    def __init__(self, probe_every: int = 16, alpha: float = 0.3) -> None:
        self.probe_every = probe_every
        self.alpha = alpha
        self.rate: Dict[int, float] = {}
        self.calls = 0
        self.lock = threading.Lock()

    def choose(self, work: int, min_work: int) -> int:
        n = torch.get_num_threads()
        if n <= 1 or work < min_work:
            return 1
        with self.lock:
            self.rate = {k: v for k, v in self.rate.items() if k in (1, n)}
            self.calls += 1
            for cand in (n, 1):
                if cand not in self.rate:
                    return cand
            best = min((1, n), key=lambda k: self.rate[k])
            if self.calls % self.probe_every == 0:
                return n if best == 1 else 1
            return best

    def record(self, threads: int, seconds: float, work: int) -> None:
        if work <= 0:
            return
        r = seconds / work
        with self.lock:
            old = self.rate.get(threads)
            self.rate[threads] = r if old is None else (1 - self.alpha) * old + self.alpha * r


_pool_tuner = ThreadTuner()
_embed_tuner = ThreadTuner()


def kernel_threads(work: int = 1 << 62, tuner: Optional[ThreadTuner] = None, min_work: int = 0) -> int:
    """Threads for an eager kernel call: ``$TORCHREC_SIDE_KERNEL_THREADS`` if set, else the measured
    choice between 1 and ``torch.get_num_threads()`` (see :class:`ThreadTuner`)."""
    env = os.environ.get("TORCHREC_SIDE_KERNEL_THREADS")
    if env:
        return max(1, int(env))
    if tuner is None:
        return torch.get_num_threads()
    return tuner.choose(work, min_work)


# ------------------------------------------------------------------------------ calls


def pool(sids: torch.Tensor, offsets: torch.Tensor, weights: Optional[torch.Tensor], table: torch.Tensor,
         limits: torch.Tensor, check: bool = True, hist_min: int = HIST_MIN_WORK) -> torch.Tensor:
    """Pooled sum of byte-grouped SIDs over bags with the registered op.

    Args:
        sids (torch.Tensor): int64 ``[N]`` packed SIDs (byte ``g`` = group ``g``'s value).
        offsets (torch.Tensor): ``[B + 1]`` bag offsets (checked by the op: start 0, monotone, end N).
        weights (Optional[torch.Tensor]): ``[N]`` per-event weights (differentiable), or None.
        table (torch.Tensor): float32 ``[G * 256, D]`` group tables, stacked.
        limits (torch.Tensor): uint8 ``[G]``: largest valid value of byte ``g``.
        check (bool): validate the bytes while pooling (a ``ValueError`` names the first bad SID).
        hist_min (int): bags with ``n * G >= hist_min`` use the histogram method.

    Returns:
        torch.Tensor: ``[B, D]`` float32 sums.

    Example::

        out = pool(sids, offsets, None, tables.grouped(codec), tables.group_max(codec))
    """
    if not _load():
        raise RuntimeError(f"SIDE CPU kernel {_status}")
    if torch.compiler.is_compiling():
        return torch.ops.torchrec_side.sid_pool_grouped(sids, offsets, weights, table, limits, check, hist_min, 0)
    work = sids.numel() * limits.numel()
    threads = kernel_threads(work, _pool_tuner, PARALLEL_MIN_WORK)
    t0 = time.perf_counter()
    out = torch.ops.torchrec_side.sid_pool_grouped(sids, offsets, weights, table, limits, check, hist_min, threads)
    if work >= PARALLEL_MIN_WORK:
        _pool_tuner.record(threads, time.perf_counter() - t0, work)
    return out


def embed(sids: torch.Tensor, table: torch.Tensor, limits: torch.Tensor, check: bool = True) -> torch.Tensor:
    """Per-event embeddings ``[N, D]`` of byte-grouped SIDs with the registered op (see :func:`pool`)."""
    if not _load():
        raise RuntimeError(f"SIDE CPU kernel {_status}")
    if torch.compiler.is_compiling():
        return torch.ops.torchrec_side.sid_embed_grouped(sids, table, limits, check, 0)
    work = sids.numel() * limits.numel() * table.shape[1]
    threads = kernel_threads(work, _embed_tuner, PARALLEL_MIN_WORK * 64)
    t0 = time.perf_counter()
    out = torch.ops.torchrec_side.sid_embed_grouped(sids, table, limits, check, threads)
    if work >= PARALLEL_MIN_WORK * 64:
        _embed_tuner.record(threads, time.perf_counter() - t0, work)
    return out
