"""The SIDE operator library (torchrec_side::sid_pool / sid_embed): pinned schemas, registration at
import, opcheck on every implementation (C++ CPU kernel, pure-torch fallback, Meta), results
against the plain reference, offsets and SID errors raised inside the kernels, weight gradients,
and speed that does not depend on timing (results identical for any thread count)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrec_side.modules.ops import cpu_kernel, library
from torchrec_side.modules.ops.reference import pool_reference
from torchrec_side.sid.codec import SIDCodec

from factories import random_sids, random_tables

POOL = "torchrec_side::sid_pool(Tensor sids, Tensor offsets, Tensor? weights, Tensor table, Tensor limits, bool check=True) -> Tensor"
EMBED = "torchrec_side::sid_embed(Tensor sids, Tensor table, Tensor limits, bool check=True) -> Tensor"


def op_inputs(radices: List[int], lengths: List[int], D: int = 8, seed: int = 0):  # type: ignore[no-untyped-def]
    codec = SIDCodec.byte_grouped(radices)
    t = random_tables(radices, D, rank1=True, seed=seed)
    sids = random_sids(codec, sum(lengths), seed + 1)
    offsets = torch.tensor([0] + lengths).cumsum(0)
    return codec, t, sids, offsets, t.grouped(codec), t.group_max(codec)


def test_schemas_are_pinned() -> None:
    """Changing a schema breaks saved programs: it must be a deliberate, versioned change."""
    assert str(torch.ops.torchrec_side.sid_pool.default._schema) == POOL
    assert str(torch.ops.torchrec_side.sid_embed.default._schema) == EMBED
    assert library.POOL_SCHEMA == POOL and library.EMBED_SCHEMA == EMBED
    assert torch.ops.torchrec_side.sid_pool.overloads() == ["default"]
    assert torch.ops.torchrec_side.sid_embed.overloads() == ["default"]


def test_everything_is_registered_at_import() -> None:
    """In a fresh process, importing the package registers schema, fake (Meta), autograd and the
    default kernel before any call (the C++ CPU kernel is built lazily, on first CPU use)."""
    code = (
        "import torch\n"
        "import torchrec_side.modules.ops\n"
        "has = torch._C._dispatch_has_kernel_for_dispatch_key\n"
        "for op in ('torchrec_side::sid_pool', 'torchrec_side::sid_embed'):\n"
        "    for key in ('Meta', 'Autograd', 'CompositeExplicitAutograd'):\n"
        "        assert has(op, key), (op, key)\n"
        "    assert not has(op, 'CPU'), 'the C++ kernel was built at import'\n"
        "from torchrec_side.modules.ops import cpu_kernel\n"
        "assert cpu_kernel.kernel_status() == 'not built yet', cpu_kernel.kernel_status()\n"
        "t = torch.zeros(512, 4)\n"
        "out = torch.ops.torchrec_side.sid_pool(torch.zeros(3, dtype=torch.long, device='meta'),\n"
        "    torch.zeros(3, dtype=torch.long, device='meta'), None, t.to('meta'), torch.zeros(2, dtype=torch.uint8, device='meta'))\n"
        "assert out.shape == (2, 4) and out.device.type == 'meta'\n"
        "print('registered')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, TORCHREC_SIDE_DISABLE_KERNELS="0"))
    assert r.returncode == 0 and "registered" in r.stdout, r.stderr[-3000:]


def test_opcheck_cpu_kernel(kernel: None) -> None:
    """torch.library.opcheck on the C++ CPU kernel: schema, fake kernel, autograd registration, AOT dispatch."""
    _, _, sids, offsets, table, limits = op_inputs([3] * 10, [5, 0, 25, 10])
    for weights in (None, torch.rand(40, requires_grad=True)):
        for check in (True, False):
            torch.library.opcheck(torch.ops.torchrec_side.sid_pool.default, (sids, offsets, weights, table, limits, check))
    torch.library.opcheck(torch.ops.torchrec_side.sid_embed.default, (sids, table, limits, True))
    # the kernels that ran are the C++ ones
    assert torch._C._dispatch_has_kernel_for_dispatch_key("torchrec_side::sid_pool", "CPU")


def test_opcheck_meta() -> None:
    _, _, sids, offsets, table, limits = op_inputs([3] * 10, [5, 0, 25, 10])
    meta = [x.to("meta") for x in (sids, offsets, table, limits)]
    for weights in (None, torch.rand(40, device="meta", requires_grad=True)):
        torch.library.opcheck(torch.ops.torchrec_side.sid_pool.default, (meta[0], meta[1], weights, meta[2], meta[3], True))
    torch.library.opcheck(torch.ops.torchrec_side.sid_embed.default, (meta[0], meta[2], meta[3], True))


@pytest.mark.slow
def test_opcheck_pure_torch_fallback() -> None:
    """Without the C++ kernel (no compiler; forced here) the ops run pure torch on CPU: opcheck,
    parity with the reference, the same errors."""
    code = (
        "import sys, torch\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_side_op_library import fallback_checks\n"
        "fallback_checks()\n"
        "print('fallback ok')\n"
    )
    env = dict(os.environ, TORCHREC_SIDE_DISABLE_KERNELS="1",
               PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert r.returncode == 0 and "fallback ok" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]


def fallback_checks() -> None:
    """Run by :func:`test_opcheck_pure_torch_fallback` in a process with TORCHREC_SIDE_DISABLE_KERNELS=1."""
    assert not cpu_kernel.kernels_available(), cpu_kernel.kernel_status()
    assert library.implementation(torch.device("cpu")) == "torch"
    codec = SIDCodec.byte_grouped([3] * 10)
    t = random_tables([3] * 10, 8, rank1=True, seed=0)
    table, limits = t.grouped(codec), t.group_max(codec)
    sids = random_sids(codec, 40, 1)
    offsets = torch.tensor([0, 5, 5, 30, 40])
    for weights in (None, torch.rand(40, requires_grad=True)):
        torch.library.opcheck(torch.ops.torchrec_side.sid_pool.default, (sids, offsets, weights, table, limits, True))
        ref = pool_reference(codec.unpack(sids), offsets, weights, t.offset, t.stacked(), t.level_offsets())
        torch.testing.assert_close(torch.ops.torchrec_side.sid_pool(sids, offsets, weights, table, limits), ref,
                                   atol=1e-4, rtol=1e-4)
    torch.library.opcheck(torch.ops.torchrec_side.sid_embed.default, (sids, table, limits, True))
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("torchrec_side::sid_pool", "CPU")
    for bad in ([0, 4, 2, 10, 40], [0, 100000000]):
        try:
            torch.ops.torchrec_side.sid_pool(sids, torch.tensor(bad), None, table, limits)
        except ValueError as e:
            assert "offsets" in str(e), str(e)
        else:
            raise AssertionError(f"no error for offsets {bad}")


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(0, 400), min_size=0, max_size=6), seed=st.integers(0, 1000),
       weighted=st.booleans(), radices=st.sampled_from([[3] * 40, [5, 7], [256, 256, 256], [17] * 3]))
def test_op_matches_reference(lengths: List[int], seed: int, weighted: bool, radices: List[int]) -> None:
    """The op (C++ where built, else pure torch) and the pure-torch implementation equal the
    float64 reference, for short bags (direct sums) and long ones (histograms), weighted or not."""
    codec, t, sids, offsets, table, limits = op_inputs(radices, lengths, seed=seed)
    w = torch.rand(sids.numel(), generator=torch.Generator().manual_seed(seed)) if weighted else None
    ref = pool_reference(codec.unpack(sids), offsets, w, t.offset, t.stacked(), t.level_offsets())
    # (the grouped tables include the decoder offset in group 0's rows)
    tol = 1e-5 * (1 + float(ref.abs().max()) if ref.numel() else 1) * max(1, max(lengths, default=1)) ** 0.5 * 4
    for out in (torch.ops.torchrec_side.sid_pool(sids, offsets, w, table, limits),
                library.pool_torch(sids, offsets, w, table, limits)):
        assert out.shape == (len(lengths), 8)
        torch.testing.assert_close(out, ref, atol=tol, rtol=1e-4)
    emb = torch.ops.torchrec_side.sid_embed(sids, table, limits)
    torch.testing.assert_close(emb, library.embed_torch(sids, table, limits), atol=1e-5, rtol=1e-5)


def test_results_do_not_depend_on_thread_count(kernel: None) -> None:
    """No timing-based choice: the op uses torch's intra-op threads, each bag pooled by one thread
    in a fixed order, so the output is bit-identical for 1 and 2 threads."""
    _, _, sids, offsets, table, limits = op_inputs([3] * 40, [3000, 0, 7, 20000, 1, 500])
    w = torch.rand(sids.numel())
    old = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append((torch.ops.torchrec_side.sid_pool(sids, offsets, None, table, limits),
                         torch.ops.torchrec_side.sid_pool(sids, offsets, w, table, limits),
                         torch.ops.torchrec_side.sid_embed(sids, table, limits)))
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("D", [5, 16, 37])
@pytest.mark.parametrize("weighted", [False, True])
def test_long_bags_pooled_in_blocks(kernel: None, D: int, weighted: bool) -> None:
    """Long bags are pooled several at a time (a counts block times the table): more long bags than
    one block holds, mixed with short and empty ones, D with and without a column tail, match the
    float64 reference, and each bag's row is bit-identical to pooling that bag alone (the block it
    shares with other bags does not change its summation order)."""
    lengths = [300, 0, 2000, 12, 257, 256, 1000, 3, 700, 800, 900, 450, 600, 255, 5000, 400, 350, 320, 310]
    codec, t, sids, offsets, table, limits = op_inputs([3] * 40, lengths, D=D, seed=D)
    w = torch.rand(sids.numel(), generator=torch.Generator().manual_seed(D)) if weighted else None
    out = torch.ops.torchrec_side.sid_pool(sids, offsets, w, table, limits)
    ref = pool_reference(codec.unpack(sids), offsets, w, t.offset, t.stacked(), t.level_offsets())
    torch.testing.assert_close(out, ref, atol=1e-5 * (1 + float(ref.abs().max())) * 5000 ** 0.5, rtol=1e-4)
    for b in range(len(lengths)):
        s, e = int(offsets[b]), int(offsets[b + 1])
        alone = torch.ops.torchrec_side.sid_pool(sids[s:e], torch.tensor([0, e - s]),
                                                 None if w is None else w[s:e], table, limits)
        torch.testing.assert_close(out[b:b + 1], alone, rtol=0, atol=0)


@pytest.mark.parametrize("impl", ["op", "torch"])
def test_errors_name_the_problem(impl: str) -> None:
    """Offsets are always checked, SID bytes with check=True; CPU errors are ValueErrors naming them."""
    _, _, sids, offsets, table, limits = op_inputs([3] * 10, [5, 0, 25, 10])
    fn = torch.ops.torchrec_side.sid_pool if impl == "op" else library.pool_torch
    for bad, match in (([0, 4, 2, 10, 40], "decrease"), ([2, 10, 10, 10, 40], "start at 0"),
                       ([0, 4, 9, 9, 39], r"offsets\[-1\] = 39"), ([0, 100000000], r"offsets\[-1\] = 100000000")):
        for check in (True, False):
            with pytest.raises(ValueError, match=match):
                fn(sids, torch.tensor(bad), None, table, limits, check)
    bad_sids = sids.clone()
    bad_sids[7] = bad_sids[7] | (1 << 60)
    with pytest.raises(ValueError, match="invalid SID .* at index 7"):
        fn(bad_sids, offsets, None, table, limits, True)
    assert fn(bad_sids, offsets, None, table, limits, False).shape == (4, 8)  # no check, no crash
    with pytest.raises(ValueError, match="weights have 3 entries for 40"):
        fn(sids, offsets, torch.ones(3), table, limits, True)


@settings(max_examples=10, deadline=None)
@given(lengths=st.lists(st.integers(0, 300), min_size=1, max_size=5), seed=st.integers(0, 100))
def test_weight_gradient_matches_reference(lengths: List[int], seed: int) -> None:
    codec, t, sids, offsets, table, limits = op_inputs([3] * 15, lengths, seed=seed)
    gout = torch.randn(len(lengths), 8, generator=torch.Generator().manual_seed(seed))
    grads: List[Optional[torch.Tensor]] = []
    for fn in ("op", "reference"):
        w = torch.rand(sids.numel(), generator=torch.Generator().manual_seed(seed + 1)).requires_grad_(True)
        if fn == "op":
            out = torch.ops.torchrec_side.sid_pool(sids, offsets, w, table, limits)
        else:
            out = pool_reference(codec.unpack(sids), offsets, w, t.offset, t.stacked(), t.level_offsets())
        (out * gout).sum().backward()
        grads.append(w.grad)
    assert grads[0] is not None and grads[1] is not None
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-4)


def test_a_cached_kernel_library_is_loaded_only_when_it_is_ours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17 (moderate): the compiled kernel was loaded from the cache without a content check.
    Now a library that does not match the SHA-256 recorded at its build is rebuilt, and a build
    folder others can write is refused (no compiler runs here: the build is a stand-in)."""
    from torch.utils import cpp_extension

    builds: List[Path] = []

    def fake_load(name: str, build_directory: str, **kw: object) -> None:
        lib = Path(build_directory) / f"{name}.so"
        if not lib.exists():  # ninja: build only what is missing
            lib.write_bytes(b"built %d" % len(builds))
            builds.append(lib)

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    monkeypatch.setenv("TORCHREC_SIDE_KERNEL_DIR", str(tmp_path / "k"))
    cpu_kernel._build_and_load()
    cpu_kernel._build_and_load()
    assert len(builds) == 1  # reused: it matches its record
    lib = builds[0]
    assert (lib.parent / (lib.name + ".sha256")).read_text().strip() == hashlib.sha256(lib.read_bytes()).hexdigest()
    lib.write_bytes(b"planted")  # replaced in the cache
    cpu_kernel._build_and_load()
    assert len(builds) == 2 and lib.read_bytes() == b"built 1"
    os.chmod(lib.parent, 0o777)
    with pytest.raises(RuntimeError, match="group/world-writable"):
        cpu_kernel._build_and_load()
