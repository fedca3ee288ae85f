# pyre-strict
"""Atomic, verified distributed checkpoints with ``torch.distributed.checkpoint`` (DCP).

Layout, in a run's ``checkpoints/`` folder::

    step_00000500/            complete: DCP files (.metadata, __<rank>_0.distcp), trainer_state.json,
                              manifest.json (written last)
    .step_00001000.tmp/       being written (or left by a crash): never read, removed at start
    .rejected.step_00000750.<time>/   failed verification: moved aside at start, never read again

Saving: every rank writes its shards into ``.step_<N>.tmp`` with ``dcp.save``; after a barrier
(all ranks finished writing) rank 0 adds ``trainer_state.json`` (step, epoch position, ...) and
then, **last**, ``manifest.json``: every file of the folder with its size and SHA-256 (hashed in
chunks), written atomically. It renames the folder to ``step_<N>`` (one atomic ``rename``) and
deletes old checkpoints beyond ``keep`` (``pinned`` steps, e.g. the best epoch's, are kept); a
barrier ends the save. All ranks must see the same folder (one machine, or a shared filesystem).

Verifying: a checkpoint is *complete* only if its manifest exists and the folder holds exactly
the files it lists, with their sizes (:meth:`CheckpointManager.is_complete`, cheap) and their
SHA-256 (:meth:`CheckpointManager.verify`, full). :meth:`CheckpointManager.latest` returns the
newest checkpoint that passes the full check, skipping (and logging) damaged ones, so a truncated
latest checkpoint falls back to the previous one; :meth:`CheckpointManager.load` verifies again on
every rank before DCP's reader opens the folder.

Trust: DCP's reader unpickles ``.metadata``. The manifest refuses files that differ from what the
trainer wrote (truncation, bit rot, a file replaced or planted after the save), but whoever can
write the run folder can also write a matching manifest: a run folder is trusted input, like a
pickle file (checkpoint and resume: docs/design.md section 6).

Example::

    ckpt = CheckpointManager(run_dir / "checkpoints", keep=2)
    ckpt.save(step, {"model": dmp.state_dict(), "optim": opt.state_dict()}, {"step": step})
    path = ckpt.latest()
    state = ckpt.load(path, {"model": dmp.state_dict(), "optim": opt.state_dict()})
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple, Union

import torch.distributed as dist

from torchrec_side.errors import TorchRecSideError

__all__ = ["CheckpointManager", "CheckpointError", "TRAINER_STATE", "MANIFEST", "file_sha256"]

logger: logging.Logger = logging.getLogger(__name__)

#: File of the trainer's own state inside a checkpoint (written by rank 0 after DCP's files).
TRAINER_STATE: str = "trainer_state.json"
#: The checkpoint's manifest (file list, sizes, SHA-256), written last by rank 0.
MANIFEST: str = "manifest.json"
MANIFEST_FORMAT: str = "torchrec-side-checkpoint"
MANIFEST_VERSION: int = 1
_NAME = re.compile(r"^step_(\d{8,})$")
_CHUNK: int = 1 << 20
_REJECTED: str = ".rejected."


class CheckpointError(TorchRecSideError, RuntimeError):
    """A checkpoint does not match its manifest (or has none) and is refused."""


def file_sha256(path: Path, chunk: int = _CHUNK) -> str:
    """SHA-256 hex digest of a file, read in ``chunk``-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _files(folder: Path) -> Dict[str, Path]:
    """``{relative posix path: path}`` of every regular file below ``folder`` but the manifest."""
    out: Dict[str, Path] = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = Path(root) / n
            rel = p.relative_to(folder).as_posix()
            if rel != MANIFEST:
                out[rel] = p
    return out


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _step(path: Path) -> int:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else -1


class CheckpointManager:
    """Saves, finds, verifies and loads complete checkpoints of a run.

    Args:
        directory (Union[str, os.PathLike]): the run's ``checkpoints/`` folder.
        keep (int): complete checkpoints to keep (the newest), besides ``pinned`` ones.

    Attributes:
        pinned (Set[int]): steps never deleted by the ``keep`` pruning (the trainer pins the best
            validation epoch's checkpoint).

    Example::

        ckpt = CheckpointManager("runs/x/checkpoints", keep=2)
        ckpt.cleanup()                    # rank 0, at start: drop temporary folders, set damaged ones aside
        latest = ckpt.latest()            # newest verified checkpoint (Path) or None
    """

    def __init__(self, directory: Union[str, "os.PathLike[str]"], keep: int = 2) -> None:
        self.directory: Path = Path(directory)
        self.keep: int = max(1, keep)
        self.pinned: Set[int] = set()
        self._verified: Dict[Path, Tuple[Tuple[Any, ...], Optional[str]]] = {}

    # ---- verification

    @staticmethod
    def check(path: Path, full: bool = True) -> Optional[str]:
        """What is wrong with checkpoint ``path`` (``None``: it matches its manifest).

        Args:
            path (Path): a ``step_<N>`` folder.
            full (bool): also compare SHA-256 digests (else names and sizes only).

        Returns:
            Optional[str]: the first problem found, in words, or ``None``.
        """
        if not _NAME.match(path.name):
            return f"{path.name} is not a step_<N> checkpoint name"
        mpath = path / MANIFEST
        if not mpath.is_file():
            return f"no {MANIFEST} (an unfinished save, or not written by this trainer)"
        try:
            man = json.loads(mpath.read_text())
            listed = man["files"]
            if man.get("format") != MANIFEST_FORMAT or not isinstance(listed, dict):
                raise ValueError(f"format {man.get('format')!r}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"unreadable {MANIFEST}: {e}"
        if man.get("step") != _step(path):
            return f"{MANIFEST} is of step {man.get('step')}, the folder is {path.name}"
        found = _files(path)
        missing = sorted(set(listed) - set(found))
        extra = sorted(set(found) - set(listed))
        if missing:
            return f"files listed in {MANIFEST} are missing: {missing}"
        if extra:
            return f"files not in {MANIFEST} (not written by the trainer): {extra}"
        for rel, info in listed.items():
            size = found[rel].stat().st_size
            if size != int(info["size"]):
                return f"{rel} has {size} bytes, {MANIFEST} says {int(info['size'])} (truncated or replaced)"
        if full:
            for rel, info in listed.items():
                digest = file_sha256(found[rel])
                if digest != info["sha256"]:
                    return f"{rel}: SHA-256 {digest[:12]}... differs from {MANIFEST}'s {str(info['sha256'])[:12]}..."
        return None

    @classmethod
    def is_complete(cls, path: Path) -> bool:
        """Named ``step_<N>``, with a manifest whose files are all there with their sizes (cheap)."""
        return cls.check(path, full=False) is None

    def verify(self, path: Path) -> Optional[str]:
        """Full check (sizes and SHA-256) of ``path``, cached while the folder's files are unchanged.

        Returns:
            Optional[str]: the problem, or ``None`` when the checkpoint matches its manifest.
        """
        try:
            sig = tuple(sorted((r, p.stat().st_size, p.stat().st_mtime_ns) for r, p in _files(path).items()))
            sig += (((path / MANIFEST).stat().st_mtime_ns,) if (path / MANIFEST).is_file() else ())
        except OSError as e:
            return f"cannot read: {e}"
        hit = self._verified.get(path)
        if hit is not None and hit[0] == sig:
            return hit[1]
        problem = self.check(path, full=True)
        self._verified[path] = (sig, problem)
        return problem

    # ---- listing

    def _candidates(self) -> List[Path]:
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.is_dir() and _NAME.match(p.name)]
        return sorted(found, key=_step)

    def complete(self) -> List[Path]:
        """Complete checkpoints (cheap check: manifest, names and sizes), oldest first."""
        return [p for p in self._candidates() if self.is_complete(p)]

    def latest(self) -> Optional[Path]:
        """The newest checkpoint that passes the full verification, or ``None``; damaged newer
        ones are skipped with a warning naming the problem and the checkpoint used instead."""
        skipped: List[str] = []
        for p in reversed(self._candidates()):
            problem = self.verify(p)
            if problem is None:
                if skipped:
                    logger.warning("falling back to checkpoint %s (newer ones fail verification: %s)", p.name,
                                   "; ".join(skipped))
                return p
            skipped.append(f"{p.name}: {problem}")
        if skipped:
            logger.warning("no checkpoint in %s passes verification: %s", self.directory, "; ".join(skipped))
        return None

    def cleanup(self) -> List[str]:
        """Rank 0, before training: removes temporary folders and ``step_<N>`` folders without a
        manifest (unfinished saves, debris); moves checkpoints whose files do not match their
        manifest aside to ``.rejected.step_<N>.<time>`` (kept for inspection, never read).

        Returns:
            List[str]: names removed or moved aside.
        """
        removed: List[str] = []
        if not self.directory.is_dir():
            return removed
        for p in sorted(self.directory.iterdir()):
            if not p.is_dir():
                continue
            if p.name.startswith(".step_"):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
            elif _NAME.match(p.name):
                problem = self.verify(p)
                if problem is None:
                    continue
                if not (p / MANIFEST).is_file():
                    shutil.rmtree(p, ignore_errors=True)
                    logger.warning("removed checkpoint folder %s: %s", p.name, problem)
                else:
                    aside = self.directory / f"{_REJECTED}{p.name}.{time.strftime('%Y%m%dT%H%M%S')}"
                    os.replace(p, aside)
                    logger.warning("checkpoint %s fails verification (%s); moved aside to %s, not used",
                                   p.name, problem, aside.name)
                removed.append(p.name)
        if removed:
            logger.warning("removed or set aside incomplete checkpoints: %s", removed)
        return removed

    # ---- save / load

    @staticmethod
    def _write_manifest(folder: Path, step: int) -> None:
        files = {rel: {"size": p.stat().st_size, "sha256": file_sha256(p)} for rel, p in sorted(_files(folder).items())}
        man = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "step": step, "files": files}
        tmp = folder / f".{MANIFEST}.tmp"
        with open(tmp, "w") as f:
            json.dump(man, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / MANIFEST)

    def save(self, step: int, app_state: Dict[str, Any], trainer_state: Dict[str, Any]) -> Path:
        """Writes a checkpoint of ``app_state`` (a state dict, sharded tensors allowed) at ``step``.

        Collective: every rank must call it with its own ``app_state``.

        Args:
            step (int): global step (the folder name).
            app_state (Dict[str, Any]): e.g. ``{"model": dmp.state_dict(), "optim": opt.state_dict()}``.
            trainer_state (Dict[str, Any]): JSON-serializable loop state (rank 0's is written).

        Returns:
            Path: the complete checkpoint folder.
        """
        import torch.distributed.checkpoint as dcp

        final = self.directory / f"step_{step:08d}"
        tmp = self.directory / f".step_{step:08d}.tmp"
        if _rank() == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        _barrier()
        dcp.save(app_state, checkpoint_id=str(tmp))
        _barrier()  # every rank's files are written before rank 0 lists and hashes them
        if _rank() == 0:
            state_tmp = tmp / f".{TRAINER_STATE}.tmp"
            with open(state_tmp, "w") as f:
                json.dump({**trainer_state, "step": step}, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(state_tmp, tmp / TRAINER_STATE)
            self._write_manifest(tmp, step)  # last: its presence marks the checkpoint complete
            old = self.directory / f".step_{step:08d}.old"
            if final.exists():  # a re-save of the same step: swap, so a complete copy always exists
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
            done = self.complete()
            for stale in done[: -self.keep]:
                if _step(stale) not in self.pinned:
                    shutil.rmtree(stale, ignore_errors=True)
        _barrier()
        return final

    def load(self, path: Path, app_state: Dict[str, Any]) -> Dict[str, Any]:
        """Verifies checkpoint ``path`` against its manifest on every rank, then loads it into
        ``app_state`` in place (collective) and returns its trainer state. The caller then calls
        ``load_state_dict`` of its modules / optimizers.

        Raises:
            CheckpointError: the folder does not match its manifest on some rank (nothing is
                handed to DCP's reader, which unpickles ``.metadata``).
        """
        import torch.distributed.checkpoint as dcp

        path = Path(path)
        problem = self.verify(path)
        problems: List[Optional[str]] = [problem]
        if dist.is_initialized() and dist.get_world_size() > 1:
            problems = [None] * dist.get_world_size()
            dist.all_gather_object(problems, problem)
        bad = [f"rank {r}: {p}" for r, p in enumerate(problems) if p is not None]
        if bad:
            raise CheckpointError(f"refusing checkpoint {path}: {'; '.join(bad)}")
        dcp.load(app_state, checkpoint_id=str(path))
        return json.loads((path / TRAINER_STATE).read_text())
