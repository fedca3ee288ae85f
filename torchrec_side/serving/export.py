# pyre-strict
"""``export_run``: a trained run -> a self-contained inference folder (a ``torch.export`` program).

**Route.** ``torch.export`` (non-strict mode) of the unsharded model, behind a small wrapper whose
inputs are plain tensors, because a ``KeyedJaggedTensor`` is not an export input type::

    ServingModule.forward(dense [B, F], values: List[Tensor] (one per key), lengths: List[Tensor])
        kjt = KeyedJaggedTensor(keys (fixed), cat(values), cat(lengths), length_per_key = sizes)
        return sigmoid(ranker(dense, kjt))                      # [B] probabilities

``length_per_key`` comes from the input *shapes*, so TorchRec's KJT splitting (``to_dict``) sees
backed symbolic sizes, never a data-dependent one, and the stock ``EmbeddingBagCollection`` /
``EmbeddingCollection`` trace to ``aten`` embedding-bag / embedding ops over their weights (stored
in the program). The batch size and each key's number of values are dynamic dimensions. The SIDE
tables are buffers of the program; their CPU fast path (a ctypes kernel) cannot be traced, so the
exported copy uses the pure-torch ``grouped_bag`` path (``per_level`` for codecs that are not
byte-addressable) and the SID validation moves to the scorer (eager, before the call). The
target-attention model pads histories to the store's ``max_history`` instead of the batch's
longest history (masked positions contribute exactly zero, so scores do not change); the scorer
refuses longer histories. TorchRec 1.8 ships no ``torchrec.ir`` package (its serializer and
``encapsulate_ir_modules`` were removed), and TorchRec's quantized inference path
(``torchrec.inference``) targets TorchScript / C++ predictors with GPU TBE kernels; the plain
``torch.export`` route needs neither and loads with ``torch.export.load`` in any process that
imports torch and fbgemm_gpu.

Example::

    info = export_run("runs/train/dlrm_side/seed0", "runs/train/dlrm_side/seed0/export")
    info.spec.keys, info.max_abs_diff      # input keys; eager vs program on the sample batch
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.io import atomic_dir, PathLike, save_tensors, write_json
from torchrec_side.serving.artifact import (
    CONFIG_FILE,
    file_entry,
    HistoryInputSpec,
    PROGRAM_FILE,
    SAMPLE_FILE,
    ServingSpec,
    SPEC_FILE,
)
from torchrec_side.serving.rebuild import (
    LoadedRun,
    load_run,
    optional_int,
    ServingError,
    side_key_codecs,
    stock_table_rows,
)

__all__ = ["quiet_tracing_logs", "ServingModule", "ExportResult", "export_run", "export_loaded_run", "versions", "EXPORT_ROUTE"]

logger: logging.Logger = logging.getLogger(__name__)

#: Recorded in ``serving.json``.
EXPORT_ROUTE: str = (
    "torch.export.export(strict=False) of the unsharded ranker behind ServingModule "
    "(plain tensors in, KJT built inside with fixed keys); stock EBC/EC -> aten embedding ops; "
    "SIDE tables as buffers (grouped_bag / per_level compute)"
)
_SAMPLE_ROWS: int = 16


class ServingModule(nn.Module):
    """Plain-tensor front of a ranker: builds the KJT inside and returns probabilities.

    Args:
        ranker (nn.Module): ``forward(dense [B, F], KeyedJaggedTensor) -> logits [B]``.
        keys (List[str]): KJT keys, in the order of ``values`` / ``lengths``.

    Call Args:
        dense (torch.Tensor): float32 ``[B, F]``.
        values (List[torch.Tensor]): per key, int64 ``[N_k]`` (``N_k = lengths[k].sum()``).
        lengths (List[torch.Tensor]): per key, int64 ``[B]``.

    Returns:
        torch.Tensor: float32 ``[B]`` probabilities.

    Example::

        m = ServingModule(run.model.ranker, ["user_id", "item_id", "hist_sid"])
        p = m(dense, [u, i, sids], [ones, ones, hist_lengths])       # [B]
    """

    def __init__(self, ranker: nn.Module, keys: List[str]) -> None:
        super().__init__()
        self.ranker = ranker
        self.keys: List[str] = list(keys)

    def forward(self, dense: torch.Tensor, values: List[torch.Tensor], lengths: List[torch.Tensor]) -> torch.Tensor:
        kjt = KeyedJaggedTensor(
            keys=self.keys,
            values=torch.cat(values),
            lengths=torch.cat(lengths),
            length_per_key=[v.shape[0] for v in values],
            stride=dense.shape[0],
        )
        return torch.sigmoid(self.ranker(dense, kjt).float())


@dataclass
class ExportResult:
    """What :func:`export_run` wrote.

    Args:
        out_dir (Path): the artifact folder.
        spec (ServingSpec): its ``serving.json``.
        max_abs_diff (float): largest |eager - program| score on the sample batch.
    """

    out_dir: Path
    spec: ServingSpec
    max_abs_diff: float


def versions() -> Dict[str, str]:
    """Versions of the libraries the program depends on."""
    import importlib.metadata as md

    import torchrec_side

    out = {"torch": torch.__version__, "torchrec_side": torchrec_side.__version__}
    for name, dist in (("torchrec", "torchrec"), ("fbgemm_gpu", "fbgemm-gpu-cpu"), ("fbgemm_gpu_cuda", "fbgemm-gpu")):
        try:
            out[name] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


class _DropMessages(logging.Filter):
    """Drops notes TorchRec / torch log while tracing (one line per KJT split) and loading (unbacked
    sizes of data-dependent ops, which the program re-creates)."""

    _PARTS: Tuple[str, ...] = ("non-strict torch.export KJT", "is_fx_tracing will return true",
                               "did not appear in the graph that was deserialized")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(p in msg for p in self._PARTS)


@contextlib.contextmanager
def quiet_tracing_logs() -> Iterator[None]:
    """Context manager dropping those notes from the root and ``torch.fx`` loggers."""
    f = _DropMessages()
    loggers = [logging.getLogger(), logging.getLogger("torch.fx._symbolic_trace"),
               logging.getLogger("torch._export.serde.serialize")]
    handlers = [h for lg in loggers for h in lg.handlers]
    for x in loggers + handlers:
        x.addFilter(f)
    try:
        yield
    finally:
        for x in loggers + handlers:
            x.removeFilter(f)


def _serving_copy(run: LoadedRun) -> nn.Module:
    """A copy of the ranker set up for export: traceable SIDE compute, no in-graph SID validation,
    fixed history padding for the target-attention model (the run's model is left as it is)."""
    from torchrec_side.modules.side import _SIDTableBase

    ranker = copy.deepcopy(run.model.ranker)
    assert isinstance(ranker, nn.Module)
    for m in ranker.modules():
        if isinstance(m, _SIDTableBase):
            if m.compute in ("auto", "kernel"):
                m.compute = "grouped_bag" if m.num_groups > 0 else "per_level"
            m.validate = False
            m._resolved.clear()
    if run.cfg.model.arch == "din":
        cap = _fixed_length(run)
        setattr(ranker, "max_len", cap)
    return ranker


def _fixed_length(run: LoadedRun) -> int:
    cap = run.store.max_history
    if cap is None:  # uncapped store: the longest stored history
        import pyarrow.compute as pc

        hist_max = pc.max  # pyright: ignore[reportAttributeAccessIssue]  (generated at import)
        cap = max(int(hist_max(run.store.read(s).column("hist_len")).as_py() or 0) for s in ("train", "val", "test"))
    return max(int(cap), 1)


def _spec_inputs(run: LoadedRun) -> Tuple[List[str], List[HistoryInputSpec]]:
    from torchrec_side.data import ID_FEATURES

    by_column: Dict[str, Any] = {}
    for f in run.features:
        for inp in f.inputs():
            by_column[inp.column] = f
    hist: List[HistoryInputSpec] = []
    for inp in run.inputs:
        info = run.store.column(inp.column)
        f = by_column[inp.column]
        hist.append(HistoryInputSpec(column=inp.column, width=int(info.width), flatten=bool(inp.flatten),
                                     keys=inp.resolve_keys(info.width), feature=f.name, kind=f.config.kind))
    return list(ID_FEATURES), hist


def _sample(run: LoadedRun, spec: ServingSpec) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
    """Up to 16 test rows, the ones with the longest histories (so every key has >= 2 values and
    no dynamic dimension is traced at a size of 0 or 1)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from torchrec_side.serving.requests import request_tensors

    for split in ("test", "val", "train"):
        if run.store.rows(split) >= 2:
            break
    table = run.store.read(split, spec.history_columns)
    order = pc.sort_indices(table, sort_keys=[("hist_len", "descending")])  # pyright: ignore[reportAttributeAccessIssue]
    rows = table.take(pa.array(order.to_numpy()[:_SAMPLE_ROWS]))
    dense, values, lengths = request_tensors(rows, spec, where=f"store {run.store.path} split {split}")
    small = [k for k, v in zip(spec.keys, values) if v.numel() < 2]
    if dense.shape[0] < 2 or small:
        raise ServingError(f"store {run.store.path}: too few history events to trace the program "
                           f"(keys {small} have < 2 values in the {dense.shape[0]} longest-history rows)")
    return dense, values, lengths


def export_loaded_run(run: LoadedRun, out_dir: PathLike) -> ExportResult:
    """Exports an already rebuilt run (see :func:`export_run`)."""
    if any(f.loader_transform() is not None for f in run.features):
        names = [f.name for f in run.features if f.loader_transform() is not None]
        raise ServingError(f"history features {names} transform the KJT in the loader; a Python transform "
                           f"cannot be part of the exported program (store the transformed column instead)")
    with_target = [f.name for f in run.features if f.target_keys(run.keys[f.name])]
    if with_target:
        raise ServingError(f"history features {with_target} represent the target item through their path "
                           f"(target: true); the serving request schema has no target keys yet")
    id_features, hist = _spec_inputs(run)
    keys = id_features + [k for h in hist for k in h.keys]
    ranker = _serving_copy(run)
    from torchrec_side.data import DENSE_FEATURES

    spec = ServingSpec(
        export_route=EXPORT_ROUTE, arch=run.cfg.model.arch, keys=keys, id_features=id_features,
        dense_features=list(DENSE_FEATURES), history=hist, max_history=optional_int(run.store.max_history),
        fixed_history_length=getattr(ranker, "max_len", None) if run.cfg.model.arch == "din" else None,
        key_rows={k: v for k, v in stock_table_rows(ranker).items() if k in keys},
        sid_codecs={k: v for k, v in side_key_codecs(ranker).items() if k in keys},
        versions=versions(),
        source={"run_dir": str(run.run_dir.resolve()), "checkpoint": run.checkpoint.name, "step": run.step,
                "selection": run.selection, "config_fingerprint": run.cfg.resume_fingerprint(),
                "store": str(Path(run.store.path).resolve()), "name": run.cfg.name, "seed": run.cfg.seed},
        created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    module = ServingModule(ranker, keys).eval()
    dense, values, lengths = _sample(run, spec)
    with torch.no_grad(), quiet_tracing_logs():
        eager = module(dense, values, lengths)
    batch = torch.export.Dim("batch", min=1)
    dyn: Dict[str, Any] = {
        "dense": {0: batch},
        "values": [{0: batch} if k in id_features else {0: torch.export.Dim.DYNAMIC}
                   for i, k in enumerate(keys)],
        "lengths": [{0: batch} for _ in keys],
    }
    logger.info("exporting %s (%s, keys %s)", run.run_dir, spec.arch, keys)
    with warnings.catch_warnings(), quiet_tracing_logs():
        warnings.filterwarnings("ignore", message=".*is_fx_tracing.*")
        try:
            program = torch.export.export(module, (dense, values, lengths), dynamic_shapes=dyn, strict=False)
        except Exception as e:  # torch.export raises many error types; name the run and re-raise as ours
            raise ServingError(f"torch.export failed for {run.run_dir} ({spec.arch}): {type(e).__name__}: {e}") from e
    with torch.no_grad(), quiet_tracing_logs():
        traced = program.module()(dense, values, lengths)
    spec.ops = sorted({str(n.target) for n in program.graph.nodes
                       if n.op == "call_function" and not str(n.target).startswith(("aten.", "<"))})
    diff = float((traced - eager).abs().max())
    if diff > 1e-5:
        raise ServingError(f"the exported program's scores differ from the eager model by {diff:.3g} on the sample batch")
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        torch.export.save(program, str(tmp / PROGRAM_FILE))
        sample = {"dense": dense, "scores": eager}
        for i, (v, n) in enumerate(zip(values, lengths)):
            sample[f"values_{i}"], sample[f"lengths_{i}"] = v, n
        save_tensors(tmp / SAMPLE_FILE, sample, {"keys": ",".join(keys)})
        shutil.copyfile(run.run_dir / "config.yaml", tmp / CONFIG_FILE)
        spec.files = {name: file_entry(tmp / name) for name in (PROGRAM_FILE, SAMPLE_FILE, CONFIG_FILE)}
        write_json(tmp / SPEC_FILE, spec.to_dict())
    logger.info("wrote %s (program %d bytes, eager vs program max |diff| %.2g)", out,
                spec.files[PROGRAM_FILE]["bytes"], diff)
    return ExportResult(out_dir=out, spec=spec, max_abs_diff=diff)


def export_run(run_dir: PathLike, out_dir: Optional[PathLike] = None, checkpoint: str = "auto") -> ExportResult:
    """Exports a trained run as an inference folder (see the module docstring for the route).

    Rebuilds the model unsharded from the run's ``config.yaml`` with the trainer's builder, loads
    the chosen checkpoint with DCP (best-validation when recorded, else the newest complete one),
    traces it with ``torch.export`` and writes the folder atomically (``model.pt2``,
    ``sample.safetensors``, ``run_config.yaml``, ``serving.json``).

    Args:
        run_dir (PathLike): the training run folder.
        out_dir (Optional[PathLike]): the artifact folder (default ``<run_dir>/export``).
        checkpoint (str): ``"auto"``, ``"best"``, ``"latest"`` or a ``step_<N>`` folder name.

    Returns:
        ExportResult: folder, spec, eager-vs-program difference on the sample batch.

    Raises:
        ServingError: the run cannot be rebuilt / loaded / traced (names the file or feature).

    Example::

        res = export_run("runs/train/dlrm_side/seed0", "serve/dlrm_side")
        scorer = load_exported("serve/dlrm_side")
    """
    run = load_run(run_dir, checkpoint)
    return export_loaded_run(run, Path(out_dir) if out_dir is not None else Path(run_dir) / "export")
