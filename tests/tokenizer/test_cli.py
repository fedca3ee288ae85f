"""`torchrec-side tokenize` (tokenize_main) on synthetic data: run folder, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from torchrec_side.tokenizer import Tokenizer, make_synthetic_items, read_sid_table, tokenize_main

CONFIG = """
name: smoke
output_dir: {out}
data: {{dataset: synthetic, synthetic_items: 300, synthetic_clusters: 8}}
model:
  latent_dim: 8
  encoder_hidden: [32]
  collections:
    - {{name: a, proj_dim: 16, decoder_hidden: [32]}}
    - {{name: b, proj_dim: 16, normalize: standardize, loss: mse, decoder_hidden: [32]}}
  targets:
    - {{name: multi, kind: multi_label}}
    - {{name: single, kind: single_label}}
  bottleneck: {{kind: dpca, num_levels: 6, codes: 3}}
train: {{epochs: 4, warmup_epochs: 1, batch_size: 64, device: cpu, progress: false}}
"""


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    f = tmp_path / "tok.yaml"
    f.write_text(CONFIG.format(out=tmp_path / "runs"))
    return f


def test_tokenize_writes_run_folder(config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tokenize_main(["--config", str(config_file), "train.seed=3", "name=smoke3"]) == 0
    run = tmp_path / "runs" / "smoke3"
    names = sorted(p.name for p in run.iterdir())
    assert names == ["config.yaml", "sid_table.parquet", "stats.json", "tokenizer", "train_log.jsonl"]
    out = capsys.readouterr().out
    assert "distinct SIDs" in out and "heldout" in out and str(run) in out
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 5 and log[0]["phase"] == "warmup"
    stats = json.loads((run / "stats.json").read_text())
    assert stats["bits_per_item"] == pytest.approx(6 * 1.5849625, rel=1e-6)
    assert set(stats["heldout"]["recon_cos"]) == {"a", "b"} and stats["training"]["epochs_run"] == 4
    tok = Tokenizer.load(run / "tokenizer")
    table = read_sid_table(run / "sid_table.parquet")
    items = make_synthetic_items(num_items=300, num_clusters=8, seed=0)
    assert torch.equal(tok.tokenize(items).sids, table.sids)
    assert table.tokenizer_fingerprint == tok.fingerprint == stats["tokenizer_fingerprint"]
    assert "seed: 3" in (run / "config.yaml").read_text()
    assert tokenize_main(["--config", str(config_file), "train.seed=4", "name=smoke3"]) == 0  # its own folder again


def test_tokenize_never_writes_into_a_folder_it_did_not_create(config_file: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "runs" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    assert tokenize_main(["--config", str(config_file), "name=mine"]) == 2
    assert "holds ['notes.txt']" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]  # no config.yaml or log written


def test_config_errors_exit_2(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tokenize_main(["--config", str(config_file), "train.epoch=3"]) == 2
    assert "did you mean 'train.epochs'" in capsys.readouterr().err
    assert tokenize_main(["--config", str(config_file) + ".missing"]) == 2


def test_print_config(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tokenize_main(["--config", str(config_file), "--print-config", "model.latent_dim=16"]) == 0
    assert "latent_dim: 16" in capsys.readouterr().out


def test_unknown_collection_is_a_clear_error(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tokenize_main(["--config", str(config_file), "model.collections.0.name=zzz"]) == 1
    assert "zzz" in capsys.readouterr().err
