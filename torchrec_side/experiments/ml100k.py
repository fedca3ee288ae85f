# pyre-strict
"""MovieLens-100K world of the main job (docs/design.md section 7): every variant, >= 10 seeds.

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

import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torchrec_side.experiments.common import (
    MAIN_TUNING,
    Variant,
    check_variants,
    log,
    resolve_variant_config,
    train_overrides,
    train_variants,
    write_item_counts,
)

__all__ = ["VARIANTS", "QUICK_VARIANTS", "TOKENIZERS", "FULL", "QUICK", "fit_sid_artifacts", "run_ml100k"]

VARIANTS: List[Variant] = [
    Variant("control", "ml100k/dlrm_control", "control", "DLRM, user + target item, no history"),
    Variant("sparse_id", "ml100k/dlrm_sparse_id", "sparse_id", "learned item-id table over the history"),
    Variant("raw_content", "ml100k/dlrm_raw_content", "raw_content", "pooled frozen MiniLM vectors (fp16)"),
    Variant("traditional_sid", "ml100k/dlrm_traditional_sid", "traditional",
            "RQ-KMeans 3x256 SID per collection (MiniLM, collaborative) + prefix-ngram tables"),
    Variant("side", "ml100k/dlrm_side", "side", "VQ-fusion DPCA SID (40 ternary digits) + SIDE pooling"),
    Variant("fused_rq_prefix", "ml100k/dlrm_fused_rq_prefix", "ablation",
            "ablation: VQ-fusion RQ 3x256 SID + prefix-ngram (fusion without SIDE)"),
    Variant("dpca_side", "ml100k/dlrm_dpca_side", "ablation",
            "ablation: plain DPCA SID of MiniLM + SIDE (SIDE without fusion)"),
    Variant("seq_sparse_id", "ml100k/seq_sparse_id", "reference",
            "DIN target attention over sparse-ID history embeddings"),
    Variant("seq_side", "ml100k/seq_side", "ablation", "ablation: SIDE in the DIN sequence model"),
]
QUICK_VARIANTS: List[str] = ["control", "sparse_id", "raw_content", "traditional_sid", "side"]

TOKENIZERS: Dict[str, str] = {"fused_dpca": "ml100k/tokenizer_fused_dpca", "fused_rq": "ml100k/tokenizer_fused_rq"}

#: Roles that get ``secondary_seeds`` in the full budget: the ablations and the DIN reference are
#: not among the variants docs/design.md section 7b needs at >= 10 seeds; with the tuning
#: protocol they fit the 45-minute budget at 3 seeds (paired with control's first 3).
SECONDARY_ROLES: Tuple[str, ...] = ("ablation", "reference")

#: Budgets, identical across variants: seeds, most epochs, validation patience.
FULL: Dict[str, Any] = {"seeds": list(range(10)), "max_epochs": 4, "patience": 2, "secondary_seeds": list(range(3)),
                        "tuning": MAIN_TUNING}
QUICK: Dict[str, Any] = {"seeds": [0], "max_epochs": 1, "patience": 1, "tuning": None,
                         "tokenizer_overrides": ["train.epochs=20", "train.warmup_epochs=5"]}

#: The artifact prefix the packaged configs use; replaced by the demo folder.
ARTIFACT_PREFIX: str = "runs/demo/"


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


def fit_sid_artifacts(out: Path, store: Any, seed: int = 0, needed: Optional[Sequence[str]] = None,
                      tokenizer_overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """Fits the tokenizers and quantizers the MovieLens variants read, on training interactions only.

    Args:
        out (Path): the world's demo folder (``tokenize/`` and ``quantizers/`` are written under it).
        store (ExampleStore): the example store (its ``train`` split is what may be fitted).
        seed (int): quantizer seed.
        needed (Optional[Sequence[str]]): artifact names (tokenizers ``fused_dpca``, ``fused_rq``;
            quantizers ``rq_minilm``, ``rq_cf``, ``dpca_minilm``); None for all.
        tokenizer_overrides (Sequence[str]): ``key=value`` overrides of both tokenizer configs
            (quick mode: fewer epochs).

    Returns:
        Dict[str, Any]: what was fitted (and the leakage check's counts).
    """
    from torchrec_side.data import content, movielens
    from torchrec_side.data.protocol import assert_no_leakage
    from torchrec_side.quantizers import DPCA, RQKMeans, RQKMeansConfig

    info: Dict[str, Any] = {}
    for name, spec in TOKENIZERS.items():
        if needed is None or name in needed:
            info[f"tokenizer_{name}"] = run_tokenizer(spec, out / "tokenize", name, tokenizer_overrides)
    qdir = out / "quantizers"
    qdir.mkdir(parents=True, exist_ok=True)
    ml = movielens.load_movielens()
    train = store.interactions("train")
    info["leakage_check"] = assert_no_leakage(ml.ratings, train["user_id"], train["item_id"], train["timestamp"],
                                              store.manifest["config"]["train_fraction"],
                                              store.manifest["config"]["val_fraction"])
    need = [n for n in ("rq_minilm", "rq_cf", "dpca_minilm") if not (qdir / f"{n}.safetensors").is_file()
            and (needed is None or n in needed)]
    if need:
        text = content.load_items().text_vectors.float()
        if "rq_minilm" in need:
            log("quantizer rq_minilm: RQ-KMeans 3x256 of the MiniLM vectors")
            q = RQKMeans(RQKMeansConfig(radices=[256, 256, 256], seed=seed)).fit(text)
            _write_quantizer_sids(q, text, qdir, "rq_minilm", "mixed_radix")
        if "rq_cf" in need:
            log("quantizer rq_cf: collaborative embedding of the training events -> RQ-KMeans 3x256")
            cf = content.collaborative_embeddings(train["user_id"], train["item_id"], store.num_users,
                                                  store.num_items, dim=64, seed=seed).float()
            q = RQKMeans(RQKMeansConfig(radices=[256, 256, 256], seed=seed)).fit(cf)
            _write_quantizer_sids(q, cf, qdir, "rq_cf", "mixed_radix")
        if "dpca_minilm" in need:
            log("quantizer dpca_minilm: plain DPCA, 40 ternary digits, of the MiniLM vectors")
            q = DPCA.ternary(40, seed=seed).fit(text)
            _write_quantizer_sids(q, text, qdir, "dpca_minilm", "byte_grouped")
    return info


def run_ml100k(out: Path, quick: bool = False, variants: Optional[List[str]] = None,
               seeds: Optional[List[int]] = None, max_epochs: Optional[int] = None, nproc: int = 2,
               report: bool = True) -> Dict[str, Any]:
    """The MovieLens world; see the module docstring. Returns ``<out>/pipeline.json``'s record.

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
    import time

    from torchrec_side.data.store import prepare_store
    from torchrec_side.io import write_json
    from torchrec_side.train.config import load_train_config

    t0 = time.time()
    mode = dict(QUICK if quick else FULL)
    if seeds is not None:
        mode["seeds"] = list(seeds)
    if max_epochs is not None:
        mode["max_epochs"] = int(max_epochs)
    names = variants or (QUICK_VARIANTS if quick else [v.name for v in VARIANTS])
    known = [v.name for v in VARIANTS]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--variants: unknown MovieLens variants {unknown}; known: {known}")
    if "control" not in names:
        raise ValueError("--variants: the control variant is needed (NE gains are relative to it)")
    chosen = [v for v in VARIANTS if v.name in names]
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    train_dir = out / ("quick" if quick else "full") / "train"
    log(f"MovieLens-100K, {'QUICK' if quick else 'FULL'}, into {out}: {len(chosen)} variants x seeds {mode['seeds']}, "
        f"<= {mode['max_epochs']} epoch(s), {nproc} ranks")
    configs = {v.name: resolve_variant_config(v, out, {ARTIFACT_PREFIX: f"{out.as_posix()}/"}) for v in chosen}
    overrides = train_overrides(out, train_dir, int(mode["max_epochs"]), int(mode["patience"]))
    cfg0 = load_train_config(configs["control"], overrides)
    store = prepare_store(cfg0.data, cfg0.examples_dir)
    log(f"example store {store.path}: train/val/test = {store.rows('train')}/{store.rows('val')}/{store.rows('test')}")
    texts = "".join(configs[v.name].read_text() for v in chosen)
    needed = [n for n in (*TOKENIZERS, "rq_minilm", "rq_cf", "dpca_minilm")
              if f"tokenize/{n}" in texts or f"quantizers/{n}." in texts]
    fitted = fit_sid_artifacts(out, store, needed=needed, tokenizer_overrides=mode.get("tokenizer_overrides", ()))
    write_item_counts(out, store)
    ok, unavailable = check_variants(configs, overrides)
    t_prep = time.time() - t0
    record: Dict[str, Any] = {
        "world": {"name": "movielens", "kind": "movielens", "dataset": "ml100k"},
        "mode": "quick" if quick else "full", "out": str(out), "seeds": mode["seeds"],
        "epochs": mode["max_epochs"], "max_epochs": mode["max_epochs"], "early_stop_patience": mode["patience"],
        "stopping": "every run: validation after each epoch, early stop, test scored with the best validation epoch",
        "nproc": nproc, "overrides": overrides, "variants": [], "fitted": fitted,
        "unavailable": unavailable, "prep_seconds": round(t_prep, 1), "failed": [],
    }
    secondary = [s for s in mode.get("secondary_seeds", []) if s in mode["seeds"]] if seeds is None else []
    per_variant = {v.name: secondary for v in chosen if secondary and v.role in SECONDARY_ROLES}
    record["variant_seeds"] = per_variant
    train_variants(record, out, [v for v in chosen if v.name in ok], configs, mode["seeds"], overrides,
                   int(mode["max_epochs"]), nproc, mode.get("tuning"), label="ml100k: ", variant_seeds=per_variant)
    record["train_seconds"] = round(time.time() - t0 - t_prep, 1)
    record["total_seconds"] = round(time.time() - t0, 1)
    write_json(out / "pipeline.json", record)
    log(f"MovieLens training done in {record['train_seconds']}s (total {record['total_seconds']}s)")
    if report:
        from torchrec_side.report import write_report

        write_report(out, world="movielens")
        log(f"report: {out / 'report.md'}")
    return record
