"""CPU / CUDA: device resolution, training on CUDA, loading a CUDA-trained artifact on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchrec_side.tokenizer import ItemData, Tokenizer, train_tokenizer
from torchrec_side.tokenizer.trainer import resolve_device

from .conftest import small_model_config, small_train_config


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_and_cpu_loading(synthetic_items: ItemData, tmp_path: Path) -> None:
    res = train_tokenizer(small_model_config(), small_train_config(device="cuda", epochs=4), synthetic_items)
    tok = Tokenizer(res.model)
    assert tok.device.type == "cuda"
    out = tok.tokenize(synthetic_items)
    assert out.codes.device.type == "cuda" and out.sids.device.type == "cuda"
    tok.save(tmp_path / "tok")
    on_gpu = Tokenizer.load(tmp_path / "tok", device="cuda")
    assert torch.equal(on_gpu.tokenize(synthetic_items).codes, out.codes)
    on_cpu = Tokenizer.load(tmp_path / "tok", device="cpu")
    agree = (on_cpu.encode(synthetic_items) == out.codes.cpu()).all(1).float().mean()
    assert float(agree) > 0.98  # float differences between devices may flip a rare borderline digit
