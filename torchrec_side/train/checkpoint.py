# pyre-strict
"""Atomic distributed checkpoints with ``torch.distributed.checkpoint`` (DCP).

Layout, in a run's ``checkpoints/`` folder::

    step_00000500/            complete: DCP files (.metadata, __<rank>_0.distcp) + trainer_state.json
    .step_00001000.tmp/       being written (or left by a crash): never read, removed at start

Saving: every rank writes its shards into ``.step_<N>.tmp`` with ``dcp.save``; then rank 0 adds
``trainer_state.json`` (step, epoch position, ...), renames the folder to ``step_<N>`` (one atomic
``rename``) and deletes old checkpoints beyond ``keep``; a barrier ends the save. A checkpoint is
*complete* when its name has no dot prefix and it holds both ``.metadata`` (written by DCP's
coordinator after all ranks' data) and ``trainer_state.json``; :meth:`CheckpointManager.latest`
picks the newest complete one, so a half-written checkpoint is never loaded. All ranks must see
the same folder (one machine, or a shared filesystem across machines).

Example::

    ckpt = CheckpointManager(run_dir / "checkpoints", keep=2)
    ckpt.save(step, {"model": dmp.state_dict(), "optim": opt.state_dict()}, {"step": step})
    path = ckpt.latest()
    state = ckpt.load(path, {"model": dmp.state_dict(), "optim": opt.state_dict()})
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch.distributed as dist

__all__ = ["CheckpointManager", "TRAINER_STATE"]

logger: logging.Logger = logging.getLogger(__name__)

#: File of the trainer's own state inside a checkpoint (written last, by rank 0).
TRAINER_STATE: str = "trainer_state.json"
_NAME = re.compile(r"^step_(\d{8,})$")


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


class CheckpointManager:
    """Saves, finds and loads complete checkpoints of a run.

    Args:
        directory (Union[str, os.PathLike]): the run's ``checkpoints/`` folder.
        keep (int): complete checkpoints to keep (the newest).

    Example::

        ckpt = CheckpointManager("runs/x/checkpoints", keep=2)
        ckpt.cleanup()                    # rank 0, at start: drop temporary / incomplete folders
        latest = ckpt.latest()            # Path or None
    """

    def __init__(self, directory: Union[str, "os.PathLike[str]"], keep: int = 2) -> None:
        self.directory: Path = Path(directory)
        self.keep: int = max(1, keep)

    @staticmethod
    def is_complete(path: Path) -> bool:
        """Named ``step_<N>``, with DCP's ``.metadata`` and ``trainer_state.json``."""
        return bool(_NAME.match(path.name)) and (path / ".metadata").is_file() and (path / TRAINER_STATE).is_file()

    def complete(self) -> List[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.is_dir() and self.is_complete(p)]
        return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))  # type: ignore[union-attr]

    def latest(self) -> Optional[Path]:
        """The newest complete checkpoint, or ``None``."""
        done = self.complete()
        return done[-1] if done else None

    def cleanup(self) -> List[str]:
        """Removes temporary and incomplete checkpoint folders (call on rank 0 before training).

        Returns:
            List[str]: names removed.
        """
        removed: List[str] = []
        if not self.directory.is_dir():
            return removed
        for p in self.directory.iterdir():
            if p.is_dir() and not self.is_complete(p) and (p.name.startswith(".step_") or _NAME.match(p.name)):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        if removed:
            logger.warning("removed incomplete checkpoints: %s", sorted(removed))
        return removed

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
        if _rank() == 0:
            state_tmp = tmp / f".{TRAINER_STATE}.tmp"
            with open(state_tmp, "w") as f:
                json.dump({**trainer_state, "step": step}, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(state_tmp, tmp / TRAINER_STATE)
            old = self.directory / f".step_{step:08d}.old"
            if final.exists():  # a re-save of the same step: swap, so a complete copy always exists
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
            for old in self.complete()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        _barrier()
        return final

    def load(self, path: Path, app_state: Dict[str, Any]) -> Dict[str, Any]:
        """Loads checkpoint ``path`` into ``app_state`` in place (collective) and returns its
        trainer state. The caller then calls ``load_state_dict`` of its modules / optimizers."""
        import torch.distributed.checkpoint as dcp

        if not self.is_complete(path):
            raise FileNotFoundError(f"{path} is not a complete checkpoint")
        dcp.load(app_state, checkpoint_id=str(path))
        return json.loads((path / TRAINER_STATE).read_text())
