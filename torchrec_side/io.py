# pyre-strict
"""Files of the project: the cache folder, and atomic artifact writing (nothing half-written survives a
crash or Ctrl-C)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Collection, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch

from torchrec_side.errors import TorchRecSideError

PathLike = Union[str, "os.PathLike[str]"]

#: Environment variable naming the cache folder (data wheel, text embeddings, compiled kernels).
CACHE_ENV: str = "TORCHREC_SIDE_CACHE"


def cache_dir() -> Path:
    """The torchrec-side cache folder (not created by this call).

    Returns:
        Path: ``$TORCHREC_SIDE_CACHE`` when set and non-empty, else ``~/.cache/torchrec_side``.

    Raises:
        ArtifactError: the path exists and is not a folder.

    Example::

        >>> cache_dir()  # doctest: +SKIP
        PosixPath('/root/.cache/torchrec_side')
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "torchrec_side"
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"cache folder {path} ({CACHE_ENV} or ~/.cache/torchrec_side) is a file, not a folder")
    return path


class ArtifactError(TorchRecSideError, ValueError):
    """A saved artifact is missing, corrupt, of another format or version, or mismatched."""


#: Temporary and backup entries older than this are removed even when their writer's pid cannot
#: be checked (another host on a shared file system, or a reused pid).
STALE_AFTER_S: float = 6 * 3600.0

_HOST: str = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname() or "host")[:32] or "host"


def _entry_name(target: Path, kind: str) -> str:
    """``.<name>.<host>-<pid>.<random>.<kind>``: a temporary (``tmp``) or backup (``old``) entry."""
    return f".{target.name}.{_HOST}-{os.getpid()}.{uuid.uuid4().hex[:12]}.{kind}"


def _entries(target: Path, kind: str) -> List[Tuple[Path, str, int]]:
    """``(path, host, pid)`` of every temporary / backup entry of ``target`` (see :func:`_entry_name`)."""
    pat = re.compile(r"^\." + re.escape(target.name) + r"\.([A-Za-z0-9-]+)-(\d+)\.[0-9a-f]+\." + kind + "$")
    out: List[Tuple[Path, str, int]] = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return out
    for name in names:
        m = pat.match(name)
        if m:
            out.append((target.parent / name, m.group(1), int(m.group(2))))
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return False
    return True


def _is_stale(path: Path, host: str, pid: int, now: float) -> bool:
    """An entry is stale when its writer (this host, that pid) is gone, or it is older than
    :data:`STALE_AFTER_S`."""
    if host == _HOST and pid == os.getpid():
        return False
    try:
        age = now - path.lstat().st_mtime
    except OSError:
        return False
    if age > STALE_AFTER_S:
        return True
    return host == _HOST and not _pid_alive(pid)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover(path: PathLike) -> List[Path]:
    """Repairs what a killed :func:`atomic_dir` / :func:`atomic_path` write left beside ``path``.

    * ``path`` missing and a backup of it present (the writer died between its two renames):
      the newest backup is renamed back to ``path``;
    * temporary entries (``.<name>.<host>-<pid>.<hex>.tmp``) and leftover backups whose writer is
      gone (its pid no longer runs on this host), or that are older than :data:`STALE_AFTER_S`,
      are deleted. Entries of live writers are left alone.

    Called at the start of every :func:`atomic_dir` / :func:`atomic_path` write and by artifact
    loaders; safe to call at any time, errors of a read-only folder are ignored.

    Args:
        path: the artifact file or folder.

    Returns:
        List[Path]: the entries restored or removed.

    Example::

        recover("runs/tokenize/fused_dpca/tokenizer")   # before reading the artifact
    """
    target = Path(path)
    touched: List[Path] = []
    now = time.time()
    try:
        backups = [e for e in _entries(target, "old") if _is_stale(*e, now)]
        if not os.path.lexists(target) and backups:
            newest = max(backups, key=lambda e: e[0].lstat().st_mtime)
            os.replace(newest[0], target)
            touched.append(target)
            backups.remove(newest)
        for entry, _, _ in backups + [e for e in _entries(target, "tmp") if _is_stale(*e, now)]:
            _remove(entry)
            touched.append(entry)
    except OSError:
        pass
    return touched


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yields a temporary file path beside ``path``; on success it replaces ``path`` atomically.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path``
    keeps its previous content. The temporary name carries this process's pid, so one left by a
    killed process is removed by the next write (:func:`recover`).

    Args:
        path: the file to write.

    Example::

        with atomic_path("runs/x/metrics.json") as tmp:
            tmp.write_text("{}")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = target.parent / _entry_name(target, "tmp")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # artifacts are meant to be shared
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_replaceable(path: PathLike, marker: str) -> None:
    """Raises :class:`ArtifactError` unless ``path`` is free, an empty folder, or a folder holding
    ``marker`` (one :func:`atomic_dir` may replace); commands call it before long work.

    Example::

        check_replaceable("serve/dlrm_side", "serving.json")
    """
    target = Path(path)
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise ArtifactError(f"{target}: exists and is not a folder; refusing to replace it (choose another path)")
    if not (target / marker).is_file() and any(target.iterdir()):
        raise ArtifactError(f"{target}: a folder that is not one this command writes (no {marker}); refusing to "
                            "replace it: remove it yourself or choose another path")


def file_in_the_way(path: PathLike) -> Optional[Path]:
    """The first of ``path`` and its parents that exists and is not a folder (a file or a link
    where a folder must go), or None."""
    target = Path(path)
    return next((q for q in (target, *target.parents) if os.path.lexists(q) and not q.is_dir()), None)


def check_own_folder(path: PathLike, own: Collection[str], what: str) -> None:
    """Raises :class:`ArtifactError` unless ``path`` is free, or a folder holding nothing but
    entries named in ``own`` (what this command writes there) and this module's temporary
    entries; a command that writes several files into a folder calls it before any work, so a
    user's folder is never written into.

    Example::

        check_own_folder("runs/tokenize/fused", {"config.yaml", "tokenizer", "stats.json"}, "tokenizer run folder")
    """
    target = Path(path)
    blocker = file_in_the_way(target)
    if blocker is not None:
        raise ArtifactError(f"{target}: {blocker} exists and is not a folder (choose another path)")
    if not target.is_dir():
        return
    foreign = sorted(q.name for q in target.iterdir() if q.name not in own and not q.name.startswith("."))
    if foreign:
        raise ArtifactError(f"{target}: holds {foreign[:5]}, which a {what} does not write; refusing to write into it "
                            "(remove them yourself or choose another path)")


#: Parquet schema-metadata key naming what kind of torchrec-side file it is (``scores``,
#: ``requests``), so a command replaces only a file of its own kind (:func:`check_file_replaceable`).
PARQUET_KIND_KEY: bytes = b"torchrec_side.kind"


def parquet_kind(path: PathLike) -> str:
    """The :data:`PARQUET_KIND_KEY` of a Parquet file's schema ("" when absent or unreadable)."""
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(str(path)).metadata or {}
    except Exception:  # not Parquet, truncated, unreadable: not ours
        return ""
    return meta.get(PARQUET_KIND_KEY, b"").decode("utf-8", "replace")


def check_file_replaceable(path: PathLike, what: str, ours: Callable[[Path], bool], overwrite: bool = False,
                           option: str = "--out") -> None:
    """Raises :class:`ArtifactError` unless the file ``path`` is free, is a file of this command's
    kind (``ours(path)``), or ``overwrite`` is set; a folder or link is never replaced.

    Args:
        path: the output file.
        what: what the command writes there, for the message (e.g. ``"a scores file"``).
        ours: True when an existing file is one this kind of command wrote.
        overwrite: the user's explicit ``--overwrite``.
        option: the option that named ``path``, for the message.

    Example::

        check_file_replaceable("scores.parquet", "a scores file", lambda p: parquet_kind(p) == "scores")
    """
    target = Path(path)
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_file():
        raise ArtifactError(f"{option} {target}: exists and is not a file; refusing to replace it (choose another path)")
    if not overwrite and not ours(target):
        raise ArtifactError(f"{option} {target}: exists and is not {what} this command wrote; refusing to overwrite "
                            "it (choose another path, or pass --overwrite)")


@contextmanager
def atomic_dir(path: PathLike, marker: str) -> Iterator[Path]:
    """Yields a temporary folder beside ``path``; on success it takes ``path``'s place.

    Only a folder this kind of artifact wrote is ever replaced: an existing ``path`` must be an
    empty folder or hold ``marker`` (the artifact's own metadata file), else
    :class:`ArtifactError` is raised before anything is written, so ``--out`` pointed at a user's
    folder, a run folder or an artifact of another kind deletes nothing.

    A previous folder at ``path`` stays intact until the new one is complete. The swap is: rename
    the old folder to a backup name, rename the new folder to ``path``, delete the backup. A
    process killed between the two renames leaves the old artifact under the backup name;
    :func:`recover` (run by the next save or load) renames it back. Temporary folders of killed
    saves are removed the same way. On an exception the temporary folder is removed at once.

    Args:
        path: the folder to write.
        marker: the file name every folder of this artifact kind holds.

    Example::

        with atomic_dir("runs/tok/tokenizer", "tokenizer.json") as tmp:
            (tmp / "tokenizer.json").write_text("{}")
    """
    target = Path(path)
    recover(target)
    check_replaceable(target, marker)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / _entry_name(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if os.path.lexists(target):
            old = target.parent / _entry_name(target, "old")
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
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


#: safetensors metadata key holding the SHA-256 of the tensor payload (see :func:`tensors_sha256`).
PAYLOAD_SHA256: str = "payload_sha256"


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of named tensors: names, dtypes, shapes and bytes, in sorted name order.

    Args:
        tensors: ``{name: tensor}``; any device, any layout (read as contiguous CPU bytes).

    Returns:
        str: 64 hex digits; equal for equal tensors whatever the dict order.

    Example::

        tensors_sha256({"w": torch.zeros(2, 3)})
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_tensors(path: PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    """Saves tensors (made contiguous, on CPU) and string metadata as one safetensors file, atomically.

    The metadata also records :data:`PAYLOAD_SHA256`, the checksum :func:`load_tensors` verifies.

    Args:
        path: the ``.safetensors`` file.
        tensors: ``{name: tensor}``.
        metadata: ``{key: string}`` stored in the file's header.
    """
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = dict(metadata)
    meta[PAYLOAD_SHA256] = tensors_sha256(flat)
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=meta)


def tensors_metadata(path: PathLike) -> Dict[str, str]:
    """The string metadata of a safetensors file's header ({} when the file is not readable as one)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # not safetensors, truncated, unreadable
        return {}


def load_tensors(path: PathLike) -> tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Loads a safetensors file written by :func:`save_tensors`.

    When the header records :data:`PAYLOAD_SHA256` (every file this version writes), the tensors
    are checked against it; a file without it (older versions) loads unchecked; callers can tell
    by the key's absence from the returned metadata.

    Args:
        path: the ``.safetensors`` file.

    Returns:
        ``({name: tensor}, metadata)``.

    Raises:
        ArtifactError: missing, unreadable or corrupt file, or a checksum mismatch (names the file).
    """
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
    want = meta.get(PAYLOAD_SHA256)
    if want is not None and tensors_sha256(tensors) != want:
        raise ArtifactError(
            f"corrupt artifact {p}: SHA-256 of its tensors differs from the checksum recorded at save "
            "(the file was edited or damaged)"
        )
    return tensors, meta
