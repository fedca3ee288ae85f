"""``python -m torchrec_side.train [--config PATH] [key=value ...]`` (what torchrun / TorchX run)."""

import sys

from torchrec_side.train.cli import train_main

sys.exit(train_main())
