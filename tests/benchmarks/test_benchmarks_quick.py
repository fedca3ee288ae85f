"""No benchmark rots: every ``benchmarks/*.py`` runs with ``--quick --json PATH`` (tiny sizes,
seconds each, the set under 2 minutes on 2 cores) and writes the JSON its readers expect.

Each script is run as a user runs it (a subprocess from the repository root). Every JSON must hold
the machine, non-empty rows of dicts and only finite numbers; the benchmarks this test knows
have their keys and value ranges checked too (a new benchmark is run with the generic checks until
it gets its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from quick_runner import BENCHMARKS, finite_numbers

pytestmark = pytest.mark.slow


def _check_train_throughput(d: Dict[str, Any]) -> None:
    rows = {r["variant"]: r for r in d["rows"]}
    assert set(rows) == {"sparse_id", "side", "prefix_ngram", "raw_content"}
    phases = ["loader", "input_dist", "lookup", "history_pool", "output_dist", "dense_fwd", "emb_bwd",
              "output_dist_bwd", "allreduce", "dense_bwd", "optimizer"]
    for v, r in rows.items():
        assert "error" not in r, (v, r.get("error"))
        assert r["examples_per_s"] > 0 and r["step_ms"] > 0
        assert r["events_per_s"] == pytest.approx(r["examples_per_s"] * d["setup"]["history_events"], rel=1e-6)
        b = r["breakdown_ms"]
        assert all(b[p] >= 0 for p in phases), b
        assert b["step"] == pytest.approx(sum(b[p] for p in phases), rel=0.35)  # medians per phase vs per step
        assert r["history_share"] >= 0 and 0 <= r["history_share_instrumented"] <= 1
        assert b["history_fwd_work"] <= b["history_fwd"] + 1e-6  # its own time <= with the barriers
        assert r["largest_phase"] in phases
    # one sharding type per module: the sparse-ID history table row-wise, the prefix-ngram tables all table-wise
    assert rows["sparse_id"]["tables"]["t_hist_item_id"] == "row_wise"
    assert {k: t for k, t in rows["prefix_ngram"]["tables"].items() if k.startswith("t_hist_pn")} and all(
        t == "table_wise" for k, t in rows["prefix_ngram"]["tables"].items() if k.startswith("t_hist_pn"))
    assert rows["side"]["breakdown_ms"]["history_pool"] > 0 and rows["sparse_id"]["breakdown_ms"]["lookup"] > 0
    s = d["summary"]
    assert s["errors"] == {}
    assert s["side_vs_sparse_id"] == pytest.approx(rows["side"]["examples_per_s"] / rows["sparse_id"]["examples_per_s"])
    assert d["setup"]["quick"] is True and d["setup"]["ranks"] == 2


def _check_quantizers(d: Dict[str, Any]) -> None:
    methods = {r["method"] for r in d["rows"]}
    assert {"rq_kmeans", "dpca_ternary", "dpca_alloc"} <= methods
    for r in d["rows"]:
        assert 0 < r["rel_mse_heldout"] < 2, r
        assert r["encode_items_per_s"] > 0 and r["fit_s"] >= 0
        assert abs(r["bits_used"] - r["bits"]) <= 1.0, r
    assert d["quick"] is True


def _check_store_footprint(d: Dict[str, Any]) -> None:
    rows = {r["variant"]: r for r in d["rows"]}
    assert {"sparse_id", "side", "raw_text_fp16"} <= set(rows)
    assert rows["sparse_id"]["value_bytes"] == 8 and rows["side"]["value_bytes"] == 8
    assert all(rows[v]["value_bytes"] == 24 for v in rows if v.startswith("prefix_rq_"))
    for r in rows.values():
        assert 0 < r["compressed_bytes_per_event"] <= r["raw_bytes_per_event"] * 1.1, r
        assert r["raw_bytes_per_event"] >= r["value_bytes"]
        assert r["materialized_over_log"] > 0
    assert d["loader"] and all(x["examples_per_s"] > 0 for x in d["loader"])


def _check_tokenizer_quality(d: Dict[str, Any]) -> None:
    names = [r["tokenizer"] for r in d["rows"]]
    assert "fused_dpca_40x3" in names and len(names) == len(set(names))
    for r in d["rows"]:
        assert r["bits"] > 0
        assert 0 <= r["genre_auc"] <= 1, r
        for v in r["recon_cos"].values():
            assert -1 <= v <= 1
    assert d["quick"] is True


def _check_serving(d: Dict[str, Any]) -> None:
    assert d["benchmark"] == "serving" and d["quick"] is True
    assert {"platform", "cpu_count", "torch"} <= set(d["machine"]) and len(d["load_average"]["before"]) == 3
    variants = ["side", "sparse_id", "raw_content", "traditional_sid", "side_torch"]
    cells = {(r["variant"], r["events"], r["threads"], r["batch_size"]) for r in d["rows"]}
    assert cells == {(v, e, t, b) for v in variants for e in d["events"] for t in d["thread_counts"]
                     for b in d["batch_sizes"]}
    assert all(r["scorer_requests_per_s"] > 0 and r["end_to_end_requests_per_s"] > 0 for r in d["rows"])
    assert all(r["events_scored"] == r["events"] for r in d["rows"])  # no history cut by the store's cap
    for r in d["rows"]:
        if r["variant"] == "side":
            ref = next(x for x in d["rows"] if x["variant"] == "sparse_id"
                       and (x["events"], x["threads"], x["batch_size"]) == (r["events"], r["threads"], r["batch_size"]))
            assert r["x_sparse_id"] == pytest.approx(r["scorer_requests_per_s"] / ref["scorer_requests_per_s"])
    progs = {p["variant"]: p for p in d["programs"]}
    assert set(progs) == set(variants) and all(p["program_bytes"] > 0 and p["load_s"] > 0 for p in progs.values())
    assert list(progs["side"]["side_compute"].values()) in (["kernel"], ["grouped_bag"])
    assert list(progs["side_torch"]["side_compute"].values()) == ["grouped_bag"]
    assert all(p["max_abs_diff_vs_trainer"] is not None and p["max_abs_diff_vs_trainer"] < 1e-5
               for p in progs.values())
    assert "synthetic" in d["histories"] and {b["variant"] for b in d["breakdown"]} == set(variants)
    assert "met" in d["targets"]


#: Benchmark-specific checks (script stem -> check) and extra arguments for the quick run.
CHECKS: Dict[str, Callable[[Dict[str, Any]], None]] = {
    "train_throughput": _check_train_throughput,
    "quantizers": _check_quantizers,
    "store_footprint": _check_store_footprint,
    "tokenizer_quality": _check_tokenizer_quality,
    "serving": _check_serving,
}


def _extra(script: Path, tmp: Path) -> List[str]:
    if script.stem == "store_footprint":
        return ["--stores", str(tmp / "stores")]  # not the default runs/bench/stores of the checkout
    if script.stem == "serving":
        return ["--out", str(tmp / "serving_runs")]
    return []


def test_every_benchmark_is_collected() -> None:
    names = {p.stem for p in BENCHMARKS}
    assert set(CHECKS) <= names, f"checked benchmarks missing from benchmarks/: {set(CHECKS) - names}"
    assert not any(n.startswith("_") for n in names)


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_quick_writes_its_json(script: Path, tmp_path: Path, quick_run: Any) -> None:
    d = quick_run(script, _extra(script, tmp_path))
    assert isinstance(d.get("machine"), dict) and d["machine"].get("torch"), "no machine description"
    rows = d.get("rows")
    assert isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows), "no result rows"
    assert not finite_numbers(d), f"non-finite numbers at {finite_numbers(d)}"
    for r in rows:
        for k, v in r.items():
            if k.endswith("_per_s") and isinstance(v, (int, float)):
                assert v >= 0, (k, v)
    check = CHECKS.get(script.stem)
    if check is not None:
        check(d)
