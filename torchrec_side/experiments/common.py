# pyre-strict
"""What the world runner (:mod:`.runner`) trains with: TorchX launches, resumable runs, tuning.

The declarations (:class:`Variant`, :class:`Tuning`, :data:`MAIN_TUNING`) live in :mod:`.spec`
and are re-exported here.

Nothing here depends on the repository layout or the current folder: configs are packaged
(:mod:`torchrec_side.configs`), every output goes under the demo folder, and training is launched
by building the AppDef of :func:`torchrec_side.components.train` in-process and running it through
``torchx.runner.get_runner()`` on the ``local_cwd`` scheduler (TorchX 0.7 resolves a custom
component only as ``<file>.py:<function>``, so the driver does not go through ``torchx run``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from torchrec_side.experiments.spec import MAIN_TUNING, Tuning, TuningSetting, Variant
from torchrec_side.records import PipelineRecord, RecordError, RunRecord

__all__ = ["Variant", "log", "train_overrides", "run_finished", "PlannedRun", "plan_run",
           "launch", "run_plan",
           "check_variants", "train_all", "write_item_counts", "TuningSetting", "Tuning", "choose_setting",
           "tune_and_train", "MAIN_TUNING", "train_variants"]


def log(msg: str) -> None:
    """One time-stamped progress line on stdout."""
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_overrides(out: Path, train_dir: Path, max_epochs: int, patience: int,
                    extra: Sequence[str] = ()) -> List[str]:
    """The overrides every variant of a world gets: run folders, store, budget, validation stop.

    Every run validates after each epoch, stops after ``patience`` epochs without a better
    validation NE (``max_epochs`` at most) and is scored on test with its best validation epoch
    (docs/design.md section 7b); nothing is chosen on test.

    Batches are built in the rank's own process (``train.num_workers=0``): forking a DataLoader
    worker from a rank that already runs threads (gloo, tqdm's monitor, the previous loader's
    feeder) deadlocked once in CPython 3.11's after-fork thread clean-up (the main job's MovieLens
    DIN run hung in ``PyOS_AfterFork_Child``), and on 2 cores with 2 ranks a worker process costs
    the rank more CPU than it saves (``benchmarks/train_throughput.py --num-workers 1``).
    """
    return [f"output_dir={train_dir}", f"examples_dir={out / 'examples'}", f"train.epochs={max_epochs}",
            "train.validate_every_epoch=true", f"train.early_stop_patience={patience}",
            "train.threads=1", "train.progress=false", "train.checkpoint_every=0", "train.num_workers=0", *extra]


def run_finished(path: Path, epochs: int) -> bool:
    """Whether a run folder holds a finished run of this budget (all epochs, or stopped early)."""
    m = path / "metrics.json"
    if not m.is_file():
        return False
    try:
        rec = RunRecord.from_json(m)
    except RecordError:  # unreadable: not finished, it runs again
        return False
    return bool(rec.stopped_early) or abs(float(rec.epochs if rec.epochs is not None else -1) - epochs) < 1e-6


@dataclass(frozen=True)
class PlannedRun:
    """One run of a launch: the variant and what it runs (a seed or a tuning setting), its
    resolved config, its overrides and the run folder they give."""

    variant: str
    key: Any
    config: Path
    overrides: Tuple[str, ...]
    run_dir: Path


def plan_run(variant: str, key: Any, config: Path, overrides: Sequence[str]) -> PlannedRun:
    """A :class:`PlannedRun` with its run folder resolved from the config and overrides."""
    from torchrec_side.train.config import load_train_config

    return PlannedRun(variant, key, config, tuple(overrides), load_train_config(config, list(overrides)).run_path())


def launch(runs: Sequence[PlannedRun], log_dir: Path, nproc: int = 2, progress: Any = None,
           poll_s: float = 1.0) -> int:
    """Runs ``runs`` one after the other in one TorchX launch on ``nproc`` local ranks.

    The runs go to the trainer as a ``--plan`` file (``<log_dir>/plan.json``), so the launch's
    start-up (torchrun, the process group, imports: some 7 s on 2 cores) is paid once for all of
    them. The AppDef comes from :func:`torchrec_side.components.train`;
    ``torchx.runner.get_runner()`` runs it on ``local_cwd`` with replica logs under ``log_dir``.
    ``progress`` (a tqdm bar) advances as the run folders get their ``metrics.json``.

    Args:
        runs (Sequence[PlannedRun]): the runs, in order.
        log_dir (Path): TorchX ``log_dir`` (the plan file is written there too).
        nproc (int): ranks.
        progress (Any): tqdm bar or None.
        poll_s (float): status poll interval.

    Returns:
        int: 0 when the app succeeded, else 1.
    """
    from torchx.runner import get_runner
    from torchx.specs import AppState

    from torchrec_side.components import train
    from torchrec_side.io import write_json

    bindir = Path(sys.executable).parent
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    log_dir.mkdir(parents=True, exist_ok=True)
    plan = log_dir / "plan.json"
    write_json(plan, [{"config": str(r.config), "overrides": list(r.overrides)} for r in runs])
    app = train("--plan", str(plan), nproc=nproc, env=env, name=f"side-{log_dir.name}")
    seen = 0

    def tick() -> None:
        nonlocal seen
        if progress is not None:
            n = sum(1 for r in runs if (r.run_dir / "metrics.json").is_file())
            if n > seen:
                progress.update(n - seen)
                seen = n

    with get_runner() as runner:
        handle = runner.run(app, scheduler="local_cwd", cfg={"log_dir": str(log_dir)})
        while True:
            st = runner.status(handle)
            tick()
            if st is None or st.is_terminal():
                break
            time.sleep(poll_s)
    tick()
    return 0 if st is not None and st.state == AppState.SUCCEEDED else 1


def run_plan(runs: Sequence[PlannedRun], max_epochs: int, log_dir: Path, nproc: int, progress: Any = None
             ) -> Tuple[List[PlannedRun], int]:
    """Trains ``runs`` in as few launches as it can: one, and after a run fails (which ends its
    launch) one more for the runs after it. Two launches in a row that finish nothing end it.

    Returns:
        Tuple[List[PlannedRun], int]: the runs not finished, and the last failing launch's code
        (0 when none failed).
    """
    pending = [r for r in runs if not run_finished(r.run_dir, max_epochs)]
    failed: List[PlannedRun] = []
    rc, idle = 0, 0
    while pending:
        code = launch(pending, log_dir, nproc, progress)
        rc = code or rc
        left = [r for r in pending if not run_finished(r.run_dir, max_epochs)]
        idle = idle + 1 if len(left) == len(pending) else 0
        if not left:
            break
        if idle >= 2:
            return failed + left, rc
        failed.append(left[0])  # the run that ended the launch; the others had not started
        pending = left[1:]
    return failed, rc


def check_variants(configs: Mapping[str, Path], overrides: List[str]) -> Tuple[List[str], Dict[str, str]]:
    """Builds each variant's history features once in-process (and writes their store columns).

    Returns:
        Tuple[List[str], Dict[str, str]]: the variants that build, and ``{variant: error}`` for
        those that do not (a config option the model does not offer yet, a missing artifact):
        they are reported as unavailable instead of failing a launch.
    """
    from torchrec_side.config import ConfigError
    from torchrec_side.data.store import ExampleStore, prepare_store
    from torchrec_side.models.history import HistoryContext, make_history_feature
    from torchrec_side.train.config import load_train_config

    ok: List[str] = []
    bad: Dict[str, str] = {}
    for name, path in configs.items():
        try:
            cfg = load_train_config(path, overrides)
            store = prepare_store(cfg.data, cfg.examples_dir)
            kw: Dict[str, Any] = {}
            if "world_dir" in {f.name for f in dataclasses.fields(HistoryContext)}:
                kw["world_dir"] = cfg.data.world_dir  # raw content of a simulated world reads its content/
            ctx = HistoryContext(num_users=store.num_users, num_items=store.num_items,
                                 embedding_dim=cfg.model.embedding_dim, arch=cfg.model.arch,
                                 max_history=store.max_history, seed=cfg.seed, **kw)
            for i, h in enumerate(cfg.model.history):
                f = make_history_feature(h, ctx, i)
                table = f.item_table()
                if table is not None and f.column not in ExampleStore(store.path).columns:
                    info = ExampleStore(store.path).add_history_column(f.column, table, note=f"{h.kind} ({f.name})",
                                                                       overwrite=True)
                    log(f"history column {info.name}: width {info.width} {info.dtype}")
            ok.append(name)
        except (ConfigError, ValueError, FileNotFoundError, KeyError) as e:
            bad[name] = f"{type(e).__name__}: {e}"
            log(f"variant {name}: unavailable ({bad[name][:300]})")
    return ok, bad


def _unfinished(runs: Mapping[Any, Path], max_epochs: int) -> List[Any]:
    """The keys of ``runs`` (run folders) not finished under this budget; a folder finished under
    another budget is removed, so its run starts over."""
    todo = [k for k, p in runs.items() if not run_finished(p, max_epochs)]
    for k in todo:
        if (runs[k] / "metrics.json").is_file():
            shutil.rmtree(runs[k])
    return todo


def _runs_bar(total: int, desc: str) -> Any:
    """A tqdm bar over runs on stdout (redrawn at most every 30 s when stdout is a log file)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="run", file=sys.stdout, dynamic_ncols=True,
                mininterval=0.5 if sys.stdout.isatty() else 30.0)


def _train_phase(record: Dict[str, Any], runs: Sequence[PlannedRun], max_epochs: int, logs: Path, nproc: int,
                 label: str, phase: str) -> None:
    """Trains the unfinished ``runs`` of one phase (``tuning`` or ``train``) in one launch
    (:func:`run_plan`, a tqdm bar over runs) and adds a ``record["failed"]`` entry per variant
    with runs missing (``seeds``; tuning entries also name the ``tuning`` settings)."""
    from tqdm import tqdm

    todo = _unfinished({(r.variant, r.key): r.run_dir for r in runs}, max_epochs)
    unit = "setting" if phase == "tuning" else "seed"
    log(f"{label}{phase}: {len(todo)} (variant, {unit}) runs to train, {len(runs) - len(todo)} already done")
    if not todo:
        return
    t = time.time()
    bar = _runs_bar(len(todo), f"{label}{phase} runs")
    failed, rc = run_plan(runs, max_epochs, logs, nproc, bar)
    bar.close()
    for name in dict.fromkeys(r.variant for r in failed):
        mine = [r for r in failed if r.variant == name]
        entry: Dict[str, Any] = {"variant": name, "seeds": [r.key for r in mine], "returncode": rc or 1, "log": str(logs)}
        if phase == "tuning":
            entry["seeds"] = sorted({int(o.split("=", 1)[1]) for r in mine for o in r.overrides if o.startswith("seed=")})
            entry["tuning"] = [r.key for r in mine]
        record["failed"].append(entry)
        tqdm.write(f"[demo] {label}{phase} {name}: FAILED ({unit}s {[r.key for r in mine]} missing); logs under {logs}")
    if rc != 0 and not failed:
        record.setdefault("warnings", []).append(f"{label}a launch ended with a failure after all its runs had "
                                                 f"finished (logs under {logs})")
    log(f"{label}{phase}: {len(todo) - len(failed)} runs done in {time.time() - t:.0f}s")


def train_all(record: Dict[str, Any], out: Path, variants: Sequence[Variant], configs: Mapping[str, Path],
              seeds: Sequence[int], overrides: List[str], max_epochs: int, nproc: int, label: str = "",
              variant_seeds: Optional[Mapping[str, Sequence[int]]] = None,
              variant_overrides: Optional[Mapping[str, Sequence[str]]] = None) -> None:
    """Trains every (variant, seed) not finished yet; fills ``record['variants']`` and ``failed``.

    One launch for all of them (:func:`run_plan`; variant by variant, seeds in order); a tqdm bar
    over runs. Rerunning skips finished runs; a run folder finished under another budget is
    started over. ``variant_seeds`` gives some variants their own seeds (a subset of ``seeds``, so
    they stay paired with control); ``variant_overrides`` adds a variant's own overrides (the
    setting tuning chose). ``record`` is saved to ``<out>/pipeline.json`` as the launch ends.
    """
    runs: List[PlannedRun] = []
    for v in variants:
        vs = list((variant_seeds or {}).get(v.name, seeds))
        extra = list((variant_overrides or {}).get(v.name, ()))
        mine = [plan_run(v.name, s, configs[v.name], overrides + extra + [f"seed={s}"]) for s in vs]
        record["variants"].append({"name": v.name, "config": v.config, "resolved_config": str(configs[v.name]),
                                   "role": v.role, "seeds": vs, "description": v.description,
                                   "run_dirs": {str(r.key): str(r.run_dir) for r in mine}})
        runs += mine
    write_pipeline(out, record)
    _train_phase(record, runs, max_epochs, out / "logs" / "train", nproc, label, "train")
    write_pipeline(out, record)


def write_pipeline(out: Path, record: Mapping[str, Any]) -> None:
    """``<out>/pipeline.json``, through its typed record (:class:`~torchrec_side.records.PipelineRecord`:
    a record the report could not read is refused here, not when the report runs)."""
    PipelineRecord.from_dict(dict(record), source=out / "pipeline.json").write(out / "pipeline.json")


def write_item_counts(out: Path, store: Any) -> Path:
    """``<out>/item_train_counts.npy``: training impressions per target item id (the report's
    head/torso/tail cuts rank all items with it)."""
    import numpy as np

    from torchrec_side.io import atomic_path
    from torchrec_side.report import ITEM_COUNTS_FILE

    dst = out / ITEM_COUNTS_FILE
    if not dst.is_file():
        items = np.asarray(store.examples("train")["item_id"], dtype=np.int64)
        counts = np.bincount(items, minlength=int(store.num_items)).astype(np.int64)
        with atomic_path(dst) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, counts)
    return dst


# --------------------------------------------------------------------------------------------
# The tuning protocol: the same small budget for every variant, chosen on validation


def _validation_of(run: Path) -> Dict[str, Any]:
    """What the chooser may read of a finished tuning run: its validation results only."""
    m = RunRecord.from_json(run / "metrics.json")
    if m.val is None or m.val.ne is None:
        raise RecordError(f"{run / 'metrics.json'}: no validation NE")
    hist = [{"epoch": h.get("epoch"), "ne": h.get("ne")} for h in m.val_history or ()]
    return {"val_ne": float(m.val.ne), "best_epoch": m.best_epoch, "val_history": hist,
            "stopped_early": bool(m.stopped_early), "epochs": m.epochs}


def choose_setting(results: Mapping[str, Mapping[str, Any]], order: Sequence[str]) -> str:
    """The setting with the lowest validation NE (``results[name]["val_ne"]``); ties: earliest in
    ``order``. Only validation numbers are passed in (:func:`_validation_of`), never test ones.

    Example::

        choose_setting({"a": {"val_ne": 0.9}, "b": {"val_ne": 0.8}}, ["a", "b"])   # 'b'
    """
    ranked = [n for n in order if n in results]
    if not ranked:
        raise ValueError("choose_setting: no finished tuning run")
    return min(ranked, key=lambda n: (float(results[n]["val_ne"]), ranked.index(n)))


def tune_and_train(record: Dict[str, Any], out: Path, variants: Sequence[Variant], configs: Mapping[str, Path],
                   seeds: Sequence[int], overrides: List[str], max_epochs: int, nproc: int, tuning: Tuning,
                   label: str = "", variant_seeds: Optional[Mapping[str, Sequence[int]]] = None) -> None:
    """Tunes every variant on validation, then trains its seeds at the chosen setting.

    Tuning runs go to ``<out>/tune/<setting>/<variant config name>/seed<tuning.seed>`` (run with
    ``train.score_test=false``); the final runs to the ``output_dir`` of ``overrides`` as with
    :func:`train_all`. ``record["tuning"]`` gets, per variant, every setting's validation NE and
    best epoch and the ``chosen`` setting; each entry of ``record["variants"]`` gets ``tuned``
    (the chosen setting's name and overrides). Reruns skip finished tuning and final runs.

    Args:
        record (Dict[str, Any]): the world's ``pipeline.json`` record (``variants``, ``failed``).
        out (Path): the world's demo folder.
        variants (Sequence[Variant]): variants to tune and train.
        configs (Mapping[str, Path]): resolved config of each variant.
        seeds (Sequence[int]): final seeds.
        overrides (List[str]): the world's trainer overrides (:func:`train_overrides`).
        max_epochs (int): most epochs per run.
        nproc (int): ranks per launch.
        tuning (Tuning): the grid.
        label (str): log prefix.
        variant_seeds (Optional[Mapping[str, Sequence[int]]]): per-variant seeds (as in :func:`train_all`).
    """
    tune_rec: Dict[str, Any] = record.setdefault("tuning", {})
    tune_rec["seed"] = tuning.seed
    tune_rec["settings"] = {t.name: list(t.overrides) for t in tuning.settings}
    tune_rec.setdefault("variants", {})

    def setting_overrides(t: TuningSetting) -> List[str]:
        return [f"output_dir={out / 'tune' / t.name}", "train.score_test=false", *t.overrides]

    # every unfinished (variant, setting) in one launch: a launch's start-up costs about as much
    # as a quick-world tuning run
    runs = {v.name: [plan_run(v.name, t.name, configs[v.name], overrides + setting_overrides(t) + [f"seed={tuning.seed}"])
                     for t in tuning.settings] for v in variants}
    _train_phase(record, [r for rs in runs.values() for r in rs], max_epochs, out / "logs" / "tune", nproc, label,
                 "tuning")
    for v in variants:
        for r in runs[v.name]:
            if run_finished(r.run_dir, max_epochs):
                tune_rec["variants"].setdefault(v.name, {"settings": {}})["settings"][r.key] = _validation_of(r.run_dir)
    write_pipeline(out, record)
    order = [t.name for t in tuning.settings]
    tuned: List[Variant] = []
    for v in variants:
        res = tune_rec["variants"].get(v.name, {}).get("settings", {})
        if not res:
            record["failed"].append({"variant": v.name, "seeds": list(seeds), "returncode": 1,
                                     "log": str(out / "logs" / "tune"), "tuning": "no tuning run finished"})
            continue
        chosen = choose_setting(res, order)
        tune_rec["variants"][v.name]["chosen"] = chosen
        scores = ", ".join(f"{n} {float(r['val_ne']):.5f}" for n, r in res.items())
        log(f"{label}{v.name}: tuned on validation -> {chosen} (val NE {scores})")
        tuned.append(v)
    write_pipeline(out, record)
    train_all(record, out, tuned, configs, seeds, overrides, max_epochs, nproc, label=label,
              variant_seeds=variant_seeds,
              variant_overrides={v.name: tuning.get(tune_rec["variants"][v.name]["chosen"]).overrides for v in tuned})
    for e in record["variants"]:
        chosen = tune_rec["variants"][e["name"]]["chosen"]
        e["tuned"] = {"setting": chosen, "overrides": list(tuning.get(chosen).overrides)}
    write_pipeline(out, record)


def train_variants(record: Dict[str, Any], out: Path, variants: Sequence[Variant], configs: Mapping[str, Path],
                   seeds: Sequence[int], overrides: List[str], max_epochs: int, nproc: int,
                   tuning: Optional[Tuning], label: str = "",
                   variant_seeds: Optional[Mapping[str, Sequence[int]]] = None) -> None:
    """Both worlds' training step: :func:`tune_and_train` with ``tuning``, or :func:`train_all`
    at the configs as shipped when ``tuning`` is None (the quick budgets); ``record["tuning"]``
    is None then, and the report says "not tuned"."""
    if tuning is None:
        record["tuning"] = None
        train_all(record, out, variants, configs, seeds, overrides, max_epochs, nproc, label=label,
                  variant_seeds=variant_seeds)
    else:
        tune_and_train(record, out, variants, configs, seeds, overrides, max_epochs, nproc, tuning, label=label,
                       variant_seeds=variant_seeds)
