"""Item content: MiniLM text embeddings (+ cache), collaborative embeddings, load_items."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from torchrec_side.data import content, fetch
from torchrec_side.data.content import (
    cache_stats,
    collaborative_embeddings,
    ItemContent,
    load_items,
    text_embeddings,
)
from torchrec_side.data.movielens import MovieLens100K

TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "Aladdin (1992). Genres: Animation, Children's, Comedy, Musical",
    "Alien (1979). Genres: Action, Horror, Sci-Fi, Thriller",
]


# the ``wheel`` and ``ml`` fixtures (the recbole wheel, MovieLens-100K loaded from it) are in tests/data/conftest.py


@pytest.fixture(scope="module")
def items(wheel: Path) -> ItemContent:
    # The one full-catalogue embedding of the suite; uses the normal cache (computed once ever).
    return load_items(root=wheel)


# --------------------------------------------------------------------------- text vectors


def test_text_embedding_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path))
    misses, hits = cache_stats.misses, cache_stats.hits
    first = text_embeddings(TEXTS)
    assert cache_stats.misses == misses + 1 and cache_stats.hits == hits
    assert first.shape == (3, 384) and first.dtype == torch.float32
    torch.testing.assert_close(first.norm(dim=1), torch.ones(3))
    files = list((tmp_path / "embeddings").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy", "one cache file, no temporaries left"

    def no_model(device: str) -> None:
        raise AssertionError("the model must not be loaded on a cache hit")

    monkeypatch.setattr(content, "_encoder", no_model)
    second = text_embeddings(TEXTS)
    assert cache_stats.hits == hits + 1 and cache_stats.misses == misses + 1
    assert torch.equal(first, second)
    with pytest.raises(AssertionError, match="must not be loaded"):
        text_embeddings(TEXTS[::-1])  # different key: order matters


def test_text_embedding_semantics_and_corrupt_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path))
    v = text_embeddings(TEXTS)
    sim = v @ v.T
    assert float(sim[0, 1]) > float(sim[0, 2]), "Toy Story is closer to Aladdin than to Alien"
    (cache_file,) = (tmp_path / "embeddings").iterdir()
    cache_file.write_bytes(b"garbage")  # truncated/corrupt cache: recomputed, not trusted
    misses = cache_stats.misses
    w = text_embeddings(TEXTS)
    assert cache_stats.misses == misses + 1
    torch.testing.assert_close(v, w, atol=1e-5, rtol=0)
    assert np.load(cache_file).shape == (3, 384)


def test_text_embedding_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path))
    assert text_embeddings([]).shape == (0, 384)
    with pytest.raises(TypeError, match="not one string"):
        text_embeddings("Toy Story")
    v = text_embeddings(TEXTS[:1], cache=False)
    assert v.shape == (1, 384) and not (tmp_path / "embeddings").exists()


def test_load_items(items: ItemContent) -> None:
    assert items.num_items == 1682 and len(items.text) == 1682
    assert items.text_vectors.shape == (1682, 384) and items.text_vectors.dtype == torch.float32
    assert bool(torch.isfinite(items.text_vectors).all())
    torch.testing.assert_close(items.text_vectors.norm(dim=1), torch.ones(1682), atol=1e-4, rtol=0)
    assert items.genres.shape == (1682, 19) and items.year_bucket.shape == (1682,)
    assert items.num_genres == 19 and items.num_year_buckets == 7
    assert items.text[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    # nearest neighbour of Toy Story is another animated children's film
    sim = items.text_vectors @ items.text_vectors[0]
    sim[0] = -1
    nn = int(sim.argmax())
    assert items.genres[nn, items.genre_names.index("Animation")]


def test_load_items_reuses_cache(wheel: Path, items: ItemContent) -> None:
    hits = cache_stats.hits
    again = load_items(root=wheel)
    assert cache_stats.hits == hits + 1
    assert torch.equal(again.text_vectors, items.text_vectors)


# --------------------------------------------------------------------------- collaborative


def test_collaborative_only_given_interactions(ml: MovieLens100K) -> None:
    r = ml.ratings
    n_train = int(0.8 * len(r))  # ratings are sorted by time: a global time split
    u, i = r.user_id[:n_train], r.item_id[:n_train]
    emb = collaborative_embeddings(u, i, ml.num_users, ml.num_items, dim=32, seed=0)
    assert emb.shape == (1682, 32) and emb.dtype == torch.float32
    seen = torch.zeros(1682, dtype=torch.bool)
    seen[i] = True
    assert int((~seen).sum()) > 0, "some items appear only after the split"
    assert bool((emb[~seen] == 0).all()), "items absent from the given events get zero rows"
    assert bool((emb[seen].norm(dim=1) > 0).all())


def _first_users(ml: MovieLens100K, num_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Events of users 0..num_users-1 (a small problem: fast on a busy 2-core machine)."""
    keep = ml.ratings.user_id < num_users
    return ml.ratings.user_id[keep], ml.ratings.item_id[keep]


def test_collaborative_deterministic_and_binarized(ml: MovieLens100K) -> None:
    u, i = _first_users(ml, 200)
    emb = collaborative_embeddings(u, i, 200, 1682, dim=16, seed=0)
    assert torch.equal(emb, collaborative_embeddings(u, i, 200, 1682, dim=16, seed=0))
    # blind to the order and to repeats of the events (binarized)
    perm = torch.randperm(u.numel(), generator=torch.Generator().manual_seed(1))
    shuffled = collaborative_embeddings(
        torch.cat([u[perm], u[:100]]), torch.cat([i[perm], i[:100]]), 200, 1682, dim=16
    )
    torch.testing.assert_close(emb, shuffled, atol=1e-5, rtol=0)
    # fitted on what it is given: more events change it
    more_u, more_i = _first_users(ml, 250)
    more = collaborative_embeddings(more_u, more_i, 250, 1682, dim=16)
    assert not torch.allclose(emb, more, atol=1e-3)


def _dense_reference(
    u: torch.Tensor, i: torch.Tensor, nu: int, ni: int, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain dense SVD of the degree-normalized binary matrix: (V S^(1/2) [I, dim], all S)."""
    a = torch.zeros(nu, ni, dtype=torch.float64)
    a[u, i] = 1.0
    du, di = a.sum(1, keepdim=True), a.sum(0, keepdim=True)
    a = torch.where(a > 0, a / (du * di).clamp_min(1e-300).sqrt(), a)
    _, s, vh = torch.linalg.svd(a, full_matrices=False)
    return vh[:dim].T * s[:dim].sqrt(), s


@settings(max_examples=15, deadline=None)
@given(
    nu=st.integers(2, 30), ni=st.integers(2, 30), dim=st.integers(1, 8),
    density=st.floats(0.05, 0.6), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_collaborative_matches_dense_svd(
    nu: int, ni: int, dim: int, density: float, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(nu, ni, generator=g) < density
    u, i = mask.nonzero(as_tuple=True)
    emb = collaborative_embeddings(u, i, nu, ni, dim=dim, method="exact").double()
    ref, s = _dense_reference(u, i, nu, ni, dim)
    if dim < s.numel() and float(s[dim - 1] - s[dim]) < 1e-6:
        return  # truncation inside a cluster of equal singular values: no unique answer
    # Gram matrices are invariant to the sign/rotation freedom within equal singular values
    torch.testing.assert_close(emb @ emb.T, ref @ ref.T, atol=1e-4, rtol=1e-4)


def test_collaborative_randomized_close_to_exact(ml: MovieLens100K) -> None:
    u, i = _first_users(ml, 300)
    exact = collaborative_embeddings(u, i, 300, 1682, dim=8, method="exact")
    rand = collaborative_embeddings(
        u, i, 300, 1682, dim=8, method="randomized", seed=3, num_power_iters=20
    )
    again = collaborative_embeddings(
        u, i, 300, 1682, dim=8, method="randomized", seed=3, num_power_iters=20
    )
    assert torch.equal(rand, again)
    cos = torch.nn.functional.cosine_similarity(exact, rand, dim=0)
    assert float(cos.min()) > 0.99  # same components, same sign convention


def test_collaborative_edge_cases() -> None:
    emb = collaborative_embeddings(torch.tensor([0, 1]), torch.tensor([0, 1]), 3, 4, dim=8)
    assert emb.shape == (4, 8)
    assert bool((emb[2:] == 0).all()) and bool((emb[:, 2:] == 0).all()), "beyond rank: zeros"
    # more users than items, dim beyond the rank: still finite, zeros past the rank
    tall = collaborative_embeddings(torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 0, 1, 1, 1]),
                                    6, 3, dim=5)  # fmt: skip
    assert bool(torch.isfinite(tall).all()) and bool((tall[:, 2:] == 0).all())
    assert bool((tall[2] == 0).all()) and bool((tall[:2].norm(dim=1) > 0).all())
    empty = collaborative_embeddings(torch.tensor([], dtype=torch.int64),
                                     torch.tensor([], dtype=torch.int64), 3, 4, dim=2)  # fmt: skip
    assert bool((empty == 0).all())
    with pytest.raises(ValueError, match="item_idx outside"):
        collaborative_embeddings(torch.tensor([0]), torch.tensor([4]), 3, 4)
    with pytest.raises(ValueError, match="entries"):
        collaborative_embeddings(torch.tensor([0, 1]), torch.tensor([0]), 3, 4)
    with pytest.raises(TypeError, match="integer"):
        collaborative_embeddings(torch.tensor([0.0]), torch.tensor([0]), 3, 4)
    with pytest.raises(ValueError, match="method"):
        collaborative_embeddings(torch.tensor([0]), torch.tensor([0]), 3, 4, method="als")


def test_offline_env_set_after_model_load(items: ItemContent) -> None:
    # load_items ran (maybe from cache); if the model was loaded, it was loaded offline
    if cache_stats.model_loads:
        assert os.environ.get("HF_HUB_OFFLINE") == "1"
        assert os.environ.get("TRANSFORMERS_OFFLINE") == "1"
