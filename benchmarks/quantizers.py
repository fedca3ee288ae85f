"""Quantizer comparison: held-out reconstruction error versus bits, and encode throughput.

    python benchmarks/quantizers.py [--quick] --json runs/bench/quantizers.json [--plot PATH]

Datasets: the MiniLM embeddings of the 1,682 MovieLens-100K items and a synthetic clustered,
low-rank set (10^5 x 256). Each is split into fit and held-out parts (80/20, seeded). Methods
at equal bits: RQ-KMeans (8-bit levels), DPCA ternary (m=1, K=3, floor(bits / log2 3) digits),
DPCA with the bit-allocation helper's levels, and faiss's ResidualQuantizer and
ProductQuantizer when faiss-cpu is installed.

``--quick``: a smoke run of every method in seconds (synthetic 2,000 x 32 only, 16 bits, 4 k-means
iterations, faiss RQ beam 1); its numbers say nothing about the methods.

Row: ``{"dataset", "method", "bits", "rel_mse_heldout", "encode_items_per_s"}`` where
``rel_mse_heldout = ||x - x_hat||^2 / ||x - mean||^2`` over held-out items.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

# this folder last on the path, not first (where ``python benchmarks/<name>.py`` puts it): its
# appended, not prepended: a script here must never shadow an installed package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [x for x in sys.path if not x or Path(x).resolve() != _HERE] + [str(_HERE)]
from _common import base_parser, machine, median_time, print_table, write_json  # noqa: E402

from torchrec_side.io import save_figure  # noqa: E402
from torchrec_side.quantizers import DPCA, KMeansConfig, RQKMeans, RQKMeansConfig  # noqa: E402
from torchrec_side.quantizers.dpca import DPCAConfig  # noqa: E402

Encoder = Tuple[Callable[[torch.Tensor], Any], Callable[[Any], torch.Tensor], float]


def rel_mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def ours(q: Any) -> Encoder:
    return q.encode, q.decode, q.bits_per_item


def faiss_rq(fit: torch.Tensor, bits: int, beam: int = 5) -> Optional[Encoder]:
    import faiss
    import numpy as np

    if bits % 8:
        return None
    rq = faiss.ResidualQuantizer(fit.shape[1], bits // 8, 8)
    rq.max_beam_size = beam
    rq.train(np.ascontiguousarray(fit.numpy()))

    def enc(x: torch.Tensor) -> Any:
        return rq.compute_codes(np.ascontiguousarray(x.numpy()))

    return enc, lambda c: torch.from_numpy(rq.decode(c)), float(bits)


def faiss_pq(fit: torch.Tensor, bits: int) -> Optional[Encoder]:
    import faiss
    import numpy as np

    d = fit.shape[1]
    # Sub-quantizer count M must divide D; pick the split whose code width is closest to 8 bits.
    options = [(abs(bits // m - 8), m) for m in range(1, bits + 1) if d % m == 0 and bits % m == 0 and 1 <= bits // m <= 12]
    if not options:
        return None
    m = min(options)[1]
    pq = faiss.ProductQuantizer(d, m, bits // m)
    pq.train(np.ascontiguousarray(fit.numpy()))

    def enc(x: torch.Tensor) -> Any:
        return pq.compute_codes(np.ascontiguousarray(x.numpy()))

    return enc, lambda c: torch.from_numpy(pq.decode(c)), float(bits)


def methods(fit: torch.Tensor, bits: int, iters: int, max_fit: int,
            faiss_beam: int = 5) -> Dict[str, Callable[[], Optional[Encoder]]]:
    km = KMeansConfig(iters=iters)
    ternary = int(math.floor(bits / math.log2(3) + 1e-9))
    out: Dict[str, Callable[[], Optional[Encoder]]] = {
        "rq_kmeans": lambda: ours(RQKMeans(RQKMeansConfig(radices=[256] * (bits // 8), kmeans=km, max_fit_points=max_fit)).fit(fit)),
        "dpca_ternary": lambda: ours(DPCA(DPCAConfig(levels=DPCA.ternary(ternary).config.levels, kmeans=km, max_fit_points=max_fit)).fit(fit)),
        "dpca_ternary_one_shot": lambda: ours(
            DPCA(DPCAConfig(levels=DPCA.ternary(ternary).config.levels, mode="one_shot", kmeans=km, max_fit_points=max_fit)).fit(fit)
        ),
        "dpca_alloc": lambda: ours(DPCA(DPCAConfig(levels=DPCA.for_bits(fit, bits).config.levels, kmeans=km, max_fit_points=max_fit)).fit(fit)),
    }
    try:
        import faiss  # noqa: F401

        out["faiss_rq"] = lambda: faiss_rq(fit[:max_fit], bits, faiss_beam)
        out["faiss_pq"] = lambda: faiss_pq(fit[:max_fit], bits)
    except ImportError:
        print("faiss-cpu not installed: skipping faiss baselines (pip install -e '.[bench]')")
    return out


def datasets(quick: bool) -> Dict[str, torch.Tensor]:
    from torchrec_side.data import load_items, synthetic_content

    if quick:  # a smoke run of every method in seconds: tiny synthetic content only
        return {"synthetic_2k_x32": synthetic_content(2_000, 32, seed=0).float()}
    out = {"ml100k_minilm": load_items().text_vectors.float()}
    n = 100_000
    out[f"synthetic_{n // 1000}k_x256"] = synthetic_content(n, 256, seed=0).float()
    return out


def plot(rows: List[Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False)
    for ax, ds in zip(axes[0], names):
        for method in sorted({r["method"] for r in rows if r["dataset"] == ds}):
            pts = sorted((r["bits"], r["rel_mse_heldout"]) for r in rows if r["dataset"] == ds and r["method"] == method)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
        ax.set_title(ds)
        ax.set_xlabel("bits per item")
        ax.set_ylabel("held-out relative squared error")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    print(f"wrote {path}")


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--plot", type=Path, default=None, help="PNG path (default: beside --json)")
    p.add_argument("--bits", type=int, nargs="*", default=None)
    args = p.parse_args()
    bits_list = args.bits or ([16] if args.quick else [16, 24, 32, 40, 64])
    iters = 4 if args.quick else 20
    max_fit = 2_000 if args.quick else 50_000
    encode_rows = 2_000 if args.quick else 20_000
    print(f"machine: {machine()}")
    rows: List[Dict[str, Any]] = []
    for ds, x in datasets(args.quick).items():
        g = torch.Generator().manual_seed(0)
        perm = torch.randperm(x.shape[0], generator=g)
        n_fit = int(0.8 * x.shape[0])
        fit, held = x[perm[:n_fit]].contiguous(), x[perm[n_fit:]].contiguous()
        for bits in bits_list:
            for name, make in methods(fit, bits, iters, max_fit, 1 if args.quick else 5).items():
                t0 = time.perf_counter()
                built = make()
                if built is None:
                    continue
                fit_s = time.perf_counter() - t0
                enc, dec, used_bits = built
                err = rel_mse(held, dec(enc(held)))
                # Time encoding on at least 20k rows (held-out rows tiled) so small sets time reliably.
                reps = -(-encode_rows // held.shape[0])
                batch = held.repeat(reps, 1)[: max(encode_rows, held.shape[0])].contiguous()
                sec = median_time(lambda: enc(batch), warmup=1, repeats=2 if args.quick else 5)
                row = {
                    "dataset": ds,
                    "method": name,
                    "bits": bits,
                    "bits_used": round(used_bits, 2),
                    "rel_mse_heldout": err,
                    "encode_items_per_s": batch.shape[0] / sec,
                    "fit_s": fit_s,
                }
                rows.append(row)
                print_table([row], list(row))
    print()
    print_table(rows, ["dataset", "method", "bits", "bits_used", "rel_mse_heldout", "encode_items_per_s", "fit_s"])
    write_json(args.json, rows, benchmark="quantizers", quick=args.quick)
    plot_path = args.plot or (args.json.with_suffix(".png") if args.json else None)
    if plot_path is not None:
        plot(rows, plot_path)


if __name__ == "__main__":
    main()
