# pyre-strict
"""``torchrec-side train``: train and evaluate one variant (one process, or every rank of a
torchrun / TorchX launch).

    torchrec-side train --config configs/ml100k/dlrm_sparse_id.yaml seed=3 train.epochs=2
    torchrec-side train --config configs/ml100k/dlrm_control.yaml --seeds 0,1,2,3,4   # 5 runs, one launch
    python -m torchrec_side.train --config configs/ml100k/dlrm_control.yaml      # same thing
    torchrun --nproc_per_node 2 -m torchrec_side.train --config configs/ml100k/dlrm_sparse_id.yaml
    torchx run -s local_cwd torchrec_side/components.py:train --nproc 2 -- \\
        --config configs/ml100k/dlrm_sparse_id.yaml seed=3

Overrides are ``key=value`` (dotted keys, YAML values). ``--print-config`` prints the resolved
config and exits. ``--seeds`` runs the seeds one after the other in the same processes (one launch,
one process group: the start-up cost is paid once), each in its own run folder. ``--sweep`` adds
a set of overrides (a JSON list of ``key=value`` strings); several ``--sweep`` run every set in
turn, each with every seed, in the same launch. ``--plan FILE`` runs a list of runs of any configs
in one launch (a JSON list of ``{"config": ..., "overrides": [...]}``; what ``torchrec-side demo``
hands each launch: every unfinished run of a world's phase); it takes no other arguments, and the
first run that fails ends the launch (a rank-local error cannot leave the other ranks waiting in
the next run's collectives).
Exit status: 0
done, 2 bad config / missing artifact / run folder in use by another run (nothing trained), 3
training stopped (non-finite loss or metrics, or no checkpoint of the run folder passes
verification; no ``metrics.json`` written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Tuple

__all__ = ["train_main"]


def train_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``torchrec-side train`` and ``python -m torchrec_side.train``.

    Args:
        argv (Optional[List[str]]): arguments after the subcommand (default ``sys.argv[1:]``).

    Returns:
        int: exit status (0 success, 2 config error or run folder locked, 3 training diverged or
        unusable checkpoints).

    Example::

        train_main(["--config", "configs/ml100k/dlrm_control.yaml", "seed=1", "train.progress=false"])
    """
    p = argparse.ArgumentParser(
        prog="torchrec-side train",
        description="Train and evaluate a ranking model variant on the example store (DMP, 1 or more ranks).",
    )
    p.add_argument("--config", "-c", default=None, help="YAML config (see configs/ml100k/)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--seeds", default=None, help="comma-separated seeds run one after the other (overrides seed)")
    p.add_argument("--sweep", action="append", default=None, metavar="JSON",
                   help='one set of extra overrides as a JSON list, e.g. \'["optim.embedding_lr=0.02"]\'; repeat '
                        "for several sets, run one after the other (each with every seed) in this launch")
    p.add_argument("--plan", default=None, metavar="FILE",
                   help='JSON list of runs, [{"config": PATH, "overrides": ["key=value", ...]}, ...], run one '
                        "after the other in this launch (no other arguments)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. seed=3 train.epochs=2")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    from torchrec_side.config import config_to_yaml, ConfigError
    from torchrec_side.train.config import load_train_config

    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds else [None]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    sweep: List[List[str]] = [[]]
    if args.sweep:
        import json

        try:
            sweep = [json.loads(x) for x in args.sweep]
        except json.JSONDecodeError as e:
            p.error(f"--sweep must be a JSON list of key=value strings: {e}")
        if not all(isinstance(x, list) and all(isinstance(o, str) for o in x) for x in sweep):
            p.error(f"--sweep must be a JSON list of key=value strings, got {args.sweep}")
    try:
        if args.plan is not None:
            if args.config or args.seeds or args.sweep or args.overrides:
                p.error("--plan takes no --config, --seeds, --sweep or overrides (each run of the plan names its own)")
            cfgs = [load_train_config(c, o) for c, o in _read_plan(args.plan)]
        else:
            cfgs = [load_train_config(args.config, list(args.overrides) + extra + ([f"seed={s}"] if s is not None else []))
                    for extra in sweep for s in seeds]
    except ConfigError as e:
        print(f"torchrec-side train: config error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        for cfg in cfgs:
            print(config_to_yaml(cfg), end="")
        return 0

    from torchrec_side.io import ArtifactError
    from torchrec_side.train.checkpoint import CheckpointError
    from torchrec_side.train.dist import init_distributed, shutdown_distributed
    from torchrec_side.train.lock import RunLockedError
    from torchrec_side.train.trainer import run_training, TrainingDivergedError

    env = init_distributed(cfgs[0].train.device)
    try:
        for cfg in cfgs:
            try:
                metrics = run_training(cfg)
            except (ConfigError, ArtifactError, FileNotFoundError, RunLockedError) as e:
                print(f"torchrec-side train: {type(e).__name__}: {e}", file=sys.stderr)
                return 2
            except (TrainingDivergedError, CheckpointError) as e:
                print(f"torchrec-side train: {type(e).__name__}: {e}", file=sys.stderr)
                return 3
            if env.is_rank0:
                v, t = metrics["val"], metrics["test"]
                stop = ", stopped early" if metrics.get("stopped_early") else ""
                scored = f"test NE {t['ne']:.5f} AUC {t['auc']:.5f}" if t is not None else "test not scored"
                print(f"{cfg.name} seed {cfg.seed}: {metrics['steps']} steps{stop}; best epoch "
                      f"{metrics.get('best_epoch')}: val NE {v['ne']:.5f} AUC "
                      f"{v['auc']:.5f}; {scored}; run folder {cfg.run_path()}",
                      flush=True)
    finally:
        shutdown_distributed(env)
    return 0


def _read_plan(path: str) -> List[Tuple[str, List[str]]]:
    """``(config, overrides)`` of each run of a ``--plan`` file, or a :class:`ConfigError` naming the file."""
    import json

    from torchrec_side.config import ConfigError

    try:
        runs = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"--plan {path}: not a readable JSON file ({e})") from e
    ok = isinstance(runs, list) and bool(runs) and all(
        isinstance(r, dict) and set(r) == {"config", "overrides"} and isinstance(r["config"], str)
        and isinstance(r["overrides"], list) and all(isinstance(o, str) for o in r["overrides"]) for r in runs)
    if not ok:
        raise ConfigError(f'--plan {path}: expected a non-empty JSON list of {{"config": str, "overrides": [str]}}')
    return [(r["config"], list(r["overrides"])) for r in runs]


if __name__ == "__main__":
    sys.exit(train_main())
