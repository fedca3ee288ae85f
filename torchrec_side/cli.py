"""The ``torchrec-side`` command.

    torchrec-side fetch                                   # MovieLens-100K files into the cache
    torchrec-side quantize --method dpca --bits 64 --out runs/q/dpca.safetensors
    torchrec-side tokenize --config ml100k/tokenizer_fused_dpca [key=value ...]   # packaged config or a file
    torchrec-side train --config ml100k/dlrm_sparse_id [--seeds 0,1] [key=value ...]
    torchrec-side demo --world all --out runs/demo [--quick]   # the main job: both worlds, one report each
    torchrec-side report runs/demo/ml100k                 # report.md / report.json / plots of one world
    torchrec-side world --size quick --out runs/world     # the simulated ads world [key=value ...]
    torchrec-side export RUN --out DIR                    # a trained run -> torch.export inference folder
    torchrec-side predict RUN --input requests.parquet --out scores.parquet   # (or --from-store test)

Multi-process training goes through TorchX (see torchrec_side/components.py):

    torchx run -s local_cwd torchrec_side/components.py:train --nproc 2 -- --config CONFIG
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from torchrec_side.errors import TorchRecSideError

if TYPE_CHECKING:
    from torchrec_side.sid.codec import SIDCodec


#: Largest ``--bits`` of ``torchrec-side quantize``: a SID is one int64 (docs/design.md section 5),
#: 8 RQ levels of 256 codes or 40 ternary DPCA digits.
MAX_QUANTIZE_BITS: int = 64


class _UsageError(Exception):
    """A bad ``torchrec-side quantize`` argument; printed as one line, exit status 2."""


def _codec_for(radices: List[int]) -> "SIDCodec":
    """The SID layout the tokenizer would pick (byte-grouped, else mixed radix); ValueError if neither packs."""
    from torchrec_side.sid.codec import SIDCodec

    try:
        return SIDCodec.byte_grouped(radices)
    except ValueError:
        return SIDCodec.mixed_radix(radices)


def _check_quantize_args(method: str, bits: int, seed: int, out: str) -> None:
    """Validates ``torchrec-side quantize`` arguments before any data is loaded; raises _UsageError."""
    if bits < 1 or bits > MAX_QUANTIZE_BITS:
        raise _UsageError(
            f"--bits {bits}: must be between 1 and {MAX_QUANTIZE_BITS} (a SID is packed into one int64)"
        )
    if method == "rq" and bits % 8:
        raise _UsageError(f"--bits {bits}: --method rq needs a multiple of 8 (levels of 256 codes)")
    if method == "dpca" and bits < 2:
        raise _UsageError(f"--bits {bits}: --method dpca needs at least 2 (one ternary digit is 1.585 bits)")
    if seed < 0:
        raise _UsageError(f"--seed {seed}: must be >= 0")
    path = Path(out)
    if not out or out.endswith(("/", os.sep)) or path.is_dir():
        raise _UsageError(f"--out {out}: names a folder; give the path of a .safetensors file inside it")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise _UsageError(f"--out {out}: {parent} is a file, not a folder")
            break


def _quantize(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="torchrec-side quantize", description="Fit a quantizer on the MovieLens-100K MiniLM item vectors and save it.")
    p.add_argument("--method", choices=["dpca", "dpca_alloc", "rq"], default="dpca")
    p.add_argument("--bits", type=int, default=64, help=f"bit budget per item, 1..{MAX_QUANTIZE_BITS} (rq: a multiple of 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="path of the .safetensors quantizer artifact (a file, not a folder)")
    p.add_argument("--overwrite", action="store_true", help="replace --out even when it is not a quantizer file")
    args = p.parse_args(argv)
    try:
        _check_quantize_args(args.method, args.bits, args.seed, args.out)
    except _UsageError as e:
        print(f"torchrec-side quantize: error: {e}", file=sys.stderr)
        return 2

    from torchrec_side.data import load_items
    from torchrec_side.io import ArtifactError, check_file_replaceable, tensors_metadata
    from torchrec_side.quantizers import DPCA, RQKMeans, RQKMeansConfig
    from torchrec_side.quantizers.base import FORMAT

    try:  # before fitting: an existing file that is not a quantizer is the user's, not ours to replace
        check_file_replaceable(args.out, "a quantizer file", lambda f: tensors_metadata(f).get("format") == FORMAT,
                               overwrite=args.overwrite)
    except ArtifactError as e:
        print(f"torchrec-side quantize: error: {e}", file=sys.stderr)
        return 2

    x = load_items().text_vectors.float()
    if args.method == "rq":
        q = RQKMeans(RQKMeansConfig(radices=[256] * (args.bits // 8), seed=args.seed))
    elif args.method == "dpca":
        q = DPCA.ternary(int(math.floor(args.bits / math.log2(3) + 1e-9)), seed=args.seed)
    else:
        q = DPCA.for_bits(x, args.bits, seed=args.seed)
    try:
        _codec_for(q.radices)  # before fitting: the SID must pack into one int64
    except ValueError as e:
        print(f"torchrec-side quantize: error: --bits {args.bits}: levels {q.radices} do not pack into one int64: {e}", file=sys.stderr)
        return 2
    print(f"fitting {type(q).__name__} ({q.num_levels} levels, {q.bits_per_item:.1f} bits) on {x.shape[0]} items ...", file=sys.stderr)
    q.fit(x)
    codes = q.encode(x)
    try:
        q.save(args.out)
    except (OSError, ArtifactError) as e:
        print(f"torchrec-side quantize: error: cannot write --out {args.out}: {e}", file=sys.stderr)
        return 1
    s = q.stats(codes)
    print(
        f"{type(q).__name__}: {q.num_levels} levels, {q.bits_per_item:.1f} bits/item, "
        f"{s.distinct_sids} distinct SIDs over {s.num_items} items "
        f"(collision rate {s.collision_rate:.4f}); saved {args.out}"
    )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``torchrec-side COMMAND ...``; returns the exit status.

    Bad input a command did not already report (any :class:`~torchrec_side.errors.TorchRecSideError`,
    a missing or unreadable file, a malformed JSON / Parquet / YAML file: ``OSError`` and
    ``ValueError``) becomes one line on stderr and status 2, without a traceback;
    ``TORCHREC_SIDE_TRACEBACK=1`` re-raises it. Ctrl-C is status 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"fetch", "quantize", "tokenize", "train", "demo", "report", "world", "export", "predict"}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__)
        return 0 if (not argv or argv[0] in ("-h", "--help")) else 2
    try:
        return _run(argv[0], argv[1:])
    except KeyboardInterrupt:
        print(f"torchrec-side {argv[0]}: interrupted", file=sys.stderr)
        return 130
    except (TorchRecSideError, OSError, ValueError) as e:
        if os.environ.get("TORCHREC_SIDE_TRACEBACK") == "1":
            raise
        text = " ".join(str(e).split()) or repr(e)
        print(f"torchrec-side {argv[0]}: error: {type(e).__name__}: {text}", file=sys.stderr)
        return 2


def _run(cmd: str, rest: List[str]) -> int:
    if cmd == "fetch":
        from torchrec_side.data.fetch import main as fetch_main

        return fetch_main(rest)
    if cmd == "quantize":
        return _quantize(rest)
    if cmd == "tokenize":
        from torchrec_side.tokenizer.cli import tokenize_main

        return tokenize_main(rest)
    if cmd == "train":
        from torchrec_side.train.cli import train_main

        return train_main(rest)
    if cmd == "world":
        from torchrec_side.data.adsworld import world_main

        return world_main(rest)
    if cmd == "export":
        from torchrec_side.serving.cli import export_main

        return export_main(rest)
    if cmd == "predict":
        from torchrec_side.serving.cli import predict_main

        return predict_main(rest)
    if cmd == "demo":
        from torchrec_side.experiments import demo_main

        return demo_main(rest)
    from torchrec_side.report import report_main

    return report_main(rest)


if __name__ == "__main__":
    sys.exit(main())
