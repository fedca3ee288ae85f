"""Swap a sparse-ID history feature of a stock TorchRec DLRM for SIDE (and for prefix-ngram tables).

    python examples/swap_into_dlrm.py [--nproc 2] [--steps 5] [--quick] [--artifacts DIR]

1. Fit the tokenizers on item content and save them as artifacts (one safetensors file each):
   DPCA with 40 ternary levels (for SIDE) and RQ-KMeans 3 x 256 (for prefix-ngram); build the SID
   table ``item id -> packed SID`` once.
2. Build three ``torchrec.models.dlrm.DLRM`` models that differ only in how the user's history is
   embedded:
   * ``sparse_id``: the history is a feature of the stock EmbeddingBagCollection (item-id table);
   * ``side``: the history is served by ``SIDEmbeddingBagCollection`` built from the DPCA artifact
     (parameter-free: frozen tables as buffers, one int64 SID per event);
   * ``prefix_ngram``: ``TraditionalSIDEmbeddingBagCollection`` with learned prefix-ngram tables
     over the RQ SID.
3. Train each for a few steps under DistributedModelParallel on ``--nproc`` gloo ranks (CPU), with an
   explicit fused embedding optimizer and a hand-written sharding plan that uses table-wise,
   row-wise, column-wise and data-parallel tables.

The swap itself is a dozen lines (:func:`build_dlrm`)::

    tables = SIDTables.load(artifacts / "dpca.safetensors")      # frozen tokenizer tables
    codec = SIDCodec.byte_grouped(tables.radices)                # 40 ternary digits -> 1 int64
    history = SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(
        name="history", feature_names=["hist_sid"], codec=codec)], sid_tables={"history": tables})
    sparse = MultiEmbeddingBagCollection({"ids": ids_ebc, "history": history})
    model = DLRM(embedding_bag_collection=sparse, dense_in_features=4,
                 dense_arch_layer_sizes=[32, D], over_arch_layer_sizes=[32, 1])
    model = shard_model(model, {"user_id": "table_wise", "item_id": "row_wise"},
                        optimizer=EmbOptimType.EXACT_ROWWISE_ADAGRAD, learning_rate=0.05)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from torchrec.distributed.types import ShardingEnv
from torchrec.models.dlrm import DLRM
from torchrec.modules.embedding_configs import EmbeddingBagConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.data.synthetic import synthetic_content
from torchrec_side.train.dist import free_port
from torchrec_side.modules import (
    MultiEmbeddingBagCollection,
    SIDEmbeddingBagCollection,
    SIDEmbeddingBagConfig,
    SIDTables,
    SIDTokenConfig,
    TraditionalSIDEmbeddingBagCollection,
)
from torchrec_side.distributed import make_optimizer, shard_model
from torchrec_side.quantizers import DPCA, DPCAConfig, DPCALevel, KMeansConfig, Quantizer, RQKMeans, RQKMeansConfig
from torchrec_side.sid import SIDCodec

VARIANTS = ("sparse_id", "side", "prefix_ngram")
D = 16
NUM_DENSE = 4


@dataclass
class Setup:
    """Item catalogue, artifacts and the SID tables (item id -> packed SID)."""

    num_items: int
    num_users: int
    content: torch.Tensor  # [num_items, C]
    dpca_path: Path
    rq_path: Path
    side_sid: torch.Tensor  # [num_items] int64, byte-grouped DPCA SIDs
    rq_sid: torch.Tensor  # [num_items] int64, byte-grouped RQ SIDs
    batch_size: int
    max_history: int


def prepare(artifacts: Path, quick: bool) -> Setup:
    """Fits and saves the tokenizers (the artifacts) and builds the SID tables."""
    num_items = 400 if quick else 3000
    content = synthetic_content(num_items, 32, seed=0)
    artifacts.mkdir(parents=True, exist_ok=True)
    km = KMeansConfig(iters=4 if quick else 20)
    levels = [DPCALevel(1, 3) for _ in range(15 if quick else 40)]  # ternary digits
    dpca = DPCA(DPCAConfig(levels=levels, kmeans=km, seed=0)).fit(content)
    rq = RQKMeans(RQKMeansConfig(radices=[8, 8, 8] if quick else [256, 256, 256], kmeans=km, seed=0)).fit(content)
    dpca.save(artifacts / "dpca.safetensors")
    rq.save(artifacts / "rq.safetensors")
    side_sid = SIDCodec.byte_grouped(dpca.radices).pack(dpca.encode(content))
    rq_sid = SIDCodec.byte_grouped(rq.radices).pack(rq.encode(content))
    return Setup(num_items, 200, content, artifacts / "dpca.safetensors", artifacts / "rq.safetensors",
                 side_sid, rq_sid, batch_size=16 if quick else 64, max_history=50 if quick else 500)


def build_dlrm(variant: str, setup: Setup) -> DLRM:
    """A stock DLRM; only the module serving the history feature changes between variants."""
    ids = [EmbeddingBagConfig(name="user_id", num_embeddings=setup.num_users, embedding_dim=D, feature_names=["user"]),
           EmbeddingBagConfig(name="item_id", num_embeddings=setup.num_items, embedding_dim=D,
                              feature_names=["target_item"] + (["hist_item"] if variant == "sparse_id" else []))]
    ids_ebc = EmbeddingBagCollection(tables=ids)
    if variant == "sparse_id":
        sparse: torch.nn.Module = ids_ebc
    elif variant == "side":
        tables = SIDTables.load(setup.dpca_path)  # frozen tokenizer tables, from the artifact
        codec = SIDCodec.byte_grouped(tables.radices)
        history = SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(
            name="history", feature_names=["hist_sid"], codec=codec, pooling="mean", projection_dim=D)],
            sid_tables={"history": tables})
        sparse = MultiEmbeddingBagCollection({"ids": ids_ebc, "history": history})
    elif variant == "prefix_ngram":
        rq = Quantizer.load(setup.rq_path)
        history = TraditionalSIDEmbeddingBagCollection([SIDTokenConfig(
            name="hist", feature_names=["hist_sid"], codec=SIDCodec.byte_grouped(rq.radices), embedding_dim=D,
            pooling="mean", max_rows=100_000)])
        sparse = MultiEmbeddingBagCollection({"ids": ids_ebc, "history": history})
    else:
        raise ValueError(f"variant must be one of {VARIANTS}")
    return DLRM(embedding_bag_collection=sparse, dense_in_features=NUM_DENSE,  # pyre-ignore[6]
                dense_arch_layer_sizes=[32, D], over_arch_layer_sizes=[32, 1])


def sharding_for(variant: str) -> Dict[str, str]:
    """Hand plan: every sharding type appears somewhere. The mean-pooled prefix-ngram tables share one
    module, so none of them is row-split (torchrec 1.8 divides a module's means twice when row-split
    and other tables mix: :func:`torchrec_side.distributed.check_mean_pooling_sharding` refuses that)."""
    plan = {"user_id": "table_wise", "item_id": "row_wise"}
    if variant == "prefix_ngram":
        plan.update({"hist__p1": "data_parallel", "hist__p2": "column_wise", "hist__p3": "table_wise"})
    return plan


def make_batch(variant: str, setup: Setup, seed: int) -> Tuple[torch.Tensor, KeyedJaggedTensor, torch.Tensor]:
    """Synthetic batch: the label depends on how similar the target item is to the history."""
    g = torch.Generator().manual_seed(seed)
    B = setup.batch_size
    users = torch.randint(0, setup.num_users, (B,), generator=g)
    target = torch.randint(0, setup.num_items, (B,), generator=g)
    hist_len = torch.randint(0, setup.max_history + 1, (B,), generator=g)
    hist = torch.randint(0, setup.num_items, (int(hist_len.sum()),), generator=g)
    bag = torch.repeat_interleave(torch.arange(B), hist_len)
    pooled = torch.zeros(B, setup.content.shape[1]).index_add_(0, bag, setup.content[hist])
    pooled = pooled / hist_len.clamp(min=1).unsqueeze(1)
    score = (pooled * setup.content[target]).sum(1) / setup.content.shape[1] ** 0.5
    labels = (score + 0.3 * torch.randn(B, generator=g) > 0).float()
    if variant == "sparse_id":
        hist_key, hist_values = "hist_item", hist
    else:  # one packed SID per event, looked up in the SID table
        hist_key = "hist_sid"
        hist_values = (setup.side_sid if variant == "side" else setup.rq_sid)[hist]
    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys=["user", "target_item", hist_key],
        values=torch.cat([users, target, hist_values]),
        lengths=torch.cat([torch.ones(B, dtype=torch.long), torch.ones(B, dtype=torch.long), hist_len]))
    return torch.randn(B, NUM_DENSE, generator=g), kjt, labels


def train_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, variant: str, setup: Setup,
                steps: int, rank: int, world: int) -> List[float]:
    losses = []
    for step in range(steps):
        dense, kjt, labels = make_batch(variant, setup, seed=step * world + rank)
        logits = model(dense, kjt).squeeze(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def run_local(steps: int = 3, quick: bool = True, artifacts: Optional[Path] = None) -> Dict[str, List[float]]:
    """Unsharded run of all variants (for a quick check); returns the losses per variant."""
    with tempfile.TemporaryDirectory() as tmp:
        setup = prepare(Path(artifacts or tmp), quick)
        out = {}
        for variant in VARIANTS:
            torch.manual_seed(0)
            model = build_dlrm(variant, setup)
            opt = torch.optim.Adagrad(model.parameters(), lr=0.05)
            out[variant] = train_steps(model, opt, variant, setup, steps, 0, 1)
        return out


def worker(rank: int, world: int, port: int, setup: Setup, steps: int, queue: "mp.Queue") -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        env = ShardingEnv.from_process_group(dist.GroupMember.WORLD)  # pyre-ignore[6]
        result = {}
        for variant in VARIANTS:
            torch.manual_seed(0)  # same initial weights on every rank
            model = build_dlrm(variant, setup)
            dmp = shard_model(model, sharding_for(variant), env, optimizer=EmbOptimType.EXACT_ROWWISE_ADAGRAD,
                              learning_rate=0.05)
            opt = make_optimizer(dmp, dense_lr=0.05, dense_optimizer=torch.optim.Adagrad)
            t0 = time.perf_counter()
            losses = train_steps(dmp, opt, variant, setup, steps, rank, world)
            learned = sum(p.numel() for p in model.parameters())
            result[variant] = (losses, time.perf_counter() - t0, learned, sorted(dmp.plan.plan))
        queue.put((rank, result, None))
    except BaseException as e:  # report instead of hanging the other rank
        import traceback

        queue.put((rank, None, traceback.format_exc()))
        raise e
    finally:
        dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--artifacts", type=Path, default=None, help="where to write the tokenizer artifacts")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup = prepare(args.artifacts or Path(tmp), args.quick)
        print(f"artifacts: {setup.dpca_path.name}, {setup.rq_path.name}; {setup.num_items} items")
        port = free_port()
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        procs = [ctx.Process(target=worker, args=(r, args.nproc, port, setup, args.steps, queue))
                 for r in range(args.nproc)]
        for proc in procs:
            proc.start()
        results = [queue.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join()
    errors = [e for _, _, e in results if e]
    if errors:
        raise SystemExit("\n".join(errors))
    rank0 = next(r for rank, r, _ in results if rank == 0)
    print(f"DMP on {args.nproc} gloo ranks, {args.steps} steps, batch {setup.batch_size} per rank")
    for variant, (losses, sec, learned, modules) in rank0.items():
        print(f"  {variant:<13} learned params {learned:>9,}  loss {losses[0]:.4f} -> {losses[-1]:.4f}  "
              f"({sec:.2f}s)  sharded: {modules}")


if __name__ == "__main__":
    main()
