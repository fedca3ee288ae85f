"""ResidualBottleneck: init, straight-through gradients, EMA, dead-code restarts, DPCA export."""

from __future__ import annotations

import pytest
import torch

from torchrec_side.quantizers import DPCA, Quantizer
from torchrec_side.tokenizer import BottleneckConfig, ResidualBottleneck


def clustered(n: int = 600, d: int = 6, k: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 3
    return centers[torch.randint(k, (n,), generator=g)] + 0.1 * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("ema", [True, False])
def test_dead_codes_are_restarted(ema: bool) -> None:
    torch.manual_seed(0)
    cfg = BottleneckConfig(kind="rq", radices=[8], restart_every=1, dead_threshold=0.5, usage_decay=0.5, ema=ema)
    bn = ResidualBottleneck(cfg, dim=6)
    z = clustered(400, k=8)
    bn.initialize(z)
    with torch.no_grad():  # park every codeword but one far away: they are never chosen
        bn.codebooks[0].data[1:] = 1e3
        if ema:
            bn.ema_sum_0[1:] = 1e3 * bn.ema_count_0[1:, None]
    bn.train()
    total = sum(bn(z).restarted for _ in range(5))
    assert total >= 7
    assert len(torch.unique(bn.encode(z))) >= 6


@pytest.mark.parametrize("kind, radices, widths", [("dpca", [3] * 6, [1] * 6), ("dpca", [4, 4], [2, 3]), ("rq", [8, 4], [])])
def test_forward_shapes_tables_and_export(kind: str, radices: list, widths: list) -> None:
    torch.manual_seed(0)
    bn = ResidualBottleneck(BottleneckConfig(kind=kind, radices=radices, widths=widths), dim=6)
    z = clustered()
    bn.initialize(z)
    bn.eval()  # no EMA update, so the tables below are the ones that produced z_q
    out = bn(z[:50])
    assert out.z_hat.shape == (50, 6) and out.codes.shape == (50, len(radices)) and out.codes.dtype == torch.long
    offset, tables = bn.level_tables()
    assert offset.shape == (6,) and [tuple(t.shape) for t in tables] == [(k, 6) for k in radices]
    manual = offset + sum(t[out.codes[:, i]] for i, t in enumerate(tables))
    torch.testing.assert_close(out.z_q, manual, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.z_hat, out.z_q, rtol=1e-5, atol=1e-5)  # value of z_q
    q = bn.to_quantizer()
    assert isinstance(q, DPCA) and q.radices == radices
    assert torch.equal(q.encode(z), bn.encode(z))  # exported quantizer gives the same codes
    torch.testing.assert_close(q.decode(out.codes), out.z_q, rtol=1e-5, atol=1e-5)


def test_export_roundtrips_through_quantizer_save(tmp_path) -> None:
    bn = ResidualBottleneck(BottleneckConfig(kind="dpca", num_levels=5, codes=3), dim=6)
    z = clustered()
    bn.initialize(z)
    bn.to_quantizer().save(tmp_path / "q.safetensors")
    q = Quantizer.load(tmp_path / "q.safetensors")
    assert torch.equal(q.encode(z), bn.encode(z))


def test_straight_through_gradient_reaches_input() -> None:
    bn = ResidualBottleneck(BottleneckConfig(kind="dpca", num_levels=4, codes=3, commitment=0.0), dim=6)
    bn.initialize(clustered())
    z = clustered(32, seed=1).requires_grad_(True)
    w = torch.randn(6)
    (bn(z).z_hat @ w).sum().backward()
    # d(z_hat)/dz is the identity under the straight-through estimator.
    torch.testing.assert_close(z.grad, w.expand(32, 6))


def test_commitment_and_codebook_losses() -> None:
    bn = ResidualBottleneck(BottleneckConfig(kind="rq", radices=[4, 4], ema=False), dim=6)
    bn.initialize(clustered())
    z = clustered(40, seed=2).requires_grad_(True)
    out = bn(z)
    torch.testing.assert_close(out.commitment_loss, ((z - out.z_q.detach()) ** 2).mean())
    assert float(out.codebook_loss.detach()) > 0
    out.codebook_loss.backward()
    assert bn.codebooks[0].grad is not None and float(bn.codebooks[0].grad.abs().sum()) > 0


def test_ema_moves_codewords_toward_data() -> None:
    torch.manual_seed(0)
    bn = ResidualBottleneck(BottleneckConfig(kind="rq", radices=[4], ema=True, ema_decay=0.5, restart_dead=False), dim=6)
    z = clustered(400, k=4)
    bn.initialize(z + 5.0)  # deliberately shifted start
    bn.train()
    err0 = float(((bn(z).z_q - z) ** 2).mean())
    for _ in range(30):
        bn(z)
    err1 = float(((bn(z).z_q - z) ** 2).mean())
    assert err1 < 0.25 * err0


def test_uninitialized_bottleneck_raises() -> None:
    bn = ResidualBottleneck(BottleneckConfig(kind="dpca", num_levels=2), dim=4)
    with pytest.raises(RuntimeError, match="not initialized"):
        bn(torch.randn(3, 4))


def test_initialize_with_fewer_points_than_codes() -> None:
    bn = ResidualBottleneck(BottleneckConfig(kind="rq", radices=[16]), dim=4)
    bn.initialize(torch.randn(5, 4))
    assert bn(torch.randn(7, 4)).codes.shape == (7, 1)

