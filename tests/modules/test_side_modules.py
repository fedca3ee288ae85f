"""SIDE modules: every compute path equals the plain reference; decode parity; collection API."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor, KeyedTensor

from torchrec_side.modules import (
    SIDEmbedding,
    SIDEmbeddingBag,
    SIDEmbeddingBagCollection,
    SIDEmbeddingBagConfig,
    SIDEmbeddingCollection,
    SIDEmbeddingConfig,
    SIDTables,
)
from torchrec_side.modules.ops import cpu_kernel, path_status
from torchrec_side.modules.ops import dispatch as Fs
from torchrec_side.modules.tables import byte_groups
from torchrec_side.sid.codec import SIDCodec

if TYPE_CHECKING:
    from torchrec_side.quantizers import DPCA, RQKMeans

from factories import offsets_of, random_codes, random_tables, sid_kjt

# every CPU path except triton (interpreted Triton is slow: tests/modules/test_side_ops.py runs it)
POOLED_PATHS = ["per_level", "scalar", "grouped_bag", "grouped_hist", "kernel", "fbgemm", "auto"]
UNPOOLED_PATHS = ["per_level", "grouped_bag", "kernel", "fbgemm", "auto"]


def supported(path: str, codec: SIDCodec, tables: SIDTables) -> bool:
    ok_bytes = byte_groups(codec) is not None
    if path in ("grouped_bag", "grouped_hist", "kernel", "fbgemm", "triton") and not ok_bytes:
        return False
    if path in ("kernel", "fbgemm", "triton") and not path_status(path, torch.device("cpu")).startswith("ok"):
        return False
    if path == "scalar" and tables.scalar_factors() is None:
        return False
    return True


def assert_close_scaled(out: torch.Tensor, ref: torch.Tensor, n_terms: int) -> None:
    # float32 sums of n_terms values: tolerance grows with sqrt(n) and the magnitude
    tol = 1e-5 * (1.0 + float(ref.abs().max()) if ref.numel() else 1.0) * max(1.0, n_terms ** 0.5) * 4
    torch.testing.assert_close(out, ref, atol=tol, rtol=1e-4)


radix_lists = st.one_of(
    st.just([3] * 40),
    st.just([256, 256, 256]),
    st.lists(st.integers(2, 17), min_size=1, max_size=12),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    radices=radix_lists,
    layout=st.sampled_from(["byte_grouped", "mixed_radix"]),
    lengths=st.lists(st.one_of(st.just(0), st.integers(0, 5), st.integers(20, 120)), min_size=1, max_size=7),
    weighted=st.booleans(),
    mean=st.booleans(),
    rank1=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_pooled_paths_match_reference(radices, layout, lengths, weighted, mean, rank1, seed) -> None:
    import math

    if layout == "mixed_radix" and math.prod(radices) > 2**63:
        layout = "byte_grouped"
    try:
        codec = SIDCodec(tuple(radices), layout)
    except ValueError:  # too many byte groups
        codec = SIDCodec(tuple(radices), "mixed_radix")
    D = 8
    tables = random_tables(radices, D, rank1, seed)
    n = sum(lengths)
    codes = random_codes(radices, n, seed + 1)
    sids = codec.pack(codes)
    offsets = offsets_of(lengths)
    weights = torch.rand(n, generator=torch.Generator().manual_seed(seed)) if weighted else None
    bag = SIDEmbeddingBag(tables, codec, pooling="mean" if mean else "sum")
    ref = bag.pool(sids, offsets, weights, compute="reference")
    # the reference itself, against a Python loop over bags
    dec = tables.decode(codes).double()
    for b, (s, e) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist())):
        w = weights[s:e].double().unsqueeze(1) if weighted else torch.ones(e - s, 1, dtype=torch.float64)
        exp = (dec[s:e] * w).sum(0)
        if mean and e > s:
            exp = exp / (e - s)
        torch.testing.assert_close(ref[b], exp.float(), atol=1e-4, rtol=1e-5)
    for path in POOLED_PATHS:
        if not supported(path, codec, tables):
            continue
        out = bag.pool(sids, offsets, weights, compute=path)
        assert out.shape == (len(lengths), D)
        assert_close_scaled(out, ref, max(lengths) * len(radices))


@settings(max_examples=20, deadline=None)
@given(radices=radix_lists, n=st.integers(0, 50), seed=st.integers(0, 1000))
def test_unpooled_paths_match_decode(radices, n, seed) -> None:
    try:
        codec = SIDCodec.byte_grouped(radices)
    except ValueError:
        codec = SIDCodec.mixed_radix(radices)
    tables = random_tables(radices, 8, False, seed)
    codes = random_codes(radices, n, seed)
    sids = codec.pack(codes)
    emb = SIDEmbedding(tables, codec)
    ref = tables.decode(codes)
    torch.testing.assert_close(emb.embed(sids, "reference"), ref, atol=1e-5, rtol=1e-5)
    for path in UNPOOLED_PATHS:
        if supported(path, codec, tables):
            assert_close_scaled(emb.embed(sids, path), ref, len(radices))


def test_kernel_long_bags_and_threads() -> None:
    """Long bags (histogram branch) and multi-threaded split equal the reference."""
    if not cpu_kernel.kernels_available():
        pytest.skip(f"kernel {cpu_kernel.kernel_status()}")
    radices = [3] * 40
    codec = SIDCodec.byte_grouped(radices)
    tables = random_tables(radices, 16, True, 0)
    lengths = [5000, 0, 3, 20000, 1]
    codes = random_codes(radices, sum(lengths), 1)
    sids = codec.pack(codes)
    offsets = offsets_of(lengths)
    w = torch.rand(sum(lengths))
    bag = SIDEmbeddingBag(tables, codec)
    for weights in (None, w):
        ref = bag.pool(sids, offsets, weights, compute="reference")
        out = bag.pool(sids, offsets, weights, compute="kernel")
        assert_close_scaled(out, ref, 20000 * 40)


def test_side_equals_quantizer_decode(tiny_content: torch.Tensor, tiny_dpca: "DPCA", tiny_rq: "RQKMeans") -> None:
    """SIDE of a one-event bag is the quantizer's decode of that SID (DPCA ternary and RQ)."""
    from torchrec_side.quantizers import DPCA

    n = tiny_content.shape[0]
    for q in (tiny_dpca, tiny_rq):
        codes = q.encode(tiny_content)
        expected = q.decode(codes)
        for codec in (SIDCodec.byte_grouped(q.radices), SIDCodec.mixed_radix(q.radices)):
            sids = codec.pack(codes)
            side = SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(
                name="t", feature_names=["f"], codec=codec)], sid_tables={"t": q})
            kjt = KeyedJaggedTensor.from_lengths_sync(keys=["f"], values=sids, lengths=torch.ones(n, dtype=torch.long))
            torch.testing.assert_close(side(kjt)["f"], expected, atol=1e-5, rtol=1e-5)
            sec = SIDEmbeddingCollection([SIDEmbeddingConfig(name="t", feature_names=["f"], codec=codec)],
                                         sid_tables={"t": q})
            torch.testing.assert_close(sec(kjt)["f"].values(), expected, atol=1e-5, rtol=1e-5)
        if isinstance(q, DPCA):
            t = SIDTables.from_quantizer(q)
            assert t.factors is not None and t.scalar_factors() is not None


def test_quantizer_artifact_roundtrip(tmp_path: Path, tiny_content: torch.Tensor, tiny_dpca: "DPCA") -> None:
    tiny_dpca.save(tmp_path / "q.safetensors")
    t = SIDTables.load(tmp_path / "q.safetensors")
    codes = tiny_dpca.encode(tiny_content)
    torch.testing.assert_close(t.decode(codes), tiny_dpca.decode(codes))


def test_collection_keys_shapes_and_state_dict() -> None:
    codec = SIDCodec.byte_grouped([3] * 10)
    codec2 = SIDCodec.byte_grouped([256, 256])
    t1 = random_tables([3] * 10, 8, True, 0)
    t2 = random_tables([256, 256], 8, False, 1)
    side = SIDEmbeddingBagCollection([
        SIDEmbeddingBagConfig(name="a", feature_names=["f1", "f2"], codec=codec),
        SIDEmbeddingBagConfig(name="b", feature_names=["f3"], codec=codec2, pooling="mean", projection_dim=4),
    ], sid_tables={"a": t1, "b": t2})
    assert [n for n, _ in side.named_parameters()] == ["tables.b.projection.weight"]
    assert set(side.state_dict()) == {"tables.a.offset", "tables.a.level_tables", "tables.b.offset",
                                      "tables.b.level_tables", "tables.b.projection.weight"}
    kjt1 = sid_kjt(codec, {"f1": [2, 0, 3], "f2": [1, 1, 0]})
    kjt2 = sid_kjt(codec2, {"f3": [4, 0, 1]}, seed=3)
    kjt = KeyedJaggedTensor.concat([kjt1, kjt2])
    out = side(kjt)
    assert isinstance(out, KeyedTensor)
    assert out.keys() == ["f1", "f2", "f3"] and out.length_per_key() == [8, 8, 4]
    assert out.values().shape == (3, 20)
    assert [c.embedding_dim for c in side.embedding_bag_configs()] == [8, 4]
    # extra keys are ignored, key order of the input does not matter
    kjt_perm = KeyedJaggedTensor.concat([kjt2, kjt1])
    torch.testing.assert_close(side(kjt_perm).values(), out.values())
    # state dict round trip into a module built from other tables rebuilds the derived tables
    other = SIDEmbeddingBagCollection([
        SIDEmbeddingBagConfig(name="a", feature_names=["f1", "f2"], codec=codec),
        SIDEmbeddingBagConfig(name="b", feature_names=["f3"], codec=codec2, pooling="mean", projection_dim=4),
    ], sid_tables={"a": random_tables([3] * 10, 8, False, 7), "b": random_tables([256, 256], 8, False, 8)})
    other.load_state_dict(side.state_dict())
    torch.testing.assert_close(other(kjt).values(), out.values())
    assert other.tables["a"].scalar_values is not None  # rank-1 levels re-detected after load


def test_weighted_collection_and_unpooled() -> None:
    codec = SIDCodec.byte_grouped([4, 4, 4])
    t = random_tables([4, 4, 4], 6, False, 0)
    kjt = sid_kjt(codec, {"h": [3, 0, 2]}, weights=True)
    side = SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=codec)],
                                     is_weighted=True, sid_tables={"t": t})
    bag = side.tables["t"]
    ref = bag.pool(kjt.values(), kjt.offsets(), kjt.weights(), compute="reference")
    torch.testing.assert_close(side(kjt)["h"], ref, atol=1e-5, rtol=1e-5)
    unweighted = SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=codec)],
                                           sid_tables={"t": t})
    torch.testing.assert_close(unweighted(kjt)["h"], bag.pool(kjt.values(), kjt.offsets(), None, compute="reference"),
                               atol=1e-5, rtol=1e-5)
    sec = SIDEmbeddingCollection([SIDEmbeddingConfig(name="t", feature_names=["h"], codec=codec)], sid_tables={"t": t})
    jt = sec(kjt)["h"]
    assert isinstance(jt, JaggedTensor)
    assert jt.lengths().tolist() == [3, 0, 2] and jt.values().shape == (5, 6)
    codes = codec.unpack(kjt.values())
    torch.testing.assert_close(jt.values(), t.decode(codes), atol=1e-5, rtol=1e-5)


def test_auto_compute_resolution(monkeypatch) -> None:
    cpu = torch.device("cpu")
    cuda = torch.device("cuda")
    assert Fs.resolve_compute("auto", cpu, False, True) == "per_level"
    assert Fs.resolve_compute("auto", cuda, True, True) == "grouped_bag"
    expected = "kernel" if cpu_kernel.kernels_available() else "grouped_bag"
    assert Fs.resolve_compute("auto", cpu, True, True) == expected
    with pytest.raises(ValueError, match="byte-addressable"):
        Fs.resolve_compute("grouped_bag", cpu, False, True)
    with pytest.raises(ValueError, match="rank-1"):
        Fs.resolve_compute("scalar", cpu, True, False)
    with pytest.raises(ValueError, match="unknown"):
        Fs.resolve_compute("fast", cpu, True, True)
    assert Fs.resolve_compute("kernel", cuda, True, True) == "kernel"  # the dispatcher picks the device
    # without the compiled kernel, auto falls back to the pure-torch path
    monkeypatch.setattr(cpu_kernel, "kernels_available", lambda: False)
    assert Fs.resolve_compute("auto", cpu, True, True) == "grouped_bag"


def test_fx_traceable() -> None:
    from torchrec.fx import symbolic_trace

    codec = SIDCodec.byte_grouped([3] * 10)
    side = SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=codec)],
                                     sid_tables={"t": random_tables([3] * 10, 4, True, 0)})
    kjt = sid_kjt(codec, {"h": [3, 0, 2]})
    gm = symbolic_trace(side)
    torch.testing.assert_close(gm(kjt).values(), side(kjt).values())
