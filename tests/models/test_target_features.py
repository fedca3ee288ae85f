"""Fair feature sets (docs/design.md section 7b): the target item through the history's path,
hashed sparse-ID tables and prefix-ngram row budgets (section 7c), raw content of a simulated world."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.config import ConfigError
from torchrec_side.data.loader import HistoryInput, make_dataloader, TargetInput
from torchrec_side.data.protocol import ExamplesConfig
from torchrec_side.data.store import ExampleStore, prepare_store, StoreError
from torchrec_side.models import (
    build_ranker,
    count_parameters,
    DINRanker,
    DLRMRanker,
    HistoryContext,
    HistoryFeature,
    HistoryFeatureConfig,
    make_history_feature,
    ModelConfig,
)
from torchrec_side.models.history import hash_item_ids, ITEM_HASH_PRIME
from torchrec_side.train.trainer import _feature_keys

D = 8


# --------------------------------------------------------------------------------------------
# fixtures: one tiny simulated world, its store, SID sources fitted on its text view


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    from torchrec_side.data.adsworld import generate_world
    from torchrec_side.data.adsworld_config import load_world_config
    from torchrec_side.quantizers import DPCA, RQKMeans, RQKMeansConfig
    from torchrec_side.tokenizer import SIDTable, write_sid_table
    from torchrec_side.tokenizer.artifact import make_codec

    tmp = tmp_path_factory.mktemp("target_world")
    wdir = tmp / "world"
    generate_world(load_world_config("tiny"), wdir, progress=False)
    store = prepare_store(ExamplesConfig(dataset="adsworld", world_dir=str(wdir), max_history=30,
                                         row_group_size=256), tmp / "examples")
    x = torch.from_numpy(np.load(wdir / "content" / "text.npy")).float()[:, :24]
    sids: Dict[str, Dict[str, str]] = {}
    for name, q, layout in (("dpca", DPCA.ternary(10, seed=0).fit(x), "byte_grouped"),
                            ("rq", RQKMeans(RQKMeansConfig(radices=[8, 8, 8], seed=0)).fit(x), "mixed_radix")):
        codes = q.encode(x)
        codec = make_codec(list(q.radices), layout)
        write_sid_table(tmp / f"{name}.parquet", SIDTable(item_ids=torch.arange(x.shape[0]), sids=codec.pack(codes),
                                                          codes=codes, codec=codec))
        q.save(tmp / f"{name}.safetensors")
        sids[name] = {"quantizer": str(tmp / f"{name}.safetensors"), "sid_table": str(tmp / f"{name}.parquet")}
    return {"dir": wdir, "store": store, "sids": sids, "tmp": tmp}


def _ctx(store: ExampleStore, world_dir: Path, arch: str) -> HistoryContext:
    return HistoryContext(num_users=store.num_users, num_items=store.num_items, embedding_dim=D, arch=arch,
                          max_history=store.max_history, world_dir=str(world_dir))


def _features(world: Dict[str, Any], arch: str, configs: List[HistoryFeatureConfig]) -> Tuple[
        List[HistoryFeature], ExampleStore, List[Any], Dict[str, List[str]]]:
    """Features as the trainer makes them: columns written from item tables, loader inputs resolved."""
    store: ExampleStore = world["store"]
    ctx = _ctx(store, world["dir"], arch)
    feats = [make_history_feature(c, ctx, i) for i, c in enumerate(configs)]
    for f in feats:
        table = f.item_table()
        if table is not None:
            store.add_history_column(f.column, table, overwrite=True)
    store = ExampleStore(store.path)
    inputs, keys = _feature_keys(store, feats)
    return feats, store, inputs, keys


def _batch(store: ExampleStore, inputs: List[Any], b: int = 64) -> Any:
    return next(iter(make_dataloader(store, "train", inputs, batch_size=b, num_workers=0, shuffle=False)))


def _all_kinds(world: Dict[str, Any], n_items: int) -> List[HistoryFeatureConfig]:
    return [
        HistoryFeatureConfig(kind="sparse_id", options={"num_rows": n_items // 10, "target": True,
                                                        "share_with_target": True}),
        HistoryFeatureConfig(kind="side", column="hist_sid", options={**world["sids"]["dpca"], "target": True}),
        HistoryFeatureConfig(kind="prefix_ngram", column="hist_pn",
                             options={**world["sids"]["rq"], "max_rows": 40, "target": True}),
        HistoryFeatureConfig(kind="raw_content", name="raw_text", options={"collection": "text", "target": True}),
    ]


# --------------------------------------------------------------------------------------------
# the store's item tables and the loader's target keys


def test_store_keeps_item_tables_checked_against_the_column(world: Dict[str, Any]) -> None:
    store = ExampleStore(world["store"].path)
    tab = np.random.default_rng(0).integers(0, 1000, (store.num_items, 2)).astype(np.int64)
    store.add_history_column("hist_tabcheck", tab, overwrite=True)
    f = store.item_table_file("hist_tabcheck")
    assert f.is_file() and np.array_equal(np.load(f), tab)
    assert np.array_equal(ExampleStore(store.path).item_values("hist_tabcheck"), tab)
    ident = store.item_values("hist_item_id")
    assert ident.shape == (store.num_items, 1) and np.array_equal(ident[:, 0], np.arange(store.num_items))
    np.save(f, tab + 1)  # a table of another column: refused
    with pytest.raises(StoreError, match="fingerprint"):
        ExampleStore(store.path).item_values("hist_tabcheck")
    f.unlink()  # a store written before item tables were kept: named, and rewritten by add_history_column
    with pytest.raises(StoreError, match="item table of column 'hist_tabcheck' is missing"):
        ExampleStore(store.path).item_values("hist_tabcheck")
    ExampleStore(store.path).add_history_column("hist_tabcheck", tab)
    assert np.array_equal(ExampleStore(store.path).item_values("hist_tabcheck"), tab)


@settings(max_examples=8, deadline=None)
@given(st.sampled_from([7, 64, 500]), st.integers(0, 1000))
def test_target_keys_hold_the_item_table_at_the_target(world: Dict[str, Any], b: int, seed: int) -> None:
    store = ExampleStore(world["store"].path)
    g = np.random.default_rng(seed)
    tab2 = g.integers(0, 10**9, (store.num_items, 2)).astype(np.int64)
    tab1 = g.integers(0, 10**9, (store.num_items, 1)).astype(np.int32)
    store.add_history_column("hist_t2", tab2, overwrite=True)
    store.add_history_column("hist_t1", tab1, overwrite=True)
    store = ExampleStore(store.path)
    inputs = [HistoryInput("hist_item_id"), TargetInput("hist_item_id"), TargetInput("hist_t2"),
              TargetInput("hist_t1", keys=("t1",)), TargetInput("hist_t2", keys=("flat",), flatten=True)]
    ex = store.examples("val")
    r = 0
    for batch in make_dataloader(store, "val", inputs, batch_size=b, num_workers=0, shuffle=False):
        kjt = batch.sparse_features
        assert kjt.keys() == ["user_id", "item_id", "hist_item_id", "hist_item_id_target", "hist_t2_target_0",
                              "hist_t2_target_1", "t1", "flat"]
        d = kjt.to_dict()
        item = d["item_id"].values().numpy()
        n = int(batch.weights.sum())
        assert np.array_equal(item[:n], ex["item_id"][r: r + n])  # the plain reference: the store's rows
        for key in ("hist_item_id_target", "hist_t2_target_0", "hist_t2_target_1", "t1"):
            assert d[key].lengths().tolist() == [1] * b  # one event per example (padding rows too)
        assert np.array_equal(d["hist_item_id_target"].values().numpy(), item)
        assert np.array_equal(d["hist_t2_target_0"].values().numpy(), tab2[item, 0])
        assert np.array_equal(d["hist_t2_target_1"].values().numpy(), tab2[item, 1])
        assert np.array_equal(d["t1"].values().numpy(), tab1[item, 0].astype(np.int64))
        assert d["flat"].lengths().tolist() == [2] * b
        assert np.array_equal(d["flat"].values().numpy(), tab2[item].reshape(-1))
        r += n
    assert r == store.rows("val")


# --------------------------------------------------------------------------------------------
# hashing and table sizes


def _hash_reference(x: int, rows: int) -> int:
    return ((1_103_515_245 * (x % ITEM_HASH_PRIME) + 12_345) % ITEM_HASH_PRIME) % rows


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=50), st.integers(1, 10**6))
def test_hash_item_ids_is_the_documented_hash_in_range(ids: List[int], rows: int) -> None:
    got = hash_item_ids(np.array(ids, dtype=np.int64), rows)
    assert got.dtype == np.int64 and ((got >= 0) & (got < rows)).all()
    assert got.tolist() == [_hash_reference(x, rows) for x in ids]
    assert np.array_equal(hash_item_ids(torch.tensor(ids), rows), got)  # tensors too, same values


def test_hash_item_ids_spreads_a_catalogue_over_its_rows() -> None:
    n, rows = 10**6, 10**5
    h = hash_item_ids(np.arange(n), rows)
    counts = np.bincount(h, minlength=rows)
    assert counts.min() >= 1 and counts.max() <= 30  # every row used; no hot row (mean 10)
    with pytest.raises(ValueError, match="num_rows"):
        hash_item_ids(np.arange(3), 0)
    with pytest.raises(ValueError, match=">= 0"):
        hash_item_ids(np.array([-1]), 5)


def test_sparse_id_hashed_table_and_shared_target_shrink_parameters() -> None:
    ctx = HistoryContext(num_users=50, num_items=10_000, embedding_dim=D, arch="dlrm")
    full = make_history_feature(HistoryFeatureConfig(), ctx)
    hashed = make_history_feature(HistoryFeatureConfig(options={"num_rows": 1000}), ctx)
    assert full.column == "hist_item_id" and full.item_table() is None
    assert hashed.column == "hist_item_id_h1000"
    table = hashed.item_table()
    assert table.shape == (10_000, 1) and np.array_equal(table[:, 0], hash_item_ids(np.arange(10_000), 1000))
    mc = ModelConfig(embedding_dim=D, dense_arch_layer_sizes=[16, D])
    p_full = count_parameters(build_ranker(mc, 50, 10_000, [full], {full.name: ["hist_item_id"]}))
    p_hash = count_parameters(build_ranker(mc, 50, 10_000, [hashed], {hashed.name: ["hist_item_id_h1000"]}))
    assert p_full["tables"]["t_hist_item_id"] == 10_000 * D and p_hash["tables"]["t_hist_item_id"] == 1000 * D
    assert p_full["embedding"] - p_hash["embedding"] == 9000 * D
    assert p_hash["tables"]["t_item_id"] == 10_000 * D  # the target's own id row stays full size
    shared = make_history_feature(HistoryFeatureConfig(options={"num_rows": 1000, "target": True,
                                                                "share_with_target": True}), ctx)
    own = make_history_feature(HistoryFeatureConfig(options={"num_rows": 1000, "target": True}), ctx)
    keys = ["hist_item_id_h1000"]
    assert shared.target_keys(keys) == ["hist_item_id_h1000_target"]
    assert [t.column for t in shared.target_inputs(keys)] == ["hist_item_id_h1000"]
    assert sum(p.numel() for p in shared.pooled(keys, shared.target_keys(keys)).parameters()) == 1000 * D
    assert sum(p.numel() for p in own.pooled(keys, own.target_keys(keys)).parameters()) == 2 * 1000 * D
    assert shared.describe()["learned_params"] == 1000 * D and own.describe()["learned_params"] == 2000 * D
    with pytest.raises(ConfigError, match="share_with_target needs target"):
        make_history_feature(HistoryFeatureConfig(options={"share_with_target": True}), ctx)
    with pytest.raises(ConfigError, match="num_rows must be >= 0"):
        make_history_feature(HistoryFeatureConfig(options={"num_rows": -1}), ctx)
    with pytest.raises(ConfigError, match="column must be 'hist_item_id'"):
        make_history_feature(HistoryFeatureConfig(column="hist_other", options={"num_rows": 10}), ctx)


def test_prefix_ngram_row_budget_at_a_million_items() -> None:
    from torchrec_side.modules import SIDTokenConfig
    from torchrec_side.modules.traditional import sid_tokens
    from torchrec_side.sid import SIDCodec

    n = 10**6
    codes = torch.randint(0, 256, (n, 3), generator=torch.Generator().manual_seed(0))
    cfg = SIDTokenConfig(name="t", feature_names=["h", "h_target"], codec=SIDCodec.mixed_radix([256] * 3),
                         embedding_dim=D, max_rows=65_536)
    assert [s.rows for s in cfg.token_specs()] == [256, 65_536, 65_536]  # p3 (16.7M exact) hashed into the budget
    tok = sid_tokens(codes, cfg)
    assert tok.shape == (3, n)
    for t, spec in enumerate(cfg.token_specs()):
        assert int(tok[t].min()) >= 0 and int(tok[t].max()) < spec.rows
    assert torch.equal(tok[0], codes[:, 0])  # exact prefix: the first digit
    assert cfg.learned_params == (256 + 2 * 65_536) * D
    assert cfg.token_feature_names("h_target") == ["h_target__p1", "h_target__p2", "h_target__p3"]


# --------------------------------------------------------------------------------------------
# models with target features


def _with_history_of_target(kjt: KeyedJaggedTensor, hist: List[str], target: List[str]) -> KeyedJaggedTensor:
    """The KJT whose history keys hold, per example, exactly the target's values (one event)."""
    d = kjt.to_dict()
    keys = list(kjt.keys())
    vals, lens = [], []
    for k in keys:
        src = target[hist.index(k)] if k in hist else k
        vals.append(d[src].values())
        lens.append(d[src].lengths())
    return KeyedJaggedTensor(keys=keys, values=torch.cat(vals), lengths=torch.cat(lens), stride=kjt.stride())


def test_dlrm_with_targets_through_each_kinds_path(world: Dict[str, Any]) -> None:
    torch.manual_seed(0)
    store: ExampleStore = world["store"]
    feats, store, inputs, keys = _features(world, "dlrm", _all_kinds(world, store.num_items))
    batch = _batch(store, inputs)
    kjt = batch.sparse_features
    for f in feats:  # the target's output = the same module's output for a history of just the target
        tk = f.target_keys(keys[f.name])
        assert tk and all(k in kjt.keys() for k in tk)
        m = f.pooled(keys[f.name], tk)
        out = m(kjt).to_dict()
        hist_out = keys[f.name] if f.config.kind != "prefix_ngram" else [f.name]
        tgt_out = tk if f.config.kind != "prefix_ngram" else [f"{f.name}_target"]
        same = m(_with_history_of_target(kjt, keys[f.name], tk)).to_dict()
        for h, t in zip(hist_out, tgt_out):
            assert out[t].shape == (64, D)
            torch.testing.assert_close(out[t], same[h], rtol=1e-5, atol=1e-6)
    cfg = ModelConfig(embedding_dim=D, dense_arch_layer_sizes=[16, D], history=[f.config for f in feats])
    ranker = build_ranker(cfg, store.num_users, store.num_items, feats, keys)
    assert isinstance(ranker, DLRMRanker)
    assert ranker.feature_names == ["user_id", "item_id", "hist_item_id_h200", "hist_item_id_h200_target",
                                    "hist_sid", "hist_sid_target", "hist_pn", "hist_pn_target",
                                    "raw_text", "raw_text_target"]
    logits = ranker(batch.dense_features, kjt)
    assert logits.shape == (64,) and torch.isfinite(logits).all()
    logits.sum().backward()
    params = count_parameters(ranker)
    assert params["tables"]["t_hist_item_id"] == 200 * D  # hashed to N/10, history and target in one table
    assert params["tables"]["t_hist_pn__p3"] == 40 * D  # the prefix-ngram row budget
    assert params["embedding"] == sum(params["tables"].values())


def test_din_query_adds_the_target_content_to_its_id_row(world: Dict[str, Any]) -> None:
    torch.manual_seed(0)
    kinds = _all_kinds(world, world["store"].num_items)
    feats, store, inputs, keys = _features(world, "din", [kinds[0], kinds[1], kinds[3]])
    batch = _batch(store, inputs, b=16)
    cfg = ModelConfig(arch="din", embedding_dim=D, dense_arch_layer_sizes=[16], history=[f.config for f in feats])
    ranker = build_ranker(cfg, store.num_users, store.num_items, feats, keys)
    assert isinstance(ranker, DINRanker)
    assert ranker.sequence_features == ["hist_item_id_h200", "hist_sid", "raw_text"]
    assert ranker.target_features == ["hist_item_id_h200_target", "hist_sid_target", "raw_text_target"]
    kjt = batch.sparse_features
    logits = ranker(batch.dense_features, kjt)
    assert logits.shape == (16,)
    logits.sum().backward()
    # plain reference of one feature's attention: query = id row + the target through the SIDE path
    with torch.no_grad():
        ids = ranker.ids(kjt).to_dict()
        seq = ranker.sequences["hist_sid"](kjt)
        query = ids["item_id"] + seq["hist_sid_target"].values()
        got = ranker.attention["hist_sid"](seq["hist_sid"], query)
        calls: List[torch.Tensor] = []
        h = ranker.attention["hist_sid"].register_forward_hook(lambda m, a, o: calls.append(o))
        ranker(batch.dense_features, kjt)
        h.remove()
        torch.testing.assert_close(calls[0], got)
    with pytest.raises(ValueError, match="target keys"):
        DINRanker(ranker.ids, {"hist_sid": ranker.sequences["hist_sid"]}, 2, [16], [8], [8, 1],
                  targets={"hist_sid": ["nope"]})


def test_raw_content_reads_the_worlds_text_and_image_views(world: Dict[str, Any]) -> None:
    store: ExampleStore = world["store"]
    ctx = _ctx(store, world["dir"], "dlrm")
    for coll, dim in (("text", 384), ("image", 128)):
        f = make_history_feature(HistoryFeatureConfig(kind="raw_content", options={"collection": coll}), ctx)
        want = np.load(world["dir"] / "content" / f"{coll}.npy")
        assert f.vectors().shape == (store.num_items, dim)
        assert np.array_equal(f.vectors().numpy(), want)  # fp16, as stored
        d = f.describe()
        assert d["dim"] == dim and d["model_bytes_per_event"] == 2 * dim and d["learned_params"] == dim * D
        bag = f.pooled(["hist_item_id"])
        kjt = KeyedJaggedTensor.from_lengths_sync(["hist_item_id"], torch.tensor([3, 5, 7]), torch.tensor([2, 1]))
        ref = torch.stack([torch.from_numpy(want[[3, 5]]).float().mean(0), torch.from_numpy(want[[7]]).float()[0]])
        torch.testing.assert_close(bag(kjt)["hist_item_id"], bag.proj(ref))
    no_world = HistoryContext(store.num_users, store.num_items, D, "dlrm")
    f = make_history_feature(HistoryFeatureConfig(kind="raw_content", options={"collection": "image"}), no_world)
    assert f.item_table() is None  # writing store columns needs no vectors
    with pytest.raises(ConfigError, match="not a simulated world"):
        f.pooled(["hist_item_id"])
    with pytest.raises(ConfigError, match="collection must be one of"):
        make_history_feature(HistoryFeatureConfig(kind="raw_content", options={"collection": "video"}), ctx)
    small = HistoryContext(store.num_users, store.num_items + 1, D, "dlrm", world_dir=str(world["dir"]))
    with pytest.raises(ConfigError, match="item vectors, the store has"):
        make_history_feature(HistoryFeatureConfig(kind="raw_content", options={"collection": "text"}), small)


def test_large_raw_tables_are_held_in_float16() -> None:
    from torchrec_side.models.sid_history import RAW_FLOAT32_MAX_FLOATS, RawContentBag

    v = torch.randn(RAW_FLOAT32_MAX_FLOATS // 64 + 1, 64).half()
    bag = RawContentBag(v, ["h", "h_target"], D)
    assert bag.vectors.dtype == torch.float16
    kjt = KeyedJaggedTensor.from_lengths_sync(["h", "h_target"], torch.tensor([1, 2, 3, 9, 4]),
                                              torch.tensor([3, 0, 1, 1]))
    out = bag(kjt).to_dict()
    ref = bag.proj(torch.stack([v[[1, 2, 3]].float().mean(0), torch.zeros(64)]))
    torch.testing.assert_close(out["h"], ref, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(out["h_target"], bag.proj(v[[9, 4]].float()), rtol=2e-3, atol=2e-3)
    assert RawContentBag(v[:10], "h", D).vectors.dtype == torch.float32


@pytest.mark.parametrize("arch", ["dlrm", "din"])
def test_trainer_runs_fair_feature_sets_and_reports_sizes(world: Dict[str, Any], arch: str) -> None:
    from torchrec_side.train.config import load_train_config
    from torchrec_side.train.trainer import run_training
    import yaml

    tmp: Path = world["tmp"] / f"train_{arch}"
    tmp.mkdir()
    n = world["store"].num_items
    history = [
        {"kind": "sparse_id", "options": {"num_rows": n // 10, "target": True, "share_with_target": True}},
        {"kind": "raw_content", "name": "raw_image", "options": {"collection": "image", "target": True}},
        {"kind": "raw_content", "name": "raw_text", "options": {"collection": "text", "target": True}},
        {"kind": "side", "column": "hist_sid", "options": {**world["sids"]["dpca"], "target": True}},
    ]
    cfg = {
        "name": "fair", "output_dir": str(tmp / "runs"), "examples_dir": str(world["store"].path.parent),
        "data": {"dataset": "adsworld", "world_dir": str(world["dir"]), "max_history": 30, "row_group_size": 256},
        "model": {"arch": arch, "embedding_dim": D, "dense_arch_layer_sizes": [16, D], "over_arch_layer_sizes": [16, 1],
                  "history": history},
        "train": {"batch_size": 64, "eval_batch_size": 512, "epochs": 1, "max_steps": 8, "checkpoint_every": 0,
                  "num_workers": 0, "progress": False, "threads": 1},
    }
    (tmp / "job.yaml").write_text(yaml.safe_dump(cfg))
    m = run_training(load_train_config(tmp / "job.yaml"))
    assert m["steps"] == 8
    h = {e["name"]: e for e in m["history"]}
    assert h["hist_item_id"]["column"] == "hist_item_id_h200" and h["hist_item_id"]["table_rows"] == 200
    assert h["hist_item_id"]["target_keys"] == ["hist_item_id_h200_target"]
    assert h["raw_image"]["keys"] == ["raw_image"] and h["raw_image"]["target_keys"] == ["raw_image_target"]
    assert h["raw_image"]["dim"] == 128 and h["raw_text"]["dim"] == 384
    assert h["hist_sid"]["target_keys"] == ["hist_sid_target"]
    assert h["hist_sid"]["footprint"]["value_bytes_per_event"] == 8
    assert h["hist_item_id"]["footprint"]["log_events"] > 0
    lp = m["learned_params"]
    assert lp["tables"] == {"t_user_id": world["store"].num_users * D, "t_item_id": n * D, "t_hist_item_id": 200 * D}
    assert lp["total"] == lp["embedding"] + lp["dense"]
    # the run rebuilds for evaluation (target keys filled by the loader) and exports with them
    from torchrec_side.serving import load_exported
    from torchrec_side.serving.export import export_run
    from torchrec_side.serving.rebuild import load_run

    run_dir = tmp / "runs" / "fair" / "seed0"
    run = load_run(run_dir)
    batch = next(iter(make_dataloader(run.store, "test", run.inputs, batch_size=32, num_workers=0)))
    _, logits = run.model(batch)
    assert logits.shape == (32,) and torch.isfinite(logits).all()
    export_run(run_dir, tmp / "export")
    scored = load_exported(tmp / "export")(batch)
    torch.testing.assert_close(scored, torch.sigmoid(logits), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# id admission of the target-item table


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 19), max_size=80), st.integers(1, 5))
def test_admitted_item_rows_match_a_plain_count(ids: List[int], k: int) -> None:
    from torchrec_side.models.builder import admitted_item_rows

    rows = admitted_item_rows(np.array(ids, dtype=np.int64), 20, k)
    for i in range(20):
        assert rows[i] == (i if ids.count(i) >= k else 20)


def test_admission_rejects_bad_input() -> None:
    from torchrec_side.models.builder import admitted_item_rows

    with pytest.raises(ValueError, match="outside"):
        admitted_item_rows(np.array([0, 20]), 20, 1)
    with pytest.raises(ValueError, match="min_count"):
        admitted_item_rows(np.array([0]), 20, 0)
    with pytest.raises(ValueError, match="item_min_count"):
        ModelConfig(item_min_count=-1)
    with pytest.raises(ValueError, match="needs 'item_id'"):
        ModelConfig(item_min_count=2, id_features=["user_id"])
    with pytest.raises(ValueError, match="item_rows"):
        make_dataloader(_store_stub(), "val", [], batch_size=8, item_rows=np.zeros(3, dtype=np.int64))


def _store_stub() -> Any:
    class _Store:  # only what ExampleDataset reads before the item_rows check
        num_items = 5

    return _Store()


def test_loader_maps_the_item_id_row_and_keeps_target_lookups(world: Dict[str, Any]) -> None:
    from torchrec_side.models.builder import admitted_item_rows

    store = ExampleStore(world["store"].path)
    rows = admitted_item_rows(store.interactions("train")["item_id"], store.num_items, 3)
    assert 0 < int((rows == store.num_items).sum()) < store.num_items  # some rare items, some admitted
    ex = store.examples("test")
    r = 0
    for batch in make_dataloader(store, "test", [TargetInput("hist_item_id")], batch_size=64, num_workers=0,
                                 shuffle=False, item_rows=rows):
        d = batch.sparse_features.to_dict()
        n = int(batch.weights.sum())
        real = ex["item_id"][r: r + n]
        assert np.array_equal(d["item_id"].values().numpy()[:n], rows[real])
        assert np.array_equal(d["hist_item_id_target"].values().numpy()[:n], real)
        r += n
    assert r == store.rows("test")


def test_trainer_with_id_admission_adds_the_shared_row(world: Dict[str, Any]) -> None:
    from torchrec_side.serving.rebuild import load_run, ServingError
    from torchrec_side.train.config import load_train_config
    from torchrec_side.train.trainer import run_training
    import yaml

    tmp: Path = world["tmp"] / "train_admission"
    tmp.mkdir()
    n = world["store"].num_items
    cfg = {
        "name": "admit", "output_dir": str(tmp / "runs"), "examples_dir": str(world["store"].path.parent),
        "data": {"dataset": "adsworld", "world_dir": str(world["dir"]), "max_history": 30, "row_group_size": 256},
        "model": {"arch": "dlrm", "embedding_dim": D, "dense_arch_layer_sizes": [16, D], "over_arch_layer_sizes": [16, 1],
                  "item_min_count": 3},
        "train": {"batch_size": 64, "eval_batch_size": 512, "epochs": 1, "max_steps": 4, "checkpoint_every": 0,
                  "num_workers": 0, "progress": False, "threads": 1},
    }
    (tmp / "job.yaml").write_text(yaml.safe_dump(cfg))
    m = run_training(load_train_config(tmp / "job.yaml"))
    assert m["steps"] == 4 and np.isfinite(m["test"]["ne"])
    assert m["learned_params"]["tables"]["t_item_id"] == (n + 1) * D
    with pytest.raises(ServingError, match="item_min_count"):
        load_run(tmp / "runs" / "admit" / "seed0")


# --------------------------------------------------------------------------------------------
# category ids: the learned category tree every production model carries


def test_category_id_tables_pool_the_worlds_category_tree(world: Dict[str, Any]) -> None:
    import pyarrow.parquet as pq

    torch.manual_seed(0)
    store: ExampleStore = world["store"]
    cfg = HistoryFeatureConfig(kind="category_id", column="hist_category", options={"target": True})
    feats, store, inputs, keys = _features(world, "dlrm", [cfg])
    f = feats[0]
    items = pq.read_table(world["dir"] / "items.parquet").to_pydict()
    want = np.stack([np.asarray(items["category"]), np.asarray(items["subcategory"])], 1).astype(np.int64)
    assert np.array_equal(store.item_values("hist_category"), want)
    batch = _batch(store, inputs)
    kjt = batch.sparse_features
    hist, tgt = keys[f.name], f.target_keys(keys[f.name])
    assert hist == ["hist_category_0", "hist_category_1"] and tgt == ["hist_category_0_target", "hist_category_1_target"]
    d = kjt.to_dict()
    m = f.pooled(hist, tgt)
    out = m(kjt).to_dict()
    cat_w, sub_w = m.embedding_bags["t_hist_category_cat"].weight, m.embedding_bags["t_hist_category_sub"].weight
    for j, (key, table) in enumerate(((hist[0], cat_w), (hist[1], sub_w))):
        jt = d[key]
        rows = torch.split(jt.values(), jt.lengths().tolist())
        ref = torch.stack([table[r].mean(0) if len(r) else torch.zeros(D) for r in rows])  # plain mean pooling
        torch.testing.assert_close(out[key], ref.detach(), rtol=1e-5, atol=1e-6)
    target_items = d["item_id"].values().numpy()
    torch.testing.assert_close(out[tgt[0]], cat_w[torch.from_numpy(want[target_items, 0])].detach())
    model_cfg = ModelConfig(embedding_dim=D, dense_arch_layer_sizes=[16, D], history=[cfg])
    ranker = build_ranker(model_cfg, store.num_users, store.num_items, feats, keys)
    logits = ranker(batch.dense_features, kjt)
    assert logits.shape == (64,) and torch.isfinite(logits).all()
    nc, ns = int(want[:, 0].max()) + 1, int(want[:, 1].max()) + 1
    assert count_parameters(ranker)["tables"]["t_hist_category_sub"] == ns * D
    assert f.describe()["learned_params"] == (nc + ns) * D


def test_category_id_needs_a_world_and_its_own_column(world: Dict[str, Any]) -> None:
    store: ExampleStore = world["store"]
    no_world = HistoryContext(store.num_users, store.num_items, D, "dlrm")
    f = make_history_feature(HistoryFeatureConfig(kind="category_id", column="hist_category"), no_world)
    with pytest.raises(ConfigError, match="no data.world_dir"):
        f.item_table()
    with pytest.raises(ConfigError, match="writes its own column"):
        make_history_feature(HistoryFeatureConfig(kind="category_id"), _ctx(store, world["dir"], "dlrm"))
    wrong = HistoryContext(store.num_users, store.num_items + 3, D, "dlrm", world_dir=str(world["dir"]))
    with pytest.raises(ConfigError, match="lists"):
        make_history_feature(HistoryFeatureConfig(kind="category_id", column="hist_category"), wrong)
