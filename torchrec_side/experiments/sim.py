# pyre-strict
"""Simulated ads world of the main job (docs/design.md section 7c): its spec and world-specific code.

:func:`world_spec` declares the world of a budget (:class:`~.spec.WorldSpec`: variants, the
artifacts each reads, seeds, epochs, tuning); :class:`SimSource` generates the world and fits its
SID artifacts; :func:`~.runner.run_world` runs it (:func:`run_sim`).

Steps (each skipped when its output exists, so a rerun resumes):

1. **World**: :func:`torchrec_side.data.adsworld.generate_world` into ``<out>/world`` (size and
   overrides of the :class:`SimBudget`; ``preset=id_dominant`` for the control world).
2. **Examples**: the example store built from the world folder (``<out>/examples``).
3. **SIDs, from item content only** (no interaction of any split): the VQ-fusion tokenizer
   (packaged ``adsworld/tokenizer_fused_dpca``: ``text`` + ``image`` with category and
   sub-category heads, 40 ternary DPCA digits), the same tokenizer without label heads
   (``adsworld/tokenizer_fused_dpca_nolabels``, for the ablation grid) and the traditional SID's
   RQ-KMeans 3 x 256 of each collection (fitted on a seeded sample of ``fit_items`` items, every
   item encoded). Only the artifacts the chosen variants declare (:attr:`Variant.needs`) are fitted.
4. **Training**: the variants (packaged ``adsworld/dlrm_*``): control; sparse-ID history, full table,
   hashed into N/10 rows and behind a managed-collision remapper at N/10 rows; category ids; raw
   content (text + image); traditional SID (prefix-ngram per collection, 65,536-row budget); SIDE;
   SIDE over permuted SIDs; the tokenizer x embedding ablation grid (:data:`ABLATION_GRID`:
   tokenizer {RQ-KMeans per collection, VQ fusion without label heads, VQ fusion with label heads}
   x embedding {prefix-ngram learned tables, SIDE}; traditional SID and SIDE are two of its cells,
   ``side_rq``, ``prefix_fused``, ``side_fused_nolabels`` and ``prefix_fused_nolabels`` the other
   four). Every variant sees the target item through the same path as the
   history (``target: true``; the sparse-ID tables look the target up in the history's table,
   docs/design.md section 7b). Every variant is tuned on validation (the budget's ``tuning``),
   every run stops on validation and is scored on test with its best validation epoch.
5. **Report**: :func:`torchrec_side.report.write_report` with the world's record (``world``,
   oracle share, slices); the main world links the control world's report (``control_world``).

Budgets (:data:`BUDGETS`; what ``--world all`` runs must fit 45 minutes on a 2-core CPU with
MovieLens, see :mod:`torchrec_side.experiments`). Every budget but ``tiny`` runs the training
protocol of docs/design.md section 7b: each variant, control included, is tuned on validation
over :data:`~torchrec_side.experiments.common.MAIN_TUNING` (the config as shipped, no learned user
table, embedding learning rate 0.02; seed 0, test never read), then every seed trains at the
chosen setting, each run up to ``max_epochs`` with early stop after ``patience`` epochs without a
better validation NE.

* ``quick`` (in ``--world all``): the quick world (10^5 items, median 200 events) with
  ``users.num_users=3000`` (about 9 x 10^4 training impressions: an epoch of one run is a few
  seconds on 2 ranks), at most 4 epochs, patience 2; the headline variants
  (:data:`HEADLINE_VARIANTS`) at 5 seeds, the ablation cells, sequence models, ZCH and category
  ids at the first 3 (``secondary_seeds``); ``sparse_id_hashed`` and ``side_permuted_sid`` are
  left out (:data:`QUICK_WORLD_VARIANTS`; cut to fit the 45 minutes). Tokenizer 15 epochs (plus 3
  warm-up) on 10^5 items, RQ-KMeans fitted on 20,000 items. Control world (``preset=id_dominant``,
  same users; the preset's 200-item catalogue, some 1,170 training impressions per item): control,
  sparse-ID, SIDE, 5 seeds, the same protocol with up to 30 epochs (``BUDGETS["control"]``: at
  caps of 4 and 10 every sparse-ID run's best epoch was its last).
* ``full`` (``--size full``): the full world's catalogue and histories (10^6 items, median
  1,000 events) with 5,000 of its 25,000 users (``users.num_users=5000``: about 2 x 10^5
  training impressions; cut to fit the 90 minutes), every variant, the same tuning grid, at most
  4 epochs, patience 2, headline variants at 5 seeds and the others at 3; tokenizers 3 epochs
  after 1 warm-up on about 9.5 x 10^5 items; RQ-KMeans on 50,000 items. The control world is
  ``BUDGETS["control"]`` (``control_size``). On the 2-core VM the whole ``--size full`` demo took
  78 minutes (docs/benchmarks.md); all 25,000 users would take about 5 times the training time.
* ``tiny`` (``--quick`` and the tests): the 2,000-item world, 1 seed (launch start-up dominates;
  see :mod:`.ml100k`), 1 epoch, tokenizer 3 epochs, no tuning (labelled QUICK).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torchrec_side.experiments.common import MAIN_TUNING, Tuning, Variant, log
from torchrec_side.experiments.spec import Artifact, Budget, WorldInfo, WorldSpec

__all__ = ["VARIANTS", "ABLATION_GRID", "CONTROL_WORLD_VARIANTS", "HEADLINE_VARIANTS", "SimBudget", "BUDGETS", "run_sim",
           "fit_world_sids", "artifacts", "world_spec", "SimSource", "QUICK_WORLD_VARIANTS"]

QUANTIZERS: Tuple[str, ...] = ("rq_text", "rq_image")
_RQ: Tuple[str, ...] = QUANTIZERS

VARIANTS: List[Variant] = [
    Variant("control", "adsworld/dlrm_control", "control", "DLRM, user + target item, no history"),
    Variant("sparse_id", "adsworld/dlrm_sparse_id", "sparse_id",
            "learned item-id table over the history, one row per item, the target looked up in it too"),
    Variant("sparse_id_hashed", "adsworld/dlrm_sparse_id_hashed", "sparse_id",
            "learned item-id history table hashed into N/10 rows, the target looked up in it too"),
    Variant("sparse_id_zch", "adsworld/dlrm_sparse_id_zch", "sparse_id",
            "learned item-id history table behind TorchRec's managed-collision (zero-collision) remapper, N/10 rows"),
    Variant("category_id", "adsworld/dlrm_category_id", "sparse_id",
            "learned category and sub-category tables over the history and the target"),
    Variant("raw_content", "adsworld/dlrm_raw_content", "raw_content",
            "pooled frozen text (384-d) and image (128-d) vectors, fp16, target through the same paths"),
    Variant("traditional_sid", "adsworld/dlrm_traditional_sid", "traditional",
            "RQ-KMeans 3x256 SID per collection (text, image) + prefix-ngram tables (65,536-row budget)", _RQ),
    Variant("side", "adsworld/dlrm_side", "side",
            "VQ-fusion DPCA SID of text + image (category/sub-category heads) + SIDE pooling", ("fused_dpca",)),
    Variant("side_permuted_sid", "adsworld/dlrm_side_permuted_sid", "ablation",
            "ablation: SIDE over the same SIDs dealt to random items (no content): what the fixed codes give alone",
            ("fused_dpca_perm",)),
    # the tokenizer x embedding grid (ABLATION_GRID); traditional_sid and side are two of its six cells
    Variant("side_rq", "adsworld/dlrm_side_rq", "ablation",
            "ablation cell RQ-KMeans per collection x SIDE: SIDE pooling over traditional_sid's RQ 3x256 SIDs (text, image)",
            _RQ),
    Variant("prefix_fused", "adsworld/dlrm_prefix_fused", "ablation",
            "ablation cell VQ fusion with label heads x prefix-ngram: prefix lengths 1..15 of side's SID (65,536-row budget)",
            ("fused_dpca",)),
    Variant("side_fused_nolabels", "adsworld/dlrm_side_fused_nolabels", "ablation",
            "ablation cell VQ fusion without label heads x SIDE: side over a tokenizer trained without category heads",
            ("fused_dpca_nolabels",)),
    Variant("prefix_fused_nolabels", "adsworld/dlrm_prefix_fused_nolabels", "ablation",
            "ablation cell VQ fusion without label heads x prefix-ngram: prefix_fused over the no-label tokenizer's SID",
            ("fused_dpca_nolabels",)),
    # the target-attention (DIN) sequence model over the last 50 events (docs/design.md section 6)
    Variant("seq_sparse_id", "adsworld/seq_sparse_id", "sequence",
            "DIN over the last 50 events: per-event item-id rows (one per item), the target looked up in the same table"),
    Variant("seq_traditional_sid", "adsworld/seq_traditional_sid", "sequence",
            "DIN over the last 50 events: per-event prefix-ngram sums of the RQ 3x256 SIDs (text, image), 65,536-row budget",
            _RQ),
    Variant("seq_raw_content", "adsworld/seq_raw_content", "sequence",
            "DIN over the last 50 events: per-event frozen text (384-d) and image (128-d) vectors, fp16, projected"),
    Variant("seq_side", "adsworld/seq_side", "sequence",
            "DIN over the last 50 events: per-event SIDE embeddings of the VQ-fusion DPCA SID", ("fused_dpca",)),
]
#: The ablation grid that separates the tokenizer from the embedding (issue 15, Deliver 2):
#: ``{tokenizer row: {embedding column: variant}}``; the report's 3 x 2 table (``report.ABLATION_ROWS``).
ABLATION_GRID: Dict[str, Dict[str, str]] = {
    "rq_kmeans": {"prefix_ngram": "traditional_sid", "side": "side_rq"},
    "fusion_nolabels": {"prefix_ngram": "prefix_fused_nolabels", "side": "side_fused_nolabels"},
    "fusion_labels": {"prefix_ngram": "prefix_fused", "side": "side"},
}
#: The control world (id-only term dominant): what must show sparse-ID beating SIDE.
CONTROL_WORLD_VARIANTS: List[str] = ["control", "sparse_id", "side"]
#: The headline comparison (every seed of a budget); the other variants get its ``secondary_seeds``.
HEADLINE_VARIANTS: Tuple[str, ...] = ("control", "sparse_id", "raw_content", "traditional_sid", "side")


#: What the control world changes beyond the preset: nothing. ``preset=id_dominant`` sets its own
#: dense catalogue (200 items, 100 impressions per user: some 1,170 training impressions per item
#: at the quick budget's 3,000 users), where the collaborative term dominates the logit
#: (docs/design.md section 7c); an override of the catalogue here would win over the preset.
CONTROL_WORLD_OVERRIDES: Tuple[str, ...] = ()


@dataclass(frozen=True)
class SimBudget:
    """One simulated-world budget.

    Args:
        size (str): world size (``tiny`` / ``quick`` / ``full``).
        world_overrides (Tuple[str, ...]): ``key=value`` overrides of the world config.
        seeds (Tuple[int, ...]): seeds of every variant.
        max_epochs (int): most epochs per run.
        patience (int): validation early-stop patience.
        tokenizer_epochs (int): tokenizer epochs (after ``tokenizer_warmup`` unquantized ones).
        tokenizer_warmup (int): tokenizer warm-up epochs.
        fit_items (int): items sampled to fit each RQ-KMeans (0: all).
        control_seeds (Tuple[int, ...]): seeds in the control world.
        control_size (Optional[str]): the control world's budget (a key of :data:`BUDGETS`;
            ``None``: this one). The full budget runs its control world at quick size: showing
            that the instrument can make SIDE lose needs no 10^6 items.
        control_overrides (Tuple[str, ...]): world overrides of the control world only, after
            ``world_overrides`` (the quick budget: :data:`CONTROL_WORLD_OVERRIDES`).
        secondary_seeds (Optional[Tuple[int, ...]]): seeds of the variants outside
            :data:`HEADLINE_VARIANTS` (the first of ``seeds``, so they stay paired with control;
            None: every variant gets ``seeds``).
        tuning (Optional[Tuning]): the tuning grid every variant gets
            (:data:`~torchrec_side.experiments.common.MAIN_TUNING`; None: the configs as shipped).
        default_variants (Optional[Tuple[str, ...]]): what the world runs when no ``--variants``
            are given (None: every variant of :data:`VARIANTS`).

    Example::

        SimBudget("tiny", (), (0, 1), 1, 1, 3, 1, 0, (0, 1))
    """

    size: str
    world_overrides: Tuple[str, ...] = ()
    seeds: Tuple[int, ...] = (0, 1, 2, 3, 4)
    max_epochs: int = 2
    patience: int = 1
    tokenizer_epochs: int = 15
    tokenizer_warmup: int = 3
    fit_items: int = 20_000
    control_seeds: Tuple[int, ...] = (0, 1, 2, 3, 4)
    control_size: Optional[str] = None
    control_overrides: Tuple[str, ...] = ()
    secondary_seeds: Optional[Tuple[int, ...]] = None
    tuning: Optional[Tuning] = None
    default_variants: Optional[Tuple[str, ...]] = None

    def __post_init__(self) -> None:
        if self.size not in ("tiny", "quick", "full"):
            raise ValueError(f"SimBudget.size: {self.size!r} is not one of tiny, quick, full")
        if not self.seeds or self.max_epochs < 1 or self.tokenizer_epochs < 1:
            raise ValueError("SimBudget: need seeds, max_epochs >= 1, tokenizer_epochs >= 1")
        if self.secondary_seeds is not None and not set(self.secondary_seeds) <= set(self.seeds):
            raise ValueError(f"SimBudget.secondary_seeds {self.secondary_seeds} must be among seeds {self.seeds} "
                             "(paired with control)")
        known = {v.name for v in VARIANTS}
        if self.default_variants is not None and not set(self.default_variants) <= known:
            raise ValueError(f"SimBudget.default_variants: unknown {sorted(set(self.default_variants) - known)}")


#: The quick world's variants in the main job: every one but ``sparse_id_hashed`` and
#: ``side_permuted_sid`` (cut to fit the protocol's budget; they run in ``--size full`` and with
#: ``--variants``).
QUICK_WORLD_VARIANTS: Tuple[str, ...] = tuple(v.name for v in VARIANTS
                                              if v.name not in ("sparse_id_hashed", "side_permuted_sid"))

BUDGETS: Dict[str, SimBudget] = {
    "quick": SimBudget("quick", ("users.num_users=3000",), max_epochs=4, patience=2,
                       control_overrides=CONTROL_WORLD_OVERRIDES, secondary_seeds=(0, 1, 2), tuning=MAIN_TUNING,
                       default_variants=QUICK_WORLD_VARIANTS, control_size="control"),
    # 5,000 of the full world's 25,000 users: every variant, tuned, fits the 90 minutes on 2 cores
    "full": SimBudget("full", ("users.num_users=5000",), max_epochs=4, patience=2, tokenizer_epochs=3,
                      tokenizer_warmup=1, fit_items=50_000, control_size="control", secondary_seeds=(0, 1, 2),
                      tuning=MAIN_TUNING),
    # the control world of both (quick size, 200 items): up to 30 epochs, because the sparse-ID
    # rows (without the user table) learn slowly: at a cap of 4 and then 10 every sparse-ID run
    # still had its best validation epoch at the last one; at 30 they peak at epochs 14-23
    # (docs/benchmarks.md, 2026-12-04). An epoch there costs a few seconds.
    "control": SimBudget("quick", ("users.num_users=3000",), max_epochs=30, patience=2,
                         control_overrides=CONTROL_WORLD_OVERRIDES, tuning=MAIN_TUNING),
    "tiny": SimBudget("tiny", (), (0,), 1, 1, 3, 1, 0, (0,)),
}


def _world(out: Path, budget: SimBudget, preset: Optional[str], workers: int) -> Dict[str, Any]:
    from torchrec_side.data.adsworld import generate_world, read_manifest
    from torchrec_side.data.adsworld_config import load_world_config

    wdir = out / "world"
    ov = list(budget.world_overrides) + (list(budget.control_overrides) + [f"preset={preset}"] if preset else [])
    cfg = load_world_config(budget.size, ov)
    if (wdir / "manifest.json").is_file():
        manifest = read_manifest(wdir)
        from torchrec_side.config import load_config
        from torchrec_side.data.adsworld_config import AdsWorldConfig

        want = json.loads(json.dumps(dataclasses.asdict(cfg)))
        # options added since the world was written read as their defaults (what the generator did then)
        have = json.loads(json.dumps(dataclasses.asdict(load_config(AdsWorldConfig, None, [],
                                                                    base=manifest.get("config") or {}))))
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        if diff:
            raise ValueError(f"{wdir} holds a world of another config (differs in {diff}); remove the folder "
                             "or give another --out")
        log(f"world {wdir}: exists, skipped")
        return manifest
    log(f"world: generating size={budget.size} {' '.join(ov)} into {wdir}")
    import sys

    return generate_world(cfg, wdir, progress=sys.stdout.isatty(), workers=workers)


def _permuted_tokenizer(src: Path, dst: Path, seed: int) -> Dict[str, Any]:
    """``dst``: the tokenizer folder ``src`` with its SID table dealt to the items at random
    (:func:`~torchrec_side.tokenizer.sid_table.permuted_sid_table`); skipped when it exists."""
    import shutil

    from torchrec_side.io import atomic_dir
    from torchrec_side.tokenizer.sid_table import permuted_sid_table, read_sid_table, write_sid_table

    if (dst / "sid_table.parquet").is_file():
        log(f"tokenizer {dst.name}: exists, skipped")
        return {}
    with atomic_dir(dst, "sid_table.parquet") as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        write_sid_table(tmp / "sid_table.parquet", permuted_sid_table(read_sid_table(src / "sid_table.parquet"), seed))
    log(f"tokenizer {dst.name}: the SIDs of {src.name} dealt to random items (seed {seed})")
    return {"from": src.name, "seed": seed}


def fit_world_sids(out: Path, world_dir: Path, needed: Sequence[Artifact]) -> Dict[str, Any]:
    """Fits ``needed`` (:func:`artifacts`), in order, from item content only, each skipped when it
    exists: tokenizers (``tokenizer``), a tokenizer's SIDs dealt to random items (``permuted``)
    and RQ-KMeans 3 x 256 quantizers of one content collection (``rq_kmeans``, fitted on a seeded
    sample of ``fit_items`` items released before the validation window, every item encoded)."""
    import numpy as np
    import torch

    from torchrec_side.experiments.ml100k import _write_quantizer_sids, run_tokenizer
    from torchrec_side.quantizers import RQKMeans, RQKMeansConfig
    from torchrec_side.tokenizer.data import world_fit_mask

    info: Dict[str, Any] = {"source": "item content and labels only; no interaction of any split"}
    built = {a.name: a for a in needed}
    pool: Optional[torch.Tensor] = None  # the fit items, read once for all quantizers
    for a in needed:
        if a.kind == "tokenizer":
            d = out / a.outputs["dir"]
            info[f"tokenizer_{a.name}"] = run_tokenizer(a.source, d.parent, d.name,
                                                        [f"data.world_dir={world_dir}", *a.overrides])
        elif a.kind == "permuted":
            info[f"tokenizer_{a.name}"] = _permuted_tokenizer(out / built[a.source].outputs["dir"],
                                                              out / a.outputs["dir"], int(a.options["seed"]))
        elif a.kind == "rq_kmeans":
            qfile = out / a.outputs["quantizer"]
            qfile.parent.mkdir(parents=True, exist_ok=True)
            if qfile.is_file():
                continue
            seed, fit_items = int(a.options["seed"]), int(a.options["fit_items"])
            x = torch.from_numpy(np.asarray(np.load(world_dir / "content" / f"{a.source}.npy"), dtype=np.float32))
            n = int(x.shape[0])
            # fitted on items released before the validation window only (every item is encoded)
            if pool is None:
                pool = torch.from_numpy(np.flatnonzero(world_fit_mask(str(world_dir)).numpy()))
            if fit_items and len(pool) > fit_items:
                idx = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:fit_items]]
                fit = x[idx.sort().values]
            else:
                fit = x[pool]
            t = time.time()
            log(f"quantizer {a.name}: RQ-KMeans 3x256 of the {a.source} vectors, fitted on {fit.shape[0]} of {n} items")
            q = RQKMeans(RQKMeansConfig(radices=[256, 256, 256], seed=seed)).fit(fit)
            _write_quantizer_sids(q, x, qfile.parent, a.name, "mixed_radix")
            info[a.name] = {"fit_items": int(fit.shape[0]), "items": n, "seconds": round(time.time() - t, 1)}
        else:
            raise ValueError(f"artifact {a.name}: the simulated world builds no {a.kind!r} artifacts")
    (out / "quantizers").mkdir(parents=True, exist_ok=True)
    return info


def artifacts(budget: SimBudget, seed: int = 0) -> Tuple[Artifact, ...]:
    """The SID artifacts of a simulated world at ``budget`` (what :func:`fit_world_sids` builds):
    the VQ-fusion tokenizer with label heads (``fused_dpca``) and without (``fused_dpca_nolabels``,
    the ablation grid), ``fused_dpca``'s SIDs dealt to random items (``fused_dpca_perm``) and the
    RQ-KMeans 3 x 256 quantizer of each content collection (``rq_text``, ``rq_image``)."""
    tok = (f"train.epochs={budget.tokenizer_epochs}", f"train.warmup_epochs={budget.tokenizer_warmup}",
           "train.progress=false")
    return (
        Artifact("fused_dpca", "tokenizer", "adsworld/tokenizer_fused_dpca", {"dir": "tokenize/fused_dpca"},
                 overrides=tok),
        Artifact("fused_dpca_nolabels", "tokenizer", "adsworld/tokenizer_fused_dpca_nolabels",
                 {"dir": "tokenize/fused_dpca_nolabels"}, overrides=tok),
        Artifact("fused_dpca_perm", "permuted", "fused_dpca", {"dir": "tokenize/fused_dpca_perm"},
                 after=("fused_dpca",), options={"seed": seed + 1}),
        *(Artifact(q, "rq_kmeans", q.split("_", 1)[1],
                   {"quantizer": f"quantizers/{q}.safetensors", "sid_table": f"quantizers/{q}_sids.parquet"},
                   options={"fit_items": budget.fit_items, "seed": seed}) for q in QUANTIZERS),
    )


@dataclass(frozen=True)
class SimSource:
    """A simulated world's data (:func:`~torchrec_side.data.adsworld.generate_world` into
    ``<out>/world``) and builders.

    Args:
        budget (SimBudget): its size and overrides.
        preset (Optional[str]): world preset (``id_dominant``: the control world).
        workers (int): world-generator processes.
    """

    budget: SimBudget
    preset: Optional[str] = None
    workers: int = 1

    def prepare(self, out: Path) -> WorldInfo:
        manifest = _world(out, self.budget, self.preset, self.workers)
        # hashed tables get N/10 rows of the world they run in
        return WorldInfo({"dir": (out / "world").as_posix(), "hash_rows": max(int(manifest["num_items"]) // 10, 1)},
                         manifest)

    def build(self, out: Path, store: Any, artifacts: Sequence[Artifact]) -> Dict[str, Any]:
        return fit_world_sids(out, out / "world", artifacts)

    def describe(self, out: Path, info: WorldInfo, store: Any) -> Dict[str, Any]:
        from torchrec_side.data.adsworld import target_in_history

        b, m = self.budget, info.manifest
        repeats = target_in_history(out / "world", "test", int(store.max_history or 10**9))
        return {
            "world": {"name": world_name(b, self.preset), "kind": "id_dominant" if self.preset == "id_dominant" else "simulated",
                      "size": b.size, "preset": self.preset or "default", "world_dir": str(out / "world"),
                      "overrides": list(b.world_overrides) + (list(b.control_overrides) if self.preset else []),
                      "num_items": int(m["num_items"]), "num_users": m.get("num_users"),
                      "impressions": m.get("impressions"),
                      "oracle_test_ne": (m.get("oracle") or {}).get("test", {}).get("ne"),
                      "target_in_history": repeats},
            "id_dominant": self.preset == "id_dominant",
            "budget": dataclasses.asdict(b),
        }


def world_name(budget: SimBudget, preset: Optional[str] = None) -> str:
    """``adsworld_<size>[_<preset>]``."""
    return f"adsworld_{budget.size}" + (f"_{preset}" if preset else "")


def world_spec(budget: SimBudget, preset: Optional[str] = None, workers: int = 1, mode: str = "full",
               seed: int = 0) -> WorldSpec:
    """The simulated world of ``budget`` (``preset=id_dominant``: its control world, at the
    budget's ``control_seeds`` and without secondary seeds); ``seed`` seeds its quantizer fits.

    Example::

        spec = world_spec(BUDGETS["tiny"], mode="quick")
    """
    name = world_name(budget, preset)
    run = Budget(seeds=budget.control_seeds if preset else budget.seeds, max_epochs=budget.max_epochs,
                 patience=budget.patience, secondary_seeds=None if preset else budget.secondary_seeds,
                 tuning=budget.tuning, default_variants=budget.default_variants, mode=mode)
    return WorldSpec(name, "simulated-world", SimSource(budget, preset, workers), tuple(VARIANTS), artifacts(budget, seed),
                     run, secondary=tuple(v.name for v in VARIANTS if v.name not in HEADLINE_VARIANTS),
                     label=f"{name}: ")


def run_sim(out: Path, budget: SimBudget, preset: Optional[str] = None, variants: Optional[List[str]] = None,
            seeds: Optional[List[int]] = None, nproc: int = 2, control_world: Optional[Path] = None,
            report: bool = True, workers: int = 1, mode: str = "full") -> Dict[str, Any]:
    """One simulated world (:func:`world_spec` run by :func:`~.runner.run_world`); see the module
    docstring. Returns ``<out>/pipeline.json``'s record.

    Args:
        out (Path): this world's demo folder.
        budget (SimBudget): sizes, seeds, epochs.
        preset (Optional[str]): world preset (``id_dominant`` for the control world).
        variants (Optional[List[str]]): subset of :data:`VARIANTS` (control is required).
        seeds (Optional[List[int]]): seeds (default: the budget's).
        nproc (int): ranks per launch.
        control_world (Optional[Path]): the control world's demo folder (linked in the report).
        report (bool): write the report.
        workers (int): world-generator processes.
        mode (str): ``full`` or ``quick`` (the report's label).

    Example::

        rec = run_sim(Path("runs/demo/sim_tiny"), BUDGETS["tiny"], variants=["control", "side"])
    """
    from torchrec_side.experiments.runner import run_world

    extra = {"control_world": str(Path(control_world).absolute())} if control_world is not None else None
    return run_world(world_spec(budget, preset, workers, mode), out, variants, seeds, nproc, report, extra)
