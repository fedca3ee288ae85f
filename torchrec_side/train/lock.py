# pyre-strict
"""One run per run folder: an exclusive ``fcntl.flock`` on ``<run_dir>/.lock``.

Two trainings started into the same run folder (same config, different overrides) would
otherwise both run, leaving one run's config and checkpoints beside the other's metrics with
interleaved logs. The trainer's rank 0 takes the lock before it touches anything in the folder
and holds it until the run ends (the kernel drops it when the process dies, so a crashed run
never leaves a stale lock). The lock file records who holds it (pid, host, start time); a second
run fails at start naming them. The file itself stays (deleting a lock file races with the next
taker); only the ``flock`` matters.

Under torchrun / TorchX only rank 0 locks: all ranks of one launch are one run. ``flock`` is
reliable on local filesystems; on network filesystems it depends on the server (NFSv4 maps it to
POSIX locks).

Example::

    with RunLock(run_dir):            # raises RunLockedError if another run holds it
        ...train...
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, Optional, Type, Union

from torchrec_side.errors import TorchRecSideError

__all__ = ["RunLock", "RunLockedError", "LOCK_FILE"]

logger: logging.Logger = logging.getLogger(__name__)

#: Name of the lock file inside a run folder.
LOCK_FILE: str = ".lock"


class RunLockedError(TorchRecSideError, RuntimeError):
    """Another process holds the run folder's lock."""


class RunLock:
    """An exclusive, non-blocking lock on a run folder.

    Args:
        run_dir (Union[str, os.PathLike]): the run folder (created if missing).
        purpose (str): what the holder does (recorded in the lock file).

    Raises:
        RunLockedError: (on :meth:`acquire`) the folder is locked by another process; the message
            names its pid, host and start time.

    Example::

        lock = RunLock("runs/train/x/seed0").acquire()
        try:
            ...
        finally:
            lock.release()
    """

    def __init__(self, run_dir: Union[str, "os.PathLike[str]"], purpose: str = "torchrec-side train") -> None:
        self.path: Path = Path(run_dir) / LOCK_FILE
        self.purpose = purpose
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> Dict[str, Any]:
        """What the lock file says about its holder (``{}`` if unreadable)."""
        try:
            return dict(json.loads(self.path.read_text() or "{}"))
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunLock":
        """Takes the lock (non-blocking) and writes this process's pid, host and start time into it."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            who = (f"pid {h.get('pid', '?')} on host {h.get('host', '?')}, started "
                   f"{h.get('started', '?')} ({h.get('purpose', '?')})") if h else "another process (no details written yet)"
            raise RunLockedError(
                f"run folder {self.path.parent} is in use by {who}: its lock {self.path} is held. Wait for that "
                f"run to end, stop it, or give this run another run_dir / name / seed"
            ) from None
        except OSError as e:  # e.g. ENOLCK: a filesystem without flock support
            os.close(fd)
            logger.warning("cannot lock run folder %s (%s): running without the one-run-per-folder guard",
                           self.path.parent, e)
            return self
        except BaseException:
            os.close(fd)
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "started_unix": time.time(), "purpose": self.purpose}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drops the lock (the file stays; its content is cleared)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.release()
