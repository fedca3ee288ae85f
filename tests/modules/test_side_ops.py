"""SIDE compute paths through the modules: the registered op against the ctypes baseline, weight
autograd on every differentiable path, offsets checks on every path, float64-accurate long bags,
FBGEMM weight types, the forced pure-torch fallback, Triton parity, and the same parity tests on
CUDA where present. The operator library itself (schemas, opcheck, registration) is tested in
test_side_op_library.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.modules import SIDEmbedding, SIDEmbeddingBag, SIDEmbeddingBagCollection, SIDEmbeddingBagConfig, SIDTables
from torchrec_side.modules.ops import Compute, SIDOffsetsError, check_offsets, path_status
from torchrec_side.modules.ops import cpu_kernel, fbgemm_ops, library
from torchrec_side.sid.codec import SIDCodec

from factories import random_sids, random_tables

ROOT = Path(__file__).resolve().parents[2]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# paths whose offsets and SIDs are checked; device-specific ones are skipped where they cannot run
ALL_POOLED = ["reference", "per_level", "scalar", "grouped_bag", "grouped_hist", "kernel", "fbgemm",
              "fbgemm_fp16", "fbgemm_int8", "auto"]


def runnable(path: str, device: str) -> bool:
    if path in ("kernel", "fbgemm", "fbgemm_fp16", "fbgemm_int8"):
        return path_status(path, torch.device(device)).startswith("ok")
    return True


# ----------------------------------------------------------------------------- registered op


# the ``kernel`` fixture (skip without the registered op) is in tests/conftest.py


def _ctypes_kernel():  # type: ignore[no-untyped-def]
    """The old ctypes build of the C++ source (benchmarks/_ctypes_kernel.py), or None."""
    bench = str(ROOT / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    try:
        import _ctypes_kernel  # pyright: ignore[reportMissingImports]
    except ImportError:
        return None
    return _ctypes_kernel


def test_ctypes_baseline_equals_registered_op(kernel: None) -> None:
    """The ctypes build of the same source (the benchmark's baseline) gives the op's result."""
    ck = _ctypes_kernel()
    if ck is None:
        pytest.skip("no benchmarks/_ctypes_kernel.py")
    if not ck.kernels_available():
        pytest.skip(f"ctypes build {ck.kernel_status()}")
    codec = SIDCodec.byte_grouped([3] * 40)
    t = random_tables([3] * 40, 16, rank1=True, seed=0)
    sids = random_sids(codec, 3000, 1)
    offsets = torch.tensor([0, 10, 10, 160, 360, 2000, 3000])  # direct sums and histograms (threshold 192)
    w = torch.rand(3000)
    for weights in (None, w):
        op = torch.ops.torchrec_side.sid_pool(sids, offsets, weights, t.grouped(codec), t.group_max(codec))
        old, bad = ck.pool_grouped(sids, offsets, weights, t.grouped(codec), t.group_max(codec))
        assert bad == -1
        torch.testing.assert_close(op, old, atol=0, rtol=0)


@settings(max_examples=15, deadline=None)
@given(lengths=st.lists(st.integers(0, 300), min_size=1, max_size=6), seed=st.integers(0, 100),
       mean=st.booleans())
def test_kernel_weight_gradient_matches_reference(lengths: List[int], seed: int, mean: bool) -> None:
    """The op's weights get the reference's gradient (the ctypes kernel returned none)."""
    if not cpu_kernel.kernels_available():
        pytest.skip("no kernel")
    codec = SIDCodec.byte_grouped([3] * 15)
    bag = SIDEmbeddingBag(random_tables([3] * 15, 8, rank1=True, seed=seed), codec, pooling="mean" if mean else "sum")
    n = sum(lengths)
    sids = random_sids(codec, n, seed)
    offsets = torch.tensor([0] + lengths).cumsum(0)
    gout = torch.randn(len(lengths), 8, generator=torch.Generator().manual_seed(seed))
    grads = {}
    for path in ("reference", "kernel", "grouped_bag", "per_level"):
        w = torch.rand(n, generator=torch.Generator().manual_seed(seed + 1)).requires_grad_(True)
        (bag.pool(sids, offsets, w, compute=path) * gout).sum().backward()
        grads[path] = w.grad
    for path in ("kernel", "grouped_bag", "per_level"):
        torch.testing.assert_close(grads[path], grads["reference"], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_forced_fallback_without_kernel() -> None:
    """TORCHREC_SIDE_DISABLE_KERNELS=1 (like a machine without a compiler): auto uses grouped_bag."""
    code = (
        "import torch\n"
        "from torchrec_side.modules import SIDEmbeddingBag, SIDTables\n"
        "from torchrec_side.modules.ops import cpu_kernel\n"
        "from torchrec_side.sid.codec import SIDCodec\n"
        "c = SIDCodec.byte_grouped([3] * 10)\n"
        "g = torch.Generator().manual_seed(0)\n"
        "t = SIDTables.from_tensors(torch.randn(4, generator=g), [torch.randn(3, 4, generator=g) for _ in range(10)])\n"
        "b = SIDEmbeddingBag(t, c)\n"
        "s = c.pack(torch.randint(0, 3, (50, 10), generator=g))\n"
        "o = torch.tensor([0, 20, 50])\n"
        "assert not cpu_kernel.kernels_available(), cpu_kernel.kernel_status()\n"
        "assert b.resolved_compute(torch.device('cpu')) == 'grouped_bag'\n"
        "torch.testing.assert_close(b(s, o), b.pool(s, o, compute='reference'), atol=1e-4, rtol=1e-5)\n"
        "torch.testing.assert_close(b.pool(s, o, compute='kernel'), b(s, o), atol=1e-5, rtol=1e-5)\n"
        "print('fallback ok')\n"
    )
    env = dict(os.environ, TORCHREC_SIDE_DISABLE_KERNELS="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "fallback ok" in r.stdout, r.stderr[-3000:]


# ----------------------------------------------------------------------------- offsets


def test_check_offsets_messages() -> None:
    check_offsets(torch.tensor([0, 3, 3, 5]), 5)
    with pytest.raises(SIDOffsetsError, match="must start at 0"):
        check_offsets(torch.tensor([1, 5]), 5)
    with pytest.raises(SIDOffsetsError, match="decrease at position 1"):
        check_offsets(torch.tensor([0, -5, 10]), 10)
    with pytest.raises(SIDOffsetsError, match="offsets\\[-1\\] = 100000000 but there are 5 values"):
        check_offsets(torch.tensor([0, 100000000]), 5)
    with pytest.raises(SIDOffsetsError, match="1-D"):
        check_offsets(torch.tensor([[0, 1]]), 1)


@pytest.mark.slow
def test_huge_offset_does_not_crash_the_process() -> None:
    """Issue 10: ``SIDEmbeddingBag(...)(sids, tensor([0, 100000000]))`` ended the process with
    SIGSEGV. Run in a subprocess so a crash fails this test instead of killing pytest."""
    code = (
        "import torch, sys\n"
        "from torchrec_side.modules import SIDEmbeddingBag, SIDTables\n"
        "from torchrec_side.sid.codec import SIDCodec\n"
        "c = SIDCodec.byte_grouped([3] * 10)\n"
        "t = SIDTables.from_tensors(torch.zeros(4), [torch.randn(3, 4) for _ in range(10)])\n"
        "s = c.pack(torch.ones(7, 10, dtype=torch.long))\n"
        "paths = ['auto', 'kernel', 'grouped_bag', 'grouped_hist', 'per_level', 'reference', 'fbgemm']\n"
        "for validate in (True, False):\n"
        "    b = SIDEmbeddingBag(t, c, validate=validate)\n"
        "    try:\n"
        "        b(s, torch.tensor([0, 100000000]))\n"
        "    except ValueError as e:\n"
        "        assert 'offsets' in str(e), str(e)\n"
        "    else:\n"
        "        sys.exit('forward: no error for offsets past the end')\n"
        "    for p in paths:\n"
        "        try:\n"
        "            b.pool(s, torch.tensor([0, 100000000]), compute=p)\n"
        "        except ValueError as e:\n"
        "            assert 'offsets' in str(e), (p, str(e))\n"
        "        else:\n"
        "            sys.exit(f'{p}: no error for offsets past the end')\n"
        "print('all raised')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"rc={r.returncode} (-11 is SIGSEGV): {r.stdout[-500:]} {r.stderr[-2000:]}"
    assert "all raised" in r.stdout


@pytest.mark.parametrize("path", ALL_POOLED)
@pytest.mark.parametrize("validate", [True, False])
def test_bad_offsets_raise_on_every_path(path: str, validate: bool) -> None:
    """CPU: every path raises SIDOffsetsError naming the problem (the op from inside its kernel)."""
    if not runnable(path, "cpu"):
        pytest.skip(f"{path} on cpu: {path_status(path, torch.device('cpu'))}")
    codec = SIDCodec.byte_grouped([3] * 10)
    bag = SIDEmbeddingBag(random_tables([3] * 10, 8, rank1=True, seed=0), codec, validate=validate)
    sids = random_sids(codec, 10, 0)
    for bad, match in (([0, 4, 12], "offsets\\[-1\\] = 12"), ([0, 4, 2, 10], "decrease"), ([2, 10], "start at 0"),
                       ([0, 4, 9], "offsets\\[-1\\] = 9")):
        with pytest.raises(SIDOffsetsError, match=match):
            bag.pool(sids, torch.tensor(bad), compute=path)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("path", ["kernel", "grouped_bag"])
def test_bad_offsets_fail_on_the_device_cuda(path: str) -> None:
    """CUDA: no host synchronization for the check; bad offsets fail a device-side assert (in a
    subprocess: the CUDA context is unusable afterwards), good ones pass."""
    code = (
        "import sys, torch\n"
        "sys.path.insert(0, 'tests')\n"
        "from factories import random_sids, random_tables\n"
        "from torchrec_side.modules import SIDEmbeddingBag\n"
        "from torchrec_side.sid.codec import SIDCodec\n"
        "c = SIDCodec.byte_grouped([3] * 10)\n"
        "bag = SIDEmbeddingBag(random_tables([3] * 10, 8, rank1=True, seed=0), c).cuda()\n"
        "s = random_sids(c, 10, 0).cuda()\n"
        f"bag.pool(s, torch.tensor([0, 4, 10]).cuda(), compute='{path}'); torch.cuda.synchronize()\n"
        "print('good ok', flush=True)\n"
        f"bag.pool(s, torch.tensor([0, 4, 2, 10]).cuda(), compute='{path}')\n"
        "try:\n"
        "    torch.cuda.synchronize()\n"
        "except RuntimeError as e:\n"
        "    print('device assert:', str(e).splitlines()[0]); sys.exit(0)\n"
        "sys.exit('no device-side error for decreasing offsets')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert r.returncode == 0 and "good ok" in r.stdout and "device assert" in r.stdout, r.stdout + r.stderr[-3000:]


def test_negative_kjt_lengths_raise() -> None:
    """Issue 10: a KJT with lengths [-5, 15] returned a bag built from memory before the tensor."""
    codec = SIDCodec.byte_grouped([3] * 10)
    t = random_tables([3] * 10, 8, rank1=True, seed=0)
    for validate in (True, False):
        side = SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=codec)],
                                         validate=validate, sid_tables={"t": t})
        kjt = KeyedJaggedTensor(keys=["h"], values=random_sids(codec, 10, 0), lengths=torch.tensor([-5, 15]))
        with pytest.raises(SIDOffsetsError, match="negative length"):
            side(kjt)


# ----------------------------------------------------------------------------- accuracy


def test_million_event_bag_is_float64_accurate() -> None:
    """Issue 10: a 10^6-event bag lost 4.9% (per_level) and 0.3% (grouped_bag) to float32 drift."""
    radices = [3] * 10
    codec = SIDCodec.byte_grouped(radices)
    t = random_tables(radices, 8, rank1=True, seed=3, bias=3.0)  # a large common offset: the running sum grows linearly
    n = 1_000_000
    sids = random_sids(codec, n, 4)
    offsets = torch.tensor([0, 3, n - 10, n])  # one 10^6-event bag between two short ones
    w = torch.rand(n, generator=torch.Generator().manual_seed(5))
    bag = SIDEmbeddingBag(t, codec)
    for weights in (None, w):
        ref = bag.pool(sids, offsets, weights, compute="reference")  # float64 accumulation
        for path in ("per_level", "scalar", "grouped_bag", "grouped_hist", "kernel", "fbgemm"):
            if not runnable(path, "cpu"):
                continue
            out = bag.pool(sids, offsets, weights, compute=path)
            rel = float((out - ref).abs().max() / ref.abs().max())
            assert rel < 2e-5, f"{path} weighted={weights is not None}: relative error {rel:.2e}"


@pytest.mark.parametrize("device", DEVICES)
def test_fbgemm_weight_types(device: str) -> None:
    """FBGEMM TBE fp32 equals the reference; fp16 and int8 errors against fp32 are small and reported."""
    if not runnable("fbgemm", device):
        pytest.skip(f"fbgemm on {device}: {fbgemm_ops.fbgemm_status(torch.device(device))}")
    codec = SIDCodec.byte_grouped([3] * 40)
    bag = SIDEmbeddingBag(random_tables([3] * 40, 64, rank1=True, seed=0), codec).to(device)
    lengths = [1000, 0, 10, 300]
    sids = random_sids(codec, sum(lengths), 1).to(device)
    offsets = torch.tensor([0] + lengths).cumsum(0).to(device)
    w = torch.rand(sum(lengths)).to(device)
    for weights in (None, w):
        ref = bag.pool(sids, offsets, weights, compute="reference")
        fp32 = bag.pool(sids, offsets, weights, compute="fbgemm")
        torch.testing.assert_close(fp32, ref, atol=1e-4 * float(ref.abs().max()), rtol=1e-4)
        scale = float(fp32.abs().max())
        errs = {p: float((bag.pool(sids, offsets, weights, compute=p) - fp32).abs().max()) / scale
                for p in ("fbgemm_fp16", "fbgemm_int8")}
        print(f"relative max error vs fbgemm fp32 (weighted={weights is not None}): {errs}")
        assert errs["fbgemm_fp16"] < 2e-3 and errs["fbgemm_int8"] < 2e-2, errs
        assert errs["fbgemm_int8"] > 0  # it is quantized
    emb = SIDEmbedding(bag.sid_tables(), codec).to(device)
    torch.testing.assert_close(emb.embed(sids, "fbgemm"), emb.embed(sids, "reference"), atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- devices


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", ["grouped_bag", "grouped_hist", "per_level", "fbgemm", "kernel"])
def test_paths_match_reference_per_device(path: str, device: str) -> None:
    if not runnable(path, device):
        pytest.skip(f"{path} on {device}: {path_status(path, torch.device(device))}")
    codec = SIDCodec.byte_grouped([3] * 40)
    bag = SIDEmbeddingBag(random_tables([3] * 40, 16, rank1=True, seed=2), codec, pooling="mean").to(device)
    lengths = [0, 1, 5, 200, 3000]
    sids = random_sids(codec, sum(lengths), 3).to(device)
    offsets = torch.tensor([0] + lengths).cumsum(0).to(device)
    for weights in (None, torch.rand(sum(lengths)).to(device)):
        ref = bag.pool(sids, offsets, weights, compute="reference")
        torch.testing.assert_close(bag.pool(sids, offsets, weights, compute=path), ref, atol=1e-4, rtol=1e-4)


def _triton_importable() -> Optional[str]:
    try:
        import importlib.util

        return None if importlib.util.find_spec("triton") is not None else "triton is not installed"
    except Exception as e:  # pragma: no cover
        return str(e)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_triton_parity(device: str) -> None:
    """The Triton kernels equal the reference: on CUDA directly, on CPU under TRITON_INTERPRET=1
    (in a subprocess: the flag must be set before triton is imported)."""
    why = _triton_importable()
    if why:
        pytest.skip(why)
    env = dict(os.environ)
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "modules" / "side_triton_check.py"), device],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "triton parity ok" in r.stdout, r.stderr[-3000:]


def test_fbgemm_refuses_weights_that_need_a_gradient() -> None:
    if not runnable("fbgemm", "cpu"):
        pytest.skip("no fbgemm")
    codec = SIDCodec.byte_grouped([3] * 10)
    bag = SIDEmbeddingBag(random_tables([3] * 10, 8, rank1=True, seed=0), codec)
    sids = random_sids(codec, 6, 0)
    w = torch.rand(6, requires_grad=True)
    with pytest.raises(ValueError, match="no gradient for per-event weights"):
        bag.pool(sids, torch.tensor([0, 6]), w, compute="fbgemm")
    with torch.no_grad():
        bag.pool(sids, torch.tensor([0, 6]), w, compute="fbgemm")


def test_compute_enum_and_status() -> None:
    """Compute names algorithms only: ``kernel`` runs on every device (the dispatcher picks C++,
    Triton or pure torch), there is no device-specific member."""
    assert Compute("kernel") is Compute.KERNEL and str(Compute.FBGEMM_INT8) == "fbgemm_int8"
    with pytest.raises(ValueError):
        Compute("triton")
    status = path_status("kernel", torch.device("cpu"))
    assert status.startswith("ok") and (("C++" in status) == (library.implementation(torch.device("cpu")) == "cpp"))
    assert path_status("kernel", torch.device("meta")).startswith("ok (meta")
    with pytest.raises(ValueError, match="unknown SIDE compute"):
        SIDEmbeddingBag(random_tables([3], 4, rank1=True, seed=0), SIDCodec.byte_grouped([3]), compute="fastest")
