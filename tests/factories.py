# pyre-strict
"""Shared builders of the unit tests: seeded SID tables, codes and packed SIDs, KJTs from lengths /
values / weights, small fitted quantizers on seeded content, tiny SID files.

Importable from any test (``tests/`` is on ``sys.path`` through ``tests/conftest.py``)::

    from factories import kjt, random_sids, random_tables

Every builder is deterministic in its ``seed``; the same call returns the same tensors.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.modules import SIDTables
from torchrec_side.quantizers import DPCA, RQKMeans, RQKMeansConfig
from torchrec_side.sid.codec import SIDCodec

__all__ = [
    "compare_sharded_state",
    "gloo_rank",
    "reference_sgd_step",
    "spawn_ranks",
    "random_tables",
    "random_codes",
    "random_sids",
    "offsets_of",
    "kjt",
    "sid_kjt",
    "seeded_content",
    "fitted_dpca",
    "fitted_rq",
    "write_sid_files",
    "write_tiny_sid_files",
    "one_torch_thread",
    "plain_history",
]


def random_tables(radices: Sequence[int], D: int, rank1: bool = False, seed: int = 0, bias: float = 0.0) -> SIDTables:
    """SIDE decoder tables with Gaussian entries: level ``l`` is ``[radices[l], D]`` (rank 1 when
    ``rank1``, so the scalar path applies), offset ``[D]`` (plus ``bias``).

    Args:
        radices (Sequence[int]): the codebook sizes.
        D (int): embedding width.
        rank1 (bool): each level an outer product ``[K, 1] x [1, D]``.
        seed (int): generator seed.
        bias (float): added to the offset.

    Example::

        tables = random_tables([3] * 10, 8, rank1=True, seed=0)
    """
    g = torch.Generator().manual_seed(seed)
    if rank1:
        tabs = [torch.randn(k, 1, generator=g) * torch.randn(1, D, generator=g) for k in radices]
    else:
        tabs = [torch.randn(k, D, generator=g) for k in radices]
    return SIDTables.from_tensors(torch.randn(D, generator=g) + bias, tabs)


def random_codes(radices: Sequence[int], n: int, seed: int = 0) -> torch.Tensor:
    """Uniform digits, int64 ``[n, len(radices)]`` (``[0, L]`` for ``n = 0``).

    Example::

        codes = random_codes([4, 4, 4], 100, seed=1)
    """
    if n == 0:
        return torch.zeros(0, len(radices), dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, k, (n,), generator=g) for k in radices], 1)


def random_sids(codec: SIDCodec, n: int, seed: int = 0) -> torch.Tensor:
    """``codec.pack(random_codes(codec.radices, n, seed))``: int64 ``[n]``.

    Example::

        sids = random_sids(SIDCodec.byte_grouped([3] * 40), 1000)
    """
    return codec.pack(random_codes(list(codec.radices), n, seed))


def offsets_of(lengths: Sequence[int]) -> torch.Tensor:
    """Bag offsets ``[B + 1]`` (int64) of bag ``lengths``.

    Example::

        offsets_of([2, 0, 3])  # tensor([0, 2, 2, 5])
    """
    return torch.tensor([0] + list(lengths), dtype=torch.long).cumsum(0)


def kjt(
    values: torch.Tensor,
    lengths: Union[Sequence[int], torch.Tensor],
    weights: Optional[torch.Tensor] = None,
    keys: Sequence[str] = ("h",),
) -> KeyedJaggedTensor:
    """A KJT over ``keys`` from flat ``values`` and per-(key, bag) ``lengths`` (key-major), as given:
    nothing is checked, so bad inputs reach the module under test.

    Args:
        values (torch.Tensor): ``[N]`` ids or packed SIDs.
        lengths: ``[len(keys) * B]`` bag lengths.
        weights (Optional[torch.Tensor]): ``[N]`` per-value weights.
        keys (Sequence[str]): feature names.

    Example::

        k = kjt(torch.tensor([5, 7, 9]), [2, 1])  # key "h", bags [5, 7] and [9]
    """
    lengths_t = lengths if isinstance(lengths, torch.Tensor) else torch.tensor(list(lengths), dtype=torch.long)
    return KeyedJaggedTensor(keys=list(keys), values=values, lengths=lengths_t, weights=weights)


def sid_kjt(codec: SIDCodec, lengths_per_key: Mapping[str, Sequence[int]], seed: int = 0,
            weights: bool = False) -> KeyedJaggedTensor:
    """A KJT of random packed SIDs of ``codec``: ``lengths_per_key[key]`` are that key's bag lengths;
    with ``weights``, uniform ``[0, 1)`` weights (generator seed ``seed + 1``).

    Example::

        k = sid_kjt(SIDCodec.byte_grouped([3] * 10), {"f1": [2, 0, 3], "f2": [1, 1, 1]}, seed=4)
    """
    keys = list(lengths_per_key)
    lengths = torch.cat([torch.tensor(list(v), dtype=torch.long) for v in lengths_per_key.values()])
    n = int(lengths.sum())
    return KeyedJaggedTensor.from_lengths_sync(keys=keys, values=random_sids(codec, n, seed), lengths=lengths,
                                               weights=torch.rand(n, generator=torch.Generator().manual_seed(seed + 1))
                                               if weights else None)


def seeded_content(n: int = 40, d: int = 12, seed: int = 0) -> torch.Tensor:
    """Gaussian item content ``[n, d]`` (float32) from a seeded generator."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def fitted_dpca(num_levels: int = 10, x: Optional[torch.Tensor] = None, seed: int = 0) -> DPCA:
    """A ternary DPCA with ``num_levels`` levels fitted on ``x`` (default :func:`seeded_content`)."""
    return DPCA.ternary(num_levels, seed=seed).fit(seeded_content() if x is None else x)


def fitted_rq(radices: Sequence[int] = (4, 4, 4), x: Optional[torch.Tensor] = None, seed: int = 0) -> RQKMeans:
    """An RQ-KMeans with ``radices`` fitted on ``x`` (default :func:`seeded_content`)."""
    return RQKMeans(RQKMeansConfig(radices=list(radices), seed=seed)).fit(seeded_content() if x is None else x)


def write_sid_files(folder: Path, quantizer: Union[DPCA, RQKMeans], x: torch.Tensor, name: str,
                    layout: str) -> Dict[str, str]:
    """Encodes ``x`` (items ``0..n-1``) with ``quantizer``, writes ``<folder>/<name>.parquet`` (the
    SID table, ``layout`` ``"byte_grouped"`` or ``"mixed_radix"``) and ``<folder>/<name>.safetensors``
    (the quantizer); returns the history options ``{"quantizer": ..., "sid_table": ...}``.

    Example::

        opts = write_sid_files(tmp_path, fitted_dpca(), seeded_content(), "dpca", "byte_grouped")
    """
    from torchrec_side.tokenizer import SIDTable, write_sid_table
    from torchrec_side.tokenizer.artifact import make_codec

    codes = quantizer.encode(x)
    codec = make_codec(list(quantizer.radices), layout)
    write_sid_table(folder / f"{name}.parquet", SIDTable(item_ids=torch.arange(x.shape[0]), sids=codec.pack(codes),
                                                         codes=codes, codec=codec))
    quantizer.save(folder / f"{name}.safetensors")
    return {"quantizer": str(folder / f"{name}.safetensors"), "sid_table": str(folder / f"{name}.parquet")}



def write_tiny_sid_files(folder: Path, num_items: int = 40, dim: int = 12) -> Dict[str, Dict[str, str]]:
    """The tiny SID files of the model, serving and pipeline tests, under ``folder``: items
    ``0..num_items-1`` with :func:`seeded_content` ``[num_items, dim]``, a 10-level ternary DPCA
    (byte-grouped SIDs) and an RQ-KMeans 4 x 4 x 4 (mixed-radix SIDs), both seed 0.

    Returns:
        ``{"dpca": opts, "rq": opts}``, each as :func:`write_sid_files` returns.

    Example::

        files = write_tiny_sid_files(tmp_path)
        history = {"kind": "side", "column": "hist_sid", "options": files["dpca"]}
    """
    x = seeded_content(num_items, dim, seed=0)
    return {"dpca": write_sid_files(folder, fitted_dpca(10, x, seed=0), x, "dpca", "byte_grouped"),
            "rq": write_sid_files(folder, fitted_rq((4, 4, 4), x, seed=0), x, "rq", "mixed_radix")}


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Runs the block with ``torch.set_num_threads(1)`` (tiny ops on a shared 2-core machine are
    several times faster on one thread), restoring the thread count after.

    Example::

        with one_torch_thread():
            model(batch)
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def plain_history(world: Mapping[str, np.ndarray], user: int, t: int, cap: Optional[int]) -> List[int]:
    """Plain reference of a history window: ``user``'s items in the event log ``world["eu"]``,
    ``["ei"]``, ``["et"]`` (user, item, timestamp arrays, as ``tests/data/conftest.py`` writes them)
    with a timestamp strictly before ``t``, oldest first (ties by item id), the last ``cap``.

    Example::

        assert store_history == plain_history(world, u, t, cap=4)
    """
    ev = sorted((int(ts), int(i)) for uu, i, ts in zip(world["eu"], world["ei"], world["et"]) if uu == user and ts < t)
    items = [i for _, i in ev]
    return items if cap is None else items[max(0, len(items) - cap):]


def spawn_ranks(worker: Callable[..., None], world: int, *args: Any, timeout_s: float = 200.0) -> List[Tuple[Any, ...]]:
    """Runs ``worker(rank, port, *args, queue)`` on ``world`` spawned processes (a gloo group on a
    free local port) and returns what each put on the queue, failing the test with every rank's
    error when any rank reported one (a result is ``(rank, error_or_None, ...)``)."""
    import pytest
    import torch.multiprocessing as mp

    from torchrec_side.train.dist import free_port

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, port, *args, q)) for r in range(world)]
    for p in procs:
        p.start()
    results: List[Tuple[Any, ...]] = []
    try:
        for _ in procs:
            results.append(q.get(timeout=timeout_s))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    failures = [f"rank {r[0]}:\n{r[1]}" for r in results if r[1] is not None]
    if failures:
        pytest.fail("\n".join(failures))
    return results


def compare_sharded_state(sharded: Dict[str, object], ref: Dict[str, torch.Tensor], what: str) -> None:
    """Each entry of a sharded model's state dict equals the unsharded reference's: a
    ``ShardedTensor``'s local shards against the reference's slices, a plain tensor whole."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    assert set(sharded) == set(ref), f"{what}: state-dict keys differ: {set(sharded) ^ set(ref)}"
    for k, v in sharded.items():
        r = ref[k]
        if isinstance(v, ShardedTensor):
            for shard in v.local_shards():
                off, size = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                exp = r[off[0]: off[0] + size[0], off[1]: off[1] + size[1]]
                torch.testing.assert_close(shard.tensor, exp, msg=f"{what}: {k} shard {off}")
        else:
            torch.testing.assert_close(v, r, msg=f"{what}: {k}")  # pyre-ignore


def gloo_rank(rank: int, port: int, world: int, queue: Any, body: Callable[[], Any]) -> None:
    """The body of a :func:`spawn_ranks` worker: joins a ``world``-rank gloo group on ``port`` (one
    torch thread), runs ``body()`` and puts ``(rank, None, result)`` on ``queue``, or
    ``(rank, traceback, None)`` when it raised; the group is destroyed either way."""
    import os
    import traceback

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        queue.put((rank, None, body()))
    except BaseException:
        queue.put((rank, traceback.format_exc(), None))
    finally:
        dist.destroy_process_group()


def reference_sgd_step(ref: torch.nn.Module, loss: torch.Tensor, world: int, emb_lr: float, dense_lr: float,
                       is_table: Callable[[str], bool]) -> None:
    """One SGD step of an unsharded reference model on the summed loss of every rank's batch:
    gradients averaged over ``world`` ranks (TorchRec's all-to-all divides by the world size, as DDP
    does for dense parameters), tables (``is_table(name)``) at ``emb_lr``, the rest at ``dense_lr``."""
    loss.backward()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            lr = emb_lr if is_table(name) else dense_lr
            p -= lr * p.grad / world


def check_sgd_step_parity(dmp: torch.nn.Module, ref: torch.nn.Module, make_batch: Callable[[int, int], Any],
                          rank: int, world: int, emb_lr: float, dense_lr: float, is_table: Callable[[str], bool],
                          what: str) -> None:
    """A sharded model against its unsharded reference through one SGD step: ``dmp`` loads the
    reference's weights (DMP initializes sharded tables itself; the state-dict names are the same)
    and matches its state, its forward on this rank's batch ``make_batch(rank, 0)``, its state after
    one step on the summed squared outputs (:func:`reference_sgd_step` over every rank's batch)
    and its forward on the next batch ``make_batch(rank, 1)``."""
    import copy

    from torchrec_side.distributed import make_optimizer

    dmp.load_state_dict(copy.deepcopy(ref.state_dict()))
    compare_sharded_state(dmp.state_dict(), ref.state_dict(), f"{what} init")
    opt = make_optimizer(dmp, dense_lr=dense_lr)
    batch = make_batch(rank, 0)
    out = dmp(batch)
    torch.testing.assert_close(out, ref(batch), msg=f"{what}: forward")
    (out ** 2).sum().backward()
    opt.step()
    reference_sgd_step(ref, sum((ref(make_batch(r, 0)) ** 2).sum() for r in range(world)), world, emb_lr, dense_lr,
                       is_table)
    compare_sharded_state(dmp.state_dict(), ref.state_dict(), f"{what} after one step")
    batch2 = make_batch(rank, 1)
    torch.testing.assert_close(dmp(batch2), ref(batch2), msg=f"{what}: forward after step")
