"""Hypothesis parity of the bottleneck against a plain reference and the exported DPCA."""

from __future__ import annotations

import pytest
import torch

from torchrec_side.tokenizer import BottleneckConfig, ResidualBottleneck


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    kind=st.sampled_from(["dpca", "rq"]),
    levels=st.lists(st.tuples(st.integers(2, 9), st.integers(1, 4)), min_size=1, max_size=6),
    dim=st.integers(4, 8),
    n=st.integers(1, 60),
    center=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_parity_with_reference_decoder_and_exported_quantizer(kind, levels, dim, n, center, seed) -> None:
    """Reference: greedy residual encoding and z_q = offset + sum_l T_l[c_l]; the exported DPCA agrees."""
    radices = [k for k, _ in levels]
    widths = [min(m, dim) for _, m in levels] if kind == "dpca" else []
    bn = ResidualBottleneck(BottleneckConfig(kind=kind, radices=radices, widths=widths, center=center), dim=dim)
    g = torch.Generator().manual_seed(seed)
    bn.initialize(torch.randn(max(radices) * 4, dim, generator=g) * 2, g)
    bn.eval()
    z = torch.randn(n, dim, generator=g) * 2
    out = bn(z)
    offset, tables = bn.level_tables()
    # Plain-python reference of the greedy residual assignment.
    r = z - offset
    for level, (c, v) in enumerate(bn.level_factors()):
        p = r @ v
        d = ((p[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        best = d.min(1).values
        chosen = d.gather(1, out.codes[:, level : level + 1]).squeeze(1)
        torch.testing.assert_close(chosen, best, rtol=1e-4, atol=1e-4)  # the chosen code is a nearest one
        r = r - tables[level][out.codes[:, level]]
    torch.testing.assert_close(out.z_q, z - r, rtol=1e-4, atol=1e-4)
    assert torch.equal(bn.to_quantizer().encode(z), out.codes)
