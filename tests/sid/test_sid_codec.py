"""Tests for torchrec_side.sid.codec: parity with a plain Python-int reference,
round trips in both layouts, the documented limits and the error messages."""

from __future__ import annotations

import json
import math
import re
from typing import List, Sequence, Tuple

import pytest
import torch
from hypothesis import given, settings, strategies as st

import torchrec_side.sid.codec as codec_mod
from torchrec_side.sid import SIDCodec, SIDValueError

# local settings (no global profile: other packages' tests share the session)
SETTINGS = settings(deadline=None, max_examples=60)

TWO_63 = 2**63
TWO_64 = 2**64


# --------------------------------------------------------------------------
# plain reference implementation (Python ints, one SID at a time)
# --------------------------------------------------------------------------


def ref_groups(radices: Sequence[int]) -> List[Tuple[int, int]]:
    """Greedy byte groups: extend the current group while its product <= 256."""
    groups, start = [], 0
    while start < len(radices):
        end, prod = start, 1
        while end < len(radices) and prod * radices[end] <= 256:
            prod *= radices[end]
            end += 1
        assert end > start, "radix > 256"
        groups.append((start, end))
        start = end
    return groups


def ref_mixed(digits: Sequence[int], radices: Sequence[int]) -> int:
    value, stride = 0, 1
    for c, k in zip(digits, radices):
        assert 0 <= c < k
        value += c * stride
        stride *= k
    return value


def ref_digits(value: int, radices: Sequence[int]) -> List[int]:
    out = []
    for k in radices:
        out.append(value % k)
        value //= k
    return out


def to_signed64(u: int) -> int:
    assert 0 <= u < TWO_64
    return u - TWO_64 if u >= TWO_63 else u


def ref_pack(layout: str, radices: Sequence[int], row: Sequence[int]) -> int:
    if layout == "mixed_radix":
        return ref_mixed(row, radices)
    u = 0
    for g, (s, e) in enumerate(ref_groups(radices)):
        u |= ref_mixed(row[s:e], radices[s:e]) << (8 * g)
    return to_signed64(u)


def ref_unpack(layout: str, radices: Sequence[int], sid: int) -> List[int]:
    if layout == "mixed_radix":
        return ref_digits(sid, radices)
    u = sid % TWO_64
    out: List[int] = []
    for g, (s, e) in enumerate(ref_groups(radices)):
        out += ref_digits((u >> (8 * g)) & 0xFF, radices[s:e])
    return out


def ref_group_values(radices: Sequence[int], row: Sequence[int]) -> List[int]:
    return [ref_mixed(row[s:e], radices[s:e]) for s, e in ref_groups(radices)]


# --------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------


def _prefix_mixed(radices: List[int]) -> List[int]:
    out, prod = [], 1
    for k in radices:
        if prod * k > TWO_63:
            break
        out.append(k)
        prod *= k
    return out


def _prefix_byte(radices: List[int]) -> List[int]:
    n = len(radices)
    while len(ref_groups(radices[:n])) > 8:
        n -= 1
    return radices[:n]


small_radix = st.integers(2, 256)
any_radix = st.one_of(
    small_radix,
    small_radix,
    small_radix,
    st.sampled_from([257, 1000, 4096, 65535, 65536, 2**20, 2**31 - 1, 2**40]),
)
mixed_radices = st.lists(any_radix, min_size=1, max_size=64).map(_prefix_mixed)
mixed_small_radices = st.lists(small_radix, min_size=1, max_size=64).map(
    _prefix_mixed
)
byte_radices = st.lists(
    st.one_of(st.integers(2, 8), small_radix), min_size=1, max_size=64
).map(_prefix_byte)


def random_codes(
    radices: Sequence[int], n: int, seed: int, dtype: torch.dtype = torch.int64
) -> torch.Tensor:
    """[n, L] codes with the all-zero and all-max rows included when n >= 2."""
    g = torch.Generator().manual_seed(seed)
    k = torch.tensor(radices, dtype=torch.float64)
    codes = (torch.rand(n, len(radices), generator=g, dtype=torch.float64) * k).long()
    codes = torch.minimum(codes, torch.tensor(radices) - 1)
    if n >= 2:
        codes[0] = 0
        codes[1] = torch.tensor(radices) - 1
    return codes.to(dtype)


def check_against_reference(codec: SIDCodec, codes: torch.Tensor) -> torch.Tensor:
    sids = codec.pack(codes)
    assert sids.dtype == torch.int64 and sids.shape == (codes.shape[0],)
    rows = codes.tolist()
    expected = [ref_pack(codec.layout, codec.radices, r) for r in rows]
    assert sids.tolist() == expected
    back = codec.unpack(sids)
    assert back.dtype == torch.int64 and back.is_contiguous()
    assert torch.equal(back, codes.long())
    assert [ref_unpack(codec.layout, codec.radices, s) for s in expected] == rows
    return sids


# --------------------------------------------------------------------------
# round trips against the reference
# --------------------------------------------------------------------------


@SETTINGS
@given(radices=mixed_radices, n=st.integers(0, 40), seed=st.integers(0, 2**31))
def test_mixed_radix_matches_reference(radices: List[int], n: int, seed: int) -> None:
    codec = SIDCodec.mixed_radix(radices)
    assert codec.groups == [] and codec.num_groups == 0
    sids = check_against_reference(codec, random_codes(radices, n, seed))
    assert bool((sids >= 0).all())


@SETTINGS
@given(radices=mixed_small_radices, n=st.integers(1, 30), seed=st.integers(0, 2**31))
def test_mixed_radix_int32_codes(radices: List[int], n: int, seed: int) -> None:
    codec = SIDCodec.mixed_radix(radices)
    codes = random_codes(radices, n, seed)
    assert torch.equal(codec.pack(codes.int()), codec.pack(codes))


@SETTINGS
@given(radices=byte_radices, n=st.integers(0, 40), seed=st.integers(0, 2**31))
def test_byte_grouped_matches_reference(radices: List[int], n: int, seed: int) -> None:
    codec = SIDCodec.byte_grouped(radices)
    assert codec.groups == ref_groups(radices)
    assert 1 <= codec.num_groups <= 8
    assert codec.group_radices == [math.prod(radices[s:e]) for s, e in codec.groups]
    assert all(r <= 256 for r in codec.group_radices)
    codes = random_codes(radices, n, seed)
    sids = check_against_reference(codec, codes)

    # group bytes agree with the reference group values and with unpack
    gb = codec.group_bytes(sids)
    assert gb.dtype == torch.uint8 and gb.shape == (n, codec.num_groups)
    assert gb.tolist() == [ref_group_values(radices, r) for r in codes.tolist()]
    digits = codec.unpack(sids)
    for g, (s, e) in enumerate(codec.groups):
        stride, recombined = 1, torch.zeros(n, dtype=torch.int64)
        for level in range(s, e):
            recombined += digits[:, level] * stride
            stride *= radices[level]
        assert torch.equal(gb[:, g].long(), recombined)
        # the per-group digit table decodes each byte value
        table = codec.group_digit_table(g)
        assert table.shape == (codec.group_radices[g], e - s)
        assert torch.equal(table[gb[:, g].long()], digits[:, s:e])


@SETTINGS
@given(radices=byte_radices, n=st.integers(1, 30), seed=st.integers(0, 2**31))
def test_byte_grouped_int8_and_uint8_codes(
    radices: List[int], n: int, seed: int
) -> None:
    codec = SIDCodec.byte_grouped(radices)
    codes = random_codes(radices, n, seed)
    assert torch.equal(codec.pack(codes.to(torch.uint8)), codec.pack(codes))
    if max(radices) <= 128:
        assert torch.equal(codec.pack(codes.to(torch.int8)), codec.pack(codes))


@SETTINGS
@given(
    radices=st.one_of(mixed_radices, byte_radices),
    layout=st.sampled_from(["mixed_radix", "byte_grouped"]),
    seed=st.integers(0, 2**31),
)
def test_portable_paths_agree(radices: List[int], layout: str, seed: int) -> None:
    """The device-generic (non-mv) pack and the shift-based byte split agree."""
    if layout == "byte_grouped":
        radices = _prefix_byte([min(k, 256) for k in radices])
    codec = SIDCodec(tuple(radices), layout)
    codes = random_codes(radices, 17, seed)
    fast = codec._pack_block(codes, use_mv=True)
    portable = codec._pack_block(codes, use_mv=False)
    assert torch.equal(fast, portable)
    assert torch.equal(codec_mod._bytes_arith(fast), SIDCodec._bytes_view(fast))


@pytest.mark.parametrize(
    "layout,radices",
    [
        ("byte_grouped", [3] * 40),
        ("byte_grouped", [256, 256, 256]),
        ("byte_grouped", [7, 7, 5, 256, 3, 3, 3, 2, 200]),
        ("mixed_radix", [3] * 39),
        ("mixed_radix", [256] * 3),
        ("mixed_radix", [2**20, 3, 3, 1000, 7]),
    ],
)
def test_block_boundaries(
    monkeypatch: pytest.MonkeyPatch, layout: str, radices: List[int]
) -> None:
    """Row blocks stitch together (CPU works in blocks of rows)."""
    codec = SIDCodec(tuple(radices), layout)
    codes = random_codes(radices, 23, seed=5)
    whole = codec.pack(codes)
    monkeypatch.setattr(codec_mod, "_CPU_BLOCK_ROWS", 5)
    assert torch.equal(codec.pack(codes), whole)
    assert torch.equal(codec.unpack(whole), codes)


def test_non_contiguous_inputs() -> None:
    codec = SIDCodec.byte_grouped([3] * 40)
    codes = random_codes([3] * 40, 50, seed=1)
    strided = codes.t().contiguous().t()  # same values, column-major
    assert not strided.is_contiguous()
    sids = codec.pack(strided)
    assert torch.equal(sids, codec.pack(codes))
    every_other = sids[::2]
    assert torch.equal(codec.unpack(every_other), codes[::2])
    assert torch.equal(
        codec.group_bytes(every_other).long(), codec.group_bytes(sids)[::2].long()
    )


def test_large_batch_round_trip() -> None:
    n = 200_000
    for codec in (SIDCodec.byte_grouped([3] * 40), SIDCodec.mixed_radix([3] * 39)):
        codes = torch.randint(0, 3, (n, codec.num_levels), dtype=torch.int32)
        assert torch.equal(codec.unpack(codec.pack(codes)), codes.long())


# --------------------------------------------------------------------------
# the documented layouts and limits
# --------------------------------------------------------------------------


def test_forty_ternary_digits_fill_eight_bytes() -> None:
    codec = SIDCodec.byte_grouped([3] * 40)
    assert codec.groups == [(5 * g, 5 * g + 5) for g in range(8)]
    assert codec.group_radices == [243] * 8
    assert codec.num_levels == 40
    assert codec.bits_per_event == 64 and codec.bytes_per_event == 8
    assert codec.min_bits == pytest.approx(40 * math.log2(3))
    assert codec.min_bytes_per_event == 8

    top = torch.full((1, 40), 2)
    sid = codec.pack(top)
    # every byte is 242 = 0xF2; the container's sign bit is set
    assert sid.item() == to_signed64(int("F2" * 8, 16))
    assert sid.item() < 0
    assert int((sid >> 63) & 1) == 1
    assert codec.group_bytes(sid).tolist() == [[242] * 8]
    assert torch.equal(codec.unpack(sid), top)

    # a digit in the last group alone sets only the top byte
    codes = torch.zeros(1, 40, dtype=torch.int64)
    codes[0, 39] = 2  # 2 * 3**4 = 162 in byte 7
    assert codec.pack(codes).item() == to_signed64(162 << 56)


def test_rq_3x256_layouts() -> None:
    byte = SIDCodec.byte_grouped([256, 256, 256])
    mixed = SIDCodec.mixed_radix([256, 256, 256])
    assert byte.groups == [(0, 1), (1, 2), (2, 3)]
    assert byte.group_radices == [256, 256, 256]
    codes = torch.tensor([[1, 2, 3], [255, 255, 255]])
    assert byte.pack(codes).tolist() == [0x030201, 0xFFFFFF]
    assert torch.equal(mixed.pack(codes), byte.pack(codes))
    assert byte.min_bits == 24.0 and byte.min_bytes_per_event == 3
    assert mixed.num_sids == 2**24


def test_mixed_radix_capacity() -> None:
    with pytest.raises(SIDValueError, match=r"2\*\*63") as err:
        SIDCodec.mixed_radix([3] * 40)
    assert "39 ternary" in str(err.value)
    codec = SIDCodec.mixed_radix([3] * 39)
    top = torch.full((1, 39), 2)
    assert codec.pack(top).item() == 3**39 - 1
    assert torch.equal(codec.unpack(codec.pack(top)), top)
    assert codec.min_bytes_per_event == 8

    # exactly 2**63 distinct SIDs is the limit
    binary = SIDCodec.mixed_radix([2] * 63)
    assert binary.pack(torch.ones(1, 63, dtype=torch.int64)).item() == TWO_63 - 1
    assert binary.validate_sids(torch.tensor([TWO_63 - 1])) is None
    with pytest.raises(SIDValueError, match=r"2\*\*63"):
        SIDCodec.mixed_radix([2] * 64)


def test_byte_grouped_limits() -> None:
    with pytest.raises(SIDValueError, match=r"9 byte groups > 8"):
        SIDCodec.byte_grouped([3] * 41)
    with pytest.raises(SIDValueError, match=r"level 1 has radix 300 > 256"):
        SIDCodec.byte_grouped([4, 300])
    assert SIDCodec.byte_grouped([256] * 8).num_groups == 8
    with pytest.raises(SIDValueError, match="byte groups"):
        SIDCodec.byte_grouped([256] * 9)


@pytest.mark.parametrize(
    "radices,match",
    [
        ([], "at least one level"),
        ([3, 1], "level 1: radix 1 must be >= 2"),
        ([3, 0], "level 1: radix 0"),
        ([3.0, 3], "level 0: radix 3.0 is not an integer"),
        ([True, 3], "not an integer"),
    ],
)
def test_bad_radices(radices: list, match: str) -> None:
    with pytest.raises(SIDValueError, match=re.escape(match)):
        SIDCodec.mixed_radix(radices)


def test_radices_accept_integer_scalars() -> None:
    codec = SIDCodec.mixed_radix([torch.tensor(3), 4])
    assert codec.radices == (3, 4)
    assert all(type(k) is int for k in codec.radices)


def test_unknown_layout() -> None:
    with pytest.raises(SIDValueError, match="unknown SID layout"):
        SIDCodec((3, 3), "packed")


def test_bits_and_bytes() -> None:
    codec = SIDCodec.mixed_radix([2] * 9)
    assert codec.min_bits == 9.0 and codec.min_bytes_per_event == 2
    codec = SIDCodec.byte_grouped([2] * 8)
    assert codec.min_bits == 8.0 and codec.min_bytes_per_event == 1
    assert codec.num_groups == 1


# --------------------------------------------------------------------------
# validation and error messages
# --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["mixed_radix", "byte_grouped"])
@pytest.mark.parametrize("level,value", [(0, 4), (3, 5), (3, -1), (5, 256), (2, -7)])
def test_out_of_range_code_names_level_and_value(
    layout: str, level: int, value: int
) -> None:
    radices = [4, 4, 4, 3, 7, 9]
    codec = SIDCodec(tuple(radices), layout)
    codes = random_codes(radices, 10, seed=0)
    codes[6, level] = value
    expected = f"level {level}: code {value} out of range [0, {radices[level]}) (row 6)"
    with pytest.raises(SIDValueError, match=re.escape(expected)):
        codec.validate_codes(codes)
    with pytest.raises(SIDValueError, match=re.escape(expected)):
        codec.pack(codes)


@SETTINGS
@given(
    radices=byte_radices,
    seed=st.integers(0, 2**31),
    data=st.data(),
)
def test_out_of_range_code_found(radices: List[int], seed: int, data) -> None:
    codec = SIDCodec.byte_grouped(radices)
    n = data.draw(st.integers(1, 20))
    codes = random_codes(radices, n, seed)
    row = data.draw(st.integers(0, n - 1))
    level = data.draw(st.integers(0, len(radices) - 1))
    k = radices[level]
    value = data.draw(st.one_of(st.integers(k, 10**6), st.integers(-(10**6), -1)))
    codes[row, level] = value
    with pytest.raises(SIDValueError) as err:
        codec.pack(codes)
    assert f"level {level}: code {value} out of range [0, {k}) (row {row})" in str(
        err.value
    )


def test_validate_codes_fast_and_slow_paths() -> None:
    codec = SIDCodec.mixed_radix([3, 256, 5])
    ok = torch.tensor([[2, 255, 4]] * 130)  # > 64 rows: the folded column max
    codec.validate_codes(ok)
    bad = ok.clone()
    bad[129, 2] = 5
    msg = "level 2: code 5 out of range [0, 5) (row 129)"
    with pytest.raises(SIDValueError, match=re.escape(msg)):
        codec.validate_codes(bad)
    bad = ok.clone()
    bad[77, 0] = 3
    msg = "level 0: code 3 out of range [0, 3) (row 77)"
    with pytest.raises(SIDValueError, match=re.escape(msg)):
        codec.validate_codes(bad)


def test_negative_mixed_radix_sid_raises() -> None:
    codec = SIDCodec.mixed_radix([3] * 4)
    msg = "SID -5 at index 1 out of range [0, 81)"
    with pytest.raises(SIDValueError, match=re.escape(msg)) as err:
        codec.unpack(torch.tensor([3, -5, 7]))
    assert "negative" in str(err.value)
    msg = "SID 81 at index 0 out of range [0, 81)"
    with pytest.raises(SIDValueError, match=re.escape(msg)):
        codec.validate_sids(torch.tensor([81]))
    codec.validate_sids(torch.tensor([0, 80]))


def test_invalid_bytes_raise() -> None:
    codec = SIDCodec.byte_grouped([3] * 10)  # 2 groups of 243
    bad_group = torch.tensor([0, 243 << 8], dtype=torch.int64)
    msg = "byte group 1 (levels 5..9): value 243 out of range [0, 243)"
    with pytest.raises(SIDValueError, match=re.escape(msg)):
        codec.validate_sids(bad_group)
    with pytest.raises(SIDValueError, match=re.escape(msg)):
        codec.unpack(bad_group)
    with pytest.raises(SIDValueError, match=re.escape(msg)):
        codec.group_bytes(bad_group)
    unused = torch.tensor([1 << 40])
    msg = "byte group 5: value 1 out of range [0, 1)"
    with pytest.raises(SIDValueError, match=re.escape(msg)):
        codec.validate_sids(unused)
    # a negative int64 sets byte 7, unused by this codec
    with pytest.raises(SIDValueError, match=re.escape("byte group 7: value 128")):
        codec.validate_sids(torch.tensor([-(2**63)]))

    full = SIDCodec.byte_grouped([3] * 40)
    msg = "byte group 7 (levels 35..39): value 243 out of range [0, 243)"
    with pytest.raises(SIDValueError, match=re.escape(msg)):
        full.validate_sids(torch.tensor([to_signed64(243 << 56)]))
    full.validate_sids(torch.tensor([to_signed64(242 << 56), -(2**63)]))
    # 130 SIDs: exercises the folded per-byte max
    ok = full.pack(random_codes([3] * 40, 130, seed=3))
    full.validate_sids(ok)
    ok[100] = ok[100] | (0xFF << 16)
    with pytest.raises(SIDValueError, match="byte group 2 .* at index 100"):
        full.validate_sids(ok)


def test_unvalidated_unpack_stays_in_range() -> None:
    for codec, junk in [
        (SIDCodec.byte_grouped([3] * 10), torch.tensor([-1, 2**40, 255])),
        (SIDCodec.byte_grouped([200, 100]), torch.tensor([-1, 255 << 8, 201])),
        (SIDCodec.mixed_radix([3] * 10), torch.tensor([-1, 3**10, 2**62])),
    ]:
        out = codec.unpack(junk, validate=False)
        assert out.shape == (3, codec.num_levels)
        k = torch.tensor(codec.radices)
        assert bool(((out >= 0) & (out < k)).all())


@pytest.mark.parametrize("layout", ["mixed_radix", "byte_grouped"])
def test_wrong_codes_shape_and_dtype(layout: str) -> None:
    codec = SIDCodec((3, 3, 3), layout)
    cases = [
        (torch.zeros(4, 3, dtype=torch.float32), "integer dtype"),
        (torch.zeros(4, 3, dtype=torch.bool), "integer dtype"),
        (torch.zeros(3, dtype=torch.int64), "2-D"),
        (torch.zeros(2, 4, 3, dtype=torch.int64), "2-D"),
        (torch.zeros(4, 2, dtype=torch.int64), "L=3 columns"),
    ]
    for codes, match in cases:
        for fn in (codec.validate_codes, codec.pack):
            with pytest.raises(SIDValueError, match=re.escape(match)):
                fn(codes)
        with pytest.raises(SIDValueError, match=re.escape(match)):
            codec.pack(codes, validate=False)
    with pytest.raises(TypeError):
        codec.pack([[0, 1, 2]])  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", ["mixed_radix", "byte_grouped"])
def test_wrong_sids_shape_and_dtype(layout: str) -> None:
    codec = SIDCodec((3, 3, 3), layout)
    cases = [
        (torch.zeros(4, dtype=torch.int32), "must be int64"),
        (torch.zeros(4, dtype=torch.float64), "must be int64"),
        (torch.zeros(4, 1, dtype=torch.int64), "1-D"),
        (torch.zeros((), dtype=torch.int64), "1-D"),
    ]
    for sids, match in cases:
        fns = [codec.validate_sids, codec.unpack]
        if layout == "byte_grouped":
            fns.append(codec.group_bytes)
        for fn in fns:
            with pytest.raises(SIDValueError, match=re.escape(match)):
                fn(sids)
        with pytest.raises(SIDValueError, match=re.escape(match)):
            codec.unpack(sids, validate=False)
    with pytest.raises(TypeError):
        codec.unpack([1, 2])  # type: ignore[arg-type]


def test_byte_only_api_on_mixed_radix() -> None:
    codec = SIDCodec.mixed_radix([3, 3])
    with pytest.raises(SIDValueError, match="byte_grouped layout"):
        codec.group_bytes(torch.tensor([1]))
    with pytest.raises(SIDValueError, match="byte_grouped layout"):
        codec.group_digit_table(0)
    msg = "byte group 2 out of range [0, 2)"
    with pytest.raises(SIDValueError, match=re.escape(msg)):
        SIDCodec.byte_grouped([3] * 10).group_digit_table(2)


def test_empty_inputs() -> None:
    for codec in (SIDCodec.mixed_radix([3, 5]), SIDCodec.byte_grouped([3, 5])):
        sids = codec.pack(torch.zeros(0, 2, dtype=torch.int64))
        assert sids.shape == (0,)
        assert codec.unpack(sids).shape == (0, 2)
    assert SIDCodec.byte_grouped([3, 5]).group_bytes(sids).shape == (0, 1)


# --------------------------------------------------------------------------
# config behaviour
# --------------------------------------------------------------------------


@SETTINGS
@given(radices=byte_radices, layout=st.sampled_from(["mixed_radix", "byte_grouped"]))
def test_dict_round_trip(radices: List[int], layout: str) -> None:
    if layout == "mixed_radix":
        radices = _prefix_mixed(radices)
    codec = SIDCodec(tuple(radices), layout)
    d = json.loads(json.dumps(codec.to_dict()))
    assert d == {"version": 1, "layout": layout, "radices": radices}
    again = SIDCodec.from_dict(d)
    assert again == codec and hash(again) == hash(codec)
    assert again.groups == codec.groups


def test_from_dict_errors() -> None:
    with pytest.raises(SIDValueError, match="missing keys"):
        SIDCodec.from_dict({"radices": [3]})
    with pytest.raises(SIDValueError, match="version"):
        SIDCodec.from_dict({"version": 2, "layout": "mixed_radix", "radices": [3]})
    with pytest.raises(SIDValueError, match=r"2\*\*63"):
        SIDCodec.from_dict({"layout": "mixed_radix", "radices": [3] * 40})


def test_codec_is_frozen_and_comparable() -> None:
    a = SIDCodec.byte_grouped([3] * 5)
    assert a == SIDCodec.byte_grouped((3, 3, 3, 3, 3))
    assert a != SIDCodec.mixed_radix([3] * 5)
    with pytest.raises(AttributeError):
        a.radices = (2,)  # type: ignore[misc]
    assert "byte_grouped" in repr(a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    "layout,radices",
    [
        ("byte_grouped", [3] * 40),
        ("mixed_radix", [3] * 39),
        ("mixed_radix", [2**20, 3, 1000]),
        ("byte_grouped", [7, 7, 5, 256, 3]),
    ],
)
def test_cuda_matches_cpu(layout: str, radices: List[int]) -> None:
    codec = SIDCodec(tuple(radices), layout)
    codes = random_codes(radices, 1000, seed=0)
    sids = codec.pack(codes)
    sids_cuda = codec.pack(codes.cuda())
    assert sids_cuda.is_cuda and torch.equal(sids_cuda.cpu(), sids)
    back = codec.unpack(sids_cuda)
    assert back.is_cuda and torch.equal(back.cpu(), codes)
    if layout == "byte_grouped":
        gb = codec.group_bytes(sids_cuda)
        assert torch.equal(gb.cpu(), codec.group_bytes(sids))
    bad = codes.cuda()
    bad[3, 1] = radices[1]
    with pytest.raises(SIDValueError, match=re.escape(f"level 1: code {radices[1]}")):
        codec.pack(bad)
