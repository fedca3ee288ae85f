# pyre-strict
"""Measures export and predict on a trained run: ``python -m torchrec_side.serving.bench RUN``.

Exports the run, loads the folder, scores a split of the run's store with ``predict`` (best of
``--repeats`` timed passes per thread count and batch size; the time includes request
conversion, input checks and writing the Parquet output), and compares the scores with the
trainer's ``predictions_test.parquet`` when the split is ``test``. Prints a table and, with
``--json PATH``, writes the numbers with the machine they were measured on.

Example::

    python -m torchrec_side.serving.bench runs/train/dlrm_sparse_id/seed0 --json runs/bench/serving.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = ["bench_main"]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_main(argv: Optional[List[str]] = None) -> int:
    """Entry point (see the module docstring). Returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m torchrec_side.serving.bench", description=(__doc__ or "").split("\n")[0])
    p.add_argument("run", help="a finished training run folder")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-sizes", default="256,4096")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    import numpy as np
    import pyarrow.parquet as pq
    import torch

    from torchrec_side.serving import export_run, load_exported, predict, predict_from_store

    out: Dict[str, Any] = {"run": str(Path(args.run).resolve()), "split": args.split}
    with tempfile.TemporaryDirectory(prefix="torchrec_side_bench_") as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.time()
        res = export_run(args.run, tmp / "export")
        out["export_s"] = time.time() - t0
        out["program_bytes"] = res.spec.files["model.pt2"]["bytes"]
        t0 = time.time()
        load_exported(tmp / "export")
        out["load_s"] = time.time() - t0
        req = tmp / "requests.parquet"
        first = predict_from_store(tmp / "export", args.split, tmp / "scores.parquet", requests_out=req, progress=False)
        out["rows"] = first.rows
        trainer = Path(args.run) / "predictions_test.parquet"
        if args.split == "test" and trainer.is_file():
            a = pq.read_table(tmp / "scores.parquet").column("score").to_numpy()
            b = pq.read_table(trainer).column("score").to_numpy()
            out["max_abs_diff_vs_trainer"] = float(np.abs(a - b).max()) if len(a) == len(b) else None
        rates: List[Dict[str, Any]] = []
        for th in [int(x) for x in args.threads.split(",") if x]:
            for bs in [int(x) for x in args.batch_sizes.split(",") if x]:
                best = min(predict(tmp / "export", req, tmp / "s.parquet", batch_size=bs, progress=False,
                                   threads=th).seconds for _ in range(max(1, args.repeats)))
                rates.append({"threads": th, "batch_size": bs, "seconds": best, "requests_per_s": first.rows / best})
        out["predict"] = rates
    out["machine"] = {"cpu": _cpu_name(), "cpus": os.cpu_count(), "load_avg": list(os.getloadavg()),
                      "torch": torch.__version__, "python": platform.python_version()}
    print(f"export {out['export_s']:.1f}s, program {out['program_bytes']} bytes, load {out['load_s']:.1f}s, "
          f"{out['rows']} rows, max |export - trainer| {out.get('max_abs_diff_vs_trainer')}")
    for r in rates:
        print(f"  threads {r['threads']} batch {r['batch_size']}: {r['requests_per_s']:.0f} requests/s")
    print(f"  machine: {out['machine']}")
    if args.json:
        from torchrec_side.io import write_json

        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(bench_main())
