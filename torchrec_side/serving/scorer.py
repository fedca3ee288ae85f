# pyre-strict
"""``load_exported``: an export folder -> a scorer (no trainer, no run folder, no tokenizer files).

The scorer checks ``serving.json``'s format and every file's SHA-256 before it deserializes the
program, registers the ``torch.ops.torchrec_side`` ops when the program calls them, optionally
reruns the recorded sample batch (``self_check``), and checks each request batch in eager code
before calling the program: the keys and shapes, id values inside their
tables, packed SIDs valid for their codec where the program's SIDE path does not check them
itself (``serving.json``'s ``side_compute``: the registered op validates in-graph, fused into the
pooling; when the program refuses a batch the scorer runs every check to name the key and
value), for the target-attention model, histories no longer than the padded length, and, when the
program derives target keys from ``item_id`` (``target: true`` features), item ids inside the
item tables it carries.

Example::

    scorer = load_exported("runs/train/dlrm_side/seed0/export")
    p = scorer(batch)                          # ExampleBatch -> [B] probabilities
    p = scorer.score_kjt(kjt, dense)           # KeyedJaggedTensor (+ dense [B, F]) -> [B]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from torchrec_side.io import ArtifactError, load_tensors, PathLike
from torchrec_side.serving.artifact import read_spec, SAMPLE_FILE, ServingSpec, verify_files
from torchrec_side.serving.rebuild import ServingError

__all__ = ["ExportedScorer", "load_exported"]

logger: logging.Logger = logging.getLogger(__name__)


class ExportedScorer:
    """Scores request batches with an exported program.

    Args:
        directory (Path): the export folder.
        spec (ServingSpec): its ``serving.json``.
        program (Any): the ``torch.export.ExportedProgram``.

    Call Args:
        batch (ExampleBatch or KeyedJaggedTensor): a batch; a KJT needs ``dense``.
        dense (Optional[torch.Tensor]): ``[B, F]`` dense features when ``batch`` is a KJT.

    Returns:
        torch.Tensor: float32 ``[B]`` probabilities.

    Example::

        scorer = load_exported("serve/dlrm_side")
        scores = scorer(batch)
    """

    def __init__(self, directory: Path, spec: ServingSpec, program: Any) -> None:
        from torchrec_side.sid import SIDCodec

        self.directory = directory
        self.spec = spec
        self.program = program
        self._module: Any = program.module()
        self._all_codecs: Dict[str, Any] = {k: SIDCodec.from_dict(d) for k, d in spec.sid_codecs.items()}
        # SIDE keys the program does not check itself (pure-torch paths): validated before the call
        self._codecs: Dict[str, Any] = {k: c for k, c in self._all_codecs.items()
                                        if spec.side_compute.get(k) != "kernel"}

    @property
    def keys(self) -> List[str]:
        return list(self.spec.keys)

    def check_inputs(self, dense: torch.Tensor, values: List[torch.Tensor], lengths: List[torch.Tensor],
                     all_sids: bool = False) -> None:
        """Raises :class:`ServingError` naming the key and the problem for inputs the program
        would reject or score wrongly.

        Packed SIDs of keys the program checks itself (``spec.side_compute[key] == "kernel"``: the
        registered op validates them while pooling) are checked here only with ``all_sids``
        (:meth:`score_tensors` does that when the program refuses a batch, to name the problem)."""
        spec = self.spec
        if dense.dim() != 2 or dense.shape[1] != spec.dense_width:
            raise ServingError(f"dense features must be [B, {spec.dense_width}] ({spec.dense_features}), "
                               f"got {list(dense.shape)}")
        b = int(dense.shape[0])
        if b < 1:
            raise ServingError("empty batch")
        if len(values) != len(spec.keys) or len(lengths) != len(spec.keys):
            raise ServingError(f"expected values and lengths for the {len(spec.keys)} keys {spec.keys}, "
                               f"got {len(values)} and {len(lengths)}")
        for k, v, n in zip(spec.keys, values, lengths):
            if v.dtype != torch.int64 or v.dim() != 1 or n.dtype != torch.int64 or n.dim() != 1:
                raise ServingError(f"key {k!r}: values and lengths must be 1-D int64, got {v.dtype} {list(v.shape)} "
                                   f"and {n.dtype} {list(n.shape)}")
            if n.numel() != b:
                raise ServingError(f"key {k!r}: {n.numel()} lengths for a batch of {b}")
            if n.numel() and int(n.min()) < 0:
                raise ServingError(f"key {k!r}: negative lengths")
            if int(n.sum()) != v.numel():
                raise ServingError(f"key {k!r}: lengths sum to {int(n.sum())} but {v.numel()} values were given")
            if k in spec.id_features and not bool((n == 1).all()):
                raise ServingError(f"key {k!r}: exactly one value per example is required")
            if k == "item_id" and spec.targets and v.numel():
                rows = min(t.rows for t in spec.targets)
                lo, hi = int(v.min()), int(v.max())
                if lo < 0 or hi >= rows:
                    raise ServingError(f"key 'item_id': unknown item id {lo if lo < 0 else hi}: the target keys "
                                       f"{spec.target_keys} are looked up in the item tables of the training "
                                       f"store ({rows} items, ids [0, {rows})); items added since need a new "
                                       f"store and a retrained, re-exported model")
            rows = spec.key_rows.get(k)
            if rows is not None and v.numel():
                lo, hi = int(v.min()), int(v.max())
                if lo < 0 or hi >= rows:
                    raise ServingError(f"key {k!r}: values must lie in [0, {rows}) (the table's rows), "
                                       f"found {lo if lo < 0 else hi}")
            codec = (self._all_codecs if all_sids else self._codecs).get(k)
            if codec is not None and v.numel():
                try:
                    codec.validate_sids(v)
                except ValueError as e:
                    raise ServingError(f"key {k!r}: invalid packed SID: {e}") from e
            cap = spec.fixed_history_length
            if cap is not None and k not in spec.id_features and n.numel() and int(n.max()) > cap:
                raise ServingError(f"key {k!r}: a history of {int(n.max())} events exceeds the exported model's "
                                   f"{cap} (cut histories to the last {cap} events)")

    @torch.no_grad()
    def score_tensors(self, dense: torch.Tensor, values: List[torch.Tensor], lengths: List[torch.Tensor],
                      check: bool = True) -> torch.Tensor:
        """Scores the program's plain inputs (``values`` / ``lengths`` in :attr:`keys` order).

        Args:
            dense (torch.Tensor): float32 ``[B, F]``.
            values (List[torch.Tensor]): int64 ``[N_k]`` per key.
            lengths (List[torch.Tensor]): int64 ``[B]`` per key.
            check (bool): run :meth:`check_inputs` first.

        Returns:
            torch.Tensor: float32 ``[B]`` probabilities.
        """
        dense = dense.float().contiguous()
        values = [v.contiguous() for v in values]
        lengths = [n.contiguous() for n in lengths]
        if check:
            self.check_inputs(dense, values, lengths)
        from torchrec_side.serving.export import quiet_tracing_logs

        try:
            with quiet_tracing_logs():
                return self._module(dense, values, lengths)
        except Exception as e:  # the program's own checks (in-graph SID / offsets asserts) and op errors
            if not check:
                raise
            self.check_inputs(dense, values, lengths, all_sids=True)  # names the key and the value
            raise ServingError(f"the exported program refused the batch: {type(e).__name__}: "
                               f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e

    def score_kjt(self, kjt: Any, dense: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Scores a ``KeyedJaggedTensor`` (it may hold extra keys) with dense features ``[B, F]``.

        Target keys (``spec.target_keys``) are derived from ``item_id`` inside the program; a KJT
        that carries them too (a training loader's batch) has them ignored."""
        have = kjt.keys()
        missing = [k for k in self.spec.keys if k not in have]
        if missing:
            raise ServingError(f"the KeyedJaggedTensor lacks keys {missing} (has {have}; the model reads {self.spec.keys})")
        if kjt.weights_or_none() is not None:
            raise ServingError("the exported model reads unweighted features; the KeyedJaggedTensor has weights")
        d = kjt.to_dict()
        return self.score_tensors(dense, [d[k].values() for k in self.spec.keys],
                                  [d[k].lengths().long() for k in self.spec.keys], check=check)

    def __call__(self, batch: Any, dense: Optional[torch.Tensor] = None) -> torch.Tensor:
        if hasattr(batch, "sparse_features") and hasattr(batch, "dense_features"):
            return self.score_kjt(batch.sparse_features, batch.dense_features)
        if dense is None:
            raise ServingError("scoring a KeyedJaggedTensor needs dense features: scorer(kjt, dense)")
        return self.score_kjt(batch, dense)

    def self_check(self, atol: float = 1e-5) -> float:
        """Reruns the sample batch recorded at export; returns the largest score difference.

        Raises:
            ArtifactError: the difference exceeds ``atol`` (another library build, a broken load).
        """
        tensors, _ = load_tensors(self.directory / SAMPLE_FILE)
        n = len(self.spec.keys)
        try:
            values = [tensors[f"values_{i}"] for i in range(n)]
            lengths = [tensors[f"lengths_{i}"] for i in range(n)]
            dense, want = tensors["dense"], tensors["scores"]
        except KeyError as e:
            raise ArtifactError(f"{self.directory / SAMPLE_FILE}: missing tensor {e}") from e
        got = self.score_tensors(dense, values, lengths)
        diff = float((got - want).abs().max())
        if not diff <= atol:
            raise ArtifactError(f"serving artifact {self.directory}: the program scores the recorded sample "
                                f"{diff:.3g} away from the exporting process (tolerance {atol})")
        return diff


def _own_version() -> str:
    import torchrec_side

    return str(torchrec_side.__version__)


def _register_side_ops(root: Path, spec: ServingSpec) -> None:
    """Registers the ``torch.ops.torchrec_side`` ops (building the C++ extension on first use on
    this machine) when the program calls them; raises :class:`ArtifactError` naming the cause when
    they cannot be registered here."""
    side_ops = [op for op in spec.ops if op.startswith("torchrec_side.")]
    if not side_ops and "kernel" not in spec.side_compute.values():
        return
    from torchrec_side.modules.ops import cpu_kernel

    if not cpu_kernel.kernels_available():
        raise ArtifactError(f"serving artifact {root}: the program calls the SIDE C++ op {side_ops or ['torchrec_side.*']}, "
                            f"which cannot be registered in this process ({cpu_kernel.kernel_status()}); install a "
                            f"C++ compiler and ninja, or export the run again here (export falls back to the "
                            f"pure-torch grouped_bag path where the op is unavailable)")
    unknown = [op for op in side_ops if not hasattr(torch.ops.torchrec_side, op.split(".")[1])]
    if unknown:
        raise ArtifactError(f"serving artifact {root}: the program calls {unknown}, which the torchrec_side "
                            f"here (version {_own_version()}; the program was exported by version "
                            f"{spec.versions.get('torchrec_side', '?')}) does not define; export the run again")


def load_exported(directory: PathLike, verify: bool = True, self_check: bool = True) -> ExportedScorer:
    """Loads an export folder written by :func:`~torchrec_side.serving.export_run`.

    Args:
        directory (PathLike): the folder holding ``serving.json``.
        verify (bool): check every file's size and SHA-256 first (default True).
        self_check (bool): rerun the recorded sample batch and compare to 1e-5 (default True).

    Returns:
        ExportedScorer: call it on an ``ExampleBatch`` or a KJT + dense.

    Raises:
        ArtifactError: missing, corrupt or mismatched files, another format version, or a program
            that does not reproduce its sample scores.

    Example::

        scorer = load_exported("runs/train/dlrm_side/seed0/export")
        scorer.spec.source["checkpoint"], scorer(batch)
    """
    import fbgemm_gpu  # noqa: F401  (registers the fbgemm ops the program may call)
    import torchrec  # noqa: F401

    root = Path(directory)
    spec = read_spec(root)
    if verify:
        verify_files(root, spec)
    _register_side_ops(root, spec)
    from torchrec_side.serving.export import quiet_tracing_logs

    try:
        with quiet_tracing_logs():
            program = torch.export.load(str(root / spec.program))
    except Exception as e:  # deserialization raises several types for a damaged program
        raise ArtifactError(f"serving artifact {root}: cannot load {spec.program}: {type(e).__name__}: {e}") from e
    scorer = ExportedScorer(root, spec, program)
    if self_check:
        scorer.self_check()
    logger.info("loaded %s (%s, %d keys, from %s %s)", root, spec.arch, len(spec.keys),
                spec.source.get("run_dir"), spec.source.get("checkpoint"))
    return scorer
