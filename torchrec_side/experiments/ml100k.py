# pyre-strict
"""MovieLens-100K world of the main job (docs/design.md section 7): its spec and world-specific code.

:func:`world_spec` declares the world of a budget (variants, the artifacts each reads, seeds,
epochs, tuning); :class:`MovieLensSource` fits its SID artifacts on training interactions;
:func:`~.runner.run_world` runs it (:func:`run_ml100k`).

Steps (each skipped when its output exists, so a rerun resumes):

1. **Examples**: the example store of docs/design.md section 7 (``<out>/examples``), written once.
2. **Fit, on training interactions only** (the store's ``train`` split): the VQ-fusion tokenizers
   (packaged ``ml100k/tokenizer_fused_dpca``, ``ml100k/tokenizer_fused_rq``; their collaborative
   embedding is fitted on the training events by the tokenizer's loader), and the baselines'
   quantizers: RQ-KMeans 3 x 256 of the MiniLM vectors, RQ-KMeans 3 x 256 of a collaborative
   embedding of the training events, plain DPCA (40 ternary digits) of the MiniLM vectors. The
   fitted events are checked with :func:`torchrec_side.data.protocol.assert_no_leakage`.
3. **History columns**: every variant's column written once into the store, before training.
4. **Training**: every variant through the TorchX component on 2 local ranks, all missing runs
   of a phase (tuning, then final) in one launch. Same model size and budget for all. The full budget first tunes
   every variant, control included, on validation over
   :data:`~torchrec_side.experiments.common.MAIN_TUNING` (seed 0, ``train.score_test=false``),
   then trains every seed at the chosen setting (docs/design.md section 7b). Every run validates
   after each epoch, stops on validation and is scored on test with its best validation epoch;
   nothing is chosen on test.
5. **Report**: :func:`torchrec_side.report.write_report` (``report.md``, ``report.json``, plots).

Budget (2-core CPU, the whole ``--world all`` under 45 minutes, see
:mod:`torchrec_side.experiments`): full = the 5 variants the comparison needs x 10 seeds
(docs/design.md section 7b asks for >= 10 paired seeds) and the 4 ablations / references x 3
seeds (:data:`SECONDARY_ROLES`, paired with control's first 3; 5 before the tuning protocol, cut
to pay for it), at most 4 epochs each with patience 2, after the 3-setting tuning of every
variant; quick = 5 variants x 1 seed x 1 epoch, no tuning, tokenizers 20 epochs (after 5
warm-up) instead of up to 150, labelled QUICK.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torchrec_side.experiments.common import MAIN_TUNING, Variant, log
from torchrec_side.experiments.spec import Artifact, Budget, WorldInfo, WorldSpec

__all__ = ["VARIANTS", "QUICK_VARIANTS", "TOKENIZERS", "FULL", "QUICK", "fit_sid_artifacts", "artifacts",
           "world_spec", "MovieLensSource", "run_ml100k"]

VARIANTS: List[Variant] = [
    Variant("control", "ml100k/dlrm_control", "control", "DLRM, user + target item, no history"),
    Variant("sparse_id", "ml100k/dlrm_sparse_id", "sparse_id", "learned item-id table over the history"),
    Variant("raw_content", "ml100k/dlrm_raw_content", "raw_content", "pooled frozen MiniLM vectors (fp16)"),
    Variant("traditional_sid", "ml100k/dlrm_traditional_sid", "traditional",
            "RQ-KMeans 3x256 SID per collection (MiniLM, collaborative) + prefix-ngram tables", ("rq_minilm", "rq_cf")),
    Variant("side", "ml100k/dlrm_side", "side", "VQ-fusion DPCA SID (40 ternary digits) + SIDE pooling", ("fused_dpca",)),
    Variant("fused_rq_prefix", "ml100k/dlrm_fused_rq_prefix", "ablation",
            "ablation: VQ-fusion RQ 3x256 SID + prefix-ngram (fusion without SIDE)", ("fused_rq",)),
    Variant("dpca_side", "ml100k/dlrm_dpca_side", "ablation",
            "ablation: plain DPCA SID of MiniLM + SIDE (SIDE without fusion)", ("dpca_minilm",)),
    Variant("seq_sparse_id", "ml100k/seq_sparse_id", "reference",
            "DIN target attention over sparse-ID history embeddings"),
    Variant("seq_side", "ml100k/seq_side", "ablation", "ablation: SIDE in the DIN sequence model", ("fused_dpca",)),
]
QUICK_VARIANTS: List[str] = ["control", "sparse_id", "raw_content", "traditional_sid", "side"]

TOKENIZERS: Dict[str, str] = {"fused_dpca": "ml100k/tokenizer_fused_dpca", "fused_rq": "ml100k/tokenizer_fused_rq"}

#: Roles that get ``secondary_seeds`` in the full budget: the ablations and the DIN reference are
#: not among the variants docs/design.md section 7b needs at >= 10 seeds; with the tuning
#: protocol they fit the 45-minute budget at 3 seeds (paired with control's first 3).
SECONDARY_ROLES: Tuple[str, ...] = ("ablation", "reference")

#: Budgets, identical across variants: seeds, most epochs, validation patience.
FULL: Budget = Budget(seeds=tuple(range(10)), max_epochs=4, patience=2, secondary_seeds=(0, 1, 2), tuning=MAIN_TUNING,
                      mode="full", train_dir="full/train")
QUICK: Budget = Budget(seeds=(0,), max_epochs=1, patience=1, default_variants=tuple(QUICK_VARIANTS), mode="quick",
                       train_dir="quick/train")
#: Tokenizer overrides of each budget (quick: 20 epochs after 5 warm-up instead of up to 150).
TOKENIZER_OVERRIDES: Dict[str, Tuple[str, ...]] = {"full": (), "quick": ("train.epochs=20", "train.warmup_epochs=5")}


def _write_quantizer_sids(q: Any, vectors: Any, out: Path, name: str, layout: str) -> None:
    import torch

    from torchrec_side.tokenizer import SIDTable, write_sid_table
    from torchrec_side.tokenizer.artifact import make_codec

    codes = q.encode(vectors)
    codec = make_codec(list(q.radices), layout)
    table = SIDTable(item_ids=torch.arange(vectors.shape[0], dtype=torch.long), sids=codec.pack(codes), codes=codes,
                     codec=codec)
    tmp = out / f".{name}.safetensors.tmp.safetensors"
    q.save(tmp)
    write_sid_table(out / f"{name}_sids.parquet", table)
    os.replace(tmp, out / f"{name}.safetensors")  # last: its presence means the pair is complete


def run_tokenizer(spec: str, out_root: Path, name: str, overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """Trains one packaged tokenizer config into ``out_root/name`` (skipped when it exists).

    Returns:
        Dict[str, Any]: the tokenizer's training record (empty when skipped).
    """
    from torchrec_side.config import load_config
    from torchrec_side.tokenizer import TokenizeJobConfig, run_tokenize

    if (out_root / name / "sid_table.parquet").is_file() and (out_root / name / "tokenizer").is_dir():
        log(f"tokenizer {name}: exists, skipped")
        return {}
    log(f"tokenizer {name}: training ({spec})")
    bar = [] if sys.stdout.isatty() else ["train.progress=false"]  # no bar redraws in log files
    job = load_config(TokenizeJobConfig, spec, [f"output_dir={out_root}", f"name={name}", *bar, *overrides])
    res = run_tokenize(job, echo=False)
    s = res["stats"]
    log(f"tokenizer {name}: {s.get('num_levels')} levels, {s.get('bits_per_item', 0):.1f} bits, "
        f"trained in {res['train']['train_seconds']}s")
    return dict(res["train"])


def fit_sid_artifacts(out: Path, store: Any, needed: Sequence[Artifact]) -> Dict[str, Any]:
    """Fits ``needed`` (:func:`artifacts`) on training interactions only, each skipped when it exists.

    Tokenizers first (``tokenizer``: their collaborative embedding is fitted on the training
    events by the tokenizer's loader), then the store's training events are checked against the
    ratings (:func:`~torchrec_side.data.protocol.assert_no_leakage`), then the quantizers
    (``rq_kmeans``: RQ-KMeans 3 x 256; ``dpca``: plain DPCA, 40 ternary digits) of their source
    (``minilm``: the MiniLM vectors; ``cf``: a collaborative embedding of the training events).

    Args:
        out (Path): the world's demo folder (``tokenize/`` and ``quantizers/`` are written under it).
        store (ExampleStore): the example store (its ``train`` split is what may be fitted).
        needed (Sequence[Artifact]): what to fit, in order.

    Returns:
        Dict[str, Any]: what was fitted (and the leakage check's counts).
    """
    from torchrec_side.data import content, movielens
    from torchrec_side.data.protocol import assert_no_leakage
    from torchrec_side.quantizers import DPCA, RQKMeans, RQKMeansConfig

    info: Dict[str, Any] = {}
    for a in needed:
        if a.kind == "tokenizer":
            d = out / a.outputs["dir"]
            info[f"tokenizer_{a.name}"] = run_tokenizer(a.source, d.parent, d.name, a.overrides)
    qdir = out / "quantizers"
    qdir.mkdir(parents=True, exist_ok=True)
    ml = movielens.load_movielens()
    train = store.interactions("train")
    info["leakage_check"] = assert_no_leakage(ml.ratings, train["user_id"], train["item_id"], train["timestamp"],
                                              store.manifest["config"]["train_fraction"],
                                              store.manifest["config"]["val_fraction"])
    need = [a for a in needed if a.kind != "tokenizer" and not (out / a.outputs["quantizer"]).is_file()]
    if need:
        vectors: Dict[str, Any] = {}

        def source(name: str) -> Any:
            if name not in vectors:
                if name == "minilm":
                    vectors[name] = content.load_items().text_vectors.float()
                elif name == "cf":
                    log("collaborative embedding of the training events")
                    vectors[name] = content.collaborative_embeddings(train["user_id"], train["item_id"], store.num_users,
                                                                     store.num_items, dim=64, seed=0).float()
                else:
                    raise ValueError(f"MovieLens artifacts read minilm or cf vectors, not {name!r}")
            return vectors[name]

        for a in need:
            seed = int(a.options.get("seed", 0))
            x = source(a.source)
            if a.kind == "rq_kmeans":
                log(f"quantizer {a.name}: RQ-KMeans 3x256 of the {a.source} vectors")
                q = RQKMeans(RQKMeansConfig(radices=[256, 256, 256], seed=seed)).fit(x)
            elif a.kind == "dpca":
                log(f"quantizer {a.name}: plain DPCA, 40 ternary digits, of the {a.source} vectors")
                q = DPCA.ternary(40, seed=seed).fit(x)
            else:
                raise ValueError(f"artifact {a.name}: MovieLens builds no {a.kind!r} artifacts")
            _write_quantizer_sids(q, x, (out / a.outputs["quantizer"]).parent, a.name, str(a.options["layout"]))
    return info


def _quantizer(name: str, kind: str, source: str, layout: str) -> Artifact:
    return Artifact(name, kind, source, {"quantizer": f"quantizers/{name}.safetensors",
                                         "sid_table": f"quantizers/{name}_sids.parquet"},
                    options={"layout": layout, "seed": 0})


def artifacts(tokenizer_overrides: Sequence[str] = ()) -> Tuple[Artifact, ...]:
    """The MovieLens SID artifacts (what :func:`fit_sid_artifacts` builds): the VQ-fusion
    tokenizers (:data:`TOKENIZERS`) and the baselines' quantizers: RQ-KMeans 3 x 256 of the MiniLM
    vectors (``rq_minilm``) and of a collaborative embedding (``rq_cf``), plain DPCA of the MiniLM
    vectors (``dpca_minilm``)."""
    return (
        *(Artifact(n, "tokenizer", spec, {"dir": f"tokenize/{n}"}, overrides=tuple(tokenizer_overrides))
          for n, spec in TOKENIZERS.items()),
        _quantizer("rq_minilm", "rq_kmeans", "minilm", "mixed_radix"),
        _quantizer("rq_cf", "rq_kmeans", "cf", "mixed_radix"),
        _quantizer("dpca_minilm", "dpca", "minilm", "byte_grouped"),
    )


@dataclass(frozen=True)
class MovieLensSource:
    """MovieLens-100K: its data is read by the example store; the artifacts are fitted on the
    store's training split (:func:`fit_sid_artifacts`)."""

    def prepare(self, out: Path) -> WorldInfo:
        return WorldInfo()

    def build(self, out: Path, store: Any, artifacts: Sequence[Artifact]) -> Dict[str, Any]:
        return fit_sid_artifacts(out, store, artifacts)

    def describe(self, out: Path, info: WorldInfo, store: Any) -> Dict[str, Any]:
        return {"world": {"name": "movielens", "kind": "movielens", "dataset": "ml100k"}}


def world_spec(quick: bool = False, max_epochs: Optional[int] = None) -> WorldSpec:
    """The MovieLens world at the full or quick budget (``max_epochs`` replaces the budget's).

    Example::

        spec = world_spec(quick=True)
    """
    budget = QUICK if quick else FULL
    if max_epochs is not None:
        budget = dataclasses.replace(budget, max_epochs=int(max_epochs))
    return WorldSpec("movielens", "MovieLens", MovieLensSource(), tuple(VARIANTS),
                     artifacts(TOKENIZER_OVERRIDES[budget.mode]), budget,
                     secondary=tuple(v.name for v in VARIANTS if v.role in SECONDARY_ROLES), label="ml100k: ")


def run_ml100k(out: Path, quick: bool = False, variants: Optional[List[str]] = None,
               seeds: Optional[List[int]] = None, max_epochs: Optional[int] = None, nproc: int = 2,
               report: bool = True) -> Dict[str, Any]:
    """The MovieLens world (:func:`world_spec` run by :func:`~.runner.run_world`); see the module
    docstring. Returns ``<out>/pipeline.json``'s record.

    Args:
        out (Path): this world's demo folder (absolute or relative to the current folder).
        quick (bool): the quick budget.
        variants (Optional[List[str]]): subset of :data:`VARIANTS` (control is required).
        seeds (Optional[List[int]]): seeds (default: the budget's).
        max_epochs (Optional[int]): most epochs per run (default: the budget's).
        nproc (int): ranks per launch.
        report (bool): write the report.

    Example::

        rec = run_ml100k(Path("runs/demo/ml100k"), quick=True)
    """
    from torchrec_side.experiments.runner import run_world

    return run_world(world_spec(quick, max_epochs), out, variants, seeds, nproc, report)
