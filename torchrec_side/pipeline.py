# pyre-strict
"""The main job (``torchrec-side demo``): MovieLens-100K, every feature variant, >= 5 seeds, report.

    torchrec-side demo --out runs/demo            # full: 9 variants x 5 seeds (< 45 min, 2-core CPU)
    torchrec-side demo --out runs/demo --quick    # quick: 5 variants x 2 seeds, 1 epoch (< 5 min), labelled QUICK
    torchrec-side report runs/demo                # rewrite the report from the run folders

Steps (each skipped when its output already exists, so a rerun resumes):

1. **Examples**: the example store of docs/design.md section 7 (``<out>/examples``), written once.
2. **Fit, on training interactions only** (the store's ``train`` split): the VQ-fusion tokenizers
   (``configs/ml100k/tokenizer_fused_dpca.yaml``, ``tokenizer_fused_rq.yaml``; their collaborative
   embedding is fitted on the training events by the tokenizer's loader), and the quantizers of the
   baselines: RQ-KMeans 3 x 256 of the MiniLM vectors, RQ-KMeans 3 x 256 of a collaborative item
   embedding fitted on the store's training events, plain DPCA (40 ternary digits) of the MiniLM
   vectors. Each writes a SID table Parquet. The fitted events are checked with
   :func:`torchrec_side.data.protocol.assert_no_leakage`.
3. **History columns**: every variant's column is written once into the store (packed SIDs,
   prefix-ngram token ids), before any training.
4. **Training**: every variant through the TorchX component on 2 local ranks
   (``torchx run -s local_cwd torchrec_side/components.py:train --nproc 2 -- --config ... --seeds ...``),
   all missing seeds of a variant in one launch; seeds whose ``metrics.json`` exists are skipped.
   Same model size (``embedding_dim`` 16, same MLPs), same budget (epochs, batch size) for all.
   The one epoch count used by every variant is chosen on the **validation** split first
   (:func:`choose_epochs`: seed 0 of control, sparse-ID, traditional SID and SIDE for up to 3
   epochs, validation NE after each; the argmin of their mean); quick mode uses 1 epoch.
   Nothing is chosen on the test split.
5. **Report**: :func:`torchrec_side.report.write_report` (``report.md``, ``report.json``, plots).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["Variant", "VARIANTS", "QUICK_VARIANTS", "pipeline_main", "run_pipeline", "fit_sid_artifacts"]

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Variant:
    """One feature variant of the benchmark.

    Args:
        name (str): report name.
        config (str): training config (relative to the repository root).
        role (str): ``control`` / ``sparse_id`` / ``raw_content`` / ``traditional`` / ``side`` /
            ``ablation`` / ``reference``.
        description (str): one line for the report.
    """

    name: str
    config: str
    role: str
    description: str


VARIANTS: List[Variant] = [
    Variant("control", "configs/ml100k/dlrm_control.yaml", "control", "DLRM, user + target item, no history"),
    Variant("sparse_id", "configs/ml100k/dlrm_sparse_id.yaml", "sparse_id", "learned item-id table over the history"),
    Variant("raw_content", "configs/ml100k/dlrm_raw_content.yaml", "raw_content", "pooled frozen MiniLM vectors (fp16)"),
    Variant("traditional_sid", "configs/ml100k/dlrm_traditional_sid.yaml", "traditional",
            "RQ-KMeans 3x256 SID per collection (MiniLM, collaborative) + prefix-ngram tables"),
    Variant("side", "configs/ml100k/dlrm_side.yaml", "side", "VQ-fusion DPCA SID (40 ternary digits) + SIDE pooling"),
    Variant("fused_rq_prefix", "configs/ml100k/dlrm_fused_rq_prefix.yaml", "ablation",
            "ablation: VQ-fusion RQ 3x256 SID + prefix-ngram (fusion without SIDE)"),
    Variant("dpca_side", "configs/ml100k/dlrm_dpca_side.yaml", "ablation",
            "ablation: plain DPCA SID of MiniLM + SIDE (SIDE without fusion)"),
    Variant("seq_sparse_id", "configs/ml100k/seq_sparse_id.yaml", "reference",
            "DIN target attention over sparse-ID history embeddings"),
    Variant("seq_side", "configs/ml100k/seq_side.yaml", "ablation", "ablation: SIDE in the DIN sequence model"),
]
QUICK_VARIANTS: List[str] = ["control", "sparse_id", "raw_content", "traditional_sid", "side"]

TOKENIZERS: Dict[str, str] = {
    "fused_dpca": "configs/ml100k/tokenizer_fused_dpca.yaml",
    "fused_rq": "configs/ml100k/tokenizer_fused_rq.yaml",
}

#: Full and quick budgets (identical across variants).
FULL = {"seeds": [0, 1, 2, 3, 4], "epochs": 3, "max_epochs": 3}  # epochs: chosen by the validation sweep
QUICK = {"seeds": [0, 1], "epochs": 1, "max_epochs": 1}


def _log(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# fitting (training interactions only)


def _write_quantizer_sids(q: Any, vectors: Any, out: Path, name: str, layout: str) -> None:
    import torch

    from torchrec_side.tokenizer import SIDTable, write_sid_table
    from torchrec_side.tokenizer.artifact import make_codec

    codes = q.encode(vectors)
    codec = make_codec(list(q.radices), layout)
    table = SIDTable(item_ids=torch.arange(vectors.shape[0], dtype=torch.long), sids=codec.pack(codes), codes=codes,
                     codec=codec)
    tmp = out / f".{name}.safetensors.tmp.safetensors"
    q.save(tmp)
    write_sid_table(out / f"{name}_sids.parquet", table)
    os.replace(tmp, out / f"{name}.safetensors")  # last: its presence means the pair is complete


def fit_sid_artifacts(out: Path, store: Any, seed: int = 0, needed: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Fits the tokenizers and quantizers every variant reads, on training interactions only.

    Args:
        out (Path): the demo folder (``tokenize/`` and ``quantizers/`` are written under it).
        store (ExampleStore): the example store (its ``train`` split is what may be fitted).
        seed (int): quantizer seed.
        needed (Optional[Sequence[str]]): artifact names to fit (tokenizers ``fused_dpca``,
            ``fused_rq``; quantizers ``rq_minilm``, ``rq_cf``, ``dpca_minilm``); None for all.

    Returns:
        Dict[str, Any]: what was fitted (and the leakage check's counts).
    """
    from torchrec_side.config import load_config
    from torchrec_side.data import content, movielens
    from torchrec_side.data.protocol import assert_no_leakage
    from torchrec_side.quantizers import DPCA, RQKMeans, RQKMeansConfig
    from torchrec_side.tokenizer import TokenizeJobConfig, run_tokenize

    info: Dict[str, Any] = {}
    tok_root = out / "tokenize"
    for name, cfg_path in TOKENIZERS.items():
        if needed is not None and name not in needed:
            continue
        if (tok_root / name / "sid_table.parquet").is_file() and (tok_root / name / "tokenizer").is_dir():
            _log(f"tokenizer {name}: exists, skipped")
            continue
        _log(f"tokenizer {name}: training ({cfg_path}, collaborative embedding on training events only)")
        job = load_config(TokenizeJobConfig, REPO / cfg_path, [f"output_dir={tok_root}", f"name={name}"])
        quiet = {} if sys.stdout.isatty() else {"TQDM_MININTERVAL": "15"}  # few bar lines in log files
        saved = {k: os.environ.get(k) for k in quiet}
        os.environ.update(quiet)
        try:
            res = run_tokenize(job, echo=False)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        info[f"tokenizer_{name}"] = res["train"]
        s = res["stats"]
        _log(f"tokenizer {name}: {s.get('num_levels')} levels, {s.get('bits_per_item', 0):.1f} bits, "
             f"trained in {res['train']['train_seconds']}s")

    qdir = out / "quantizers"
    qdir.mkdir(parents=True, exist_ok=True)
    ml = movielens.load_movielens()
    train = store.interactions("train")
    info["leakage_check"] = assert_no_leakage(ml.ratings, train["user_id"], train["item_id"], train["timestamp"],
                                              store.manifest["config"]["train_fraction"],
                                              store.manifest["config"]["val_fraction"])
    need = [n for n in ("rq_minilm", "rq_cf", "dpca_minilm") if not (qdir / f"{n}.safetensors").is_file()
            and (needed is None or n in needed)]
    if need:
        text = content.load_items().text_vectors.float()
        if "rq_minilm" in need:
            _log("quantizer rq_minilm: RQ-KMeans 3x256 of the MiniLM vectors")
            q = RQKMeans(RQKMeansConfig(radices=[256, 256, 256], seed=seed)).fit(text)
            _write_quantizer_sids(q, text, qdir, "rq_minilm", "mixed_radix")
        if "rq_cf" in need:
            _log("quantizer rq_cf: collaborative embedding of the training events -> RQ-KMeans 3x256")
            cf = content.collaborative_embeddings(train["user_id"], train["item_id"], store.num_users,
                                                  store.num_items, dim=64, seed=seed).float()
            q = RQKMeans(RQKMeansConfig(radices=[256, 256, 256], seed=seed)).fit(cf)
            _write_quantizer_sids(q, cf, qdir, "rq_cf", "mixed_radix")
        if "dpca_minilm" in need:
            _log("quantizer dpca_minilm: plain DPCA, 40 ternary digits, of the MiniLM vectors")
            q = DPCA.ternary(40, seed=seed).fit(text)
            _write_quantizer_sids(q, text, qdir, "dpca_minilm", "byte_grouped")
    return info


# --------------------------------------------------------------------------------------------
# configs and launches


def resolved_config(variant: Variant, out: Path) -> Path:
    """Writes ``<out>/configs/<variant>.yaml``: the repository config with its ``runs/demo/``
    artifact paths pointed at ``out`` (identical when ``out`` is ``runs/demo``)."""
    text = (REPO / variant.config).read_text()
    text = text.replace("runs/demo/", f"{out.as_posix().rstrip('/')}/")
    dst = out / "configs" / f"{variant.name}.yaml"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text)
    return dst


def _overrides(out: Path, epochs: int, train_dir: Path, extra: Sequence[str] = ()) -> List[str]:
    return [f"output_dir={train_dir}", f"examples_dir={out / 'examples'}", f"train.epochs={epochs}",
            "train.threads=1", "train.progress=false", "train.checkpoint_every=0", *extra]


#: Variants whose seed-0 validation NE picks the shared epoch count (full mode).
SWEEP_VARIANTS: List[str] = ["control", "sparse_id", "traditional_sid", "side"]


def choose_epochs(out: Path, configs: Dict[str, Path], max_epochs: int = 3, nproc: int = 2) -> Dict[str, Any]:
    """Picks one epoch count for every variant on the **validation** split.

    Trains seed 0 of :data:`SWEEP_VARIANTS` for ``max_epochs`` epochs with validation after every
    epoch and returns the epoch count with the lowest mean validation NE over them (the test split
    is not read). Cached in ``<out>/epoch_sweep.json``.
    """

    cache = out / "epoch_sweep.json"
    if cache.is_file():
        rec = json.loads(cache.read_text())
        if rec.get("max_epochs") == max_epochs:
            return rec
    from torchrec_side.io import write_json
    from torchrec_side.train.config import load_train_config

    sweep_dir = out / "epoch_sweep"
    ov = _overrides(out, max_epochs, sweep_dir, ["train.validate_every_epoch=true", "train.early_stop_patience=0"])
    curves: Dict[str, List[float]] = {}
    for name in SWEEP_VARIANTS:
        if name not in configs:
            continue
        run = run_dir_of(load_train_config(configs[name], ov + ["seed=0"]))
        if not _done(run, max_epochs):
            _log(f"epoch sweep (validation): {name} seed 0, {max_epochs} epochs")
            launch(configs[name], [0], ov, out / "logs" / f"epoch_sweep_{name}.log", nproc)
        m = json.loads((run / "metrics.json").read_text())
        curves[name] = [float(h["ne"]) for h in m["val_history"]]  # per-epoch validation, written by the trainer
    if not curves or any(len(c) != max_epochs for c in curves.values()):
        raise RuntimeError(f"epoch sweep incomplete: {curves}; see {out / 'logs'}")
    mean = [float(sum(c[e] for c in curves.values()) / len(curves)) for e in range(max_epochs)]
    best = int(min(range(max_epochs), key=lambda e: mean[e])) + 1
    rec = {"max_epochs": max_epochs, "val_ne_per_epoch": curves, "mean_val_ne_per_epoch": mean, "epochs": best,
           "rule": "argmin over epochs of the mean seed-0 validation NE of " + ", ".join(curves)}
    write_json(cache, rec)
    _log(f"epoch sweep: mean val NE per epoch {[round(x, 5) for x in mean]} -> {best} epoch(s) for every variant")
    return rec


def run_dir_of(cfg: Any) -> Path:
    return Path(cfg.run_path())


def _done(path: Path, epochs: int) -> bool:
    m = path / "metrics.json"
    if not m.is_file():
        return False
    try:
        d = json.loads(m.read_text())
    except json.JSONDecodeError:
        return False
    # finished: all epochs trained, or stopped early on validation (train.early_stop_patience)
    return bool(d.get("stopped_early")) or abs(float(d.get("epochs", -1)) - epochs) < 1e-6


def write_history_columns(configs: Sequence[Path], overrides: List[str]) -> None:
    """Writes every variant's history column into the store once, before any training."""
    from torchrec_side.data.store import ExampleStore, prepare_store
    from torchrec_side.models.history import HistoryContext, make_history_feature
    from torchrec_side.train.config import load_train_config

    for path in configs:
        cfg = load_train_config(path, overrides)
        store = prepare_store(cfg.data, cfg.examples_dir)
        ctx = HistoryContext(num_users=store.num_users, num_items=store.num_items,
                             embedding_dim=cfg.model.embedding_dim, arch=cfg.model.arch,
                             max_history=store.max_history, seed=cfg.seed)
        for i, h in enumerate(cfg.model.history):
            f = make_history_feature(h, ctx, i)
            table = f.item_table()
            if table is not None:
                info = ExampleStore(store.path).add_history_column(f.column, table, note=f"{h.kind} ({f.name})",
                                                                   overwrite=True)
                _log(f"history column {info.name}: width {info.width} {info.dtype}")


def launch(config: Path, seeds: List[int], overrides: List[str], log: Path, nproc: int = 2,
           expected: Optional[List[Path]] = None, progress: Any = None) -> int:
    """Runs one variant's seeds through the TorchX component (``local_cwd``, ``nproc`` ranks).

    Output goes to ``log``; ``progress`` (a tqdm bar) advances as ``expected`` metrics appear.
    """
    bindir = Path(sys.executable).parent
    torchx = bindir / "torchx"
    cmd = [str(torchx) if torchx.exists() else "torchx", "run", "-s", "local_cwd",
           "torchrec_side/components.py:train", "--nproc", str(nproc), "--",
           "--config", str(config), "--seeds", ",".join(str(s) for s in seeds), *overrides]
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        fh.write(("$ " + " ".join(cmd) + "\n").encode())
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env)
        seen = 0
        while proc.poll() is None:
            time.sleep(1.0)
            if progress is not None and expected:
                n = sum(1 for p in expected if (p / "metrics.json").is_file())
                if n > seen:
                    progress.update(n - seen)
                    seen = n
        if progress is not None and expected:
            n = sum(1 for p in expected if (p / "metrics.json").is_file())
            progress.update(max(n - seen, 0))
    return int(proc.returncode)


def run_pipeline(out: Path, quick: bool = False, variants: Optional[List[str]] = None,
                 seeds: Optional[List[int]] = None, epochs: Optional[int] = None, nproc: int = 2,
                 report: bool = True) -> Dict[str, Any]:
    """The main job; see the module docstring. Returns the pipeline record (``<out>/pipeline.json``)."""
    from tqdm import tqdm

    from torchrec_side.data.store import prepare_store
    from torchrec_side.io import write_json
    from torchrec_side.train.config import load_train_config

    t0 = time.time()
    mode = dict(QUICK if quick else FULL)
    if seeds is not None:
        mode["seeds"] = list(seeds)
    if epochs is not None:
        mode["epochs"] = int(epochs)
    names = variants or (QUICK_VARIANTS if quick else [v.name for v in VARIANTS])
    unknown = [n for n in names if n not in {v.name for v in VARIANTS}]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {[v.name for v in VARIANTS]}")
    chosen = [v for v in VARIANTS if v.name in names]
    if "control" not in names:
        raise ValueError("the control variant is needed (NE gains are relative to it)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_dir = out / ("quick" if quick else "full") / "train"
    _log(f"{'QUICK' if quick else 'FULL'} run into {out}: {len(chosen)} variants x seeds {mode['seeds']}, {nproc} ranks")

    # 1. examples (written once)
    configs = {v.name: resolved_config(v, out) for v in VARIANTS}
    cfg0 = load_train_config(configs["control"], _overrides(out, 1, train_dir))
    store = prepare_store(cfg0.data, cfg0.examples_dir)
    _log(f"example store {store.path}: train/val/test = {store.rows('train')}/{store.rows('val')}/{store.rows('test')}")
    # 2. fit tokenizers / quantizers on training interactions only
    texts = "".join(configs[v.name].read_text() for v in chosen)
    needed = [n for n in (*TOKENIZERS, "rq_minilm", "rq_cf", "dpca_minilm")
              if f"tokenize/{n}" in texts or f"quantizers/{n}." in texts]
    fitted = fit_sid_artifacts(out, store, needed=needed)
    # 3. history columns (once)
    write_history_columns([configs[v.name] for v in chosen], _overrides(out, 1, train_dir))
    # 3b. the shared epoch count, chosen on validation (full mode), never on test
    sweep: Optional[Dict[str, Any]] = None
    if epochs is None and not quick:
        sweep = choose_epochs(out, configs, max_epochs=int(mode["max_epochs"]), nproc=nproc)
        mode["epochs"] = int(sweep["epochs"])
    overrides = _overrides(out, int(mode["epochs"]), train_dir)
    _log(f"training budget: {mode['epochs']} epoch(s) for every variant")
    t_prep = time.time() - t0

    # 4. training
    record: Dict[str, Any] = {"mode": "quick" if quick else "full", "out": str(out), "seeds": mode["seeds"],
                              "epochs": mode["epochs"], "nproc": nproc, "overrides": overrides,
                              "variants": [{"name": v.name, "config": v.config, "resolved_config": str(configs[v.name]),
                                            "role": v.role, "description": v.description} for v in chosen],
                              "fitted": fitted, "epoch_sweep": sweep, "prep_seconds": round(t_prep, 1), "failed": []}
    plan = []
    for v in chosen:
        runs = {s: run_dir_of(load_train_config(configs[v.name], overrides + [f"seed={s}"])) for s in mode["seeds"]}
        todo = [s for s, p in runs.items() if not _done(p, mode["epochs"])]
        for s in todo:  # finished with another budget (e.g. a changed epoch count): start over
            if (runs[s] / "metrics.json").is_file():
                shutil.rmtree(runs[s])
        record_v = next(r for r in record["variants"] if r["name"] == v.name)
        record_v["run_dirs"] = {str(s): str(p) for s, p in runs.items()}
        plan.append((v, runs, todo))
    total = sum(len(t) for _, _, t in plan)
    _log(f"{total} (variant, seed) runs to train, {sum(len(r) for _, r, _ in plan) - total} already done")
    write_json(out / "pipeline.json", record)
    bar = tqdm(total=total, desc="train runs", unit="run", file=sys.stdout, dynamic_ncols=True)
    for v, runs, todo in plan:
        if not todo:
            continue
        bar.set_postfix_str(f"{v.name} seeds {todo}")
        t = time.time()
        rc = launch(configs[v.name], todo, overrides, out / "logs" / f"{v.name}.log", nproc,
                    [runs[s] for s in todo], bar)
        missing = [s for s in todo if not _done(runs[s], mode["epochs"])]
        if rc != 0 and not missing:  # every seed finished and wrote metrics; the launch failed at exit
            record.setdefault("warnings", []).append(
                f"{v.name}: launch exited {rc} after all seeds had finished (see {out / 'logs' / (v.name + '.log')})")
            tqdm.write(f"[demo] {v.name}: seeds {todo} done in {time.time() - t:.0f}s (launch exit {rc} after finishing)")
        elif missing:
            record["failed"].append({"variant": v.name, "seeds": missing, "returncode": rc,
                                     "log": str(out / "logs" / f"{v.name}.log")})
            tqdm.write(f"[demo] {v.name}: FAILED (exit {rc}, seeds {missing} missing); see {out / 'logs' / (v.name + '.log')}")
        else:
            tqdm.write(f"[demo] {v.name}: seeds {todo} done in {time.time() - t:.0f}s")
    bar.close()
    record["train_seconds"] = round(time.time() - t0 - t_prep, 1)
    record["total_seconds"] = round(time.time() - t0, 1)
    write_json(out / "pipeline.json", record)
    _log(f"training done in {record['train_seconds']}s (total {record['total_seconds']}s)")

    # 5. report
    if report:
        from torchrec_side.report import write_report

        rep = write_report(out)
        _log(f"report: {out / 'report.md'}")
        record["report"] = {k: rep.get(k) for k in ("side_vs_traditional_ne_gain",)}
    return record


def pipeline_main(argv: Optional[List[str]] = None) -> int:
    """``torchrec-side demo``: the main job. Returns the exit status (0 ok, 1 some run failed).

    Example::

        pipeline_main(["--out", "runs/demo", "--quick"])
    """
    p = argparse.ArgumentParser(prog="torchrec-side demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="demo folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="5 variants x 2 seeds x 1 epoch (< 5 min), labelled quick")
    p.add_argument("--variants", default=None, help=f"comma-separated subset of {[v.name for v in VARIANTS]}")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0..4; quick 0,1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs for every variant (default: chosen on validation, <= 3; quick 1)")
    p.add_argument("--nproc", type=int, default=2, help="ranks per launch (default 2)")
    p.add_argument("--no-report", action="store_true")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    try:
        rec = run_pipeline(out, quick=args.quick,
                           variants=args.variants.split(",") if args.variants else None,
                           seeds=[int(s) for s in args.seeds.split(",")] if args.seeds else None,
                           epochs=args.epochs, nproc=args.nproc, report=not args.no_report)
    except Exception as e:  # config errors, missing data: one clear line
        from torchrec_side.config import ConfigError

        if isinstance(e, (ConfigError, ValueError, FileNotFoundError)):
            print(f"torchrec-side demo: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        raise
    return 1 if rec["failed"] else 0


if __name__ == "__main__":
    sys.exit(pipeline_main())
