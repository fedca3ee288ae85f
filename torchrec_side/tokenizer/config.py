# pyre-strict
"""Typed configs of the VQ-fusion tokenizer: model, bottleneck, training, data and the CLI job.

All are small dataclasses; :func:`torchrec_side.config.load_config` maps YAML files and
``key=value`` overrides onto :class:`TokenizeJobConfig`. Values are checked in
``__post_init__`` so a bad config fails before any data is loaded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import List, Optional

from torchrec_side.config import check_seed, ConfigError
from torchrec_side.data.examples import MAX_SYNTHETIC_ROWS

__all__ = [
    "NORMALIZATIONS",
    "RECON_LOSSES",
    "TARGET_KINDS",
    "BOTTLENECK_KINDS",
    "CollectionConfig",
    "TargetConfig",
    "BottleneckConfig",
    "FusionModelConfig",
    "TrainConfig",
    "DataConfig",
    "TokenizeJobConfig",
]

NORMALIZATIONS = ("none", "l2", "standardize", "layernorm")
RECON_LOSSES = ("cosine", "mse")
TARGET_KINDS = ("multi_label", "single_label")
BOTTLENECK_KINDS = ("dpca", "rq")
DEVICES = ("auto", "cpu", "cuda")


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{what}: {value!r} is not one of {list(choices)}")


def _check_packable(layout: str, radices: List[int]) -> None:
    """Checks that ``radices`` pack into one int64 SID in ``layout`` (docs/design.md section 5).

    ``"auto"`` is what :func:`torchrec_side.tokenizer.artifact.make_codec` does: byte-grouped, else
    mixed radix. Run when the job config is built, so a config that cannot be packed fails before
    training rather than after it.
    """
    from torchrec_side.sid.codec import SIDCodec

    try:
        if layout == "mixed_radix":
            SIDCodec.mixed_radix(radices)
        elif layout == "byte_grouped":
            SIDCodec.byte_grouped(radices)
        else:
            try:
                SIDCodec.byte_grouped(radices)
            except ValueError:
                SIDCodec.mixed_radix(radices)
    except ValueError as e:
        bits = sum(math.log2(k) for k in radices)
        raise ConfigError(
            f"codec={layout!r}: the bottleneck's {len(radices)} levels ({bits:.1f} bits) do not pack "
            f"into one int64 SID; use fewer levels or codes ({e})"
        ) from e


def _check_widths(what: str, widths: List[int]) -> None:
    if any(w < 1 for w in widths):
        raise ConfigError(f"{what}: layer widths must be >= 1, got {widths}")


@dataclass
class CollectionConfig:
    """One content-embedding collection ``x^(m) [d_m]`` of an item (e.g. a text embedding).

    The collection is normalized by a fixed (non-learned) transform, projected linearly to
    ``proj_dim`` and concatenated with the other collections before the encoder MLP. Its decoder
    reconstructs the *normalized* vector from ``z_hat``. Rows that are all zero count as
    missing (e.g. an item without interactions has no collaborative vector): their input is zero
    and they are left out of this collection's reconstruction loss.

    Args:
        name: key of the collection in the data (e.g. ``"minilm"``).
        dim: ``d_m``; ``0`` means "take it from the data".
        normalize: ``"none"``, ``"l2"`` (unit rows), ``"standardize"`` (per-feature mean / std
            of the training items, stored in the artifact) or ``"layernorm"`` (per-row, no affine).
        proj_dim: width of the per-collection linear projection.
        loss: reconstruction loss, ``"cosine"`` (``1 - cos``) or ``"mse"``.
        weight: weight of the reconstruction loss in the total.
        decoder_hidden: hidden widths of the decoder MLP ``z_hat -> x^(m)``.
    """

    name: str = ""
    dim: int = 0
    normalize: str = "l2"
    proj_dim: int = 128
    loss: str = "cosine"
    weight: float = 1.0
    decoder_hidden: List[int] = field(default_factory=lambda: [256])

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("collection: name must be set")
        _check_choice(f"collection {self.name!r}: normalize", self.normalize, NORMALIZATIONS)
        _check_choice(f"collection {self.name!r}: loss", self.loss, RECON_LOSSES)
        if self.dim < 0 or self.proj_dim < 1 or self.weight < 0:
            raise ConfigError(f"collection {self.name!r}: need dim >= 0, proj_dim >= 1, weight >= 0")
        _check_widths(f"collection {self.name!r}: decoder_hidden", self.decoder_hidden)


@dataclass
class TargetConfig:
    """One categorical target ``y^(j)`` predicted from ``z_hat`` by a small head.

    Args:
        name: key of the target in the data (e.g. ``"genres"``).
        kind: ``"multi_label"`` (targets ``[N, C]`` of 0/1, BCE) or ``"single_label"``
            (targets ``[N]`` of class indices, softmax cross-entropy; ``-1`` = unknown, ignored).
        num_classes: ``C``; ``0`` means "take it from the data".
        weight: weight of the head's loss in the total.
        hidden: hidden widths of the head MLP (``[]``: a linear head).
    """

    name: str = ""
    kind: str = "multi_label"
    num_classes: int = 0
    weight: float = 1.0
    hidden: List[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("target: name must be set")
        _check_choice(f"target {self.name!r}: kind", self.kind, TARGET_KINDS)
        if self.num_classes < 0 or self.weight < 0:
            raise ConfigError(f"target {self.name!r}: need num_classes >= 0 and weight >= 0")
        _check_widths(f"target {self.name!r}: hidden", self.hidden)


@dataclass
class BottleneckConfig:
    """The differentiable quantizer between encoder and decoders.

    ``kind="rq"``: residual VQ with learned codebooks ``[K_l, D]`` (docs/design.md section 3, RQ-KMeans).
    ``kind="dpca"``: Discrete-PCA; level ``l`` quantizes the projection of the residual on
    ``m_l`` principal directions ``V_l`` (PCA of the residual of the first batches, then fixed)
    with learned codewords ``[K_l, m_l]``. Both decode additively,
    ``z_hat = offset + sum_l T_l[c_l]``.

    Levels are given either uniformly (``num_levels`` x ``codes`` codes, block width ``width``)
    or per level with ``radices`` (and ``widths`` for DPCA), which then win.

    Args:
        kind: ``"dpca"`` or ``"rq"``.
        num_levels: ``L`` (uniform form).
        codes: ``K`` per level (uniform form).
        width: ``m`` per level, DPCA only (uniform form).
        radices: per-level ``K_l`` (overrides ``num_levels`` / ``codes`` when non-empty).
        widths: per-level ``m_l`` for DPCA (overrides ``width`` when non-empty).
        center: learn an ``offset`` (the mean of ``z``); else the offset is zero.
        commitment: ``beta`` of the commitment loss ``beta * ||z - sg(z_q)||^2``.
        ema: update codewords by exponential moving averages of their assigned points
            (else codewords are parameters trained by the codebook loss).
        ema_decay: EMA decay.
        ema_eps: Laplace smoothing of the EMA cluster sizes.
        restart_dead: re-seed codewords whose usage share stays below
            ``dead_threshold / K_l`` with points of the current batch.
        dead_threshold: see ``restart_dead`` (a fraction of the uniform share ``1 / K_l``).
        restart_every: training steps between dead-code checks.
        usage_decay: decay of the per-code usage share used for dead-code detection.
        init_samples: items encoded to initialize the bottleneck (PCA directions, k-means
            codewords) before training: the first batches of the shuffled training items.
        init_kmeans_iters: Lloyd iterations of that initialization.
    """

    kind: str = "dpca"
    num_levels: int = 40
    codes: int = 3
    width: int = 1
    radices: List[int] = field(default_factory=list)
    widths: List[int] = field(default_factory=list)
    center: bool = True
    commitment: float = 0.25
    ema: bool = True
    ema_decay: float = 0.95
    ema_eps: float = 1e-5
    restart_dead: bool = True
    dead_threshold: float = 0.05
    restart_every: int = 10
    usage_decay: float = 0.95
    init_samples: int = 4096
    init_kmeans_iters: int = 25

    def __post_init__(self) -> None:
        _check_choice("bottleneck.kind", self.kind, BOTTLENECK_KINDS)
        if not self.radices and (self.num_levels < 1 or self.codes < 2):
            raise ConfigError(f"bottleneck: need num_levels >= 1 and codes >= 2, got {self.num_levels}, {self.codes}")
        if any(k < 2 for k in self.radices):
            raise ConfigError(f"bottleneck.radices: every level needs >= 2 codes, got {self.radices}")
        if self.width < 1 or any(m < 1 for m in self.widths):
            raise ConfigError("bottleneck: block widths must be >= 1")
        if self.widths and self.kind == "rq":
            raise ConfigError("bottleneck.widths is for kind='dpca' (RQ levels span the whole latent)")
        if self.widths and len(self.widths) != len(self.level_radices()):
            raise ConfigError(
                f"bottleneck: {len(self.widths)} widths for {len(self.level_radices())} levels"
            )
        if not 0.0 <= self.ema_decay < 1.0 or not 0.0 <= self.usage_decay < 1.0:
            raise ConfigError("bottleneck: ema_decay and usage_decay must be in [0, 1)")
        if self.commitment < 0 or self.dead_threshold < 0 or self.restart_every < 1:
            raise ConfigError("bottleneck: need commitment >= 0, dead_threshold >= 0, restart_every >= 1")
        if self.init_samples < 1 or self.init_kmeans_iters < 0:
            raise ConfigError("bottleneck: need init_samples >= 1, init_kmeans_iters >= 0")

    def level_radices(self) -> List[int]:
        """``[K_1, ..., K_L]``."""
        return list(self.radices) if self.radices else [self.codes] * self.num_levels

    def level_widths(self, latent_dim: int) -> List[int]:
        """``[m_1, ..., m_L]``: ``latent_dim`` for every RQ level."""
        n = len(self.level_radices())
        if self.kind == "rq":
            return [latent_dim] * n
        ws = list(self.widths) if self.widths else [self.width] * n
        if max(ws) > latent_dim:
            raise ConfigError(f"bottleneck: block width {max(ws)} exceeds latent_dim={latent_dim}")
        return ws

    @property
    def bits(self) -> float:
        """``sum_l log2 K_l``."""
        return float(sum(math.log2(k) for k in self.level_radices()))


@dataclass
class FusionModelConfig:
    """The multi-task VQ-VAE: encoder, bottleneck, decoders and heads.

    Args:
        collections: the ``M >= 1`` content collections.
        targets: the ``J >= 0`` categorical targets.
        latent_dim: ``D``, width of ``z`` and of the quantizer tables.
        encoder_hidden: hidden widths of the encoder MLP after the concatenated projections.
        dropout: dropout of the encoder and decoder MLPs.
        input_dropout: training-time probability of blanking a whole collection of an item
            (teaches the encoder to tokenize items with a missing collection, e.g. cold items
            without interactions). Never blanks all collections of an item.
        normalize_latent: layer-normalize ``z`` (no affine), which keeps the latent's scale, and
            so the commitment loss and the codebooks, stable while the encoder trains.
        bottleneck: :class:`BottleneckConfig`.
    """

    collections: List[CollectionConfig] = field(default_factory=list)
    targets: List[TargetConfig] = field(default_factory=list)
    latent_dim: int = 64
    encoder_hidden: List[int] = field(default_factory=lambda: [256])
    dropout: float = 0.0
    input_dropout: float = 0.0
    normalize_latent: bool = True
    bottleneck: BottleneckConfig = field(default_factory=BottleneckConfig)

    def __post_init__(self) -> None:
        if not self.collections:
            raise ConfigError("model.collections: at least one content collection is needed")
        names = [c.name for c in self.collections] + [t.name for t in self.targets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"model: collection / target names must be unique, repeated: {dup}")
        if self.latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be >= 1, got {self.latent_dim}")
        _check_widths("model.encoder_hidden", self.encoder_hidden)
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.input_dropout < 1.0:
            raise ConfigError("model: dropout and input_dropout must be in [0, 1)")
        self.bottleneck.level_widths(self.latent_dim)  # checks m_l <= D


@dataclass
class TrainConfig:
    """Mini-batch training of the tokenizer.

    Args:
        epochs: maximum number of epochs.
        batch_size: items per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: max gradient norm (``0``: no clipping).
        val_fraction: share of items held out (validation, early stopping, held-out statistics).
        patience: stop after this many epochs without improvement of the validation loss
            (``0``: never stop early).
        min_delta: smallest decrease of the validation loss that counts as an improvement.
        warmup_epochs: epochs trained without quantization (``z_hat = z``) before the
            bottleneck is initialized from the encoder's output; they do not count toward
            ``epochs`` nor toward early stopping.
        restore_best: keep the weights of the best validation epoch.
        seed: seeds the split, initialization, shuffling and dropout.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        num_threads: CPU threads torch uses while training (restored afterwards); the model's
            operations are tiny, so one thread is fastest and immune to CPU oversubscription;
            ``0`` leaves torch's setting alone.
        progress: show a tqdm progress bar.
    """

    epochs: int = 150
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    val_fraction: float = 0.15
    patience: int = 20
    min_delta: float = 1e-4
    warmup_epochs: int = 10
    restore_best: bool = True
    seed: int = 0
    device: str = "auto"
    num_threads: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("train: need epochs >= 1, batch_size >= 1, lr > 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"train.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.patience < 0 or self.grad_clip < 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ConfigError("train: need patience, grad_clip, weight_decay, warmup_epochs >= 0")
        if self.device not in DEVICES and not re.fullmatch(r"cuda:\d+", self.device):
            raise ConfigError(f"train.device: {self.device!r} is not one of {list(DEVICES)} or 'cuda:N'")
        if self.num_threads < 0:
            raise ConfigError(f"train.num_threads must be >= 0, got {self.num_threads}")
        check_seed(self.seed, "train.seed")


@dataclass
class DataConfig:
    """Where the items come from. Collections and targets to load are named by the model config.

    MovieLens-100K (``dataset="ml100k"``) offers collections ``"minilm"`` (MiniLM-L6 384-d of
    "title (year). Genres: ..."), ``"collaborative"`` (truncated-SVD item embedding fitted on the
    *training* rating events of the global time split only) and targets ``"genres"``
    (multi-label, 19) and ``"year_bucket"`` (single-label, 7). ``dataset="synthetic"`` gives
    clustered items with collections ``"a"``, ``"b"``, ``"c"`` and targets ``"multi"``,
    ``"single"`` (for tests and smoke runs). ``dataset="adsworld"`` reads a simulated-world folder
    (``world_dir``, docs/design.md section 7c): collections ``"text"`` [N, 384] and ``"image"``
    [N, 128] (``content/<name>.npy``), targets ``"category"`` and ``"subcategory"`` (single-label,
    ``items.parquet``). Only item content and labels are read, no interaction of any split.

    Args:
        dataset: ``"ml100k"``, ``"synthetic"`` or ``"adsworld"``.
        world_dir: ``adsworld``: the world folder written by ``torchrec-side world``.
        root: MovieLens source (see ``torchrec_side.data.movielens.load_movielens``); ``None``:
            the default cached download.
        train_fraction: the first ``train_fraction`` of rating events by time are the training
            events the collaborative embedding is fitted on (docs/design.md section 7: 0.8; the split of
            ``torchrec_side.data.protocol.time_split``).
        cf_dim: width of the collaborative embedding.
        cf_seed: seed of its randomized SVD.
        synthetic_items: number of synthetic items.
        synthetic_clusters: number of synthetic clusters.
        synthetic_seed: seed of the synthetic generator.
    """

    dataset: str = "ml100k"
    root: Optional[str] = None
    world_dir: Optional[str] = None
    train_fraction: float = 0.8
    cf_dim: int = 64
    cf_seed: int = 0
    synthetic_items: int = 2000
    synthetic_clusters: int = 16
    synthetic_seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("data.dataset", self.dataset, ("ml100k", "synthetic", "adsworld"))
        if self.dataset == "adsworld" and not self.world_dir:
            raise ConfigError("data.world_dir must name the simulated-world folder when data.dataset is 'adsworld'")
        if not 0.0 < self.train_fraction < 1.0:
            raise ConfigError(f"data.train_fraction must be in (0, 1), got {self.train_fraction}")
        if self.cf_dim < 1 or self.synthetic_items < 2 or self.synthetic_clusters < 1:
            raise ConfigError("data: need cf_dim >= 1, synthetic_items >= 2, synthetic_clusters >= 1")
        if self.synthetic_items > MAX_SYNTHETIC_ROWS:  # tests and examples only: a typo must not allocate terabytes
            raise ConfigError(f"data.synthetic_items must be <= {MAX_SYNTHETIC_ROWS:,}, got {self.synthetic_items:,}")
        check_seed(self.cf_seed, "data.cf_seed")
        check_seed(self.synthetic_seed, "data.synthetic_seed")


@dataclass
class TokenizeJobConfig:
    """``torchrec-side tokenize``: train a tokenizer, write artifact, SID table and statistics.

    The run folder is ``<output_dir>/<name>``; it receives ``config.yaml``, ``train_log.jsonl``,
    ``tokenizer/`` (the artifact), ``sid_table.parquet`` and ``stats.json``.

    Args:
        name: run name (folder name).
        output_dir: parent folder of run folders.
        codec: SID packing layout: ``"auto"`` (byte-grouped when every level fits a byte group
            and the SID fits 8 bytes, else mixed radix), ``"byte_grouped"`` or ``"mixed_radix"``.
        data: :class:`DataConfig`.
        model: :class:`FusionModelConfig`.
        train: :class:`TrainConfig`.
    """

    name: str = "tokenizer"
    output_dir: str = "runs/tokenize"
    codec: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: FusionModelConfig = field(
        default_factory=lambda: FusionModelConfig(collections=[CollectionConfig(name="minilm")])
    )
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"name must be a non-empty folder name, got {self.name!r}")
        _check_choice("codec", self.codec, ("auto", "byte_grouped", "mixed_radix"))
        _check_packable(self.codec, self.model.bottleneck.level_radices())
