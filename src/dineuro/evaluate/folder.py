"""Score a folder of predicted masks against gold masks: one row per stack and a summary.

Predictions are what ``predict`` writes, per stack ``NAME_mask.tif`` and/or ``NAME_prob.tif``
(see :mod:`dineuro.evaluate.predictions`). Without a threshold the mask is scored as written
(the map, at 0.5, only where there is no mask); with one, the map is re-thresholded (the mask
only where there is no map). Each row names the file it scored.

Gold is a dataset folder or a plain folder of ``NAME.tif`` masks (see
:mod:`dineuro.evaluate.gold`). HD95 is in x/y voxels, the unit neuron segmentation papers
report, with anisotropy honoured: distances along z are scaled by the gold's z / x spacing ratio
(the dataset's stack, or the mask file). A stack with a prediction but no gold, or gold but no
prediction, is kept as a row marked missing; an empty prediction is scored (Dice 0, HD95 inf)
and noted.

When ``pred_dir`` also holds traced ``NAME.swc`` files (``dineuro run`` writes them), each is
compared with its gold SWC (:mod:`dineuro.evaluate.traces`; raw SWC units, z not scaled, as
Vaa3D's neuron_distance and ``dineuro compare``) and each row gains its
:class:`~dineuro.evaluate.traces.TraceScore`; stacks lacking either SWC are noted there.
:mod:`dineuro.evaluate.metrics_files` writes the table as ``metrics.csv`` and ``metrics.md``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dineuro.defaults import DEFAULT_THRESHOLD
from dineuro.errors import InputError
from dineuro.evaluate import voxels
from dineuro.evaluate.gold import GoldReader, gold_readers
from dineuro.evaluate.predictions import find_predictions, read_prediction
from dineuro.evaluate.tables import MeanStd, mean_std
from dineuro.evaluate.traces import (
    DEFAULT_SWC_THRESHOLD,
    EMPTY_TRACE,
    TraceScore,
    find_gold_swcs,
    find_traces,
    find_unlabelled_swcs,
    score_trace,
)
from dineuro.io.volume import Volume

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
    hairiness_median : float or None
        The median of the same ratios (None without any): one stack whose trace is a few dozen
        voxels of noise can have a ratio of 7, and one whose gold is a dense arbor of hundreds
        of twigs a ratio of 0.2, and either moves a mean over a dozen stacks by half a unit.
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
    hairiness_median: float | None


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
        ratios = [t.hairiness_ratio for t in traced if t.hairiness_ratio is not None]
        return TraceSummary(
            n_scored=len(scored), n_missing=len(traces) - len(scored),
            n_empty=len(scored) - len(traced),
            esa=mean_std(t.esa for t in traced), dsa=mean_std(t.dsa for t in traced),
            pds=mean_std(t.pds for t in traced),
            precision=mean_std(t.precision for t in traced),
            recall=mean_std(t.recall for t in scored), f1=mean_std(t.f1 for t in scored),
            hairiness_ratio=mean_std(ratios),
            hairiness_median=float(np.median(ratios)) if ratios else None)


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
    readers = gold_readers(gold)
    gold_swcs = find_gold_swcs(gold, readers) if traces else {}
    unlabelled = find_unlabelled_swcs(gold, gold_swcs)
    wanted = sorted(set(predictions) | set(traces) | set(readers) if names is None
                    else set(names))
    if not any(name in predictions and name in readers for name in wanted):
        raise InputError(f"has no prediction whose name matches a gold mask in {gold} (e.g. "
                         f"{_examples(predictions)} vs {_examples(readers)}).", pred_dir)
    rows = []
    for name in wanted:
        rows.append(_score_name(name, predictions.get(name), readers.get(name),
                                DEFAULT_THRESHOLD if threshold is None else threshold,
                                traces.get(name), gold_swcs.get(name),
                                swc_threshold if traces else None, unlabelled.get(name)))
        if on_stack is not None:
            on_stack(name)
    return EvaluationTable(rows=tuple(rows),
                           threshold=None if threshold is None else float(threshold),
                           swc_threshold=float(swc_threshold) if traces else None)


def _score_name(name: str, prediction: Path | None, read_gold: GoldReader | None,
                threshold: float, trace: Path | None, gold_swc: Path | None,
                swc_threshold: float | None, unlabelled: Path | None = None) -> StackScore:
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
    return replace(row, trace=score_trace(trace, gold_swc, swc_threshold, shape, unlabelled))


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


def _missing_row(name: str, prediction: Path | None, has_gold: bool) -> StackScore:
    note = ", ".join(what for what, missing in ((NO_PREDICTION, prediction is None),
                                                (NO_GOLD, not has_gold)) if missing)
    return StackScore(name=name, prediction="" if prediction is None else prediction.name,
                      dice=None, hd95=None, precision=None, recall=None, pred_voxels=None,
                      gold_voxels=None, spacing=None, note=note)


def xy_voxel_units(spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    """(z, y, x) spacing rescaled so that one x voxel is one unit."""
    return tuple(float(s) / float(spacing[2]) for s in spacing)


def _examples(names: Iterable[str], count: int = 3) -> str:
    return ", ".join(sorted(names)[:count]) or "none"
