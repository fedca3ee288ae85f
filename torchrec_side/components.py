# pyre-strict
"""TorchX components of torchrec-side.

``train`` launches ``python -m torchrec_side.train`` on every rank through
``torchx.components.dist.ddp`` (torchrun with c10d rendezvous), so the same component runs
locally and on TorchX's cluster schedulers. Everything after ``--`` goes to the trainer
(``--config`` and ``key=value`` overrides)::

    # 2 local ranks, in the current folder (gloo on CPU, nccl on GPUs)
    torchx run -s local_cwd torchrec_side/components.py:train --nproc 2 -- \\
        --config configs/ml100k/dlrm_sparse_id.yaml seed=3

    # Slurm: one heterogeneous-job group per node, run in the submit folder's environment (no
    # image); runs/ and the cache must be on a file system every node sees
    torchx run -s slurm torchrec_side/components.py:train --nnodes 2 --nproc 8 --gpu 8 \\
        --cpu 32 --memMB 200000 --env TORCHREC_SIDE_CACHE=/shared/cache -- \\
        --config configs/ml100k/dlrm_side.yaml seed=3

    # Kubernetes (Volcano; `pip install -e '.[kubernetes]'`): an image with torchrec-side installed,
    # submitted as it is with --workspace "" (without it TorchX first builds an image of the
    # working tree with a local docker daemon and pushes it to -cfg image_repo=...)
    torchx run -s kubernetes --workspace "" -cfg queue=default torchrec_side/components.py:train \\
        --image ghcr.io/me/torchrec-side:0.1.0 --nnodes 2 --nproc 8 --gpu 8 \\
        --mounts type=volume,src=shared-pvc,dst=/shared -- --config configs/ml100k/dlrm_side.yaml

    # what either would submit, without a cluster: add --dryrun after `run`
    # (tests/test_components.py checks the sbatch script and the Volcano job)

Form accepted by torchx 0.7.0 (checked): the component path is ``<file>.py:<function>``
(``torchrec_side/components.py:train`` from the repository root; from anywhere else, the
installed file: ``torchx run -s local_cwd "$(python -m torchrec_side.components)":train ...``,
which prints this file's path); TorchX 0.7 does not resolve ``module:function``, so
``torchrec-side demo`` builds the AppDef with :func:`train` and runs it through
``torchx.runner.get_runner()`` in-process (:mod:`torchrec_side.experiments.common`). Configs may
be packaged names (``--config ml100k/dlrm_side``, :mod:`torchrec_side.configs`) or files. Component options come before
``--``; the trainer's arguments, which start with ``--``, must follow a literal ``--``. Defaults
for ``torchx run`` (scheduler ``local_cwd``, ``log_dir``) are in the repository's
``.torchxconfig``. The launched command is ``torchrun ... -m torchrec_side.train ...``, so
``torchrun`` must be on ``PATH`` (activate the virtual environment). Equivalent without TorchX::

    torchrun --standalone --nproc_per_node 2 -m torchrec_side.train \\
        --config configs/ml100k/dlrm_sparse_id.yaml seed=3

A rerun of the same command resumes from the run folder's latest complete checkpoint (see
``torchrec_side.train``), which also makes ``--max_retries N`` restarts continue where they
stopped.
"""

# no "from __future__ import annotations": TorchX reads the real parameter types

from typing import Dict, List, Optional

import torchx
import torchx.specs as specs
from torchx.components import dist as torchx_dist

__all__ = ["train"]


def train(
    *script_args: str,
    nproc: int = 2,
    nnodes: int = 1,
    name: str = "torchrec-side-train",
    image: str = torchx.IMAGE,
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    h: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    max_retries: int = 0,
    rdzv_port: int = 29500,
    mounts: Optional[List[str]] = None,
) -> specs.AppDef:
    """Distributed training of one torchrec-side variant (``python -m torchrec_side.train``).

    Args:
        script_args: trainer arguments: ``--config PATH`` and ``key=value`` overrides.
        nproc: ranks per node.
        nnodes: nodes.
        name: job name.
        image: container image (ignored by ``local_cwd``, which runs in the current folder).
        cpu: CPUs per node (resource request).
        gpu: GPUs per node (resource request; use ``nproc == gpu``).
        memMB: memory per node in MB (resource request).
        h: a named TorchX resource (overrides cpu, gpu, memMB).
        env: extra environment variables, e.g. ``TORCHREC_SIDE_CACHE=/shared/cache``.
        max_retries: scheduler restarts on failure (each resumes from the latest checkpoint).
        rdzv_port: c10d rendezvous port on the first node (multi-node only).
        mounts: mounts for container schedulers (``type=bind,src=/host,dst=/job``).

    Returns:
        specs.AppDef: one role of ``nnodes`` replicas running torchrun with ``nproc`` ranks each.

    Example::

        torchx run -s local_cwd torchrec_side/components.py:train --nproc 2 -- \\
            --config configs/ml100k/dlrm_sparse_id.yaml seed=3
    """
    if nproc < 1 or nnodes < 1:
        raise ValueError(f"nproc and nnodes must be >= 1, got {nproc}, {nnodes}")
    return torchx_dist.ddp(
        *script_args,
        m="torchrec_side.train",
        image=image,
        name=name,
        h=h,
        cpu=cpu,
        gpu=gpu,
        memMB=memMB,
        j=f"{nnodes}x{nproc}",
        env=dict(env or {}),
        max_retries=max_retries,
        rdzv_port=rdzv_port,
        mounts=mounts,
    )


if __name__ == "__main__":  # prints the path TorchX's `<file>.py:train` form needs
    import os

    print(os.path.abspath(__file__))
