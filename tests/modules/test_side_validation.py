"""Bad inputs raise clear errors (and the checks can be switched off)."""

from __future__ import annotations

from typing import List

import pytest
import torch

from torchrec_side.modules import (
    SIDEmbeddingBagCollection,
    SIDEmbeddingBagConfig,
    SIDEmbeddingCollection,
    SIDEmbeddingConfig,
    SIDInputError,
    SIDTables,
    SIDTokenConfig,
    SIDTokenMapper,
    TraditionalSIDEmbeddingBagCollection,
)
from torchrec_side.modules.ops import cpu_kernel
from torchrec_side.sid.codec import SIDCodec, SIDValueError

from factories import kjt, random_tables

PATHS = ["auto", "kernel", "grouped_bag", "grouped_hist", "per_level", "reference"]


def tables(radices: List[int]) -> SIDTables:
    return random_tables(radices, 4, seed=0)


def side(codec: SIDCodec, compute: str = "auto", validate: bool = True,
         weighted: bool = False) -> SIDEmbeddingBagCollection:
    return SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(
        name="t", feature_names=["h"], codec=codec, compute=compute)],
        validate=validate, is_weighted=weighted, sid_tables={"t": tables(list(codec.radices))})


@pytest.mark.parametrize("compute", PATHS)
@pytest.mark.parametrize("long_bag", [False, True])
def test_digit_out_of_range_byte_grouped(compute, long_bag) -> None:
    if compute == "kernel" and not cpu_kernel.kernels_available():
        pytest.skip("no kernel")
    codec = SIDCodec.byte_grouped([3] * 10)  # 2 groups of 243
    n = 100 if long_bag else 4
    codes = torch.ones(n, 10, dtype=torch.long)
    sids = codec.pack(codes)
    sids[n - 2] = sids[n - 2] | (250 << 8)  # byte 1 = 250+ > 242
    with pytest.raises(SIDValueError, match=r"byte group 1 \(levels 5\.\.9\)"):
        side(codec, compute)(kjt(sids, [n]))
    bad_high = codec.pack(codes)
    bad_high[1] = bad_high[1] | (1 << 40)  # unused byte 5
    with pytest.raises(SIDValueError, match="byte group 5"):
        side(codec, compute)(kjt(bad_high, [n]))


@pytest.mark.parametrize("compute", ["auto", "per_level", "reference"])
def test_mixed_radix_negative_and_too_large(compute) -> None:
    codec = SIDCodec.mixed_radix([3] * 6)
    with pytest.raises(SIDValueError, match="negative"):
        side(codec, compute)(kjt(torch.tensor([5, -1, 2]), [3]))
    with pytest.raises(SIDValueError, match="out of range"):
        side(codec, compute)(kjt(torch.tensor([3**6]), [1]))


def test_validation_off_does_not_raise_or_crash() -> None:
    codec = SIDCodec.byte_grouped([3] * 10)
    sids = torch.tensor([-1, 0x7FFF_FFFF_FFFF_FFFF, 0])  # every byte invalid in the first two
    for compute in ["auto", "grouped_bag", "grouped_hist"]:
        out = side(codec, compute, validate=False)(kjt(sids, [2, 1]))
        assert torch.isfinite(out.values()).all()


def test_missing_keys_and_weights() -> None:
    codec = SIDCodec.byte_grouped([4, 4])
    sids = codec.pack(torch.tensor([[1, 2], [3, 0]]))
    with pytest.raises(SIDInputError, match=r"features \['h'\] missing"):
        side(codec)(kjt(sids, [2], keys=["other"]))
    with pytest.raises(SIDInputError, match="has no weights"):
        side(codec, weighted=True)(kjt(sids, [2]))
    with pytest.raises(SIDInputError, match="weights have 3 entries for 2 values"):
        side(codec, weighted=True)(kjt(sids, [2], weights=torch.ones(3)))
    # wrong-length weights are caught even with validation off (the kernel must not read past them)
    with pytest.raises(SIDInputError):
        side(codec, weighted=True, validate=False)(kjt(sids, [2], weights=torch.ones(1)))
    sec = SIDEmbeddingCollection([SIDEmbeddingConfig(name="t", feature_names=["h"], codec=codec)],
                                 sid_tables={"t": tables([4, 4])})
    with pytest.raises(SIDInputError, match="missing"):
        sec(kjt(sids, [2], keys=["x"]))
    trad = TraditionalSIDEmbeddingBagCollection([SIDTokenConfig(name="t", feature_names=["h"], codec=codec,
                                                               embedding_dim=4)])
    with pytest.raises(SIDInputError, match="missing"):
        trad(kjt(sids, [2], keys=["x"]))
    with pytest.raises(SIDValueError):
        trad(kjt(torch.tensor([0xFFFF]), [1]))
    with pytest.raises(SIDInputError, match="weights"):
        SIDTokenMapper(trad.sid_configs())(kjt(sids, [2], weights=torch.ones(5)))


def test_bad_dtype_and_config_errors() -> None:
    codec = SIDCodec.byte_grouped([4, 4])
    with pytest.raises(SIDValueError, match="int64"):
        side(codec)(kjt(torch.tensor([1, 2], dtype=torch.int32), [2]))
    with pytest.raises(ValueError, match="do not match"):
        SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=SIDCodec.byte_grouped([4, 5]))],
                                  sid_tables={"t": tables([4, 4])})
    with pytest.raises(ValueError, match="no decoder tables.*sid_tables.*dim"):
        SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=codec)])
    with pytest.raises(ValueError, match="unknown tables"):
        SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=codec)],
                                  sid_tables={"t": tables([4, 4]), "u": tables([4, 4])})
    with pytest.raises(ValueError, match="dim=3 but the tables have D=4"):
        SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=codec, dim=3)],
                                  sid_tables={"t": tables([4, 4])})
    with pytest.raises(TypeError, match="metadata only.*sid_tables"):  # the old config-held tensors
        SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=codec, tables=tables([4, 4]))
    with pytest.raises(TypeError, match="no level_tables"):
        SIDEmbeddingBagCollection([SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=codec)],
                                  sid_tables={"t": object()})
    with pytest.raises(TypeError, match="SIDEmbeddingBagConfig"):
        SIDEmbeddingBagCollection([SIDEmbeddingConfig(name="t", feature_names=["h"], codec=codec, dim=4)])
    with pytest.raises(ValueError, match="pooling"):
        SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=codec, pooling="max")
    with pytest.raises(ValueError, match="dim must be a positive int"):
        SIDEmbeddingBagConfig(name="t", feature_names=["h"], codec=codec, dim=0)
    with pytest.raises(ValueError, match="unknown SIDE compute"):
        SIDEmbeddingConfig(name="t", feature_names=["h"], codec=codec, compute="scalar")  # pooled only
    with pytest.raises(ValueError, match="unknown SIDE compute"):
        side(codec, compute="fastest")
    with pytest.raises(ValueError, match="byte-addressable"):
        side(SIDCodec.mixed_radix([3, 3]), compute="kernel")(kjt(torch.tensor([1]), [1]))


def test_validation_on_and_off_agree_on_valid_sids() -> None:
    """On valid SIDs the checked and unchecked kernel pool the same; what the check costs in time
    is measured by ``benchmarks/lookup.py`` (``targets.validation_time_ratio``), not asserted here."""
    if not cpu_kernel.kernels_available():
        pytest.skip("no kernel")
    codec = SIDCodec.byte_grouped([3] * 40)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 3, (3_000, 40), generator=g)
    k = kjt(codec.pack(codes), [600, 1, 0, 1_399, 1_000])
    on, off = side(codec, "kernel", validate=True), side(codec, "kernel", validate=False)
    ref = side(codec, "reference", validate=True)(k).values()
    torch.testing.assert_close(on(k).values(), off(k).values(), rtol=0, atol=0)
    torch.testing.assert_close(on(k).values(), ref, rtol=1e-5, atol=1e-4)
