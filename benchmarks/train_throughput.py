"""Training throughput of the DLRM with SIDE vs sparse-ID vs prefix-ngram history features.

Synthetic data at scale: 10^6 items, user histories of 10^3 events, 2 ranks (gloo on CPU, nccl on
GPUs), one run measuring the three variants one after the other with the same model (DLRM,
embedding_dim 16, the ML-100K configs' MLPs), the same optimizers (fused row-wise Adagrad for the
learned tables, Adam for the dense part) and the same batches:

* ``sparse_id``: a learned ``[10^6, 16]`` item table (row-wise sharded), mean-pooled history;
* ``side``: 40-digit ternary SIDs (one int64 per event, byte-grouped) pooled by
  ``SIDEmbeddingBagCollection`` (frozen tables, D=64) + a learned 64 -> 16 projection;
* ``prefix_ngram``: RQ 3 x 256 SIDs as prefix-ngram tokens (3 int64 per event, stored as the feature
  store would), tables 256 / 65,536 / 10^6 rows (the last hashed and row-wise sharded).

Batches are generated before timing (what the loader hands the model): the numbers are model
training steps (forward, backward, optimizer, the sharded lookups' all-to-alls), not data loading.

    python benchmarks/train_throughput.py --json runs/bench/train_throughput.json
    python benchmarks/train_throughput.py --quick --json /tmp/tt.json      # 10^5 items, 200 events
    python benchmarks/train_throughput.py --device cuda --nproc 1 --json $OUT/train_cuda.json  # 1 GPU, nccl

``--device cuda`` runs each rank on its GPU with nccl; a variant that cannot run there (e.g. the
sharded TorchRec tables without FBGEMM's CUDA build) is reported with its error instead of a number.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import base_parser, print_table, write_json  # noqa: E402

from torchrec_side.train.dist import free_port  # noqa: E402

VARIANTS = ["sparse_id", "side", "prefix_ngram"]


def _model(variant: str, num_users: int, num_items: int, d: int, codec_side: Any, side_tables: Any,
           token_cfg: Any) -> torch.nn.Module:
    from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    from torchrec_side.data.loader import DENSE_FEATURES
    from torchrec_side.models.builder import RankingModel
    from torchrec_side.models.dlrm import combine_pooled, DLRMRanker, id_embedding_bag_collection
    from torchrec_side.modules import (SIDEmbeddingBagCollection, SIDEmbeddingBagConfig,
                                       TraditionalSIDEmbeddingBagCollection)

    parts: Dict[str, torch.nn.Module] = {"ids": id_embedding_bag_collection(num_users, num_items, d, ["user_id", "item_id"])}
    if variant == "sparse_id":
        parts["hist"] = EmbeddingBagCollection(tables=[EmbeddingBagConfig(
            name="t_hist_item_id", embedding_dim=d, num_embeddings=num_items, feature_names=["hist_item_id"],
            pooling=PoolingType.MEAN)])
    elif variant == "side":
        parts["hist"] = SIDEmbeddingBagCollection(tables=[SIDEmbeddingBagConfig(
            name="side_hist", feature_names=["hist_sid"], codec=codec_side, tables=side_tables, projection_dim=d,
            pooling="mean")])
    else:
        parts["hist"] = TraditionalSIDEmbeddingBagCollection([token_cfg], premapped=True)
    ranker = DLRMRanker(combine_pooled(parts), len(DENSE_FEATURES), [32, d], [64, 32, 1])
    return RankingModel(ranker)


def _worker(rank: int, world: int, port: int, args: Any, out: Dict[str, Any]) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)})
    torch.set_num_threads(args.threads)
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from torchrec_side.data.loader import DENSE_FEATURES, ExampleBatch
    from torchrec_side.modules import SIDTables, SIDTokenConfig
    from torchrec_side.modules.traditional import sid_tokens
    from torchrec_side.sid.codec import SIDCodec
    from torchrec_side.train.config import TrainJobConfig
    from torchrec_side.train.dist import init_distributed, shutdown_distributed
    from torchrec_side.train.trainer import build_sharded_model

    env = init_distributed(args.device)
    g = torch.Generator().manual_seed(0)  # same item tables on every rank
    I, H, B, d = args.items, args.history, args.batch_size, 16
    codec_side = SIDCodec.byte_grouped([3] * 40)
    item_sid = codec_side.pack(torch.randint(0, 3, (I, 40), generator=g))
    side_tables = SIDTables.from_tensors(torch.randn(64, generator=g) * 0.1,
                                         [torch.randn(3, 64, generator=g) * 0.2 for _ in range(40)])
    codec_rq = SIDCodec.mixed_radix([256] * 3)
    token_cfg = SIDTokenConfig(name="t_hist_pn", feature_names=["hist_pn"], codec=codec_rq, embedding_dim=d,
                               max_rows=10**6, pooling="mean")
    item_tok = sid_tokens(torch.randint(0, 256, (I, 3), generator=g), token_cfg).t().contiguous()  # [I, 3]
    num_users = 10_000

    gb = torch.Generator().manual_seed(1000 + rank)
    batches: Dict[str, List[ExampleBatch]] = {v: [] for v in VARIANTS}
    for _ in range(args.distinct_batches):
        lengths = torch.full((B,), H, dtype=torch.long)
        hist = torch.randint(0, I, (int(lengths.sum()),), generator=gb)
        users = torch.randint(0, num_users, (B,), generator=gb)
        items = torch.randint(0, I, (B,), generator=gb)
        ones = torch.ones(B, dtype=torch.long)
        dense = torch.randn(B, len(DENSE_FEATURES), generator=gb)
        labels = (torch.rand(B, generator=gb) < 0.5).float()
        w = torch.ones(B)
        hist_vals = {"sparse_id": (["hist_item_id"], [hist]), "side": (["hist_sid"], [item_sid[hist]]),
                     "prefix_ngram": (token_cfg.token_feature_names("hist_pn"), [item_tok[hist, t] for t in range(3)])}
        for v, (keys, vals) in hist_vals.items():
            kjt = KeyedJaggedTensor.from_lengths_sync(
                keys=["user_id", "item_id", *keys], values=torch.cat([users, items, *vals]),
                lengths=torch.cat([ones, ones, *[lengths] * len(keys)]))
            batches[v].append(ExampleBatch(dense_features=dense, sparse_features=kjt, labels=labels, weights=w))

    cfg = TrainJobConfig()
    cfg.sharding.tables = {}
    results = []
    for v in VARIANTS:
        torch.manual_seed(0)
        model = _model(v, num_users, I, d, codec_side, side_tables, token_cfg)
        from torchrec_side.train.trainer import _table_specs  # noqa: PLC0415 (private helper, same package)

        tables = set(_table_specs(model))
        cfg.sharding.tables = {t: "row_wise" for t in ("t_hist_item_id", "t_hist_pn__p3")
                               if any(t in k for k in tables)}
        try:
            dmp, opt, choice = build_sharded_model(cfg, model, env)

            def step(i: int) -> None:
                batch = batches[v][i % len(batches[v])].to(env.device)
                opt.zero_grad()
                loss, _ = dmp(batch)
                loss.backward()
                opt.step()

            for i in range(args.warmup):
                step(i)
            _sync(env.device)
            torch.distributed.barrier()
            t0 = time.perf_counter()
            for i in range(args.steps):
                step(i)
            _sync(env.device)
            torch.distributed.barrier()
            dt = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - reported per variant (e.g. no FBGEMM CUDA kernels)
            if env.device.type == "cpu":
                raise
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            results.append({"variant": v, "error": msg, "device": str(env.device)})
            if env.is_rank0:
                print(f"{v}: FAILED on {env.device}: {msg}", flush=True)
            continue
        ex = args.steps * B * env.world_size
        row = {"variant": v, "device": str(env.device), "examples_per_s": ex / dt, "events_per_s": ex * H / dt,
               "step_ms": 1000 * dt / args.steps, "history_bytes_per_event": {"sparse_id": 8, "side": 8, "prefix_ngram": 24}[v],
               "tables": choice}
        results.append(row)
        if env.is_rank0:
            print(f"{v}: {row['examples_per_s']:.0f} examples/s ({row['step_ms']:.0f} ms/step)", flush=True)
        del dmp, opt, model
    if env.is_rank0:
        out["rows"] = results
    shutdown_distributed(env)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _entry(rank: int, world: int, port: int, args: Any, path: str) -> None:
    out: Dict[str, Any] = {}
    _worker(rank, world, port, args, out)
    if rank == 0:
        import json

        Path(path).write_text(json.dumps(out))


def main() -> int:
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--items", type=int, default=None)
    p.add_argument("--history", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="examples per rank per step")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto (default: CUDA with nccl when visible, else CPU with gloo), cpu or cuda")
    args = p.parse_args()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("benchmarks/train_throughput.py --device cuda: no CUDA device is visible", file=sys.stderr)
            return 2
        if args.nproc > torch.cuda.device_count():
            print(f"--nproc {args.nproc} > {torch.cuda.device_count()} visible GPUs", file=sys.stderr)
            return 2
    args.items = args.items or (10**5 if args.quick else 10**6)
    args.history = args.history or (200 if args.quick else 1000)
    args.batch_size = args.batch_size or (32 if args.quick else 64)
    args.steps = args.steps or (5 if args.quick else 20)
    args.warmup = 2
    args.distinct_batches = 2 if args.quick else 4
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.json")
        mp.spawn(_entry, args=(args.nproc, free_port(), args, path), nprocs=args.nproc, join=True)
        import json

        rows = json.loads(Path(path).read_text())["rows"]
    by = {r["variant"]: r for r in rows if "examples_per_s" in r}

    def ratio(a: str, b: str) -> Any:
        return by[a]["examples_per_s"] / by[b]["examples_per_s"] if a in by and b in by else None

    summary = {
        "side_vs_sparse_id": ratio("side", "sparse_id"),
        "side_vs_prefix_ngram": ratio("side", "prefix_ngram"),
        "examples_per_s": {v: by[v]["examples_per_s"] for v in by},
        "errors": {r["variant"]: r["error"] for r in rows if "error" in r},
        "device": args.device,
    }
    print_table(rows, ["variant", "device", "examples_per_s", "events_per_s", "step_ms", "history_bytes_per_event",
                       "error"])
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}x"  # noqa: E731
    print(f"throughput ratios: SIDE / sparse-ID {fmt(summary['side_vs_sparse_id'])}, "
          f"SIDE / prefix-ngram {fmt(summary['side_vs_prefix_ngram'])}")
    write_json(args.json, rows, summary=summary,
               setup={"items": args.items, "history_events": args.history,
                      "batch_per_rank": args.batch_size, "ranks": args.nproc, "steps": args.steps,
                      "threads_per_rank": args.threads, "quick": bool(args.quick), "device": args.device})
    return 0


if __name__ == "__main__":
    sys.exit(main())
