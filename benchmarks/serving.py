# pyre-strict
"""Serving requests/s of the exported programs: SIDE vs sparse-ID vs raw content vs traditional SID.

    python benchmarks/serving.py [--quick] [--json runs/bench/serving.json]
    python benchmarks/serving.py --runs runs/demo/sim/train --json runs/bench/serving.json

**Runs.** Without ``--runs``, a simulated ads world is generated into ``--out`` (default: a
temporary folder) and the packaged ``adsworld/dlrm_{sparse_id,raw_content,traditional_sid,side}``
variants are trained on it, each in this process on one rank, with the project's own pieces (the
world generator, the example store, the VQ-fusion tokenizer and RQ-KMeans quantizers of
``torchrec_side.experiments.sim``, the trainer's ``run_training``): the ``tiny`` world with
``--quick``, else the tiny world's users with the quick world's catalogue of 10^5 items
(``--items``), so that the learned tables have a realistic size; one epoch, tokenizer 1 epoch
(speed does not depend on quality); the store's history cap (``data.max_history``, 1,000 in the
packaged configs) raised to the longest timed history, since requests are cut to it. With ``--runs DIR``, finished runs are taken from
``DIR/dlrm_<variant>/seed<seed>`` (e.g. the main job's ``runs/demo/sim/train``).

**Export and load.** Each run is exported with :func:`torchrec_side.serving.export_run` (the
fastest exportable SIDE path, recorded in ``serving.json``), loaded with ``load_exported``
(checksums and the sample self-check); rows record export and load seconds, program bytes, the
SIDE compute path and the largest difference between the loaded program's scores and the
trainer's own test-split scores (``predictions_test.parquet``). The SIDE run is also exported with
``side_compute="torch"`` (variant ``side_torch``: the pure-torch ``grouped_bag`` route that export
used before it kept the registered op), so ``x_side_torch`` shows what the op path gains.

**Requests.** ``--requests`` rows (default 1024) taken from the store's test split (user, item,
``num_prior``), each with a history of exactly ``E`` events for ``E`` in ``--events`` (10^2,
10^3, 10^4): event positions sampled uniformly with replacement (seeded, the same positions for
every variant) from all history events of the test split, so the items follow the world's
popularity. The world's logs are shorter than 10^4 events, so these histories are synthetic, for
timing only (the JSON says so). Requests are an Arrow table in the request-file schema
(``torchrec_side/serving/requests.py``).

**Timing.** For each (events, threads, batch size) and variant: scoring all requests in batches of
``batch`` with ``ExportedScorer.score_tensors`` (input checks + program: ``scorer_requests_per_s``,
the target's measure) and, separately, from the Arrow table through ``request_tensors`` first
(``end_to_end_requests_per_s``: request conversion + checks + program). One warm-up pass, then
``--repeats`` passes taken round-robin over the variants in a shuffled order (all see the same
machine load); medians. Ratios of SIDE to sparse-ID and to raw content per cell, and a breakdown
(request conversion, checks, program, the program's top operators by ``torch.profiler``) at
10^3 events, batch 1024, one thread.

Target (issue 16): at 10^3 events, batch 1024, 1 thread, SIDE >= 2x sparse-ID and >= 2x raw
content requests/s (``targets`` in the JSON; reported, not asserted).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

# this folder last on the path, not first (where ``python benchmarks/serving.py`` puts it): its
# appended, not prepended: a script here must never shadow an installed package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [x for x in sys.path if not x or Path(x).resolve() != _HERE] + [str(_HERE)]
from _common import base_parser, load_average, print_table, round_robin, write_json  # noqa: E402

#: (variant name, packaged config) of the compared models, in table order.
VARIANTS: Tuple[Tuple[str, str], ...] = (
    ("side", "adsworld/dlrm_side"),
    ("sparse_id", "adsworld/dlrm_sparse_id"),
    ("raw_content", "adsworld/dlrm_raw_content"),
    ("traditional_sid", "adsworld/dlrm_traditional_sid"),
)
#: The SIDE run exported again with the pure-torch path (``side_compute="torch"``, the route before
#: export kept the registered op): what the op path gains, in the same run.
SIDE_TORCH: str = "side_torch"
TARGET_CELL: Dict[str, int] = {"events": 1000, "batch_size": 1024, "threads": 1}
TARGET_RATIO: float = 2.0


def log(msg: str) -> None:
    print(f"[serving {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Served:
    """One exported variant and its request tensors per history length."""

    name: str
    run_dir: Path
    export_dir: Path
    scorer: Any
    info: Dict[str, Any]
    tables: Dict[int, Any] = field(default_factory=dict)  # events -> Arrow request table
    tensors: Dict[int, Any] = field(default_factory=dict)  # events -> (dense, values, lengths)


# ------------------------------------------------------------------------------------------ runs


def train_runs(out: Path, items: Optional[int], quick: bool, seed: int, max_history: int) -> Dict[str, Path]:
    """World, store, SID artifacts and one in-process training run per variant (skipped when a
    finished run is there); returns ``{variant: run folder}``. ``max_history``: the store's history
    cap (``data.max_history``), at least the longest timed history, since the scorer's request
    conversion cuts histories to it as the store does."""
    from torchrec_side.data.adsworld import generate_world
    from torchrec_side.data.adsworld_config import load_world_config
    from torchrec_side.data.store import prepare_store
    from torchrec_side.experiments.common import run_finished, train_overrides
    from torchrec_side.experiments.runner import fill_config, variant_context
    from torchrec_side.experiments.sim import fit_world_sids, SimBudget, world_spec
    from torchrec_side.train.config import load_train_config
    from torchrec_side.train.trainer import run_training

    out = out.absolute()
    overrides = [] if items is None else [f"catalogue.num_items={items}"]
    wdir = out / "world"
    if not (wdir / "manifest.json").is_file():
        t = time.time()
        generate_world(load_world_config("tiny", overrides), wdir, progress=False)
        log(f"world (tiny {' '.join(overrides)}) in {time.time() - t:.1f}s: {wdir}")
    budget = SimBudget("tiny", tuple(overrides), (seed,), 1, 1, 1, 0, 20_000, (seed,))
    spec, world = world_spec(budget, seed=seed), {"dir": wdir.as_posix()}
    chosen = [spec.variant(name) for name, _ in VARIANTS]  # their configs: VARIANTS'
    configs = {v.name: fill_config(v, variant_context(spec, v, out, world), out / "configs" / f"{v.name}.yaml")
               for v in chosen}
    train_dir = out / "train"
    ov = train_overrides(out, train_dir, 1, 1, [f"seed={seed}", "train.num_workers=0", "train.log_every=1000000",
                                                f"data.max_history={max_history}"])
    if quick:
        ov += ["train.batch_size=512"]
    cfg0 = load_train_config(configs["sparse_id"], ov)
    t = time.time()
    prepare_store(cfg0.data, cfg0.examples_dir)
    fit_world_sids(out, wdir, spec.needed(chosen))
    log(f"store and SID artifacts in {time.time() - t:.1f}s")
    runs: Dict[str, Path] = {}
    for name, _ in VARIANTS:
        cfg = load_train_config(configs[name], ov)
        path = cfg.run_path()
        if not run_finished(path, 1):
            t = time.time()
            run_training(cfg)
            log(f"trained {name} in {time.time() - t:.1f}s: {path}")
        runs[name] = path
    return runs


def find_runs(root: Path, seed: int) -> Dict[str, Path]:
    """``{variant: root/dlrm_<variant>/seed<seed>}`` (``root`` may also be a demo folder holding ``train/``)."""
    if not (root / "dlrm_side").is_dir() and (root / "train" / "dlrm_side").is_dir():
        root = root / "train"
    runs = {name: root / f"dlrm_{name}" / f"seed{seed}" for name, _ in VARIANTS}
    missing = [str(p) for p in runs.values() if not (p / "config.yaml").is_file()]
    if missing:
        raise SystemExit(f"--runs {root}: missing finished runs {missing}")
    return runs


# -------------------------------------------------------------------------------------- requests


def history_pool(store: Any, column: str) -> Any:
    """All history events of the test split's rows in ``column`` (an Arrow array of events)."""
    col = store.read("test", [column]).column(column).combine_chunks()
    return col.flatten()


def request_table(store: Any, columns: Sequence[str], events: int, rows: int, seed: int) -> Any:
    """``rows`` requests (ids and ``num_prior`` of test rows, in a seeded order) whose every
    history column holds ``events`` events at seeded positions of the test split's event pool
    (the same positions for every column: the columns describe the same events)."""
    import pyarrow as pa

    test = store.read("test", list(columns))
    n_rows = int(test.num_rows)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n_rows, size=rows)
    base = test.take(pa.array(pick))
    arrays = [base.column(c) for c in ("user_id", "item_id", "num_prior")]
    names = ["user_id", "item_id", "num_prior"]
    pools = {c: history_pool(store, c) for c in columns}
    n_events = len(next(iter(pools.values())))
    if n_events == 0:
        raise SystemExit(f"store {store.path}: the test split has no history events")
    pos = pa.array(rng.integers(0, n_events, size=rows * events))
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * events)
    for c in columns:
        arrays.append(pa.ListArray.from_arrays(offsets, pools[c].take(pos)))
        names.append(c)
    return pa.Table.from_arrays(arrays, names=names)


# ---------------------------------------------------------------------------------------- timing


def split_batches(tensors: Tuple[Any, List[Any], List[Any]], batch: int) -> List[Tuple[Any, List[Any], List[Any]]]:
    """The request tensors cut into batches of ``batch`` requests (views: nothing is copied)."""
    dense, values, lengths = tensors
    b = int(dense.shape[0])
    starts = [[0] + n.cumsum(0).tolist() for n in lengths]  # per-key value offset of each request
    out = []
    for i in range(0, b, batch):
        j = min(i + batch, b)
        out.append((dense[i:j], [v[s[i]:s[j]] for v, s in zip(values, starts)], [n[i:j] for n in lengths]))
    return out


def score_all(scorer: Any, batches: List[Tuple[Any, List[Any], List[Any]]]) -> None:
    """Scores every batch (``ExportedScorer.score_tensors``: input checks + program)."""
    for dense, values, lengths in batches:
        scorer.score_tensors(dense, values, lengths)


def end_to_end(scorer: Any, table: Any, batch: int) -> None:
    """Request conversion (Arrow -> tensors) + checks + program, in batches of ``batch``."""
    from torchrec_side.serving import request_tensors

    for rb in table.to_batches(max_chunksize=batch):
        scorer.score_tensors(*request_tensors(rb, scorer.spec))


def breakdown(s: Served, events: int, batch: int) -> Dict[str, Any]:
    """Where one batch's time goes: conversion, checks, program (median of 5), top program ops."""
    from torch.profiler import profile, ProfilerActivity

    from torchrec_side.serving import request_tensors

    rb = s.tables[events].slice(0, batch)
    tensors = request_tensors(rb, s.scorer.spec)

    def med(fn: Callable[[], Any]) -> float:
        fn()
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    out: Dict[str, Any] = {
        "variant": s.name,
        "request_conversion_ms": 1e3 * med(lambda: request_tensors(rb, s.scorer.spec)),
        "checks_ms": 1e3 * med(lambda: s.scorer.check_inputs(*tensors)),
        "program_ms": 1e3 * med(lambda: s.scorer.score_tensors(*tensors, check=False)),
    }
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            s.scorer.score_tensors(*tensors, check=False)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:6]
    out["program_top_ops"] = [{"op": e.key, "ms_per_batch": e.self_cpu_time_total / 3e3} for e in ops]
    return out


def trainer_agreement(s: Served) -> Optional[float]:
    """Largest |program - trainer| score on the run's test split (``predictions_test.parquet``)."""
    import pyarrow.parquet as pq

    from torchrec_side.data import ExampleStore
    from torchrec_side.serving import request_tensors

    pred = s.run_dir / "predictions_test.parquet"
    if not pred.is_file():
        return None
    store = ExampleStore(s.scorer.spec.source["store"])
    table = store.read("test", s.scorer.spec.history_columns)
    got = torch.cat([s.scorer.score_tensors(*request_tensors(rb, s.scorer.spec))
                     for rb in table.to_batches(max_chunksize=4096)])
    want = torch.from_numpy(pq.read_table(pred).column("score").to_numpy().astype(np.float32))
    return float((got - want).abs().max()) if got.shape == want.shape else None


# ------------------------------------------------------------------------------------------ main


def main(argv: Optional[List[str]] = None) -> int:
    p = base_parser(__doc__.split("\n")[0] if __doc__ else "serving benchmark")
    p.add_argument("--runs", type=Path, default=None, help="take finished runs from DIR/dlrm_<variant>/seed<seed>")
    p.add_argument("--out", type=Path, default=None, help="world and training runs go here (default: a temp folder)")
    p.add_argument("--items", type=int, default=None, help="catalogue size of the trained world (default 10^5; "
                                                           "--quick: the tiny world's 2,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--events", default=None, help="history lengths (default 100,1000,10000; --quick 100,1000)")
    p.add_argument("--batch-sizes", default=None, help="default 1024,64 (--quick 256,64)")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--requests", type=int, default=None, help="requests scored per pass (default 1024; --quick 256)")
    p.add_argument("--repeats", type=int, default=None, help="timed passes per cell (default 5; --quick 2)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    quick = bool(args.quick)
    events = [int(x) for x in (args.events or ("100,1000" if quick else "100,1000,10000")).split(",") if x]
    batches = [int(x) for x in (args.batch_sizes or ("256,64" if quick else "1024,64")).split(",") if x]
    threads = [int(x) for x in args.threads.split(",") if x]
    n_req = args.requests or (256 if quick else 1024)
    repeats = args.repeats or (2 if quick else 5)
    items = None if quick and args.items is None else (args.items or 100_000)
    load_before = load_average()
    t_start = time.time()
    before_threads = torch.get_num_threads()

    from torchrec_side.data import ExampleStore
    from torchrec_side.serving import export_run, load_exported, request_tensors
    from torchrec_side.serving.export import quiet_tracing_logs

    with tempfile.TemporaryDirectory(prefix="torchrec_side_serving_bench_") as tmp_s:
        tmp = Path(tmp_s)
        torch.set_num_threads(1)
        if args.runs is not None:
            runs = find_runs(args.runs, args.seed)
            source = {"runs": str(args.runs.resolve())}
        else:
            out = args.out or tmp / "world_runs"
            runs = train_runs(out, items, quick, args.seed, max(1000, max(events)))
            source = {"trained": str(out), "world": "tiny" if items is None else f"tiny, catalogue.num_items={items}",
                      "epochs": 1, "ranks": 1}
        t_train = time.time() - t_start
        served: List[Served] = []
        for name, run in [*runs.items(), (SIDE_TORCH, runs["side"])]:
            t = time.time()
            with quiet_tracing_logs():
                res = export_run(run, tmp / "export" / name, side_compute="torch" if name == SIDE_TORCH else "auto")
            t_export = time.time() - t
            t = time.time()
            scorer = load_exported(res.out_dir)
            t_load = time.time() - t
            spec = scorer.spec
            info = {"variant": name, "run_dir": str(run), "export_s": t_export, "load_s": t_load,
                    "program_bytes": spec.files[spec.program]["bytes"], "side_compute": spec.side_compute,
                    "ops": spec.ops, "keys": spec.keys, "eager_vs_program_max_abs_diff": res.max_abs_diff}
            served.append(Served(name, run, res.out_dir, scorer, info))
            log(f"{name}: export {t_export:.1f}s, program {info['program_bytes']} bytes, load {t_load:.2f}s, "
                f"SIDE compute {spec.side_compute or '-'}")
        for s in served:
            s.info["max_abs_diff_vs_trainer"] = trainer_agreement(s)
        stores = {s.name: ExampleStore(s.scorer.spec.source["store"]) for s in served}
        for s in served:
            cap = s.scorer.spec.max_history
            if cap is not None and max(events) > cap:
                log(f"WARNING {s.name}: the run's store caps histories at {cap} events; requests are cut to the "
                    f"last {cap} as the store does (events_scored in the rows); train with data.max_history="
                    f"{max(events)} to time longer histories")
        for e in events:
            for s in served:
                s.tables[e] = request_table(stores[s.name], s.scorer.spec.history_columns, e, n_req, args.seed)
                s.tensors[e] = request_tensors(s.tables[e], s.scorer.spec)
        rows: List[Dict[str, Any]] = []
        for e in events:
            for th in threads:
                torch.set_num_threads(th)
                for bs in batches:
                    cut = {s.name: split_batches(s.tensors[e], bs) for s in served}
                    names = [s.name for s in served]
                    scorer_t = dict(zip(names, map(statistics.median, round_robin(
                        [lambda s=s: score_all(s.scorer, cut[s.name]) for s in served], repeats, args.seed))))
                    e2e_t = dict(zip(names, map(statistics.median, round_robin(
                        [lambda s=s: end_to_end(s.scorer, s.tables[e], bs) for s in served], repeats, args.seed + 1))))
                    cell = {s.name: n_req / scorer_t[s.name] for s in served}
                    for s in served:
                        cap = s.scorer.spec.max_history
                        row = {"variant": s.name, "events": e, "threads": th, "batch_size": bs, "requests": n_req,
                               "events_scored": e if cap is None else min(e, int(cap)),
                               "scorer_requests_per_s": cell[s.name],
                               "end_to_end_requests_per_s": n_req / e2e_t[s.name],
                               "events_per_s": cell[s.name] * e}
                        if s.name == "side":
                            for ref in ("sparse_id", "raw_content", "traditional_sid", SIDE_TORCH):
                                if ref in cell:
                                    row[f"x_{ref}"] = cell["side"] / cell[ref]
                                    row[f"x_{ref}_end_to_end"] = e2e_t[ref] / e2e_t["side"]
                        rows.append(row)
                    log(f"events {e}, threads {th}, batch {bs}: "
                        + ", ".join(f"{k} {v:,.0f}/s" for k, v in cell.items()))
        torch.set_num_threads(1)
        cell_events = TARGET_CELL["events"] if TARGET_CELL["events"] in events else events[-1]
        cell_batch = TARGET_CELL["batch_size"] if TARGET_CELL["batch_size"] in batches else max(batches)
        cell_batch = min(cell_batch, n_req)
        brk = [breakdown(s, cell_events, cell_batch) for s in served]
        torch.set_num_threads(before_threads)

    def at(v: str, key: str = "scorer_requests_per_s") -> Optional[float]:
        for r in rows:
            if (r["variant"] == v and r["events"] == TARGET_CELL["events"] and r["threads"] == TARGET_CELL["threads"]
                    and r["batch_size"] == TARGET_CELL["batch_size"]):
                return float(r[key])
        return None

    side, sid, raw = at("side"), at("sparse_id"), at("raw_content")
    targets: Dict[str, Any] = {"cell": TARGET_CELL, "ratio": TARGET_RATIO}
    if side and sid and raw:
        targets.update({"side_vs_sparse_id": side / sid, "side_vs_raw_content": side / raw,
                        "met": side >= TARGET_RATIO * sid and side >= TARGET_RATIO * raw})
    else:
        targets["met"] = None
        targets["note"] = "the target cell (10^3 events, batch 1024, 1 thread) was not measured"
    print_table(rows, ["variant", "events", "threads", "batch_size", "scorer_requests_per_s",
                       "end_to_end_requests_per_s", "x_sparse_id", "x_raw_content", "x_traditional_sid",
                       f"x_{SIDE_TORCH}"])
    print_table([s.info for s in served], ["variant", "export_s", "load_s", "program_bytes", "side_compute",
                                           "max_abs_diff_vs_trainer"])
    print_table([{k: v for k, v in b.items() if k != "program_top_ops"} for b in brk],
                ["variant", "request_conversion_ms", "checks_ms", "program_ms"])
    print(f"target {targets}")
    write_json(args.json, rows, benchmark="serving", quick=quick, source=source,
               histories=("synthetic for timing: each request's history is exactly E events at seeded positions "
                          "sampled uniformly with replacement from the test split's history events (the same "
                          "positions for every variant); the world's logs are shorter than 10^4 events"),
               requests_per_pass=n_req, repeats=repeats, warmup=1, events=events, batch_sizes=batches,
               thread_counts=threads, timing=("median of the timed passes, taken round-robin over the variants "
                                              "in shuffled order after one warm-up pass each"),
               programs=[s.info for s in served], breakdown=brk, targets=targets,
               load_average={"before": load_before, "after": load_average()},
               train_seconds=t_train, total_seconds=time.time() - t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
