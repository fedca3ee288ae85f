# pyre-strict
"""``report.md``: a pure function of the :class:`~torchrec_side.report.analysis.Analysis` (and the
plot files written), one function per section; no file reading, no statistics."""

from __future__ import annotations

from typing import Any, List, Mapping, Sequence

from torchrec_side.report._format import ci_list, ci_of, num
from torchrec_side.report.analysis import (ABLATION_COLUMNS, ABLATION_ROWS, PERMUTED_SIDE, Analysis, Ceiling,
                                           ControlWorld, Protocol, VariantRow)
from torchrec_side.report.targets import ratio_target

__all__ = ["render", "PLOTS"]

#: The plot files, in the report's order, with their alt text.
PLOTS = (("ne_gain.png", "NE gain with 95% intervals"), ("gain_by_item_freq.png", "gain by item frequency"),
         ("oracle_share.png", "share of the oracle's gain"),
         ("gain_vs_ceilings.png", "NE gain against the ceilings"), ("bytes_per_event.png", "bytes per event"))

_TITLE = {"movielens": "MovieLens-100K", "simulated": "simulated ads world",
          "id_dominant": "simulated ads world, id-only term dominant (control world)"}


def render(a: Analysis, plots: Sequence[str] = ()) -> str:
    """The markdown report of ``a``; ``plots`` are the plot files written beside it."""
    L: List[str] = _header(a) + _variants(a)
    L.append(_protocol_table(a.rows, a.protocol))
    L += _side_vs_traditional(a)
    for section in (_ablation(a), _sequence(a)):
        if section:
            L.append("")
            L += section
    L += _slices(a) + _targets(a) + _failed_and_warnings(a)
    for png, alt in PLOTS:
        if png in plots:
            L += ["", f"![{alt}]({png})"]
    L.append("")
    return "\n".join(L) + "\n"


def control_line(cw: ControlWorld, kind: str) -> str:
    """The report's opening line: the control world's verdict, and what it gates."""
    pt = cw.sparse_over_side
    measured = (f"sparse-ID over SIDE {pt:+.3f}% {ci_list(cw.sparse_over_side_ci95)}" if pt is not None
                else str(cw.measured))
    where = "this world" if kind == "id_dominant" else f"`{cw.source}`" if cw.source else "none linked"
    text = (f"**Control world verdict: {cw.verdict}** ({where}): {measured}. The control world (the id-only term "
            f"dominates) must show sparse-ID beating SIDE, separated, or the instrument cannot show SIDE losing.")
    if kind == "simulated" and cw.verdict != "passed":
        text += " This world's SIDE claims are therefore **not validated**."
    elif kind == "movielens":
        text += " (It gates the simulated worlds; MovieLens is real data.)"
    return text


def _header(a: Analysis) -> List[str]:
    rec, st = a.pipeline, a.statistics
    assert a.control_world is not None
    L = [f"# torchrec-side benchmark report: {_TITLE[a.kind]} (`{a.world}`)"
         f"{' — QUICK RUN (not the benchmark)' if a.quick else ''}", "", control_line(a.control_world, a.kind), ""]
    if a.quick:
        L += ["**Quick mode**: fewer variants, seeds and epochs than the benchmark; the numbers below are a "
              "smoke test, not evidence. Run `torchrec-side demo --out runs/demo` for the full job.", ""]
    seeds = list(rec.seeds) if rec.seeds is not None else None
    L += [f"Seeds {seeds}, {rec.epochs} epoch(s), {rec.nproc} ranks (TorchX local_cwd). "
          f"NE/AUC on the **test** split; each run is scored with the model of its best validation epoch "
          f"(nothing is selected on test). NE gain = (NE_control - NE_variant) / NE_control in %, paired by seed. "
          f"Intervals: 95% percentile intervals of a paired bootstrap over {st.units} "
          f"({st.n_boot} replicates, level `{st.level}`; events are not independent units: a user's rows "
          f"share the user, an item's rows share the item; one resample per replicate shared by every run), "
          f"docs/design.md section 7b. \"not separated\": the interval covers 0. "
          f"Bytes per event: history as the model consumes it (int64 KJT values; raw content counted as 384 fp16).",
          ""]
    w = rec.world
    rep = getattr(w, "target_in_history", None)
    if rep is not None and rep.share is not None:
        L += [f"**Repeat exposure**: {100 * rep.share:.1f}% of {rep.impressions} sampled test impressions "
              f"have their item in the user's history window (last {rep.max_history} events; "
              f"{rep.mean_count_when_in:.1f} times on average), CTR {100 * rep.ctr_in:.2f}% for those "
              f"against {100 * rep.ctr_not_in:.2f}% for the others. A path that maps the target and the "
              f"history through one fixed function (SIDE, raw content with `target: true`) can count such "
              f"repeats; separate learned target and history rows cannot.", ""]
    if st.paired_seeds < 10:
        L += [f"**Seeds**: {st.paired_seeds} paired seed(s); docs/design.md section 7b asks for at least 10.", ""]
    if st.runs_without_predictions:
        miss = ", ".join(f"{v}/seed{s}" for v, s in st.runs_without_predictions)
        L += [f"**Predictions missing** for {len(st.runs_without_predictions)} run(s) ({miss}): every number "
              f"involving them uses the seed-level test NE of `metrics.json` (bootstrap over seeds only, "
              f"level \"seeds\"), and no slice includes them.", ""]
    if st.runs_compared:
        L += [f"Check: test NE recomputed from the predictions differs from `metrics.json` by at most "
              f"{st.max_abs_diff:.2e} over {st.runs_compared} run(s).", ""]
    sw = rec.epoch_sweep
    if sw is not None and sw.to_dict():
        per_epoch = [round(x, 5) for x in sw.mean_val_ne_per_epoch or ()]
        L += [f"Epoch count chosen on validation ({sw.rule}): mean val NE per epoch {per_epoch} -> {sw.epochs} "
              f"epoch(s).", ""]
    return L


def _share_cell(e: Any) -> str:
    return f"{num(e.point, '{:.3f}')} {ci_of(e, '{:.3f}')}" if e is not None and e.point is not None else "–"


def _variant_cells(r: VariantRow, a: Analysis) -> List[str]:
    control = a.cfg.control
    gv = r.gain_vs_traditional
    gain_txt = ("0 (reference)" if r.variant == control else
                f"{num(r.ne_gain_pct_mean, '{:+.3f}')} {ci_of(r.gain)}")
    verdict = r.gain.verdict if r.gain is not None else None
    cells = [r.variant, str(r.arch), str(len(r.seeds)),
             ",".join(str(b) for b in sorted({b for b in r.best_epochs.values() if b is not None})) or "n/a",
             f"{num(r.ne_mean, '{:.5f}')} ± {num(r.ne_std, '{:.5f}')}", gain_txt,
             (verdict or "–") if r.variant != control else "–",
             (f"{num(gv.point, '{:+.3f}')} {ci_of(gv)} ({gv.verdict})" if gv is not None and gv.point is not None
              else "–")]
    if a.oracle_share is not None:
        cells.append(_share_cell(r.oracle_share))
    if a.ceiling_share is not None:
        cells.append(_share_cell(r.ceiling_share))
    cells += [num(r.auc_mean), num(r.bytes_per_event, "{:.0f}"), num(r.file_bytes_per_event, "{:.2f}"),
              str(r.learned_params) if r.learned_params is not None else "n/a",
              num(r.train_examples_per_s, "{:.0f}")]
    return cells


def _variants(a: Analysis) -> List[str]:
    head = ("| variant | arch | seeds | best epoch | test NE mean ± std | NE gain % [95% CI] | vs 0 | "
            "gain over trad. SID % [95% CI] |" + (" oracle share [95% CI] |" if a.oracle_share is not None else "")
            + (" content-ceiling share [95% CI] |" if a.ceiling_share is not None else "")
            + " AUC | bytes/event (consumed) | bytes/event (file) | learned params | train ex/s |")
    L = ["## Variants", "", head, "|" + " --- |" * (head.count("|") - 1)]
    L += ["| " + " | ".join(_variant_cells(r, a)) + " |" for r in a.rows]
    og = a.oracle_gain
    if a.ceilings:
        L += ["", ceilings_line(a.ceilings)]
    elif og is not None:
        L += ["", f"Oracle (true click probabilities): NE gain over control {num(og.point, '{:+.3f}')}% {ci_of(og)}."]
    L.append("")
    described = {v.name: v.description for v in a.pipeline.variants}
    L += [f"- **{r.variant}**: {described[r.variant]}" for r in a.rows if described.get(r.variant)]
    L.append("")
    return L


def ceilings_line(ceilings: Sequence[Ceiling]) -> str:
    """``Ceilings (NE gain over control): content ..., content + item ..., id ..., oracle ...``."""
    words = {"content": "content", "content_item": "content + item posterior", "id": "id", "oracle": "oracle"}
    parts = [f"{words[c.key]} {num(c.gain.point if c.gain else None, '{:+.3f}')}% {ci_of(c.gain)} "
             f"(NE {num(c.ne, '{:.5f}')})" for c in ceilings]
    return ("Ceilings, NE gain over control % [95% CI] (docs/design.md section 7c; exact for the content "
            "ceiling, approximate for the id ceiling): " + "; ".join(parts) + ". The content-ceiling share "
            "is a variant's gain / the content ceiling's gain, same resamples.")


def _protocol_table(rows: Sequence[VariantRow], protocol: Protocol) -> str:
    """The protocol, each variant's best validation epoch per seed and the setting tuning chose."""
    grid = protocol.tuning_settings
    grid_txt = ("; ".join(f"`{k}` ({', '.join(v) or 'as shipped'})" for k, v in grid.items())
                if grid else "none (every variant at its config as shipped)")
    at_cap = protocol.best_epoch_at_cap
    L = ["## Training protocol", "",
         f"Every run: at most {protocol.max_epochs} epochs, validation after each, early stop after "
         f"{protocol.patience} epochs without a better validation NE, "
         f"test scored with the best validation epoch. Tuning grid, the same for every variant (control "
         f"included; one seed, validation only): {grid_txt}. Runs whose best epoch was the last allowed "
         f"(more epochs might have helped): {len(at_cap)} of {protocol.runs}"
         + (f" ({', '.join(at_cap[:12])}{', ...' if len(at_cap) > 12 else ''})" if at_cap else "") + ".",
         "", "Best validation epoch of each seed (the model scored on test) and the "
         "setting chosen on validation with one seed (`tune_and_train`; \"not tuned\": this world ran one "
         "setting).", "", "| variant | best epoch per seed | tuned setting |", "| --- | --- | --- |"]
    for r in rows:
        epochs = ", ".join(f"s{s}: {'n/a' if b is None else b}" for s, b in r.best_epochs.items()) or "n/a"
        tu = r.tuned
        if tu is None:
            tuned = "not tuned"
        else:
            ov = tu.overrides or ()
            tuned = f"`{tu.setting}`" + (f" ({', '.join(str(o) for o in ov)})" if ov else "")
        L.append(f"| {r.variant} | {epochs} | {tuned} |")
    return "\n".join(L) + "\n"


def _side_vs_traditional(a: Analysis) -> List[str]:
    cfg, cw = a.cfg, a.control_world
    L = ["## SIDE vs traditional SID", ""]
    if a.kind == "simulated" and cw is not None and cw.verdict != "passed":
        L += [f"**Not validated**: the control world's verdict is {cw.verdict} "
              f"(see the top), so the SIDE results below are not validated.", ""]
    r = a.ratio
    if r.ratio is not None:
        L.append(f"`side_vs_traditional_ne_gain` = {r.ratio:.2f} (SIDE {r.side_gain:+.3f}% / "
                 f"traditional {r.traditional_gain:+.3f}%); 95% interval {ci_list(r.ci, '{:.2f}')}"
                 + (f" ({r.status})" if r.status not in (None, "ok") else "")
                 + f"; level: {r.level if r.level is not None else 'seeds'}.")
    else:
        L.append(f"No meaningful ratio: {r.note}.")
    con = r.contrast
    if con is not None:
        L += ["", f"Contrast SIDE gain - {ratio_target().threshold:g} x traditional gain: "
                  f"{num(con.point, '{:+.3f}')} points {ci_of(con)} ({con.verdict} from 0)."]
    p = a.pairs.get(f"{cfg.side}_over_{cfg.traditional}")
    if p is not None and p.point is not None:
        w = f", interval width {p.width:.3f} points" if p.width is not None else ""
        L += ["", f"NE gain of SIDE over traditional SID: {p.point:+.3f}% {ci_of(p)}: **{p.verdict}**{w}."]
    p = a.pairs.get(f"{cfg.side}_over_{PERMUTED_SIDE}")
    if p is not None and p.point is not None:
        L += ["", f"NE gain of SIDE over SIDE on permuted SIDs (the same codes dealt to random items): "
                  f"{p.point:+.3f}% {ci_of(p)}, **{p.verdict}**: the part of SIDE's gain that "
                  f"needs each SID to describe its own item's content; the rest is what fixed per-item codes give "
                  f"(identity, repeat exposure)."]
    L += ["", "Undefined ratios: when the denominator's point gain is not positive the ratio is not reported; when "
              "its 95% interval covers 0 the point ratio is given without an interval (the replicate ratios are "
              "unbounded); the contrast above is always defined."]
    return L


def _ablation(a: Analysis) -> List[str]:
    """The 3 x 2 tokenizer x embedding grid and its contrasts; empty when none of the cells beyond
    ``traditional_sid`` and ``side`` ran (the grid would say nothing new)."""
    extra = {v for _, _, cells in ABLATION_ROWS for v in cells} - {"traditional_sid", "side"}
    if not any(c.gain is not None for c in a.ablation_grid if c.variant in extra):
        return []
    L = ["## Tokenizer x embedding ablation", "",
         "NE gain over control, % [95% CI] (same resamples as the variant table), of each tokenizer (rows) "
         "under each embedding (columns); 'not run': the cell's variant was not trained in this world.", "",
         "| tokenizer | " + " | ".join(lab for _, lab in ABLATION_COLUMNS) + " |",
         "|" + " --- |" * (1 + len(ABLATION_COLUMNS))]
    for key, label, _ in ABLATION_ROWS:
        cells = [f"`{c.variant}` not run" if c.gain is None or c.gain.point is None else
                 f"`{c.variant}` {c.gain.point:+.3f} {ci_of(c.gain)}" for c in a.ablation_grid if c.row == key]
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    L += ["", "SIDE's lead over traditional SID, step by step along the grid: the paired NE gain of each step's variant "
          "over its reference (% of the reference's NE), and the difference of their gains over control (points; "
          "the three add up to SIDE's gain minus traditional SID's).", "",
          "| step | isolates | pair | paired NE gain % [95% CI] | verdict | points [95% CI] |",
          "| --- | --- | --- | --- | --- | --- |"]
    for c in a.ablation_contrasts:
        g, pts = c.gain, c.points
        if g is None or g.point is None:
            L.append(f"| {c.key} | {c.isolates} | `{c.pair}` | not run | – | – |")
            continue
        ptxt = f"{pts.point:+.3f} {ci_of(pts)}" if pts is not None and pts.point is not None else "n/a"
        L.append(f"| {c.key} | {c.isolates} | `{c.pair}` | {g.point:+.3f} {ci_of(g)} | {g.verdict} | {ptxt} |")
    return L


def _sequence(a: Analysis) -> List[str]:
    """The paired gain of each sequence pair that ran; empty when none ran."""
    if not a.sequence:
        return []
    L = ["## Sequence models", "",
         "Paired NE gain of the target-attention (DIN) variants over the pooled (DLRM) variant with the same "
         "history feature, and of the DIN variants against each other (% of the reference's NE, same "
         "resamples as the variant table). The world's users are multi-interest (docs/design.md section 7c), "
         "so attending to the events near the target can beat averaging them; DIN reads only the last "
         "`model.max_events` events of each history, DLRM the whole window.", "",
         "| variant | over | paired NE gain % [95% CI] | verdict |", "| --- | --- | --- | --- |"]
    L += [f"| `{s.variant}` | `{s.reference}` | {s.gain.point:+.3f} {ci_of(s.gain)} | {s.gain.verdict} |"
          for s in a.sequence]
    return L


def _slice_tables(a: Analysis, fs: Mapping[str, Any], oracle: bool) -> List[str]:
    """One slice family's tables (:func:`torchrec_side.eval.slices.slice_report`'s JSON)."""
    bk = fs["buckets"]
    vs = [r.variant for r in a.rows if any(r.variant in (b.get("ne") or {}) for b in bk.values())]
    orc = ["oracle"] if oracle else []
    L = ["", "NE gain over control, % [95% CI] (NE below):", "",
         "| bucket | rows | users | " + " | ".join(vs) + " |", "|" + " --- |" * (3 + len(vs))]
    for b, s in bk.items():
        cells = [b, str(s.get("rows")), str(s.get("users"))]
        for v in vs:
            ne = num((s.get("ne") or {}).get(v), "{:.4f}")
            if v == a.cfg.control:
                cells.append(f"NE {ne}")
                continue
            e = (s.get("gain") or {}).get(v) or {}
            cells.append(f"{num(e.get('point'), '{:+.2f}')} {ci_list(e.get('ci95'), '{:+.2f}')}<br>NE {ne}")
        L.append("| " + " | ".join(cells) + " |")
    L += ["", "AUC:", "", "| bucket | " + " | ".join(vs) + (" | oracle |" if oracle else " |"),
          "|" + " --- |" * (1 + len(vs) + len(orc))]
    for b, s in bk.items():
        au = s.get("auc") or {}
        L.append("| " + " | ".join([b] + [num(au.get(v)) for v in vs + orc]) + " |")
    if any(s.get("mean_pred") for s in bk.values()):
        L += ["", "Calibration, mean predicted click probability in % (the bucket's click rate first): a bucket "
                  "whose predictions sit far from its rate loses NE even when it ranks well.", "",
              "| bucket | click rate | " + " | ".join(vs) + (" | oracle |" if oracle else " |"),
              "|" + " --- |" * (2 + len(vs) + len(orc))]
        for b, s in bk.items():
            mp = s.get("mean_pred") or {}
            rate = s.get("positive_rate")
            cells = [b, num(None if rate is None else 100.0 * rate, "{:.2f}")]
            cells += [num(None if mp.get(v) is None else 100.0 * mp[v], "{:.2f}") for v in vs + orc]
            L.append("| " + " | ".join(cells) + " |")
    return L


def _slices(a: Analysis) -> List[str]:
    if not a.slices:
        return []
    L = ["", "## Slices"]
    for fam, title in (("item_freq", "target-item training frequency"), ("hist_len", "history length")):
        fs = a.slices.get(fam)
        if not fs:
            continue
        L += ["", f"### By {title}", "",
              f"{fs.get('definition')}" + (f"; cuts {fs.get('cuts')}; ranked over {fs.get('source')}"
                                          if fam == "item_freq" else "") + "."]
        L += _slice_tables(a, fs, a.oracle_share is not None)
    return L


def _targets(a: Analysis) -> List[str]:
    L = ["", "## docs/design.md section 8 targets", "",
         "`met` is judged on the measured point estimate; `95% interval clears` says whether the interval also "
         "lies on the same side of the line.", "", "| target | measured | met | 95% interval clears |",
         "| --- | --- | --- | --- |"]
    for t in a.targets:
        met = "n/a" if t.met is None else ("met" if t.met else "**not met**")
        if t.validated is False and t.met is not None:
            met += " (**not validated**: control world)"
        conf = "n/a" if t.confident is None else ("yes" if t.confident else "no")
        L.append(f"| {t.target} | {t.measured} | {met} | {conf} |")
    return L


def _failed_and_warnings(a: Analysis) -> List[str]:
    L: List[str] = []
    if a.pipeline.failed:
        L += ["", "## Failed runs"]
        L += [f"- {f.variant}: seeds {list(f.seeds)} (exit {f.returncode}), log {f.log}" for f in a.pipeline.failed]
    if a.warnings:
        L += ["", "## Warnings"] + [f"- {w}" for w in a.warnings]
    return L
