# pyre-strict
"""Typed records of the run files: a run's ``metrics.json`` (written by the trainer),
the driver's ``pipeline.json`` and the benchmark's ``train_throughput.json``.

Each record is a frozen dataclass with ``from_dict`` / ``from_json(path)`` (a missing, truncated
or malformed file raises :class:`RecordError`, one line naming the file) and ``to_dict`` /
``write(path)`` (atomic, :func:`torchrec_side.io.write_json`). Keys the record does not know are
kept in ``extra``, and a record read from a file writes its keys back in the file's order, so old
run folders load and round-trip unchanged.

Only the standard library is imported here (the trainer imports this module; ``write`` imports
:mod:`torchrec_side.io` when called).

Example::

    rec = PipelineRecord.from_json(Path("runs/demo/sim_quick/pipeline.json"))
    run = RunRecord.from_json(Path(rec.variants[0].run_dirs["0"]) / "metrics.json")
    run.test.ne if run.test else None
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, FrozenSet, List, Mapping, Optional, Tuple, Type, TypeVar, Union

from torchrec_side.errors import TorchRecSideError

__all__ = ["RecordError", "SplitMetrics", "Footprint", "HistoryEntry", "RunRecord", "TunedSetting", "VariantRecord",
           "FailedRun", "RepeatExposure", "WorldInfo", "TuningRecord", "EpochSweep", "PipelineRecord",
           "ThroughputRecord", "read_json"]

Number = Union[int, float]
R = TypeVar("R", bound="_Record")


class RecordError(TorchRecSideError, ValueError):
    """A record file (``metrics.json``, ``pipeline.json``, ...) is missing, truncated or malformed.
    The message names the file (and the key)."""


def read_json(path: Path, what: str = "") -> Any:
    """The parsed JSON of ``path``; :class:`RecordError` (one line, naming the file) when it is
    missing or not valid JSON. ``what`` is added to the missing-file message."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise RecordError(f"{path} not found" + (f": {what}" if what else "")) from None
    except OSError as e:
        raise RecordError(f"{path} cannot be read: {e.strerror or e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{path} is not valid JSON: {e}") from None


class _Bad(Exception):
    """A malformed value; :meth:`_Record.from_dict` adds the file to the message."""


def _obj(x: Any, key: str) -> Dict[str, Any]:
    if not isinstance(x, dict):
        raise _Bad(f"{key!r} must be an object, got {type(x).__name__}")
    return x


def _num(x: Any, key: str) -> Optional[Number]:
    if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float))):
        raise _Bad(f"{key!r} must be a number, got {x!r}")
    return x


def _int(x: Any, key: str) -> Optional[int]:
    if x is not None and (isinstance(x, bool) or not isinstance(x, int)):
        raise _Bad(f"{key!r} must be an integer, got {x!r}")
    return x


def _str(x: Any, key: str) -> Optional[str]:
    if x is not None and not isinstance(x, str):
        raise _Bad(f"{key!r} must be a string, got {x!r}")
    return x


def _list(x: Any, key: str) -> Optional[List[Any]]:
    if x is not None and not isinstance(x, list):
        raise _Bad(f"{key!r} must be a list, got {type(x).__name__}")
    return x


def _ints(x: Any, key: str) -> Optional[Tuple[int, ...]]:
    xs = _list(x, key)
    if xs is None:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in xs):
        raise _Bad(f"{key!r} must be a list of integers, got {xs!r}")
    return tuple(xs)


def _opt(x: Any, key: str, parse: Callable[[Dict[str, Any]], Any]) -> Any:
    return None if x is None else parse(_obj(x, key))


@dataclass(frozen=True)
class _Record:
    """Base of the records: unknown keys in ``extra``, the file's key order in ``keys``."""

    extra: Mapping[str, Any] = field(default_factory=dict, kw_only=True)
    keys: Tuple[str, ...] = field(default=(), kw_only=True, compare=False, repr=False)

    #: fields written even when None by a record built in code (what the writer always writes)
    ALWAYS: ClassVar[FrozenSet[str]] = frozenset()

    @classmethod
    def _parse(cls: Type[R], d: Dict[str, Any]) -> R:
        raise NotImplementedError

    @classmethod
    def from_dict(cls: Type[R], d: Any, source: Union[str, Path] = "record") -> R:
        """The record of a parsed JSON object; :class:`RecordError` naming ``source`` if malformed."""
        try:
            return cls._parse(_obj(d, cls.__name__))
        except _Bad as e:
            raise RecordError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls: Type[R], path: Union[str, Path]) -> R:
        """Reads ``path``; :class:`RecordError` (naming the file) when missing, truncated or malformed."""
        return cls.from_dict(read_json(Path(path)), source=path)

    @classmethod
    def _known(cls, d: Mapping[str, Any]) -> Dict[str, Any]:
        names = {f.name for f in fields(cls)} - {"extra", "keys"}
        return {"extra": {k: v for k, v in d.items() if k not in names}, "keys": tuple(d)}

    def _value(self, name: str) -> Any:
        v = getattr(self, name)
        if isinstance(v, _Record):
            return v.to_dict()
        if isinstance(v, tuple):
            return [x.to_dict() if isinstance(x, _Record) else x for x in v]
        if isinstance(v, Mapping):
            return {k: (x.to_dict() if isinstance(x, _Record) else x) for k, x in v.items()}
        return v

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object (the file's key order when read from one; the writer's otherwise)."""
        out: Dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("extra", "keys"):
                continue
            v = getattr(self, f.name)
            if f.name in self.keys or v is not None or (not self.keys and f.name in self.ALWAYS):
                out[f.name] = self._value(f.name)
        out.update(self.extra)
        order = {k: i for i, k in enumerate(self.keys)}
        return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))

    def write(self, path: Union[str, Path]) -> None:
        """Writes :meth:`to_dict` to ``path`` atomically."""
        from torchrec_side.io import write_json

        write_json(Path(path), self.to_dict())


# ------------------------------------------------------------------------------------------------
# metrics.json


@dataclass(frozen=True)
class SplitMetrics(_Record):
    """One split's metrics in ``metrics.json`` (``val`` / ``test``): NE and AUC; ``ne_exact``,
    ``log_loss``, ``base_rate``, ``examples`` and the rest in ``extra``."""

    ne: Optional[float] = None
    auc: Optional[float] = None

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "SplitMetrics":
        return cls(ne=_num(d.get("ne"), "ne"), auc=_num(d.get("auc"), "auc"), **cls._known(d))


@dataclass(frozen=True)
class Footprint(_Record):
    """A history column's measured bytes per stored event (``store.footprint``)."""

    value_bytes_per_event: Optional[float] = None
    file_bytes_per_event: Optional[float] = None

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "Footprint":
        return cls(value_bytes_per_event=_num(d.get("value_bytes_per_event"), "footprint.value_bytes_per_event"),
                   file_bytes_per_event=_num(d.get("file_bytes_per_event"), "footprint.file_bytes_per_event"),
                   **cls._known(d))


@dataclass(frozen=True)
class HistoryEntry(_Record):
    """One history feature of a run: its kind, column, bytes per event as the model consumes it
    (``model_bytes_per_event``), the smallest packed size and the measured ``footprint``; the
    feature's own description (``describe()``) in ``extra``."""

    name: Optional[str] = None
    kind: Optional[str] = None
    column: Optional[str] = None
    model_bytes_per_event: Optional[Number] = None
    min_packed_bytes_per_event: Optional[Number] = None
    footprint: Optional[Footprint] = None

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "HistoryEntry":
        return cls(name=_str(d.get("name"), "history.name"), kind=_str(d.get("kind"), "history.kind"),
                   column=_str(d.get("column"), "history.column"),
                   model_bytes_per_event=_num(d.get("model_bytes_per_event"), "history.model_bytes_per_event"),
                   min_packed_bytes_per_event=_num(d.get("min_packed_bytes_per_event"),
                                                   "history.min_packed_bytes_per_event"),
                   footprint=Footprint._parse(_obj(d["footprint"], "history.footprint")) if d.get("footprint") else None,
                   **cls._known(d))


@dataclass(frozen=True)
class RunRecord(_Record):
    """A finished run's ``metrics.json`` (:func:`torchrec_side.train.trainer.run_training`).

    ``val`` / ``test`` are the best validation epoch's model (``test`` None when the run did not
    score test); ``learned_params["total"]`` the trained parameters; ``history`` one entry per
    history feature. Fields follow the trainer's key order.
    """

    name: Optional[str] = None
    seed: Optional[int] = None
    arch: Optional[str] = None
    world_size: Optional[int] = None
    device: Optional[str] = None
    steps: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    epochs: Optional[Number] = None
    resumed_from_step: Optional[int] = None
    global_batch_size: Optional[int] = None
    train_examples: Optional[int] = None
    train_time_s: Optional[float] = None
    train_examples_per_s: Optional[float] = None
    val: Optional[SplitMetrics] = None
    test: Optional[SplitMetrics] = None
    best_epoch: Optional[Number] = None
    best_step: Optional[int] = None
    val_history: Optional[Tuple[Mapping[str, Any], ...]] = None
    stopped_early: Optional[bool] = None
    early_stop_patience: Optional[int] = None
    learned_params: Optional[Mapping[str, Any]] = None
    history: Tuple[HistoryEntry, ...] = ()
    sharding: Optional[Mapping[str, Any]] = None
    pipeline: Optional[Any] = None
    optim: Optional[Mapping[str, Any]] = None
    store: Optional[str] = None
    data: Optional[Mapping[str, Any]] = None
    wall_s: Optional[float] = None
    predictions: Optional[str] = None

    ALWAYS = frozenset(("name", "seed", "arch", "world_size", "device", "steps", "steps_per_epoch", "epochs",
                        "resumed_from_step", "global_batch_size", "train_examples", "train_time_s",
                        "train_examples_per_s", "val", "test", "best_epoch", "best_step", "val_history",
                        "stopped_early", "early_stop_patience", "learned_params", "history", "sharding", "pipeline",
                        "optim", "store", "data", "wall_s"))

    @property
    def learned_total(self) -> Optional[int]:
        """``learned_params["total"]`` (None when absent)."""
        t = (self.learned_params or {}).get("total")
        return None if t is None else int(t)

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "RunRecord":
        hist = _list(d.get("history"), "history") or []
        vh = _list(d.get("val_history"), "val_history")
        lp = d.get("learned_params")
        if lp is not None:
            _obj(lp, "learned_params")
            _num(lp.get("total"), "learned_params.total")
        return cls(
            name=_str(d.get("name"), "name"), seed=_int(d.get("seed"), "seed"),
            arch=_str(d.get("arch"), "arch"), world_size=d.get("world_size"), device=d.get("device"),
            steps=d.get("steps"), steps_per_epoch=d.get("steps_per_epoch"), epochs=_num(d.get("epochs"), "epochs"),
            resumed_from_step=d.get("resumed_from_step"), global_batch_size=d.get("global_batch_size"),
            train_examples=d.get("train_examples"), train_time_s=d.get("train_time_s"),
            train_examples_per_s=_num(d.get("train_examples_per_s"), "train_examples_per_s"),
            val=_opt(d.get("val"), "val", SplitMetrics._parse), test=_opt(d.get("test"), "test", SplitMetrics._parse),
            best_epoch=_num(d.get("best_epoch"), "best_epoch"), best_step=d.get("best_step"),
            val_history=None if vh is None else tuple(vh), stopped_early=d.get("stopped_early"),
            early_stop_patience=d.get("early_stop_patience"), learned_params=lp,
            history=tuple(HistoryEntry._parse(_obj(h, "history[]")) for h in hist),
            sharding=d.get("sharding"), pipeline=d.get("pipeline"), optim=d.get("optim"), store=d.get("store"),
            data=d.get("data"), wall_s=d.get("wall_s"), predictions=_str(d.get("predictions"), "predictions"),
            **cls._known(d))


# ------------------------------------------------------------------------------------------------
# pipeline.json


@dataclass(frozen=True)
class TunedSetting(_Record):
    """The setting ``tune_and_train`` chose for a variant: its name and trainer overrides."""

    setting: Optional[str] = None
    overrides: Optional[Tuple[str, ...]] = None

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "TunedSetting":
        ov = _list(d.get("overrides"), "tuned.overrides")
        return cls(setting=_str(d.get("setting"), "tuned.setting"), overrides=None if ov is None else tuple(ov),
                   **cls._known(d))


@dataclass(frozen=True)
class VariantRecord(_Record):
    """One variant of ``pipeline.json``: its config, role, seeds, description, ``run_dirs``
    (``{seed: run folder}``, seeds as JSON keys) and ``tuned`` (None: not tuned)."""

    name: str = ""
    config: Optional[str] = None
    resolved_config: Optional[str] = None
    role: Optional[str] = None
    seeds: Optional[Tuple[int, ...]] = None
    description: Optional[str] = None
    run_dirs: Mapping[str, str] = field(default_factory=dict)
    tuned: Optional[TunedSetting] = None

    ALWAYS = frozenset(("name", "config", "resolved_config", "role", "seeds", "description", "run_dirs"))

    def runs(self) -> Dict[int, Path]:
        """``{seed: run folder}`` with integer seeds."""
        return {int(s): Path(d) for s, d in self.run_dirs.items()}

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "VariantRecord":
        name = d.get("name")
        if not isinstance(name, str):
            raise _Bad("a variant needs a string 'name'")
        rd = d.get("run_dirs", {})
        if not isinstance(rd, dict) or not all(isinstance(v, str) for v in rd.values()):
            raise _Bad(f"variant {name!r}: 'run_dirs' must be an object {{seed: folder}}")
        for s in rd:
            try:
                int(s)
            except ValueError:
                raise _Bad(f"variant {name!r}: run_dirs key {s!r} is not a seed") from None
        tu = d.get("tuned")
        return cls(name=name, config=d.get("config"), resolved_config=d.get("resolved_config"), role=d.get("role"),
                   seeds=_ints(d.get("seeds"), f"{name}.seeds"), description=_str(d.get("description"), "description"),
                   run_dirs=rd, tuned=None if tu is None else TunedSetting._parse(_obj(tu, f"{name}.tuned")),
                   **cls._known(d))


@dataclass(frozen=True)
class FailedRun(_Record):
    """A variant's runs that did not finish: its seeds, the launch's exit status and log folder
    (``tuning``: the tuning settings, for a tuning phase, in ``extra``)."""

    variant: str = ""
    seeds: Tuple[Any, ...] = ()
    returncode: Optional[int] = None
    log: Optional[str] = None

    ALWAYS = frozenset(("variant", "seeds", "returncode", "log"))

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "FailedRun":
        return cls(variant=str(d.get("variant")), seeds=tuple(_list(d.get("seeds"), "failed.seeds") or ()),
                   returncode=d.get("returncode"), log=d.get("log"), **cls._known(d))


@dataclass(frozen=True)
class RepeatExposure(_Record):
    """``world.target_in_history``: the share of sampled test impressions whose item is in the
    user's history window, and the click rates of both groups."""

    split: Optional[str] = None
    impressions: Optional[int] = None
    max_history: Optional[int] = None
    share: Optional[float] = None
    mean_count_when_in: Optional[float] = None
    ctr_in: Optional[float] = None
    ctr_not_in: Optional[float] = None

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "RepeatExposure":
        vals = {k: d.get(k) for k in ("split", "impressions", "max_history", "share", "mean_count_when_in",
                                      "ctr_in", "ctr_not_in")}
        return cls(**vals, **cls._known(d))


@dataclass(frozen=True)
class WorldInfo(_Record):
    """``pipeline.json``'s ``world`` object: name and kind (``movielens``, ``simulated``,
    ``id_dominant``), the repeat exposure, the rest (size, preset, overrides, ...) in ``extra``."""

    name: Optional[str] = None
    kind: Optional[str] = None
    target_in_history: Optional[RepeatExposure] = None

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "WorldInfo":
        return cls(name=_str(d.get("name"), "world.name"), kind=_str(d.get("kind"), "world.kind"),
                   target_in_history=_opt(d.get("target_in_history"), "world.target_in_history",
                                          RepeatExposure._parse), **cls._known(d))


@dataclass(frozen=True)
class TuningRecord(_Record):
    """``pipeline.json``'s ``tuning``: the tuning seed, the grid (``{setting: overrides}``) and per
    variant every setting's validation result and the ``chosen`` one."""

    seed: Optional[int] = None
    settings: Optional[Mapping[str, List[str]]] = None
    variants: Optional[Mapping[str, Any]] = None

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "TuningRecord":
        st = d.get("settings")
        if st is not None:
            _obj(st, "tuning.settings")
        return cls(seed=d.get("seed"), settings=st, variants=d.get("variants"), **cls._known(d))


@dataclass(frozen=True)
class EpochSweep(_Record):
    """``pipeline.json``'s ``epoch_sweep`` (older drivers): the epoch count chosen on validation."""

    rule: Optional[str] = None
    mean_val_ne_per_epoch: Optional[Tuple[float, ...]] = None
    epochs: Optional[Number] = None

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "EpochSweep":
        m = _list(d.get("mean_val_ne_per_epoch"), "epoch_sweep.mean_val_ne_per_epoch")
        return cls(rule=d.get("rule"), mean_val_ne_per_epoch=None if m is None else tuple(m), epochs=d.get("epochs"),
                   **cls._known(d))


@dataclass(frozen=True)
class PipelineRecord(_Record):
    """A world's ``pipeline.json`` (:mod:`torchrec_side.experiments`): the world, mode, seeds,
    budget, the variants and their run folders, failed runs, the tuning record, the linked
    ``control_world`` folder and timings. Fields follow the drivers' key order.
    """

    world: Optional[Union[WorldInfo, str]] = None
    id_dominant: Optional[bool] = None
    mode: Optional[str] = None
    budget: Optional[Mapping[str, Any]] = None
    out: Optional[str] = None
    seeds: Optional[Tuple[int, ...]] = None
    epochs: Optional[Number] = None
    max_epochs: Optional[Number] = None
    early_stop_patience: Optional[int] = None
    stopping: Optional[str] = None
    nproc: Optional[int] = None
    overrides: Optional[Tuple[str, ...]] = None
    variants: Tuple[VariantRecord, ...] = ()
    fitted: Optional[Any] = None
    unavailable: Optional[Any] = None
    prep_seconds: Optional[Number] = None
    failed: Tuple[FailedRun, ...] = ()
    control_world: Optional[str] = None
    variant_seeds: Optional[Mapping[str, List[int]]] = None
    tuning: Optional[TuningRecord] = None
    train_seconds: Optional[Number] = None
    total_seconds: Optional[Number] = None
    warnings: Tuple[str, ...] = ()
    epoch_sweep: Optional[EpochSweep] = None

    ALWAYS = frozenset(("world", "mode", "out", "seeds", "epochs", "max_epochs", "early_stop_patience", "stopping",
                        "nproc", "overrides", "variants", "fitted", "unavailable", "prep_seconds", "failed",
                        "variant_seeds"))

    def variant(self, name: str) -> Optional[VariantRecord]:
        """The variant called ``name`` (None when absent)."""
        return next((v for v in self.variants if v.name == name), None)

    def to_dict(self) -> Dict[str, Any]:
        out = super().to_dict()
        if not self.warnings and "warnings" not in self.keys:
            out.pop("warnings", None)
        return out

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "PipelineRecord":
        variants = d.get("variants")
        if not (isinstance(variants, list) and all(isinstance(v, dict) for v in variants)):
            raise _Bad("expected an object with a 'variants' list of {'name': str, 'run_dirs': "
                       "{seed: folder}} (what `torchrec-side demo` writes)")
        w = d.get("world")
        if w is not None and not isinstance(w, (dict, str)):
            raise _Bad(f"'world' must be an object or a name, got {w!r}")
        tu, sw = d.get("tuning"), d.get("epoch_sweep")
        ov = _list(d.get("overrides"), "overrides")
        return cls(
            world=WorldInfo._parse(w) if isinstance(w, dict) else w, id_dominant=d.get("id_dominant"),
            mode=_str(d.get("mode"), "mode"), budget=d.get("budget"), out=d.get("out"),
            seeds=_ints(d.get("seeds"), "seeds"), epochs=_num(d.get("epochs"), "epochs"),
            max_epochs=_num(d.get("max_epochs"), "max_epochs"), early_stop_patience=d.get("early_stop_patience"),
            stopping=d.get("stopping"), nproc=d.get("nproc"), overrides=None if ov is None else tuple(ov),
            variants=tuple(VariantRecord._parse(v) for v in variants), fitted=d.get("fitted"),
            unavailable=d.get("unavailable"), prep_seconds=d.get("prep_seconds"),
            failed=tuple(FailedRun._parse(_obj(f, "failed[]")) for f in _list(d.get("failed"), "failed") or []),
            control_world=_str(d.get("control_world"), "control_world"), variant_seeds=d.get("variant_seeds"),
            tuning=None if tu is None else TuningRecord._parse(_obj(tu, "tuning")),
            train_seconds=d.get("train_seconds"), total_seconds=d.get("total_seconds"),
            warnings=tuple(str(x) for x in _list(d.get("warnings"), "warnings") or []),
            epoch_sweep=None if sw is None else EpochSweep._parse(_obj(sw, "epoch_sweep")), **cls._known(d))

    @classmethod
    def from_json(cls, path: Union[str, Path]) -> "PipelineRecord":
        """Reads a world's ``pipeline.json``; :class:`RecordError` when it is missing (not a demo
        folder), truncated or malformed."""
        return cls.from_dict(read_json(Path(path), "not a `torchrec-side demo` folder"), source=path)


# ------------------------------------------------------------------------------------------------
# train_throughput.json


@dataclass(frozen=True)
class ThroughputRecord(_Record):
    """``benchmarks/train_throughput.py --json``'s output: ``summary`` holds examples/s per
    variant and the SIDE / sparse-ID and SIDE / prefix-ngram ratios; ``machine``, ``setup`` and
    ``rows`` stay in ``extra``."""

    examples_per_s: Mapping[str, float] = field(default_factory=dict)
    side_vs_sparse_id: Optional[float] = None
    side_vs_prefix_ngram: Optional[float] = None

    @classmethod
    def _parse(cls, d: Dict[str, Any]) -> "ThroughputRecord":
        sm = _obj(d.get("summary") or {}, "summary")
        eps = _obj(sm.get("examples_per_s") or {}, "summary.examples_per_s")
        for k, v in eps.items():
            _num(v, f"summary.examples_per_s.{k}")
        return cls(examples_per_s=eps, side_vs_sparse_id=_num(sm.get("side_vs_sparse_id"), "summary.side_vs_sparse_id"),
                   side_vs_prefix_ngram=_num(sm.get("side_vs_prefix_ngram"), "summary.side_vs_prefix_ngram"),
                   extra=dict(d), keys=tuple(d))

    def to_dict(self) -> Dict[str, Any]:
        out = dict(self.extra)
        sm = dict(out.get("summary") or {})
        for k, v in (("side_vs_sparse_id", self.side_vs_sparse_id), ("side_vs_prefix_ngram", self.side_vs_prefix_ngram),
                     ("examples_per_s", dict(self.examples_per_s))):
            if k in sm or v:
                sm[k] = v
        out["summary"] = sm
        return out
