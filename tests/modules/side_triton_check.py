"""Triton parity checks, run by test_side_ops.py in a subprocess with TRITON_INTERPRET=1 on CPU
(the flag must be set before triton is first imported) or directly on CUDA (also by
scripts/gpu_check.sh through test_side_ops.py). Exits 0 when all pass.

On CUDA the kernels are reached the way SIDE reaches them: ``compute="kernel"``, the registered op,
whose CUDA kernel is the Triton one. On CPU the op runs its C++ kernel, so the interpreter check
calls the Triton launchers (:mod:`torchrec_side.modules.ops.triton_ops`) directly.
"""

from __future__ import annotations

import sys

import torch

from torchrec_side.modules import SIDEmbedding, SIDEmbeddingBag, SIDTables
from torchrec_side.modules.ops import library, triton_ops
from torchrec_side.sid.codec import SIDCodec


def main(device: str) -> None:
    dev = torch.device(device)
    if dev.type == "cuda":
        assert library.implementation(dev) == "triton", library.implementation(dev)
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
        bag = SIDEmbeddingBag(tables, codec).to(device)
        grouped, limits = bag.grouped, bag.group_max
        assert grouped is not None and limits is not None

        def pool(w: torch.Tensor | None) -> torch.Tensor:
            if dev.type == "cuda":
                return bag.pool(sids, offsets, w, compute="kernel")
            return triton_ops.pool(sids, offsets, w, grouped, limits, True)

        for weighted in (False, True):
            w = torch.rand(n, generator=g).to(device) if weighted else None
            ref = bag.pool(sids, offsets, w, compute="reference")
            tol = 1e-5 * float(ref.abs().max() + 1) * max(lengths) ** 0.5 * 4
            torch.testing.assert_close(pool(w), ref, atol=tol, rtol=1e-4)
        if dev.type == "cuda":  # opcheck of the CUDA kernels (schema, fake, autograd, AOT dispatch)
            w = torch.rand(n, generator=g).to(device).requires_grad_(True)
            for weights in (None, w):
                torch.library.opcheck(torch.ops.torchrec_side.sid_pool.default, (sids, offsets, weights, grouped, limits, True))
            torch.library.opcheck(torch.ops.torchrec_side.sid_embed.default, (sids, grouped, limits, True))
            # mean pooling through the module
            mbag = SIDEmbeddingBag(tables, codec, pooling="mean").to(device)
            torch.testing.assert_close(mbag.pool(sids, offsets, None, compute="kernel"),
                                       mbag.pool(sids, offsets, None, compute="reference"), atol=1e-4, rtol=1e-4)
            # per-event weights get a gradient equal to the reference's
            w = torch.rand(n, generator=g).to(device).requires_grad_(True)
            gout = torch.randn(len(lengths), D, generator=g).to(device)
            (bag.pool(sids, offsets, w, compute="kernel") * gout).sum().backward()
            g_tri = w.grad.clone()
            w.grad = None
            (bag.pool(sids, offsets, w, compute="reference") * gout).sum().backward()
            torch.testing.assert_close(g_tri, w.grad, atol=1e-3, rtol=1e-4)
        emb = SIDEmbedding(tables, codec).to(device)
        got = emb.embed(sids, "kernel") if dev.type == "cuda" else triton_ops.embed(sids, grouped, limits, True)
        torch.testing.assert_close(got, emb.embed(sids, "reference"), atol=1e-5, rtol=1e-5)
        if dev.type == "cpu":  # the device-side checks (on CPU tensors the async assert raises at once)
            for bad in ([0, 4, 2, n], [1] + [n] * 6, [0] + [n - 1] * 6):
                try:
                    triton_ops.pool(sids, torch.tensor(bad), None, grouped, limits, True)
                except RuntimeError as e:
                    assert "bad offsets" in str(e), str(e)
                else:
                    raise AssertionError(f"no error for offsets {bad}")
            bad_sids = sids.clone()
            bad_sids[100] |= 0xFF  # byte 0 = 255: above the limit of group 0 for both codecs
            for fn in (lambda: triton_ops.pool(bad_sids, offsets, None, grouped, limits, True),
                       lambda: triton_ops.pool(bad_sids[95:105], torch.tensor([0, 10]), None, grouped, limits, True),
                       lambda: triton_ops.embed(bad_sids, grouped, limits, True)):
                try:
                    fn()
                except RuntimeError as e:
                    assert "invalid SID" in str(e), str(e)
                else:
                    raise AssertionError("no error for an invalid SID")
            triton_ops.pool(bad_sids, offsets, None, grouped, limits, False)  # unchecked: no error
    print("triton parity ok on", device)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu")
