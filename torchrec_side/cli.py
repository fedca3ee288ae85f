"""The ``torchrec-side`` command.

    torchrec-side fetch                                   # MovieLens-100K files into the cache
    torchrec-side quantize --method dpca --bits 64 --out runs/q/dpca.safetensors
    torchrec-side tokenize --config configs/ml100k/tokenizer_fused_dpca.yaml [key=value ...]
    torchrec-side train --config configs/ml100k/dlrm_sparse_id.yaml [--seeds 0,1] [key=value ...]
    torchrec-side demo --out runs/demo [--quick]          # the main job: every variant, report
    torchrec-side report runs/demo                        # report.md / report.json / plots

Multi-process training goes through TorchX (see torchrec_side/components.py):

    torchx run -s local_cwd torchrec_side/components.py:train --nproc 2 -- --config CONFIG
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import List, Optional


def _quantize(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="torchrec-side quantize", description="Fit a quantizer on the MovieLens-100K MiniLM item vectors and save it.")
    p.add_argument("--method", choices=["dpca", "dpca_alloc", "rq"], default="dpca")
    p.add_argument("--bits", type=int, default=64, help="bit budget per item")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="path of the .safetensors quantizer artifact")
    args = p.parse_args(argv)

    from torchrec_side.data import load_items
    from torchrec_side.quantizers import DPCA, RQKMeans, RQKMeansConfig

    x = load_items().text_vectors.float()
    if args.method == "rq":
        if args.bits % 8:
            p.error("--method rq needs --bits divisible by 8 (256-code levels)")
        q = RQKMeans(RQKMeansConfig(radices=[256] * (args.bits // 8), seed=args.seed))
    elif args.method == "dpca":
        q = DPCA.ternary(int(math.floor(args.bits / math.log2(3) + 1e-9)), seed=args.seed)
    else:
        q = DPCA.for_bits(x, args.bits, seed=args.seed)
    q.fit(x)
    codes = q.encode(x)
    q.save(args.out)
    s = q.stats(codes)
    print(
        f"{type(q).__name__}: {q.num_levels} levels, {q.bits_per_item:.1f} bits/item, "
        f"{s.distinct_sids} distinct SIDs over {s.num_items} items "
        f"(collision rate {s.collision_rate:.4f}); saved {args.out}"
    )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"fetch", "quantize", "tokenize", "train", "demo", "report"}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__)
        return 0 if (not argv or argv[0] in ("-h", "--help")) else 2
    cmd, rest = argv[0], argv[1:]
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
    if cmd == "demo":
        from torchrec_side.pipeline import pipeline_main

        return pipeline_main(rest)
    from torchrec_side.report import report_main

    return report_main(rest)


if __name__ == "__main__":
    sys.exit(main())
