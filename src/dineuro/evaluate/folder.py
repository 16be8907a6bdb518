"""Score a folder of predicted masks against gold masks: one row per stack, a summary, tables.

Predictions are what ``predict`` writes, per stack ``NAME_mask.tif`` and/or ``NAME_prob.tif``
(see :mod:`dineuro.evaluate.predictions`). Without a threshold the mask is scored as written
(the map, at 0.5, only where there is no mask); with one, the map is re-thresholded (the mask
only where there is no map). Each row names the file it scored.

Gold is either a dataset folder (see :mod:`dineuro.data.dataset`; masks from ``labels/`` or
rendered from ``swc/``) or a plain folder of ``NAME.tif`` masks. HD95 is in x/y voxels, the unit
neuron segmentation papers report, with anisotropy honoured: distances along z are scaled by the
gold's z / x spacing ratio (the dataset's stack, or the mask file). A stack with a prediction
but no gold, or gold but no prediction, is kept as a row marked missing; an empty prediction is
scored (Dice 0, HD95 inf) and noted.

When ``pred_dir`` also holds traced ``NAME.swc`` files (``dineuro run`` writes them), each is
compared with its gold SWC (:mod:`dineuro.evaluate.traces`; raw SWC units, z not scaled, as
Vaa3D's neuron_distance and ``dineuro compare``) and the table gains ESA, DSA, PDS, F1 and
hairiness ratio columns (length precision and recall in the CSV); stacks lacking either SWC are
noted there.
Without traced SWCs the table is the segmentation table alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from dineuro.data.dataset import IMAGES, LABELS, SPLIT_FILE, SPLITS, SWC, open_dataset
from dineuro.defaults import DEFAULT_THRESHOLD
from dineuro.errors import InputError
from dineuro.evaluate import voxels
from dineuro.evaluate.predictions import find_predictions, read_prediction
from dineuro.evaluate.tables import MeanStd, mean_std, plus_minus, write_csv
from dineuro.evaluate.traces import (
    DEFAULT_SWC_THRESHOLD,
    EMPTY_TRACE,
    TraceScore,
    find_gold_swcs,
    find_traces,
    score_trace,
)
from dineuro.io.atomic import atomic_file, refuse_existing, undo_on_failure
from dineuro.io.volume import Volume, read_volume

GOLD_EXTENSIONS = (".tif", ".tiff")
CSV_NAME, MARKDOWN_NAME = "metrics.csv", "metrics.md"
CSV_COLUMNS = ("name", "prediction", "dice", "hd95", "precision", "recall", "pred_voxels",
               "gold_voxels", "spacing_z", "spacing_y", "spacing_x", "note")
#: Inserted before "note" when traces are scored; precision and recall there are of SWC length.
TRACE_CSV_COLUMNS = ("trace", "esa", "dsa", "pds", "swc_precision", "swc_recall", "swc_f1",
                     "swc_hairiness_ratio")

#: Reads one stack's gold: ((boolean mask, (z, y, x) spacing), the file to name in errors).
GoldReader = Callable[[], tuple[Volume, Path]]

NO_GOLD, NO_PREDICTION = "no gold", "no prediction"
EMPTY_PREDICTION, EMPTY_GOLD = "empty prediction", "empty gold"


@dataclass(frozen=True)
class StackScore:
    """The scores of one stack; the metric fields are None when the stack is missing.

    Parameters
    ----------
    name : str
        The stack's name.
    prediction : str
        File name of the prediction used ("" when there is none).
    dice, hd95, precision, recall : float or None
        See :mod:`dineuro.evaluate.voxels`; hd95 in spacing units.
    pred_voxels, gold_voxels : int or None
        Foreground voxel counts.
    spacing : tuple of 3 float or None
        (z, y, x) voxel size the HD95 was measured with.
    note : str
        "" or what is special: empty prediction/gold, no gold, no prediction.
    trace : TraceScore, optional
        The traced SWC's scores, or None when the table scores no traces.
    """

    name: str
    prediction: str
    dice: float | None
    hd95: float | None
    precision: float | None
    recall: float | None
    pred_voxels: int | None
    gold_voxels: int | None
    spacing: tuple[float, float, float] | None
    note: str
    trace: TraceScore | None = None

    @property
    def scored(self) -> bool:
        return self.dice is not None


@dataclass(frozen=True)
class TraceSummary:
    """Aggregates over the stacks whose traced SWC was scored against a gold SWC.

    Parameters
    ----------
    n_scored : int
        Stacks with both SWCs (empty traces included).
    n_missing : int
        Stacks lacking the trace or the gold SWC (not in any mean).
    n_empty : int
        Scored stacks whose trace is empty: in the recall and F1 means (as 0), not in the others,
        which they have no value for.
    esa, dsa, pds, precision, recall, f1 : MeanStd
        See :class:`~dineuro.evaluate.traces.TraceScore`.
    hairiness_ratio : MeanStd
        Over the scored stacks whose trees both have length (not the empty traces).
    """

    n_scored: int
    n_missing: int
    n_empty: int
    esa: MeanStd
    dsa: MeanStd
    pds: MeanStd
    precision: MeanStd
    recall: MeanStd
    f1: MeanStd
    hairiness_ratio: MeanStd


@dataclass(frozen=True)
class Summary:
    """Aggregates over the scored stacks.

    Parameters
    ----------
    n_scored : int
        Stacks with both prediction and gold.
    n_missing : int
        Stacks with only one of them (not in any mean).
    n_empty_prediction : int
        Scored stacks whose prediction is empty (in every mean: Dice 0).
    dice, precision, recall : MeanStd
        Over all scored stacks.
    hd95 : MeanStd
        Over the scored stacks with a finite HD95 only.
    n_hd95_infinite : int
        Scored stacks left out of ``hd95`` (one mask empty).
    traces : TraceSummary, optional
        The reconstruction scores' aggregates, or None when no traces were scored.
    """

    n_scored: int
    n_missing: int
    n_empty_prediction: int
    dice: MeanStd
    hd95: MeanStd
    n_hd95_infinite: int
    precision: MeanStd
    recall: MeanStd
    traces: TraceSummary | None = None


@dataclass(frozen=True)
class EvaluationTable:
    """Per-stack scores in name order, and the thresholds :func:`evaluate_folder` was given.

    ``swc_threshold`` is None when no traces were scored (the rows' ``trace`` is None then).
    """

    rows: tuple[StackScore, ...]
    threshold: float | None
    swc_threshold: float | None = None

    @property
    def scored(self) -> list[StackScore]:
        return [row for row in self.rows if row.scored]

    @property
    def missing(self) -> list[StackScore]:
        return [row for row in self.rows if not row.scored]

    def summary(self) -> Summary:
        scored = self.scored
        hd = [row.hd95 for row in scored]
        return Summary(
            n_scored=len(scored), n_missing=len(self.missing),
            n_empty_prediction=sum(row.pred_voxels == 0 for row in scored),
            dice=mean_std(row.dice for row in scored), hd95=mean_std(hd),
            n_hd95_infinite=sum(not math.isfinite(d) for d in hd),
            precision=mean_std(row.precision for row in scored),
            recall=mean_std(row.recall for row in scored),
            traces=None if self.swc_threshold is None else self._trace_summary())

    def _trace_summary(self) -> TraceSummary:
        traces = [row.trace for row in self.rows]
        scored = [trace for trace in traces if trace.scored]
        traced = [trace for trace in scored if trace.note != EMPTY_TRACE]
        return TraceSummary(
            n_scored=len(scored), n_missing=len(traces) - len(scored),
            n_empty=len(scored) - len(traced),
            esa=mean_std(t.esa for t in traced), dsa=mean_std(t.dsa for t in traced),
            pds=mean_std(t.pds for t in traced),
            precision=mean_std(t.precision for t in traced),
            recall=mean_std(t.recall for t in scored), f1=mean_std(t.f1 for t in scored),
            hairiness_ratio=mean_std(t.hairiness_ratio for t in traced
                                     if t.hairiness_ratio is not None))


def names_in_split(gold: str | os.PathLike, split: str) -> list[str] | None:
    """The stacks of ``split`` when ``gold`` is a dataset folder (``dineuro synth``'s layout),
    else None: every stack of the folder is scored.

    Parameters
    ----------
    gold : str or os.PathLike
        The gold folder given to :func:`evaluate_folder`.
    split : str
        "train", "val", "test", or "all" (None: every stack).

    Raises
    ------
    InputError
        Another split name, for a dataset folder.
    """
    gold = Path(gold)
    if split == "all" or not (gold / IMAGES).is_dir() or not (gold / SPLIT_FILE).exists():
        return None
    if split not in SPLITS:
        raise InputError(f"--split should be one of {', '.join(SPLITS)} or all, not {split!r}.")
    return open_dataset(gold).split()[split]


def evaluate_folder(pred_dir: str | os.PathLike, gold: str | os.PathLike,
                    threshold: float | None = None, names: Sequence[str] | None = None,
                    on_stack: Callable[[str], None] | None = None,
                    swc_threshold: float = DEFAULT_SWC_THRESHOLD) -> EvaluationTable:
    """Score every prediction in ``pred_dir`` against its gold mask, and traces against SWCs.

    Parameters
    ----------
    pred_dir : str or os.PathLike
        Folder of ``NAME_mask.tif`` and/or ``NAME_prob.tif`` files.
    gold : str or os.PathLike
        A dataset folder (has ``images/``) or a folder of ``NAME.tif`` masks.
    threshold : float, optional
        None to score each ``_mask.tif`` as written (a ``_prob.tif`` only where there is no mask, at
        p > 0.5); a number in [0, 1] to score each ``_prob.tif`` at p > threshold instead (a
        ``_mask.tif`` only where there is no map).
    names : sequence of str, optional
        The stacks to evaluate (e.g. a dataset's test split); by default every name that has a
        prediction, a trace or a gold mask. Listed names lacking either prediction or gold are
        missing rows.
    on_stack : callable, optional
        Called with each name once its row is done (for progress display).
    swc_threshold : float, optional
        Distance in SWC units for the reconstruction scores (see :mod:`dineuro.evaluate.traces`),
        used when ``pred_dir`` holds ``NAME.swc`` traces.

    Returns
    -------
    EvaluationTable
        The table, one row per name, sorted by name.

    Raises
    ------
    InputError
        A folder is missing or holds nothing usable, no name has both prediction and gold, a
        prediction is not a binary mask or probability map, or its shape differs from its gold, an
        SWC is invalid or lies entirely outside its stack, a gold SWC has no nodes, or
        ``swc_threshold`` is not positive.

    Examples
    --------
    >>> table = evaluate_folder("runs/tubular/predictions", "data/synth")  # doctest: +SKIP
    >>> csv_path, md_path = write_tables(table, "runs/tubular/eval")  # doctest: +SKIP
    """
    if threshold is not None and not 0 <= threshold <= 1:
        raise InputError(f"threshold should be in [0, 1], got {threshold}.")
    if not (math.isfinite(swc_threshold) and swc_threshold > 0):
        raise InputError(f"swc_threshold should be a positive number of SWC units, got "
                         f"{swc_threshold}.")
    pred_dir, gold = Path(pred_dir), Path(gold)
    predictions = find_predictions(pred_dir, prefer_prob=threshold is not None)
    traces = find_traces(pred_dir)
    gold_readers = _gold_readers(gold)
    gold_swcs = find_gold_swcs(gold, gold_readers) if traces else {}
    wanted = sorted(set(predictions) | set(traces) | set(gold_readers) if names is None
                    else set(names))
    if not any(name in predictions and name in gold_readers for name in wanted):
        raise InputError(f"has no prediction whose name matches a gold mask in {gold} (e.g. "
                         f"{_examples(predictions)} vs {_examples(gold_readers)}).", pred_dir)
    rows = []
    for name in wanted:
        rows.append(_score_name(name, predictions.get(name), gold_readers.get(name),
                                DEFAULT_THRESHOLD if threshold is None else threshold,
                                traces.get(name), gold_swcs.get(name),
                                swc_threshold if traces else None))
        if on_stack is not None:
            on_stack(name)
    return EvaluationTable(rows=tuple(rows),
                           threshold=None if threshold is None else float(threshold),
                           swc_threshold=float(swc_threshold) if traces else None)


def _score_name(name: str, prediction: Path | None, read_gold: GoldReader | None,
                threshold: float, trace: Path | None, gold_swc: Path | None,
                swc_threshold: float | None) -> StackScore:
    """The row of one stack: its prediction against its gold mask (or a missing row) and, when
    the table scores traces (``swc_threshold`` given), its trace against its gold SWC.

    The gold is read once, also for a trace without a prediction: both SWCs are checked against
    its shape, as an SWC outside the stack is the wrong file, not a complete miss. (A gold SWC
    always comes with a gold reader: :func:`find_gold_swcs` looks only for those names.)
    """
    needs_gold = prediction is not None or (swc_threshold is not None
                                            and None not in (trace, gold_swc))
    gold = read_gold() if read_gold is not None and needs_gold else None
    if prediction is None or gold is None:
        row = _missing_row(name, prediction, read_gold is not None)
    else:
        row = _score_files(name, prediction, gold, threshold)
    if swc_threshold is None:
        return row
    shape = None if gold is None else gold[0].array.shape
    return replace(row, trace=score_trace(trace, gold_swc, swc_threshold, shape))


def _score_files(name: str, prediction: Path, gold: tuple[Volume, Path],
                 threshold: float) -> StackScore:
    (gold_mask, spacing), gold_path = gold
    pred_mask = read_prediction(prediction, threshold)
    if pred_mask.shape != gold_mask.shape:
        raise InputError(f"has shape {pred_mask.shape} but its gold {gold_path} has shape "
                         f"{gold_mask.shape}.", prediction)
    return score_stack(name, prediction.name, pred_mask, gold_mask, spacing)


def score_stack(name: str, prediction: str, pred: np.ndarray, gold: np.ndarray,
                spacing: tuple[float, float, float]) -> StackScore:
    """One row of the table from two boolean (z, y, x) masks and the (z, y, x) spacing."""
    pred_voxels, gold_voxels = int(np.count_nonzero(pred)), int(np.count_nonzero(gold))
    empty = [label for label, count in ((EMPTY_PREDICTION, pred_voxels),
                                        (EMPTY_GOLD, gold_voxels)) if count == 0]
    return StackScore(
        name=name, prediction=prediction, dice=voxels.dice(pred, gold),
        hd95=voxels.hd95(pred, gold, xy_voxel_units(spacing)),
        precision=voxels.precision(pred, gold), recall=voxels.recall(pred, gold),
        pred_voxels=pred_voxels, gold_voxels=gold_voxels,
        spacing=tuple(float(s) for s in spacing), note=", ".join(empty))


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
            f"{s.n_scored} stacks with both SWCs{empty}.")


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
                      swc_recall=t.recall, swc_f1=t.f1, swc_hairiness_ratio=t.hairiness_ratio,
                      note=_row_note(row))
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


def _missing_row(name: str, prediction: Path | None, has_gold: bool) -> StackScore:
    note = ", ".join(what for what, missing in ((NO_PREDICTION, prediction is None),
                                                (NO_GOLD, not has_gold)) if missing)
    return StackScore(name=name, prediction="" if prediction is None else prediction.name,
                      dice=None, hd95=None, precision=None, recall=None, pred_voxels=None,
                      gold_voxels=None, spacing=None, note=note)


def xy_voxel_units(spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    """(z, y, x) spacing rescaled so that one x voxel is one unit."""
    return tuple(float(s) / float(spacing[2]) for s in spacing)


def _gold_readers(gold: Path) -> dict[str, GoldReader]:
    """A reader per stack name of the gold at ``gold`` (dataset or folder of masks)."""
    if (gold / IMAGES).is_dir():
        return _dataset_readers(gold)
    if not gold.is_dir():
        raise InputError("is neither a dataset folder nor a folder of NAME.tif gold masks.",
                         gold)
    paths = {_stem(p): p for p in sorted(gold.iterdir())
             if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() in GOLD_EXTENSIONS}
    if not paths:
        raise InputError("has no NAME.tif gold masks (and no images/ folder of a dataset).",
                         gold)

    def read(path: Path) -> tuple[Volume, Path]:
        volume = read_volume(path)
        return Volume(volume.array != 0, volume.spacing), path

    return {name: (lambda path=path: read(path)) for name, path in paths.items()}


def _dataset_readers(root: Path) -> dict[str, GoldReader]:
    """Stacks of a dataset folder that have a label mask or an SWC to render one from."""
    dataset = open_dataset(root)

    def read(name: str) -> tuple[Volume, Path]:
        image = dataset.image(name)
        return Volume(dataset.label(name, image), image.spacing), dataset.images[name]

    def has_gold(name: str) -> bool:
        return ((root / LABELS / f"{name}.tif").exists()
                or (root / SWC / f"{name}.swc").exists())

    return {name: (lambda name=name: read(name)) for name in dataset.names if has_gold(name)}


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)]


def _examples(names: Iterable[str], count: int = 3) -> str:
    return ", ".join(sorted(names)[:count]) or "none"
