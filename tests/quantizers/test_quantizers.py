import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from torchrec_side.io import ArtifactError
from torchrec_side.quantizers import (
    DPCA,
    DPCAConfig,
    DPCALevel,
    KMeansConfig,
    Quantizer,
    RQKMeans,
    RQKMeansConfig,
    allocate_bits,
    codebook_stats,
    kmeans,
)


def clustered(n: int = 1200, d: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(12, d, generator=g) * 3
    basis = torch.randn(d, d, generator=g) / math.sqrt(d)
    return centers[torch.randint(12, (n,), generator=g)] + torch.randn(n, d, generator=g) @ basis


def rel_err(q: Quantizer, x: torch.Tensor) -> float:
    x_hat = q.decode(q.encode(x))
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def decode_reference(q: Quantizer, codes: torch.Tensor) -> torch.Tensor:
    """Plain per-item loop over the additive decoder."""
    offset, tables = q.level_tables()
    rows = []
    for c in codes.tolist():
        v = offset.clone()
        for level, code in enumerate(c):
            v = v + tables[level][code]
        rows.append(v)
    return torch.stack(rows)


def test_dpca_full_width_reproduces_rq_kmeans() -> None:
    x = clustered(600, 8)
    radices = [16, 8, 8]
    km = KMeansConfig(iters=10, init="kmeans++")
    rq = RQKMeans(RQKMeansConfig(radices=radices, kmeans=km, seed=3)).fit(x)
    dp = DPCA(DPCAConfig(levels=[DPCALevel(8, k) for k in radices], kmeans=km, seed=3)).fit(x)
    c_rq, c_dp = rq.encode(x), dp.encode(x)
    assert torch.equal(c_rq, c_dp)
    torch.testing.assert_close(dp.decode(c_dp), rq.decode(c_rq), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["residual", "one_shot"])
def test_dpca_error_does_not_grow_with_levels(mode: str) -> None:
    x = clustered()
    q = DPCA.ternary(num_levels=12, seed=0, mode=mode).fit(x)
    codes = q.encode(x)
    assert set(codes.unique().tolist()) == {0, 1, 2}
    offset, tables = q.level_tables()
    r = x - offset
    errs = [float((r**2).sum())]
    for level, t in enumerate(tables):
        r = r - t[codes[:, level]]
        errs.append(float((r**2).sum()))
    assert all(b <= a * (1 + 1e-5) for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.5 * errs[0]


def test_rq_error_does_not_grow_with_levels() -> None:
    x = clustered()
    errs = [rel_err(RQKMeans(RQKMeansConfig(radices=[16] * n, seed=1)).fit(x), x) for n in (1, 2, 3)]
    assert errs[0] >= errs[1] >= errs[2]


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["rq", "dpca", "dpca_one_shot"]), st.integers(0, 10_000))
def test_decode_matches_reference(kind: str, seed: int) -> None:
    x = clustered(200, 6, seed=seed % 7)
    if kind == "rq":
        q: Quantizer = RQKMeans(RQKMeansConfig(radices=[8, 4], seed=seed, kmeans=KMeansConfig(iters=3))).fit(x)
    else:
        mode = "one_shot" if kind.endswith("one_shot") else "residual"
        q = DPCA(DPCAConfig(levels=[DPCALevel(1, 3), DPCALevel(2, 5), DPCALevel(1, 2)], mode=mode, seed=seed)).fit(x)
    codes = q.encode(x[:20])
    torch.testing.assert_close(q.decode(codes), decode_reference(q, codes), atol=1e-5, rtol=1e-5)


def test_dpca_encode_is_greedy_nearest() -> None:
    """Each level's code is the nearest codeword of the residual's projection."""
    x = clustered(300, 10)
    q = DPCA(DPCAConfig(levels=[DPCALevel(1, 3), DPCALevel(3, 6), DPCALevel(1, 4)])).fit(x)
    codes = q.encode(x)
    offset, _ = q.level_tables()
    r = x - offset
    for level, (c, v) in enumerate(q.level_factors()):
        d = ((r @ v)[:, None, :] - c[None]).pow(2).sum(-1)
        assert torch.equal(d.argmin(1), codes[:, level])
        r = r - c[codes[:, level]] @ v.T


@pytest.mark.parametrize("make", [lambda: RQKMeans(RQKMeansConfig(radices=[16, 16], seed=5)), lambda: DPCA.ternary(10, seed=5)])
def test_same_seed_same_codes_and_save_load(make, tmp_path) -> None:
    x = clustered()
    a, b = make().fit(x), make().fit(x)
    assert torch.equal(a.encode(x), b.encode(x))
    a.save(tmp_path / "q.safetensors")
    c = Quantizer.load(tmp_path / "q.safetensors")
    assert type(c) is type(a)
    assert torch.equal(a.encode(x), c.encode(x))
    assert c.radices == a.radices


def test_different_seed_can_differ() -> None:
    x = clustered()
    a = RQKMeans(RQKMeansConfig(radices=[32], seed=0)).fit(x)
    b = RQKMeans(RQKMeansConfig(radices=[32], seed=1)).fit(x)
    assert not torch.equal(a.level_tables()[1][0], b.level_tables()[1][0])


def test_corrupt_artifact_raises(tmp_path) -> None:
    q = DPCA.ternary(4).fit(clustered())
    path = tmp_path / "q.safetensors"
    q.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="corrupt"):
        Quantizer.load(path)
    with pytest.raises(ArtifactError, match="not found"):
        Quantizer.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("make", [lambda: RQKMeans(RQKMeansConfig(radices=[8])), lambda: DPCA.ternary(3)])
def test_bad_inputs_raise(make) -> None:
    x = clustered(100, 5)
    bad = x.clone()
    bad[7, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf.*row: 7"):
        make().fit(bad)
    inf = x.clone()
    inf[3, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        make().fit(inf)
    with pytest.raises(ValueError, match="too few points"):
        make().fit(x[:2])
    with pytest.raises(ValueError, match=r"shape \[N, D\]"):
        make().fit(x[0])
    q = make().fit(x)
    with pytest.raises(ValueError, match="width D=5"):
        q.encode(torch.randn(4, 6))
    with pytest.raises(ValueError, match="NaN or inf"):
        q.encode(bad)
    with pytest.raises(ValueError, match="level 0: code 99"):
        q.decode(torch.full((2, q.num_levels), 99))
    with pytest.raises(RuntimeError, match="not fitted"):
        make().encode(x)


def test_codebook_stats() -> None:
    codes = torch.tensor([[0, 1], [0, 1], [1, 0], [2, 0]])
    s = codebook_stats(codes, [4, 2])
    assert s.utilization == [0.75, 1.0]
    assert s.distinct_sids == 3
    assert s.collision_rate == pytest.approx(0.25)
    assert s.perplexity[1] == pytest.approx(2.0)
    p = torch.tensor([0.5, 0.25, 0.25])
    assert s.perplexity[0] == pytest.approx(float(torch.exp(-(p * p.log()).sum())))


def test_kmeans_restarts_dead_codes_and_balances() -> None:
    # Two far clusters with a bad init would leave codes dead; restarts must use all of them.
    x = torch.cat([torch.randn(500, 2), torch.randn(20, 2) + 50])
    c = kmeans(x, 8, KMeansConfig(iters=15), torch.Generator().manual_seed(0))
    idx = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
    assert torch.bincount(idx, minlength=8).gt(0).all()
    cb = kmeans(x, 4, KMeansConfig(iters=15, balanced=True), torch.Generator().manual_seed(0))
    assert cb.shape == (4, 2) and torch.isfinite(cb).all()


def test_allocate_bits_within_budget() -> None:
    var = torch.tensor([10.0, 5.0, 1.0, 0.1])
    for bits in (8, 16, 24):
        levels = allocate_bits(var, bits)
        used = sum(math.log2(lv.k) for lv in levels)
        assert used <= bits + 1e-6
        assert used > bits - math.log2(16)
    with pytest.raises(ValueError, match="budget"):
        allocate_bits(var, 0.5)
    q = DPCA.for_bits(clustered(), 20).fit(clustered())
    assert q.bits_per_item <= 20 + 1e-6


def test_dpca_beats_nothing_and_decodes_on_heldout() -> None:
    x = clustered(1500, 16)
    fit, held = x[:1200], x[1200:]
    for q in (DPCA.ternary(16).fit(fit), RQKMeans(RQKMeansConfig(radices=[64, 64])).fit(fit)):
        assert rel_err(q, held) < 0.5


def _flip_last_payload_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte belongs to the last tensor's data, not the JSON header
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("make", [lambda: RQKMeans(RQKMeansConfig(radices=[8, 8], seed=2)), lambda: DPCA.ternary(6, seed=2)])
def test_flipped_byte_is_detected(make, tmp_path) -> None:
    x = clustered(300, 8)
    path = tmp_path / "q.safetensors"
    make().fit(x).save(path)
    Quantizer.load(path)  # intact: loads, no warning
    _flip_last_payload_byte(path)
    with pytest.raises(ArtifactError, match=r"q\.safetensors.*SHA-256"):
        Quantizer.load(path)


def test_file_without_checksum_loads_with_warning(tmp_path) -> None:
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    from torchrec_side.io import PAYLOAD_SHA256

    x = clustered(300, 8)
    q = DPCA.ternary(5, seed=1).fit(x)
    path = tmp_path / "q.safetensors"
    q.save(path)
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    assert len(meta.pop(PAYLOAD_SHA256)) == 64
    old = tmp_path / "old.safetensors"  # what the previous version wrote: same header, no checksum
    save_file(load_file(str(path)), str(old), metadata=meta)
    with pytest.warns(UserWarning, match="no tensor checksum"):
        loaded = Quantizer.load(old)
    assert torch.equal(loaded.encode(x), q.encode(x))


def test_load_refuses_the_other_kind(tmp_path) -> None:
    x = clustered(300, 8)
    rq_path, dp_path = tmp_path / "rq.safetensors", tmp_path / "dpca.safetensors"
    RQKMeans(RQKMeansConfig(radices=[8], seed=0)).fit(x).save(rq_path)
    DPCA.ternary(4).fit(x).save(dp_path)
    with pytest.raises(ArtifactError, match=r"rq\.safetensors.*RQKMeans.*not a DPCA"):
        DPCA.load(rq_path)
    with pytest.raises(ArtifactError, match=r"dpca\.safetensors.*DPCA.*not a RQKMeans"):
        RQKMeans.load(dp_path)
    assert isinstance(DPCA.load(dp_path), DPCA) and isinstance(RQKMeans.load(rq_path), RQKMeans)
    assert isinstance(Quantizer.load(rq_path), RQKMeans) and isinstance(Quantizer.load(dp_path), DPCA)


@pytest.mark.parametrize("make", [lambda: RQKMeans(RQKMeansConfig(radices=[8, 8], seed=2)), lambda: DPCA.ternary(6, seed=2)])
def test_nan_tables_are_refused_by_name(make, tmp_path) -> None:
    from torchrec_side.modules import SIDTables

    q = make().fit(clustered(300, 8))
    state = q.state_dict()
    name = sorted(state)[-1]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    fresh = make()
    with pytest.raises(ValueError, match=f"{name}.*NaN or inf"):
        fresh.load_state_dict(state)
    assert not fresh.fitted
    SIDTables.from_quantizer(q)  # the intact one still builds SIDE tables
    bad = tmp_path / "bad.safetensors"
    q.load_state_dict(q.state_dict())
    from torchrec_side.io import save_tensors

    from torchrec_side.quantizers.base import FORMAT, FORMAT_VERSION
    import json as _json

    save_tensors(bad, state, {"format": FORMAT, "version": str(FORMAT_VERSION), "kind": q.kind,
                              "config": _json.dumps(q.config_dict())})
    with pytest.raises(ArtifactError, match="NaN or inf"):
        Quantizer.load(bad)
    with pytest.raises(ValueError, match="missing table"):
        make().load_state_dict({})
