"""torch.compile (fullgraph) and torch.export see through SIDE: a DLRM holding
SIDEmbeddingBagCollection compiles without graph breaks and exports, both matching eager, with the
registered op in the graph; TorchRec's fx tracing keeps working."""

from __future__ import annotations

from typing import Tuple

import pytest
import torch
from torchrec.models.dlrm import DLRM
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.modules import SIDEmbeddingBagCollection, SIDEmbeddingBagConfig, SIDTables
from torchrec_side.modules.ops import cpu_kernel
from torchrec_side.sid.codec import SIDCodec


def build(compute: str, weighted: bool) -> Tuple[DLRM, torch.Tensor, KeyedJaggedTensor]:
    g = torch.Generator().manual_seed(0)
    radices = [3] * 10
    codec = SIDCodec.byte_grouped(radices)
    tables = SIDTables.from_tensors(torch.randn(8, generator=g), [torch.randn(3, 8, generator=g) for _ in radices])
    side = SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(name="h", feature_names=["a", "b"], codec=codec,
                                                            compute=compute)], is_weighted=weighted,
                                     sid_tables={"h": tables})
    torch.manual_seed(0)
    model = DLRM(embedding_bag_collection=side, dense_in_features=4, dense_arch_layer_sizes=[8, 8],
                 over_arch_layer_sizes=[8, 1])
    codes = torch.randint(0, 3, (12, 10), generator=g)
    kjt = KeyedJaggedTensor(keys=["a", "b"], values=codec.pack(codes), lengths=torch.tensor([3, 0, 2, 1, 4, 2]),
                            weights=torch.rand(12, generator=g) if weighted else None)
    return model, torch.randn(3, 4, generator=g), kjt


# the ``kernel`` fixture (skip without the registered op) is in tests/conftest.py


@pytest.mark.parametrize("weighted", [False, True])
def test_compile_fullgraph_matches_eager(kernel: None, weighted: bool) -> None:
    """fullgraph=True: no graph break anywhere (KJT split, offset checks, the op). The aot_eager
    backend traces through dynamo and AOT autograd (the fake kernel and the weight autograd) without
    spending a minute in inductor codegen on a 2-core CI machine."""
    torch._dynamo.reset()
    model, dense, kjt = build("kernel", weighted)
    eager = model(dense, kjt)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(dense, kjt), eager)
    if weighted:  # gradients reach the KJT weights through the registered autograd
        grads = []
        for fn in (compiled, model):  # a fresh KJT each time: a KJT caches its split views
            w = kjt.weights().clone().requires_grad_(True)
            kjt_w = KeyedJaggedTensor(keys=kjt.keys(), values=kjt.values(), lengths=kjt.lengths(), weights=w)
            fn(dense, kjt_w).sum().backward()
            grads.append(w.grad)
        torch.testing.assert_close(grads[0], grads[1])
        assert float(grads[1].abs().sum()) > 0


def test_export_matches_eager_and_holds_the_op(kernel: None) -> None:
    model, dense, kjt = build("auto", True)
    eager = model(dense, kjt)
    ep = torch.export.export(model, (dense, kjt), strict=False)
    assert "torchrec_side.sid_pool.default" in str(ep.graph)
    torch.testing.assert_close(ep.module()(dense, kjt), eager)


def test_compile_fullgraph_torch_path() -> None:
    """The pure-torch fallback compiles without graph breaks too (validation as one async assert)."""
    torch._dynamo.reset()
    model, dense, kjt = build("grouped_bag", True)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(dense, kjt), model(dense, kjt))


def test_export_torch_path_matches_eager() -> None:
    """The pure-torch fallback exports too (machines without a compiler)."""
    model, dense, kjt = build("grouped_bag", False)
    ep = torch.export.export(model, (dense, kjt), strict=False)
    torch.testing.assert_close(ep.module()(dense, kjt), model(dense, kjt))


@pytest.mark.parametrize("compute", ["kernel", "grouped_bag"])
def test_torchrec_fx_trace(compute: str) -> None:
    if compute == "kernel" and not cpu_kernel.kernels_available():
        pytest.skip("no kernel")
    from torchrec.fx import symbolic_trace

    model, dense, kjt = build(compute, True)
    gm = symbolic_trace(model)
    torch.testing.assert_close(gm(dense, kjt), model(dense, kjt))
