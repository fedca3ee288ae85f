# pyre-strict
"""``torchrec-side tokenize``: train a VQ-fusion tokenizer and write its run folder.

Usage::

    torchrec-side tokenize --config configs/ml100k/tokenizer_fused_dpca.yaml [key=value ...]
    torchrec-side tokenize --config configs/ml100k/tokenizer_fused_rq.yaml train.epochs=50 train.seed=1
    torchrec-side tokenize --config configs/ml100k/tokenizer_fused_dpca.yaml --print-config

The run folder ``<output_dir>/<name>`` receives::

    config.yaml          the resolved config
    train_log.jsonl      one JSON record per epoch: every loss term, train and validation
    tokenizer/           the frozen artifact (Tokenizer.load)
    sid_table.parquet    item_id -> packed SID and codes
    stats.json           held-out reconstruction, target metrics, codebook health, bits
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from torchrec_side.config import ConfigError, config_to_yaml, load_config, save_config
from torchrec_side.errors import TorchRecSideError
from torchrec_side.io import check_own_folder, write_json
from torchrec_side.tokenizer.config import TokenizeJobConfig

__all__ = ["tokenize_main", "run_tokenize"]


#: What a tokenizer run folder holds: nothing else may sit in a folder ``tokenize`` writes into.
RUN_FILES = frozenset({"config.yaml", "train_log.jsonl", "tokenizer", "sid_table.parquet", "stats.json"})


def run_tokenize(job: TokenizeJobConfig, echo: bool = True) -> Dict[str, Any]:
    """Trains the tokenizer of ``job`` and writes its run folder (see module docstring).

    Args:
        job: the resolved :class:`~torchrec_side.tokenizer.config.TokenizeJobConfig`.
        echo: print a short summary.

    Returns:
        ``{"run_dir", "stats", "train": {...}}``.
    """
    from torchrec_side.tokenizer.artifact import Tokenizer, make_codec
    from torchrec_side.tokenizer.data import load_items_for
    from torchrec_side.tokenizer.sid_table import build_sid_table, summary_lines, tokenizer_stats, write_sid_table
    from torchrec_side.tokenizer.trainer import train_tokenizer

    run_dir = Path(job.output_dir) / job.name
    check_own_folder(run_dir, RUN_FILES, "tokenizer run")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(job, run_dir / "config.yaml")
    t0 = time.time()
    items = load_items_for(job.data, job.model)
    t_data = time.time() - t0
    res = train_tokenizer(job.model, job.train, items, log_path=run_dir / "train_log.jsonl")
    codec = make_codec(res.model.radices, job.codec)
    train_summary = {
        "warmup_epochs": sum(1 for r in res.history if r.get("phase") == "warmup"),
        "epochs_run": sum(1 for r in res.history if r.get("phase") == "train"),
        "best_epoch": res.best_epoch,
        "stopped_early": res.stopped_early,
        "train_seconds": round(res.seconds, 2),
        "data_seconds": round(t_data, 2),
        "num_train_items": int(res.train_index.numel()),
        "num_heldout_items": int(res.val_index.numel()),
    }
    tok = Tokenizer(res.model, codec, metadata={"run": job.name, "data": items.info, "train": train_summary})
    # Everything is computed before anything is written, and each file is written atomically;
    # the three outputs carry the tokenizer's fingerprint so a mixed folder is detectable.
    table = build_sid_table(tok, items)
    stats = tokenizer_stats(tok, items, res.val_index, table)
    stats["training"] = train_summary
    stats["data"] = items.info
    stats["heldout_item_ids"] = items.item_ids[res.val_index].tolist()
    tok.save(run_dir / "tokenizer")
    write_sid_table(run_dir / "sid_table.parquet", table)
    write_json(run_dir / "stats.json", stats)
    if echo:
        print(f"tokenizer {job.name}: {tok!r}")
        print(
            f"trained {train_summary['warmup_epochs']} warm-up + {train_summary['epochs_run']} epochs in {train_summary['train_seconds']:.1f}s "
            f"(best epoch {res.best_epoch}{', early stop' if res.stopped_early else ''}) "
            f"on {train_summary['num_train_items']} items, {train_summary['num_heldout_items']} held out"
        )
        for line in summary_lines(stats):
            print(line)
        print(f"run folder: {run_dir}")
    return {"run_dir": str(run_dir), "stats": stats, "train": train_summary}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torchrec-side tokenize",
        description="Train a VQ-fusion Semantic-ID tokenizer; write artifact, SID table and statistics.",
        epilog="Overrides: dotted keys of the config, e.g. train.epochs=50 model.bottleneck.num_levels=32 name=run1",
    )
    p.add_argument("--config", "-c", type=str, default=None, help="YAML config (TokenizeJobConfig)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return p


def tokenize_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``torchrec-side tokenize``; returns the process exit code.

    Example::

        tokenize_main(["--config", "configs/ml100k/tokenizer_fused_dpca.yaml", "train.epochs=5"])
    """
    args = _parser().parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        job = load_config(TokenizeJobConfig, args.config, args.overrides)
    except ConfigError as e:
        print(f"torchrec-side tokenize: config error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(config_to_yaml(job), end="")
        return 0
    try:
        run_tokenize(job)
    except KeyboardInterrupt:
        print("torchrec-side tokenize: interrupted; the previous artifact (if any) is unchanged", file=sys.stderr)
        return 130
    except TorchRecSideError as e:  # bad input: a folder it may not write into, a bad artifact
        print(f"torchrec-side tokenize: {e}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
        print(f"torchrec-side tokenize: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(tokenize_main())
