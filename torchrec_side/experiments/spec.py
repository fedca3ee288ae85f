# pyre-strict
"""What a world of the benchmark is, declared: its variants, the artifacts they need, its budget.

A :class:`WorldSpec` is data: the world's name and source (:class:`WorldSource`: how its data is
had and its artifacts built, the only world-specific code), its artifacts (:class:`Artifact`:
tokenizers, quantizer fits, SID tables; how each is built and what files it produces), its
variants (:class:`Variant`: a packaged config and the artifacts it reads, named, never found by
searching config text) and its :class:`Budget` (seeds, epochs, patience, tuning grid).
:func:`torchrec_side.experiments.runner.run_world` runs any spec.

A variant's config reads an artifact through an interpolation of the context the runner supplies,
``${artifacts.<name>.<output>}`` (``${world.<key>}`` for the world's own values), written with a
default for the config used on its own, e.g.
``artifact: ${oc.select:artifacts.fused_dpca.dir,runs/demo/tokenize/fused_dpca}``.

Example::

    spec = WorldSpec("toy", source, variants=(Variant("control", "ml100k/dlrm_control", "control", ""),),
                     artifacts=(), budget=Budget(seeds=(0,), max_epochs=1, patience=1))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from torchrec_side.config import ConfigError

__all__ = ["Variant", "TuningSetting", "Tuning", "MAIN_TUNING", "Artifact", "Budget", "WorldInfo",
           "WorldSource", "WorldSpec"]


@dataclass(frozen=True)
class Variant:
    """One feature variant of a world's benchmark.

    Args:
        name (str): report name (``control``, ``side``, ...).
        config (str): packaged config name (``ml100k/dlrm_side``) or a YAML file.
        role (str): ``control`` / ``sparse_id`` / ``raw_content`` / ``traditional`` / ``side`` /
            ``ablation`` / ``reference`` / ``sequence``.
        description (str): one line for the report.
        needs (Tuple[str, ...]): the artifacts its config reads (``${artifacts.<name>...}``);
            the runner supplies exactly these.
        overrides (Tuple[str, ...]): ``key=value`` changes merged into its filled config.

    Example::

        Variant("side", "adsworld/dlrm_side", "side", "VQ-fusion DPCA SID + SIDE", needs=("fused_dpca",))
    """

    name: str
    config: str
    role: str
    description: str
    needs: Tuple[str, ...] = ()
    overrides: Tuple[str, ...] = ()


@dataclass(frozen=True)
class TuningSetting:
    """One point of a tuning grid: a name and the trainer overrides it adds.

    Args:
        name (str): short name (a folder name: letters, digits, ``_``, ``-``).
        overrides (Tuple[str, ...]): ``key=value`` trainer overrides (empty: the config as shipped).

    Example::

        TuningSetting("no_user_table", ("model.id_features=[item_id]",))
    """

    name: str
    overrides: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise ConfigError(f"TuningSetting.name must be letters, digits, '_' or '-', got {self.name!r}")


@dataclass(frozen=True)
class Tuning:
    """The tuning budget every variant of a world gets (docs/design.md section 7b).

    Each variant trains once per setting with ``seed`` and ``train.score_test=false`` (the test
    split is never read), the setting with the lowest best-epoch validation NE is chosen
    (:func:`~torchrec_side.experiments.common.choose_setting`; ties go to the earlier setting),
    and every seed then trains at the chosen setting. Control is tuned like every other variant,
    so a gain is never the product of one side's tuning.

    Args:
        settings (Tuple[TuningSetting, ...]): the grid (at least one; the first is the reference).
        seed (int): the tuning seed.

    Example::

        Tuning((TuningSetting("base"), TuningSetting("emb_lr_low", ("optim.embedding_lr=0.02",))))
    """

    settings: Tuple[TuningSetting, ...]
    seed: int = 0

    def __post_init__(self) -> None:
        names = [t.name for t in self.settings]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"Tuning.settings must be non-empty with unique names, got {names}")

    def get(self, name: str) -> TuningSetting:
        for t in self.settings:
            if t.name == name:
                return t
        raise KeyError(f"no tuning setting {name!r} (have {[t.name for t in self.settings]})")


#: The tuning grid of both worlds' main budgets (issue 15, Deliver 3), the same for every variant,
#: control included: the config as shipped; without the learned ``user_id`` table (in the
#: simulated world it overfits after one epoch and its early stop froze the history rows before
#: they learned: the review's control-world finding); and the embedding learning rate at 0.02
#: instead of 0.05 (slower tables, the other lever on the same over-fit).
MAIN_TUNING: Tuning = Tuning((
    TuningSetting("base"),
    TuningSetting("no_user_table", ("model.id_features=[item_id]",)),
    TuningSetting("emb_lr_low", ("optim.embedding_lr=0.02",)),
))


@dataclass(frozen=True)
class Artifact:
    """One artifact a world builds before training, from what the protocol allows it to read.

    Args:
        name (str): its name in :attr:`Variant.needs` and in configs (``${artifacts.<name>.<output>}``).
        kind (str): how it is built; the world's :class:`WorldSource` knows each of its kinds
            (``tokenizer``, ``permuted``, ``rq_kmeans``, ``dpca``).
        source (str): what it is built from: a packaged tokenizer config, a content collection,
            another artifact.
        outputs (Mapping[str, str]): what it produces, ``{output: path under the world folder}``
            (a config reads one as ``${artifacts.<name>.<output>}``).
        after (Tuple[str, ...]): artifacts it is built from (declared before it; built with it).
        overrides (Tuple[str, ...]): ``key=value`` overrides of its builder's config.
        options (Mapping[str, Any]): builder settings (seed, items to fit on, codec layout).

    Example::

        Artifact("rq_text", "rq_kmeans", "text", {"quantizer": "quantizers/rq_text.safetensors",
                 "sid_table": "quantizers/rq_text_sids.parquet"}, options={"fit_items": 20000})
    """

    name: str
    kind: str
    source: str
    outputs: Mapping[str, str]
    after: Tuple[str, ...] = ()
    overrides: Tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ConfigError(f"Artifact.name must be an identifier (a config key), got {self.name!r}")
        if not self.outputs or not all(k.isidentifier() for k in self.outputs):
            raise ConfigError(f"artifact {self.name!r}: outputs must name at least one file, keys identifiers")

    def paths(self, out: Path) -> Dict[str, str]:
        """``{output: absolute path}`` under the world folder ``out`` (the ``${artifacts.<name>}`` context)."""
        return {k: (out / v).as_posix() for k, v in self.outputs.items()}


@dataclass(frozen=True)
class Budget:
    """What every variant of a world gets.

    Args:
        seeds (Tuple[int, ...]): final seeds.
        max_epochs (int): most epochs per run.
        patience (int): validation early-stop patience.
        secondary_seeds (Optional[Tuple[int, ...]]): seeds of :attr:`WorldSpec.secondary`
            variants (among ``seeds``, so they stay paired with control; None: ``seeds``).
        tuning (Optional[Tuning]): the grid every variant is tuned over (None: configs as shipped).
        default_variants (Optional[Tuple[str, ...]]): what runs without ``--variants`` (None: all).
        mode (str): ``full`` or ``quick`` (the report's label).
        train_dir (str): final runs' ``output_dir`` under the world folder.

    Example::

        Budget(seeds=(0, 1, 2), max_epochs=4, patience=2, tuning=MAIN_TUNING)
    """

    seeds: Tuple[int, ...]
    max_epochs: int
    patience: int
    secondary_seeds: Optional[Tuple[int, ...]] = None
    tuning: Optional[Tuning] = None
    default_variants: Optional[Tuple[str, ...]] = None
    mode: str = "full"
    train_dir: str = "train"

    def __post_init__(self) -> None:
        if not self.seeds or self.max_epochs < 1 or self.patience < 0:
            raise ConfigError("Budget: need seeds, max_epochs >= 1, patience >= 0")
        if self.secondary_seeds is not None and not set(self.secondary_seeds) <= set(self.seeds):
            raise ConfigError(f"Budget.secondary_seeds {self.secondary_seeds} must be among seeds {self.seeds} "
                             "(paired with control)")
        if self.mode not in ("full", "quick"):
            raise ConfigError(f"Budget.mode must be 'full' or 'quick', got {self.mode!r}")


@dataclass(frozen=True)
class WorldInfo:
    """What a world's source hands the runner once its data is there.

    Args:
        context (Mapping[str, Any]): ``${world.<key>}`` values of the variant configs.
        manifest (Mapping[str, Any]): the world's description (recorded by the source).
    """

    context: Mapping[str, Any] = field(default_factory=dict)
    manifest: Mapping[str, Any] = field(default_factory=dict)


class WorldSource(Protocol):
    """The world-specific part of a world: its data, its artifact builders, its record fields."""

    def prepare(self, out: Path) -> WorldInfo:
        """Makes the world's data available under ``out`` (skipped when it is there)."""
        ...

    def build(self, out: Path, store: Any, artifacts: Sequence[Artifact]) -> Dict[str, Any]:
        """Builds ``artifacts`` (in order; each skipped when it exists); returns the ``fitted`` record."""
        ...

    def describe(self, out: Path, info: WorldInfo, store: Any) -> Dict[str, Any]:
        """The world's own fields of ``pipeline.json`` (``world`` and what else it records)."""
        ...


@dataclass(frozen=True)
class WorldSpec:
    """One world of the benchmark, declared; checked as it is built.

    Args:
        name (str): the world's name (reports, log lines).
        title (str): how ``--variants`` messages name it (``MovieLens``, ``simulated-world``).
        source (WorldSource): its data and builders.
        variants (Tuple[Variant, ...]): every variant, in report order (``control`` among them).
        artifacts (Tuple[Artifact, ...]): every artifact, each after those it is built from.
        budget (Budget): the budget.
        secondary (Tuple[str, ...]): variants trained at ``budget.secondary_seeds``.
        label (str): log prefix.

    Raises:
        ValueError: a variant needs an artifact the spec does not declare (naming both), an
            artifact is built from one not declared before it, names repeat, or the budget
            names variants the spec does not have.
    """

    name: str
    title: str
    source: WorldSource
    variants: Tuple[Variant, ...]
    artifacts: Tuple[Artifact, ...]
    budget: Budget
    secondary: Tuple[str, ...] = ()
    label: str = ""

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        arts = [a.name for a in self.artifacts]
        for what, seq in (("variant", names), ("artifact", arts)):
            dup = sorted({n for n in seq if seq.count(n) > 1})
            if dup:
                raise ConfigError(f"world {self.name}: {what} names repeat: {dup}")
        if "control" not in names:
            raise ConfigError(f"world {self.name}: no control variant (NE gains are relative to it)")
        for v in self.variants:
            missing = [n for n in v.needs if n not in arts]
            if missing:
                raise ConfigError(f"world {self.name}: variant {v.name!r} needs artifact(s) {missing} the spec does "
                                 f"not declare (declared: {arts})")
        for i, a in enumerate(self.artifacts):
            early = [n for n in a.after if n not in arts[:i]]
            if early:
                raise ConfigError(f"world {self.name}: artifact {a.name!r} is built from {early}, not declared before it")
        for what, seq in (("secondary", self.secondary), ("budget.default_variants", self.budget.default_variants or ())):
            bad = sorted(set(seq) - set(names))
            if bad:
                raise ConfigError(f"world {self.name}: {what} names unknown variants {bad}")

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def artifact(self, name: str) -> Artifact:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise KeyError(name)

    def select(self, names: Optional[Sequence[str]] = None) -> List[Variant]:
        """The variants ``names`` asks for (default: the budget's, else all), in spec order.

        Raises:
            ValueError: an unknown name, or no ``control``.
        """
        known = [v.name for v in self.variants]
        want = list(names or self.budget.default_variants or known)
        unknown = [n for n in want if n not in known]
        if unknown:
            raise ConfigError(f"--variants: unknown {self.title} variants {unknown}; known: {known}")
        if "control" not in want:
            raise ConfigError("--variants: the control variant is needed (NE gains are relative to it)")
        return [v for v in self.variants if v.name in want]

    def needed(self, variants: Sequence[Variant]) -> List[Artifact]:
        """The artifacts ``variants`` need, with those they are built from, in declared order."""
        want = {n for v in variants for n in v.needs}
        for a in reversed(self.artifacts):  # `after` only points back, so one backward pass closes it
            if a.name in want:
                want.update(a.after)
        return [a for a in self.artifacts if a.name in want]
