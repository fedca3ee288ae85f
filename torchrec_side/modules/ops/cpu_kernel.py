# pyre-strict
"""The C++ CPU kernels of ``torchrec_side::sid_pool`` / ``sid_embed``, built on first use.

The ops' schemas, fake (Meta) kernels, autograd and the default (pure-torch / Triton) kernels are
registered when :mod:`torchrec_side.modules.ops` is imported (:mod:`.library`). The C++ source
(``csrc/side_kernels.cpp``, package data) only holds ``TORCH_LIBRARY_IMPL(torchrec_side, CPU)``: it is
compiled once per machine with ``torch.utils.cpp_extension.load`` (JIT, ninja) into
``torchrec_side.io.cache_dir()/kernels`` (or ``$TORCHREC_SIDE_KERNEL_DIR``; a private folder: a
cached library is loaded only from a folder of this user that others cannot write, and only when
it matches the SHA-256 recorded when it was built) and loaded into the
process the first time a CPU call reaches the ops' default kernel (or :func:`kernels_available` is
called). From then on the dispatcher routes CPU calls straight to C++.

The kernels run on torch's intra-op thread pool (``at::parallel_for``, ``torch.get_num_threads()``
threads; each bag is pooled by one thread, so results do not depend on the count).

If there is no C++ compiler or ninja, the build fails, or ``TORCHREC_SIDE_DISABLE_KERNELS=1`` is
set, :func:`kernels_available` returns False and the ops keep running their pure-torch CPU
implementation (same results, slower); a warning says why, once.
"""

from __future__ import annotations

import os
import platform
import shutil
import threading
import warnings
from pathlib import Path
from typing import Optional

import torch

__all__ = [
    "KERNEL_VERSION",
    "SOURCE_PATH",
    "kernel_dir",
    "kernel_status",
    "kernels_available",
    "torch_uses_gomp",
]

KERNEL_VERSION: int = 10
SOURCE_PATH: Path = Path(__file__).resolve().parent / "csrc" / "side_kernels.cpp"

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


def disabled() -> bool:
    """True when ``TORCHREC_SIDE_DISABLE_KERNELS`` is set to something other than ``""`` / ``"0"``."""
    return os.environ.get("TORCHREC_SIDE_DISABLE_KERNELS", "0") not in ("", "0")


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


def _has_cpu_kernel() -> bool:
    return bool(torch._C._dispatch_has_kernel_for_dispatch_key("torchrec_side::sid_pool", "CPU"))


def _safe_folder(path: Path) -> None:
    """Refuses a build folder another user could write (they could plant the library we load)."""
    if not hasattr(os, "getuid"):
        return
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise RuntimeError(f"kernel build folder {path} is not owned by this user or is group/world-writable; "
                           "refusing to load a library from it (set $TORCHREC_SIDE_KERNEL_DIR to a private folder)")


def _build_and_load() -> None:
    """Builds (or reuses) the library and loads it, checking what a reuse would load.

    The build folder is named by the kernel version, torch's version and the source's SHA-256,
    must belong to this user and not be writable by others, and the built library's SHA-256 is
    recorded beside it (``<lib>.sha256``) after each build: a cached library that does not match
    its record (a killed build, a damaged or replaced file) is deleted and built again.
    """
    import hashlib

    from torch.utils import cpp_extension

    from torchrec_side.io import write_text

    tag = f"torchrec_side_kernels_v{KERNEL_VERSION}"
    src = hashlib.sha256(SOURCE_PATH.read_bytes()).hexdigest()[:12]
    root = kernel_dir()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    build = root / f"{tag}_torch{torch.__version__.replace('+', '_')}_{src}"
    build.mkdir(exist_ok=True, mode=0o700)
    _safe_folder(root)
    _safe_folder(build)
    lib, record = build / f"{tag}.so", build / f"{tag}.so.sha256"

    def digest() -> str:
        return hashlib.sha256(lib.read_bytes()).hexdigest()

    if lib.exists() and (not record.is_file() or record.read_text().strip() != digest()):
        lib.unlink()  # not the library this process built, or damaged: build it again
    # at::parallel_for runs on torch's own pool (OpenMP in the usual builds): build against the same
    omp = ["-fopenmp"] if torch_uses_gomp() else []
    cpp_extension.load(
        name=tag, sources=[str(SOURCE_PATH)], extra_cflags=["-O3", "-std=c++17"] + omp, extra_ldflags=omp,
        build_directory=str(build), is_python_module=False, verbose=False,
    )
    if lib.is_file():  # what this process loaded (ninja may have rebuilt it for a newer source file)
        now = digest()
        if not record.is_file() or record.read_text().strip() != now:
            write_text(record, now + "\n")


def _load() -> bool:
    global _ok, _tried, _status
    if _tried:
        return _ok
    with _lock:
        if _tried:
            return _ok
        try:
            # the schemas must exist before the library's TORCH_LIBRARY_IMPL is loaded
            import torchrec_side.modules.ops.library  # noqa: F401

            if disabled():
                raise RuntimeError("disabled by TORCHREC_SIDE_DISABLE_KERNELS")
            if not _has_cpu_kernel():
                missing = _compiler_missing()
                if missing:
                    raise RuntimeError(missing)
                _build_and_load()
            if not _has_cpu_kernel():
                raise RuntimeError("the built library registered no CPU kernel for torchrec_side::sid_pool")
            _ok = True
            _status = f"ok (C++ CPU kernel, at::parallel_for, {torch.get_num_threads()} threads)"
        except Exception as e:  # any failure means: the ops keep their pure-torch CPU implementation
            _ok = False
            _status = f"unavailable: {str(e).strip()[-1500:]}"
            if not disabled():
                warnings.warn(f"torchrec_side: CPU SIDE kernel {_status}; the SIDE ops use pure torch on CPU",
                              stacklevel=3)
        _tried = True
        return _ok


def kernels_available() -> bool:
    """True if the C++ CPU kernels are loaded (builds them on the first call, about 20-60 s)."""
    return _load()


def kernel_status() -> str:
    """``"ok (C++ CPU kernel, ...)"``, ``"not built yet"``, or why the C++ kernel is unavailable."""
    return _status
