"""A scored folder written as ``metrics.csv`` (one row per stack) and ``metrics.md`` (for people).

The CSV keeps every number at full precision, with the (z, y, x) spacing each HD95 was measured
with; the Markdown rounds them, adds a mean ± std row (:mod:`dineuro.evaluate.tables`, as the
transfer ablation averages) and notes saying what the means leave out and how the scores were
made (the threshold, HD95's unit, the reconstruction scores' distance), so that it says what
its numbers mean when read alone. When the table scored traced SWCs, both gain ESA, DSA,
PDS, F1 and hairiness ratio columns (length precision, also with a dataset's unlabelled
neurites set aside, and recall in the CSV only); otherwise they are the segmentation table
alone.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from pathlib import Path

from dineuro.defaults import DEFAULT_THRESHOLD
from dineuro.evaluate.folder import EvaluationTable, StackScore, Summary, TraceSummary
from dineuro.evaluate.tables import plus_minus, write_csv
from dineuro.io.atomic import atomic_file, refuse_existing, undo_on_failure

CSV_NAME, MARKDOWN_NAME = "metrics.csv", "metrics.md"
CSV_COLUMNS = ("name", "prediction", "dice", "hd95", "precision", "recall", "pred_voxels",
               "gold_voxels", "spacing_z", "spacing_y", "spacing_x", "note")
#: Inserted before "note" when traces are scored; precision and recall there are of SWC length.
TRACE_CSV_COLUMNS = ("trace", "esa", "dsa", "pds", "swc_precision",
                     "swc_precision_unlabelled_aside", "swc_recall", "swc_f1",
                     "swc_hairiness_ratio")


def write_tables(table: EvaluationTable, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``metrics.csv`` (one row per stack) and ``metrics.md`` (with a summary row).

    With scored traces the CSV has :data:`TRACE_CSV_COLUMNS` before its note. Both files are
    written atomically; neither may exist yet (checked before writing either), and if the
    second cannot be written the first is removed again.

    Returns
    -------
    tuple of 2 Path
        The CSV and Markdown paths.
    """
    out_dir = Path(out_dir)
    csv_path, md_path = (refuse_existing(out_dir / name) for name in (CSV_NAME, MARKDOWN_NAME))
    with undo_on_failure(csv_path, md_path):
        traced = table.swc_threshold is not None
        write_csv(csv_path, _csv_columns(traced), (_csv_row(row, traced) for row in table.rows))
        with atomic_file(md_path) as tmp:
            tmp.write_text(markdown_table(table))
    return csv_path, md_path


def markdown_table(table: EvaluationTable) -> str:
    """The table as Markdown: one row per stack, then a mean ± std row, then notes.

    With scored traces, ESA, DSA, PDS, F1 and hairiness ratio columns come before the note.
    """
    s = table.summary()
    header = ["stack", "prediction", "Dice", "HD95", "precision", "recall", "pred voxels",
              "gold voxels"]
    align = ["---", "---"] + ["---:"] * (len(header) - 2)
    trace_totals = ""
    if s.traces is not None:
        header += ["ESA", "DSA", "PDS", "F1", "hairiness ratio"]
        align += ["---:"] * 5
        trace_totals = (f" {plus_minus(s.traces.esa, 2)} | {plus_minus(s.traces.dsa, 2)} "
                        f"| {plus_minus(s.traces.pds, 3)} | {plus_minus(s.traces.f1, 3)} "
                        f"| {plus_minus(s.traces.hairiness_ratio, 2)} |")
    lines = [
        _markdown_cells([*header, "note"]), "|" + "|".join([*align, "---"]) + "|",
        *(_markdown_row(row, s.traces is not None) for row in table.rows),
        f"| **mean ± std** ({s.n_scored} stacks) | | {plus_minus(s.dice, 3)} "
        f"| {plus_minus(s.hd95, 2)} | {plus_minus(s.precision, 3)} | {plus_minus(s.recall, 3)} "
        f"| | |{trace_totals} "
        f"{_summary_note(s)} |",
        "",
        "HD95 is in x/y voxels, z distances scaled by the z/x spacing ratio"
        + (f"; its mean and std leave out {s.n_hd95_infinite} infinite value(s) (empty masks)"
           if s.n_hd95_infinite else "") + f". {_threshold_note(table.threshold)}",
    ]
    if s.traces is not None:
        lines.append(_trace_note(s.traces, table.swc_threshold))
    return "\n".join(lines) + "\n"


def _trace_note(s: TraceSummary, threshold: float) -> str:
    empty = (f"; {s.n_empty} empty trace(s) count as recall and F1 0 and have no distances"
             if s.n_empty else "")
    return (f"ESA, DSA, PDS and F1 compare each traced NAME.swc with its gold SWC in SWC units "
            f"(voxels), as Vaa3D's neuron_distance: ESA and DSA are mean distances, PDS the "
            f"fraction of points at least {threshold:g} from the other tree, F1 of the lengths "
            f"within {threshold:g} of it; the hairiness ratio is the trace's terminal tips per "
            f"100 units of length over the gold's (above 1: spurious spurs). Means over the "
            f"{s.n_scored} stacks with both SWCs{empty}.{_median_note(s)}")


def _median_note(s: TraceSummary) -> str:
    if s.hairiness_median is None:
        return ""
    return (f" The hairiness ratio's median over the stacks, which one outlying stack moves "
            f"less than the mean, is {s.hairiness_median:.2f}.")


def _threshold_note(threshold: float | None) -> str:
    if threshold is None:
        return (f"Masks scored as written; probability maps (only where there is no mask) at "
                f"p > {DEFAULT_THRESHOLD:g}.")
    return (f"Probability maps scored at p > {threshold:g}; masks only where there is no "
            f"map.")


def _csv_columns(traced: bool) -> tuple[str, ...]:
    return (*CSV_COLUMNS[:-1], *TRACE_CSV_COLUMNS, CSV_COLUMNS[-1]) if traced else CSV_COLUMNS


def _csv_row(row: StackScore, traced: bool) -> list:
    values = {f.name: getattr(row, f.name) for f in fields(row)}
    spacing = values.pop("spacing") or (None, None, None)
    values.update(spacing_z=spacing[0], spacing_y=spacing[1], spacing_x=spacing[2])
    if traced:
        t = row.trace
        values.update(trace=t.trace, esa=t.esa, dsa=t.dsa, pds=t.pds, swc_precision=t.precision,
                      swc_precision_unlabelled_aside=t.labelled_precision, swc_recall=t.recall,
                      swc_f1=t.f1, swc_hairiness_ratio=t.hairiness_ratio, note=_row_note(row))
    return [values[c] for c in _csv_columns(traced)]


def _markdown_row(row: StackScore, traced: bool) -> str:
    cells = [row.name, row.prediction, _fmt(row.dice, 3), _fmt(row.hd95, 2),
             _fmt(row.precision, 3), _fmt(row.recall, 3), _fmt(row.pred_voxels),
             _fmt(row.gold_voxels)]
    if traced:
        t = row.trace
        cells += [_fmt(t.esa, 2), _fmt(t.dsa, 2), _fmt(t.pds, 3), _fmt(t.f1, 3),
                  _fmt(t.hairiness_ratio, 2)]
    return _markdown_cells([*cells, _row_note(row)])


def _markdown_cells(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", r"\|") for cell in cells) + " |"


def _row_note(row: StackScore) -> str:
    notes = [row.note, "" if row.trace is None else row.trace.note]
    return ", ".join(note for note in notes if note)


def _summary_note(s: Summary) -> str:
    counts = [(s.n_empty_prediction, "empty prediction(s)"), (s.n_hd95_infinite, "infinite HD95"),
              (s.n_missing, "missing")]
    if s.traces is not None:
        counts += [(s.traces.n_empty, "empty trace(s)"), (s.traces.n_missing, "without SWC score")]
    return ", ".join(f"{count} {what}" for count, what in counts if count)


def _fmt(value: float | int | None, decimals: int = 0) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return "inf" if math.isinf(value) else f"{value:.{decimals}f}"
