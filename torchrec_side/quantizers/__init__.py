"""Quantizers: content vectors ``[N, D]`` -> integer codes ``[N, L]`` with an additive decoder."""

from torchrec_side.quantizers.base import (
    CodebookStats,
    Quantizer,
    check_codes,
    check_finite_tables,
    check_vectors,
    codebook_stats,
    register_quantizer,
)
from torchrec_side.quantizers.dpca import DPCA, DPCAConfig, DPCALevel, allocate_bits
from torchrec_side.quantizers.kmeans import KMeansConfig, kmeans, nearest
from torchrec_side.quantizers.rq import RQKMeans, RQKMeansConfig

load_quantizer = Quantizer.load

__all__ = [
    "CodebookStats",
    "DPCA",
    "DPCAConfig",
    "DPCALevel",
    "KMeansConfig",
    "Quantizer",
    "RQKMeans",
    "RQKMeansConfig",
    "allocate_bits",
    "check_codes",
    "check_finite_tables",
    "check_vectors",
    "codebook_stats",
    "kmeans",
    "load_quantizer",
    "nearest",
    "register_quantizer",
]
