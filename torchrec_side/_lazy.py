"""Lazy package exports: names are imported from their submodule on first access."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Mapping


def lazy_getattr(package: str, names: Mapping[str, str], namespace: Dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``name`` from ``names[name]`` (a module path relative
    to ``package``, e.g. ``".content"``) on first access and caches it in ``namespace``."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__
