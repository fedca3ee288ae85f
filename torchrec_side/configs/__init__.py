# pyre-strict
"""The YAML configs that ship inside the package (``torchrec_side/configs/<world>/<name>.yaml``).

Every ``--config`` of the command line, and :func:`torchrec_side.config.load_config`, accepts
either a file that exists or a packaged name; packaged names are read through
:mod:`importlib.resources`, so nothing depends on the repository layout or the current folder:

* ``ml100k/dlrm_side`` or ``ml100k/dlrm_side.yaml``: the packaged config;
* ``configs/ml100k/dlrm_side.yaml`` (the old repository path) when no such file exists in the
  current folder: the part after the last ``configs/`` is looked up in the package;
* any other existing file: used as it is.

Worlds: ``ml100k`` (MovieLens-100K, docs/design.md section 7) and ``adsworld`` (the simulated
ads world, docs/design.md section 7c).

Example::

    from torchrec_side.configs import resolve_config, packaged_configs
    path = resolve_config("ml100k/dlrm_side")          # a real file inside the installed package
    "adsworld/dlrm_side" in packaged_configs()         # True
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import List, Union

__all__ = ["resolve_config", "packaged_configs", "read_config_text", "is_packaged_name"]

PathLike = Union[str, "os.PathLike[str]"]


def _root() -> Path:
    # a regular (or editable) install: the package folder is a real directory
    return Path(str(resources.files("torchrec_side.configs")))


def packaged_configs() -> List[str]:
    """Names of every packaged config, ``"<world>/<name>"`` (no ``.yaml``), sorted."""
    root = _root()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.glob("*/*.yaml"))


def _packaged_name(spec: str) -> str:
    s = spec.replace(os.sep, "/")
    if "configs/" in s:
        s = s.rsplit("configs/", 1)[1]
    return s[:-5] if s.endswith(".yaml") else s


def is_packaged_name(spec: PathLike) -> bool:
    """Whether ``spec`` names a packaged config (and no existing file of that name is in the way)."""
    p = Path(spec)
    return not p.is_file() and (_root() / f"{_packaged_name(os.fspath(spec))}.yaml").is_file()


def resolve_config(spec: PathLike) -> Path:
    """The file a ``--config`` value means: an existing file, else the packaged config it names.

    Args:
        spec (PathLike): a file path, or a packaged name (``ml100k/dlrm_side``,
            ``ml100k/dlrm_side.yaml``, ``configs/ml100k/dlrm_side.yaml``).

    Returns:
        Path: an existing file.

    Raises:
        FileNotFoundError: neither a file nor a packaged config; the message lists the packaged names.

    Example::

        resolve_config("configs/ml100k/dlrm_control.yaml")   # from any folder
    """
    p = Path(spec)
    if p.is_file():
        return p
    cand = _root() / f"{_packaged_name(os.fspath(spec))}.yaml"
    if cand.is_file():
        return cand
    raise FileNotFoundError(
        f"config {os.fspath(spec)!r}: no such file, and not a packaged config; packaged configs: "
        + ", ".join(packaged_configs())
    )


def read_config_text(spec: PathLike) -> str:
    """The YAML text of :func:`resolve_config` ``(spec)``."""
    return resolve_config(spec).read_text()
