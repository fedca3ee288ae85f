# pyre-strict
"""The root of torchrec-side's own errors.

Every error class the package raises for bad input derives from :class:`TorchRecSideError` (and
keeps its historical built-in base, ``ValueError`` or ``RuntimeError``, so existing ``except``
clauses still catch it). ``torchrec-side`` turns any of them into one line on stderr and exit
status 2 (:func:`torchrec_side.cli.main`); set ``TORCHREC_SIDE_TRACEBACK=1`` to see the traceback.

Example::

    try:
        load_train_config("job.yaml")
    except TorchRecSideError as e:
        print(f"bad input: {e}")
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["TorchRecSideError", "MissingExtraError", "import_extra", "require_extra"]


class TorchRecSideError(Exception):
    """Bad input the package detected: a config, artifact, store, request, checkpoint or run
    folder that cannot be used. The message names the file, option or column."""


class MissingExtraError(TorchRecSideError, ImportError):
    """A feature needs an optional dependency that is not installed (a ``pip install`` extra)."""


def _missing(module: str, extra: str, purpose: str) -> MissingExtraError:
    return MissingExtraError(f"{purpose} needs {module.split('.')[0]}, which is not installed: "
                             f"pip install 'torchrec-side[{extra}]'")


def require_extra(module: str, extra: str, purpose: str) -> None:
    """Checks, without importing it, that ``module`` (of the ``[extra]`` extra) is installed, so a
    command refuses before any work rather than failing half-way. Arguments as :func:`import_extra`."""
    import importlib.util

    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise _missing(module, extra, purpose)


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, an optional dependency shipped in the ``torchrec-side[extra]`` extra.

    Args:
        module (str): the module to import, e.g. ``"matplotlib.pyplot"``.
        extra (str): the extra that installs it, e.g. ``"report"``.
        purpose (str): what needs it, for the message, e.g. ``"the report's plots"``.

    Raises:
        MissingExtraError: naming the module and the ``pip install`` line that adds it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name is None or module.split(".")[0] != e.name.split(".")[0]:
            raise  # the package is there but broken: keep the real error
        raise _missing(module, extra, purpose) from e
