# pyre-strict
"""Item data for the tokenizer: a small container, MovieLens-100K preparation, synthetic items.

MovieLens-100K follows docs/design.md section 7: the collaborative embedding is fitted on the
*training* rating events of the global time split only
(:func:`torchrec_side.data.protocol.training_interactions`: the first 80% of events by
timestamp, ties going to the later split, exactly the split the ranking models train on), so
nothing from validation or test events reaches the tokenizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from torchrec_side.tokenizer.config import DataConfig, FusionModelConfig

__all__ = [
    "ItemData",
    "load_ml100k_items",
    "make_synthetic_items",
    "load_items_for",
    "load_world_items",
    "world_fit_mask",
    "split_items",
]


@dataclass
class ItemData:
    """Content and categorical targets of ``N`` items.

    Args:
        item_ids: ``int64 [N]`` item ids (written to the SID table).
        collections: ``{name: float [N, d_m]}`` content embeddings (all-zero row = missing).
        targets: ``{name: [N, C]}`` multi-label 0/1 or ``{name: int64 [N]}`` class indices.
        target_kinds: ``{name: "multi_label" | "single_label"}``.
        num_classes: ``{name: C}``.
        info: free-form provenance (JSON-serializable), copied into the statistics.
        fit_mask: optional ``bool [N]``: the items the tokenizer may be fitted on (train and
            validation split); the others are only encoded. ``None``: every item.

    Example::

        data = make_synthetic_items(num_items=500, dims={"a": 32, "b": 16})
        sub = data.subset(torch.arange(100))      # first 100 items
        data.dims                                  # {'a': 32, 'b': 16}
    """

    item_ids: torch.Tensor
    collections: Dict[str, torch.Tensor]
    targets: Dict[str, torch.Tensor] = field(default_factory=dict)
    target_kinds: Dict[str, str] = field(default_factory=dict)
    num_classes: Dict[str, int] = field(default_factory=dict)
    info: Dict[str, object] = field(default_factory=dict)
    fit_mask: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        n = int(self.item_ids.shape[0])
        if self.fit_mask is not None and tuple(self.fit_mask.shape) != (n,):
            raise ValueError(f"fit_mask has shape {tuple(self.fit_mask.shape)} but there are {n} item ids")
        for name, x in list(self.collections.items()) + list(self.targets.items()):
            if x.shape[0] != n:
                raise ValueError(f"{name!r} has {x.shape[0]} rows but there are {n} item ids")
        for name, y in self.targets.items():
            kind = self.target_kinds.get(name, "multi_label" if y.dim() == 2 else "single_label")
            self.target_kinds[name] = kind
            if name not in self.num_classes:
                self.num_classes[name] = int(y.shape[1]) if kind == "multi_label" else int(y.max()) + 1

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def dims(self) -> Dict[str, int]:
        """``{collection: d_m}``."""
        return {k: int(v.shape[1]) for k, v in self.collections.items()}

    def subset(self, index: torch.Tensor) -> "ItemData":
        """The items at ``index`` (``int64 [n]`` or ``bool [N]``)."""
        return ItemData(
            item_ids=self.item_ids[index],
            collections={k: v[index] for k, v in self.collections.items()},
            targets={k: v[index] for k, v in self.targets.items()},
            target_kinds=dict(self.target_kinds),
            num_classes=dict(self.num_classes),
            info=dict(self.info),
            fit_mask=None if self.fit_mask is None else self.fit_mask[index],
        )

    def select(self, collections: List[str], targets: List[str]) -> "ItemData":
        """Only the named collections and targets (a clear error names what is unavailable)."""
        miss_c = [c for c in collections if c not in self.collections]
        miss_t = [t for t in targets if t not in self.targets]
        if miss_c or miss_t:
            raise KeyError(
                f"unknown collections {miss_c} / targets {miss_t}; this data has collections "
                f"{sorted(self.collections)} and targets {sorted(self.targets)}"
            )
        return ItemData(
            item_ids=self.item_ids,
            collections={k: self.collections[k] for k in collections},
            targets={k: self.targets[k] for k in targets},
            target_kinds={k: self.target_kinds[k] for k in targets},
            num_classes={k: self.num_classes[k] for k in targets},
            info=dict(self.info),
            fit_mask=self.fit_mask,
        )


def split_items(num_items: int, val_fraction: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of item positions into ``(train [N - n_val], val [n_val])`` (sorted).

    ``n_val = round(val_fraction * N)``, at least 1 when ``val_fraction > 0`` and ``N > 1``.
    """
    n_val = int(round(val_fraction * num_items))
    if val_fraction > 0 and num_items > 1:
        n_val = min(max(n_val, 1), num_items - 1)
    perm = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed + 7919))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def load_ml100k_items(config: Optional[DataConfig] = None, need_collaborative: bool = True) -> ItemData:
    """MovieLens-100K items: collections ``minilm`` [1682, 384] and ``collaborative``
    [1682, cf_dim]; targets ``genres`` (multi-label, 19) and ``year_bucket`` (single-label, 7).

    The collaborative embedding is fitted on the first ``config.train_fraction`` of rating events
    by time only; items without a training event get an all-zero (missing) row.

    Args:
        config: :class:`~torchrec_side.tokenizer.config.DataConfig`.
        need_collaborative: skip the collaborative embedding (faster) when ``False``.
    """
    from torchrec_side.data import content, movielens
    from torchrec_side.data.protocol import training_interactions

    cfg = config or DataConfig()
    ml = movielens.load_movielens(cfg.root)
    items = content.load_items(cfg.root)
    collections: Dict[str, torch.Tensor] = {"minilm": items.text_vectors.float()}
    info: Dict[str, object] = {"dataset": "ml100k", "source": ml.source, "num_items": items.num_items}
    if need_collaborative:
        val_fraction = min(0.1, (1.0 - cfg.train_fraction) / 2)
        train = training_interactions(ml.ratings, cfg.train_fraction, val_fraction)
        collections["collaborative"] = content.collaborative_embeddings(
            train.user_id, train.item_id, ml.num_users, ml.num_items, dim=cfg.cf_dim, seed=cfg.cf_seed
        )
        n_cold = int((collections["collaborative"].abs().sum(1) == 0).sum())
        info.update(
            {
                "cf_train_events": len(train),
                "cf_train_fraction": cfg.train_fraction,
                "cf_last_train_timestamp": int(train.timestamp.max()),
                "items_without_train_events": n_cold,
            }
        )
    return ItemData(
        item_ids=items.raw_id.long(),
        collections=collections,
        targets={"genres": items.genres.float(), "year_bucket": items.year_bucket.long()},
        target_kinds={"genres": "multi_label", "year_bucket": "single_label"},
        num_classes={"genres": items.num_genres, "year_bucket": items.num_year_buckets},
        info=info,
    )


def make_synthetic_items(
    num_items: int = 2000,
    dims: Optional[Mapping[str, int]] = None,
    num_clusters: int = 16,
    latent_dim: int = 8,
    num_labels: int = 6,
    noise: float = 0.1,
    seed: int = 0,
) -> ItemData:
    """Clustered synthetic items: each collection is a random nonlinear view of a shared latent.

    Item ``i`` belongs to cluster ``k_i``; its latent is ``mu_{k_i} + 0.3 * eps``. Collection
    ``m`` is ``tanh(latent @ W_m) + noise``. Targets: ``"single"`` = the cluster id modulo 5
    (single-label) and ``"multi"`` = ``num_labels`` cluster-dependent flags (multi-label).

    Args:
        num_items: ``N``.
        dims: ``{collection: d_m}``; default ``{"a": 32, "b": 24, "c": 16}``.
        num_clusters: number of clusters.
        latent_dim: width of the shared latent.
        num_labels: multi-label classes.
        noise: std of per-collection noise.
        seed: generator seed.
    """
    g = torch.Generator().manual_seed(seed)
    dims = dict(dims or {"a": 32, "b": 24, "c": 16})
    mu = torch.randn(num_clusters, latent_dim, generator=g) * 2.0
    cluster = torch.randint(num_clusters, (num_items,), generator=g)
    lat = mu[cluster] + 0.3 * torch.randn(num_items, latent_dim, generator=g)
    collections = {}
    for name, d in dims.items():
        w = torch.randn(latent_dim, d, generator=g) / math.sqrt(latent_dim)
        collections[name] = torch.tanh(lat @ w) + noise * torch.randn(num_items, d, generator=g)
    flags = torch.rand(num_clusters, num_labels, generator=g) < 0.3
    return ItemData(
        item_ids=torch.arange(num_items, dtype=torch.long) + 1,
        collections=collections,
        targets={"multi": flags[cluster].float(), "single": cluster % 5},
        target_kinds={"multi": "multi_label", "single": "single_label"},
        num_classes={"multi": num_labels, "single": 5},
        info={"dataset": "synthetic", "num_clusters": num_clusters, "seed": seed},
    )


def world_fit_mask(world_dir: str) -> torch.Tensor:
    """``bool [N]``: the items of a simulated world released before its validation window
    (``items.parquet`` ``release_time < manifest split_times.val``), the only ones a tokenizer or
    quantizer is fitted on; the others are encoded by the frozen artifact.

    Example::

        world_fit_mask("runs/world_tiny").float().mean()     # about 0.9
    """
    import pyarrow.parquet as pq

    from torchrec_side.data.adsworld import read_manifest

    root = Path(world_dir)
    manifest = read_manifest(root)
    return _released_before_val(pq.read_table(root / "items.parquet", columns=["release_time"]).column(0).to_numpy(),
                                manifest)


def _released_before_val(release_time: Any, manifest: Dict[str, Any]) -> torch.Tensor:
    """``bool [N]``: ``release_time < manifest split_times.val`` (the rule of :func:`world_fit_mask`)."""
    import numpy as np

    return torch.from_numpy(np.array(release_time, dtype=np.int64) < int(manifest["split_times"]["val"]))


def load_world_items(world_dir: str, collections: Optional[List[str]] = None) -> ItemData:
    """Items of a simulated ads world folder (docs/design.md section 7c; ``torchrec-side world``).

    Collections ``text`` [N, 384] and ``image`` [N, 128] (``content/<name>.npy``, float16 on disk,
    float32 here); single-label targets from ``items.parquet``: ``category``, ``subcategory`` (the
    sub-category's index *within* its category, ``S`` classes: with the category head it names the
    leaf, at a head and an evaluation cost of ``S`` instead of ``C x S`` classes, e.g. 10 instead
    of 3,000 in the quick world) and ``subcategory_global`` (the leaf id, ``C x S`` classes). The
    hidden ``quality`` and the interactions are not read. ``fit_mask``: the items released before
    the validation window (``release_time < split_times.val``), the only ones the tokenizer is
    fitted on (issue 15); newer items are encoded by the frozen tokenizer.

    Args:
        world_dir: the world folder.
        collections: the collections to load (default both).

    Example::

        items = load_world_items("runs/world_tiny", ["text"])
        items.dims                                        # {'text': 384}
    """
    import numpy as np
    import pyarrow.parquet as pq

    from torchrec_side.data.adsworld import read_manifest

    root = Path(world_dir)
    manifest = read_manifest(root)  # ArtifactError naming the folder when it is not a world
    t = pq.read_table(root / "items.parquet", columns=["item_id", "category", "subcategory", "release_time"])
    ids = np.array(t.column("item_id").to_numpy(), dtype=np.int64)
    out: Dict[str, torch.Tensor] = {}
    for name in collections or ["text", "image"]:
        f = root / "content" / f"{name}.npy"
        if not f.is_file():
            raise FileNotFoundError(f"data.world_dir {world_dir}: collection {name!r} has no file {f}")
        x = np.load(f, mmap_mode="r")
        if x.shape[0] != ids.shape[0]:
            raise ValueError(f"{f}: {x.shape[0]} rows but items.parquet has {ids.shape[0]} items")
        out[name] = torch.from_numpy(np.asarray(x, dtype=np.float32))
    cat = torch.from_numpy(np.array(t.column("category").to_numpy(), dtype=np.int64))
    leaf = torch.from_numpy(np.array(t.column("subcategory").to_numpy(), dtype=np.int64))
    per = int(manifest["config"]["catalogue"]["subcategories_per_category"])
    fit_mask = _released_before_val(t.column("release_time").to_numpy(), manifest)
    local = leaf - cat * per
    if bool((local < 0).any()) or bool((local >= per).any()):
        raise ValueError(f"{root / 'items.parquet'}: subcategory ids are not category * {per} + local index")
    return ItemData(
        item_ids=torch.from_numpy(ids),
        collections=out,
        targets={"category": cat, "subcategory": local, "subcategory_global": leaf},
        target_kinds={"category": "single_label", "subcategory": "single_label", "subcategory_global": "single_label"},
        num_classes={"subcategory": per},
        info={"dataset": "adsworld", "world_dir": str(root), "num_items": int(ids.shape[0]),
              "fit_items": int(fit_mask.sum()), "fit_rule": "release_time < split_times.val"},
        fit_mask=fit_mask,
    )


def load_items_for(data: DataConfig, model: FusionModelConfig) -> ItemData:
    """Loads what ``model`` names (its collections and targets) from ``data``'s dataset."""
    names_c = [c.name for c in model.collections]
    names_t = [t.name for t in model.targets]
    if data.dataset == "ml100k":
        items = load_ml100k_items(data, need_collaborative="collaborative" in names_c)
    elif data.dataset == "adsworld":
        items = load_world_items(str(data.world_dir), [c for c in names_c if c in ("text", "image")] or None)
    else:
        items = make_synthetic_items(num_items=data.synthetic_items, num_clusters=data.synthetic_clusters, seed=data.synthetic_seed)
    out = items.select(names_c, names_t)
    for t in model.targets:
        if out.target_kinds[t.name] != t.kind:
            raise ValueError(f"target {t.name!r} is {out.target_kinds[t.name]} in the data but {t.kind} in the config")
    return out
