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
tables are buffers of the program. Their CPU fast path is the registered C++ op
(``torch.ops.torchrec_side.*``, :mod:`torchrec_side.modules.ops.cpu_kernel`), which traces through
its fake kernel: the exported copy keeps it wherever it is available (it also checks the SIDs
in-graph, fused into the pooling), and falls back to the pure-torch ``grouped_bag`` path
(``per_level`` for codecs that are not byte-addressable) where it is not, with the SID check
moved to the scorer (eager, before the call). ``serving.json`` records the path of every SIDE
key (``side_compute``); :func:`~torchrec_side.serving.load_exported` registers the op before it
loads a program that calls it. A SIDE module's bias-free projection ``D -> D'`` is folded into its
frozen tables (:func:`fold_projection`: pooling is linear), so the program pools at the model's
width ``D'`` instead of the tokenizer's ``D``; export checks the folded copy against the unfolded
one on the sample batch. The
target-attention model pads histories to the store's ``max_history`` instead of the batch's
longest history (masked positions contribute exactly zero, so scores do not change); the scorer
refuses longer histories. History features with ``target: true`` (docs/design.md section 7b)
add no request inputs: the program derives their target keys from ``item_id`` through the
store's item tables, held as buffers (:class:`TargetTable`; the identity for ``hist_item_id``),
in the training loader's key order. TorchRec 1.8 ships no ``torchrec.ir`` package (its serializer and
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
import hashlib
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_side.io import atomic_dir, check_replaceable, PathLike, save_tensors, write_json
from torchrec_side.serving.artifact import (
    CONFIG_FILE,
    file_entry,
    HistoryInputSpec,
    PROGRAM_FILE,
    SAMPLE_FILE,
    ServingSpec,
    SPEC_FILE,
    spec_with_digest,
    TargetInputSpec,
)
from torchrec_side.serving.rebuild import (
    LoadedRun,
    load_run,
    optional_int,
    ServingError,
    side_key_codecs,
    stock_table_rows,
)

__all__ = ["quiet_tracing_logs", "TargetTable", "ServingModule", "serving_compute", "torch_compute",
           "fold_projection", "SIDE_COMPUTE_CHOICES", "ExportResult", "export_run", "export_loaded_run", "versions", "EXPORT_ROUTE"]

logger: logging.Logger = logging.getLogger(__name__)

#: Recorded in ``serving.json``.
EXPORT_ROUTE: str = (
    "torch.export.export(strict=False) of the unsharded ranker behind ServingModule "
    "(plain tensors in, KJT built inside with fixed keys); stock EBC/EC -> aten embedding ops; "
    "SIDE tables as buffers with their projections folded in; SIDE compute: the registered torchrec_side C++ op where available, else "
    "grouped_bag / per_level (per key in side_compute)"
)
_SAMPLE_ROWS: int = 16
#: Largest batch a program accepts: a target key has one value per example, and the SIDE pooling
#: picks int32 offsets while ``values * bytes_per_sid < 2**31`` (``bytes_per_sid <= 8``), so a
#: bounded batch keeps that choice static instead of a guard of the program.
MAX_BATCH: int = 2**28 - 1


@dataclass
class TargetTable:
    """Target keys derived from ``item_id`` inside the program (``target: true`` features).

    Args:
        keys (List[str]): the KJT keys filled, one (``W == 1`` or ``flatten``) or ``W``.
        table (Optional[torch.Tensor]): int32 / int64 ``[num_items, W]`` item -> value table (a
            buffer of the program), or ``None`` for the identity (the target key is the item id).
        flatten (bool): ``W`` values per example in one key.

    Example::

        TargetTable(["hist_sid_target"], store_sids[:, None])   # one packed SID per example
    """

    keys: List[str]
    table: Optional[torch.Tensor] = None
    flatten: bool = False

    @property
    def width(self) -> int:
        return 1 if self.table is None else int(self.table.shape[1])


class ServingModule(nn.Module):
    """Plain-tensor front of a ranker: derives the target keys, builds the KJT inside and returns
    probabilities.

    Args:
        ranker (nn.Module): ``forward(dense [B, F], KeyedJaggedTensor) -> logits [B]``.
        keys (List[str]): request keys, in the order of ``values`` / ``lengths``.
        targets (Sequence[TargetTable]): target keys looked up at ``item_id`` (docs/design.md
            section 7b): ``table[item_id]`` with one event per example, as the training loader's
            ``TargetInput`` fills them. The tables are buffers of the module (so of the program).
        model_keys (Optional[List[str]]): the KJT key order the ranker sees (the training loader's
            order; default ``keys`` then the target keys).

    Call Args:
        dense (torch.Tensor): float32 ``[B, F]``.
        values (List[torch.Tensor]): per request key, int64 ``[N_k]`` (``N_k = lengths[k].sum()``).
        lengths (List[torch.Tensor]): per request key, int64 ``[B]``.

    Returns:
        torch.Tensor: float32 ``[B]`` probabilities.

    Example::

        m = ServingModule(run.model.ranker, ["user_id", "item_id", "hist_sid"],
                          [TargetTable(["hist_sid_target"], item_sids[:, None])])
        p = m(dense, [u, i, sids], [ones, ones, hist_lengths])       # [B]; hist_sid_target = item_sids[i]
    """

    def __init__(self, ranker: nn.Module, keys: List[str], targets: Sequence[TargetTable] = (),
                 model_keys: Optional[List[str]] = None) -> None:
        super().__init__()
        self.ranker = ranker
        self.keys: List[str] = list(keys)
        derived = [k for t in targets for k in t.keys]
        self.model_keys: List[str] = list(model_keys) if model_keys is not None else self.keys + derived
        if sorted(self.model_keys) != sorted(self.keys + derived):
            raise ValueError(f"model keys {self.model_keys} must be the request keys {self.keys} plus the target "
                             f"keys {derived}")
        if targets and "item_id" not in self.keys:
            raise ValueError(f"target keys {derived} are looked up at item_id, which is not among the keys {self.keys}")
        self._item_index: int = self.keys.index("item_id") if targets else -1
        # (keys, width, flatten, buffer name or "" for the identity), unrolled when traced
        self._plan: List[Tuple[List[str], int, bool, str]] = []
        for i, t in enumerate(targets):
            want = 1 if (t.width == 1 or t.flatten) else t.width
            if len(t.keys) != want:
                raise ValueError(f"target keys {t.keys}: {want} keys needed for a width-{t.width} table")
            name = ""
            if t.table is not None:
                if t.table.dim() != 2 or t.table.dtype not in (torch.int32, torch.int64):
                    raise ValueError(f"target table of {t.keys} must be int32/int64 [num_items, W], got "
                                     f"{t.table.dtype} {list(t.table.shape)}")
                name = f"target_table_{i}"
                self.register_buffer(name, t.table.contiguous())
            self._plan.append((list(t.keys), t.width, bool(t.flatten), name))

    def target_rows(self) -> Optional[int]:
        """Rows of the smallest target table (item ids must be below), ``None`` without tables."""
        rows = [int(self.get_buffer(n).shape[0]) for _, _, _, n in self._plan if n]
        return min(rows) if rows else None

    def forward(self, dense: torch.Tensor, values: List[torch.Tensor], lengths: List[torch.Tensor]) -> torch.Tensor:
        if self._plan:
            named: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {
                k: (v, n) for k, v, n in zip(self.keys, values, lengths)}
            item = values[self._item_index]  # [B], one per example (checked by the scorer)
            ones = torch.ones_like(item)
            for keys, width, flatten, name in self._plan:
                tv = item.unsqueeze(1) if not name else self.get_buffer(name)[item].long()  # [B, W]
                if width == 1 or flatten:
                    named[keys[0]] = (tv.reshape(-1), ones * (width if flatten else 1))
                else:
                    for j, k in enumerate(keys):
                        named[k] = (tv[:, j], ones)
            values = [named[k][0] for k in self.model_keys]
            lengths = [named[k][1] for k in self.model_keys]
        kjt = KeyedJaggedTensor(
            keys=self.model_keys,
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


#: ``side_compute`` choices of :func:`export_run`.
SIDE_COMPUTE_CHOICES: Tuple[str, ...] = ("auto", "torch")


def torch_compute(module: nn.Module) -> str:
    """The pure-torch SIDE path of ``module``: ``grouped_bag`` (byte-addressable codecs) or ``per_level``."""
    return "grouped_bag" if getattr(module, "num_groups", 0) > 0 else "per_level"


def serving_compute(module: nn.Module) -> str:
    """The SIDE compute path an exported copy of ``module`` (a SIDE table module) uses on CPU.

    The registered C++ op (``compute="kernel"``, :mod:`torchrec_side.modules.ops.cpu_kernel`)
    exports as a ``torch.ops.torchrec_side.*`` node and is the fastest CPU path, so it is kept
    whenever it is available for the module's codec; otherwise the pure-torch ``grouped_bag``
    (byte-addressable codecs) or ``per_level`` path, which need nothing registered at load time.

    Args:
        module (nn.Module): a SIDE table module (``SIDEmbeddingBag`` / ``SIDEmbedding``).

    Returns:
        str: ``"kernel"``, ``"grouped_bag"`` or ``"per_level"``.

    Example::

        serving_compute(side_ebc.tables["t_hist_sid"])     # "kernel" where the C++ op built
    """
    fallback = torch_compute(module)
    compute = str(getattr(module, "compute", "auto"))
    if compute in ("grouped_bag", "per_level"):
        return compute
    if compute not in ("auto", "kernel"):
        return fallback
    try:
        path = str(module.resolved_compute(torch.device("cpu")))  # pyright: ignore[reportCallIssue]
    except (ValueError, RuntimeError):  # "kernel" asked for where it did not build
        return fallback
    return "kernel" if path == "kernel" else fallback


def fold_projection(module: nn.Module) -> bool:
    """Folds a SIDE table module's learned projection into its frozen tables, in place.

    A SIDE module computes ``P @ pool_e(offset + sum_l T_l[c_{l,e}])`` with a bias-free linear
    ``P: D -> D'``; sum and mean pooling, per-event weights and the per-event (unpooled) decode are
    linear, so the same scores come from tables ``offset' = P @ offset``, ``T_l' = T_l @ P^T`` and
    no projection (equal up to float rounding). The pooling then runs at width ``D'`` (e.g. 16
    instead of the tokenizer's 64): less work in every SIDE compute path. For inference copies only:
    the folded module no longer holds the projection as a parameter.

    Args:
        module (nn.Module): a SIDE table module (``SIDEmbeddingBag`` / ``SIDEmbedding``).

    Returns:
        bool: whether a projection was folded (False: none, or one with a bias).

    Example::

        bag = copy.deepcopy(side_ebc.tables["t_hist_sid"])
        fold_projection(bag)         # bag(sids, offsets) equals the original to float rounding
    """
    from torchrec_side.modules.side import _rebuild_after_load

    proj = getattr(module, "projection", None)
    if not isinstance(proj, nn.Linear) or proj.bias is not None:
        return False
    with torch.no_grad():
        w = proj.weight.detach().to(torch.float64)  # [D', D]
        off = module.get_buffer("offset")
        lev = module.get_buffer("level_tables")
        new_off = (w @ off.to(torch.float64)).to(off.dtype)
        new_lev = (lev.to(torch.float64) @ w.T).to(lev.dtype).contiguous()
        module.register_buffer("offset", new_off)
        module.register_buffer("level_tables", new_lev)
        setattr(module, "projection", None)
    # derive the fast-path tables (grouped, rank-1 factors, ...) again, as after a state-dict load
    _rebuild_after_load(module)  # pyright: ignore[reportArgumentType]  (duck-typed: any SIDE table module)
    return True


def _serving_copy(run: LoadedRun, fold: bool = True, side_compute: str = "auto") -> Tuple[nn.Module, Dict[str, str]]:
    """A copy of the ranker set up for export (the run's model is left as it is): the fastest
    exportable SIDE compute (:func:`serving_compute`; ``side_compute="torch"``: the pure-torch
    path, :func:`torch_compute`), SIDE projections folded into the frozen
    tables (:func:`fold_projection`, with ``fold``), fixed history padding for the
    target-attention model. Returns the copy and ``{SIDE module name: compute path}``.

    The kernel path keeps its SID check (fused into the op, no extra pass over the values); the
    pure-torch paths drop the in-graph check and the scorer validates SIDs eagerly instead."""
    from torchrec_side.modules.side import _SIDTableBase

    ranker = copy.deepcopy(run.model.ranker)
    assert isinstance(ranker, nn.Module)
    paths: Dict[str, str] = {}
    for name, m in ranker.named_modules():
        if isinstance(m, _SIDTableBase):
            if fold:
                fold_projection(m)
            path = serving_compute(m) if side_compute == "auto" else torch_compute(m)
            m.compute = path
            m.validate = path == "kernel"
            m._resolved.clear()
            paths[name] = path
    if run.cfg.model.arch == "din":
        cap = _fixed_length(run)
        setattr(ranker, "max_len", cap)
    return ranker, paths


def _side_key_paths(ranker: nn.Module, paths: Dict[str, str]) -> Dict[str, str]:
    """``{KJT key: compute path}`` of every key a SIDE collection of ``ranker`` reads (``paths``:
    ``{SIDE table module name: path}`` from :func:`_serving_copy`)."""
    from torchrec_side.modules import SIDEmbeddingBagCollection, SIDEmbeddingCollection

    out: Dict[str, str] = {}
    for name, m in ranker.named_modules():
        if isinstance(m, (SIDEmbeddingBagCollection, SIDEmbeddingCollection)):
            for c in m.sid_configs():
                path = paths.get(f"{name}.tables.{c.name}" if name else f"tables.{c.name}", "")
                for f in c.feature_names:
                    out[f] = path
    return out


def _fixed_length(run: LoadedRun) -> int:
    cap = run.store.max_history
    if cap is None:  # uncapped store: the longest stored history
        import pyarrow.compute as pc

        hist_max = pc.max  # pyright: ignore[reportAttributeAccessIssue]  (generated at import)
        cap = max(int(hist_max(run.store.read(s).column("hist_len")).as_py() or 0) for s in ("train", "val", "test"))
    return max(int(cap), 1)


def _spec_inputs(run: LoadedRun) -> Tuple[List[str], List[HistoryInputSpec]]:
    from torchrec_side.data import ID_FEATURES
    from torchrec_side.data.loader import TargetInput

    by_column: Dict[str, Any] = {}
    for f in run.features:
        for inp in f.inputs():
            by_column[inp.column] = f
    hist: List[HistoryInputSpec] = []
    for inp in run.inputs:
        if isinstance(inp, TargetInput):  # derived from item_id inside the program (_target_tables)
            continue
        info = run.store.column(inp.column)
        f = by_column[inp.column]
        hist.append(HistoryInputSpec(column=inp.column, width=int(info.width), flatten=bool(inp.flatten),
                                     keys=inp.resolve_keys(info.width), feature=f.name, kind=f.config.kind))
    return list(ID_FEATURES), hist


def _model_keys(run: LoadedRun) -> List[str]:
    """The KJT keys in the training loader's order (ids, then each history / target input's keys)."""
    from torchrec_side.data import ID_FEATURES

    return list(ID_FEATURES) + [k for inp in run.inputs for k in inp.resolve_keys(run.store.column(inp.column).width)]


def _narrow(table: npt.NDArray[Any]) -> torch.Tensor:
    """An integer item table as a buffer: int32 when every value fits (half the program bytes),
    else int64 (packed SIDs use all 64 bits)."""
    t = torch.from_numpy(np.ascontiguousarray(table, dtype=np.int64))
    info = torch.iinfo(torch.int32)
    if t.numel() == 0 or (int(t.min()) >= info.min and int(t.max()) <= info.max):
        return t.to(torch.int32)
    return t


def _target_tables(run: LoadedRun) -> Tuple[List[TargetTable], List[TargetInputSpec]]:
    """The target keys of every ``target: true`` feature as program-side lookups at ``item_id``:
    the store's item -> value table of the feature's column (``ExampleStore.item_values``: checked
    against the column's fingerprint), or the identity for ``hist_item_id``."""
    from torchrec_side.data import StoreError
    from torchrec_side.data.store import ITEM_HISTORY_COLUMN

    tables: List[TargetTable] = []
    specs: List[TargetInputSpec] = []
    for f in run.features:
        for ti in f.target_inputs(run.keys[f.name]):
            try:
                info = run.store.column(ti.column)
                keys = ti.resolve_keys(info.width)
                raw = None if ti.column == ITEM_HISTORY_COLUMN else run.store.item_values(ti.column)
            except StoreError as e:
                raise ServingError(f"{f.where}: the target item table of column {ti.column!r}: {e}") from e
            rows = int(run.store.num_items)
            if raw is None:
                tables.append(TargetTable(keys=keys, table=None, flatten=bool(ti.flatten)))
                specs.append(TargetInputSpec(column=ti.column, width=1, flatten=bool(ti.flatten), keys=keys,
                                             feature=f.name, kind=f.config.kind, source="identity", rows=rows,
                                             dtype="int64", fingerprint=str(info.fingerprint)))
                continue
            full = np.ascontiguousarray(raw, dtype=np.int64)
            if full.ndim != 2 or full.shape[0] != rows:
                raise ServingError(f"{f.where}: the item table of column {ti.column!r} is {list(full.shape)}, "
                                   f"expected [{rows}, W] (one row per item of store {run.store.path})")
            buf = _narrow(full)
            tables.append(TargetTable(keys=keys, table=buf, flatten=bool(ti.flatten)))
            specs.append(TargetInputSpec(column=ti.column, width=int(full.shape[1]), flatten=bool(ti.flatten),
                                         keys=keys, feature=f.name, kind=f.config.kind, source="table", rows=rows,
                                         dtype=str(buf.dtype).replace("torch.", ""),
                                         sha256=hashlib.sha256(full.tobytes()).hexdigest(),
                                         fingerprint=str(info.fingerprint)))
    return tables, specs


def _check_target_values(ranker: nn.Module, tables: List[TargetTable], where: str) -> None:
    """Every value a target table can feed lies inside the learned table reading its key and is a
    valid packed SID for a SIDE key (the scorer checks request keys per batch; these are fixed)."""
    from torchrec_side.sid import SIDCodec

    rows = stock_table_rows(ranker)
    codecs = side_key_codecs(ranker)
    for t in tables:
        if t.table is None:
            continue
        tab = t.table.long()
        cols = [tab.reshape(-1)] if (t.width == 1 or t.flatten) else [tab[:, j] for j in range(t.width)]
        for k, v in zip(t.keys, cols):
            n = rows.get(k)
            if n is not None and v.numel() and (int(v.min()) < 0 or int(v.max()) >= n):
                raise ServingError(f"{where}: the item table feeding target key {k!r} holds values outside "
                                   f"[0, {n}) (the rows of the table reading it)")
            if k in codecs:
                try:
                    SIDCodec.from_dict(codecs[k]).validate_sids(v)
                except ValueError as e:
                    raise ServingError(f"{where}: the item table feeding target key {k!r} holds an invalid "
                                       f"packed SID: {e}") from e


def _loader_reference(run: LoadedRun, ranker: nn.Module, model_keys: List[str], dense: torch.Tensor,
                      values: List[torch.Tensor], lengths: List[torch.Tensor], keys: List[str]) -> torch.Tensor:
    """Scores of the sample with the target keys filled as the training loader fills them
    (``store.item_values(column)[item_id]``), by the same ranker, outside :class:`ServingModule`."""
    from torchrec_side.data.loader import TargetInput

    named: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {k: (v, n) for k, v, n in zip(keys, values, lengths)}
    item = values[keys.index("item_id")].numpy()
    b = item.shape[0]
    for inp in run.inputs:
        if not isinstance(inp, TargetInput):
            continue
        info = run.store.column(inp.column)
        tv = np.asarray(run.store.item_values(inp.column), dtype=np.int64)[item]  # [B, W]
        tk = inp.resolve_keys(info.width)
        if info.width == 1 or inp.flatten:
            named[tk[0]] = (torch.from_numpy(tv.reshape(-1).copy()),
                            torch.full((b,), info.width if inp.flatten else 1, dtype=torch.int64))
        else:
            for j, k in enumerate(tk):
                named[k] = (torch.from_numpy(np.ascontiguousarray(tv[:, j])), torch.ones(b, dtype=torch.int64))
    vs = [named[k][0] for k in model_keys]
    kjt = KeyedJaggedTensor(keys=model_keys, values=torch.cat(vs), lengths=torch.cat([named[k][1] for k in model_keys]),
                            stride=b)
    return torch.sigmoid(ranker(dense, kjt).float())


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


def export_loaded_run(run: LoadedRun, out_dir: PathLike, side_compute: str = "auto") -> ExportResult:
    """Exports an already rebuilt run (see :func:`export_run`)."""
    if side_compute not in SIDE_COMPUTE_CHOICES:
        raise ServingError(f"side_compute={side_compute!r}: expected one of {list(SIDE_COMPUTE_CHOICES)}")
    if any(f.loader_transform() is not None for f in run.features):
        names = [f.name for f in run.features if f.loader_transform() is not None]
        raise ServingError(f"history features {names} transform the KJT in the loader; a Python transform "
                           f"cannot be part of the exported program (store the transformed column instead)")
    id_features, hist = _spec_inputs(run)
    keys = id_features + [k for h in hist for k in h.keys]
    ranker, side_paths = _serving_copy(run, side_compute=side_compute)
    targets, target_specs = _target_tables(run)
    model_keys = _model_keys(run)
    _check_target_values(ranker, targets, str(run.run_dir))
    from torchrec_side.data import DENSE_FEATURES

    spec = ServingSpec(
        export_route=EXPORT_ROUTE, arch=run.cfg.model.arch, keys=keys, id_features=id_features,
        dense_features=list(DENSE_FEATURES), history=hist, targets=target_specs,
        model_keys=model_keys if target_specs else [], max_history=optional_int(run.store.max_history),
        fixed_history_length=getattr(ranker, "max_len", None) if run.cfg.model.arch == "din" else None,
        key_rows={k: v for k, v in stock_table_rows(ranker).items() if k in keys},
        sid_codecs={k: v for k, v in side_key_codecs(ranker).items() if k in keys},
        side_compute={k: v for k, v in _side_key_paths(ranker, side_paths).items() if k in keys},
        versions=versions(),
        source={"run_dir": str(run.run_dir.resolve()), "checkpoint": run.checkpoint.name, "step": run.step,
                "selection": run.selection, "config_fingerprint": run.cfg.resume_fingerprint(),
                "store": str(Path(run.store.path).resolve()), "name": run.cfg.name, "seed": run.cfg.seed,
                "item_tables": dict(run.item_tables)},
        created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    module = ServingModule(ranker, keys, targets, model_keys).eval()
    dense, values, lengths = _sample(run, spec)
    with torch.no_grad(), quiet_tracing_logs():
        eager = module(dense, values, lengths)
        unfolded = ServingModule(_serving_copy(run, fold=False, side_compute=side_compute)[0], keys, targets,
                                 model_keys).eval()
        fold_diff = float((unfolded(dense, values, lengths) - eager).abs().max())
        del unfolded
        if fold_diff > 1e-5:
            raise ServingError(f"{run.run_dir}: folding the SIDE projections into the tables changed the sample "
                               f"scores by {fold_diff:.3g}")
        if targets:  # the in-program lookups reproduce the training loader's target keys
            ref = _loader_reference(run, ranker, model_keys, dense, values, lengths, keys)
            ref_diff = float((ref - eager).abs().max())
            if ref_diff > 1e-6:
                raise ServingError(f"{run.run_dir}: scores with the derived target keys differ from those with the "
                                   f"loader's target keys by {ref_diff:.3g} on the sample batch")
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
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
    with atomic_dir(out, SPEC_FILE) as tmp:
        torch.export.save(program, str(tmp / PROGRAM_FILE))
        sample = {"dense": dense, "scores": eager}
        for i, (v, n) in enumerate(zip(values, lengths)):
            sample[f"values_{i}"], sample[f"lengths_{i}"] = v, n
        save_tensors(tmp / SAMPLE_FILE, sample, {"keys": ",".join(keys)})
        shutil.copyfile(run.run_dir / "config.yaml", tmp / CONFIG_FILE)
        spec.files = {name: file_entry(tmp / name) for name in (PROGRAM_FILE, SAMPLE_FILE, CONFIG_FILE)}
        write_json(tmp / SPEC_FILE, spec_with_digest(spec))
    logger.info("wrote %s (program %d bytes, eager vs program max |diff| %.2g)", out,
                spec.files[PROGRAM_FILE]["bytes"], diff)
    return ExportResult(out_dir=out, spec=spec, max_abs_diff=diff)


def export_run(run_dir: PathLike, out_dir: Optional[PathLike] = None, checkpoint: str = "auto",
               side_compute: str = "auto") -> ExportResult:
    """Exports a trained run as an inference folder (see the module docstring for the route).

    Rebuilds the model unsharded from the run's ``config.yaml`` with the trainer's builder, loads
    the chosen checkpoint with DCP (best-validation when recorded, else the newest complete one),
    traces it with ``torch.export`` and writes the folder atomically (``model.pt2``,
    ``sample.safetensors``, ``run_config.yaml``, ``serving.json``).

    Args:
        run_dir (PathLike): the training run folder.
        out_dir (Optional[PathLike]): the artifact folder (default ``<run_dir>/export``).
        checkpoint (str): ``"auto"``, ``"best"``, ``"latest"`` or a ``step_<N>`` folder name.
        side_compute (str): ``"auto"``: the fastest exportable SIDE path (the registered C++ op
            where available); ``"torch"``: the pure-torch path, for a program that loads where the
            op cannot be built (no compiler) at some speed cost.

    Returns:
        ExportResult: folder, spec, eager-vs-program difference on the sample batch.

    Raises:
        ServingError: the run cannot be rebuilt / loaded / traced (names the file or feature).
        ArtifactError: ``out_dir`` exists and is not an earlier export (no ``serving.json``).

    Example::

        res = export_run("runs/train/dlrm_side/seed0", "serve/dlrm_side")
        scorer = load_exported("serve/dlrm_side")
    """
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "export"
    check_replaceable(out, SPEC_FILE)  # before the work: never the run folder or a user's folder
    run = load_run(run_dir, checkpoint)
    return export_loaded_run(run, out, side_compute)
