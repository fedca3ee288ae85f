"""Files of the project: the cache folder, and atomic artifact writing (nothing half-written survives a
crash or Ctrl-C)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Union

import torch

PathLike = Union[str, "os.PathLike[str]"]

#: Environment variable naming the cache folder (data wheel, text embeddings, compiled kernels).
CACHE_ENV: str = "TORCHREC_SIDE_CACHE"


def cache_dir() -> Path:
    """The torchrec-side cache folder (not created by this call).

    Returns:
        Path: ``$TORCHREC_SIDE_CACHE`` when set and non-empty, else ``~/.cache/torchrec_side``.

    Example::

        >>> cache_dir()  # doctest: +SKIP
        PosixPath('/root/.cache/torchrec_side')
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "torchrec_side"


class ArtifactError(ValueError):
    """A saved artifact is missing, corrupt, of another format or version, or mismatched."""


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yields a temporary file path beside ``path``; on success it replaces ``path`` atomically.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path``
    keeps its previous content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yields a temporary folder beside ``path``; on success it takes ``path``'s place.

    A previous folder at ``path`` stays intact until the new one is complete; then it is swapped
    out with two renames and deleted. On failure the temporary folder is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        old = target.parent / f".{target.name}.{uuid.uuid4().hex}.old"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: PathLike, obj: object) -> None:
    """Writes ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: PathLike, text: str) -> None:
    """Writes ``text``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(fig: Any, path: PathLike, dpi: int = 120) -> None:
    """Saves a matplotlib figure atomically, in the format of ``path``'s suffix (PNG by default)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)


def save_tensors(path: PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    """Saves tensors (made contiguous, on CPU) and string metadata as one safetensors file, atomically."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=dict(metadata))


def load_tensors(path: PathLike) -> tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Loads a safetensors file written by :func:`save_tensors`; raises ArtifactError if unreadable."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"artifact file not found: {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several exception types for corrupt files
        raise ArtifactError(f"corrupt or unreadable artifact {p}: {e}") from e
    return tensors, meta
