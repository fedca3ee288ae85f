# pyre-strict
"""Process-group set-up for 1 or more ranks: gloo on CPU, nccl on CUDA.

Launched by torchrun / TorchX (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` ... in the environment)
the default process group is initialized from the environment; launched as a plain process it
becomes a one-rank group (DMP and DCP need a process group even then).
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, TypeVar

import torch
import torch.distributed as dist

__all__ = ["DistEnv", "init_distributed", "shutdown_distributed", "run_on_rank0", "broadcast_object"]

T = TypeVar("T")


@dataclass
class DistEnv:
    """Where this process runs.

    Args:
        rank (int): global rank.
        world_size (int): number of ranks.
        local_rank (int): rank on this host.
        local_world_size (int): ranks on this host.
        device (torch.device): ``cuda:<local_rank>`` or ``cpu``.
        backend (str): ``"nccl"`` or ``"gloo"``.
        owns_group (bool): this module created the process group (and destroys it).
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    backend: str
    owns_group: bool

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now (for ``MASTER_PORT`` of local multi-process runs)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def init_distributed(device: str = "auto", timeout_s: int = 1800) -> DistEnv:
    """Initializes (or adopts) the default process group and picks the device.

    Args:
        device (str): ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        timeout_s (int): collective timeout.

    Returns:
        DistEnv: this process's rank, world and device.

    Raises:
        RuntimeError: ``device="cuda"`` without a visible GPU.

    Example::

        env = init_distributed("cpu")       # under torchrun: gloo over all ranks; else 1 rank
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is visible")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if use_cuda:
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    owns = False
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend=backend, timeout=timeout)
        else:
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        owns = True
    return DistEnv(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                   local_world_size=local_world, device=dev, backend=dist.get_backend(), owns_group=owns)


def shutdown_distributed(env: DistEnv) -> None:
    """Destroys the process group if :func:`init_distributed` created it."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Optional[T], src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (identity with one rank)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj  # type: ignore[return-value]
    box: List[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def run_on_rank0(fn: Callable[[], T]) -> T:
    """Runs ``fn`` on rank 0 only and returns its result on every rank.

    If ``fn`` raises on rank 0, every rank raises, so no rank is left waiting in a collective:
    the original on rank 0, a copy of it elsewhere (same type and message, so callers handle a
    config error the same way on every rank), or a ``RuntimeError`` naming it when the exception
    cannot be pickled.
    """
    import pickle

    rank = dist.get_rank() if dist.is_initialized() else 0
    result: Any = None
    error: Optional[BaseException] = None
    if rank == 0:
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - re-raised below on every rank
            error = e
    sent: Any = None
    if error is not None:
        try:
            copy = type(error)(*error.args)
            pickle.loads(pickle.dumps(copy))
            sent = copy
        except Exception:  # noqa: BLE001 - unpicklable or odd constructor: send the text
            sent = f"{type(error).__name__}: {error}"
    got = broadcast_object(sent)
    if error is not None:
        raise error
    if isinstance(got, BaseException):
        raise got
    if got is not None:
        raise RuntimeError(f"rank 0 failed: {got}")
    return broadcast_object(result)
