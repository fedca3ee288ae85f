"""Triton parity checks, run by test_side_ops.py in a subprocess with TRITON_INTERPRET=1 on CPU
(the flag must be set before triton is first imported) or directly on CUDA. Exits 0 when all pass."""

from __future__ import annotations

import sys

import torch

from torchrec_side.modules import SIDEmbedding, SIDEmbeddingBag, SIDTables
from torchrec_side.sid.codec import SIDCodec


def main(device: str) -> None:
    g = torch.Generator().manual_seed(0)
    for radices in ([3] * 40, [5, 7]):
        codec = SIDCodec.byte_grouped(radices)
        D = 12
        tables = SIDTables.from_tensors(torch.randn(D, generator=g), [torch.randn(k, D, generator=g) for k in radices])
        lengths = [0, 1, 7, 65, 0, 600]  # short bags (direct sums) and long ones (histogram)
        n = sum(lengths)
        codes = torch.stack([torch.randint(0, k, (n,), generator=g) for k in radices], 1)
        sids = codec.pack(codes).to(device)
        offsets = torch.tensor([0] + lengths).cumsum(0).to(device)
        for mean in (False, True):
            bag = SIDEmbeddingBag(tables, codec, pooling="mean" if mean else "sum").to(device)
            for weighted in (False, True):
                w = torch.rand(n, generator=g).to(device) if weighted else None
                ref = bag.pool(sids, offsets, w, compute="reference")
                out = bag.pool(sids, offsets, w, compute="triton")
                tol = 1e-5 * float(ref.abs().max() + 1) * max(lengths) ** 0.5 * 4
                torch.testing.assert_close(out, ref, atol=tol, rtol=1e-4)
        # per-event weights get a gradient equal to the reference's
        w = torch.rand(n, generator=g).to(device).requires_grad_(True)
        bag = SIDEmbeddingBag(tables, codec).to(device)
        gout = torch.randn(len(lengths), D, generator=g).to(device)
        (bag.pool(sids, offsets, w, compute="triton") * gout).sum().backward()
        g_tri = w.grad.clone()
        w.grad = None
        (bag.pool(sids, offsets, w, compute="reference") * gout).sum().backward()
        torch.testing.assert_close(g_tri, w.grad, atol=1e-3, rtol=1e-4)
        emb = SIDEmbedding(tables, codec).to(device)
        torch.testing.assert_close(emb.embed(sids, "triton"), emb.embed(sids, "reference"), atol=1e-5, rtol=1e-5)
    print("triton parity ok on", device)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu")
