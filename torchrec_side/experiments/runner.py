# pyre-strict
"""The one world runner: any :class:`~torchrec_side.experiments.spec.WorldSpec`, end to end.

Steps (each skipped when its output exists, so rerunning the same command resumes):

1. the world's data (:meth:`WorldSource.prepare`);
2. each chosen variant's config, filled (:func:`fill_config`) into ``<out>/configs/<variant>.yaml``
   from the context the runner supplies: ``world`` (the source's values) and ``artifacts`` (the
   outputs of the artifacts the variant declares, under ``<out>``);
3. the example store, then the artifacts the chosen variants need and nothing else
   (:meth:`WorldSpec.needed`, built by :meth:`WorldSource.build`);
4. every variant's history columns (:func:`~.common.check_variants`: a variant that does not build
   is reported unavailable), tuning and final runs, one launch per phase
   (:func:`~.common.train_variants`);
5. ``<out>/pipeline.json`` and the report.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from torchrec_side.experiments.common import (check_variants, log, train_overrides, train_variants, write_item_counts,
                                              write_pipeline)
from torchrec_side.experiments.spec import Variant, WorldSpec

__all__ = ["CONTEXT_KEYS", "placeholders", "fill_config", "variant_context", "run_world"]

#: The top-level keys of the context the runner supplies to variant configs.
CONTEXT_KEYS = ("world", "artifacts")

# ``${key}`` or ``${oc.select:key,default}``: the key a placeholder reads
_ABSENT = object()
_REF = re.compile(r"\$\{(?:oc\.select:)?\s*([A-Za-z_][\w.]*)\s*[,}]")


def placeholders(tree: Any) -> List[str]:
    """The context keys (``world.*``, ``artifacts.*``) the interpolations of a config tree read, sorted.

    Example::

        placeholders({"a": "${oc.select:artifacts.x.dir,runs/demo/x}", "b": "${world.dir}/y"})
        # ['artifacts.x.dir', 'world.dir']
    """
    found: List[str] = []
    if isinstance(tree, str):
        found = [k for k in _REF.findall(tree) if k.split(".", 1)[0] in CONTEXT_KEYS]
    elif isinstance(tree, Mapping):
        found = [k for v in tree.values() for k in placeholders(v)]
    elif isinstance(tree, (list, tuple)):
        found = [k for v in tree for k in placeholders(v)]
    return sorted(set(found))


def variant_context(spec: WorldSpec, variant: Variant, out: Path, world: Mapping[str, Any]) -> Dict[str, Any]:
    """The context ``variant``'s config is filled from: ``world`` and the outputs of its own artifacts."""
    return {"world": dict(world), "artifacts": {n: spec.artifact(n).paths(out) for n in variant.needs}}


def fill_config(variant: Variant, context: Mapping[str, Any], dst: Path) -> Path:
    """Writes ``dst``: ``variant``'s config with every placeholder filled from ``context`` and its
    ``overrides`` merged in; nothing in it is left to interpolate.

    Raises:
        ConfigError: a placeholder ``context`` does not fill, an artifact the variant declares
            that its config never reads, or an override that does not apply; each names the
            key and the config.

    Example::

        fill_config(Variant("side", "adsworld/dlrm_side", "side", "", ("fused_dpca",)),
                    {"world": {"dir": "/w/world"}, "artifacts": {"fused_dpca": {"dir": "/w/tokenize/fused_dpca"}}},
                    Path("/w/configs/side.yaml"))
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from torchrec_side.config import ConfigError, parse_overrides, resolve_config
    from torchrec_side.io import write_text

    where = f"config {variant.config} (variant {variant.name})"
    path = resolve_config(variant.config)
    raw = OmegaConf.load(path)
    if not OmegaConf.is_dict(raw):
        raise ConfigError(f"{where}: top level must be a mapping")
    clash = [k for k in CONTEXT_KEYS if k in raw]
    if clash:
        raise ConfigError(f"{where}: top-level keys {clash} are the runner's context")
    ctx = OmegaConf.create(dict(context))
    keys = placeholders(OmegaConf.to_container(raw, resolve=False))
    unfilled = [k for k in keys if OmegaConf.select(ctx, k) is None]
    if unfilled:
        raise ConfigError(f"{where}: placeholder(s) {', '.join('${' + k + '}' for k in unfilled)} not filled "
                          f"(the variant declares artifacts {list(variant.needs)})")
    unread = [n for n in variant.needs if not any(k.startswith(f"artifacts.{n}.") or k == f"artifacts.{n}"
                                                  for k in keys)]
    if unread:
        raise ConfigError(f"{where}: declares artifact(s) {unread} that the config never reads")
    cfg = OmegaConf.merge(raw, ctx)
    try:
        for key, value in parse_overrides(variant.overrides):
            if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
                raise ConfigError(f"{where}: override {key}={value!r} names no key of the config")
            holder = OmegaConf.to_container(OmegaConf.from_dotlist([f"_v={value}"]))
            assert isinstance(holder, dict)
            OmegaConf.update(cfg, key, holder["_v"], merge=True)
        filled = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{where}: {str(e).splitlines()[0]}") from e
    assert isinstance(filled, dict)
    for k in CONTEXT_KEYS:
        filled.pop(k, None)
    write_text(dst, f"# {variant.config} filled by the experiment driver for {dst.parent.parent}\n"
               + OmegaConf.to_yaml(OmegaConf.create(filled)))
    return dst


def run_world(spec: WorldSpec, out: Path, variants: Optional[Sequence[str]] = None,
              seeds: Optional[Sequence[int]] = None, nproc: int = 2, report: bool = True,
              extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Runs one world (see the module docstring). Returns ``<out>/pipeline.json``'s record.

    Args:
        spec (WorldSpec): the world.
        out (Path): its demo folder (absolute or relative to the current folder).
        variants (Optional[Sequence[str]]): subset of its variants (control is required).
        seeds (Optional[Sequence[int]]): seeds of every variant (default: the budget's, with
            ``secondary_seeds`` for the spec's secondary variants).
        nproc (int): ranks per launch.
        report (bool): write the report.
        extra (Optional[Mapping[str, Any]]): more fields of the record (the control world's folder).

    Example::

        rec = run_world(sim.world_spec(BUDGETS["tiny"]), Path("runs/demo/sim_tiny"))
    """
    from torchrec_side.data.store import prepare_store
    from torchrec_side.train.config import load_train_config

    t0 = time.time()
    b = spec.budget
    chosen = spec.select(variants)
    use_seeds = list(seeds) if seeds is not None else list(b.seeds)
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    log(f"world {spec.name} ({b.mode}) into {out}: {len(chosen)} variants x seeds {use_seeds}, <= {b.max_epochs} "
        f"epoch(s), {nproc} ranks")
    info = spec.source.prepare(out)
    configs = {v.name: fill_config(v, variant_context(spec, v, out, info.context), out / "configs" / f"{v.name}.yaml")
               for v in chosen}
    overrides = train_overrides(out, out / b.train_dir, b.max_epochs, b.patience)
    cfg0 = load_train_config(configs["control"], overrides)
    store = prepare_store(cfg0.data, cfg0.examples_dir)
    log(f"example store {store.path}: train/val/test = {store.rows('train')}/{store.rows('val')}/{store.rows('test')}")
    needed = spec.needed(chosen)
    log(f"artifacts the variants need: {[a.name for a in needed] or 'none'}")
    fitted = spec.source.build(out, store, needed)
    write_item_counts(out, store)
    own = spec.source.describe(out, info, store)
    ok, unavailable = check_variants(configs, overrides)
    t_prep = time.time() - t0
    record: Dict[str, Any] = {
        **own, "mode": b.mode, "out": str(out), "seeds": use_seeds,
        "epochs": b.max_epochs, "max_epochs": b.max_epochs, "early_stop_patience": b.patience,
        "stopping": "every run: validation after each epoch, early stop, test scored with the best validation epoch",
        "nproc": nproc, "overrides": overrides, "variants": [], "fitted": fitted, "unavailable": unavailable,
        "prep_seconds": round(t_prep, 1), "failed": [], **(extra or {}),
    }
    secondary = ([s for s in b.secondary_seeds if s in use_seeds]
                 if b.secondary_seeds is not None and seeds is None else None)
    per_variant = {v.name: secondary for v in chosen if secondary and v.name in spec.secondary}
    record["variant_seeds"] = per_variant
    train_variants(record, out, [v for v in chosen if v.name in ok], configs, use_seeds, overrides,
                   b.max_epochs, nproc, b.tuning, label=spec.label, variant_seeds=per_variant)
    record["train_seconds"] = round(time.time() - t0 - t_prep, 1)
    record["total_seconds"] = round(time.time() - t0, 1)
    write_pipeline(out, record)
    log(f"{spec.name}: training done in {record['train_seconds']}s (total {record['total_seconds']}s)")
    if report:
        from torchrec_side.report import write_report

        write_report(out, world=spec.name)
        log(f"report: {out / 'report.md'}")
    return record
