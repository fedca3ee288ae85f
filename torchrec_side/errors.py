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

__all__ = ["TorchRecSideError"]


class TorchRecSideError(Exception):
    """Bad input the package detected: a config, artifact, store, request, checkpoint or run
    folder that cannot be used. The message names the file, option or column."""
