"""A stock torchrec.models.dlrm.DLRM built with SID modules runs forward and backward."""

from __future__ import annotations

import torch
from torchrec.models.dlrm import DLRM
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.modules import (
    MultiEmbeddingBagCollection,
    SIDEmbeddingBagCollection,
    SIDEmbeddingBagConfig,
    SIDTables,
    SIDTokenConfig,
    TraditionalSIDEmbeddingBagCollection,
    sparse_id_embedding_bag_collection,
)
from torchrec_side.sid.codec import SIDCodec

D = 8


def batch(codec: SIDCodec, B: int = 4) -> KeyedJaggedTensor:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([1] * B + [3, 0, 5, 2][:B] + [2, 1, 0, 4][:B])
    n_ids = B
    n_sid = int(lengths[B:].sum())
    codes = torch.stack([torch.randint(0, k, (n_sid,), generator=g) for k in codec.radices], 1)
    values = torch.cat([torch.randint(0, 20, (n_ids,), generator=g), codec.pack(codes)])
    return KeyedJaggedTensor.from_lengths_sync(keys=["user", "hist_side", "hist_trad"], values=values, lengths=lengths)


def test_dlrm_with_side_and_prefix_ngram() -> None:
    torch.manual_seed(0)
    codec = SIDCodec.byte_grouped([3] * 10)
    tables = SIDTables.from_tensors(torch.randn(D), [torch.randn(3, D) for _ in range(10)])
    sparse = MultiEmbeddingBagCollection({
        "ids": sparse_id_embedding_bag_collection(["user"], 20, D, name="user_id"),
        "side": SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(
            name="side_hist", feature_names=["hist_side"], codec=codec, pooling="mean")],
            sid_tables={"side_hist": tables}),
        "trad": TraditionalSIDEmbeddingBagCollection([SIDTokenConfig(
            name="hist", feature_names=["hist_trad"], codec=codec, embedding_dim=D, max_rows=100)]),
    })
    model = DLRM(embedding_bag_collection=sparse, dense_in_features=3, dense_arch_layer_sizes=[16, D],
                 over_arch_layer_sizes=[8, 1])
    kjt = batch(codec)
    logits = model(torch.randn(4, 3), kjt)
    assert logits.shape == (4, 1)
    torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), torch.ones(4)).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    # SIDE adds no learned parameter; the frozen tables are buffers in the state dict
    side_params = [n for n in grads if ".side." in n]
    assert side_params == []
    assert "sparse_arch.embedding_bag_collection.collections.side.tables.side_hist.level_tables" in model.state_dict()


def test_swap_example_runs_unsharded() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "swap_into_dlrm.py"
    spec = importlib.util.spec_from_file_location("swap_into_dlrm", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    import sys

    sys.modules["swap_into_dlrm"] = mod  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop("swap_into_dlrm", None)
    losses = mod.run_local(steps=2, quick=True)
    assert set(losses) == {"sparse_id", "side", "prefix_ngram"}
    assert all(torch.isfinite(torch.tensor(v)).all() for v in losses.values())
