"""MovieLens-100K items -> Semantic IDs with two quantizers, packed into one int64 each.

    python examples/quantize_movielens.py
"""

from __future__ import annotations

from torchrec_side.data import load_items
from torchrec_side.quantizers import DPCA, RQKMeans, RQKMeansConfig
from torchrec_side.sid import SIDCodec


def main() -> None:
    items = load_items()  # titles, genres, MiniLM vectors [1682, 384] (cached)
    x = items.text_vectors.float()
    for name, q in [
        ("DPCA ternary x 40", DPCA.ternary(num_levels=40, seed=0)),
        ("RQ-KMeans 3 x 256", RQKMeans(RQKMeansConfig(radices=[256, 256, 256], seed=0))),
    ]:
        codes = q.fit(x).encode(x)  # int64 [1682, L]
        codec = SIDCodec.byte_grouped(q.radices)
        sids = codec.pack(codes)  # int64 [1682]: one SID per item
        assert (codec.unpack(sids) == codes).all()
        err = float(((x - q.decode(codes)) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
        s = q.stats(codes)
        print(
            f"{name}: {q.bits_per_item:.1f} bits in {codec.num_groups} byte groups, "
            f"relative error {err:.3f}, {s.distinct_sids} distinct SIDs, "
            f"collision rate {s.collision_rate:.4f}, level-1 perplexity {s.perplexity[0]:.1f}"
        )
        print(f"  {items.title[0]!r} -> SID {int(sids[0])} digits {codes[0, :10].tolist()}...")


if __name__ == "__main__":
    main()
