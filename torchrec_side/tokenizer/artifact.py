# pyre-strict
"""The frozen tokenizer artifact: a folder written atomically, checked when loaded.

Layout (format ``torchrec_side.tokenizer``, version :data:`FORMAT_VERSION`)::

    <path>/
      tokenizer.json          format, version, model config, codec, radices, file checksums
      weights.safetensors     every weight and buffer of the VQ-fusion model
      quantizer.safetensors   the bottleneck's tables as a fitted DPCA (torchrec_side quantizer)

The folder is written through :func:`torchrec_side.io.atomic_dir`: a crash, Ctrl-C or SIGKILL while
saving leaves any previous artifact at ``path`` (or, killed between the two renames of the swap,
under a backup name that :meth:`Tokenizer.load` and the next save rename back) and no half-written
folder under the artifact's name; the next save removes a killed save's temporary folder.
``tokenizer.json`` records the size and SHA-256 of both weight files, so a truncated or edited
file is reported as such instead of producing wrong codes.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

import torchrec_side
from torchrec_side.config import ConfigError, config_from_dict, config_to_dict
from torchrec_side.io import ArtifactError, PathLike, atomic_dir, load_tensors, recover, save_tensors
from torchrec_side.quantizers.base import Quantizer
from torchrec_side.quantizers.dpca import DPCA
from torchrec_side.sid.codec import SIDCodec
from torchrec_side.tokenizer.config import FusionModelConfig
from torchrec_side.tokenizer.data import ItemData
from torchrec_side.tokenizer.model import VQFusionModel

__all__ = ["FORMAT", "FORMAT_VERSION", "TokenizeOutput", "Tokenizer", "make_codec"]

FORMAT = "torchrec_side.tokenizer"
FORMAT_VERSION = 1
_META = "tokenizer.json"
_WEIGHTS = "weights.safetensors"
_QUANTIZER = "quantizer.safetensors"

Items = Union[ItemData, Mapping[str, torch.Tensor]]


def make_codec(radices: List[int], layout: str = "auto") -> SIDCodec:
    """SID codec for ``radices``: ``"auto"`` picks byte-grouped when it fits one int64, else mixed radix."""
    if layout == "byte_grouped":
        return SIDCodec.byte_grouped(radices)
    if layout == "mixed_radix":
        return SIDCodec.mixed_radix(radices)
    if layout != "auto":
        raise ValueError(f"unknown SID layout {layout!r}; use auto, byte_grouped or mixed_radix")
    try:
        return SIDCodec.byte_grouped(radices)
    except ValueError:
        return SIDCodec.mixed_radix(radices)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class TokenizeOutput:
    """Result of :meth:`Tokenizer.tokenize`.

    Args:
        codes: ``int64 [N, L]`` per-level codes.
        sids: ``int64 [N]`` packed SIDs (the tokenizer's codec).
    """

    codes: torch.Tensor
    sids: torch.Tensor


class Tokenizer:
    """A frozen VQ-fusion tokenizer: items -> codes -> packed SIDs, and back to embeddings.

    Works for any item, including items never seen in training: it only needs the item's
    content collections (an all-zero row stands for a missing collection).

    Args:
        model: a trained :class:`~torchrec_side.tokenizer.model.VQFusionModel` (put in eval mode,
            gradients off).
        codec: how SIDs are packed (see :func:`make_codec`).
        metadata: JSON-serializable extras stored in the artifact (e.g. training summary).

    Example::

        tok = Tokenizer.load("runs/tokenize/fused_dpca/tokenizer")
        out = tok.tokenize({"minilm": text_vecs, "collaborative": cf_vecs})   # codes [N, 40], sids [N]
        offset, tables = tok.level_tables()        # z_hat = offset + sum_l T_l[c_l], T_l [K_l, D]
        side_quantizer = tok.quantizer             # a fitted DPCA, usable wherever a Quantizer is
    """

    def __init__(self, model: VQFusionModel, codec: Optional[SIDCodec] = None, metadata: Optional[Dict[str, Any]] = None) -> None:
        if not bool(model.bottleneck.initialized):
            raise ValueError("the model's bottleneck is not initialized (train it first)")
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.codec: SIDCodec = codec if codec is not None else make_codec(model.radices)
        if list(self.codec.radices) != model.radices:
            raise ValueError(f"codec radices {list(self.codec.radices)} differ from the model's {model.radices}")
        self.metadata: Dict[str, Any] = dict(metadata or {})
        self.quantizer: DPCA = model.bottleneck.to_quantizer().to(self.device)

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        return self.model.bottleneck.offset.device

    @property
    def config(self) -> FusionModelConfig:
        return self.model.config

    @property
    def radices(self) -> List[int]:
        """``[K_1, ..., K_L]``."""
        return self.model.radices

    @property
    def num_levels(self) -> int:
        return len(self.radices)

    @property
    def latent_dim(self) -> int:
        """``D``, width of ``z`` and of the level tables."""
        return self.model.config.latent_dim

    @property
    def bits_per_item(self) -> float:
        """Information content of one SID, ``sum_l log2 K_l``."""
        return self.quantizer.bits_per_item

    @property
    def collection_names(self) -> List[str]:
        return self.model.collection_names

    @property
    def target_names(self) -> List[str]:
        return self.model.target_names

    def to(self, device: Union[str, torch.device]) -> "Tokenizer":
        """Moves the model and tables to ``device`` (in place) and returns ``self``."""
        self.model.to(device)
        self.quantizer.to(device)
        return self

    def level_tables(self) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """``(offset [D], [T_l [K_l, D]])``: ``z_hat = offset + sum_l T_l[c_l]`` (what SIDE pools)."""
        return self.quantizer.level_tables()

    @property
    def fingerprint(self) -> str:
        """Short SHA-256 of what fixes the SIDs: encoder weights, level tables and codec.

        Recorded in the artifact, the SID table and the statistics, so a SID table can be matched
        to the tokenizer that wrote it.
        """
        h = hashlib.sha256()
        h.update(json.dumps(self.codec.to_dict(), sort_keys=True).encode())
        for name, t in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def level_factors(self) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per level ``(C_l [K_l, m_l], V_l [D, m_l])`` with ``T_l = C_l V_l^T`` (RQ: ``V_l = I``)."""
        return self.quantizer.level_factors()

    # ------------------------------------------------------------------ inference

    def _inputs(self, items: Items) -> Dict[str, torch.Tensor]:
        cols = items.collections if isinstance(items, ItemData) else items
        missing = [n for n in self.collection_names if n not in cols]
        if missing:
            raise KeyError(f"items lack content collections {missing}; this tokenizer reads {self.collection_names}")
        return {n: cols[n] for n in self.collection_names}

    @torch.no_grad()
    def embed(self, items: Items, batch_size: int = 4096) -> torch.Tensor:
        """Latents ``z [N, D]`` (before quantization) of items ``{collection: [N, d_m]}``."""
        inputs = self._inputs(items)
        n = next(iter(inputs.values())).shape[0]
        outs = []
        for s in range(0, n, batch_size):
            outs.append(self.model.encode({k: v[s : s + batch_size].to(self.device) for k, v in inputs.items()}))
        return torch.cat(outs) if outs else torch.zeros(0, self.latent_dim, device=self.device)

    @torch.no_grad()
    def encode(self, items: Items, batch_size: int = 4096) -> torch.Tensor:
        """Codes ``int64 [N, L]`` of items ``{collection: [N, d_m]}``."""
        return self.quantizer.encode(self.embed(items, batch_size))

    @torch.no_grad()
    def tokenize(self, items: Items, batch_size: int = 4096) -> TokenizeOutput:
        """Codes ``int64 [N, L]`` and packed SIDs ``int64 [N]`` of items."""
        codes = self.encode(items, batch_size)
        return TokenizeOutput(codes=codes, sids=self.codec.pack(codes))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``z_hat [N, D] = offset + sum_l T_l[c_l]`` of codes ``[N, L]``."""
        return self.quantizer.decode(codes.to(self.device))

    @torch.no_grad()
    def reconstruct(self, codes: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Per collection, the decoder's reconstruction ``[N, d_m]`` (normalized space) of codes."""
        return self.model.decode_latent(self.decode(codes))[0]

    @torch.no_grad()
    def predict(self, codes: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Per target, logits ``[N, C_j]`` of the categorical heads from the SID alone."""
        return self.model.decode_latent(self.decode(codes))[1]

    # ------------------------------------------------------------------ persistence

    def save(self, path: PathLike) -> Path:
        """Writes the artifact folder at ``path`` atomically (see module docstring); returns it."""
        target = Path(path)
        state = {k: v for k, v in self.model.state_dict().items()}
        with atomic_dir(target, _META) as tmp:
            save_tensors(tmp / _WEIGHTS, state, {"format": FORMAT, "version": str(FORMAT_VERSION)})
            self.quantizer.save(tmp / _QUANTIZER)
            meta = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "torchrec_side_version": getattr(torchrec_side, "__version__", "unknown"),
                "created_unix": int(time.time()),
                "model_config": config_to_dict(self.model.config),
                "codec": self.codec.to_dict(),
                "radices": self.radices,
                "bits_per_item": self.bits_per_item,
                "fingerprint": self.fingerprint,
                "latent_dim": self.latent_dim,
                "collections": {c.name: c.dim for c in self.model.collections},
                "targets": {t.name: {"kind": t.kind, "num_classes": t.num_classes} for t in self.model.targets},
                "files": {
                    name: {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)}
                    for name in (_WEIGHTS, _QUANTIZER)
                },
                "metadata": self.metadata,
            }
            (tmp / _META).write_text(json.dumps(meta, indent=2) + "\n")
        return target

    @classmethod
    def load(cls, path: PathLike, device: Union[str, torch.device] = "cpu") -> "Tokenizer":
        """Loads and checks an artifact folder written by :meth:`save`.

        Raises:
            ArtifactError: missing folder or file, not a tokenizer artifact, unsupported version,
                a file whose size or checksum differs from the record (truncated or edited),
                weights that do not match the config, or tables inconsistent with the weights.
        """
        root = Path(path)
        recover(root)  # a save killed between its two renames left the previous artifact aside
        if not root.is_dir():
            raise ArtifactError(f"tokenizer artifact not found: {root} is not a folder")
        meta_path = root / _META
        if not meta_path.is_file():
            raise ArtifactError(f"{root}: missing {_META}; not a tokenizer artifact (or an unfinished write)")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArtifactError(f"{meta_path}: corrupt JSON ({e})") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            fmt = meta.get("format") if isinstance(meta, dict) else None
            raise ArtifactError(f"{root}: not a torchrec_side tokenizer artifact (format={fmt!r})")
        version = meta.get("version")
        if version != FORMAT_VERSION:
            raise ArtifactError(
                f"{root}: tokenizer artifact version {version!r} is not supported "
                f"(this build reads version {FORMAT_VERSION}); re-run `torchrec-side tokenize` or upgrade"
            )
        files = meta.get("files")
        if not isinstance(files, dict):
            raise ArtifactError(f"{meta_path}: no file checksums recorded (corrupt or foreign artifact)")
        for name in (_WEIGHTS, _QUANTIZER):
            fp = root / name
            rec = files.get(name)
            if not fp.is_file():
                raise ArtifactError(f"{root}: missing {name}")
            if not isinstance(rec, dict) or "sha256" not in rec or "bytes" not in rec:
                raise ArtifactError(f"{meta_path}: no checksum recorded for {name}")
            size = fp.stat().st_size
            if size != rec["bytes"]:
                raise ArtifactError(
                    f"{fp}: size {size} bytes differs from the recorded {rec['bytes']} (truncated or replaced file)"
                )
            if _sha256(fp) != rec["sha256"]:
                raise ArtifactError(f"{fp}: SHA-256 checksum mismatch (the file was edited or corrupted)")
        try:
            mcfg = config_from_dict(FusionModelConfig, meta["model_config"], where=str(meta_path))
            codec = SIDCodec.from_dict(meta["codec"])
        except (KeyError, ConfigError, ValueError, TypeError) as e:
            raise ArtifactError(f"{meta_path}: invalid model config or codec: {e}") from e
        tensors, wmeta = load_tensors(root / _WEIGHTS)
        if wmeta.get("format") != FORMAT or wmeta.get("version") != str(FORMAT_VERSION):
            raise ArtifactError(f"{root / _WEIGHTS}: unexpected weights header {wmeta}")
        try:
            model = VQFusionModel(mcfg)
            model.load_state_dict(tensors, strict=True)
        except (RuntimeError, ValueError, KeyError) as e:
            raise ArtifactError(f"{root / _WEIGHTS}: weights do not match the recorded model config: {e}") from e
        model.to(device)
        tok = cls(model, codec, meta.get("metadata", {}))
        with warnings.catch_warnings():  # its file checksum was verified above (older files lack the inner one)
            warnings.filterwarnings("ignore", message=".*no tensor checksum recorded")
            stored = Quantizer.load(root / _QUANTIZER, device=device)
        ref_offset, ref_tables = tok.quantizer.level_tables()
        st_offset, st_tables = stored.level_tables()
        if stored.radices != tok.radices or len(st_tables) != len(ref_tables) or not torch.equal(st_offset, ref_offset) or not all(
            torch.equal(a, b) for a, b in zip(st_tables, ref_tables)
        ):
            raise ArtifactError(f"{root}: {_QUANTIZER} does not match the bottleneck in {_WEIGHTS}")
        if list(codec.radices) != tok.radices:
            raise ArtifactError(f"{meta_path}: codec radices {list(codec.radices)} differ from the model's {tok.radices}")
        if meta.get("fingerprint") not in (None, tok.fingerprint):
            raise ArtifactError(f"{root}: fingerprint {meta.get('fingerprint')} does not match the loaded weights")
        return tok

    def __repr__(self) -> str:
        return (
            f"Tokenizer(kind={self.config.bottleneck.kind!r}, collections={self.collection_names}, "
            f"targets={self.target_names}, levels={self.num_levels}, bits={self.bits_per_item:.1f}, "
            f"layout={self.codec.layout!r})"
        )
