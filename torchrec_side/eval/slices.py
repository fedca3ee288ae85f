# pyre-strict
"""NE / AUC by slice, with the paired gain over control per slice (docs/design.md section 7b).

Two slice families, for every variant:

* **target-item training frequency.** The items are ranked by their count in the training split
  (``item_train_freq``), most trained first. **head** = the most trained items that together take
  the first ``head_share`` (default 50%) of the training impressions (the item that crosses the
  line included), **torso** = the next ``torso_share`` (30%), **tail** = the remaining trained items,
  **cold** = items never seen in training (count 0). Items tied on count fall on the same side of
  a cut (the cuts are count thresholds: head = count >= ``head_min``, torso = count >=
  ``torso_min``). The ranking uses a full item -> count table when one is given; otherwise the
  distinct target items of the test rows (the predictions carry the counts of those items only;
  items never shown in test are then left out of the cumulative shares, which the report says).
* **history length** (events the model saw): ``0``, ``1-9``, ``10-99``, ``100-999``, ``1000+``
  (edges configurable).

Per slice: rows, users, each variant's NE and AUC (mean over seeds), the NE gain over control with
its paired bootstrap interval (:class:`~torchrec_side.eval.stats.PairedBootstrap` over the seeds
and the users and items present in the slice, two-way as the overall numbers; fewer replicates
than the overall numbers by default), the oracle's NE and every variant's share of the oracle's
gain when ``p_true`` is known, and extra pairs (e.g. SIDE over raw content on cold items). Every
reference column the predictions carry (``p_true`` and a world's ceilings) is scored as a
pseudo-variant (:data:`REFERENCE_NAMES`: ``oracle``, ``ceiling_content``, ...).

Example::

    rep = slice_report(per_seed, variants=["control", "side"], cfg=SliceConfig())
    rep["item_freq"]["buckets"]["cold"]["gain"]["side"]["ci95"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from torchrec_side.eval.predictions import REFERENCE_VARIANTS, SeedPredictions, shared_references
from torchrec_side.eval.stats import BootstrapConfig, PairedBootstrap, UserTable, auc

__all__ = ["FREQ_BUCKETS", "SliceConfig", "frequency_cuts", "frequency_bucket", "history_bucket",
           "history_labels", "slice_report", "ORACLE",
           "CEILING_CONTENT", "REFERENCE_NAMES"]

FREQ_BUCKETS: Tuple[str, ...] = ("head", "torso", "tail", "cold")
#: Name of the oracle pseudo-variant (scores = ``p_true``).
ORACLE: str = REFERENCE_VARIANTS["p_true"]
#: Name of the content-ceiling pseudo-variant (scores = ``p_content``).
CEILING_CONTENT: str = REFERENCE_VARIANTS["p_content"]
#: Every pseudo-variant name (oracle and ceilings), in reference-column order.
REFERENCE_NAMES: Tuple[str, ...] = tuple(REFERENCE_VARIANTS.values())


@dataclass(frozen=True)
class SliceConfig:
    """Slice definitions and the bootstrap used inside each slice.

    Args:
        head_share (float): share of training impressions taken by the head items.
        torso_share (float): share taken by the torso items (after the head).
        hist_edges (Tuple[int, ...]): increasing history-length bucket edges; buckets are
            ``[0, e0)``, ``[e0, e1)``, ..., ``[e_last, inf)``.
        n_boot (int): bootstrap replicates per slice (0: no intervals).
        seed (int): bootstrap RNG seed.
        resample_items (bool): two-way bootstrap (users x items) in each slice; False: users only.
    """

    head_share: float = 0.5
    torso_share: float = 0.3
    hist_edges: Tuple[int, ...] = (1, 10, 100, 1000)
    n_boot: int = 500
    seed: int = 0
    resample_items: bool = True

    def __post_init__(self) -> None:
        if not (0.0 < self.head_share < 1.0 and 0.0 < self.torso_share and self.head_share + self.torso_share < 1.0):
            raise ValueError(f"SliceConfig: head_share={self.head_share} and torso_share={self.torso_share} must be "
                             "positive with head_share + torso_share < 1")
        e = list(self.hist_edges)
        if not e or e[0] < 1 or any(b <= a for a, b in zip(e, e[1:])):
            raise ValueError(f"SliceConfig.hist_edges must be increasing integers >= 1, got {self.hist_edges}")
        if self.n_boot != 0 and self.n_boot < 10:
            raise ValueError(f"SliceConfig.n_boot must be 0 or >= 10, got {self.n_boot}")


def frequency_cuts(counts: np.ndarray, head_share: float = 0.5, torso_share: float = 0.3) -> Tuple[int, int]:
    """Count thresholds ``(head_min, torso_min)`` from per-item training counts.

    Args:
        counts (np.ndarray): ``[I]`` training count of each (distinct) item; zeros are ignored.
        head_share (float): traffic share of the head.
        torso_share (float): traffic share of the torso.

    Returns:
        Tuple[int, int]: head = count >= head_min, torso = head_min > count >= torso_min,
        tail = torso_min > count > 0. ``(1, 1)`` when no item has training traffic.

    Example::

        frequency_cuts(np.array([50, 30, 10, 5, 5]))  # (50, 30): 50/100 head, next 30 torso
    """
    c = np.sort(np.asarray(counts, dtype=np.int64))[::-1]
    c = c[c > 0]
    if c.size == 0:
        return 1, 1
    cum = np.cumsum(c) / float(c.sum())
    # the first position whose cumulative share reaches the line closes the bucket
    h = int(np.searchsorted(cum, head_share - 1e-12, side="left"))
    t = int(np.searchsorted(cum, head_share + torso_share - 1e-12, side="left"))
    head_min = int(c[min(h, c.size - 1)])
    torso_min = int(c[min(t, c.size - 1)])
    return head_min, min(torso_min, head_min)


def frequency_bucket(freq: np.ndarray, head_min: int, torso_min: int) -> np.ndarray:
    """``[N]`` bucket names (``head`` / ``torso`` / ``tail`` / ``cold``) of per-row training counts."""
    f = np.asarray(freq, dtype=np.int64)
    out = np.full(f.shape, "tail", dtype=object)
    out[f >= torso_min] = "torso"
    out[f >= head_min] = "head"
    out[f <= 0] = "cold"
    return out


def history_labels(edges: Sequence[int]) -> List[str]:
    """Bucket names of history-length edges, e.g. ``(1, 10)`` -> ``["0", "1-9", "10+"]``."""
    e = list(edges)
    names = ["0" if e[0] == 1 else f"0-{e[0] - 1}"]
    for a, b in zip(e, e[1:]):
        names.append(f"{a}" if b == a + 1 else f"{a}-{b - 1}")
    names.append(f"{e[-1]}+")
    return names


def history_bucket(hist_len: np.ndarray, edges: Sequence[int] = (1, 10, 100, 1000)) -> np.ndarray:
    """``[N]`` bucket names of per-row history lengths (see :func:`history_labels`)."""
    names = np.array(history_labels(edges), dtype=object)
    return names[np.searchsorted(np.asarray(edges), np.asarray(hist_len, dtype=np.int64), side="right")]


def _bucket_stats(per_seed: Mapping[int, SeedPredictions], masks: Mapping[int, np.ndarray], variants: Sequence[str],
                  control: str, users: np.ndarray, boot_cfg: Optional[BootstrapConfig],
                  pairs: Sequence[Tuple[str, str]]) -> Dict[str, Any]:
    refs = shared_references(per_seed)
    oracle = "p_true" in refs
    names = list(variants) + [REFERENCE_VARIANTS[c] for c in refs]
    arrays: Dict[int, Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray], np.ndarray]] = {}
    aucs: Dict[str, List[float]] = {v: [] for v in names}
    preds: Dict[str, List[float]] = {v: [] for v in names}
    rows = 0
    for s, p in per_seed.items():
        m = masks[s]
        sc = {v: p.scores[v][m] for v in variants if v in p.scores}
        sc.update(p.reference_scores(refs, m))
        arrays[s] = (p.user_id[m], p.label[m], sc, p.item_id[m])
        for v, x in sc.items():
            aucs[v].append(auc(p.label[m], x))
            if x.size:
                preds[v].append(float(x.mean()))
        rows = max(rows, int(m.sum()))
    # the slice's own users and items (a slice's interval resamples the users and items present in it)
    present = np.unique(np.concatenate([a[0] for a in arrays.values()])) if arrays else users[:0]
    table = UserTable.from_arrays(arrays, variants=names, users=present)  # its item index: the slice's items
    n_items = int(table.items.size) if table.items is not None else 0
    out: Dict[str, Any] = {"rows": rows, "users": int(present.size), "items": n_items,
                           "positive_rate": float(np.mean(np.concatenate([a[1] for a in arrays.values()])))
                           if rows else None}
    ne = table.ne()

    def mean_or_none(x: Sequence[float]) -> Optional[float]:
        a = np.asarray(x, dtype=np.float64)
        a = a[np.isfinite(a)]
        return float(a.mean()) if a.size else None

    out["ne"] = {v: mean_or_none(ne[i][table.has[i]]) for i, v in enumerate(names)}
    out["auc"] = {v: mean_or_none(aucs[v]) for v in names}
    # calibration: NE punishes a bucket whose mean prediction sits far from its click rate
    out["mean_pred"] = {v: mean_or_none(preds[v]) for v in names}
    if rows == 0:
        return out
    if boot_cfg is None:
        # point gains only
        gains: Dict[str, Any] = {}
        c = names.index(control) if control in names else -1
        for i, v in enumerate(names):
            if c < 0 or v == control:
                continue
            ok = table.has[i] & table.has[c]
            g = 100.0 * (ne[c][ok] - ne[i][ok]) / ne[c][ok]
            gains[v] = {"point": float(g.mean()) if g.size else None, "ci95": None, "verdict": "n/a"}
        out["gain"] = gains
        return out
    boot = PairedBootstrap(table, boot_cfg)
    out["gain"] = {v: boot.gain(v, control).to_dict() for v in names if v != control and control in names}
    if oracle and control in names:
        out["oracle_share"] = {v: boot.ratio((v, control), (ORACLE, control)).to_dict()
                               for v in variants if v != control}
    out["pairs"] = {f"{a}_over_{b}": boot.gain(a, b).to_dict() for a, b in pairs if a in names and b in names}
    return out


def slice_report(per_seed: Mapping[int, SeedPredictions], variants: Sequence[str], control: str = "control",
                 cfg: Optional[SliceConfig] = None, item_counts: Optional[np.ndarray] = None,
                 pairs: Sequence[Tuple[str, str]] = (), progress: bool = False) -> Dict[str, Any]:
    """NE / AUC / paired gain per item-frequency and history-length bucket.

    Args:
        per_seed (Mapping[int, SeedPredictions]): paired predictions of every seed.
        variants (Sequence[str]): variants to report (``control`` among them for gains).
        control (str): the reference of the gains.
        cfg (Optional[SliceConfig]): slice definitions and bootstrap size.
        item_counts (Optional[np.ndarray]): ``[num_items]`` training count per item id, to rank
            all items for the head/torso/tail cuts; default: the distinct test target items.
        pairs (Sequence[Tuple[str, str]]): extra ``(variant, reference)`` gains per slice.
        progress (bool): a tqdm bar over the slices.

    Returns:
        Dict[str, Any]: ``{"item_freq": {"definition", "cuts", "source", "buckets": {name: stats}},
        "hist_len": {"definition", "buckets": {...}}}``; each bucket's stats hold ``rows``,
        ``users``, ``items``, ``positive_rate``, ``ne``/``auc``/``mean_pred`` (mean predicted click
        probability, averaged over seeds) per variant, ``gain`` per variant (point, ci95, verdict,
        level: the bootstrap's units),
        ``oracle_share`` when ``p_true`` is known, and ``pairs``.
    """
    cfg = cfg or SliceConfig()
    seeds = sorted(per_seed)
    if not seeds:
        return {}
    users = np.unique(np.concatenate([per_seed[s].user_id for s in seeds]))
    if item_counts is not None:
        counts = np.asarray(item_counts, dtype=np.int64)
        source = "all items (item -> training count table)"
    else:
        p0 = per_seed[seeds[0]]
        _, first = np.unique(p0.item_id, return_index=True)
        counts = p0.item_train_freq[first]
        source = ("distinct test target items only (the predictions carry no count for items absent from test; "
                  "they are left out of the cumulative shares)")
    head_min, torso_min = frequency_cuts(counts, cfg.head_share, cfg.torso_share)
    boot_cfg = (BootstrapConfig(n_boot=cfg.n_boot, seed=cfg.seed, resample_items=cfg.resample_items)
                if cfg.n_boot else None)
    fam: Dict[str, Dict[int, np.ndarray]] = {
        "item_freq": {s: frequency_bucket(per_seed[s].item_train_freq, head_min, torso_min) for s in seeds},
        "hist_len": {s: history_bucket(per_seed[s].hist_len, cfg.hist_edges) for s in seeds},
    }
    order = {"item_freq": list(FREQ_BUCKETS), "hist_len": history_labels(cfg.hist_edges)}
    jobs = [(f, b) for f in fam for b in order[f]]
    it: Any = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="slices", unit="slice", leave=False)
    out: Dict[str, Any] = {
        "item_freq": {"definition": (f"items ranked by training count; head = the most trained items taking the first "
                                     f"{cfg.head_share:.0%} of training impressions, torso = the next "
                                     f"{cfg.torso_share:.0%}, tail = the other trained items, cold = never in training"),
                      "cuts": {"head_min_count": head_min, "torso_min_count": torso_min}, "source": source,
                      "buckets": {}},
        "hist_len": {"definition": f"history events the model saw; edges {list(cfg.hist_edges)}", "buckets": {}},
    }
    for f, b in it:
        masks = {s: fam[f][s] == b for s in seeds}
        out[f]["buckets"][b] = _bucket_stats(per_seed, masks, variants, control, users, boot_cfg, pairs)
    return out
