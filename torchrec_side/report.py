# pyre-strict
"""``torchrec-side report RUN``: the benchmark report of a demo folder (``torchrec-side demo``).

Reads ``RUN/pipeline.json`` (variants, their run folders and the mode) and every run's
``metrics.json``; writes ``RUN/report.json``, ``RUN/report.md``, ``RUN/ne_gain.png`` and
``RUN/bytes_per_event.png``.

Definitions (docs/design.md section 7):

* NE is the **test** NE of each run (nothing is selected on it); validation NE is reported too.
* NE gain of variant v for seed s: ``100 * (NE_control[s] - NE_v[s]) / NE_control[s]`` (paired by
  seed: same seed = same data order and initialisation of the shared parts); mean and std (ddof=1)
  over the seeds both have.
* ``side_vs_traditional_ne_gain``: mean SIDE gain / mean traditional-SID gain. Its spread is a
  bootstrap over seeds (2,000 resamples of the paired seeds, fixed RNG): std and 5-95% interval.
  When traditional SID's mean gain is not positive the ratio is meaningless and is reported as
  ``null`` with a note.
* bytes per event: the history as the TorchRec model consumes it (int64 KJT values: 8 for a packed
  SID or an item id; 8 per prefix-ngram token and SID; raw content counted as 384 fp16 = 768),
  summed over the variant's history features; the written file sizes are reported alongside.

Example::

    torchrec-side report runs/demo
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from torchrec_side.io import save_figure, write_json, write_text

__all__ = ["collect", "summarize", "side_vs_traditional", "targets", "write_report", "report_main"]


def _mean(x: Sequence[float]) -> Optional[float]:
    return float(np.mean(x)) if len(x) else None


def _std(x: Sequence[float]) -> Optional[float]:
    return float(np.std(x, ddof=1)) if len(x) > 1 else (0.0 if len(x) == 1 else None)


def collect(run: Path) -> Dict[str, Any]:
    """``{"pipeline": record, "runs": {variant: {seed: metrics}}}`` of a demo folder."""
    rec_path = run / "pipeline.json"
    if not rec_path.is_file():
        raise FileNotFoundError(f"{rec_path} not found: not a `torchrec-side demo` folder")
    rec = json.loads(rec_path.read_text())
    runs: Dict[str, Dict[int, Dict[str, Any]]] = {}
    for v in rec["variants"]:
        per: Dict[int, Dict[str, Any]] = {}
        for s, d in (v.get("run_dirs") or {}).items():
            m = Path(d) / "metrics.json"
            if m.is_file():
                per[int(s)] = json.loads(m.read_text())
        runs[v["name"]] = per
    return {"pipeline": rec, "runs": runs}


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
    """One row per variant (see the module docstring for the definitions)."""
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
            "val_ne_mean": _mean([float(per[s]["val"]["ne"]) for s in seeds]),
            "bytes_per_event": bpe["model"],
            "min_packed_bytes_per_event": bpe["minimal"],
            "file_bytes_per_event": bpe["file"],
            "learned_params": int(per[seeds[0]]["learned_params"]["total"]) if seeds else None,
            "train_examples_per_s": _mean([float(per[s]["train_examples_per_s"]) for s in seeds
                                           if per[s].get("train_examples_per_s")]),
            "arch": per[seeds[0]].get("arch") if seeds else None,
            "epochs": per[seeds[0]].get("epochs") if seeds else None,
        })
    return rows


def side_vs_traditional(rows: List[Dict[str, Any]], side: str = "side", traditional: str = "traditional_sid",
                        n_boot: int = 2000, seed: int = 0) -> Dict[str, Any]:
    """Ratio of mean NE gains, SIDE over traditional SID, with a bootstrap spread over seeds."""
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
        "per_seed_ratio": {s: (float(gs[s] / gt[s]) if gt[s] != 0 else None) for s in common},
        "note": "bootstrap over paired seeds",
    })
    return out


def targets(rows: List[Dict[str, Any]], ratio: Dict[str, Any], extra: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """docs/design.md section 8 targets with measured numbers and ``met`` (True / False / None = not measured)."""
    by = {r["variant"]: r for r in rows}
    out: List[Dict[str, Any]] = []

    def gain(v: str) -> Optional[float]:
        return by[v]["ne_gain_pct_mean"] if v in by else None

    r = ratio.get("ratio")
    out.append({"target": "NE gain ratio SIDE / traditional SID >= 2.4",
                "measured": (f"{r:.2f} (bootstrap 5-95%: {ratio.get('ratio_p05'):.2f} .. {ratio.get('ratio_p95'):.2f})"
                             if r is not None and ratio.get("ratio_p05") is not None else ratio.get("note", "n/a")),
                "met": (r >= 2.4) if r is not None else False if "traditional_gain_pct_mean" in ratio else None})
    gs, gr, gsp = gain("side"), gain("raw_content"), gain("sparse_id")
    if gs is not None and gr is not None:
        met = gs >= 0.9 * gr if gr > 0 else gs >= gr
        out.append({"target": "SIDE NE gain >= 90% of raw-content history's",
                    "measured": f"SIDE {gs:+.3f}% vs raw content {gr:+.3f}% (90%: {0.9 * gr:+.3f}%)", "met": bool(met)})
    if gs is not None and gsp is not None:
        out.append({"target": "SIDE NE gain >= sparse-ID history's",
                    "measured": f"SIDE {gs:+.3f}% vs sparse-ID {gsp:+.3f}%", "met": bool(gs >= gsp)})
    bs = by.get("side", {}).get("bytes_per_event")
    bt = by.get("traditional_sid", {}).get("bytes_per_event")
    braw = by.get("raw_content", {}).get("bytes_per_event")
    if bs is not None and bt:
        out.append({"target": "footprint: SIDE <= 1/3 of traditional SID (bytes/event as consumed)",
                    "measured": f"{bs:.0f} vs {bt:.0f} bytes/event (1/{bt / bs:.1f})", "met": bool(bs * 3 <= bt)})
    if bs is not None and braw:
        out.append({"target": "footprint: SIDE <= 1/100 of raw fp16 content embedding",
                    "measured": f"{bs:.0f} vs {braw:.0f} bytes/event (1/{braw / bs:.1f})", "met": bool(bs * 100 <= braw)})
    ex = extra or {}
    tp = ex.get("train_throughput")
    if tp:
        out.append({"target": "training throughput, DLRM with SIDE vs sparse-ID vs prefix-ngram (synthetic, 10^6 items, "
                              "10^3-event histories, 2 ranks)",
                    "measured": tp, "met": None})
    for t in ("pooled history embedding (10^4-event histories): SIDE >= 5x sparse-ID EBC events/s",
              "DPCA reconstruction <= RQ-KMeans at equal bits (held-out)",
              "tokenizer encode throughput within 2x of faiss ResidualQuantizer",
              "test suite < 10 min on a 2-core CPU"):
        out.append({"target": t, "measured": "not measured by this job (benchmarks/lookup.py, benchmarks/quantizers.py, "
                                             "benchmarks/tokenizers.py, .ci/run)", "met": None})
    return out


def _plots(rows: List[Dict[str, Any]], run: Path, label: str) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    rs = [r for r in rows if r["ne_gain_pct_mean"] is not None]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([r["variant"] for r in rs], [r["ne_gain_pct_mean"] for r in rs],
           yerr=[r["ne_gain_pct_std"] or 0.0 for r in rs], capsize=4, color="tab:blue")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("test NE gain vs control (%)")
    ax.set_title(f"NE gain per variant, mean +- std over seeds{label}")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    save_figure(fig, run / "ne_gain.png")
    plt.close(fig)
    files.append("ne_gain.png")
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


def _f(x: Any, fmt: str = "{:.4f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def write_report(run: Path, plots: bool = True) -> Dict[str, Any]:
    """Writes ``report.json``, ``report.md`` and plots into ``run``; returns the report dict."""
    run = Path(run)
    data = collect(run)
    rec = data["pipeline"]
    rows = summarize(data["runs"])
    ratio = side_vs_traditional(rows)
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
    tgt = targets(rows, ratio, extra)
    roles = {v["name"]: v for v in rec["variants"]}
    report = {
        "mode": rec.get("mode"),
        "quick": quick,
        "seeds": rec.get("seeds"),
        "epochs": rec.get("epochs"),
        "nproc": rec.get("nproc"),
        "rows": [{k: r[k] for k in ("variant", "seeds", "ne_mean", "ne_std", "ne_gain_pct_mean", "ne_gain_pct_std",
                                     "auc_mean", "bytes_per_event", "learned_params", "train_examples_per_s")}
                 for r in rows],
        "details": rows,
        "side_vs_traditional_ne_gain": ratio,
        "targets": tgt,
        "failed": rec.get("failed", []),
        "pipeline_seconds": {k: rec.get(k) for k in ("prep_seconds", "train_seconds", "total_seconds")},
        "epoch_sweep": rec.get("epoch_sweep"),
        "warnings": rec.get("warnings", []),
    }
    label = " (QUICK)" if quick else ""
    if plots:
        report["plots"] = _plots(rows, run, label)
    write_json(run / "report.json", report)

    L: List[str] = []
    L.append(f"# torchrec-side benchmark report: MovieLens-100K{' — QUICK RUN (not the benchmark)' if quick else ''}")
    L.append("")
    if quick:
        L.append("**Quick mode**: fewer variants, seeds and epochs than the benchmark; the numbers below are a "
                 "smoke test, not evidence. Run `torchrec-side demo --out runs/demo` for the full job.")
        L.append("")
    L.append(f"Seeds {rec.get('seeds')}, {rec.get('epochs')} epoch(s), {rec.get('nproc')} ranks (TorchX local_cwd). "
             f"NE/AUC on the **test** split (last 10% of events by time); nothing was selected on it "
             f"(the epoch count is chosen on validation, or fixed at 1 in quick mode; all other settings are fixed in the configs). NE gain = (NE_control - NE_variant) / NE_control, "
             f"paired by seed. Bytes per event: history as the model consumes it (int64 KJT values; raw content "
             f"counted as 384 fp16).")
    sw = rec.get("epoch_sweep")
    if sw:
        L.append("")
        L.append(f"Epoch count chosen on validation ({sw['rule']}): mean val NE per epoch "
                 f"{[round(x, 5) for x in sw['mean_val_ne_per_epoch']]} -> {sw['epochs']} epoch(s).")
    L.append("")
    L.append("| variant | arch | seeds | test NE mean ± std | NE gain % mean ± std | AUC | val NE | bytes/event | "
             "learned params | train ex/s |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        L.append(f"| {r['variant']} | {r['arch']} | {len(r['seeds'])} | {_f(r['ne_mean'], '{:.5f}')} ± "
                 f"{_f(r['ne_std'], '{:.5f}')} | {_f(r['ne_gain_pct_mean'], '{:+.3f}')} ± {_f(r['ne_gain_pct_std'], '{:.3f}')} | "
                 f"{_f(r['auc_mean'])} | {_f(r['val_ne_mean'], '{:.5f}')} | {_f(r['bytes_per_event'], '{:.0f}')} | "
                 f"{r['learned_params'] if r['learned_params'] is not None else 'n/a'} | "
                 f"{_f(r['train_examples_per_s'], '{:.0f}')} |")
    L.append("")
    for r in rows:
        d = roles.get(r["variant"], {}).get("description")
        if d:
            L.append(f"- **{r['variant']}**: {d}")
    L.append("")
    L.append("## SIDE vs traditional SID")
    L.append("")
    if ratio.get("ratio") is not None:
        L.append(f"`side_vs_traditional_ne_gain` = {ratio['ratio']:.2f} (SIDE {ratio['side_gain_pct_mean']:+.3f}% / "
                 f"traditional {ratio['traditional_gain_pct_mean']:+.3f}%); bootstrap over seeds: std "
                 f"{_f(ratio.get('ratio_std'), '{:.2f}')}, 5-95% {_f(ratio.get('ratio_p05'), '{:.2f}')} .. "
                 f"{_f(ratio.get('ratio_p95'), '{:.2f}')}.")
    else:
        L.append(f"No meaningful ratio: {ratio.get('note')}.")
    by = {r["variant"]: r for r in rows}
    if "side" in by and "traditional_sid" in by and by["side"]["ne_gain_pct_mean"] is not None:
        better = by["side"]["ne_gain_pct_mean"] > by["traditional_sid"]["ne_gain_pct_mean"]
        L.append("")
        L.append(f"SIDE {'beats' if better else 'does NOT beat'} traditional SID on mean test NE gain "
                 f"({by['side']['ne_gain_pct_mean']:+.3f}% vs {by['traditional_sid']['ne_gain_pct_mean']:+.3f}%; "
                 f"seed std {by['side']['ne_gain_pct_std']:.3f} / {by['traditional_sid']['ne_gain_pct_std']:.3f}).")
    L.append("")
    L.append("## docs/design.md section 8 targets")
    L.append("")
    L.append("| target | measured | met |")
    L.append("| --- | --- | --- |")
    for t in tgt:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        L.append(f"| {t['target']} | {t['measured']} | {met} |")
    if rec.get("failed"):
        L.append("")
        L.append("## Failed runs")
        for f in rec["failed"]:
            L.append(f"- {f['variant']}: seeds {f['seeds']} (exit {f['returncode']}), log {f['log']}")
    if plots:
        L.append("")
        L.append("![NE gain](ne_gain.png)")
        L.append("")
        L.append("![bytes per event](bytes_per_event.png)")
    L.append("")
    write_text(run / "report.md", "\n".join(L) + "\n")
    return report


def report_main(argv: Optional[List[str]] = None) -> int:
    """``torchrec-side report RUN``. Returns 0, or 2 when RUN is not a demo folder."""
    p = argparse.ArgumentParser(prog="torchrec-side report", description="Write report.md / report.json / plots of a demo folder.")
    p.add_argument("run", help="demo folder written by `torchrec-side demo` (e.g. runs/demo)")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        rep = write_report(Path(args.run), plots=not args.no_plots)
    except FileNotFoundError as e:
        print(f"torchrec-side report: {e}", file=sys.stderr)
        return 2
    print((Path(args.run) / "report.md").read_text())
    del rep
    return 0


if __name__ == "__main__":
    sys.exit(report_main())
