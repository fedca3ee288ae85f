"""The SIDE collections as TorchRec modules: TorchRec's collection interfaces, metadata-only configs,
construction on the meta device followed by ``load_state_dict``, and variable-batch (VBE) KJTs.

(DMP with a SIDE collection built on the meta device is in test_sid_sharding.py.)
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Dict, List

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollectionInterface, EmbeddingCollectionInterface
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.modules import (
    MultiEmbeddingBagCollection,
    SIDEmbeddingBagCollection,
    SIDEmbeddingBagConfig,
    SIDEmbeddingCollection,
    SIDEmbeddingConfig,
    SIDInputError,
    SIDTables,
    SIDTokenConfig,
    TraditionalSIDEmbeddingBagCollection,
    sparse_id_embedding_bag_collection,
)
from torchrec_side.sid.codec import SIDCodec

from factories import random_codes, random_sids, random_tables

BYTE = SIDCodec.byte_grouped([3] * 10)
MIXED = SIDCodec.mixed_radix([4, 5, 6])


def _bag_side(projection: bool = True) -> SIDEmbeddingBagCollection:
    """Two tables: a byte-grouped rank-1 one (scalar path possible) with a projection, and a
    mixed-radix mean-pooled one (per-level only)."""
    return SIDEmbeddingBagCollection(
        [SIDEmbeddingBagConfig(name="a", feature_names=["f1", "f2"], codec=BYTE, projection_dim=5 if projection else None),
         SIDEmbeddingBagConfig(name="b", feature_names=["f3"], codec=MIXED, pooling="mean")],
        sid_tables={"a": random_tables([3] * 10, 8, rank1=True, seed=1), "b": random_tables([4, 5, 6], 6, seed=2)},
        is_weighted=True)


def _seq_side() -> SIDEmbeddingCollection:
    return SIDEmbeddingCollection(
        [SIDEmbeddingConfig(name="a", feature_names=["f1", "f2"], codec=BYTE, projection_dim=6),
         SIDEmbeddingConfig(name="b", feature_names=["f3"], codec=MIXED)],
        sid_tables={"a": random_tables([3] * 10, 8, rank1=True, seed=1), "b": random_tables([4, 5, 6], 6, seed=2)})


def _mixed_kjt(lengths: Dict[str, List[int]], seed: int = 0) -> KeyedJaggedTensor:
    """A KJT with byte-grouped SIDs for f1, f2 and mixed-radix SIDs for f3 (with weights)."""
    g = torch.Generator().manual_seed(seed)
    values = [random_sids(BYTE, sum(lengths["f1"]), seed), random_sids(BYTE, sum(lengths["f2"]), seed + 1),
              MIXED.pack(random_codes([4, 5, 6], sum(lengths["f3"]), seed + 2))]
    lens = torch.tensor(lengths["f1"] + lengths["f2"] + lengths["f3"])
    v = torch.cat(values)
    return KeyedJaggedTensor(keys=["f1", "f2", "f3"], values=v, lengths=lens,
                             weights=torch.rand(v.numel(), generator=g))


def test_collections_implement_torchrec_interfaces() -> None:
    bag, seq = _bag_side(), _seq_side()
    assert isinstance(bag, EmbeddingBagCollectionInterface) and bag.is_weighted()
    assert [(c.name, c.embedding_dim, c.num_embeddings, c.feature_names) for c in bag.embedding_bag_configs()] == [
        ("a", 5, 30, ["f1", "f2"]), ("b", 6, 15, ["f3"])]
    assert isinstance(seq, EmbeddingCollectionInterface) and not seq.need_indices()
    assert seq.embedding_names_by_table() == [["f1", "f2"], ["f3"]]
    assert seq.embedding_dim() == 6
    assert [c.embedding_dim for c in seq.embedding_configs()] == [6, 6]
    odd = SIDEmbeddingCollection([SIDEmbeddingConfig(name="a", feature_names=["f"], codec=BYTE)],
                                 sid_tables={"a": random_tables([3] * 10, 8, seed=0)})
    assert odd.embedding_dim() == 8
    with pytest.raises(ValueError, match="different output widths"):
        SIDEmbeddingCollection([SIDEmbeddingConfig(name="a", feature_names=["f"], codec=BYTE),
                                SIDEmbeddingConfig(name="b", feature_names=["g"], codec=MIXED)],
                               sid_tables={"a": random_tables([3] * 10, 8, seed=0),
                                           "b": random_tables([4, 5, 6], 6, seed=0)}).embedding_dim()
    trad = TraditionalSIDEmbeddingBagCollection([SIDTokenConfig(name="t", feature_names=["f3"], codec=MIXED,
                                                                embedding_dim=4)])
    multi = MultiEmbeddingBagCollection({"ids": sparse_id_embedding_bag_collection(["item"], 10, 4), "trad": trad})
    assert isinstance(trad, EmbeddingBagCollectionInterface) and not trad.is_weighted()
    assert isinstance(multi, EmbeddingBagCollectionInterface) and not multi.is_weighted()
    assert MultiEmbeddingBagCollection({"side": bag}).is_weighted()


def test_configs_are_metadata_only() -> None:
    bag = _bag_side()
    for cfg in bag.sid_configs() + _seq_side().sid_configs():
        values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        assert set(values) <= {"name", "feature_names", "codec", "dim", "projection_dim", "compute", "pooling"}
        for k, v in values.items():
            assert not isinstance(v, (torch.Tensor, SIDTables, nn.Module)), k
        assert cfg.dim in (8, 6)  # filled in from the tables the collection was given
        assert SIDCodec.from_dict(cfg.codec.to_dict()) == cfg.codec  # the codec is radices + layout
        assert pickle.loads(pickle.dumps(cfg)) == cfg


@pytest.mark.parametrize("assign", [False, True])
@pytest.mark.parametrize("pooled", [True, False])
def test_meta_construction_then_load_state_dict(pooled: bool, assign: bool) -> None:
    """Built on the meta device from the configs alone, then the state dict: the same module (its
    derived fast-path buffers included) and the same outputs as the original."""
    orig: nn.Module = _bag_side() if pooled else _seq_side()
    coll = SIDEmbeddingBagCollection if pooled else SIDEmbeddingCollection
    kw = {"is_weighted": True} if pooled else {}
    meta = coll(tables=orig.sid_configs(), device=torch.device("meta"), **kw)
    assert all(t.is_meta for t in list(meta.buffers()) + list(meta.parameters()))
    assert meta.device.type == "meta"
    if not assign:
        meta = meta.to_empty(device="cpu")
    result = meta.load_state_dict(orig.state_dict(), assign=assign)
    assert not result.missing_keys and not result.unexpected_keys
    got, want = dict(meta.named_buffers()), dict(orig.named_buffers())
    assert set(got) == set(want)  # non-persistent ones too, e.g. tables.a.scalar_values
    assert "tables.a.scalar_values" in got and "tables.a.grouped" in got
    for k in want:
        assert got[k].device.type == "cpu"
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)
    k = _mixed_kjt({"f1": [3, 0, 2], "f2": [1, 4, 0], "f3": [2, 2, 5]})
    if pooled:
        torch.testing.assert_close(meta(k).values(), orig(k).values(), rtol=0, atol=0)
    else:
        out, ref = meta(k), orig(k)
        for f in ("f1", "f2", "f3"):
            torch.testing.assert_close(out[f].values(), ref[f].values(), rtol=0, atol=0)


def test_empty_construction_without_tables_then_load() -> None:
    """``dim`` without tables on CPU: zero tables (a zero output) until a state dict is loaded."""
    orig = _bag_side()
    empty = SIDEmbeddingBagCollection(tables=orig.sid_configs(), is_weighted=True)
    k = _mixed_kjt({"f1": [3, 1], "f2": [2, 2], "f3": [1, 4]}, seed=3)
    assert float(empty.tables["b"](k.values()[-5:], torch.tensor([0, 1, 5])).abs().max()) == 0.0
    empty.load_state_dict(orig.state_dict())
    torch.testing.assert_close(empty(k).values(), orig(k).values(), rtol=0, atol=0)
    # the tables read back from the buffers are the ones given
    for name, t in orig.sid_tables().items():
        torch.testing.assert_close(empty.sid_tables()[name].stacked(True), t.stacked(True))


def _vbe_kjt(batch: Dict[str, List[int]], inverse: torch.Tensor, seed: int) -> KeyedJaggedTensor:
    """A variable-batch KJT over f1, f2, f3 (``batch[f]``: that feature's bag lengths) with
    ``inverse_indices`` ``[3, B]``."""
    k = _mixed_kjt(batch, seed)
    return KeyedJaggedTensor(keys=k.keys(), values=k.values(), lengths=k.lengths(), weights=k.weights(),
                             stride_per_key_per_rank=[[len(batch[f])] for f in ("f1", "f2", "f3")],
                             inverse_indices=(["f1", "f2", "f3"], inverse))


@settings(max_examples=15, deadline=None)
@given(data=st.data(), sizes=st.lists(st.integers(1, 5), min_size=3, max_size=3), global_b=st.integers(1, 7),
       seed=st.integers(0, 100))
def test_vbe_pooled_equals_per_feature_reference(data: st.DataObject, sizes: List[int], global_b: int,
                                                 seed: int) -> None:
    """VBE: feature f has its own batch B_f; row j of the output is bag inverse[f, j] of feature f,
    pooled with the reference path (fx-traced module too)."""
    from torchrec.fx import symbolic_trace

    side = _bag_side()
    batch = {f: data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
             for f, n in zip(("f1", "f2", "f3"), sizes)}
    inverse = torch.stack([torch.tensor(data.draw(st.lists(st.integers(0, n - 1), min_size=global_b,
                                                           max_size=global_b))) for n in sizes])
    k = _vbe_kjt(batch, inverse, seed)
    assert k.variable_stride_per_key()
    out = side(k)
    assert out.values().shape == (global_b, 5 + 5 + 6)
    jt = k.to_dict()
    for i, (f, table) in enumerate((("f1", "a"), ("f2", "a"), ("f3", "b"))):
        bag = side.tables[table]
        ref = bag.pool(jt[f].values(), jt[f].offsets(), jt[f].weights(), compute="reference")
        if bag.projection is not None:
            ref = bag.projection(ref)
        torch.testing.assert_close(out[f], ref[inverse[i]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(symbolic_trace(side)(k).values(), out.values())


def test_vbe_without_inverse_indices_is_refused_and_sequences_keep_their_batches() -> None:
    batch = {"f1": [2, 0], "f2": [1, 1, 3], "f3": [4]}
    k = _vbe_kjt(batch, torch.zeros(3, 2, dtype=torch.long), 0)
    plain = KeyedJaggedTensor(keys=k.keys(), values=k.values(), lengths=k.lengths(), weights=k.weights(),
                              stride_per_key_per_rank=[[2], [3], [1]])
    with pytest.raises(SIDInputError, match="variable batch per feature.*inverse_indices"):
        _bag_side()(plain)
    bad_inverse = KeyedJaggedTensor(keys=k.keys(), values=k.values(), lengths=k.lengths(), weights=k.weights(),
                                    stride_per_key_per_rank=[[2], [3], [1]],
                                    inverse_indices=(["f1", "f2"], torch.zeros(2, 2, dtype=torch.long)))
    with pytest.raises(SIDInputError, match=r"\['f3'\] have no row"):
        _bag_side()(bad_inverse)
    seq = _seq_side()
    out = seq(plain)  # unpooled: each feature keeps its own bags, like TorchRec's EmbeddingCollection
    for f, lens in batch.items():
        assert out[f].lengths().tolist() == lens
        table = "a" if f != "f3" else "b"
        ref = seq.tables[table](plain.to_dict()[f].values())
        torch.testing.assert_close(out[f].values(), ref)
    trad = TraditionalSIDEmbeddingBagCollection([SIDTokenConfig(name="t", feature_names=["f3"], codec=MIXED,
                                                                embedding_dim=4)])
    with pytest.raises(SIDInputError, match="variable-batch"):
        trad(plain)


def test_state_dict_keys_are_unchanged() -> None:
    """Checkpoints and serving artifacts keep loading: the same keys as before the configs changed."""
    assert set(_bag_side().state_dict()) == {"tables.a.offset", "tables.a.level_tables", "tables.a.projection.weight",
                                             "tables.b.offset", "tables.b.level_tables"}
