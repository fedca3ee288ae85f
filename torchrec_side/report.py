# pyre-strict
"""``torchrec-side report RUN``: the benchmark report of one world's demo folder.

Reads ``RUN/pipeline.json`` (variants, their run folders, the mode, optionally the world), every
run's ``metrics.json`` and, where the trainer wrote it, ``predictions_test.parquet``
(:mod:`torchrec_side.eval.predictions`). Writes ``RUN/report.json``, ``RUN/report.md`` and the
plots ``ne_gain.png`` (gain with 95% intervals per variant), ``gain_by_item_freq.png``,
``oracle_share.png`` (worlds with an oracle), ``gain_vs_ceilings.png`` (worlds that store their
ceilings: each variant's gain with the content, content + item, id and oracle gains as lines) and
``bytes_per_event.png``.

Definitions (docs/design.md sections 7, 7b and 8):

* NE is the **test** NE of each run (scored with the model of its best validation epoch; nothing
  is selected on test). NE gain of variant v for seed s: ``100 * (NE_control[s] - NE_v[s]) /
  NE_control[s]``; a variant's gain is the mean over the seeds it shares with control.
* Intervals: the paired bootstrap of :mod:`torchrec_side.eval.stats`: seeds, and test users and
  test items independently (two-way, Owen's pigeonhole bootstrap; users only with
  ``ReportConfig(resample_items=False)``), resampled with replacement, one resample per replicate
  shared by all runs; 95% percentile intervals; "not separated" where an interval covers zero.
  ``statistics.level`` names the units (``"seeds x users x items"``). Runs without predictions
  enter at seed level (bootstrap over seeds only), and the report says which.
* ``side_vs_traditional_ne_gain``: SIDE's gain / traditional SID's gain, same resamples; undefined
  cases as documented in :mod:`torchrec_side.eval.stats`. The ">= 2.4x" target is judged on the
  point ratio and shown with the interval of the contrast ``gain_SIDE - 2.4 gain_traditional``.
* ``oracle_share`` (worlds with ``p_true``): a variant's gain / the oracle's gain (the oracle scores
  every impression with its true click probability).
* ``ceilings`` and ``ceiling_share`` (worlds that store their ceilings, docs/design.md section 7c):
  every reference column the predictions carry (``p_content``, ``p_content_item``, ``p_id``,
  ``p_true``) is scored as a pseudo-variant (``ceiling_content``, ...), paired and resampled like
  a variant; ``ceilings`` gives each one's NE and NE gain over control, a row's ``ceiling_share`` is
  its gain / the content ceiling's gain. Older worlds, stores and predictions without the columns
  report no ceilings.
* ``control_world``: ``verdict`` ``passed`` when sparse-ID beats SIDE, separated, in the control
  world (id-only term dominant; its own report, or the one ``pipeline.json``'s ``control_world``
  names), ``failed`` when measured otherwise, ``missing`` without one. The markdown opens with it;
  in a simulated world every SIDE target is marked "not validated" (``validated: false``) unless
  it passed.
* per row: ``best_epochs`` (each seed's best validation epoch) and ``tuned`` (the setting
  ``tune_and_train`` chose, from ``pipeline.json``; None when the world was not tuned).
* ``protocol``: ``max_epochs``, ``patience``, the tuning grid (``tuning_settings``, ``tuning_seed``;
  None when not tuned), ``runs`` and ``best_epoch_at_cap`` (the runs, ``variant sN``, whose best
  validation epoch was the last allowed).
* Slices: :mod:`torchrec_side.eval.slices` (item training frequency head/torso/tail/cold and
  history length).
* bytes per event: the history as the TorchRec model consumes it (int64 KJT values: 8 for a packed
  SID or an item id; 8 per prefix-ngram token and SID; raw content counted as 384 fp16 = 768),
  summed over the variant's history features; the measured file sizes are reported alongside.

Example::

    torchrec-side report runs/demo
    torchrec-side report runs/adsworld --world adsworld --n-boot 2000
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from torchrec_side.io import save_figure, write_json, write_text

__all__ = ["ReportConfig", "collect", "summarize", "side_vs_traditional", "analyse", "targets", "write_report",
           "control_world_verdict", "report_main", "world_kind"]

#: The ablation variant with the SIDE SIDs dealt to random items (``experiments.sim``).
PERMUTED_SIDE: str = "side_permuted_sid"

#: Sequence-model pairs ``(variant, reference)``: DIN against DLRM on the same features, and the
#: DIN variants against each other (``experiments.sim``; reported when both ran).
SEQUENCE_PAIRS: Tuple[Tuple[str, str], ...] = (
    ("seq_side", "side"), ("seq_sparse_id", "sparse_id"), ("seq_traditional_sid", "traditional_sid"),
    ("seq_raw_content", "raw_content"), ("seq_side", "seq_traditional_sid"), ("seq_side", "seq_raw_content"),
    ("seq_sparse_id", "seq_side"),
)

#: The tokenizer x embedding ablation grid (docs/design.md section 7b; ``experiments.sim``): one row per
#: tokenizer, ``(key, label, (prefix-ngram variant, SIDE variant))``; ``traditional_sid`` and ``side``
#: are two of its six cells.
ABLATION_ROWS: Tuple[Tuple[str, str, Tuple[str, str]], ...] = (
    ("rq_kmeans", "RQ-KMeans 3x256 per collection (text, image)", ("traditional_sid", "side_rq")),
    ("fusion_nolabels", "VQ fusion (text + image), no label heads", ("prefix_fused_nolabels", "side_fused_nolabels")),
    ("fusion_labels", "VQ fusion (text + image) + category heads", ("prefix_fused", "side")),
)
#: The grid's columns (embeddings), ``(key, label)``, in the order of :data:`ABLATION_ROWS`' variant pairs.
ABLATION_COLUMNS: Tuple[Tuple[str, str], ...] = (("prefix_ngram", "prefix-ngram (learned tables)"),
                                                 ("side", "SIDE (parameter-free)"))
#: SIDE's lead over traditional SID split along the grid, ``(key, what it isolates, variant, reference)``:
#: each a paired gain of ``variant`` over ``reference`` (also in ``pairs``); the three differences of
#: gains over control add up to ``side``'s gain minus ``traditional_sid``'s exactly.
ABLATION_CONTRASTS: Tuple[Tuple[str, str, str, str], ...] = (
    ("labels", "the tokenizer's label heads (VQ fusion, SIDE fixed)", "side", "side_fused_nolabels"),
    ("fusion", "fusing text + image without labels over per-collection RQ-KMeans (SIDE fixed)",
     "side_fused_nolabels", "side_rq"),
    ("embedding", "SIDE over prefix-ngram tables (RQ-KMeans SIDs fixed)", "side_rq", "traditional_sid"),
)

#: Optional ``[num_items]`` int64 training count per item id (``np.save``) in the demo folder; when
#: present the head/torso/tail cuts rank all items, not only the test targets.
ITEM_COUNTS_FILE: str = "item_train_counts.npy"

#: Worlds with their own target list; other names are classified by :func:`world_kind`.
WORLD_KINDS: Tuple[str, ...] = ("movielens", "simulated", "id_dominant")


@dataclass(frozen=True)
class ReportConfig:
    """What the report computes.

    Args:
        world (Optional[str]): world name (e.g. ``movielens``, ``adsworld``,
            ``adsworld_id_dominant``); default: ``pipeline.json``'s ``world``, else ``adsworld``
            when the predictions carry ``p_true``, else ``movielens``.
        plots (bool): write the PNG plots.
        n_boot (int): bootstrap replicates of the overall numbers.
        slice_n_boot (int): replicates per slice (0: point numbers only).
        seed (int): bootstrap RNG seed.
        control (str): the reference variant of the gains.
        side (str): the SIDE variant.
        traditional (str): the traditional-SID variant.
        raw_content (str): the raw-content variant.
        sparse_id (str): the sparse-ID variant.
        progress (bool): tqdm bars.
        control_world (Optional[str]): the demo folder of the control world (id-only term
            dominant) whose ``report.json`` holds the "sparse-ID must win" target; its target line
            is copied into this report. Default: ``pipeline.json``'s ``control_world``.
        extra_pairs (Tuple[Tuple[str, str], ...]): more ``(variant, reference)`` gains to report.
        resample_items (bool): the two-way bootstrap (users x items); False: users only.
    """

    world: Optional[str] = None
    plots: bool = True
    n_boot: int = 2000
    slice_n_boot: int = 500
    seed: int = 0
    control: str = "control"
    side: str = "side"
    traditional: str = "traditional_sid"
    raw_content: str = "raw_content"
    sparse_id: str = "sparse_id"
    progress: bool = False
    control_world: Optional[str] = None
    extra_pairs: Tuple[Tuple[str, str], ...] = field(default_factory=tuple)
    resample_items: bool = True


def _mean(x: Sequence[float]) -> Optional[float]:
    return float(np.mean(x)) if len(x) else None


def _std(x: Sequence[float]) -> Optional[float]:
    return float(np.std(x, ddof=1)) if len(x) > 1 else (0.0 if len(x) == 1 else None)


def collect(run: Path) -> Dict[str, Any]:
    """``{"pipeline": record, "runs": {variant: {seed: metrics}}, "dirs": {variant: {seed: Path}}}``."""
    rec_path = run / "pipeline.json"
    if not rec_path.is_file():
        raise FileNotFoundError(f"{rec_path} not found: not a `torchrec-side demo` folder")
    try:
        rec = json.loads(rec_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{rec_path} is not valid JSON: {e}") from e
    variants = rec.get("variants") if isinstance(rec, dict) else None
    if not (isinstance(variants, list) and variants and all(
            isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("run_dirs", {}), dict)
            for v in variants)):
        raise ValueError(f"{rec_path}: expected an object with a non-empty 'variants' list of "
                         f"{{'name': str, 'run_dirs': {{seed: folder}}}} (what `torchrec-side demo` writes)")
    runs: Dict[str, Dict[int, Dict[str, Any]]] = {}
    dirs: Dict[str, Dict[int, Path]] = {}
    for v in rec.get("variants", []):
        per: Dict[int, Dict[str, Any]] = {}
        pd: Dict[int, Path] = {}
        for s, d in (v.get("run_dirs") or {}).items():
            m = Path(d) / "metrics.json"
            if m.is_file():
                try:
                    per[int(s)] = json.loads(m.read_text())
                except json.JSONDecodeError as e:
                    raise ValueError(f"{m} is not valid JSON: {e}") from e
                pd[int(s)] = Path(d)
        runs[v["name"]] = per
        dirs[v["name"]] = pd
    counts = run / ITEM_COUNTS_FILE
    return {"pipeline": rec, "runs": runs, "dirs": dirs, "item_counts_file": str(counts) if counts.is_file() else None}


def _bytes_per_event(metrics: Dict[str, Any]) -> Dict[str, float]:
    model = 0.0
    file_b = 0.0
    minimal = 0.0
    for h in metrics.get("history", []):
        fp = h.get("footprint") or {}
        model += float(h.get("model_bytes_per_event", fp.get("value_bytes_per_event", 0.0)))
        minimal += float(h.get("min_packed_bytes_per_event", h.get("model_bytes_per_event", fp.get("value_bytes_per_event", 0.0))))
        if h.get("kind") == "raw_content":
            file_b += float(h.get("model_bytes_per_event", 0.0))
        else:
            file_b += float(fp.get("file_bytes_per_event", 0.0))
    return {"model": model, "file": file_b, "minimal": minimal}


def summarize(runs: Dict[str, Dict[int, Dict[str, Any]]], control: str = "control") -> List[Dict[str, Any]]:
    """One row per variant from the seed-level ``metrics.json`` numbers (gains paired by seed)."""
    ctrl = runs.get(control, {})
    rows = []
    for name, per in runs.items():
        seeds = sorted(per)
        ne = [float(per[s]["test"]["ne"]) for s in seeds]
        paired = [s for s in seeds if s in ctrl]
        gains = [100.0 * (float(ctrl[s]["test"]["ne"]) - float(per[s]["test"]["ne"])) / float(ctrl[s]["test"]["ne"])
                 for s in paired]
        bpe = _bytes_per_event(per[seeds[0]]) if seeds else {"model": None, "file": None, "minimal": None}
        rows.append({
            "variant": name,
            "seeds": seeds,
            "ne_mean": _mean(ne),
            "ne_std": _std(ne),
            "ne_gain_pct_mean": _mean(gains),
            "ne_gain_pct_std": _std(gains),
            "ne_gain_pct_per_seed": dict(zip([str(s) for s in paired], gains)),
            "auc_mean": _mean([float(per[s]["test"]["auc"]) for s in seeds]),
            "val_ne_mean": _mean([float(per[s]["val"]["ne"]) for s in seeds if "val" in per[s]]),
            "bytes_per_event": bpe["model"],
            "min_packed_bytes_per_event": bpe["minimal"],
            "file_bytes_per_event": bpe["file"],
            "learned_params": int(per[seeds[0]]["learned_params"]["total"]) if seeds else None,
            "train_examples_per_s": _mean([float(per[s]["train_examples_per_s"]) for s in seeds
                                           if per[s].get("train_examples_per_s")]),
            "arch": per[seeds[0]].get("arch") if seeds else None,
            "epochs": per[seeds[0]].get("epochs") if seeds else None,
            # each seed's best validation epoch (None where metrics.json has none)
            "best_epochs": {str(s): (None if per[s].get("best_epoch") is None else int(per[s]["best_epoch"]))
                            for s in seeds},
        })
    return rows


def side_vs_traditional(rows: List[Dict[str, Any]], side: str = "side", traditional: str = "traditional_sid",
                        n_boot: int = 2000, seed: int = 0) -> Dict[str, Any]:
    """Seed-level ratio of mean NE gains, SIDE over traditional SID (bootstrap over seeds only).

    Kept for callers of the seed-level summary; :func:`analyse` computes the two-level version.
    """
    by = {r["variant"]: r for r in rows}
    if side not in by or traditional not in by:
        return {"ratio": None, "note": f"needs both {side!r} and {traditional!r} variants"}
    gs, gt = by[side]["ne_gain_pct_per_seed"], by[traditional]["ne_gain_pct_per_seed"]
    common = sorted(set(gs) & set(gt), key=int)
    if not common:
        return {"ratio": None, "note": "no seeds in common"}
    a = np.array([gs[s] for s in common])
    b = np.array([gt[s] for s in common])
    out: Dict[str, Any] = {"side_gain_pct_mean": float(a.mean()), "traditional_gain_pct_mean": float(b.mean()),
                           "seeds": [int(s) for s in common]}
    if b.mean() <= 0:
        out.update({"ratio": None, "ratio_std": None, "ratio_p05": None, "ratio_p95": None,
                    "note": (f"traditional SID's mean NE gain is not positive ({b.mean():+.3f}%): the ratio is "
                             f"meaningless; SIDE's mean gain is {a.mean():+.3f}%")})
        return out
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(common), size=(n_boot, len(common)))
    bm = b[idx].mean(1)
    ok = bm > 0
    ratios = a[idx].mean(1)[ok] / bm[ok]
    out.update({
        "ratio": float(a.mean() / b.mean()),
        "ratio_std": float(ratios.std(ddof=1)) if ratios.size > 1 else None,
        "ratio_p05": float(np.percentile(ratios, 5)) if ratios.size else None,
        "ratio_p95": float(np.percentile(ratios, 95)) if ratios.size else None,
        "bootstrap_resamples_with_nonpositive_traditional_gain": int((~ok).sum()),
        "note": "bootstrap over paired seeds",
    })
    return out


def world_kind(world: str, has_oracle: bool, record: Optional[Dict[str, Any]] = None) -> str:
    """The target list a world gets: ``movielens``, ``simulated`` or ``id_dominant``.

    ``id_dominant`` (the control world where the id-only term dominates and sparse-ID must win)
    when the name contains ``id_dominant`` / ``id-dominant`` or ``pipeline.json`` says
    ``"id_dominant": true`` (or its ``world`` entry mentions the ``id_dominant`` preset); ``movielens`` for names starting with ``movielens`` / ``ml``;
    otherwise ``simulated`` when the predictions carry ``p_true``, else ``movielens``.
    """
    w = world.lower()
    rec = record or {}
    if ("id_dominant" in w or "id-dominant" in w or bool(rec.get("id_dominant"))
            or "id_dominant" in json.dumps(rec.get("world"), default=str)):
        return "id_dominant"
    if w.startswith("movielens") or w.startswith("ml"):
        return "movielens"
    return "simulated" if (has_oracle or "adsworld" in w or "sim" in w) else "movielens"


# ------------------------------------------------------------------------------------------------
# analysis


def _world_name(cfg: ReportConfig, rec: Dict[str, Any], has_oracle: bool) -> str:
    if cfg.world:
        return str(cfg.world)
    w = rec.get("world")
    if isinstance(w, dict):
        w = w.get("name") or w.get("kind")
    if isinstance(w, str) and w:
        return w
    return "adsworld" if has_oracle else "movielens"


def analyse(data: Dict[str, Any], cfg: ReportConfig) -> Dict[str, Any]:
    """Pairs the predictions, runs the bootstrap and the slices.

    Args:
        data (Dict[str, Any]): :func:`collect`'s output.
        cfg (ReportConfig): report settings.

    Returns:
        Dict[str, Any]: ``gains`` (vs control; the oracle and ceiling pseudo-variants included),
        ``gains_vs_traditional``, ``oracle_share``, ``ceiling_share`` (gain / the content
        ceiling's gain, when the predictions carry ``p_content``), ``ratio``, ``contrast_2_4``,
        ``pairs``, ``slices``, ``missing_predictions``, ``prediction_runs``, ``has_oracle``,
        ``references`` (the reference columns scored), ``reference_ne`` (their test NE, mean over
        seeds), ``ne_check`` and the ``boot`` object.
    """
    from torchrec_side.eval import BootstrapConfig, PairedBootstrap, SliceConfig, UserTable, pair_runs, slice_report
    from torchrec_side.eval.predictions import REFERENCE_VARIANTS, shared_references
    from torchrec_side.eval.slices import CEILING_CONTENT, ORACLE

    runs: Dict[str, Dict[int, Dict[str, Any]]] = data["runs"]
    dirs: Dict[str, Dict[int, Path]] = data["dirs"]
    seeds = sorted({s for per in runs.values() for s in per})
    per_seed = {}
    warnings: List[str] = []
    for s in seeds:
        p = pair_runs({v: dirs[v][s] for v in dirs if s in dirs[v]}, seed=s)
        if p is not None:
            per_seed[s] = p
            warnings.extend(p.warnings)
    # reference columns every seed has (p_true, the world's ceilings) are scored as pseudo-variants
    refs = shared_references(per_seed)
    has_oracle = "p_true" in refs
    variants = list(runs)
    names = variants + [REFERENCE_VARIANTS[c] for c in refs]
    arrays = {}
    for s, p in per_seed.items():
        sc = dict(p.scores)
        sc.update(p.reference_scores(refs))
        arrays[s] = (p.user_id, p.label, sc, p.item_id)
    table = UserTable.from_arrays(arrays, variants=names)
    missing = [(v, s) for v, per in runs.items() for s in per
               if not (s in per_seed and v in per_seed[s].scores)]
    seed_level = {(v, s): float(runs[v][s]["test"]["ne"]) for v, s in missing}
    boot = PairedBootstrap(table, BootstrapConfig(n_boot=cfg.n_boot, seed=cfg.seed, progress=cfg.progress,
                                                  resample_items=cfg.resample_items), seed_level_ne=seed_level)
    # predictions vs metrics.json: the same model should give the same test NE
    ne_pred = table.ne()
    diffs = []
    for i, v in enumerate(table.variants):
        for j, s in enumerate(table.seeds):
            if table.has[i, j] and v in runs and s in runs[v]:
                diffs.append(abs(float(ne_pred[i, j]) - float(runs[v][s]["test"]["ne"])))
    ref_ne: Dict[str, float] = {}
    for col in refs:
        i = table.variants.index(REFERENCE_VARIANTS[col])
        ref_ne[REFERENCE_VARIANTS[col]] = float(ne_pred[i][table.has[i]].mean())
    out: Dict[str, Any] = {"boot": boot, "has_oracle": has_oracle, "missing_predictions": missing,
                           "references": refs, "reference_ne": ref_ne,
                           "prediction_runs": int(table.has.sum()) - len(table.seeds) * len(refs),
                           "ne_check": {"max_abs_diff_predictions_vs_metrics": max(diffs) if diffs else None,
                                        "runs_compared": len(diffs)},
                           "warnings": warnings}
    c, t = cfg.control, cfg.traditional
    out["gains"] = {v: boot.gain(v, c) for v in names if v != c and c in variants}
    out["gains_vs_traditional"] = {v: boot.gain(v, t) for v in names if v not in (t, c) and t in variants}
    if has_oracle and c in variants:
        out["oracle_share"] = {v: boot.ratio((v, c), (ORACLE, c)) for v in variants if v != c}
    if "p_content" in refs and c in variants:
        out["ceiling_share"] = {v: boot.ratio((v, c), (CEILING_CONTENT, c)) for v in variants if v != c}
    if cfg.side in variants and t in variants and c in variants:
        out["ratio"] = boot.ratio((cfg.side, c), (t, c))
        out["contrast_2_4"] = boot.contrast((cfg.side, c), (t, c), 2.4)
    pairs = [(cfg.side, cfg.raw_content), (cfg.side, t), (cfg.sparse_id, cfg.side), (cfg.side, PERMUTED_SIDE),
             *[(v, r) for _, _, v, r in ABLATION_CONTRASTS], *SEQUENCE_PAIRS, *cfg.extra_pairs]
    pairs = [(a, b) for a, b in dict.fromkeys(pairs) if a in variants and b in variants]
    out["pairs"] = {f"{a}_over_{b}": boot.gain(a, b) for a, b in pairs}
    # the same steps as differences of gains over control (points; they add up to side - traditional)
    out["ablation_points"] = {f"{a}_over_{b}": boot.contrast((a, c), (b, c)) for _, _, a, b in ABLATION_CONTRASTS
                              if a in variants and b in variants and c in variants}
    if per_seed:
        sv = [v for v in variants if all(v in p.scores for p in per_seed.values())]
        counts_file = data.get("item_counts_file")
        counts = np.load(counts_file) if counts_file else None
        scfg = SliceConfig(n_boot=cfg.slice_n_boot, seed=cfg.seed, resample_items=cfg.resample_items)
        out["slices"] = slice_report(per_seed, sv, control=c, cfg=scfg, item_counts=counts, pairs=pairs,
                                     progress=cfg.progress)
    else:
        out["slices"] = {}
    return out


# ------------------------------------------------------------------------------------------------
# targets


def _ci(e: Any, fmt: str = "{:+.3f}", unit: str = "%") -> str:
    if e is None or e.point is None:
        return "n/a"
    s = fmt.format(e.point) + unit
    if e.lo is not None and e.hi is not None:
        s += f" [{fmt.format(e.lo)}, {fmt.format(e.hi)}]{unit}"
    return s


def _met_line(target: str, measured: str, met: Optional[bool], interval: Optional[List[Optional[float]]] = None,
              confident: Optional[bool] = None) -> Dict[str, Any]:
    return {"target": target, "measured": measured, "met": met, "interval": interval, "confident": confident}


def _share_line(reference: str, sh: Any, target: float = 0.8) -> Dict[str, Any]:
    """The target line "SIDE captures >= 80% of the <reference>'s NE gain" for a bootstrap ratio."""
    met = None if sh.point is None else bool(sh.point >= target)
    return _met_line(f"SIDE captures >= {target:.0%} of the {reference}'s NE gain (simulated world)",
                     (f"share {sh.point:.3f}" if sh.point is not None else "share undefined")
                     + (f" [{sh.lo:.3f}, {sh.hi:.3f}]" if sh.lo is not None else f" ({sh.status})")
                     + f"; {reference} gain {_ci(sh.denominator)}",
                     met, [sh.lo, sh.hi] if sh.lo is not None else None,
                     None if sh.lo is None or met is None else (sh.lo >= target if met else sh.hi < target))


def targets(a: Dict[str, Any], rows: List[Dict[str, Any]], kind: str, cfg: ReportConfig,
            extra: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """docs/design.md section 8 targets of this world: measured number, interval, ``met``.

    ``met`` is judged on the point estimate (True / False; None = not measured here);
    ``confident`` says whether the 95% interval also clears the line.
    """
    by = {r["variant"]: r for r in rows}
    g: Dict[str, Any] = a.get("gains", {})
    out: List[Dict[str, Any]] = []
    side, trad, raw, sparse = cfg.side, cfg.traditional, cfg.raw_content, cfg.sparse_id
    ratio = a.get("ratio")
    con = a.get("contrast_2_4")
    if kind in ("movielens", "simulated") and ratio is not None and con is not None:
        if ratio.point is None:
            met: Optional[bool] = False
            meas = f"ratio undefined ({ratio.status})"
        else:
            met = bool(ratio.point >= 2.4)
            meas = f"ratio {ratio.point:.2f}" + (f" [{ratio.lo:.2f}, {ratio.hi:.2f}]" if ratio.lo is not None
                                                 else f" (interval: {ratio.status})")
        meas += (f"; SIDE {_ci(ratio.numerator)} vs traditional {_ci(ratio.denominator)}; "
                 f"SIDE - 2.4 x traditional = {_ci(con)}")
        out.append(_met_line(f"NE gain ratio SIDE / traditional SID >= 2.4 ({'simulated world' if kind == 'simulated' else 'MovieLens'})",
                             meas, met, [con.lo, con.hi] if con.lo is not None else None,
                             (con.lo is not None and con.lo > 0) if met else (con.hi is not None and con.hi < 0)))
    if kind == "movielens":
        p = a.get("pairs", {}).get(f"{side}_over_{trad}")
        if p is not None and p.point is not None:
            out.append(_met_line("SIDE vs traditional SID: separated, or reported as not separated with the interval's width",
                                 f"NE gain of SIDE over traditional SID {_ci(p)}: {p.verdict}"
                                 + (f" (interval width {p.width:.3f} points)" if p.width is not None else ""),
                                 True, [p.lo, p.hi] if p.lo is not None else None, p.verdict == "separated"))
        gs, gr = g.get(side), g.get(raw)
        if gs is not None and gr is not None and gs.point is not None and gr.point is not None:
            con90 = a["boot"].contrast((side, cfg.control), (raw, cfg.control), 0.9) if gr.point > 0 else None
            met = gs.point >= 0.9 * gr.point if gr.point > 0 else gs.point >= gr.point
            out.append(_met_line("SIDE NE gain >= 90% of raw-content history's",
                                 f"SIDE {_ci(gs)} vs raw content {_ci(gr)}"
                                 + (f"; SIDE - 0.9 x raw = {_ci(con90)}" if con90 is not None else ""),
                                 bool(met), [con90.lo, con90.hi] if con90 is not None and con90.lo is not None else None,
                                 None if con90 is None or con90.lo is None else
                                 (con90.lo > 0 if met else con90.hi < 0)))
        gsp = g.get(sparse)
        if gs is not None and gsp is not None and gs.point is not None and gsp.point is not None:
            p = a["pairs"].get(f"{sparse}_over_{side}")
            met = gs.point >= gsp.point
            out.append(_met_line("SIDE NE gain >= sparse-ID history's",
                                 f"SIDE {_ci(gs)} vs sparse-ID {_ci(gsp)}; sparse-ID over SIDE {_ci(p)} ({p.verdict if p else 'n/a'})",
                                 bool(met), [p.lo, p.hi] if p is not None and p.lo is not None else None,
                                 None if p is None or p.lo is None else (p.hi < 0 if met else p.lo > 0)))
    if kind == "simulated":
        sh = a.get("oracle_share", {}).get(side)
        if sh is not None:
            out.append(_share_line("oracle", sh))
        else:
            out.append(_met_line("SIDE captures >= 80% of the oracle's NE gain (simulated world)",
                                 "not measured: no p_true in the predictions (or no SIDE run)", None))
        cs = (a.get("ceiling_share") or {}).get(side)
        if cs is not None:  # worlds that store their ceilings (docs/design.md section 7c)
            out.append(_share_line("content ceiling", cs))
        cold = ((a.get("slices") or {}).get("item_freq", {}).get("buckets", {}).get("cold") or {})
        cp = (cold.get("pairs") or {}).get(f"{side}_over_{raw}")
        if cp is not None and cp.get("point") is not None:
            lo_hi = cp.get("ci95")
            met = bool(cp["point"] >= 0)
            ne = cold.get("ne", {})
            out.append(_met_line("cold items: SIDE >= raw-content history (NE on cold target items)",
                                 f"NE gain of SIDE over raw content on {cold.get('rows')} cold rows: {cp['point']:+.3f}%"
                                 + (f" [{lo_hi[0]:+.3f}, {lo_hi[1]:+.3f}]%" if lo_hi else "")
                                 + f" ({cp.get('verdict')}); NE SIDE {_f(ne.get(side), '{:.5f}')}, raw {_f(ne.get(raw), '{:.5f}')}",
                                 met, lo_hi, None if not lo_hi else (lo_hi[0] > 0 if met else lo_hi[1] < 0)))
        else:
            out.append(_met_line("cold items: SIDE >= raw-content history (NE on cold target items)",
                                 "not measured: no cold target items with predictions of both variants", None))
    seq = a.get("pairs", {}).get(f"seq_{side}_over_{side}") if kind == "simulated" else None
    if seq is not None and seq.point is not None:  # the multi-interest world's sequence target
        out.append(_met_line("sequence models: DIN over SIDE beats DLRM over SIDE (separated)",
                             f"NE gain of seq_{side} over {side} {_ci(seq)} ({seq.verdict})", bool(seq.point > 0),
                             [seq.lo, seq.hi] if seq.lo is not None else None,
                             None if seq.lo is None else (seq.lo > 0 if seq.point > 0 else seq.hi < 0)))
    if kind == "id_dominant":
        p = a.get("pairs", {}).get(f"{sparse}_over_{side}")
        if p is not None and p.point is not None:
            out.append(_met_line("control world (id-only term dominates): sparse-ID beats SIDE",
                                 f"NE gain of sparse-ID over SIDE {_ci(p)} ({p.verdict}); sparse-ID {_ci(g.get(sparse))}, "
                                 f"SIDE {_ci(g.get(side))} over control", bool(p.point > 0),
                                 [p.lo, p.hi] if p.lo is not None else None,
                                 None if p.lo is None else (p.lo > 0 if p.point > 0 else p.hi < 0)))
        else:
            out.append(_met_line("control world (id-only term dominates): sparse-ID beats SIDE",
                                 "not measured: needs sparse-ID and SIDE runs", None))
    bs = by.get(side, {}).get("bytes_per_event")
    bt = by.get(trad, {}).get("bytes_per_event")
    braw = by.get(raw, {}).get("bytes_per_event")
    if bs is not None and bt:
        out.append(_met_line("footprint: SIDE <= 1/3 of traditional SID (bytes/event as consumed)",
                             f"{bs:.0f} vs {bt:.0f} bytes/event (1/{bt / bs:.1f})", bool(bs * 3 <= bt)))
    if bs is not None and braw:
        out.append(_met_line("footprint: SIDE <= 1/100 of raw fp16 content embedding",
                             f"{bs:.0f} vs {braw:.0f} bytes/event (1/{braw / bs:.1f})", bool(bs * 100 <= braw)))
    tp = (extra or {}).get("train_throughput")
    if tp:
        out.append(_met_line("training throughput, DLRM with SIDE vs sparse-ID vs prefix-ngram (synthetic, 10^6 items, "
                             "10^3-event histories, 2 ranks)", tp, None))
    if kind == "movielens":
        for t in ("pooled history embedding (10^4-event histories): SIDE >= 5x sparse-ID EBC events/s",
                  "DPCA reconstruction <= RQ-KMeans at equal bits (held-out)",
                  "tokenizer encode throughput within 2x of faiss ResidualQuantizer",
                  "test suite < 10 min on a 2-core CPU"):
            out.append(_met_line(t, "not measured by this job (benchmarks/lookup.py, benchmarks/quantizers.py, "
                                    "benchmarks/tokenizer_quality.py, .ci/run)", None))
    return out


def _control_world_target(folder: Path) -> Dict[str, Any]:
    """The "sparse-ID must win" line of the control world's ``report.json`` (or why it is missing)."""
    name = "control world (id-only term dominates): sparse-ID beats SIDE"
    f = folder / "report.json"
    if not f.is_file():
        return _met_line(name, f"not measured: {f} not found (run `torchrec-side report {folder}` first)", None)
    try:
        rep = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        return _met_line(name, f"not measured: {f} is not valid JSON ({e})", None)
    for t in rep.get("targets", []):
        if "sparse-ID beats SIDE" in str(t.get("target")):
            return {**t, "target": f"{t['target']} (from {f})"}
    return _met_line(name, f"not measured: {f} has no such target (world {rep.get('world')!r})", None)


def _linked_pair(folder: Path, cfg: ReportConfig) -> Optional[Dict[str, Any]]:
    """The control world's ``pairs["<sparse_id>_over_<side>"]`` record, or None if unreadable."""
    try:
        rep = json.loads((folder / "report.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    p = (rep.get("pairs") or {}).get(f"{cfg.sparse_id}_over_{cfg.side}")
    return p if isinstance(p, dict) else None


def _is_side_claim(target: str) -> bool:
    """Targets that state what SIDE does in a world (gated by the control world); not the control
    line itself, nor footprints (bytes, not a property of the world)."""
    return "SIDE" in target and "sparse-ID beats SIDE" not in target and not target.startswith("footprint")


def control_world_verdict(kind: str, tgt: List[Dict[str, Any]], a: Dict[str, Any], cfg: ReportConfig,
                          folder: Optional[str]) -> Dict[str, Any]:
    """``report.json``'s ``control_world`` block: did sparse-ID beat SIDE in the control world?

    Args:
        kind (str): this world's kind (:func:`world_kind`); ``id_dominant`` reads its own target.
        tgt (List[Dict[str, Any]]): this report's targets (holding the control-world line: its own,
            or the one :func:`_control_world_target` copied from the linked control world).
        a (Dict[str, Any]): :func:`analyse`'s output.
        cfg (ReportConfig): variant names.
        folder (Optional[str]): the linked control world's demo folder (None: none linked).

    Returns:
        Dict[str, Any]: ``verdict`` -- ``passed`` (sparse-ID's gain over SIDE is positive and its
        95% interval clears 0), ``failed`` (measured, not so), ``missing`` (no control world, or
        it measured nothing); ``sparse_over_side`` (point, %) and ``sparse_over_side_ci95``;
        ``measured`` (the target line's text) and ``source``.

    Example::

        control_world_verdict("simulated", tgt, a, cfg, "runs/demo/adsworld_id_dominant")["verdict"]
    """
    line = next((t for t in tgt if "sparse-ID beats SIDE" in str(t.get("target"))), None)
    pair: Optional[Dict[str, Any]] = None
    source: Optional[str] = None
    if kind == "id_dominant":
        e = a.get("pairs", {}).get(f"{cfg.sparse_id}_over_{cfg.side}")
        pair, source = (e.to_dict() if e is not None else None), "this report"
    elif folder:
        pair, source = _linked_pair(Path(folder), cfg), str(Path(folder) / "report.json")
    if line is None or line.get("met") is None:
        verdict = "missing"
    else:
        verdict = "passed" if line["met"] and line.get("confident") else "failed"
    return {"verdict": verdict,
            "sparse_over_side": (pair or {}).get("point"),
            "sparse_over_side_ci95": (pair or {}).get("ci95") or (line or {}).get("interval"),
            "measured": (line or {}).get("measured") or "no control world linked (pipeline.json `control_world`)",
            "source": source}


# ------------------------------------------------------------------------------------------------
# plots


def _plots(rows: List[Dict[str, Any]], a: Dict[str, Any], run: Path, label: str, cfg: ReportConfig) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    gains = {v: e for v, e in a.get("gains", {}).items() if e.point is not None}
    names = [r["variant"] for r in rows if r["variant"] in gains] + [v for v in gains if v not in {r["variant"] for r in rows}]
    fig, ax = plt.subplots(figsize=(8, 4))
    if names:
        pts = np.array([gains[v].point for v in names])
        lo = np.array([gains[v].lo if gains[v].lo is not None else gains[v].point for v in names])
        hi = np.array([gains[v].hi if gains[v].hi is not None else gains[v].point for v in names])
        ax.bar(names, pts, yerr=np.vstack([pts - lo, hi - pts]), capsize=4, color="tab:blue")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("test NE gain vs control (%)")
    levels = {gains[v].level for v in names}
    top = a["boot"].level
    how = (f"{top} bootstrap" if levels == {top} else "seed-level bootstrap" if levels == {"seeds"}
           else f"{top} bootstrap; seed level where predictions are missing")
    ax.set_title(f"NE gain per variant, 95% interval ({how}){label}", fontsize=10)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    save_figure(fig, run / "ne_gain.png")
    plt.close(fig)
    files.append("ne_gain.png")

    buckets = ((a.get("slices") or {}).get("item_freq") or {}).get("buckets") or {}
    if buckets:
        from torchrec_side.eval.slices import FREQ_BUCKETS

        vs = sorted({v for b in buckets.values() for v in (b.get("gain") or {})},
                    key=lambda v: names.index(v) if v in names else len(names))
        fig, ax = plt.subplots(figsize=(9, 4))
        width = 0.8 / max(len(vs), 1)
        for i, v in enumerate(vs):
            x, y, el, eh = [], [], [], []
            for k, b in enumerate(FREQ_BUCKETS):
                e = (buckets.get(b, {}).get("gain") or {}).get(v)
                if e is None or e.get("point") is None:
                    continue
                x.append(k + (i - (len(vs) - 1) / 2) * width)
                y.append(e["point"])
                ci = e.get("ci95") or [e["point"], e["point"]]
                el.append(e["point"] - ci[0])
                eh.append(ci[1] - e["point"])
            if x:
                ax.bar(x, y, width=width, yerr=[el, eh], capsize=2, label=v)
        ax.set_xticks(range(len(FREQ_BUCKETS)))
        ax.set_xticklabels([f"{b}\n({buckets.get(b, {}).get('rows', 0)} rows)" for b in FREQ_BUCKETS])
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel("test NE gain vs control (%)")
        ax.set_title(f"NE gain by target-item training frequency, 95% interval{label}")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        save_figure(fig, run / "gain_by_item_freq.png")
        plt.close(fig)
        files.append("gain_by_item_freq.png")

    shares = {v: e for v, e in (a.get("oracle_share") or {}).items() if e.point is not None}
    if shares:
        sn = [v for v in names if v in shares]
        pts = np.array([shares[v].point for v in sn])
        lo = np.array([shares[v].lo if shares[v].lo is not None else shares[v].point for v in sn])
        hi = np.array([shares[v].hi if shares[v].hi is not None else shares[v].point for v in sn])
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.bar(sn, pts, yerr=np.vstack([pts - lo, hi - pts]), capsize=4, color="tab:green")
        ax.axhline(1.0, color="k", lw=0.8, ls="--", label="oracle")
        ax.axhline(0.8, color="tab:red", lw=0.8, ls=":", label="target 0.8 (SIDE)")
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_ylabel("share of the oracle's NE gain over control")
        ax.set_title(f"Share of the oracle's gain, 95% interval{label}")
        ax.legend(fontsize=8)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
        fig.tight_layout()
        save_figure(fig, run / "oracle_share.png")
        plt.close(fig)
        files.append("oracle_share.png")

    ceilings = {k: c for k, c in (_ceilings(a) or {}).items() if c.get("ne_gain_pct") is not None}
    vn = [v for v in names if v in {r["variant"] for r in rows}]
    if ceilings and vn:
        # each variant's gain against what is reachable: the ceilings' gains as horizontal lines
        pts = np.array([gains[v].point for v in vn])
        lo = np.array([gains[v].lo if gains[v].lo is not None else gains[v].point for v in vn])
        hi = np.array([gains[v].hi if gains[v].hi is not None else gains[v].point for v in vn])
        fig, ax = plt.subplots(figsize=(11, 4.5))
        ax.bar(vn, pts, yerr=np.vstack([pts - lo, hi - pts]), capsize=4, color="tab:blue", alpha=0.75,
               label="variant (95% CI)")
        style = {"content": ("tab:green", "-"), "content_item": ("tab:olive", "--"), "id": ("tab:purple", "-."),
                 "oracle": ("k", ":")}
        words = {"content": "content ceiling", "content_item": "content + item posterior", "id": "id ceiling",
                 "oracle": "oracle"}
        for k, c in ceilings.items():
            color, ls = style[k]
            ax.axhline(c["ne_gain_pct"], color=color, ls=ls, lw=1.4, zorder=3,
                       label=f"{words[k]} {c['ne_gain_pct']:+.2f}% {_ci_list(c.get('ne_gain_ci95'), '{:+.2f}')}")
            if k == "content" and c.get("ne_gain_ci95"):  # the reference of ceiling_share: its interval shaded
                ax.axhspan(c["ne_gain_ci95"][0], c["ne_gain_ci95"][1], color=color, alpha=0.12, zorder=0,
                           label="content ceiling's 95% interval")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel("test NE gain vs control (%)")
        ax.set_title(f"NE gain against the ceilings, 95% intervals{label}", fontsize=10)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
        fig.tight_layout()
        save_figure(fig, run / "gain_vs_ceilings.png")
        plt.close(fig)
        files.append("gain_vs_ceilings.png")

    rb = [r for r in rows if r["bytes_per_event"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([r["variant"] for r in rb], [r["bytes_per_event"] for r in rb], color="tab:orange")
    ax.set_yscale("log")
    ax.set_ylabel("bytes per history event (as consumed, log)")
    ax.set_title(f"History footprint per event{label}")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    save_figure(fig, run / "bytes_per_event.png")
    plt.close(fig)
    files.append("bytes_per_event.png")
    return files


# ------------------------------------------------------------------------------------------------
# the report


def _f(x: Any, fmt: str = "{:.4f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _jsonable(x: Any) -> Any:
    if hasattr(x, "to_dict"):
        return x.to_dict()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    return x


def _ratio_record(a: Dict[str, Any], rows: List[Dict[str, Any]], cfg: ReportConfig) -> Dict[str, Any]:
    """``side_vs_traditional_ne_gain``: the fields of the seed-level record, from the two-level bootstrap."""
    r = a.get("ratio")
    if r is None:
        return side_vs_traditional(rows, cfg.side, cfg.traditional)
    reps = r.replicates[np.isfinite(r.replicates)]
    defined = r.point is not None
    note = r.status if r.status != "ok" else f"paired bootstrap over {r.numerator.level}"
    if r.point is None and r.denominator.point is not None and r.denominator.point <= 0:
        note = (f"traditional SID's mean NE gain is not positive ({r.denominator.point:+.3f}%): the ratio is "
                f"meaningless; SIDE's mean gain is {_f(r.numerator.point, '{:+.3f}')}%")
    out: Dict[str, Any] = {
        "ratio": r.point,
        "ratio_ci95": [r.lo, r.hi] if r.lo is not None else None,
        "ratio_std": float(reps.std(ddof=1)) if defined and reps.size > 1 else None,
        "ratio_p05": float(np.percentile(reps, 5)) if defined and reps.size else None,
        "ratio_p95": float(np.percentile(reps, 95)) if defined and reps.size else None,
        "status": r.status,
        "level": r.numerator.level,
        "side_gain_pct_mean": r.numerator.point,
        "traditional_gain_pct_mean": r.denominator.point,
        "side_gain_ci95": [r.numerator.lo, r.numerator.hi] if r.numerator.lo is not None else None,
        "traditional_gain_ci95": [r.denominator.lo, r.denominator.hi] if r.denominator.lo is not None else None,
        "bootstrap_share_nonpositive_traditional_gain": r.nonpositive_denominator_share,
        "seeds": r.numerator.seeds,
        "note": note,
    }
    con = a.get("contrast_2_4")
    if con is not None:
        out["side_minus_2_4x_traditional"] = con.to_dict()
    return out


def write_report(run: Path, plots: bool = True, world: Optional[str] = None,
                 cfg: Optional[ReportConfig] = None) -> Dict[str, Any]:
    """Writes ``report.json``, ``report.md`` and plots into ``run``; returns the report dict.

    Args:
        run (Path): one world's demo folder (``pipeline.json`` and the run folders it names).
        plots (bool): write the PNG plots (overrides ``cfg.plots``).
        world (Optional[str]): the world's name (overrides ``cfg.world``; see :class:`ReportConfig`).
        cfg (Optional[ReportConfig]): bootstrap sizes, variant names.

    Returns:
        Dict[str, Any]: the content of ``report.json``.

    Example::

        rep = write_report(Path("runs/demo"), world="movielens")
        rep["ne_gain_ci95"]["side"], rep["targets"]
    """
    run = Path(run)
    cfg = cfg or ReportConfig()
    data = collect(run)
    rec = data["pipeline"]
    rows = summarize(data["runs"], control=cfg.control)
    a = analyse(data, cfg)
    wname = world or _world_name(cfg, rec, a["has_oracle"])
    kind = world_kind(wname, a["has_oracle"], rec)
    gains: Dict[str, Any] = a["gains"]
    tuned_of = {v["name"]: v.get("tuned") for v in rec.get("variants", [])}
    # rows: the gain the intervals belong to (the same numbers as before when there are no predictions)
    for r in rows:
        e = gains.get(r["variant"])
        if e is not None and e.point is not None:
            r["ne_gain_pct_mean"] = e.point
            r["ne_gain_pct_std"] = _std(e.per_seed)
            r["ne_gain_pct_per_seed"] = dict(zip([str(s) for s in e.seeds], e.per_seed))
        r["ne_gain_ci95"] = [e.lo, e.hi] if e is not None and e.lo is not None else None
        r["ne_gain_verdict"] = e.verdict if e is not None else None
        r["ne_gain_level"] = e.level if e is not None else None
        t = a["gains_vs_traditional"].get(r["variant"])
        r["ne_gain_vs_traditional"] = t.to_dict() if t is not None else None
        sh = (a.get("oracle_share") or {}).get(r["variant"])
        r["oracle_share"] = sh.to_dict() if sh is not None else None
        cs = (a.get("ceiling_share") or {}).get(r["variant"])
        r["ceiling_share"] = cs.to_dict() if cs is not None else None
        # the setting tune_and_train chose on validation (None: the world was not tuned)
        r["tuned"] = tuned_of.get(r["variant"])
    extra: Dict[str, Any] = {}
    tp_path = run / "train_throughput.json"
    if tp_path.is_file():
        tp = json.loads(tp_path.read_text())
        sm = tp.get("summary", {})
        eps = sm.get("examples_per_s", {})
        extra["train_throughput"] = (
            ", ".join(f"{k} {v:.0f} ex/s" for k, v in eps.items())
            + f"; SIDE / sparse-ID {sm.get('side_vs_sparse_id', float('nan')):.2f}x, SIDE / prefix-ngram "
            f"{sm.get('side_vs_prefix_ngram', float('nan')):.2f}x (benchmarks/train_throughput.py, {tp_path.name})")
    quick = rec.get("mode") == "quick"
    tgt = targets(a, rows, kind, cfg, extra)
    cw = cfg.control_world or rec.get("control_world")
    if cw and kind != "id_dominant":
        tgt.append(_control_world_target(Path(cw)))
    control_world = control_world_verdict(kind, tgt, a, cfg, cw)
    if kind == "simulated":  # the control world gates every SIDE claim of a simulated world
        for t in tgt:
            if _is_side_claim(str(t["target"])):
                t["validated"] = control_world["verdict"] == "passed"
    ratio = _ratio_record(a, rows, cfg)
    roles = {v["name"]: v for v in rec.get("variants", [])}
    seeds_all = sorted({s for r in rows for s in r["seeds"]})
    missing = a["missing_predictions"]
    from torchrec_side.eval.slices import ORACLE

    og = gains.get(ORACLE)
    report: Dict[str, Any] = {
        "world": wname,
        "world_kind": kind,
        "mode": rec.get("mode"),
        "quick": quick,
        "seeds": rec.get("seeds"),
        "epochs": rec.get("epochs"),
        "nproc": rec.get("nproc"),
        "control_world": control_world,
        "ceilings": _ceilings(a),
        "protocol": _protocol(rec, rows),
        "rows": [{k: r[k] for k in ("variant", "seeds", "ne_mean", "ne_std", "ne_gain_pct_mean", "ne_gain_pct_std",
                                     "auc_mean", "bytes_per_event", "learned_params", "train_examples_per_s",
                                     "ceiling_share", "best_epochs", "tuned")}
                 for r in rows],
        "details": rows,
        "ne_gain_ci95": {v: ([e.lo, e.hi] if e.lo is not None else None) for v, e in gains.items()},
        "ne_gain": {v: e.to_dict() for v, e in gains.items()},
        "ne_gain_vs_traditional": {v: e.to_dict() for v, e in a["gains_vs_traditional"].items()},
        "oracle_share": ({v: e.to_dict() for v, e in a["oracle_share"].items()} if "oracle_share" in a else None),
        "oracle_ne_gain": og.to_dict() if og is not None else None,
        "ceiling_share": ({v: e.to_dict() for v, e in a["ceiling_share"].items()} if "ceiling_share" in a else None),
        "pairs": {k: e.to_dict() for k, e in a["pairs"].items()},
        "ablation_grid": _ablation_grid(gains),
        "ablation_contrasts": _ablation_contrasts(a),
        "side_vs_traditional_ne_gain": ratio,
        "slices": _jsonable(a["slices"]),
        "statistics": {"bootstrap": {"n_boot": cfg.n_boot, "slice_n_boot": cfg.slice_n_boot, "seed": cfg.seed,
                                     "level": 0.95, "units": _units(a["boot"].level)},
                       "level": a["boot"].level,
                       "runs_with_predictions": a["prediction_runs"],
                       "runs_without_predictions": [{"variant": v, "seed": s} for v, s in missing],
                       "ne_check": a["ne_check"], "paired_seeds": len(seeds_all)},
        "targets": tgt,
        "failed": rec.get("failed", []),
        "pipeline_seconds": {k: rec.get(k) for k in ("prep_seconds", "train_seconds", "total_seconds")},
        "epoch_sweep": rec.get("epoch_sweep"),
        "warnings": list(rec.get("warnings", [])) + a["warnings"],
    }
    report = _jsonable(report)
    label = " (QUICK)" if quick else ""
    if plots and cfg.plots:
        report["plots"] = _plots(rows, a, run, label, cfg)
    write_json(run / "report.json", report)
    write_text(run / "report.md", _markdown(report, rows, a, rec, roles, kind, quick, cfg))
    return report


def _ablation_grid(gains: Dict[str, Any]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``report.json``'s ``ablation_grid``: ``{tokenizer: {embedding: {"variant", "gain"}}}`` over
    :data:`ABLATION_ROWS` x :data:`ABLATION_COLUMNS`; ``gain`` is the variant's NE gain over control
    (``Estimate.to_dict``), None for a cell whose variant did not run."""
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for key, _, cells in ABLATION_ROWS:
        out[key] = {}
        for (col, _), v in zip(ABLATION_COLUMNS, cells):
            e = gains.get(v)
            out[key][col] = {"variant": v, "gain": e.to_dict() if e is not None else None}
    return out


def _ablation_contrasts(a: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """``report.json``'s ``ablation_contrasts``: per :data:`ABLATION_CONTRASTS` step, the paired gain
    of its variant over its reference (``gain``, % of the reference's NE; the ``pairs`` entry) and the
    difference of their gains over control (``points``; the three add up to SIDE's gain minus
    traditional SID's); both None when a side did not run."""
    out: Dict[str, Dict[str, Any]] = {}
    for key, what, v, r in ABLATION_CONTRASTS:
        k = f"{v}_over_{r}"
        g, pts = a["pairs"].get(k), (a.get("ablation_points") or {}).get(k)
        out[key] = {"isolates": what, "variant": v, "reference": r, "pair": k,
                    "gain": g.to_dict() if g is not None else None,
                    "points": pts.to_dict() if pts is not None else None}
    return out


def _ablation_markdown(report: Dict[str, Any]) -> List[str]:
    """The "Tokenizer x embedding ablation" section: the 3 x 2 grid (NE gain % over control with its
    95% interval; "not run" where the cell's variant did not run) and the contrasts. Empty when none of
    the cells beyond ``traditional_sid`` and ``side`` ran (the grid would say nothing new)."""
    grid = report.get("ablation_grid") or {}
    extra = {v for _, _, cells in ABLATION_ROWS for v in cells} - {"traditional_sid", "side"}
    if not any(c["gain"] is not None for row in grid.values() for c in row.values() if c["variant"] in extra):
        return []
    L = ["## Tokenizer x embedding ablation", "",
         "NE gain over control, % [95% CI] (same resamples as the variant table), of each tokenizer (rows) "
         "under each embedding (columns); 'not run': the cell's variant was not trained in this world.", "",
         "| tokenizer | " + " | ".join(lab for _, lab in ABLATION_COLUMNS) + " |",
         "|" + " --- |" * (1 + len(ABLATION_COLUMNS))]
    for key, label, _ in ABLATION_ROWS:
        cells = []
        for col, _ in ABLATION_COLUMNS:
            c = grid[key][col]
            g = c["gain"]
            cells.append(f"`{c['variant']}` not run" if g is None or g.get("point") is None else
                         f"`{c['variant']}` {g['point']:+.3f} {_ci_list(g.get('ci95'))}")
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    L += ["", "SIDE's lead over traditional SID, step by step along the grid: the paired NE gain of each step's variant "
          "over its reference (% of the reference's NE), and the difference of their gains over control (points; "
          "the three add up to SIDE's gain minus traditional SID's).", "",
          "| step | isolates | pair | paired NE gain % [95% CI] | verdict | points [95% CI] |",
          "| --- | --- | --- | --- | --- | --- |"]
    for key, c in (report.get("ablation_contrasts") or {}).items():
        g, pts = c.get("gain"), c.get("points")
        if g is None or g.get("point") is None:
            L.append(f"| {key} | {c['isolates']} | `{c['pair']}` | not run | – | – |")
            continue
        ptxt = (f"{pts['point']:+.3f} {_ci_list(pts.get('ci95'))}" if pts and pts.get("point") is not None else "n/a")
        L.append(f"| {key} | {c['isolates']} | `{c['pair']}` | {g['point']:+.3f} {_ci_list(g.get('ci95'))} | "
                 f"{g['verdict']} | {ptxt} |")
    L.append("")
    return L


def _sequence_markdown(report: Dict[str, Any]) -> List[str]:
    """The "Sequence models" section: the paired gain of each :data:`SEQUENCE_PAIRS` pair that ran
    (DIN over DLRM on the same features; DIN variants against each other). Empty when none ran."""
    rows = [(v, r, report["pairs"].get(f"{v}_over_{r}")) for v, r in SEQUENCE_PAIRS]
    rows = [(v, r, g) for v, r, g in rows if g is not None and g.get("point") is not None]
    if not rows:
        return []
    L = ["## Sequence models", "",
         "Paired NE gain of the target-attention (DIN) variants over the pooled (DLRM) variant with the same "
         "history feature, and of the DIN variants against each other (% of the reference's NE, same "
         "resamples as the variant table). The world's users are multi-interest (docs/design.md section 7c), "
         "so attending to the events near the target can beat averaging them; DIN reads only the last "
         "`model.max_events` events of each history, DLRM the whole window.", "",
         "| variant | over | paired NE gain % [95% CI] | verdict |", "| --- | --- | --- | --- |"]
    L += [f"| `{v}` | `{r}` | {g['point']:+.3f} {_ci_list(g.get('ci95'))} | {g['verdict']} |" for v, r, g in rows]
    L.append("")
    return L


#: ``report.json`` ``ceilings`` keys -> reference column (docs/design.md section 7c), in display order.
CEILING_KEYS: Tuple[Tuple[str, str], ...] = (("content", "p_content"), ("content_item", "p_content_item"),
                                             ("id", "p_id"), ("oracle", "p_true"))


def _ceilings(a: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """``report.json``'s ``ceilings``: per reference the world stores, its test NE (mean over seeds)
    and its paired NE gain over control with the 95% interval; None when the predictions carry no
    content ceiling (worlds, stores or runs written before the ceilings were carried)."""
    from torchrec_side.eval.predictions import REFERENCE_VARIANTS

    refs = a.get("references") or []
    if "p_content" not in refs:
        return None
    out: Dict[str, Any] = {}
    for key, col in CEILING_KEYS:
        if col not in refs:
            continue
        name = REFERENCE_VARIANTS[col]
        e = a["gains"].get(name)
        out[key] = {"variant": name, "column": col, "ne": a["reference_ne"].get(name),
                    "ne_gain_pct": e.point if e is not None else None,
                    "ne_gain_ci95": [e.lo, e.hi] if e is not None and e.lo is not None else None}
    return out


def _units(level: str) -> str:
    """``"seeds x users x items"`` -> words for the report (two-way: Owen's pigeonhole bootstrap)."""
    parts = level.split(" x ")
    words = [{"seeds": "seeds", "users": "test users", "items": "test items"}.get(p, p) for p in parts]
    text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    two_way = "users" in parts and "items" in parts
    return text + (", resampled independently with replacement (two-way pigeonhole bootstrap, Owen 2007)" if two_way
                   else ", resampled with replacement")


def _ci_list(ci: Any, fmt: str = "{:+.3f}") -> str:
    return "n/a" if not ci or ci[0] is None else f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def _markdown(report: Dict[str, Any], rows: List[Dict[str, Any]], a: Dict[str, Any], rec: Dict[str, Any],
              roles: Dict[str, Any], kind: str, quick: bool, cfg: ReportConfig) -> str:
    wname = report["world"]
    title = {"movielens": "MovieLens-100K", "simulated": "simulated ads world",
             "id_dominant": "simulated ads world, id-only term dominant (control world)"}[kind]
    L: List[str] = []
    L.append(f"# torchrec-side benchmark report: {title} (`{wname}`){' — QUICK RUN (not the benchmark)' if quick else ''}")
    L.append("")
    L.append(_control_line(report["control_world"], kind))
    L.append("")
    if quick:
        L.append("**Quick mode**: fewer variants, seeds and epochs than the benchmark; the numbers below are a "
                 "smoke test, not evidence. Run `torchrec-side demo --out runs/demo` for the full job.")
        L.append("")
    st = report["statistics"]
    L.append(f"Seeds {rec.get('seeds')}, {rec.get('epochs')} epoch(s), {rec.get('nproc')} ranks (TorchX local_cwd). "
             f"NE/AUC on the **test** split; each run is scored with the model of its best validation epoch "
             f"(nothing is selected on test). NE gain = (NE_control - NE_variant) / NE_control in %, paired by seed. "
             f"Intervals: 95% percentile intervals of a paired bootstrap over {_units(st['level'])} "
             f"({cfg.n_boot} replicates, level `{st['level']}`; events are not independent units: a user's rows "
             f"share the user, an item's rows share the item; one resample per replicate shared by every run), "
             f"docs/design.md section 7b. \"not separated\": the interval covers 0. "
             f"Bytes per event: history as the model consumes it (int64 KJT values; raw content counted as 384 fp16).")
    L.append("")
    rep_ = (rec.get("world") or {}).get("target_in_history") if isinstance(rec.get("world"), dict) else None
    if rep_:
        L.append(f"**Repeat exposure**: {100 * rep_['share']:.1f}% of {rep_['impressions']} sampled test impressions "
                 f"have their item in the user's history window (last {rep_['max_history']} events; "
                 f"{rep_['mean_count_when_in']:.1f} times on average), CTR {100 * rep_['ctr_in']:.2f}% for those "
                 f"against {100 * rep_['ctr_not_in']:.2f}% for the others. A path that maps the target and the "
                 f"history through one fixed function (SIDE, raw content with `target: true`) can count such "
                 f"repeats; separate learned target and history rows cannot.")
        L.append("")
    if st["paired_seeds"] < 10:
        L.append(f"**Seeds**: {st['paired_seeds']} paired seed(s); docs/design.md section 7b asks for at least 10.")
        L.append("")
    if st["runs_without_predictions"]:
        miss = ", ".join(f"{m['variant']}/seed{m['seed']}" for m in st["runs_without_predictions"])
        L.append(f"**Predictions missing** for {len(st['runs_without_predictions'])} run(s) ({miss}): every number "
                 f"involving them uses the seed-level test NE of `metrics.json` (bootstrap over seeds only, "
                 f"level \"seeds\"), and no slice includes them.")
        L.append("")
    ck = st["ne_check"]
    if ck.get("runs_compared"):
        L.append(f"Check: test NE recomputed from the predictions differs from `metrics.json` by at most "
                 f"{ck['max_abs_diff_predictions_vs_metrics']:.2e} over {ck['runs_compared']} run(s).")
        L.append("")
    sw = rec.get("epoch_sweep")
    if sw:
        L.append(f"Epoch count chosen on validation ({sw['rule']}): mean val NE per epoch "
                 f"{[round(x, 5) for x in sw['mean_val_ne_per_epoch']]} -> {sw['epochs']} epoch(s).")
        L.append("")
    oracle = report.get("oracle_share") is not None
    ceil = report.get("ceiling_share") is not None
    L.append("## Variants")
    L.append("")
    head = ("| variant | arch | seeds | best epoch | test NE mean ± std | NE gain % [95% CI] | vs 0 | "
            "gain over trad. SID % [95% CI] |" + (" oracle share [95% CI] |" if oracle else "")
            + (" content-ceiling share [95% CI] |" if ceil else "")
            + " AUC | bytes/event (consumed) | bytes/event (file) | learned params | train ex/s |")
    L.append(head)
    L.append("|" + " --- |" * (head.count("|") - 1))
    for r in rows:
        gv = r.get("ne_gain_vs_traditional") or {}
        sh = r.get("oracle_share") or {}
        gain_txt = ("0 (reference)" if r["variant"] == cfg.control else
                    f"{_f(r['ne_gain_pct_mean'], '{:+.3f}')} {_ci_list(r.get('ne_gain_ci95'))}")
        cells = [r["variant"], str(r["arch"]), str(len(r["seeds"])),
                 ",".join(str(b) for b in sorted({b for b in (r.get("best_epochs") or {}).values() if b is not None}))
                 or "n/a",
                 f"{_f(r['ne_mean'], '{:.5f}')} ± {_f(r['ne_std'], '{:.5f}')}", gain_txt,
                 (r.get("ne_gain_verdict") or "–") if r["variant"] != cfg.control else "–",
                 (f"{_f(gv.get('point'), '{:+.3f}')} {_ci_list(gv.get('ci95'))} ({gv.get('verdict')})"
                  if gv.get("point") is not None else "–")]
        if oracle:
            cells.append(f"{_f(sh.get('point'), '{:.3f}')} {_ci_list(sh.get('ci95'), '{:.3f}')}"
                         if sh.get("point") is not None else "–")
        if ceil:
            cs = r.get("ceiling_share") or {}
            cells.append(f"{_f(cs.get('point'), '{:.3f}')} {_ci_list(cs.get('ci95'), '{:.3f}')}"
                         if cs.get("point") is not None else "–")
        cells += [_f(r["auc_mean"]), _f(r["bytes_per_event"], "{:.0f}"), _f(r.get("file_bytes_per_event"), "{:.2f}"),
                  str(r["learned_params"]) if r["learned_params"] is not None else "n/a",
                  _f(r["train_examples_per_s"], "{:.0f}")]
        L.append("| " + " | ".join(cells) + " |")
    og = report.get("oracle_ne_gain")
    if report.get("ceilings"):
        L.append("")
        L.append(_ceilings_line(report["ceilings"]))
    elif og:
        L.append("")
        L.append(f"Oracle (true click probabilities): NE gain over control {_f(og.get('point'), '{:+.3f}')}% "
                 f"{_ci_list(og.get('ci95'))}.")
    L.append("")
    for r in rows:
        d = roles.get(r["variant"], {}).get("description")
        if d:
            L.append(f"- **{r['variant']}**: {d}")
    L.append("")
    L.append(_protocol_table(rows, report["protocol"]))
    L.append("## SIDE vs traditional SID")
    L.append("")
    if kind == "simulated" and report["control_world"]["verdict"] != "passed":
        L.append(f"**Not validated**: the control world's verdict is {report['control_world']['verdict']} "
                 f"(see the top), so the SIDE results below are not validated.")
        L.append("")
    ratio = report["side_vs_traditional_ne_gain"]
    if ratio.get("ratio") is not None:
        L.append(f"`side_vs_traditional_ne_gain` = {ratio['ratio']:.2f} (SIDE {ratio['side_gain_pct_mean']:+.3f}% / "
                 f"traditional {ratio['traditional_gain_pct_mean']:+.3f}%); 95% interval "
                 f"{_ci_list(ratio.get('ratio_ci95'), '{:.2f}')}"
                 + (f" ({ratio['status']})" if ratio.get("status") not in (None, "ok") else "")
                 + f"; level: {ratio.get('level', 'seeds')}.")
    else:
        L.append(f"No meaningful ratio: {ratio.get('note')}.")
    con = ratio.get("side_minus_2_4x_traditional")
    if con:
        L.append("")
        L.append(f"Contrast SIDE gain - 2.4 x traditional gain: {_f(con.get('point'), '{:+.3f}')} points "
                 f"{_ci_list(con.get('ci95'))} ({con.get('verdict')} from 0).")
    p = report["pairs"].get(f"{cfg.side}_over_{cfg.traditional}")
    if p and p.get("point") is not None:
        L.append("")
        w = f", interval width {p['width']:.3f} points" if p.get("width") is not None else ""
        L.append(f"NE gain of SIDE over traditional SID: {p['point']:+.3f}% {_ci_list(p.get('ci95'))}: "
                 f"**{p['verdict']}**{w}.")
    p = report["pairs"].get(f"{cfg.side}_over_{PERMUTED_SIDE}")
    if p and p.get("point") is not None:
        L.append("")
        L.append(f"NE gain of SIDE over SIDE on permuted SIDs (the same codes dealt to random items): "
                 f"{p['point']:+.3f}% {_ci_list(p.get('ci95'))}, **{p['verdict']}**: the part of SIDE's gain that "
                 f"needs each SID to describe its own item's content; the rest is what fixed per-item codes give "
                 f"(identity, repeat exposure).")
    L.append("")
    L.append("Undefined ratios: when the denominator's point gain is not positive the ratio is not reported; when "
             "its 95% interval covers 0 the point ratio is given without an interval (the replicate ratios are "
             "unbounded); the contrast above is always defined.")
    for section in (_ablation_markdown(report), _sequence_markdown(report)):
        if section:
            L.append("")
            L += section[:-1]
    slices = report.get("slices") or {}
    if slices:
        L.append("")
        L.append("## Slices")
        for fam, title2 in (("item_freq", "target-item training frequency"), ("hist_len", "history length")):
            fs = slices.get(fam)
            if not fs:
                continue
            L.append("")
            L.append(f"### By {title2}")
            L.append("")
            L.append(f"{fs.get('definition')}" + (f"; cuts {fs.get('cuts')}; ranked over {fs.get('source')}"
                                                 if fam == "item_freq" else "") + ".")
            bk = fs["buckets"]
            vs = [r["variant"] for r in rows if any(r["variant"] in (b.get("ne") or {}) for b in bk.values())]
            L.append("")
            L.append("NE gain over control, % [95% CI] (NE below):")
            L.append("")
            L.append("| bucket | rows | users | " + " | ".join(vs) + " |")
            L.append("|" + " --- |" * (3 + len(vs)))
            for b, s in bk.items():
                cells = [b, str(s.get("rows")), str(s.get("users"))]
                for v in vs:
                    if v == cfg.control:
                        cells.append(f"NE {_f((s.get('ne') or {}).get(v), '{:.4f}')}")
                        continue
                    e = (s.get("gain") or {}).get(v) or {}
                    cells.append(f"{_f(e.get('point'), '{:+.2f}')} {_ci_list(e.get('ci95'), '{:+.2f}')}<br>"
                                 f"NE {_f((s.get('ne') or {}).get(v), '{:.4f}')}")
                L.append("| " + " | ".join(cells) + " |")
            L.append("")
            L.append("AUC:")
            L.append("")
            L.append("| bucket | " + " | ".join(vs) + (" | oracle |" if oracle else " |"))
            L.append("|" + " --- |" * (1 + len(vs) + (1 if oracle else 0)))
            for b, s in bk.items():
                au = s.get("auc") or {}
                L.append("| " + " | ".join([b] + [_f(au.get(v)) for v in vs] + ([_f(au.get("oracle"))] if oracle else []))
                         + " |")
            if any(s.get("mean_pred") for s in bk.values()):
                L.append("")
                L.append("Calibration, mean predicted click probability in % (the bucket's click rate first): a bucket "
                         "whose predictions sit far from its rate loses NE even when it ranks well.")
                L.append("")
                L.append("| bucket | click rate | " + " | ".join(vs) + (" | oracle |" if oracle else " |"))
                L.append("|" + " --- |" * (2 + len(vs) + (1 if oracle else 0)))
                pct = "{:.2f}"
                for b, s in bk.items():
                    mp = s.get("mean_pred") or {}
                    rate = s.get("positive_rate")
                    cells = [b, _f(None if rate is None else 100.0 * rate, pct)]
                    cells += [_f(None if mp.get(v) is None else 100.0 * mp[v], pct)
                              for v in vs + (["oracle"] if oracle else [])]
                    L.append("| " + " | ".join(cells) + " |")
    L.append("")
    L.append("## docs/design.md section 8 targets")
    L.append("")
    L.append("`met` is judged on the measured point estimate; `95% interval clears` says whether the interval also "
             "lies on the same side of the line.")
    L.append("")
    L.append("| target | measured | met | 95% interval clears |")
    L.append("| --- | --- | --- | --- |")
    for t in report["targets"]:
        met = "n/a" if t["met"] is None else ("met" if t["met"] else "**not met**")
        if t.get("validated") is False and t["met"] is not None:
            met += " (**not validated**: control world)"
        conf = "n/a" if t.get("confident") is None else ("yes" if t["confident"] else "no")
        L.append(f"| {t['target']} | {t['measured']} | {met} | {conf} |")
    if rec.get("failed"):
        L.append("")
        L.append("## Failed runs")
        for f in rec["failed"]:
            L.append(f"- {f['variant']}: seeds {f['seeds']} (exit {f['returncode']}), log {f['log']}")
    if report["warnings"]:
        L.append("")
        L.append("## Warnings")
        for w in report["warnings"]:
            L.append(f"- {w}")
    for png, alt in (("ne_gain.png", "NE gain with 95% intervals"), ("gain_by_item_freq.png", "gain by item frequency"),
                     ("oracle_share.png", "share of the oracle's gain"),
                     ("gain_vs_ceilings.png", "NE gain against the ceilings"), ("bytes_per_event.png", "bytes per event")):
        if png in (report.get("plots") or []):
            L.append("")
            L.append(f"![{alt}]({png})")
    L.append("")
    return "\n".join(L) + "\n"


def _control_line(cw: Dict[str, Any], kind: str) -> str:
    """The report's opening line: the control world's verdict, and what it gates."""
    pt = cw.get("sparse_over_side")
    num = (f"sparse-ID over SIDE {pt:+.3f}% {_ci_list(cw.get('sparse_over_side_ci95'))}" if pt is not None
           else str(cw.get("measured")))
    where = "this world" if kind == "id_dominant" else f"`{cw['source']}`" if cw.get("source") else "none linked"
    text = (f"**Control world verdict: {cw['verdict']}** ({where}): {num}. The control world (the id-only term "
            f"dominates) must show sparse-ID beating SIDE, separated, or the instrument cannot show SIDE losing.")
    if kind == "simulated" and cw["verdict"] != "passed":
        text += " This world's SIDE claims are therefore **not validated**."
    elif kind == "movielens":
        text += " (It gates the simulated worlds; MovieLens is real data.)"
    return text


def _ceilings_line(ceilings: Dict[str, Any]) -> str:
    """``Ceilings (NE gain over control): content ..., content + item ..., id ..., oracle ...``."""
    words = {"content": "content", "content_item": "content + item posterior", "id": "id", "oracle": "oracle"}
    parts = [f"{words[k]} {_f(c.get('ne_gain_pct'), '{:+.3f}')}% {_ci_list(c.get('ne_gain_ci95'))} "
             f"(NE {_f(c.get('ne'), '{:.5f}')})" for k, c in ceilings.items()]
    return ("Ceilings, NE gain over control % [95% CI] (docs/design.md section 7c; exact for the content "
            "ceiling, approximate for the id ceiling): " + "; ".join(parts) + ". The content-ceiling share "
            "is a variant's gain / the content ceiling's gain, same resamples.")


def _protocol(rec: Dict[str, Any], rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """``report.json["protocol"]``: most epochs, patience, the tuning grid and seed (None: not
    tuned) and the runs whose best validation epoch was the last one allowed (``variant sN``;
    more epochs might have helped them)."""
    cap = rec.get("max_epochs")
    tuning = rec.get("tuning") or {}
    at_cap = [f"{r['variant']} s{s}" for r in rows for s, b in (r.get("best_epochs") or {}).items()
              if cap is not None and b is not None and int(b) >= int(cap)]
    runs = sum(len(r.get("best_epochs") or {}) for r in rows)
    return {"max_epochs": cap, "patience": rec.get("early_stop_patience"),
            "tuning_settings": tuning.get("settings"), "tuning_seed": tuning.get("seed"),
            "runs": runs, "best_epoch_at_cap": at_cap}


def _protocol_table(rows: List[Dict[str, Any]], protocol: Dict[str, Any]) -> str:
    """Markdown: the protocol, each variant's best validation epoch per seed and the setting tuning chose."""
    grid = protocol.get("tuning_settings")
    grid_txt = ("; ".join(f"`{k}` ({', '.join(v) or 'as shipped'})" for k, v in grid.items())
                if grid else "none (every variant at its config as shipped)")
    at_cap = protocol.get("best_epoch_at_cap") or []
    L = ["## Training protocol", "",
         f"Every run: at most {protocol.get('max_epochs')} epochs, validation after each, early stop after "
         f"{protocol.get('patience')} epochs without a better validation NE, "
         f"test scored with the best validation epoch. Tuning grid, the same for every variant (control "
         f"included; one seed, validation only): {grid_txt}. Runs whose best epoch was the last allowed "
         f"(more epochs might have helped): {len(at_cap)} of {protocol.get('runs')}"
         + (f" ({', '.join(at_cap[:12])}{', ...' if len(at_cap) > 12 else ''})" if at_cap else "") + ".",
         "", "Best validation epoch of each seed (the model scored on test) and the "
         "setting chosen on validation with one seed (`tune_and_train`; \"not tuned\": this world ran one "
         "setting).", "", "| variant | best epoch per seed | tuned setting |", "| --- | --- | --- |"]
    for r in rows:
        be = r.get("best_epochs") or {}
        epochs = ", ".join(f"s{s}: {'n/a' if b is None else b}" for s, b in be.items()) or "n/a"
        tu = r.get("tuned")
        if isinstance(tu, dict):
            ov = tu.get("overrides") or []
            tuned = f"`{tu.get('setting')}`" + (f" ({', '.join(str(o) for o in ov)})" if ov else "")
        else:
            tuned = "not tuned" if tu is None else str(tu)
        L.append(f"| {r['variant']} | {epochs} | {tuned} |")
    return "\n".join(L) + "\n"


def report_main(argv: Optional[List[str]] = None) -> int:
    """``torchrec-side report RUN``. Returns 0, or 2 when RUN is not a demo folder or its files are bad."""
    p = argparse.ArgumentParser(prog="torchrec-side report", description="Write report.md / report.json / plots of a demo folder.")
    p.add_argument("run", help="demo folder written by `torchrec-side demo` (e.g. runs/demo)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--world", default=None, help="world name (default: pipeline.json's, else inferred)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--slice-n-boot", type=int, default=500, help="bootstrap replicates per slice (default 500; 0: none)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = ReportConfig(world=args.world, plots=not args.no_plots, n_boot=args.n_boot,
                           slice_n_boot=args.slice_n_boot, progress=sys.stderr.isatty())
        write_report(Path(args.run), plots=not args.no_plots, cfg=cfg)
    except (FileNotFoundError, ValueError) as e:
        print(f"torchrec-side report: {e}", file=sys.stderr)
        return 2
    print((Path(args.run) / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(report_main())
