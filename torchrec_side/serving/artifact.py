# pyre-strict
"""The inference artifact folder: ``serving.json`` (what the program expects, where it came from,
SHA-256 of every file) and its verification.

Layout of an export folder (written atomically by :func:`torchrec_side.serving.export_run`)::

    <out>/model.pt2            torch.export program: (dense, values per key, lengths per key) -> scores
    <out>/sample.safetensors   a small batch of inputs and the scores the exporting process computed
    <out>/run_config.yaml      the training run's config (provenance)
    <out>/serving.json         written last: format, inputs, limits, versions, source run, checksums

:func:`read_spec` checks the format and version and :func:`verify_files` the size and SHA-256 of
every file listed, so a truncated, replaced or foreign file is refused with its name before the
program is deserialized.

Trust: ``torch.export.load`` does not execute pickled code the way ``torch.load`` of a module
would, but the checksums only prove the folder is the one that was written; whoever can write
the folder can also write a matching ``serving.json`` (the same stance as the trainer's run
folders, docs/design.md section 6).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from torchrec_side.io import ArtifactError, PathLike

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SPEC_FILE",
    "PROGRAM_FILE",
    "SAMPLE_FILE",
    "CONFIG_FILE",
    "HistoryInputSpec",
    "TargetInputSpec",
    "ServingSpec",
    "sha256_file",
    "spec_with_digest",
    "spec_digest",
    "SPEC_DIGEST_KEY",
    "file_entry",
    "read_spec",
    "verify_files",
    "is_export_dir",
]

#: Value of ``serving.json``'s ``format`` field.
FORMAT: str = "torchrec-side-serving"
#: Version of the folder layout and of ``serving.json``; bumped on incompatible changes.
FORMAT_VERSION: int = 1
SPEC_FILE: str = "serving.json"
PROGRAM_FILE: str = "model.pt2"
SAMPLE_FILE: str = "sample.safetensors"
CONFIG_FILE: str = "run_config.yaml"
_CHUNK: int = 1 << 20


@dataclass
class HistoryInputSpec:
    """One history column of a request and the KJT keys it becomes (as the training loader does).

    Args:
        column (str): the example store's (and the request file's) list column.
        width (int): values per event (1: ``list<int64>``; ``W > 1``: ``list<fixed_size_list<int64, W>>``).
        flatten (bool): ``W`` values per event into one key (else one key per slot).
        keys (List[str]): the KJT keys, in order.
        feature (str): the model's history feature reading it.
        kind (str): that feature's kind (``sparse_id``, ``side``, ...).
    """

    column: str
    width: int
    flatten: bool
    keys: List[str]
    feature: str = ""
    kind: str = ""


@dataclass
class TargetInputSpec:
    """Target keys the program derives from ``item_id`` (a history feature with ``target: true``,
    docs/design.md section 7b): ``table[item_id]``, as the training loader's ``TargetInput`` does.

    Args:
        column (str): the store column whose item -> value table is looked up.
        width (int): values per item (``W``).
        flatten (bool): ``W`` values per example in one key (else one key per slot).
        keys (List[str]): the KJT keys the program fills (not request inputs).
        feature (str): the history feature that reads them.
        kind (str): its kind.
        source (str): ``"identity"`` (``hist_item_id``: the target key is the item id itself) or
            ``"table"`` (a buffer of the program, copied from the store's ``items/<column>.npy``).
        rows (int): rows of the table (the training store's items); larger item ids are refused.
        dtype (str): dtype of the stored buffer (``int32`` when every value fits, else ``int64``).
        sha256 (str): SHA-256 of the table as C-ordered int64 ``[rows, W]`` bytes (``""`` for identity).
        fingerprint (str): the store column's fingerprint (the table it was written from).
    """

    column: str
    width: int
    flatten: bool
    keys: List[str]
    feature: str = ""
    kind: str = ""
    source: str = "table"
    rows: int = 0
    dtype: str = "int64"
    sha256: str = ""
    fingerprint: str = ""


@dataclass
class ServingSpec:
    """Content of ``serving.json``.

    Args:
        format (str): :data:`FORMAT`.
        format_version (int): :data:`FORMAT_VERSION`.
        program (str): file name of the ``torch.export`` program.
        export_route (str): how the program was produced (for people reading the folder).
        arch (str): ``dlrm`` or ``din``.
        keys (List[str]): every KJT key the program reads, in its input order.
        id_features (List[str]): the per-example id keys (one value per example).
        dense_features (List[str]): names of the dense columns, in order.
        history (List[HistoryInputSpec]): history columns and their keys.
        targets (List[TargetInputSpec]): target keys the program derives from ``item_id`` (none
            are request inputs).
        model_keys (List[str]): the KJT keys the ranker reads inside the program, in the training
            loader's order (``keys`` plus the target keys; empty: ``keys``).
        max_history (Optional[int]): the store's history cap (requests are cut to the last events).
        fixed_history_length (Optional[int]): the program pads histories to this length (DIN):
            longer histories are refused by the scorer.
        key_rows (Dict[str, int]): rows of the learned table reading each id-valued key (values
            must lie in ``[0, rows)``).
        sid_codecs (Dict[str, Dict[str, Any]]): codec (``SIDCodec.to_dict``) of each SIDE key.
        side_compute (Dict[str, str]): the SIDE compute path of each SIDE key inside the program:
            ``kernel`` (the registered ``torch.ops.torchrec_side`` C++ op, the fastest exportable CPU
            path; it checks the SIDs in-graph, and the loading process registers it by importing
            torchrec_side), or ``grouped_bag`` / ``per_level`` (pure torch, chosen where the op is
            unavailable; the scorer then checks the SIDs before the call). Empty in folders
            written before this field existed: every SIDE key is then checked by the scorer.
        ops (List[str]): operators of the program outside ``aten`` (e.g. ``fbgemm.*``: the loading
            process must have registered them; ``load_exported`` imports fbgemm_gpu and torchrec).
        versions (Dict[str, str]): torch / torchrec / fbgemm / torchrec-side of the exporting process.
        source (Dict[str, Any]): the training run: folder, checkpoint, step, selection, store.
        files (Dict[str, Dict[str, Any]]): ``{name: {"bytes": n, "sha256": hex}}``.
        created_utc (str): ISO time of the export.
    """

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    program: str = PROGRAM_FILE
    export_route: str = ""
    arch: str = ""
    keys: List[str] = field(default_factory=list)
    id_features: List[str] = field(default_factory=list)
    dense_features: List[str] = field(default_factory=list)
    history: List[HistoryInputSpec] = field(default_factory=list)
    targets: List[TargetInputSpec] = field(default_factory=list)
    model_keys: List[str] = field(default_factory=list)
    max_history: Optional[int] = None
    fixed_history_length: Optional[int] = None
    key_rows: Dict[str, int] = field(default_factory=dict)
    sid_codecs: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    side_compute: Dict[str, str] = field(default_factory=dict)
    ops: List[str] = field(default_factory=list)
    versions: Dict[str, str] = field(default_factory=dict)
    source: Dict[str, Any] = field(default_factory=dict)
    files: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    created_utc: str = ""

    @property
    def dense_width(self) -> int:
        return len(self.dense_features)

    @property
    def history_columns(self) -> List[str]:
        """The request's history list columns, each once (two features may read one column)."""
        return list(dict.fromkeys(h.column for h in self.history))

    @property
    def target_keys(self) -> List[str]:
        """Keys the program derives from ``item_id`` (see :class:`TargetInputSpec`)."""
        return [k for t in self.targets for k in t.keys]

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["dense_width"] = self.dense_width
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any], where: str = SPEC_FILE) -> "ServingSpec":
        """Parses ``serving.json`` content.

        Raises:
            ArtifactError: another format, another version, or a missing / ill-typed field.
        """
        if d.get("format") != FORMAT:
            raise ArtifactError(f"{where}: not a torchrec-side serving artifact (format {d.get('format')!r})")
        if d.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{where}: format version {d.get('format_version')!r}, this torchrec-side reads "
                                f"version {FORMAT_VERSION}; export the run again")
        d = dict(d)
        d.pop("dense_width", None)
        try:
            hist = [HistoryInputSpec(**h) for h in d.pop("history")]
            targets = [TargetInputSpec(**t) for t in d.pop("targets", [])]
            spec = cls(history=hist, targets=targets, **d)
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"{where}: malformed serving spec: {e}") from e
        if len(set(spec.keys)) != len(spec.keys) or spec.keys[: len(spec.id_features)] != spec.id_features:
            raise ArtifactError(f"{where}: malformed key list {spec.keys}")
        if spec.keys[len(spec.id_features):] != [k for h in spec.history for k in h.keys]:
            raise ArtifactError(f"{where}: history keys {[h.keys for h in spec.history]} do not match keys {spec.keys}")
        derived = spec.target_keys
        if spec.model_keys and sorted(spec.model_keys) != sorted(spec.keys + derived):
            raise ArtifactError(f"{where}: model keys {spec.model_keys} are not the request keys {spec.keys} plus "
                                f"the target keys {derived}")
        if derived and "item_id" not in spec.id_features:
            raise ArtifactError(f"{where}: target keys {derived} are derived from item_id, which is not an input")
        return spec


#: The key of ``serving.json`` holding the SHA-256 of the rest of it (:func:`spec_with_digest`).
SPEC_DIGEST_KEY: str = "spec_sha256"


def spec_digest(d: Dict[str, Any]) -> str:
    """SHA-256 of ``serving.json`` content without :data:`SPEC_DIGEST_KEY` (canonical JSON)."""
    body = {k: v for k, v in d.items() if k != SPEC_DIGEST_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def spec_with_digest(spec: "ServingSpec") -> Dict[str, Any]:
    """``spec.to_dict()`` with :data:`SPEC_DIGEST_KEY`: the SHA-256 of its canonical JSON, so an
    edited or damaged ``serving.json`` is refused like any other file of the artifact."""
    d = spec.to_dict()
    d[SPEC_DIGEST_KEY] = spec_digest(d)
    return d


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: PathLike) -> Dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file."""
    p = Path(path)
    return {"bytes": p.stat().st_size, "sha256": sha256_file(p)}


def is_export_dir(path: PathLike) -> bool:
    """True when ``path`` is a folder holding ``serving.json``."""
    return (Path(path) / SPEC_FILE).is_file()


def read_spec(directory: PathLike) -> ServingSpec:
    """Reads and checks ``<directory>/serving.json`` (no file hashing; see :func:`verify_files`).

    Raises:
        ArtifactError: missing or unreadable ``serving.json``, one failing its own checksum
            (:data:`SPEC_DIGEST_KEY`), other format or version.

    Example::

        spec = read_spec("runs/x/export")
        spec.keys, spec.dense_width, spec.source["checkpoint"]
    """
    p = Path(directory) / SPEC_FILE
    if not p.is_file():
        raise ArtifactError(f"no serving artifact at {directory} (missing {SPEC_FILE}); "
                            f"run `torchrec-side export RUN --out {directory}`")
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"unreadable {p}: {e}") from e
    if not isinstance(d, dict):
        raise ArtifactError(f"{p}: expected a JSON object")
    if SPEC_DIGEST_KEY not in d:
        raise ArtifactError(f"{p}: no {SPEC_DIGEST_KEY} (written by hand or by an older torchrec-side); export the run again")
    if d[SPEC_DIGEST_KEY] != spec_digest(d):
        raise ArtifactError(f"{p}: fails its SHA-256 check ({SPEC_DIGEST_KEY}): edited or damaged; export the run again")
    d.pop(SPEC_DIGEST_KEY)
    return ServingSpec.from_dict(d, where=str(p))


def verify_files(directory: PathLike, spec: ServingSpec) -> None:
    """Checks that every file ``spec.files`` lists exists with its size and SHA-256.

    Raises:
        ArtifactError: naming the first missing, truncated or altered file.
    """
    root = Path(directory)
    if spec.program not in spec.files:
        raise ArtifactError(f"{root / SPEC_FILE}: the program {spec.program} has no checksum entry")
    for name, entry in spec.files.items():
        p = root / name
        if Path(name).name != name:
            raise ArtifactError(f"{root / SPEC_FILE}: file entry {name!r} is not a plain file name")
        if not p.is_file():
            raise ArtifactError(f"serving artifact {root}: file {name} is missing")
        size = p.stat().st_size
        if size != entry.get("bytes"):
            raise ArtifactError(f"serving artifact {root}: {name} has {size} bytes, {entry.get('bytes')} were "
                                f"written (truncated or replaced)")
        digest = sha256_file(p)
        if digest != entry.get("sha256"):
            raise ArtifactError(f"serving artifact {root}: {name} fails its SHA-256 check (corrupt or replaced)")
