"""Traditional SID modules: token ids per scheme, the owned EBC lookup, the sparse-ID helper."""

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
