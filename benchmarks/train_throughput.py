"""Training throughput and per-step breakdown of the DLRM with SIDE, sparse-ID, prefix-ngram and raw-content histories.

What the trainer (``torchrec_side.train.trainer``) does, at scale: a synthetic example store written
with the project's own store writer (every history exactly ``--history`` events, items uniform over
``--items``), read by the project's loader (``make_dataloader``: shuffled row groups, history windows
gathered from the event log, the KJT built per batch), a DLRM (embedding_dim 16, the packaged
configs' MLPs) sharded by DMP through ``build_sharded_model`` on 2 gloo ranks, the trainer's step
(``dmp(batch)``, ``zero_grad``, ``backward``, ``step``, then the loss all-reduced over ranks).
Variants, each sharded one way per module, as the packaged ``configs/adsworld`` do:

* ``sparse_id``: a learned ``[items, 16]`` history table, mean-pooled, row-wise sharded;
* ``side``: 40-digit ternary SIDs (one int64 per event, byte-grouped) pooled by
  ``SIDEmbeddingBagCollection`` (frozen tables, D=64) + a learned 64 -> 16 projection;
* ``prefix_ngram`` (traditional SID): RQ 3 x 256 SIDs as prefix-ngram tokens (3 int64 per event,
  stored), tables 256 / 65,536 / 65,536 rows (hashed budget), all table-wise;
* ``raw_content``: frozen 384-d fp16 item vectors (``[items, 384]``), mean-pooled + 384 -> 16.

Two passes per variant, both medians over steps after warm-up: the plain step loop (examples/s,
ms/step), then an instrumented pass (barriers between phases; the ranks' phases timed with
``perf_counter``, backward split with ``torch.profiler``) giving the per-step breakdown:

``loader`` (next batch: Parquet rows, windows, KJT), ``input_dist`` (KJT all-to-all of the sharded
EBCs), ``lookup`` (sharded EBC kernels, forward), ``history_pool`` (SIDE / raw-content pooling,
forward: not sharded, runs on each rank), ``output_dist`` (pooled all-to-all, forward),
``dense_fwd`` (the rest of the forward), ``emb_bwd`` (FBGEMM backward with the fused row-wise
Adagrad update), ``output_dist_bwd`` (the pooled output dist's backward: all-to-all, or the
row-wise reduce-scatter's all-gather), ``allreduce`` (DDP gradient all-reduce of the dense part and
the loss all-reduce), ``dense_bwd`` (the rest of the backward), ``optimizer`` (``zero_grad`` + the
dense Adam step); each the median over steps of the slowest rank. ``all_to_all_ms`` = input_dist +
output_dist + output_dist_bwd. ``history_share`` = the history feature's forward (SIDE / raw
pooling; for the sharded variants their history module's input dist, lookup and output dist), its
own time on the slowest rank (no barrier wait), over the plain step; ``history_share_instrumented``
the same with the phases' barriers, over the instrumented step. ``--num-workers 1`` builds batches
in a DataLoader worker as the packaged configs do (``loader`` is then the wait for the next batch).

    python benchmarks/train_throughput.py --json runs/bench/train_throughput.json   # 10^6 items, 10^3 events, B 1024/rank
    python benchmarks/train_throughput.py --quick --json /tmp/tt.json              # tiny: a smoke run in seconds
    python benchmarks/train_throughput.py --device cuda --nproc 1 --json $OUT/train_cuda.json  # 1 GPU, nccl

``--device cuda`` runs each rank on its GPU with nccl; a variant that cannot run there (e.g. the
sharded TorchRec tables without FBGEMM's CUDA build) is reported with its error instead of a number.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

# this folder last on the path, not first (where ``python benchmarks/<name>.py`` puts it): its
# appended, not prepended: a script here must never shadow an installed package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [x for x in sys.path if not x or Path(x).resolve() != _HERE] + [str(_HERE)]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import base_parser, load_average, print_table, write_json  # noqa: E402

from torchrec_side.train.dist import free_port  # noqa: E402

VARIANTS: List[str] = ["sparse_id", "side", "prefix_ngram", "raw_content"]
#: Phases of the breakdown, in step order.
PHASES: List[str] = ["loader", "input_dist", "lookup", "history_pool", "output_dist", "dense_fwd", "emb_bwd",
                     "output_dist_bwd", "allreduce", "dense_bwd", "optimizer"]
#: Sharding of each variant's learned history tables (one type per module; the rest table-wise).
SHARDING: Dict[str, Dict[str, str]] = {"sparse_id": {"t_hist_item_id": "row_wise"}}
NUM_USERS_TABLE: int = 10_000
SIDE_LEVELS: int = 40
SIDE_DIM: int = 64
RAW_DIM: int = 384
PN_MAX_ROWS: int = 65_536
HIST_BYTES: Dict[str, int] = {"sparse_id": 8, "side": 8, "prefix_ngram": 24, "raw_content": 2 * RAW_DIM}


# --------------------------------------------------------------------------------------------
# data: a store written by the project's writer, items' SIDs / tokens as derived columns


def _item_tables(items: int) -> Dict[str, Any]:
    """The items' representations (same on every process: seeded)."""
    from torchrec_side.modules import SIDTables, SIDTokenConfig
    from torchrec_side.modules.traditional import sid_tokens
    from torchrec_side.sid.codec import SIDCodec

    g = torch.Generator().manual_seed(0)
    codec_side = SIDCodec.byte_grouped([3] * SIDE_LEVELS)
    item_sid = codec_side.pack(torch.randint(0, 3, (items, SIDE_LEVELS), generator=g))
    side_tables = SIDTables.from_tensors(torch.randn(SIDE_DIM, generator=g) * 0.1,
                                         [torch.randn(3, SIDE_DIM, generator=g) * 0.2 for _ in range(SIDE_LEVELS)])
    codec_rq = SIDCodec.mixed_radix([256] * 3)
    token_cfg = SIDTokenConfig(name="t_hist_pn", feature_names=["hist_pn"], codec=codec_rq, embedding_dim=16,
                               max_rows=PN_MAX_ROWS, pooling="mean")
    item_tok = sid_tokens(torch.randint(0, 256, (items, 3), generator=g), token_cfg).t().contiguous()  # [I, 3]
    return {"codec_side": codec_side, "item_sid": item_sid, "side_tables": side_tables, "token_cfg": token_cfg,
            "item_tok": item_tok}


def write_bench_store(path: Path, items: int, history: int, rows: int, impressions_per_user: int = 16,
                      seed: int = 0) -> Any:
    """A store whose every training example has exactly ``history`` earlier events.

    User ``u`` has ``history + k`` events (timestamps ``0 .. history + k - 1``, items uniform) and
    ``k`` impressions at timestamps ``history .. history + k - 1``; the store caps histories at
    ``history``. Columns: ``hist_item_id`` (written with the store), ``hist_sid`` (packed SIDs),
    ``hist_pn`` (3 prefix-ngram token ids per event).
    """
    from torchrec_side.data.protocol import EventSource, ExamplesConfig
    from torchrec_side.data.store import write_store

    k = impressions_per_user
    users = max(2, -(-rows // k))
    g = np.random.default_rng(seed)
    log_len = history + k
    ev_user = np.repeat(np.arange(users, dtype=np.int64), log_len)
    ev_ts = np.tile(np.arange(log_len, dtype=np.int64), users)
    ev_item = g.integers(0, items, size=ev_user.size, dtype=np.int64)
    imp_user = np.repeat(np.arange(users, dtype=np.int64), k)
    imp_ts = np.tile(np.arange(history, history + k, dtype=np.int64), users)
    order = np.lexsort((imp_user, imp_ts))
    imp_user, imp_ts = imp_user[order], imp_ts[order]
    n = imp_user.size
    src = EventSource(num_users=users, num_items=items, event_user=ev_user, event_item=ev_item,
                      event_timestamp=ev_ts, user_id=imp_user, item_id=g.integers(0, items, size=n, dtype=np.int64),
                      timestamp=imp_ts, label=(g.random(n) < 0.3).astype(np.float32),
                      split=np.zeros(n, dtype=np.int8), t_val=log_len + 1, t_test=log_len + 2,
                      info={"benchmark": "train_throughput"})
    store = write_store(src, path, ExamplesConfig(dataset="synthetic", max_history=history, compression="none"))
    t = _item_tables(items)
    store.add_history_column("hist_sid", t["item_sid"][:, None])
    store.add_history_column("hist_pn", t["item_tok"])
    return store


# --------------------------------------------------------------------------------------------
# the model


def _model(variant: str, items: int, t: Dict[str, Any]) -> torch.nn.Module:
    from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    from torchrec_side.data.loader import DENSE_FEATURES
    from torchrec_side.models.builder import RankingModel
    from torchrec_side.models.dlrm import combine_pooled, DLRMRanker, id_embedding_bag_collection
    from torchrec_side.models.sid_history import RawContentBag
    from torchrec_side.modules import (SIDEmbeddingBagCollection, SIDEmbeddingBagConfig,
                                       TraditionalSIDEmbeddingBagCollection)

    d = 16
    parts: Dict[str, torch.nn.Module] = {"ids": id_embedding_bag_collection(NUM_USERS_TABLE, items, d,
                                                                             ["user_id", "item_id"])}
    if variant == "sparse_id":
        parts["hist"] = EmbeddingBagCollection(tables=[EmbeddingBagConfig(
            name="t_hist_item_id", embedding_dim=d, num_embeddings=items, feature_names=["hist_item_id"],
            pooling=PoolingType.MEAN)])
    elif variant == "side":
        parts["hist"] = _side_collection(SIDEmbeddingBagCollection, SIDEmbeddingBagConfig, t, d)
    elif variant == "prefix_ngram":
        parts["hist"] = TraditionalSIDEmbeddingBagCollection([t["token_cfg"]], premapped=True)
    else:
        g = torch.Generator().manual_seed(1)
        vectors = torch.empty(items, RAW_DIM, dtype=torch.float16)
        for lo in range(0, items, 1 << 16):  # chunked: no float32 copy of the whole table
            n = min(1 << 16, items - lo)
            vectors[lo: lo + n] = torch.randn(n, RAW_DIM, generator=g).half()
        parts["hist"] = RawContentBag(vectors, ["hist_item_id"], d, "mean")
    ranker = DLRMRanker(combine_pooled(parts), len(DENSE_FEATURES), [32, d], [64, 32, 1])
    return RankingModel(ranker)


def _side_collection(coll: Any, conf: Any, t: Dict[str, Any], d: int) -> torch.nn.Module:
    """The SIDE history module: metadata-only config + ``sid_tables`` (or, with an older
    ``torchrec_side.modules``, the tables inside the config)."""
    import inspect

    kw = dict(name="side_hist", feature_names=["hist_sid"], codec=t["codec_side"], projection_dim=d, pooling="mean")
    if "sid_tables" in inspect.signature(coll.__init__).parameters:
        return coll(tables=[conf(**kw)], sid_tables={"side_hist": t["side_tables"]})
    return coll(tables=[conf(**kw, tables=t["side_tables"])])


def _inputs(variant: str, t: Dict[str, Any]) -> List[Any]:
    from torchrec_side.data.loader import HistoryInput

    if variant == "side":
        return [HistoryInput("hist_sid")]
    if variant == "prefix_ngram":
        return [HistoryInput("hist_pn", keys=tuple(t["token_cfg"].token_feature_names("hist_pn")))]
    return [HistoryInput("hist_item_id")]


# --------------------------------------------------------------------------------------------
# instrumentation


class _Phases:
    """Per-step phase times of one rank: ``with phases("name"): ...`` adds the block's wall time,
    with a barrier before and after (so a phase is not billed for another rank's lateness) to
    ``now``, and the block's own time (up to its closing barrier: this rank's work) to ``work``."""

    def __init__(self, barrier: Callable[[], None]) -> None:
        self.barrier = barrier
        self.now: Dict[str, float] = defaultdict(float)
        self.work: Dict[str, float] = defaultdict(float)
        self.inner: List[float] = []  # per open phase: its nested phases' leading barriers (not its work)

    @contextmanager
    def __call__(self, name: str, *also: str) -> Iterator[None]:
        tb = time.perf_counter()
        self.barrier()
        if self.inner:
            self.inner[-1] += time.perf_counter() - tb
        self.inner.append(0.0)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            tw = time.perf_counter()
            self.barrier()
            inner = self.inner.pop()
            dt = time.perf_counter() - t0 - inner
            for n in (name, *also):
                self.now[n] += dt
                self.work[n] += tw - t0 - inner

    def take(self) -> Tuple[Dict[str, float], Dict[str, float]]:
        out, work = dict(self.now), dict(self.work)
        self.now, self.work = defaultdict(float), defaultdict(float)
        return out, work


class _Done:
    """An already-resolved awaitable (``wait()`` returns the value)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def wait(self) -> Any:
        return self.value


def _instrument(dmp: torch.nn.Module, phases: _Phases) -> Callable[[], None]:
    """Wraps the sharded EBCs' ``input_dist`` / ``compute_and_output_dist`` / lookups and the
    unsharded history modules' ``forward`` with phase timers; returns the undo function. The
    input dist is waited at once (as ``ShardedModule.forward`` does); the output dist's lazy
    awaitable is waited inside its phase (the dense forward then reads a resolved KeyedTensor)."""
    from torchrec.distributed.types import ShardedModule

    from torchrec_side.models.sid_history import RawContentBag
    from torchrec_side.modules import SIDEmbeddingBagCollection

    undo: List[Tuple[Any, str]] = []

    def wrap(obj: Any, attr: str, make: Callable[[Any], Any]) -> None:
        orig = getattr(obj, attr)
        setattr(obj, attr, make(orig))
        undo.append((obj, attr))

    for path, m in dmp.named_modules():
        # the history feature's own share is also kept as "hist:<phase>" (its module is parts["hist"])
        tag: Tuple[str, ...] = ("hist",) if "hist" in path.split(".") else ()
        if isinstance(m, ShardedModule) and hasattr(m, "_lookups"):
            def input_dist(orig: Any, tag: Tuple[str, ...] = tag) -> Any:
                def f(ctx: Any, *a: Any, **k: Any) -> Any:
                    with phases("input_dist", *[f"{t}:input_dist" for t in tag]):
                        return _Done(_Done(orig(ctx, *a, **k).wait().wait()))
                return f

            def out_dist(orig: Any, tag: Tuple[str, ...] = tag) -> Any:
                def f(ctx: Any, dist_input: Any) -> Any:
                    with phases("output_dist", *[f"{t}:compute_and_output_dist" for t in tag]):
                        return orig(ctx, dist_input).wait()
                return f

            wrap(m, "input_dist", input_dist)
            wrap(m, "compute_and_output_dist", out_dist)
            for lk in m._lookups:  # noqa: SLF001 - timing the sharded kernels
                def lookup(orig: Any) -> Any:
                    def f(*a: Any, **k: Any) -> Any:
                        with phases("lookup"):
                            return orig(*a, **k)
                    return f
                wrap(lk, "forward", lookup)
        elif isinstance(m, (SIDEmbeddingBagCollection, RawContentBag)):
            def pool(orig: Any) -> Any:
                def f(*a: Any, **k: Any) -> Any:
                    with phases("history_pool", "hist:history_pool"):
                        return orig(*a, **k)
                return f
            wrap(m, "forward", pool)

    def restore() -> None:
        for obj, attr in reversed(undo):
            try:
                delattr(obj, attr)
            except AttributeError:
                pass

    return restore


def _interval_union(spans: List[Tuple[float, float]]) -> float:
    total, end = 0.0, -1e300
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _backward_split(prof: Any) -> List[Dict[str, float]]:
    """Per profiled step: seconds of the backward's FBGEMM lookup backward (with the fused update),
    the pooled all-to-all's backward and the DDP all-reduce (interval unions within the step's
    ``tt:backward`` range)."""
    events = list(prof.events())
    windows = sorted((e.time_range.start, e.time_range.end, e.thread) for e in events if e.name == "tt:backward")
    node = "autograd::engine::evaluate_function:"
    cats: Dict[str, Callable[[str], bool]] = {
        "emb_bwd": lambda n: n.startswith(node) and ("SplitLookupFunction" in n or "split_embedding" in n),
        # row-wise pooled output is a reduce-scatter (its backward an all-gather), table-wise an all-to-all
        "output_dist_bwd": lambda n: n.startswith(node) and any(
            c in n for c in ("All2All", "ReduceScatter", "AllGather", "Variable_Batch")),
        "allreduce": lambda n: n.startswith("c10d::allreduce") or n.startswith("c10d::allreduce_coalesced"),
    }
    if os.environ.get("TT_DEBUG"):  # the first profiled step's heaviest ranges, forward and backward
        for label in ("tt:forward", "tt:backward"):
            w = next((e for e in events if e.name == label), None)
            if w is None:
                continue
            agg: Dict[str, float] = defaultdict(float)
            for e in events:
                if e.thread == w.thread and w.time_range.start <= e.time_range.start and e.time_range.end <= w.time_range.end:
                    agg[e.name] += e.time_range.end - e.time_range.start
            for n, us in sorted(agg.items(), key=lambda kv: -kv[1])[:30]:
                print(f"  {label} {us / 1000:8.2f} ms  {n}", flush=True)
    out = []
    for lo, hi, th in windows:  # the backward's own thread (gloo's worker threads overlap it)
        inside = [e for e in events if e.thread == th and lo <= e.time_range.start and e.time_range.end <= hi]
        out.append({c: _interval_union([(e.time_range.start, e.time_range.end) for e in inside if f(e.name)]) / 1e6
                    for c, f in cats.items()})
    return out


# --------------------------------------------------------------------------------------------
# one rank


def _worker(rank: int, world: int, port: int, args: Any, store_path: str, out: Dict[str, Any]) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)})
    torch.set_num_threads(args.threads)
    import torch.distributed as dist

    from torchrec_side.data.loader import make_dataloader
    from torchrec_side.data.store import ExampleStore
    from torchrec_side.train.config import TrainJobConfig
    from torchrec_side.train.dist import init_distributed, shutdown_distributed
    from torchrec_side.train.trainer import build_sharded_model

    env = init_distributed(args.device)
    store = ExampleStore(store_path)
    t = _item_tables(args.items)
    B, H = args.batch_size, args.history
    results: List[Dict[str, Any]] = []

    def sync() -> None:
        if env.device.type == "cuda":
            torch.cuda.synchronize(env.device)

    def barrier() -> None:
        sync()
        dist.barrier()

    for v in args.variants:
        torch.manual_seed(0)
        cfg = TrainJobConfig()
        cfg.sharding.tables = dict(SHARDING.get(v, {}))
        try:
            model = _model(v, args.items, t)
            dmp, opt, choice = build_sharded_model(cfg, model, env)
            loader = make_dataloader(store, "train", _inputs(v, t), B, rank=env.rank, world_size=env.world_size,
                                     shuffle=True, seed=0, num_workers=args.num_workers, max_history=H)
            ds = loader.dataset
            epoch = [0]

            def batches() -> Iterator[Any]:
                while True:
                    ds.set_epoch(epoch[0])  # pyright: ignore[reportAttributeAccessIssue]
                    epoch[0] += 1
                    yield from loader

            it = batches()
            dmp.train()

            def plain_step() -> None:  # the trainer's "loop" step (_Stepper) and its loss all-reduce
                batch = next(it).to(env.device, non_blocking=True)
                loss, _ = dmp(batch)
                opt.zero_grad()
                loss.backward()
                opt.step()
                x = loss.detach().float().reshape(1).clone()
                dist.all_reduce(x)
                float(x)

            for _ in range(args.warmup):
                plain_step()
            times = []
            for _ in range(args.steps):
                barrier()
                t0 = time.perf_counter()
                plain_step()
                sync()
                times.append(time.perf_counter() - t0)
            # instrumented pass
            phases = _Phases(barrier)
            restore = _instrument(dmp, phases)
            from torch.profiler import profile, ProfilerActivity, record_function

            steps: List[Tuple[Dict[str, float], Dict[str, float]]] = []
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.profile_steps):
                    barrier()
                    with phases("loader"):
                        batch = next(it).to(env.device, non_blocking=True)
                    with phases("forward"), record_function("tt:forward"):
                        loss, _ = dmp(batch)
                    with phases("optimizer"):
                        opt.zero_grad()  # the dense grads (the fused tables update in their backward)
                    with phases("backward"), record_function("tt:backward"):
                        loss.backward()
                    with phases("optimizer"):
                        opt.step()
                    with phases("loss_allreduce"):
                        x = loss.detach().float().reshape(1).clone()
                        dist.all_reduce(x)
                        float(x)
                    steps.append(phases.take())
            restore()
            bwd = _backward_split(prof)
            per_step = []
            for (s, sw), b in zip(steps, bwd + [{}] * (len(steps) - len(bwd))):
                fwd_known = sum(s.get(k, 0.0) for k in ("input_dist", "output_dist", "history_pool"))
                row = {
                    "loader": s.get("loader", 0.0),
                    "input_dist": s.get("input_dist", 0.0),
                    "lookup": s.get("lookup", 0.0),
                    "history_pool": s.get("history_pool", 0.0),
                    # compute_and_output_dist holds the lookups: the output dist is the rest of it
                    "output_dist": max(0.0, s.get("output_dist", 0.0) - s.get("lookup", 0.0)),
                    "dense_fwd": max(0.0, s.get("forward", 0.0) - fwd_known),
                    "emb_bwd": b.get("emb_bwd", 0.0),
                    "output_dist_bwd": b.get("output_dist_bwd", 0.0),
                    "allreduce": b.get("allreduce", 0.0) + s.get("loss_allreduce", 0.0),
                    "dense_bwd": max(0.0, s.get("backward", 0.0) - b.get("emb_bwd", 0.0) - b.get("output_dist_bwd", 0.0)
                                     - b.get("allreduce", 0.0)),
                    "optimizer": s.get("optimizer", 0.0),
                }
                row["step"] = sum(row.values())
                # the history feature's forward: its pooling, or its sharded lookups with their dists
                hist = ("hist:input_dist", "hist:compute_and_output_dist", "hist:history_pool")
                row["history_fwd"] = sum(s.get(k, 0.0) for k in hist)
                row["history_fwd_work"] = sum(sw.get(k, 0.0) for k in hist)  # this rank's own time, no barrier
                per_step.append(row)
            del dmp, opt, model, loader, it
        except Exception as e:  # noqa: BLE001 - reported per variant on CUDA (e.g. no FBGEMM CUDA kernels)
            if env.device.type == "cpu":
                raise
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            results.append({"variant": v, "error": msg, "device": str(env.device)})
            if env.is_rank0:
                print(f"{v}: FAILED on {env.device}: {msg}", flush=True)
            continue
        # the slowest rank sets the pace: per step, the max over ranks
        gathered: List[Any] = [None] * env.world_size
        dist.all_gather_object(gathered, {"times": times, "per_step": per_step})
        step_s = [max(g["times"][i] for g in gathered) for i in range(len(times))]
        med = statistics.median(step_s)
        breakdown = {p: 1000 * statistics.median(
            [max(g["per_step"][i][p] for g in gathered) for i in range(len(per_step))])
            for p in [*PHASES, "step", "history_fwd", "history_fwd_work"]}
        ex = B * env.world_size
        row: Dict[str, Any] = {
            "variant": v, "device": str(env.device), "examples_per_s": ex / med, "events_per_s": ex * H / med,
            "step_ms": 1000 * med, "history_bytes_per_event": HIST_BYTES[v], "tables": choice,
            "breakdown_ms": breakdown,
            "all_to_all_ms": breakdown["input_dist"] + breakdown["output_dist"] + breakdown["output_dist_bwd"],
            # the history feature's forward (its own time, slowest rank) over the plain step
            "history_share": breakdown["history_fwd_work"] / (1000 * med),
            # the same from the instrumented pass alone (phases closed by barriers, over its step)
            "history_share_instrumented": breakdown["history_fwd"] / breakdown["step"] if breakdown["step"] > 0 else None,
            "largest_phase": max(PHASES, key=lambda p: breakdown[p]),
        }
        results.append(row)
        if env.is_rank0:
            parts = ", ".join(f"{p} {breakdown[p]:.1f}" for p in PHASES)
            print(f"{v}: {row['examples_per_s']:.0f} examples/s ({row['step_ms']:.1f} ms/step); instrumented step "
                  f"{breakdown['step']:.1f} ms: {parts}", flush=True)
    if env.is_rank0:
        out["rows"] = results
    shutdown_distributed(env)


def _entry(rank: int, world: int, port: int, args: Any, store_path: str, path: str) -> None:
    out: Dict[str, Any] = {}
    _worker(rank, world, port, args, store_path, out)
    if rank == 0:
        Path(path).write_text(json.dumps(out))
    # The work is done and the process group is shut down. Leave without the interpreter's teardown:
    # after torch.profiler has run, a rank can abort in it ("terminate called without an active
    # exception" from a still-joinable native thread, seen once in CI), failing a finished run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: Optional[List[str]] = None) -> int:
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--items", type=int, default=None, help="default 10^6 (quick 2,000)")
    p.add_argument("--history", type=int, default=None, help="events per history, default 1,000 (quick 20)")
    p.add_argument("--batch-size", type=int, default=None, help="examples per rank per step, default 1024 (quick 32)")
    p.add_argument("--steps", type=int, default=None, help="timed plain steps (default 10, quick 2)")
    p.add_argument("--profile-steps", type=int, default=None, help="instrumented steps (default 5, quick 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3, quick 1)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    p.add_argument("--num-workers", type=int, default=0,
                   help="DataLoader workers per rank (0: batches built in the step, timed as 'loader')")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto (default: CUDA with nccl when visible, else CPU with gloo), cpu or cuda")
    args = p.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = sorted(set(args.variants) - set(VARIANTS))
    if bad:
        p.error(f"unknown variants {bad}; choose from {VARIANTS}")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("benchmarks/train_throughput.py --device cuda: no CUDA device is visible", file=sys.stderr)
            return 2
        if args.nproc > torch.cuda.device_count():
            print(f"--nproc {args.nproc} > {torch.cuda.device_count()} visible GPUs", file=sys.stderr)
            return 2
    q = bool(args.quick)
    args.items = args.items or (2_000 if q else 10**6)
    args.history = args.history or (20 if q else 1000)
    args.batch_size = args.batch_size or (32 if q else 1024)
    args.steps = args.steps or (2 if q else 10)
    args.profile_steps = args.profile_steps or (1 if q else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if q else 3)
    load_before = load_average()
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="train_throughput_") as tmp:
        rows_needed = (args.warmup + args.steps + args.profile_steps + 1) * args.batch_size * args.nproc
        t0 = time.time()
        write_bench_store(Path(tmp) / "store", args.items, args.history, rows_needed)
        store_s = time.time() - t0
        path = os.path.join(tmp, "out.json")
        import torch.multiprocessing as mp

        mp.spawn(_entry, args=(args.nproc, free_port(), args, str(Path(tmp) / "store"), path), nprocs=args.nproc,
                 join=True)
        rows = json.loads(Path(path).read_text())["rows"]
    by = {r["variant"]: r for r in rows if "examples_per_s" in r}

    def ratio(a: str, b: str) -> Any:
        return by[a]["examples_per_s"] / by[b]["examples_per_s"] if a in by and b in by else None

    summary = {
        "side_vs_sparse_id": ratio("side", "sparse_id"),
        "side_vs_prefix_ngram": ratio("side", "prefix_ngram"),
        "side_vs_raw_content": ratio("side", "raw_content"),
        "examples_per_s": {v: by[v]["examples_per_s"] for v in by},
        "side_history_share": by["side"]["history_share"] if "side" in by else None,
        "side_history_share_instrumented": by["side"]["history_share_instrumented"] if "side" in by else None,
        "largest_phase": {v: by[v]["largest_phase"] for v in by},
        "errors": {r["variant"]: r["error"] for r in rows if "error" in r},
        "device": args.device,
        "targets": {"side_vs_sparse_id_min": 1.5, "side_history_share_max": 0.2},
    }
    print_table(rows, ["variant", "device", "examples_per_s", "events_per_s", "step_ms", "all_to_all_ms",
                       "history_share", "largest_phase", "error"])
    print_table([{"variant": r["variant"], **r["breakdown_ms"]} for r in rows if "breakdown_ms" in r],
                ["variant", *PHASES, "step"])
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}x"  # noqa: E731
    print(f"throughput ratios: SIDE / sparse-ID {fmt(summary['side_vs_sparse_id'])}, "
          f"SIDE / prefix-ngram {fmt(summary['side_vs_prefix_ngram'])}, "
          f"SIDE / raw content {fmt(summary['side_vs_raw_content'])}")
    write_json(args.json, rows, summary=summary,
               setup={"items": args.items, "history_events": args.history, "batch_per_rank": args.batch_size,
                      "ranks": args.nproc, "steps": args.steps, "profile_steps": args.profile_steps,
                      "warmup": args.warmup, "threads_per_rank": args.threads, "num_workers": args.num_workers,
                      "quick": q, "device": args.device, "variants": args.variants,
                      "store_write_s": store_s, "wall_s": time.time() - t_start,
                      "load_average_before": load_before, "load_average_after": load_average()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
