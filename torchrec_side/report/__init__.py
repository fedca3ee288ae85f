# pyre-strict
"""``torchrec-side report RUN``: the benchmark report of one world's demo folder.

The package: :mod:`~torchrec_side.records` (typed ``metrics.json``, ``pipeline.json`` and
``train_throughput.json``, written by the trainer and the driver), :mod:`~torchrec_side.report.inputs`
(the read step), :mod:`~torchrec_side.report.analysis` (:func:`analyse` -> a typed :class:`Analysis`),
:mod:`~torchrec_side.report.targets` (docs/design.md section 8 targets as data, one judging rule),
:mod:`~torchrec_side.report.markdown` and :mod:`~torchrec_side.report.plots` (pure renderers; matplotlib,
the ``[report]`` extra, is imported only to draw) and :mod:`~torchrec_side.report.cli`
(:func:`write_report`, :func:`report_main`).

Reads ``RUN/pipeline.json`` (variants, their run folders, the mode, optionally the world), every
run's ``metrics.json`` and, where the trainer wrote it, ``predictions_test.parquet``
(:mod:`torchrec_side.eval.predictions`). Writes ``RUN/report.json``, ``RUN/report.md`` and the
plots ``ne_gain.png`` (gain with 95% intervals per variant), ``gain_by_item_freq.png``,
``oracle_share.png`` (worlds with an oracle), ``gain_vs_ceilings.png`` (worlds that store their
ceilings: each variant's gain with the content, content + item, id and oracle gains as lines) and
``bytes_per_event.png``.

Definitions (docs/design.md sections 7, 7b and 8):

* NE is the **test** NE of each run (scored with the model of its best validation epoch; nothing
  is selected on test). NE gain of variant v for seed s: ``100 * (NE_control[s] - NE_v[s]) /
  NE_control[s]``; a variant's gain is the mean over the seeds it shares with control.
* Intervals: the paired bootstrap of :mod:`torchrec_side.eval.stats`: seeds, and test users and
  test items independently (two-way, Owen's pigeonhole bootstrap; users only with
  ``ReportConfig(resample_items=False)``), resampled with replacement, one resample per replicate
  shared by all runs; 95% percentile intervals; "not separated" where an interval covers zero.
  ``statistics.level`` names the units (``"seeds x users x items"``). Runs without predictions
  enter at seed level (bootstrap over seeds only), and the report says which.
* ``side_vs_traditional_ne_gain``: SIDE's gain / traditional SID's gain, same resamples; undefined
  cases as documented in :mod:`torchrec_side.eval.stats`. The ">= 2.4x" target is judged on the
  point ratio and shown with the interval of the contrast ``gain_SIDE - 2.4 gain_traditional``.
* ``oracle_share`` (worlds with ``p_true``): a variant's gain / the oracle's gain (the oracle scores
  every impression with its true click probability).
* ``ceilings`` and ``ceiling_share`` (worlds that store their ceilings, docs/design.md section 7c):
  every reference column the predictions carry (``p_content``, ``p_content_item``, ``p_id``,
  ``p_true``) is scored as a pseudo-variant (``ceiling_content``, ...), paired and resampled like
  a variant; ``ceilings`` gives each one's NE and NE gain over control, a row's ``ceiling_share`` is
  its gain / the content ceiling's gain. Older worlds, stores and predictions without the columns
  report no ceilings.
* ``control_world``: ``verdict`` ``passed`` when sparse-ID beats SIDE, separated, in the control
  world (id-only term dominant; its own report, or the one ``pipeline.json``'s ``control_world``
  names), ``failed`` when measured otherwise, ``missing`` without one. The markdown opens with it;
  in a simulated world every SIDE target is marked "not validated" (``validated: false``) unless
  it passed.
* per row: ``best_epochs`` (each seed's best validation epoch) and ``tuned`` (the setting
  ``tune_and_train`` chose, from ``pipeline.json``; None when the world was not tuned).
* ``protocol``: ``max_epochs``, ``patience``, the tuning grid (``tuning_settings``, ``tuning_seed``;
  None when not tuned), ``runs`` and ``best_epoch_at_cap`` (the runs, ``variant sN``, whose best
  validation epoch was the last allowed).
* Slices: :mod:`torchrec_side.eval.slices` (item training frequency head/torso/tail/cold and
  history length).
* bytes per event: the history as the TorchRec model consumes it (int64 KJT values: 8 for a packed
  SID or an item id; 8 per prefix-ngram token and SID; raw content counted as 384 fp16 = 768),
  summed over the variant's history features; the measured file sizes are reported alongside.

Example::

    torchrec-side report runs/demo
    torchrec-side report runs/adsworld --world adsworld --n-boot 2000
"""

from __future__ import annotations

from torchrec_side.report.analysis import (ABLATION_COLUMNS, ABLATION_CONTRASTS, ABLATION_ROWS, CEILING_KEYS,
                                           PERMUTED_SIDE, SEQUENCE_PAIRS, WORLD_KINDS, Analysis, ControlWorld,
                                           ReportConfig, VariantRow, analyse, control_world_verdict,
                                           side_vs_traditional, summarize, world_kind)
from torchrec_side.report.cli import build, report_main, write_report
from torchrec_side.report.inputs import ITEM_COUNTS_FILE, ReportInputs, collect
from torchrec_side.records import PipelineRecord, RecordError, RunRecord, ThroughputRecord
from torchrec_side.report.targets import TARGETS, Target, TargetLine

__all__ = ["ReportConfig", "collect", "summarize", "side_vs_traditional", "analyse", "write_report", "build",
           "control_world_verdict", "report_main", "world_kind", "Analysis", "ControlWorld", "VariantRow",
           "ReportInputs", "PipelineRecord", "RunRecord", "ThroughputRecord", "RecordError", "Target", "TargetLine",
           "TARGETS", "ITEM_COUNTS_FILE", "ABLATION_ROWS", "ABLATION_COLUMNS", "ABLATION_CONTRASTS", "SEQUENCE_PAIRS",
           "PERMUTED_SIDE", "CEILING_KEYS", "WORLD_KINDS"]
