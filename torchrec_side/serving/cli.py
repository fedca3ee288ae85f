# pyre-strict
"""``torchrec-side export`` and ``torchrec-side predict``.

    torchrec-side export RUN [--out DIR] [--checkpoint auto|best|latest|step_N] [--side-compute auto|torch]
    torchrec-side predict RUN_OR_EXPORT --input requests.parquet --out scores.parquet [--batch-size N]
    torchrec-side predict RUN_OR_EXPORT --from-store test --out scores.parquet [--input keep_requests.parquet]

Exit status: 0 done, 2 bad arguments / run / request file / artifact (the message names it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

__all__ = ["export_main", "predict_main"]


def _logging() -> None:
    log = logging.getLogger("torchrec_side")
    if not log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False


def export_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``torchrec-side export``.

    Example::

        export_main(["runs/train/dlrm_side/seed0", "--out", "serve/dlrm_side"])
    """
    p = argparse.ArgumentParser(prog="torchrec-side export",
                                description="Export a trained run as a torch.export inference folder.")
    p.add_argument("run", help="training run folder (config.yaml, checkpoints/)")
    p.add_argument("--out", default=None, help="artifact folder (default RUN/export)")
    p.add_argument("--checkpoint", default="auto",
                   help="auto (best-validation if recorded, else latest), best, latest or a step_<N> folder name")
    p.add_argument("--side-compute", default="auto", choices=["auto", "torch"],
                   help="SIDE compute in the program: auto (the registered C++ op where available, the "
                        "fastest) or torch (pure torch: loads where the op cannot be built)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    _logging()
    from torchrec_side.io import ArtifactError
    from torchrec_side.serving.export import export_run
    from torchrec_side.serving.rebuild import ServingError

    try:
        res = export_run(args.run, args.out, args.checkpoint, side_compute=args.side_compute)
    except (ServingError, ArtifactError) as e:
        print(f"torchrec-side export: {e}", file=sys.stderr)
        return 2
    s = res.spec
    print(f"exported {s.source['run_dir']} ({s.source['checkpoint']}, {s.source['selection']}) -> {res.out_dir}: "
          f"{s.arch}, keys {s.keys}, program {s.files['model.pt2']['bytes']} bytes, "
          f"SIDE compute {s.side_compute or '-'}, eager vs program max |diff| {res.max_abs_diff:.2g}")
    return 0


def predict_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``torchrec-side predict``.

    Example::

        predict_main(["runs/train/dlrm_side/seed0", "--from-store", "test", "--out", "scores.parquet"])
    """
    p = argparse.ArgumentParser(prog="torchrec-side predict",
                                description="Score a request file (or a store split) with an exported model.")
    p.add_argument("run", help="training run folder or export folder")
    p.add_argument("--input", default=None, help="request file (Parquet; schema in torchrec_side/serving/requests.py)")
    p.add_argument("--from-store", default=None, metavar="SPLIT",
                   help="score a split (train/val/test) of the run's example store; with --input, keep the "
                        "request file there")
    p.add_argument("--out", required=True, help="scores file (Parquet; request columns + score)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out (and, with --from-store, --input) even when not a file predict wrote")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--checkpoint", default="auto", help="which checkpoint a run folder is exported from")
    p.add_argument("--threads", type=int, default=0, help="torch threads while scoring (0: leave as is)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.input is None and args.from_store is None:
        p.error("give --input requests.parquet or --from-store SPLIT")
    _logging()
    from torchrec_side.io import ArtifactError
    from torchrec_side.serving.predict import predict, predict_from_store
    from torchrec_side.serving.rebuild import ServingError

    try:
        if args.from_store is not None:
            res = predict_from_store(args.run, args.from_store, args.out, requests_out=args.input,
                                     batch_size=args.batch_size, progress=not args.no_progress,
                                     checkpoint=args.checkpoint, threads=args.threads, overwrite=args.overwrite)
        else:
            assert args.input is not None
            res = predict(args.run, args.input, args.out, batch_size=args.batch_size,
                          progress=not args.no_progress, checkpoint=args.checkpoint, threads=args.threads,
                          overwrite=args.overwrite)
    except (ServingError, ArtifactError) as e:
        print(f"torchrec-side predict: {e}", file=sys.stderr)
        return 2
    rate = res.rows / res.seconds if res.seconds > 0 else float("nan")
    print(f"scored {res.rows} requests with {res.export_dir} in {res.seconds:.2f}s ({rate:.0f}/s) -> {res.out}")
    return 0
