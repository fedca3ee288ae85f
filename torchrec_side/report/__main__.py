# pyre-strict
"""``python -m torchrec_side.report RUN``: :func:`torchrec_side.report.report_main`."""

import sys

from torchrec_side.report import report_main

sys.exit(report_main())
