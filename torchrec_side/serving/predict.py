# pyre-strict
"""``predict``: score a request file (schema: :mod:`torchrec_side.serving.requests`) in batches.

Given a run folder, the run's export folder ``<run>/export`` is used when it holds the checkpoint
the run would export now, and (re)written first otherwise; given an export folder, it is used as
is. Scores are written atomically (a crash leaves no partial output) with a tqdm progress bar.

Example::

    res = predict("runs/train/dlrm_side/seed0", "requests.parquet", "scores.parquet", batch_size=4096)
    res.rows, res.export_dir
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from torchrec_side.io import ArtifactError, atomic_path, check_file_replaceable, parquet_kind, PARQUET_KIND_KEY, PathLike
from torchrec_side.serving.artifact import is_export_dir, read_spec
from torchrec_side.serving.rebuild import choose_checkpoint, ServingError
from torchrec_side.serving.requests import REQUESTS_KIND, request_tensors, SCORE_COLUMN, write_requests_from_store

__all__ = ["PredictResult", "resolve_export", "predict", "predict_from_store"]

logger: logging.Logger = logging.getLogger(__name__)


@dataclass
class PredictResult:
    """What :func:`predict` did.

    Args:
        out (Path): the scores file.
        rows (int): requests scored.
        export_dir (Path): the artifact used.
        seconds (float): wall time of the scoring loop.
    """

    out: Path
    rows: int
    export_dir: Path
    seconds: float


def resolve_export(run_or_export: PathLike, checkpoint: str = "auto") -> Path:
    """The export folder to score with (see the module docstring).

    Raises:
        ServingError: ``run_or_export`` is neither an export folder nor a run folder.
    """
    p = Path(run_or_export)
    if is_export_dir(p):
        return p
    if not (p / "config.yaml").is_file():
        raise ServingError(f"{p} is neither an export folder (serving.json) nor a training run folder (config.yaml)")
    from torchrec_side.serving.export import export_run

    out = p / "export"
    ckpt, _ = choose_checkpoint(p, checkpoint)
    if is_export_dir(out):
        try:
            if read_spec(out).source.get("checkpoint") == ckpt.name:
                return out
        except ArtifactError as e:
            logger.warning("re-exporting %s: %s", out, e)
    logger.info("exporting %s (%s) to %s", p, ckpt.name, out)
    export_run(p, out, checkpoint)
    return out


def predict(
    run_or_export_dir: PathLike,
    input_parquet: PathLike,
    out_parquet: PathLike,
    batch_size: int = 4096,
    progress: bool = True,
    checkpoint: str = "auto",
    threads: int = 0,
    overwrite: bool = False,
) -> PredictResult:
    """Scores every row of ``input_parquet`` and writes ``out_parquet`` (request columns except the
    history lists, plus ``score``), in request order.

    Args:
        run_or_export_dir (PathLike): a training run folder or an export folder.
        input_parquet (PathLike): the request file.
        out_parquet (PathLike): the output file (written atomically).
        batch_size (int): rows per program call.
        progress (bool): tqdm bar on stderr.
        checkpoint (str): which checkpoint a run folder is exported from (see ``export_run``).
        threads (int): ``torch.set_num_threads`` while scoring (0: leave as is; restored after).
            Small batches on a busy machine run much faster on one thread.
        overwrite (bool): replace an existing ``out_parquet`` even when it is not a scores file
            (by default only a scores file this command wrote is replaced).

    Returns:
        PredictResult: rows, the export folder, time.

    Raises:
        ServingError: a bad request file (missing column, wrong type, invalid id / SID: named).
        ArtifactError: a corrupt export folder, or an ``out_parquet`` that is the request file or a
            file this command did not write.

    Example::

        predict("serve/dlrm_side", "requests.parquet", "scores.parquet")
    """
    if batch_size < 1:
        raise ServingError(f"batch_size must be >= 1, got {batch_size}")
    if threads < 0:
        raise ServingError(f"threads must be >= 0, got {threads}")
    _check_out(input_parquet, out_parquet, overwrite)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _predict(run_or_export_dir, Path(input_parquet), Path(out_parquet), batch_size, progress, checkpoint)
    finally:
        torch.set_num_threads(before)


def _check_out(input_parquet: PathLike, out_parquet: PathLike, overwrite: bool) -> None:
    """``--out`` may not be the request file, nor a file predict did not write (unless ``overwrite``)."""
    if Path(out_parquet).resolve() == Path(input_parquet).resolve():
        raise ArtifactError(f"--out {out_parquet}: is the request file itself; choose another path")
    check_file_replaceable(out_parquet, "a scores file", lambda f: parquet_kind(f) == SCORES_KIND, overwrite)


#: :data:`~torchrec_side.io.PARQUET_KIND_KEY` of the scores files predict writes.
SCORES_KIND: str = "scores"


def _predict(run_or_export_dir: PathLike, src: Path, out: Path, batch_size: int, progress: bool,
             checkpoint: str) -> PredictResult:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from torchrec_side.serving.scorer import load_exported

    if not src.is_file():
        raise ServingError(f"request file {src} not found")
    export_dir = resolve_export(run_or_export_dir, checkpoint)
    scorer = load_exported(export_dir)
    spec = scorer.spec
    try:
        reader = pq.ParquetFile(src)
    except (OSError, pa.ArrowException) as e:
        raise ServingError(f"{src}: not a readable Parquet file: {e}") from e
    names = list(reader.schema_arrow.names)
    passthrough = [c for c in names if c not in spec.history_columns and c != SCORE_COLUMN]
    total = int(reader.metadata.num_rows)
    rows = 0
    t0 = time.time()
    with atomic_path(out) as tmp:
        writer: Optional[Any] = None
        bar = tqdm(total=total, desc="predict", unit="req", disable=not progress, file=sys.stderr,
                   dynamic_ncols=True, mininterval=1.0)
        try:
            for rb in reader.iter_batches(batch_size=batch_size):
                where = f"{src} rows {rows}..{rows + rb.num_rows - 1}"
                dense, values, lengths = request_tensors(rb, spec, where=where)
                try:
                    scores = scorer.score_tensors(dense, values, lengths)
                except ServingError as e:
                    raise ServingError(f"{where}: {e}") from e
                cols = [rb.column(c) for c in passthrough] + [pa.array(scores.numpy().astype("float32"))]
                table = pa.Table.from_arrays(cols, names=passthrough + [SCORE_COLUMN],
                                             metadata={PARQUET_KIND_KEY: SCORES_KIND.encode()})
                if writer is None:
                    writer = pq.ParquetWriter(str(tmp), table.schema)
                writer.write_table(table)
                rows += rb.num_rows
                bar.update(rb.num_rows)
            if writer is None:  # an empty request file: an empty scores file with the schema
                schema = pa.schema([reader.schema_arrow.field(c) for c in passthrough] + [(SCORE_COLUMN, pa.float32())],
                                   metadata={PARQUET_KIND_KEY: SCORES_KIND.encode()})
                writer = pq.ParquetWriter(str(tmp), schema)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
    seconds = time.time() - t0
    logger.info("scored %d requests in %.2fs with %s -> %s", rows, seconds, export_dir, out)
    return PredictResult(out=out, rows=rows, export_dir=export_dir, seconds=seconds)


def predict_from_store(
    run_or_export_dir: PathLike,
    split: str,
    out_parquet: PathLike,
    requests_out: Optional[PathLike] = None,
    batch_size: int = 4096,
    progress: bool = True,
    checkpoint: str = "auto",
    threads: int = 0,
    overwrite: bool = False,
) -> PredictResult:
    """Writes a split of the run's example store as a request file, then :func:`predict` s it.

    Args:
        run_or_export_dir (PathLike): a training run folder or an export folder.
        split (str): ``train``, ``val`` or ``test``.
        out_parquet (PathLike): the scores file.
        requests_out (Optional[PathLike]): keep the request file here (default: a temporary file).
        batch_size, progress, checkpoint, threads, overwrite: see :func:`predict`; ``overwrite``
            also lets ``requests_out`` replace a file that is not a request file.

    Example::

        predict_from_store("runs/train/dlrm_side/seed0", "test", "scores_test.parquet")
    """
    from torchrec_side.data import ExampleStore, SPLITS, StoreError

    if split not in SPLITS:
        raise ServingError(f"--from-store: unknown split {split!r}; expected one of {list(SPLITS)}")
    if requests_out is not None:
        _check_out(requests_out, out_parquet, overwrite)
        check_file_replaceable(requests_out, "a request file", lambda f: parquet_kind(f) == REQUESTS_KIND, overwrite,
                               option="--input")
    export_dir = resolve_export(run_or_export_dir, checkpoint)
    spec = read_spec(export_dir)
    store_path = spec.source.get("store", "")
    try:
        store = ExampleStore(store_path)
    except StoreError as e:
        raise ServingError(f"{export_dir}: the run's example store is not available ({e})") from e
    recorded = spec.source.get("item_tables") or {}
    try:
        changed = sorted(c for c, d in recorded.items() if store.column(c).fingerprint != d)
    except StoreError as e:
        raise ServingError(f"{export_dir}: the store's history columns do not match the export ({e})") from e
    if changed:
        raise ServingError(f"{store.path}: history columns {changed} now hold other item tables (SIDs) than the "
                           f"run trained on (an artifact was replaced and the column rewritten); scoring from the "
                           f"store would mix them: retrain, or restore the artifacts")
    with tempfile.TemporaryDirectory(prefix="torchrec_side_requests_") as tmpdir:
        req = Path(requests_out) if requests_out is not None else Path(tmpdir) / f"requests_{split}.parquet"
        n = write_requests_from_store(store, split, spec, req)
        logger.info("wrote %d %s requests from %s to %s", n, split, store.path, req)
        return predict(export_dir, req, out_parquet, batch_size=batch_size, progress=progress, threads=threads,
                       overwrite=overwrite)
