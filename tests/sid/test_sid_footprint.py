"""Tests for torchrec_side.sid.footprint."""

from __future__ import annotations

import pytest
import torch

from torchrec_side.sid import (
    Footprint,
    SIDCodec,
    SIDValueError,
    footprint_table,
    raw_embedding_bytes_per_event,
    side_bytes_per_event,
    sparse_id_bytes_per_event,
    token_bytes_per_event,
    tokens_per_event,
)


def test_single_values() -> None:
    assert side_bytes_per_event() == 8
    assert side_bytes_per_event(SIDCodec.byte_grouped([3] * 40)) == 8
    assert sparse_id_bytes_per_event() == 8
    assert token_bytes_per_event("prefix_ngram", 3) == 24
    assert token_bytes_per_event("prefix_ngram", 40) == 320
    assert tokens_per_event("unigram", 4) == 4
    assert tokens_per_event("bigram", 4) == 3
    assert tokens_per_event("bigram", 1) == 1
    assert tokens_per_event("full_hash", 40) == 1
    assert raw_embedding_bytes_per_event(384) == 768
    assert raw_embedding_bytes_per_event(64, torch.float32) == 256


def test_errors() -> None:
    with pytest.raises(SIDValueError, match="unknown traditional SID method"):
        tokens_per_event("trigram", 3)
    with pytest.raises(SIDValueError, match="num_levels"):
        tokens_per_event("unigram", 0)
    with pytest.raises(SIDValueError, match="dim"):
        raw_embedding_bytes_per_event(0)


def test_table_and_design_ratios() -> None:
    rows = footprint_table(SIDCodec.byte_grouped([3] * 40), embedding_dim=384)
    by = {r.method: r for r in rows}
    assert list(by) == [
        "side", "unigram", "bigram", "prefix_ngram", "full_hash", "sparse_id",
        "raw_float16",
    ]
    assert by["side"] == Footprint("side", 8, 1, 8)
    assert by["prefix_ngram"].bytes_per_event == 320
    assert by["raw_float16"] == Footprint("raw_float16", 768, 0)
    # docs/design.md section 8 targets, for the two SIDs of issue 4
    assert by["side"].bytes_per_event * 3 <= by["prefix_ngram"].bytes_per_event
    assert by["side"].bytes_per_event * 96 == by["raw_float16"].bytes_per_event

    rq = {r.method: r for r in footprint_table(SIDCodec.mixed_radix([256] * 3))}
    assert rq["side"].min_bytes_per_event == 3
    assert rq["prefix_ngram"].bytes_per_event == 24 == 3 * rq["side"].bytes_per_event
    assert "raw_float16" not in rq
    assert rq["side"].to_dict() == {
        "method": "side", "bytes_per_event": 8, "ids_per_event": 1,
        "min_bytes_per_event": 3,
    }
