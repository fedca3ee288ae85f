"""DIN over per-event traditional SIDs (prefix-ngram token sums) and the last-K-events cap:
the builder path against a plain per-event reference, the cap against pre-cut histories, and DMP on
2 ranks against an unsharded model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor

from torchrec_side.models import DINRanker, HistoryFeatureConfig, ModelConfig, build_ranker
from torchrec_side.models.din import last_events
from torchrec_side.models.history import HistoryContext, make_history_feature

sys.path.insert(0, str(Path(__file__).parent))

U, I, D = 7, 40, 8


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 7), min_size=1, max_size=6), k=st.integers(1, 8), seed=st.integers(0, 99))
def test_last_events_keeps_each_bags_tail(lengths: List[int], k: int, seed: int) -> None:
    values = torch.randn(sum(lengths), 3, generator=torch.Generator().manual_seed(seed))
    got = last_events(JaggedTensor(values=values, lengths=torch.tensor(lengths)), k)
    rows, start = [], 0
    for n in lengths:
        rows.extend(range(start + max(0, n - k), start + n))
        start += n
    assert got.lengths().tolist() == [min(n, k) for n in lengths]
    torch.testing.assert_close(got.values(), values[rows])
    assert got.offsets().tolist()[1:] == torch.cumsum(torch.tensor([min(n, k) for n in lengths]), 0).tolist()


@pytest.fixture(scope="module")
def pn_source(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """An RQ-KMeans 4 x 4 x 4 quantizer fitted on random item vectors and its SID table."""
    from torchrec_side.quantizers import RQKMeans, RQKMeansConfig
    from torchrec_side.tokenizer import SIDTable, write_sid_table
    from torchrec_side.tokenizer.artifact import make_codec

    tmp = tmp_path_factory.mktemp("din_pn")
    x = torch.randn(I, 6, generator=torch.Generator().manual_seed(0))
    q = RQKMeans(RQKMeansConfig(radices=[4, 4, 4], seed=0)).fit(x)
    codes = q.encode(x)
    codec = make_codec(list(q.radices), "mixed_radix")
    write_sid_table(tmp / "rq.parquet", SIDTable(item_ids=torch.arange(I), sids=codec.pack(codes), codes=codes, codec=codec))
    q.save(tmp / "rq.safetensors")
    return {"quantizer": str(tmp / "rq.safetensors"), "sid_table": str(tmp / "rq.parquet")}


def _pn_batch(feature: Any, hist: List[List[int]], seed: int = 0) -> KeyedJaggedTensor:
    """user_id, item_id, the history's token keys and the target's token keys, as the loader
    builds them (tokens looked up in the feature's item table)."""
    g = torch.Generator().manual_seed(seed)
    b = len(hist)
    table = feature.item_table()  # [I, T] token ids per item
    user = torch.randint(0, U, (b,), generator=g)
    target = torch.randint(0, I, (b,), generator=g)
    hist_items = torch.tensor([i for h in hist for i in h], dtype=torch.long)
    keys, values, lengths = ["user_id", "item_id"], [user, target], [torch.ones(b, dtype=torch.long)] * 2
    hist_len = torch.tensor([len(h) for h in hist])
    cfg = feature.token_config()
    for t, k in enumerate(cfg.token_feature_names(feature.name)):
        keys.append(k), values.append(table[hist_items, t]), lengths.append(hist_len)
    for t, k in enumerate(cfg.token_feature_names(feature.target_name)):
        keys.append(k), values.append(table[target, t]), lengths.append(torch.ones(b, dtype=torch.long))
    return KeyedJaggedTensor.from_lengths_sync(keys=keys, values=torch.cat(values), lengths=torch.cat(lengths))


def _pn_ranker(pn_source: Dict[str, str], max_events: int = 0) -> Any:
    cfg_h = HistoryFeatureConfig(kind="prefix_ngram", column="hist_pn", options={**pn_source, "max_rows": 20, "target": True})
    feat = make_history_feature(cfg_h, HistoryContext(U, I, D, "din"))
    keys = {feat.name: feat.token_config().token_feature_names(feat.name)}
    cfg = ModelConfig(arch="din", embedding_dim=D, dense_arch_layer_sizes=[16], history=[cfg_h], max_events=max_events)
    return feat, build_ranker(cfg, U, I, [feat], keys)


def test_din_over_per_event_prefix_ngram_matches_a_plain_reference(pn_source: Dict[str, str]) -> None:
    torch.manual_seed(0)
    feat, ranker = _pn_ranker(pn_source)
    assert isinstance(ranker, DINRanker)
    assert ranker.sequence_features == ["hist_pn"] and ranker.target_features == ["hist_pn_target"]
    hist = [[3, 5, 7], [], [1], [9, 9, 2, 30, 11]]
    kjt = _pn_batch(feat, hist)
    dense = torch.randn(len(hist), 2)
    seen: List[Any] = []
    h = ranker.attention["hist_pn"].register_forward_hook(lambda m, a, o: seen.append((a, o)))
    logits = ranker(dense, kjt)
    h.remove()
    assert logits.shape == (4,)
    # plain reference: each event = sum over prefix lengths of the item's token rows
    ec = ranker.sequences["hist_pn"].ec
    table = feat.item_table()
    tables = feat.token_config().table_names()

    def event(item: int) -> torch.Tensor:
        return sum(ec.embeddings[n].weight[table[item, t]] for t, n in enumerate(tables))

    (events, query, _), out = seen[0]
    ref_events = torch.stack([event(i) for hh in hist for i in hh])
    torch.testing.assert_close(events.values(), ref_events)
    assert events.lengths().tolist() == [len(hh) for hh in hist]
    target = kjt["item_id"].values()
    ids = ranker.ids.embedding_bags["t_item_id"].weight
    ref_query = torch.stack([ids[int(t)] + event(int(t)) for t in target])
    torch.testing.assert_close(query, ref_query)
    logits.sum().backward()
    assert all(ec.embeddings[n].weight.grad is not None for n in tables)


@pytest.mark.parametrize("max_len", [None, 10])
def test_max_events_attends_over_the_last_k_events(pn_source: Dict[str, str], max_len: Any) -> None:
    torch.manual_seed(0)
    feat, capped = _pn_ranker(pn_source, max_events=2)
    _, full = _pn_ranker(pn_source)
    full.load_state_dict(capped.state_dict())
    capped.max_len = full.max_len = max_len
    hist = [[3, 5, 7], [], [1], [9, 9, 2, 30, 11]]
    dense = torch.randn(len(hist), 2)
    got = capped(dense, _pn_batch(feat, hist))
    precut = full(dense, _pn_batch(feat, [hh[-2:] for hh in hist]))
    torch.testing.assert_close(got, precut)
    assert not torch.allclose(got, full(dense, _pn_batch(feat, hist)))  # the cap changes what is read


def test_max_events_config_checks() -> None:
    assert ModelConfig(arch="din", dense_arch_layer_sizes=[16], max_events=50).max_events == 50
    with pytest.raises(ValueError, match="max_events caps the attention of arch din"):
        ModelConfig(arch="dlrm", max_events=50)
    with pytest.raises(ValueError, match="max_events must be >= 0"):
        ModelConfig(arch="din", dense_arch_layer_sizes=[16], max_events=-1)


def test_din_sequence_sharded_matches_unsharded() -> None:
    """DMP shards the owned EC of the per-event traditional SIDs (and the sparse-ID EC) like any
    table; forward and one SGD step match the unsharded ranker on 2 ranks."""
    import din_sequence_worker
    from factories import spawn_ranks

    spawn_ranks(din_sequence_worker.worker, din_sequence_worker.WORLD, ["table_wise", "row_wise"])
