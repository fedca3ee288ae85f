"""Tokenizer comparison on MovieLens-100K held-out items, at equal bits.

Fused (VQ fusion: MiniLM + collaborative + genre / year heads) versus single-collection (MiniLM
only, learned) versus plain, non-learned RQ-KMeans and DPCA (fitted on the training items' MiniLM
vectors, or on the concatenation of both collections), at two budgets: 40 ternary digits
(63.4 bits, the SIDE setting) and 24 bits (3 x 256 RQ, the traditional setting; DPCA with 15
ternary digits = 23.8 bits).

Every tokenizer sees only training items (a seeded 85/15 item split; the collaborative embedding
is fitted on the first 80% of rating events by time). On the held-out items it reports:

* ``recon_cos``: cosine between each collection and the tokenizer's own reconstruction of it
  from the SID (learned decoders; for plain quantizers the decoded vector, in the same
  normalized space: MiniLM unit vectors, collaborative standardized); absent when the tokenizer
  does not reconstruct that collection;
* ``probe_cos``: the same for a ridge regression from the decoded SID embedding (``z_hat`` or
  ``x_hat``) to each collection, fitted on training items: how much of every collection the SID
  keeps, comparable across all tokenizers;
* ``genre_auc``: macro AUC of a logistic-regression probe on the decoded SID embedding (fitted on
  training items) predicting the 19 genres; ``year_acc`` the same for the year bucket;
* ``utilization`` (mean over levels), ``perplexity``, ``collision_rate`` and ``distinct_sids``
  over all 1,682 items.

Usage::

    python benchmarks/tokenizer_quality.py --quick --json runs/bench/tokenizer_quality_quick.json
    python benchmarks/tokenizer_quality.py --json runs/bench/tokenizer_quality.json          # 3 seeds

One JSON row per tokenizer: ``{"tokenizer", "bits", "recon_cos": {collection: value},
"genre_auc", "utilization", "collision_rate", ...}`` (means over seeds, plus ``*_std``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# this folder last on the path, not first (where ``python benchmarks/<name>.py`` puts it): its
# appended, not prepended: a script here must never shadow an installed package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [x for x in sys.path if not x or Path(x).resolve() != _HERE] + [str(_HERE)]
from _common import write_json  # noqa: E402

from torchrec_side.config import load_config  # noqa: E402
from torchrec_side.quantizers import DPCA, RQKMeans, RQKMeansConfig, codebook_stats  # noqa: E402
from torchrec_side.tokenizer import (  # noqa: E402
    ItemData,
    TokenizeJobConfig,
    Tokenizer,
    load_ml100k_items,
    split_items,
    train_tokenizer,
)
from torchrec_side.tokenizer.metrics import (  # noqa: E402
    fit_linear_probe,
    mean_cosine,
    multiclass_scores,
    multilabel_auc,
)

CONFIGS = REPO / "configs" / "ml100k"
COLLECTIONS = ("minilm", "collaborative")


# ----------------------------------------------------------------------------- helpers


def normalized_collections(items: ItemData, train_idx: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The space every reconstruction is scored in: MiniLM unit rows, collaborative standardized
    with training-item statistics (missing rows stay zero), as the learned tokenizers see them."""
    x = F.normalize(items.collections["minilm"].float(), dim=1)
    cf = items.collections["collaborative"].float()
    present = cf.abs().sum(1) > 0
    tr = train_idx[present[train_idx]]
    mu, sd = cf[tr].mean(0), cf[tr].std(0).clamp_min(1e-6)
    cfs = (cf - mu) / sd * present[:, None]
    return {"minilm": x, "collaborative": cfs}


def ridge_probe_cos(e: torch.Tensor, y: torch.Tensor, tr: torch.Tensor, te: torch.Tensor, lam: float = 1e-2) -> float:
    """Held-out cosine of a ridge regression ``e -> y`` fitted on rows ``tr`` (present rows only)."""
    present = y.abs().sum(1) > 0
    tr, te = tr[present[tr]], te[present[te]]
    x = e.double()
    mu = x[tr].mean(0)
    xt = x[tr] - mu
    ym = y[tr].double().mean(0)
    gram = xt.T @ xt
    reg = lam * gram.diagonal().mean().clamp_min(1e-12)
    w = torch.linalg.solve(gram + reg * torch.eye(gram.shape[0], dtype=gram.dtype), xt.T @ (y[tr].double() - ym))
    pred = (x[te] - mu) @ w + ym
    return mean_cosine(pred, y[te].double())


def probe_scores(e: torch.Tensor, items: ItemData, tr: torch.Tensor, te: torch.Tensor) -> Dict[str, float]:
    """Genre macro AUC and year-bucket accuracy of linear probes on the SID embedding ``e``."""
    g = items.targets["genres"]
    probe = fit_linear_probe(e[tr], g[tr], multi_label=True, l2=1e-3, iters=100)
    genre = multilabel_auc(probe(e[te].float()).detach(), g[te])["auc_macro"]
    y = items.targets["year_bucket"]
    probe = fit_linear_probe(e[tr], y[tr], multi_label=False, l2=1e-3, iters=100)
    year = multiclass_scores(probe(e[te].float()).detach(), y[te])["accuracy"]
    return {"genre_auc": genre, "year_acc": year}


def codebook_row(codes: torch.Tensor, radices: List[int]) -> Dict[str, float]:
    st = codebook_stats(codes, radices)
    return {
        "utilization": sum(st.utilization) / len(st.utilization),
        "perplexity": sum(st.perplexity) / len(st.perplexity),
        "collision_rate": st.collision_rate,
        "distinct_sids": float(st.distinct_sids),
    }


def score(
    e: torch.Tensor,
    recon: Dict[str, torch.Tensor],
    codes: Optional[torch.Tensor],
    radices: Optional[List[int]],
    items: ItemData,
    norm: Dict[str, torch.Tensor],
    tr: torch.Tensor,
    te: torch.Tensor,
) -> Dict[str, Any]:
    row: Dict[str, Any] = {
        "recon_cos": {k: mean_cosine(v[te], norm[k][te]) for k, v in recon.items()},
        "probe_cos": {k: ridge_probe_cos(e, norm[k], tr, te) for k in COLLECTIONS},
    }
    row.update(probe_scores(e, items, tr, te))
    if codes is not None and radices is not None:
        row.update(codebook_row(codes, radices))
    return row


# ----------------------------------------------------------------------------- tokenizers


def learned(config: str, overrides: List[str]) -> Callable[..., Dict[str, Any]]:
    def run(items: ItemData, norm: Dict[str, torch.Tensor], seed: int, quick: bool) -> Dict[str, Any]:
        ov = [f"train.seed={seed}", "train.progress=false"] + overrides
        if quick:  # a smoke run: a few epochs (the numbers are not comparable to the full run's)
            ov += ["train.epochs=4", "train.warmup_epochs=1", "train.patience=4"]
        job = load_config(TokenizeJobConfig, CONFIGS / f"{config}.yaml", ov)
        sub = items.select([c.name for c in job.model.collections], [t.name for t in job.model.targets])
        t0 = time.time()
        res = train_tokenizer(job.model, job.train, sub)
        seconds = time.time() - t0
        tok = Tokenizer(res.model)
        codes = tok.encode(sub)
        z_hat = tok.decode(codes).cpu()
        recon = {k: v.cpu() for k, v in tok.reconstruct(codes).items()}
        row = score(z_hat, recon, codes.cpu(), tok.radices, items, norm, res.train_index, res.val_index)
        if "genres" in tok.target_names:  # the genre head itself, from the SID alone
            logits = tok.predict(codes[res.val_index])["genres"].cpu()
            row["genre_auc_head"] = multilabel_auc(logits, items.targets["genres"][res.val_index])["auc_macro"]
        row.update({"bits": tok.bits_per_item, "fit_seconds": seconds, "epochs": len(res.history)})
        return row

    return run


def plain(kind: str, source: str, radices: List[int]) -> Callable[..., Dict[str, Any]]:
    def run(items: ItemData, norm: Dict[str, torch.Tensor], seed: int, quick: bool) -> Dict[str, Any]:
        tr, te = split_items(len(items), 0.15, seed)
        if source == "minilm":
            x = norm["minilm"]
            parts = {"minilm": (0, x.shape[1])}
        else:  # concatenation, each collection scaled to unit mean row norm
            cf = norm["collaborative"]
            scale = cf[tr].norm(dim=1)[cf[tr].abs().sum(1) > 0].mean()
            x = torch.cat([norm["minilm"], cf / scale], 1)
            parts = {"minilm": (0, 384), "collaborative": (384, x.shape[1])}
        if kind == "dpca":
            q: Any = DPCA.ternary(num_levels=len(radices), seed=seed)
        else:
            q = RQKMeans(RQKMeansConfig(radices=radices, seed=seed))
        t0 = time.time()
        q.fit(x[tr])
        seconds = time.time() - t0
        codes = q.encode(x)
        x_hat = q.decode(codes)
        recon = {k: x_hat[:, a:b] for k, (a, b) in parts.items()}
        row = score(x_hat, recon, codes, q.radices, items, norm, tr, te)
        row.update({"bits": q.bits_per_item, "fit_seconds": seconds})
        return row

    return run


def raw(source: str) -> Callable[..., Dict[str, Any]]:
    def run(items: ItemData, norm: Dict[str, torch.Tensor], seed: int, quick: bool) -> Dict[str, Any]:
        tr, te = split_items(len(items), 0.15, seed)
        x = norm["minilm"] if source == "minilm" else torch.cat([norm["minilm"], norm["collaborative"]], 1)
        row = score(x, {}, None, None, items, norm, tr, te)
        row.update({"bits": 32.0 * x.shape[1], "utilization": None, "collision_rate": None})
        return row

    return run


def tokenizers(quick: bool) -> List[Tuple[str, str, Callable[..., Dict[str, Any]]]]:
    t3 = [3] * 40
    rows = [
        ("fused_dpca_40x3", "63.4", learned("tokenizer_fused_dpca", [])),
        ("plain_dpca_40x3 (minilm)", "63.4", plain("dpca", "minilm", t3)),
        ("fused_rq_3x256", "24", learned("tokenizer_fused_rq", [])),
        ("plain_rq_3x256 (minilm)", "24", plain("rq", "minilm", [256] * 3)),
    ]
    if not quick:
        rows[1:1] = [("single_dpca_40x3 (minilm)", "63.4", learned("tokenizer_single_minilm", []))]
        rows[3:3] = [("plain_dpca_40x3 (concat)", "63.4", plain("dpca", "concat", t3))]
        rows += [
            ("plain_rq_8x256 (minilm)", "64", plain("rq", "minilm", [256] * 8)),
            ("single_rq_3x256 (minilm)", "24", learned("tokenizer_fused_rq", [
                "model.collections=[{name: minilm, normalize: l2, proj_dim: 128, decoder_hidden: [256]}]",
                "model.targets=[]"])),
            ("plain_rq_3x256 (concat)", "24", plain("rq", "concat", [256] * 3)),
            ("fused_dpca_15x3", "23.8", learned("tokenizer_fused_dpca", ["model.bottleneck.num_levels=15"])),
            ("plain_dpca_15x3 (minilm)", "23.8", plain("dpca", "minilm", [3] * 15)),
            ("raw minilm (reference)", "raw", raw("minilm")),
            ("raw concat (reference)", "raw", raw("concat")),
        ]
    return rows


# ----------------------------------------------------------------------------- main


def aggregate(name: str, runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"tokenizer": name, "seeds": len(runs)}
    for key in runs[0]:
        vals = [r[key] for r in runs]
        if isinstance(vals[0], dict):
            out[key] = {k: statistics.fmean(v[k] for v in vals) for k in vals[0]}
            if len(runs) > 1:
                out[f"{key}_std"] = {k: statistics.stdev(v[k] for v in vals) for k in vals[0]}
        elif vals[0] is None:
            out[key] = None
        else:
            out[key] = statistics.fmean(float(v) for v in vals)
            if len(runs) > 1 and key in ("genre_auc", "genre_auc_head", "year_acc"):
                out[f"{key}_std"] = statistics.stdev(float(v) for v in vals)
    return out


def fmt(v: Any, std: Any = None) -> str:
    if v is None:
        return "-"
    s = f"{v:.3f}"
    return s + (f"±{std:.3f}" if std is not None else "")


def markdown(rows: List[Dict[str, Any]]) -> str:
    head = ("| tokenizer | bits | recon cos minilm | recon cos collab | probe cos minilm | probe cos collab "
            "| genre AUC (probe) | genre AUC (head) | year acc | util | collisions |")
    lines = [head, "|" + " --- |" * 11]
    for r in rows:
        rc, pc = r.get("recon_cos", {}), r.get("probe_cos", {})
        lines.append(
            f"| {r['tokenizer']} | {fmt(r['bits']) if r['bits'] < 1000 else 'fp32'} | {fmt(rc.get('minilm'))} "
            f"| {fmt(rc.get('collaborative'))} | {fmt(pc.get('minilm'))} | {fmt(pc.get('collaborative'))} "
            f"| {fmt(r['genre_auc'], r.get('genre_auc_std'))} | {fmt(r.get('genre_auc_head'), r.get('genre_auc_head_std'))} "
            f"| {fmt(r['year_acc'])} | {fmt(r.get('utilization'))} | {fmt(r.get('collision_rate'))} |"
        )
    return "\n".join(lines)


def _clean(obj: Any) -> Any:
    """NaN -> None, recursively (strict JSON)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 1 seed, 4 training epochs, 4 tokenizers (seconds on 2 CPU cores)")
    p.add_argument("--seeds", type=int, default=None, help="seeds (default: 1 quick, 3 full)")
    p.add_argument("--json", type=str, default=None, help="write the rows here (a JSON list)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these small models)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    t0 = time.time()
    items = load_ml100k_items()
    print(f"MovieLens-100K: {len(items)} items, {items.info.get('items_without_train_events')} without training "
          f"events; seeds {seeds}; data {time.time() - t0:.1f}s", flush=True)
    rows: List[Dict[str, Any]] = []
    for name, _, fn in tokenizers(args.quick):
        runs = []
        for seed in seeds:
            tr, _ = split_items(len(items), 0.15, seed)
            norm = normalized_collections(items, tr)
            runs.append(fn(items, norm, seed, args.quick))
        row = aggregate(name, runs)
        rows.append(row)
        print(f"  {name}: bits {row['bits']:.1f} genre AUC {fmt(row['genre_auc'])} recon {row['recon_cos']} "
              f"({sum(r.get('fit_seconds', 0.0) for r in runs):.1f}s)", flush=True)
    print()
    print(markdown(rows))
    print(f"\ntotal {time.time() - t0:.0f}s")
    write_json(Path(args.json) if args.json else None, _clean(rows), benchmark="tokenizers", quick=args.quick, seeds=seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
