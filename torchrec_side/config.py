# pyre-strict
"""Typed configs: YAML files mapped onto dataclasses, with ``key=value`` command-line overrides.

Every command of the project describes its settings as a tree of small dataclasses (the
*schema*). :func:`load_config` builds one from the schema's defaults, a YAML file and a list of
``key=value`` overrides, in that order, with OmegaConf structured configs doing the type checks.
Anything the schema does not declare is an error, never silently ignored: a misspelt key in a
YAML file or on the command line fails with the offending key, where it came from, and the
closest valid names.

Validation that goes beyond types belongs in the dataclasses' ``__post_init__`` (raise
``ValueError``); it runs when the final object is built and is reported as a :class:`ConfigError`.
One check applies to every schema, before any ``__post_init__``: a float option (anywhere in the
tree, lists and mappings included) must be finite. ``nan`` / ``inf`` / ``-inf`` fail with the key
and where the value came from (``nan`` compares false with every bound, so per-field range checks
would let it through).

Packaged configs: the YAML files of the repository's top-level ``configs/<world>/<name>.yaml``
ship as package data (the package ``torchrec_side.configs``, mapped in ``setup.py``). Every
``--config`` and :func:`load_config` accepts a file that exists or a packaged name, read through
:mod:`importlib.resources`, so nothing depends on the current folder
(:func:`resolve_config`): ``ml100k/dlrm_side`` or ``ml100k/dlrm_side.yaml``, or
``configs/ml100k/dlrm_side.yaml`` when no such file exists here (the part after the last
``configs/`` is looked up in the package). Worlds: ``ml100k`` (MovieLens-100K, docs/design.md
section 7) and ``adsworld`` (the simulated ads world, section 7c).

Example::

    @dataclass
    class Optim:
        lr: float = 1e-3
        betas: List[float] = field(default_factory=lambda: [0.9, 0.999])

    @dataclass
    class Job:
        name: str = "demo"
        optim: Optim = field(default_factory=Optim)

    cfg = load_config(Job, "job.yaml", ["optim.lr=0.01", "name=run1"])
    cfg.optim.lr                      # 0.01
    load_config(Job, overrides=["optim.lrr=1"])
    # ConfigError: unknown config key 'optim.lrr' (from override optim.lrr='1'); did you mean 'optim.lr'?
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

from torchrec_side.errors import TorchRecSideError

__all__ = [
    "resolve_config",
    "packaged_configs",
    "read_config_text",
    "is_packaged_name",
    "ConfigError",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "save_config",
    "parse_overrides",
    "check_finite",
    "check_seed",
    "MAX_SEED",
]

T = TypeVar("T")
PathLike = Union[str, "os.PathLike[str]"]


class ConfigError(TorchRecSideError, ValueError):
    """A config file or override is invalid: unknown key, wrong type, bad value or bad syntax."""


def _schema_keys(schema: Any, prefix: str = "") -> List[str]:
    """All dotted keys a dataclass schema declares; list elements of dataclasses appear as ``<i>``."""
    keys: List[str] = []
    if not dataclasses.is_dataclass(schema):
        return keys
    try:
        hints = typing.get_type_hints(schema)
    except Exception:  # pragma: no cover - unresolvable annotations
        hints = {}
    for f in dataclasses.fields(schema):
        name = f"{prefix}{f.name}"
        keys.append(name)
        ftype = hints.get(f.name, f.type)
        args = [a for a in typing.get_args(ftype) if a is not type(None)]
        origin = typing.get_origin(ftype)
        if dataclasses.is_dataclass(ftype):
            keys.extend(_schema_keys(ftype, name + "."))
        elif origin in (list, List, tuple) and args and dataclasses.is_dataclass(args[0]):
            keys.extend(_schema_keys(args[0], name + ".<i>."))
        elif origin is Union and len(args) == 1 and dataclasses.is_dataclass(args[0]):
            keys.extend(_schema_keys(args[0], name + "."))
    return keys


def _suggest(key: str, schema: Any) -> str:
    keys = _schema_keys(schema)
    generic = ".".join("<i>" if part.isdigit() else part for part in key.split("."))
    close = difflib.get_close_matches(generic, keys, n=3, cutoff=0.75)
    if not close:
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in keys if k.rsplit(".", 1)[-1] == leaf][:3]
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _full_key(err: Exception) -> str:
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    return str(key) if key is not None else ""


def _wrap(err: Exception, schema: Any, where: str) -> ConfigError:
    """Turns an OmegaConf / dataclass error into a ConfigError naming key and source."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    key = _full_key(err)
    msg = str(err).split("\n")[0]
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and key:
        hint = _suggest(key, schema) or (f": {msg}" if msg else "")
        return ConfigError(f"unknown config key {key!r} ({where}){hint}")
    if isinstance(err, ValidationError) and key:
        return ConfigError(f"invalid value for config key {key!r} ({where}): {msg}")
    return ConfigError(f"invalid config ({where}): {msg}")


def parse_overrides(overrides: Sequence[str]) -> List[Tuple[str, str]]:
    """Splits ``key=value`` strings into ``(key, value)`` pairs, checking the syntax.

    Args:
        overrides: strings such as ``"train.lr=0.01"`` or ``"model.radices=[3,3,3]"`` (values are
            parsed as YAML later, so lists, booleans and ``null`` work).

    Returns:
        ``[(key, value)]`` in the given order.

    Raises:
        ConfigError: an item without ``=`` or with an empty or malformed key.

    Example::

        parse_overrides(["seed=3", "train.device=cuda"])   # [('seed', '3'), ('train.device', 'cuda')]
    """
    out: List[Tuple[str, str]] = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key or any(not part.isidentifier() and not part.isdigit() for part in key.split(".")):
            raise ConfigError(f"override {item!r}: {key!r} is not a dotted config key")
        out.append((key, value))
    return out


def _non_finite(node: Any, prefix: str = "") -> List[Tuple[str, float]]:
    """``[(dotted key, value)]`` of every non-finite float in a plain container tree."""
    out: List[Tuple[str, float]] = []
    if isinstance(node, float):
        if not math.isfinite(node):
            out.append((prefix, node))
    elif isinstance(node, Mapping):
        for k, v in node.items():
            out.extend(_non_finite(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            out.extend(_non_finite(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


def check_finite(tree: Any, where: str, sources: Optional[Mapping[str, str]] = None) -> None:
    """Rejects NaN / infinite floats anywhere in a config tree.

    Args:
        tree: a plain nested mapping / list (e.g. ``OmegaConf.to_container``), or an OmegaConf node.
        where: names the source in the message (a file, ``"dict"``, an artifact path).
        sources: optional ``{dotted key: source}`` of keys set by overrides (named in the message).

    Raises:
        ConfigError: naming the first offending key, its value and its source.

    Example::

        check_finite({"optim": {"lr": float("nan")}}, "file job.yaml")
        # ConfigError: invalid value for config key 'optim.lr' (file job.yaml): nan is not a finite number
    """
    from omegaconf import OmegaConf

    if OmegaConf.is_config(tree):
        tree = OmegaConf.to_container(tree, resolve=True)
    bad = _non_finite(tree)
    if bad:
        key, value = bad[0]
        src = (sources or {}).get(key, where)
        more = f" (also: {', '.join(k for k, _ in bad[1:])})" if len(bad) > 1 else ""
        raise ConfigError(
            f"invalid value for config key {key!r} ({src}): {value} is not a finite number; "
            f"float options must be finite (no nan / inf){more}"
        )


#: Seeds are 32-bit: numpy's legacy generators, torch and the samplers all take them.
MAX_SEED: int = 2**32 - 1


def check_seed(value: int, key: str) -> None:
    """Raises :class:`ConfigError` naming ``key`` unless ``0 <= value <= MAX_SEED``."""
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{key} must be in [0, {MAX_SEED}] (a 32-bit seed), got {value}")


def _check_keys_exist(cfg: Any, keys: Sequence[str], schema: Any, where: Sequence[str]) -> None:
    from omegaconf import OmegaConf

    for key, src in zip(keys, where):
        parts = key.split(".")
        node: Any = cfg
        for i, part in enumerate(parts):
            path = ".".join(parts[: i + 1])
            if OmegaConf.is_dict(node):
                if part not in node:
                    raise ConfigError(f"unknown config key {path!r} ({src}){_suggest(path, schema)}")
                node = node._get_node(part)  # noqa: SLF001 - keeps interpolations unresolved
            elif OmegaConf.is_list(node):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"config key {path!r} ({src}): no list element {part!r}")
                node = node._get_node(int(part))  # noqa: SLF001
            else:
                raise ConfigError(f"config key {path!r} ({src}): {'.'.join(parts[:i])!r} is not a section")


def load_config(
    schema: Type[T],
    path: Optional[PathLike] = None,
    overrides: Sequence[str] = (),
    base: Optional[Mapping[str, Any]] = None,
) -> T:
    """Builds a typed config: schema defaults <- ``base`` <- YAML file <- ``key=value`` overrides.

    Args:
        schema: a dataclass type; nested dataclass fields become sections.
        path: optional YAML file. Its top level must be a mapping.
        overrides: ``key=value`` strings (dotted keys, YAML values), applied last.
        base: optional mapping merged before the file (e.g. a saved config being resumed).

    Returns:
        An instance of ``schema`` (``__post_init__`` validators have run).

    Raises:
        ConfigError: missing or unparsable file, unknown key (with suggestions), wrong type,
            or a value a validator rejected.

    Example::

        cfg = load_config(TokenizerJobConfig, "configs/ml100k/tokenizer_fused_dpca.yaml",
                          ["train.epochs=5", "seed=1"])
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"schema must be a dataclass type, got {schema!r}")
    try:
        cfg = OmegaConf.structured(schema)
    except OmegaConfBaseException as e:  # pragma: no cover - schema bug
        raise ConfigError(f"config schema {schema.__name__} is not representable: {e}") from e
    if base is not None:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(dict(base)))
        except OmegaConfBaseException as e:
            raise _wrap(e, schema, "base config") from e
    if path is not None:
        try:
            p = resolve_config(path)  # an existing file, else a packaged config (ml100k/dlrm_side)
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {e}") from e
        try:
            file_cfg = OmegaConf.load(p)
        except Exception as e:  # yaml errors
            detail = " ".join(str(e).split())  # YAML errors span lines; the CLI prints one
            raise ConfigError(f"cannot parse config file {p}: {detail}") from e
        if not OmegaConf.is_dict(file_cfg):
            raise ConfigError(f"config file {p}: top level must be a mapping of keys to values")
        try:
            cfg = OmegaConf.merge(cfg, file_cfg)
        except OmegaConfBaseException as e:
            raise _wrap(e, schema, f"file {p}") from e
        except (TypeError, ValueError) as e:  # e.g. a mapping where the schema has a list
            raise ConfigError(f"invalid config file {p}: {e}") from e
    pairs = parse_overrides(overrides)
    if pairs:
        _check_keys_exist(cfg, [k for k, _ in pairs], schema, [f"from override {k}={v!r}" for k, v in pairs])
        for key, value in pairs:
            try:
                holder = OmegaConf.to_container(OmegaConf.from_dotlist([f"_value={value}"]))
                assert isinstance(holder, dict)
                parsed = holder["_value"]
                OmegaConf.update(cfg, key, parsed, merge=True)
            except OmegaConfBaseException as e:
                raise _wrap(e, schema, f"override {key}={value!r}") from e
            except (TypeError, ValueError) as e:
                raise ConfigError(f"invalid override {key}={value!r}: {e}") from e
    where = f"file {path}" if path is not None else ("base config" if base is not None else "schema defaults")
    try:
        check_finite(cfg, where, {k: f"from override {k}={v!r}" for k, v in pairs})
    except OmegaConfBaseException as e:
        raise _wrap(e, schema, "building config") from e
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise _wrap(e, schema, "building config") from e
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid config: {e}") from e
    return obj  # type: ignore[return-value]


def config_to_dict(cfg: Any) -> Dict[str, Any]:
    """A plain, JSON-serializable dict of a config dataclass (nested dataclasses included).

    Example::

        json.dumps(config_to_dict(cfg))
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return dataclasses.asdict(cfg)


def config_from_dict(schema: Type[T], data: Mapping[str, Any], where: str = "dict") -> T:
    """Rebuilds a config dataclass from :func:`config_to_dict` output, strictly (unknown keys fail).

    Args:
        schema: the dataclass type.
        data: a nested mapping.
        where: names the source in error messages (e.g. an artifact path).

    Raises:
        ConfigError: unknown keys, wrong types or invalid values.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(dict(data)))
        check_finite(cfg, where)
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise _wrap(e, schema, where) from e
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid config ({where}): {e}") from e


def config_to_yaml(cfg: Any) -> str:
    """YAML text of a config dataclass (loadable again with :func:`load_config`)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(config_to_dict(cfg)))


def save_config(cfg: Any, path: PathLike) -> None:
    """Writes a config dataclass as YAML, atomically."""
    from torchrec_side.io import write_text

    write_text(path, config_to_yaml(cfg))


def _root() -> Path:
    # the repository's top-level configs/, installed as the package torchrec_side.configs (setup.py);
    # a regular or editable install gives a real folder
    return Path(str(resources.files("torchrec_side.configs")))


def packaged_configs() -> List[str]:
    """Names of every packaged config, ``"<world>/<name>"`` (no ``.yaml``), sorted."""
    root = _root()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.glob("*/*.yaml"))


def _packaged_name(spec: str) -> str:
    s = spec.replace(os.sep, "/")
    if "configs/" in s:
        s = s.rsplit("configs/", 1)[1]
    return s[:-5] if s.endswith(".yaml") else s


def is_packaged_name(spec: PathLike) -> bool:
    """Whether ``spec`` names a packaged config (and no existing file of that name is in the way)."""
    p = Path(spec)
    return not p.is_file() and (_root() / f"{_packaged_name(os.fspath(spec))}.yaml").is_file()


def resolve_config(spec: PathLike) -> Path:
    """The file a ``--config`` value means: an existing file, else the packaged config it names.

    Args:
        spec (PathLike): a file path, or a packaged name (``ml100k/dlrm_side``,
            ``ml100k/dlrm_side.yaml``, ``configs/ml100k/dlrm_side.yaml``).

    Returns:
        Path: an existing file.

    Raises:
        FileNotFoundError: neither a file nor a packaged config; the message lists the packaged names.

    Example::

        resolve_config("configs/ml100k/dlrm_control.yaml")   # from any folder
    """
    p = Path(spec)
    if p.is_file():
        return p
    cand = _root() / f"{_packaged_name(os.fspath(spec))}.yaml"
    if cand.is_file():
        return cand
    raise FileNotFoundError(
        f"config {os.fspath(spec)!r}: no such file, and not a packaged config; packaged configs: "
        + ", ".join(packaged_configs())
    )


def read_config_text(spec: PathLike) -> str:
    """The YAML text of :func:`resolve_config` ``(spec)``."""
    return resolve_config(spec).read_text()
