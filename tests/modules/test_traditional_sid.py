"""Traditional SID modules: token ids per scheme, the owned EBC lookup, the per-event (EC) form, the sparse-ID helper."""

from __future__ import annotations

import math
from typing import List

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.modules import (
    SIDTokenConfig,
    SIDTokenMapper,
    TraditionalSIDEmbeddingBagCollection,
    TraditionalSIDEmbeddingCollection,
    sparse_id_embedding_bag_collection,
)
from torchrec_side.modules.traditional import sid_tokens
from torchrec_side.sid.codec import SIDCodec

from factories import random_codes


def brute_tokens(codes: torch.Tensor, radices: List[int], scheme: str, max_rows: int) -> List[List[int]]:
    """Per event, the exact digit tuples of each token (hashing checked separately)."""
    L = len(radices)
    ranges = {"unigram": [(l, l + 1) for l in range(L)], "bigram": [(l, l + 2) for l in range(L - 1)],
              "prefix_ngram": [(0, n) for n in range(1, L + 1)], "full_hash": [(0, L)]}[scheme]
    out = []
    for s, e in ranges:
        col = []
        for row in codes.tolist():
            v, m = 0, 1
            for l in range(s, e):
                v += row[l] * m
                m *= radices[l]
            col.append(v)
        out.append(col)
    return out


@settings(max_examples=25, deadline=None)
@given(radices=st.lists(st.integers(2, 9), min_size=2, max_size=6),
       scheme=st.sampled_from(["unigram", "bigram", "prefix_ngram", "full_hash"]),
       max_rows=st.sampled_from([7, 50, 10**6]), n=st.integers(0, 40), seed=st.integers(0, 99))
def test_tokens_exact_or_hashed_in_range(radices, scheme, max_rows, n, seed) -> None:
    codec = SIDCodec.mixed_radix(radices)
    cfg = SIDTokenConfig(name="t", feature_names=["f"], codec=codec, embedding_dim=4, scheme=scheme, max_rows=max_rows)
    codes = random_codes(radices, n, seed)
    toks = sid_tokens(codes, cfg)
    exact = brute_tokens(codes, radices, scheme, max_rows)
    specs = cfg.token_specs()
    assert toks.shape == (len(specs), n)
    for t, spec in enumerate(specs):
        assert spec.rows == min(max_rows, math.prod(radices[spec.levels[0]:spec.levels[1]]))
        assert bool(((toks[t] >= 0) & (toks[t] < spec.rows)).all())
        if not spec.hashed:
            assert toks[t].tolist() == exact[t]
        else:  # a deterministic function of the exact token
            ex = torch.tensor(exact[t], dtype=torch.long)
            for v in ex.unique().tolist():
                assert toks[t][ex == v].unique().numel() == 1


def test_long_prefix_hash_spreads() -> None:
    """Prefixes beyond 2^62 (40 ternary digits) still hash to well-spread ids."""
    codec = SIDCodec.byte_grouped([3] * 40)
    cfg = SIDTokenConfig(name="t", feature_names=["f"], codec=codec, embedding_dim=4, max_rows=1000)
    codes = torch.randint(0, 3, (5000, 40), generator=torch.Generator().manual_seed(0))
    toks = sid_tokens(codes, cfg)
    assert toks.shape == (40, 5000)
    assert toks[-1].unique().numel() > 900  # 5000 distinct SIDs into 1000 rows
    assert [s.suffix for s in cfg.token_specs()][:3] == ["p1", "p2", "p3"]
    assert cfg.bytes_per_event == 320


def test_mapper_and_module_match_manual_lookup() -> None:
    radices = [4, 4, 4]
    codec = SIDCodec.byte_grouped(radices)
    cfg = SIDTokenConfig(name="hist", feature_names=["a", "b"], codec=codec, embedding_dim=6, max_rows=20)
    lengths = torch.tensor([2, 0, 3, 1, 1, 0])  # a: 3 users, b: 3 users
    codes = torch.randint(0, 4, (int(lengths.sum()), 3), generator=torch.Generator().manual_seed(1))
    w = torch.rand(codes.shape[0])
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=["a", "b"], values=codec.pack(codes), lengths=lengths, weights=w)
    mapper = SIDTokenMapper([cfg])
    tok = mapper(kjt)
    assert tok.keys() == ["a__p1", "b__p1", "a__p2", "b__p2", "a__p3", "b__p3"] == mapper.output_keys()
    assert tok.lengths().tolist() == [2, 0, 3, 1, 1, 0] * 3
    assert tok.weights().shape == tok.values().shape

    for weighted in (False, True):
        trad = TraditionalSIDEmbeddingBagCollection([cfg], is_weighted=weighted)
        assert isinstance(trad.ebc, EmbeddingBagCollection)
        assert [c.num_embeddings for c in trad.ebc.embedding_bag_configs()] == [4, 16, 20]
        out = trad(kjt)
        assert out.keys() == ["a", "b"] and out.values().shape == (3, 12)
        # manual: sum over tables of the pooled rows of each token
        fd = tok.to_dict()
        for f in ["a", "b"]:
            exp = torch.zeros(3, 6)
            for t, table in enumerate(cfg.table_names()):
                jt = fd[f"{f}__{cfg.token_specs()[t].suffix}"]
                W = trad.ebc.embedding_bags[table].weight
                for b in range(3):
                    s, e = int(jt.offsets()[b]), int(jt.offsets()[b + 1])
                    ww = jt.weights()[s:e].unsqueeze(1) if weighted else 1.0
                    exp[b] += (W[jt.values()[s:e]] * ww).sum(0)
            torch.testing.assert_close(out[f], exp)
        pre = TraditionalSIDEmbeddingBagCollection([cfg], is_weighted=weighted, premapped=True)
        pre.load_state_dict(trad.state_dict())
        torch.testing.assert_close(pre(tok).values(), out.values())
        sep = TraditionalSIDEmbeddingBagCollection([cfg], is_weighted=weighted, combine="none")
        sep.load_state_dict(trad.state_dict())
        assert sep(kjt).keys() == tok.keys()
        assert len(sep.embedding_bag_configs()) == 3 and len(trad.embedding_bag_configs()) == 1
    out.values().sum().backward()
    assert trad.ebc.embedding_bags["hist__p1"].weight.grad is not None


def test_schemes_table_layout() -> None:
    codec = SIDCodec.byte_grouped([256, 256, 256])
    rows = {s: [t.rows for t in SIDTokenConfig(name="t", feature_names=["f"], codec=codec, embedding_dim=4,
                                                scheme=s).token_specs()]
            for s in ["unigram", "bigram", "prefix_ngram", "full_hash"]}
    assert rows == {"unigram": [256] * 3, "bigram": [65536, 65536], "prefix_ngram": [256, 65536, 10**6],
                    "full_hash": [10**6]}
    cfg = SIDTokenConfig(name="t", feature_names=["f"], codec=codec, embedding_dim=4, num_tokens=2)
    assert cfg.table_names() == ["t__p1", "t__p2"] and cfg.bytes_per_event == 16
    with pytest.raises(ValueError, match="scheme"):
        SIDTokenConfig(name="t", feature_names=["f"], codec=codec, embedding_dim=4, scheme="trigram")


def test_sparse_id_helper() -> None:
    ebc = sparse_id_embedding_bag_collection(["item"], num_items=100, embedding_dim=8)
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=["item"], values=torch.tensor([1, 5, 99]), lengths=torch.tensor([2, 1]))
    out = ebc(kjt)
    W = ebc.embedding_bags["item_id"].weight
    torch.testing.assert_close(out["item"], torch.stack([W[1] + W[5], W[99]]))


def _per_event_reference(trad: TraditionalSIDEmbeddingCollection, cfg: SIDTokenConfig, codes: torch.Tensor) -> torch.Tensor:
    """Plain reference: per event, the sum over token tables of the row its token picks ``[N, D]``
    (tokens from the brute-force digit tuples where exact; :func:`sid_tokens` where hashed)."""
    radices = list(cfg.codec.radices)
    exact = brute_tokens(codes, radices, cfg.scheme, cfg.max_rows)
    hashed = sid_tokens(codes, cfg)
    out = torch.zeros(codes.shape[0], cfg.embedding_dim)
    for t, (spec, table) in enumerate(zip(cfg.token_specs(), cfg.table_names())):
        W = trad.ec.embeddings[table].weight
        for e in range(codes.shape[0]):
            out[e] += W[int(hashed[t, e]) if spec.hashed else exact[t][e]]
    return out


@settings(max_examples=20, deadline=None)
@given(radices=st.lists(st.integers(2, 6), min_size=1, max_size=4), max_rows=st.sampled_from([5, 30, 10**6]),
       lengths=st.lists(st.integers(0, 5), min_size=1, max_size=5), seed=st.integers(0, 99))
def test_sequence_module_matches_per_event_token_sum(radices, max_rows, lengths, seed) -> None:
    """TraditionalSIDEmbeddingCollection: one vector per event, the sum of its token rows; the
    target feature (one event per example) through the same tables; premapped and fx-traced alike."""
    from torchrec.fx import symbolic_trace
    from torchrec.modules.embedding_modules import EmbeddingCollection, EmbeddingCollectionInterface

    codec = SIDCodec.mixed_radix(radices)
    cfg = SIDTokenConfig(name="hist", feature_names=["h", "h_target"], codec=codec, embedding_dim=4, max_rows=max_rows)
    b = len(lengths)
    all_lengths = torch.tensor(lengths + [1] * b)
    codes = random_codes(radices, int(all_lengths.sum()), seed)
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=["h", "h_target"], values=codec.pack(codes), lengths=all_lengths)
    torch.manual_seed(seed)
    trad = TraditionalSIDEmbeddingCollection([cfg])
    assert isinstance(trad, EmbeddingCollectionInterface) and isinstance(trad.ec, EmbeddingCollection)
    assert [c.num_embeddings for c in trad.ec.embedding_configs()] == [s.rows for s in cfg.token_specs()]
    out = trad(kjt)
    assert list(out) == ["h", "h_target"]
    n = sum(lengths)
    ref = _per_event_reference(trad, cfg, codes)
    torch.testing.assert_close(out["h"].values(), ref[:n])
    torch.testing.assert_close(out["h_target"].values(), ref[n:])
    assert out["h"].lengths().tolist() == lengths and out["h_target"].lengths().tolist() == [1] * b
    pre = TraditionalSIDEmbeddingCollection([cfg], premapped=True)
    pre.load_state_dict(trad.state_dict())
    tokens = SIDTokenMapper([cfg])(kjt)
    torch.testing.assert_close(pre(tokens)["h"].values(), ref[:n])
    traced = symbolic_trace(trad)
    torch.testing.assert_close(traced(kjt)["h_target"].values(), ref[n:])
    assert pre.output_names(tokens.keys()) == ["h", "h_target"]
    assert pre.output_names(cfg.token_feature_names("h_target")) == ["h_target"]


def test_sequence_module_interface_and_gradients() -> None:
    codec = SIDCodec.byte_grouped([4, 4, 4])
    cfg = SIDTokenConfig(name="hist", feature_names=["a"], codec=codec, embedding_dim=6, max_rows=20)
    trad = TraditionalSIDEmbeddingCollection([cfg])
    assert trad.embedding_dim() == 6 and not trad.need_indices()
    assert trad.embedding_names_by_table() == [["a"]]
    (c,) = trad.embedding_configs()
    assert c.feature_names == ["a"] and c.embedding_dim == 6 and c.num_embeddings == 4 + 16 + 20
    codes = torch.tensor([[0, 1, 2], [3, 3, 3]])
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=["a"], values=codec.pack(codes), lengths=torch.tensor([2]))
    trad(kjt)["a"].values().sum().backward()
    g = trad.ec.embeddings["hist__p1"].weight.grad
    assert g is not None and g[0].abs().sum() > 0 and g[3].abs().sum() > 0 and g[1].abs().sum() == 0
    with pytest.raises(KeyError, match="neither a token key"):
        trad.output_names(["b__p1"])
    other = SIDTokenConfig(name="o", feature_names=["b"], codec=codec, embedding_dim=8)
    with pytest.raises(ValueError, match="one embedding_dim"):
        TraditionalSIDEmbeddingCollection([cfg, other])
