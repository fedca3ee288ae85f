# pyre-strict
"""The SID table (item id -> packed SID and codes, Parquet) and the tokenizer's statistics.

Parquet schema: ``item_index int64`` (row position in the tokenized item list: the dense
0-based item index for MovieLens-100K), ``item_id int64`` (the dataset's own id; raw ids
1..1682 for MovieLens-100K), ``sid int64`` (packed by the tokenizer's codec) and ``codes``
(fixed-size list of ``L`` int32). The schema metadata holds the codec (layout and radices) under
``torchrec_side.sid_table`` so a reader can unpack without the tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from torchrec_side.io import ArtifactError, PathLike, atomic_path
from torchrec_side.quantizers.base import codebook_stats
from torchrec_side.sid.codec import SIDCodec
from torchrec_side.tokenizer.artifact import Tokenizer
from torchrec_side.tokenizer.data import ItemData
from torchrec_side.tokenizer.metrics import mean_cosine, multiclass_scores, multilabel_auc

__all__ = ["SIDTable", "build_sid_table", "write_sid_table", "read_sid_table", "load_sid_table", "permuted_sid_table",
           "tokenizer_stats"]

_META_KEY = b"torchrec_side.sid_table"
_TABLE_VERSION = 1


@dataclass
class SIDTable:
    """Item id -> SID.

    Args:
        item_ids: ``int64 [N]``.
        sids: ``int64 [N]`` packed SIDs.
        codes: ``int64 [N, L]``.
        codec: the :class:`~torchrec_side.sid.SIDCodec` that packed ``sids``.
        tokenizer_fingerprint: :attr:`Tokenizer.fingerprint` of the tokenizer that wrote it.

    Example::

        table = build_sid_table(tokenizer, items)
        write_sid_table("sid_table.parquet", table)
        read_sid_table("sid_table.parquet").lookup(torch.tensor([1, 50]))   # sids of items 1, 50
    """

    item_ids: torch.Tensor
    sids: torch.Tensor
    codes: torch.Tensor
    codec: SIDCodec
    tokenizer_fingerprint: str = ""

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def packed(self) -> torch.Tensor:
        """Alias of ``sids``: ``int64 [N]``, row ``i`` = item index ``i``."""
        return self.sids

    def lookup(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Packed SIDs ``int64 [...]`` of ``item_ids [...]``; unknown ids raise ``KeyError``."""
        order = torch.argsort(self.item_ids)
        sorted_ids = self.item_ids[order]
        flat = item_ids.reshape(-1).to(sorted_ids.device)
        pos = torch.searchsorted(sorted_ids, flat).clamp_max(len(self) - 1)
        found = sorted_ids[pos] == flat
        if not bool(found.all()):
            bad = flat[~found][:5].tolist()
            raise KeyError(f"item ids not in the SID table: {bad}")
        return self.sids[order[pos]].reshape(item_ids.shape)


def build_sid_table(tokenizer: Tokenizer, items: ItemData, batch_size: int = 4096) -> SIDTable:
    """Tokenizes every item of ``items``."""
    out = tokenizer.tokenize(items, batch_size)
    return SIDTable(items.item_ids.cpu().long(), out.sids.cpu(), out.codes.cpu(), tokenizer.codec, tokenizer.fingerprint)


def permuted_sid_table(table: SIDTable, seed: int = 0) -> SIDTable:
    """The same SIDs dealt to the items in a seeded random order: item ``i`` gets the SID of item
    ``perm[i]``. Code statistics, collisions and the codec stay; what a SID says about its item's
    content is gone. SIDE over it measures what the fixed codes give without content.

    Example::

        noise = permuted_sid_table(read_sid_table("sid_table.parquet"), seed=1)
    """
    perm = torch.randperm(len(table), generator=torch.Generator().manual_seed(seed))
    return SIDTable(table.item_ids.clone(), table.sids[perm].clone(), table.codes[perm].clone(), table.codec,
                    table.tokenizer_fingerprint)


def write_sid_table(path: PathLike, table: SIDTable) -> None:
    """Writes the table as Parquet, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, num_levels = table.codes.shape
    codes = pa.FixedSizeListArray.from_arrays(
        pa.array(table.codes.to(torch.int32).reshape(-1).numpy()), num_levels
    )
    meta = {"version": _TABLE_VERSION, "codec": table.codec.to_dict(), "tokenizer_fingerprint": table.tokenizer_fingerprint}
    pt = pa.table(
        {
            "item_index": pa.array(torch.arange(n, dtype=torch.long).numpy()),
            "item_id": pa.array(table.item_ids.numpy()),
            "sid": pa.array(table.sids.numpy()),
            "codes": codes,
        }
    ).replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(pt, str(tmp))


def read_sid_table(path: PathLike) -> SIDTable:
    """Reads a table written by :func:`write_sid_table`, checking that SIDs and codes agree.

    Raises:
        ArtifactError: unreadable file, missing columns or metadata, or SIDs that do not match
            their codes.
    """
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"SID table not found: {p}")
    try:
        pt = pq.read_table(str(p))
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise ArtifactError(f"{p}: unreadable Parquet file ({e})") from e
    meta_raw = (pt.schema.metadata or {}).get(_META_KEY)
    if meta_raw is None:
        raise ArtifactError(f"{p}: not a torchrec_side SID table (no {_META_KEY.decode()} metadata)")
    meta = json.loads(meta_raw)
    if meta.get("version") != _TABLE_VERSION:
        raise ArtifactError(f"{p}: SID table version {meta.get('version')!r} is not supported")
    missing = [c for c in ("item_index", "item_id", "sid", "codes") if c not in pt.column_names]
    if missing:
        raise ArtifactError(f"{p}: missing columns {missing}")
    codec = SIDCodec.from_dict(meta["codec"])
    try:
        item_ids = torch.tensor(pt.column("item_id").to_numpy(), dtype=torch.long)
        sids = torch.tensor(pt.column("sid").to_numpy(), dtype=torch.long)
        flat = pt.column("codes").combine_chunks().flatten().to_numpy()
        codes = torch.tensor(flat, dtype=torch.long).reshape(len(item_ids), codec.num_levels)
        index = torch.tensor(pt.column("item_index").to_numpy(), dtype=torch.long)
    except (ValueError, RuntimeError, TypeError) as e:
        raise ArtifactError(f"{p}: malformed SID table columns ({e})") from e
    if not torch.equal(index, torch.arange(len(item_ids))):
        raise ArtifactError(f"{p}: item_index must be 0..N-1 in order (rows reordered or missing)")
    if not torch.equal(codec.pack(codes), sids):
        raise ArtifactError(f"{p}: packed SIDs do not match the codes column")
    return SIDTable(item_ids, sids, codes, codec, str(meta.get("tokenizer_fingerprint", "")))


#: Alias of :func:`read_sid_table`.
load_sid_table = read_sid_table


@torch.no_grad()
def tokenizer_stats(
    tokenizer: Tokenizer,
    items: ItemData,
    heldout_index: Optional[torch.Tensor] = None,
    table: Optional[SIDTable] = None,
    max_group_items: int = 20_000,
) -> Dict[str, Any]:
    """Statistics of a tokenizer on ``items`` (JSON-serializable).

    * ``codebook``: per-level utilization and perplexity, distinct SIDs and collision rate over
      all items;
    * ``heldout`` (items at ``heldout_index``, never trained on) and ``train`` (the others):
      per-collection reconstruction cosine (in the normalized space the decoder targets; present
      rows only), per-target metrics from the SID alone (multi-label: macro / micro AUC;
      single-label: accuracy and macro one-vs-rest AUC), and the collision rate within the group;
    * ``bits_per_item`` (``sum log2 K_l``), ``container_bits`` (64), codec.

    The per-group metrics use a seeded sample of at most ``max_group_items`` items of the group
    (``num_scored``): decoding every item at once needs ``N x classes`` logits, 11 GB for the
    full simulated world's 10^6 items and 3,000 sub-categories. The codebook numbers and the
    collision rates always cover every item.
    """
    if table is None:
        table = build_sid_table(tokenizer, items)
    codes = table.codes
    st = codebook_stats(codes, tokenizer.radices)
    n = len(items)
    groups: Dict[str, torch.Tensor] = {}
    if heldout_index is not None and heldout_index.numel():
        mask = torch.zeros(n, dtype=torch.bool)
        mask[heldout_index] = True
        groups = {"heldout": mask.nonzero().flatten(), "train": (~mask).nonzero().flatten()}
    else:
        groups = {"all": torch.arange(n)}
    out: Dict[str, Any] = {
        "num_items": n,
        "bits_per_item": tokenizer.bits_per_item,
        "container_bits": tokenizer.codec.bits_per_event,
        "min_bytes_per_item": tokenizer.codec.min_bytes_per_event,
        "codec": tokenizer.codec.to_dict(),
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "num_levels": tokenizer.num_levels,
        "codebook": {
            "utilization": st.utilization,
            "perplexity": st.perplexity,
            "mean_utilization": sum(st.utilization) / len(st.utilization),
            "mean_perplexity": sum(st.perplexity) / len(st.perplexity),
            "distinct_sids": st.distinct_sids,
            "collision_rate": st.collision_rate,
        },
    }
    device = tokenizer.device
    for gname, idx in groups.items():
        if idx.numel() == 0:
            continue
        scored = idx
        if max_group_items > 0 and idx.numel() > max_group_items:
            pick = torch.randperm(idx.numel(), generator=torch.Generator().manual_seed(0))[:max_group_items]
            scored = idx[pick.sort().values]
        sub = items.subset(scored)
        c = codes[scored].to(device)
        recon, logits = tokenizer.model.decode_latent(tokenizer.decode(c))
        normed = tokenizer.model.normalize({k: sub.collections[k].to(device) for k in tokenizer.collection_names})
        g: Dict[str, Any] = {"num_items": int(idx.numel()), "num_scored": int(scored.numel())}
        g["recon_cos"] = {k: mean_cosine(recon[k].cpu(), normed[k][0].cpu(), normed[k][1].cpu()) for k in recon}
        targets: Dict[str, Dict[str, float]] = {}
        for t in tokenizer.model.targets:
            if t.name not in sub.targets:
                continue
            y = sub.targets[t.name]
            lg = logits[t.name].cpu()
            targets[t.name] = multilabel_auc(lg, y) if t.kind == "multi_label" else multiclass_scores(lg, y)
        g["targets"] = targets
        g["collision_rate"] = codebook_stats(codes[idx], tokenizer.radices).collision_rate
        out[gname] = g
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def summary_lines(stats: Dict[str, Any]) -> List[str]:
    """A short human-readable summary of :func:`tokenizer_stats` output."""
    cb = stats["codebook"]
    lines = [
        f"items {stats['num_items']}  levels {stats['num_levels']}  bits/item {stats['bits_per_item']:.1f} "
        f"(packed in {stats['container_bits']}-bit int64, {stats['codec']['layout']})",
        f"distinct SIDs {cb['distinct_sids']}  collision rate {cb['collision_rate']:.4f}  "
        f"utilization {cb['mean_utilization']:.3f}  perplexity {cb['mean_perplexity']:.2f} (means over levels)",
    ]
    for g in ("heldout", "train", "all"):
        if g not in stats:
            continue
        s = stats[g]
        rc = "  ".join(f"{k} {_fmt(v)}" for k, v in s["recon_cos"].items())
        lines.append(f"{g} ({s['num_items']} items): recon cos: {rc}")
        for t, m in s["targets"].items():
            lines.append(f"  {t}: " + "  ".join(f"{k} {_fmt(v)}" for k, v in m.items()))
    return lines
