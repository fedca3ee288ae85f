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
from torchrec_side.models.din import TargetAttention
from torchrec_side.models.history import HistoryContext, make_history_feature

sys.path.insert(0, str(Path(__file__).parent))

U, I, D = 7, 40, 8


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 7), min_size=1, max_size=6), k=st.integers(1, 8),
       max_len=st.sampled_from([None, 3, 9]), hidden=st.sampled_from([[], [6], [6, 4]]), seed=st.integers(0, 99))
def test_attention_over_the_last_k_events_equals_pre_cut_histories(lengths: List[int], k: int, max_len: Any,
                                                                    hidden: List[int], seed: int) -> None:
    """``last=k`` attends over each bag's last k events (also at a fixed padded length, as export
    runs it), and the factored scores equal the MLP on ``[h, t, h*t, h-t]``."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    att = TargetAttention(4, hidden)
    values = torch.randn(sum(lengths), 4, generator=g)
    target = torch.randn(len(lengths), 4, generator=g)
    rows, start = [], 0
    for n in lengths:
        rows.extend(range(start + max(0, n - k), start + n))
        start += n
    cut = JaggedTensor(values=values[rows], lengths=torch.tensor([min(n, k) for n in lengths]))
    got = att(JaggedTensor(values=values, lengths=torch.tensor(lengths)), target, max_len, last=k)
    if max_len is not None and max_len < k:  # the fixed length bounds the window too
        return
    want = []  # plain per-user reference on the pre-cut events
    off = cut.offsets()
    for b in range(len(lengths)):
        h = cut.values()[off[b]: off[b + 1]]
        if h.shape[0] == 0:
            want.append(torch.zeros(4))
            continue
        t = target[b].expand_as(h)
        s = att.score(torch.cat([h, t, h * t, h - t], dim=-1)).squeeze(-1)
        want.append((torch.softmax(s, 0)[:, None] * h).sum(0))
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-5, atol=1e-6)


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

    (events, query, *_), out = seen[0]
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


def test_packaged_sequence_configs_mirror_their_dlrm_configs() -> None:
    """adsworld/seq_*.yaml: DIN over the last K events, every history feature through the target
    path, and otherwise the DLRM config's data, sizes, optimizer and training (one shared store)."""
    import torchrec_side
    from torchrec_side.train.config import load_train_config

    root = Path(torchrec_side.__file__).parent / "configs"

    def resolve_config_path(name: str) -> Path:
        return root / name

    pairs = {"seq_sparse_id": "dlrm_sparse_id", "seq_traditional_sid": "dlrm_traditional_sid",
             "seq_raw_content": "dlrm_raw_content", "seq_side": "dlrm_side"}
    histories = set()
    for seq, dlrm in pairs.items():
        s = load_train_config(resolve_config_path(f"adsworld/{seq}.yaml"))
        d = load_train_config(resolve_config_path(f"adsworld/{dlrm}.yaml"))
        assert s.name == seq and s.model.arch == "din" and s.model.max_events >= 1
        assert s.data == d.data and s.optim == d.optim and s.train == d.train and s.sharding == d.sharding
        for k in ("embedding_dim", "id_features", "dense_arch_layer_sizes", "over_arch_layer_sizes", "item_min_count"):
            assert getattr(s.model, k) == getattr(d.model, k), k
        assert [(h.kind, h.column, h.name) for h in s.model.history] == [(h.kind, h.column, h.name) for h in d.model.history]
        for hs, hd in zip(s.model.history, d.model.history):
            assert hs.options.get("target") is True
            assert {k: v for k, v in hs.options.items() if k != "pooling"} == \
                {k: v for k, v in hd.options.items() if k != "pooling"}
        histories.add(s.data.max_history)
    assert len(histories) == 1
    assert load_train_config(resolve_config_path("adsworld/seq_sparse_id.yaml")).model.history[0].options["share_with_target"]


def test_raw_content_sequence_projects_distinct_items_once_in_training() -> None:
    """Training (each distinct item projected once) and eval (once per event) give the same
    per-event vectors and the same projection gradient."""
    from torchrec_side.models.sid_history import RawContentSequence

    g = torch.Generator().manual_seed(0)
    seq = RawContentSequence(torch.randn(20, 12, generator=g).half(), ["h", "h_target"], D)
    ids = torch.randint(0, 20, (30,), generator=g)  # repeats
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=["h", "h_target"], values=ids, lengths=torch.tensor([9, 0, 18, 1, 1, 1]))
    grads = []
    for train in (True, False):
        seq.train(train)
        seq.proj.weight.grad = None
        out = seq(kjt)
        want = seq.proj(seq.vectors[kjt[next(iter(out))].values()].float())
        torch.testing.assert_close(out["h"].values(), want)
        assert out["h"].lengths().tolist() == [9, 0, 18] and out["h_target"].values().shape == (3, D)
        (out["h"].values() ** 2).sum().backward()
        grads.append(seq.proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
