"""Example-store footprint per variant (docs/design.md sections 7 and 7c): bytes per stored event.

Builds the example store (MovieLens-100K, or a simulated-world folder with ``--world``), writes each
variant's log column once from its item -> value table, and reports the bytes per stored event
measured on the written Parquet files, raw (pages before compression, plain encoding) and
compressed (the file), next to what a store that materialized every example's history would hold
(``history_events x value bytes``). Also times the loader (examples/s, history events/s).

Variants (one column each; traditional SID is one RQ SID per content collection, as in section 7):

* ``sparse_id``: the item ids;
* ``side``: one packed DPCA SID (40 ternary digits, byte-grouped) of the text content;
* ``prefix_rq_<collection>``: prefix-ngram token ids (3) of a 3 x 256 RQ-KMeans SID of a
  collection (MovieLens: MiniLM text and the collaborative embedding of training events; a world:
  its text and image content);
* ``raw_text_fp16``: the raw text content embedding, fp16 (384 values).

    python benchmarks/store_footprint.py --json runs/bench/store_footprint.json
    python benchmarks/store_footprint.py --world runs/world/tiny --json runs/bench/store_footprint_world.json
    python benchmarks/store_footprint.py --quick --stores /tmp/stores --json /tmp/sf.json  # tiny synthetic store, seconds

``--quick`` (without ``--world``): a tiny synthetic-ratings store (200 users, 300 items, 5,000 events),
synthetic 64-d "text" content, RQ 3 x 16 SIDs, 10 loader batches: a smoke run of every step.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch

# this folder last on the path, not first (where ``python benchmarks/<name>.py`` puts it): its
# appended, not prepended: a script here must never shadow an installed package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [x for x in sys.path if not x or Path(x).resolve() != _HERE] + [str(_HERE)]
from _common import base_parser, print_table, write_json  # noqa: E402


def _fit_rows(x: torch.Tensor, fit_items: int, seed: int) -> torch.Tensor:
    """A seeded subset of at most ``fit_items`` rows to fit a quantizer on (all rows are encoded)."""
    if fit_items <= 0 or x.shape[0] <= fit_items:
        return x
    g = torch.Generator().manual_seed(seed)
    return x[torch.randperm(x.shape[0], generator=g)[:fit_items]]


def _prefix_tokens(x: torch.Tensor, seed: int, fit_items: int, radix: int = 256) -> Tuple[np.ndarray, float]:
    from torchrec_side.modules.traditional import sid_tokens, SIDTokenConfig
    from torchrec_side.quantizers import RQKMeans, RQKMeansConfig
    from torchrec_side.sid import SIDCodec

    t0 = time.perf_counter()
    q = RQKMeans(RQKMeansConfig(radices=[radix] * 3, seed=seed)).fit(_fit_rows(x, fit_items, seed))
    codes = q.encode(x)
    cfg = SIDTokenConfig(name="t", feature_names=["hist"], codec=SIDCodec.mixed_radix(q.radices), embedding_dim=16)
    return sid_tokens(codes, cfg).t().contiguous().numpy(), time.perf_counter() - t0


def _side_sids(x: torch.Tensor, seed: int, fit_items: int) -> Tuple[np.ndarray, float]:
    from torchrec_side.quantizers import DPCA
    from torchrec_side.sid import SIDCodec

    t0 = time.perf_counter()
    q = DPCA.ternary(num_levels=40, seed=seed).fit(_fit_rows(x, fit_items, seed))
    sids = SIDCodec.byte_grouped(q.radices).pack(q.encode(x))
    return sids.numpy()[:, None], time.perf_counter() - t0


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--world", type=Path, default=None, help="a simulated-world folder (default: MovieLens-100K)")
    p.add_argument("--max-history", type=int, default=200, help="the store's history cap (0: none)")
    p.add_argument("--stores", type=Path, default=Path("runs/bench/stores"), help="parent folder of the stores")
    p.add_argument("--batches", type=int, default=200, help="loader batches to time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fit-items", type=int, default=20000,
                   help="fit the quantizers on at most this many items (seeded sample; 0: all); all are encoded")
    p.add_argument("--no-raw", action="store_true", help="skip the raw fp16 column (large worlds)")
    args = p.parse_args()
    if args.quick:
        args.batches = min(args.batches, 10)

    from torchrec_side.data.loader import HistoryInput, make_dataloader
    from torchrec_side.data.protocol import ExamplesConfig
    from torchrec_side.data.store import prepare_store

    cap = args.max_history or None
    if args.world is not None:
        cfg = ExamplesConfig(dataset="adsworld", world_dir=str(args.world), max_history=cap)
    elif args.quick:
        cfg = ExamplesConfig(dataset="synthetic", max_history=cap, synthetic_users=200, synthetic_items=300,
                             synthetic_events=5000, synthetic_seed=args.seed)
    else:
        cfg = ExamplesConfig(dataset="ml100k", max_history=cap)
    t0 = time.perf_counter()
    store = prepare_store(cfg, args.stores)
    store_s = time.perf_counter() - t0

    tables: Dict[str, Tuple[Any, float]] = {}
    if args.world is not None:
        text = torch.from_numpy(np.load(args.world / "content" / "text.npy").astype(np.float32))
        image = torch.from_numpy(np.load(args.world / "content" / "image.npy").astype(np.float32))
        collections = {"text": text, "image": image}
    elif args.quick:
        from torchrec_side.data import content, synthetic_content

        text = synthetic_content(store.num_items, 64, seed=args.seed).float()
        tr = store.interactions("train")
        cf = content.collaborative_embeddings(tr["user_id"], tr["item_id"], store.num_users, store.num_items,
                                              dim=16, seed=args.seed).float()
        collections = {"text": text, "cf": cf}
    else:
        from torchrec_side.data import content

        text = content.load_items().text_vectors.float()
        tr = store.interactions("train")
        cf = content.collaborative_embeddings(tr["user_id"], tr["item_id"], store.num_users, store.num_items,
                                              dim=64, seed=args.seed).float()
        collections = {"text": text, "cf": cf}
    tables["side"] = _side_sids(text, args.seed, args.fit_items)
    for name, x in collections.items():
        tables[f"prefix_rq_{name}"] = _prefix_tokens(x, args.seed, args.fit_items, 16 if args.quick else 256)
    if not args.no_raw:
        tables["raw_text_fp16"] = (text.half().numpy(), 0.0)

    rows: List[Dict[str, Any]] = []
    columns = {"sparse_id": "hist_item_id"}
    write_s: Dict[str, float] = {}
    for variant, (tab, _) in tables.items():
        col = f"hist_{variant}"
        t0 = time.perf_counter()
        store.add_history_column(col, tab, note=f"benchmark: {variant}", overwrite=True)
        write_s[variant] = time.perf_counter() - t0
        columns[variant] = col
    for variant, col in columns.items():
        fp = store.footprint(col)
        rows.append({
            "variant": variant, "column": col, "value_bytes": fp["value_bytes_per_event"],
            "raw_bytes_per_event": fp["raw_bytes_per_event"],
            "compressed_bytes_per_event": fp["compressed_bytes_per_event"],
            "file_bytes": fp["file_bytes"], "log_events": fp["log_events"],
            "history_events": fp["history_events"],
            "materialized_value_bytes": fp["history_events"] * fp["value_bytes_per_event"],
            "log_value_bytes": fp["log_events"] * fp["value_bytes_per_event"],
            "fit_s": tables[variant][1] if variant in tables else 0.0, "write_s": write_s.get(variant, 0.0),
        })
    for r in rows:  # how many times a materialized store repeats each logged event's values
        r["materialized_over_log"] = r["materialized_value_bytes"] / max(r["log_value_bytes"], 1.0)

    # loader throughput on the training split (shuffled, one process, no worker)
    speed: List[Dict[str, Any]] = []
    for variant in ("sparse_id", "side", f"prefix_rq_{next(iter(collections))}"):
        dl = make_dataloader(store, "train", [HistoryInput(columns[variant])], batch_size=256, num_workers=0)
        it = iter(dl)
        next(it)  # reads the log column once
        n = ev = 0
        t0 = time.perf_counter()
        for _, b in zip(range(args.batches), it):
            n += b.batch_size
            ev += int(b.sparse_features.lengths()[2 * b.batch_size:].sum())
        dt = time.perf_counter() - t0
        speed.append({"variant": variant, "examples_per_s": n / dt, "kjt_values_per_s": ev / dt, "batches": args.batches})

    print(f"store {store.path} ({store_s:.1f}s): {store.log_events} log events, "
          f"{store.history_events()} history events in the examples' windows")
    print_table(rows, ["variant", "value_bytes", "raw_bytes_per_event", "compressed_bytes_per_event", "file_bytes",
                       "materialized_over_log"])
    print_table(speed, ["variant", "examples_per_s", "kjt_values_per_s"])
    write_json(args.json, rows, loader=speed, store=str(store.path), dataset=cfg.dataset, max_history=cap,
               log_events=store.log_events, history_events=store.history_events(),
               rows_per_split={s: store.rows(s) for s in ("train", "val", "test")})


if __name__ == "__main__":
    main()
