"""Tokenizer artifact: save -> load, corruption detection, atomic saves; SID table and statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import torchrec_side.tokenizer.artifact as artifact_mod
from torchrec_side.io import ArtifactError
from torchrec_side.quantizers import DPCA, Quantizer
from torchrec_side.tokenizer import (
    ItemData,
    Tokenizer,
    TrainResult,
    build_sid_table,
    make_codec,
    make_synthetic_items,
    read_sid_table,
    tokenizer_stats,
    write_sid_table,
)


@pytest.fixture()
def saved(tokenizer: Tokenizer, tmp_path: Path) -> Path:
    return tokenizer.save(tmp_path / "tok")


def test_save_load_identical_codes(tokenizer: Tokenizer, saved: Path, synthetic_items: ItemData) -> None:
    assert sorted(p.name for p in saved.iterdir()) == ["quantizer.safetensors", "tokenizer.json", "weights.safetensors"]
    meta = json.loads((saved / "tokenizer.json").read_text())
    assert meta["format"] == "torchrec_side.tokenizer" and meta["version"] == artifact_mod.FORMAT_VERSION
    loaded = Tokenizer.load(saved)
    fresh = make_synthetic_items(num_items=64, num_clusters=12, seed=11)  # items never seen in training
    for items in (synthetic_items, fresh):
        a, b = tokenizer.tokenize(items), loaded.tokenize(items)
        assert torch.equal(a.codes, b.codes) and torch.equal(a.sids, b.sids)
    assert torch.equal(loaded.codec.unpack(b.sids), b.codes)
    assert loaded.radices == tokenizer.radices and loaded.codec == tokenizer.codec
    off_a, tabs_a = tokenizer.level_tables()
    off_b, tabs_b = loaded.level_tables()
    assert torch.equal(off_a, off_b) and all(torch.equal(x, y) for x, y in zip(tabs_a, tabs_b))


def test_level_tables_and_quantizer_match_model(tokenizer: Tokenizer, saved: Path, synthetic_items: ItemData) -> None:
    codes = tokenizer.encode(synthetic_items)
    z = tokenizer.embed(synthetic_items)
    assert torch.equal(tokenizer.model.bottleneck.encode(z), codes)
    offset, tables = tokenizer.level_tables()
    assert offset.shape == (tokenizer.latent_dim,) and len(tables) == tokenizer.num_levels
    z_hat = offset + sum(t[codes[:, i]] for i, t in enumerate(tables))
    torch.testing.assert_close(tokenizer.decode(codes), z_hat)
    q = Quantizer.load(saved / "quantizer.safetensors")  # a plain DPCA over the latent space
    assert isinstance(q, DPCA) and torch.equal(q.encode(z), codes)
    preds = tokenizer.predict(codes[:5])
    assert preds["multi"].shape == (5, 6) and preds["single"].shape == (5, 5)
    assert tokenizer.reconstruct(codes[:5])["a"].shape == (5, 32)


def test_truncated_file_raises(saved: Path) -> None:
    w = saved / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="truncated"):
        Tokenizer.load(saved)


def test_edited_file_raises(saved: Path) -> None:
    w = saved / "quantizer.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF  # same size, one flipped byte inside the tables
    w.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        Tokenizer.load(saved)


def test_edited_metadata_raises(saved: Path) -> None:
    meta_path = saved / "tokenizer.json"
    meta = json.loads(meta_path.read_text())
    meta["version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="version 99 is not supported"):
        Tokenizer.load(saved)
    meta["version"] = artifact_mod.FORMAT_VERSION
    meta["model_config"]["latent_dim"] = 12
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="do not match"):
        Tokenizer.load(saved)
    meta_path.write_text('{"format": "torchrec_side.tokenizer", "vers')
    with pytest.raises(ArtifactError, match="corrupt JSON"):
        Tokenizer.load(saved)
    meta_path.unlink()
    with pytest.raises(ArtifactError, match="missing tokenizer.json"):
        Tokenizer.load(saved)
    with pytest.raises(ArtifactError, match="not a folder"):
        Tokenizer.load(saved / "nope")


def test_interrupted_save_keeps_previous(tokenizer: Tokenizer, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p.name: p.read_bytes() for p in saved.iterdir()}

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the weights were written, before the quantizer

    monkeypatch.setattr(DPCA, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        tokenizer.save(saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert [p.name for p in saved.parent.iterdir()] == ["tok"]  # no temporary folder left behind
    Tokenizer.load(saved)


def test_sid_table_roundtrip_and_stats(tokenizer: Tokenizer, trained: TrainResult, synthetic_items: ItemData, tmp_path: Path) -> None:
    table = build_sid_table(tokenizer, synthetic_items)
    write_sid_table(tmp_path / "sid.parquet", table)
    back = read_sid_table(tmp_path / "sid.parquet")
    assert torch.equal(back.item_ids, synthetic_items.item_ids) and torch.equal(back.sids, table.sids)
    assert torch.equal(back.codes, table.codes) and back.codec == tokenizer.codec
    ids = synthetic_items.item_ids[[5, 0, 7]]
    assert torch.equal(back.lookup(ids), table.sids[[5, 0, 7]])
    with pytest.raises(KeyError, match="not in the SID table"):
        back.lookup(torch.tensor([10**6]))
    st = tokenizer_stats(tokenizer, synthetic_items, trained.val_index, table)
    assert st["num_items"] == len(synthetic_items) and st["bits_per_item"] == pytest.approx(8 * 1.58496, rel=1e-4)
    assert len(st["codebook"]["utilization"]) == 8 and 0 <= st["codebook"]["collision_rate"] < 1
    held = st["heldout"]
    assert held["num_items"] == trained.val_index.numel()
    assert set(held["recon_cos"]) == {"a", "b", "c"} and all(0.3 < v <= 1 for v in held["recon_cos"].values())
    assert 0.5 < held["targets"]["multi"]["auc_macro"] <= 1 and 0 <= held["targets"]["single"]["accuracy"] <= 1
    json.dumps(st)
    # a capped sample scores the same group: close to the full numbers, codebook numbers unchanged
    cap = tokenizer_stats(tokenizer, synthetic_items, trained.val_index, table, max_group_items=60)
    tr, ctr = st["train"], cap["train"]
    assert ctr["num_scored"] == 60 < ctr["num_items"] == tr["num_items"] == tr["num_scored"]
    assert cap["codebook"] == st["codebook"] and ctr["collision_rate"] == tr["collision_rate"]
    assert all(abs(ctr["recon_cos"][k] - tr["recon_cos"][k]) < 0.1 for k in tr["recon_cos"])


def test_corrupt_sid_table_raises(tmp_path: Path) -> None:
    p = tmp_path / "sid.parquet"
    p.write_bytes(b"PAR1 not really")
    with pytest.raises(ArtifactError, match="unreadable"):
        read_sid_table(p)


def test_codec_choice() -> None:
    assert make_codec([3] * 40).layout == "byte_grouped"
    assert make_codec([256] * 3, "mixed_radix").layout == "mixed_radix"
    assert make_codec([1024, 1024]).layout == "mixed_radix"  # a level wider than a byte


def test_tokenizer_feeds_side_tables(tokenizer: Tokenizer) -> None:
    """The frozen tokenizer exposes what SIDE builds from: level tables, factors, radices."""
    offset, tables = tokenizer.level_tables()
    factors = tokenizer.level_factors()
    assert len(factors) == tokenizer.num_levels
    for (c, v), t in zip(factors, tables):
        torch.testing.assert_close(c @ v.T, t)
    assert tokenizer.quantizer.radices == tokenizer.radices == list(tokenizer.codec.radices)


def test_save_killed_between_renames_is_recovered_by_load(tokenizer: Tokenizer, saved: Path, synthetic_items: ItemData) -> None:
    import subprocess
    import sys

    import torchrec_side.io as io

    codes = tokenizer.encode(synthetic_items)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # what a save SIGKILLed after renaming the old artifact aside, before renaming the new one in, leaves
    backup = saved.parent / f".{saved.name}.{io._HOST}-{dead.pid}.0123456789ab.old"
    killed_tmp = saved.parent / f".{saved.name}.{io._HOST}-{dead.pid}.ba9876543210.tmp"
    saved.rename(backup)
    killed_tmp.mkdir()
    (killed_tmp / "weights.safetensors").write_bytes(b"\0" * 1024)
    loaded = Tokenizer.load(saved)
    assert torch.equal(loaded.encode(synthetic_items), codes)
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_artifact_files_carry_tensor_checksums(saved: Path) -> None:
    from safetensors import safe_open

    from torchrec_side.io import PAYLOAD_SHA256, load_tensors, tensors_sha256

    for name in ("weights.safetensors", "quantizer.safetensors"):
        with safe_open(str(saved / name), framework="pt") as f:
            meta = f.metadata()
        tensors, _ = load_tensors(saved / name)
        assert meta[PAYLOAD_SHA256] == tensors_sha256(tensors)


def test_permuted_sid_table_deals_the_same_sids(tokenizer: Tokenizer, synthetic_items: ItemData) -> None:
    from torchrec_side.tokenizer.sid_table import permuted_sid_table

    table = build_sid_table(tokenizer, synthetic_items)
    a, b = permuted_sid_table(table, 3), permuted_sid_table(table, 3)
    assert torch.equal(a.sids, b.sids) and torch.equal(a.item_ids, table.item_ids)
    assert sorted(a.sids.tolist()) == sorted(table.sids.tolist())
    assert (a.sids != table.sids).float().mean() > 0.5
    for i in range(len(a)):  # every row keeps a consistent (codes, sid) pair
        j = int((table.sids == a.sids[i]).nonzero()[0])
        assert torch.equal(a.codes[i], table.codes[j])
