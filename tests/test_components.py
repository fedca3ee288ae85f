# pyre-strict
"""The TorchX component on cluster schedulers: ``torchx run --dryrun -s slurm`` and
``-s kubernetes`` produce the sbatch script / Volcano job a user would submit (replicas,
resources, image, environment, the torchrun command), without a cluster."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

import torchrec_side.components as components

ROOT: Path = Path(components.__file__).resolve().parent.parent
COMPONENT = "torchrec_side/components.py:train"
TRAINER_ARGS = ["--", "--config", "configs/ml100k/dlrm_side.yaml", "seed=3"]


def _check_torchrun(command: str, endpoint_var: str) -> None:
    """``command`` (what ``bash -c`` runs) is torchrun over 2 nodes x 4 ranks of the trainer."""
    argv = shlex.split(command)
    assert argv[0] == "torchrun"
    m = argv.index("-m")
    opts = dict(zip(argv[1:m:2], argv[2:m:2]))
    assert opts["--nnodes"] == "2" and opts["--nproc_per_node"] == "4" and opts["--rdzv_backend"] == "c10d"
    assert opts["--rdzv_endpoint"] == f"${{{endpoint_var}:=localhost}}:29500"
    assert argv[m + 1 :] == ["torchrec_side.train", "--config", "configs/ml100k/dlrm_side.yaml", "seed=3"]


def _srun_commands(script: str) -> List[str]:
    """The ``bash -c`` argument of each srun step of an sbatch script."""
    out = []
    for line in script.replace(":\\\n", "\n").splitlines():
        line = line.strip().removesuffix(":\\").strip()
        if line.startswith(("srun ", "--output=")):
            argv = shlex.split(line)
            out.append(argv[argv.index("-c") + 1])
    return out


def _args(gpu: int = 4) -> List[str]:
    return [
        "--nnodes", "2", "--nproc", "4", "--gpu", str(gpu), "--cpu", "16", "--memMB", "65536",
        "--image", "ghcr.io/acme/torchrec-side:0.1.0", "--env", "TORCHREC_SIDE_CACHE=/shared/cache",
        "--max_retries", "2",
    ]


def _dryrun(scheduler: str, args: List[str], cfg: Dict[str, Any]) -> Any:
    from torchx.runner import get_runner

    cwd = os.getcwd()
    os.chdir(ROOT)  # the component path is relative to the repository root, as on the command line
    try:
        with get_runner() as runner:
            return runner.dryrun_component(COMPONENT, args + TRAINER_ARGS, scheduler=scheduler, cfg=cfg)
    finally:
        os.chdir(cwd)


def _k8s_resource(info: Any) -> Dict[str, Any]:
    return yaml.safe_load(str(info.request))


def _torchx_cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("torchx", path=str(Path(sys.executable).parent)) or shutil.which("torchx")
    if exe is None:
        pytest.skip("torchx command not found")
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_slurm_sbatch_script() -> None:
    script = _dryrun("slurm", _args(), {}).request.materialize()
    # two nodes: one heterogeneous-job group per replica, each one task with the node's resources
    groups = [line for line in script.splitlines() if line.startswith("#SBATCH --job-name=")]
    assert [g.split()[1] for g in groups] == ["--job-name=train-0", "--job-name=train-1"]
    assert script.count("#SBATCH hetjob") == 1
    for g in groups:
        assert "--ntasks-per-node=1" in g and "--cpus-per-task=16" in g and "--mem=65536" in g
        assert "--gpus-per-task=4" in g and "--requeue" in g
    assert "export TORCHX_MAX_RETRIES=2" in script
    # environment and the launched command, on both srun steps
    assert script.count("--export=ALL,TORCHREC_SIDE_CACHE=/shared/cache,") == 2
    commands = _srun_commands(script)
    assert len(commands) == 2
    for cmd in commands:
        _check_torchrun(cmd, "SLURM_JOB_NODELIST_HET_GROUP_0")
    assert "ghcr.io" not in script  # slurm runs in the submit folder's environment, not an image


def test_slurm_cpu_only_requests_no_gpus() -> None:
    script = _dryrun("slurm", _args(gpu=0), {}).request.materialize()
    assert "--gpus-per-task" not in script and "--cpus-per-task=16" in script


def test_kubernetes_volcano_job() -> None:
    pytest.importorskip("kubernetes", reason="install the kubernetes extra: pip install -e '.[kubernetes]'")
    res = _k8s_resource(_dryrun("kubernetes", _args(), {"queue": "research"}))
    assert res["apiVersion"] == "batch.volcano.sh/v1alpha1" and res["kind"] == "Job"
    spec = res["spec"]
    assert spec["queue"] == "research" and spec["schedulerName"] == "volcano" and spec["maxRetry"] == 2
    tasks = spec["tasks"]
    assert [t["name"] for t in tasks] == ["train-0", "train-1"]
    assert sum(t["replicas"] for t in tasks) == 2
    for i, task in enumerate(tasks):
        (container,) = task["template"]["spec"]["containers"]
        assert container["image"] == "ghcr.io/acme/torchrec-side:0.1.0"
        limits = container["resources"]["limits"]
        assert limits == {"cpu": "16000m", "memory": "65536M", "nvidia.com/gpu": "4"}
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "4"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TORCHREC_SIDE_CACHE"] == "/shared/cache"
        assert container["command"][:2] == ["bash", "-c"]
        cmd = container["command"][2]
        _check_torchrun(cmd, "TORCHX_RANK0_HOST" if i == 0 else "VC_TRAIN_0_HOSTS")
        assert {"containerPort": 29500, "name": "c10d"} in container["ports"]


def test_kubernetes_mounts_and_cpu_only() -> None:
    pytest.importorskip("kubernetes", reason="install the kubernetes extra: pip install -e '.[kubernetes]'")
    args = _args(gpu=0) + ["--mounts", "type=volume,src=shared-pvc,dst=/shared"]
    res = _k8s_resource(_dryrun("kubernetes", args, {"queue": "default"}))
    pod = res["spec"]["tasks"][0]["template"]["spec"]
    (container,) = pod["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert {"mountPath": "/shared", "name": "mount-0", "readOnly": False} in container["volumeMounts"]
    assert {"name": "mount-0", "persistentVolumeClaim": {"claimName": "shared-pvc"}} in pod["volumes"]


def test_cli_dryrun_slurm() -> None:
    r = _torchx_cli("run", "--dryrun", "-s", "slurm", COMPONENT, *_args(), *TRAINER_ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "#SBATCH --job-name=train-0" in r.stdout
    commands = _srun_commands(r.stdout)
    assert len(commands) == 2
    for cmd in commands:
        _check_torchrun(cmd, "SLURM_JOB_NODELIST_HET_GROUP_0")


def test_cli_dryrun_kubernetes() -> None:
    pytest.importorskip("kubernetes", reason="install the kubernetes extra: pip install -e '.[kubernetes]'")
    # --workspace "": submit the given image as it is (the default would first build an image of
    # the working tree with a local docker daemon)
    r = _torchx_cli(
        "run", "--dryrun", "--workspace", "", "-s", "kubernetes", "-cfg", "queue=default", COMPONENT, *_args(), *TRAINER_ARGS
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "schedulerName: volcano" in r.stdout and "image: ghcr.io/acme/torchrec-side:0.1.0" in r.stdout
    assert "-m torchrec_side.train --config configs/ml100k/dlrm_side.yaml" in r.stdout


def test_component_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="nproc and nnodes must be >= 1"):
        components.train("--config", "x.yaml", nproc=0)
    app = components.train("--config", "x.yaml", nproc=3, nnodes=1)
    (role,) = app.roles
    assert role.num_replicas == 1 and role.entrypoint == "bash"
    assert "--nproc_per_node 3" in role.args[-1] and "-m torchrec_side.train --config x.yaml" in role.args[-1]
