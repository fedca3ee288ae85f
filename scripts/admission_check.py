"""Reruns a finished demo world's variants with id admission of the target-item table.

An ad-hoc check behind docs/benchmarks.md ("Check: id admission"): every variant and seed of the
world folder SRC, with the same resolved configs and store, retrained with
``model.item_min_count=K`` into DST; then ``torchrec-side report DST`` gives the paired table.

    python scripts/admission_check.py runs/demo/sim_quick_id_dominant runs/admit/sim_quick_id_dominant 10
    torchrec-side report runs/admit/sim_quick_id_dominant --world adsworld_quick_id_dominant
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from torchrec_side.experiments.common import launch, train_overrides
from torchrec_side.io import write_json
from torchrec_side.report import ITEM_COUNTS_FILE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="a world folder of `torchrec-side demo` (pipeline.json, configs, examples)")
    p.add_argument("dst", type=Path, help="new folder for the admitted runs")
    p.add_argument("min_count", type=int, help="K of model.item_min_count")
    p.add_argument("--nproc", type=int, default=2)
    args = p.parse_args()
    src, dst = args.src.resolve(), args.dst.resolve()
    rec = json.loads((src / "pipeline.json").read_text())
    t0 = time.time()
    overrides = train_overrides(src, dst / "train", int(rec["max_epochs"]), int(rec["early_stop_patience"]),
                                [f"model.item_min_count={args.min_count}"])
    for v in rec["variants"]:
        v["run_dirs"] = {s: str(dst / "train" / Path(d).parent.name / Path(d).name) for s, d in v["run_dirs"].items()}
        rc = launch(Path(v["resolved_config"]), list(v["seeds"]), overrides, dst / "logs" / v["name"], args.nproc)
        print(f"{v['name']}: exit {rc}, {time.time() - t0:.0f} s", flush=True)
        if rc:
            raise SystemExit(f"{v['name']} failed; logs under {dst / 'logs' / v['name']}")
    if (src / ITEM_COUNTS_FILE).is_file():
        shutil.copy(src / ITEM_COUNTS_FILE, dst / ITEM_COUNTS_FILE)
    rec.update(out=str(dst), overrides=overrides, train_seconds=round(time.time() - t0, 1),
               note=f"{src.name} retrained with model.item_min_count={args.min_count}")
    write_json(dst / "pipeline.json", rec)


if __name__ == "__main__":
    main()
