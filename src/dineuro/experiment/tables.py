"""The ablation tables: a row per transfer (and teacher) over seeds, and a row per run.

``ablation.csv`` and ``ablation.md`` summarise each transfer over its seeds, with the paired
comparison against scratch; ``runs.csv`` holds each run's own numbers, for statistics of one's
own (paired tests, other experiments).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dineuro.evaluate.tables import MeanStd, mean_std, plus_minus, write_csv
from dineuro.experiment.config import ExperimentConfig
from dineuro.experiment.results import RunResult, named_teachers
from dineuro.io.atomic import atomic_file

CSV_NAME, MARKDOWN_NAME, RUNS_CSV_NAME = "ablation.csv", "ablation.md", "runs.csv"
#: runs.csv: one row per run, the numbers ablation.csv summarises over seeds.
RUN_CSV_COLUMNS = ("transfer", "teacher", "seed", "dice", "hd95", "empty_predictions",
                   "hd95_infinite", "stacks", "train_seconds", "steps", "run")
CSV_COLUMNS = ("transfer", "seeds", "dice_mean", "dice_std", "hd95_mean", "hd95_std",
               "dice_vs_scratch_mean", "dice_vs_scratch_std", "seeds_above_scratch",
               "train_seconds", "steps", "empty_predictions", "hd95_infinite", "stacks")
#: ablation.csv with named teachers: a row per (transfer, teacher), scratch's teacher empty.
TEACHER_CSV_COLUMNS = (CSV_COLUMNS[0], "teacher", *CSV_COLUMNS[1:])


@dataclass(frozen=True)
class TransferRow:
    """One row of ablation.csv: a transfer (with one of the named teachers) over its seeds.

    Dice and HD95 are the mean and population std (ddof=0) over seeds of each run's mean over
    the evaluation stacks; a run's HD95 mean leaves out infinite values (an empty mask), which
    ``hd95_infinite`` counts. nan when undefined.

    ``dice_vs_scratch_*`` is the paired comparison: a run's Dice minus that of the scratch run
    of the same seed, mean and std over the seeds both have, and ``seeds_above_scratch`` counts
    the seeds where the difference is positive. Runs of one seed draw the same training crops
    in the same order, so the pairing removes what the seed alone changes, which on small
    budgets can be larger than what the transfer changes. nan (and 0) for scratch itself and
    when the experiment trains no scratch run.

    Attributes
    ----------
    transfer : str
        The transfer.
    seeds : int
        How many seeds (runs) the row summarises.
    dice_mean, dice_std : float
        Dice over seeds.
    hd95_mean, hd95_std : float
        HD95 over seeds, in x/y voxels.
    dice_vs_scratch_mean, dice_vs_scratch_std : float
        Dice minus scratch's of the same seed, over seeds.
    seeds_above_scratch : int
        Seeds where the transfer's Dice is above scratch's.
    train_seconds : float
        Mean wall-clock training seconds per run.
    steps : int
        The most optimizer steps of a run.
    empty_predictions : int
        Empty predicted masks, summed over seeds.
    hd95_infinite : int
        Stacks with an infinite HD95, summed over seeds.
    stacks : int
        The most stacks scored in a run.
    teacher : str or None
        The teacher's name with named teachers; None otherwise and for scratch.
    """

    transfer: str
    seeds: int
    dice_mean: float
    dice_std: float
    hd95_mean: float
    hd95_std: float
    dice_vs_scratch_mean: float
    dice_vs_scratch_std: float
    seeds_above_scratch: int
    train_seconds: float
    steps: int
    empty_predictions: int
    hd95_infinite: int
    stacks: int
    teacher: str | None = None


def ablation_rows(runs: Sequence[RunResult], config: ExperimentConfig
                  ) -> tuple[TransferRow, ...]:
    """The rows of ablation.csv: one per transfer of ``config`` and each of its teachers.

    Parameters
    ----------
    runs : sequence of RunResult
        Every run of the experiment; scratch's are the baseline of the paired columns.
    config : ExperimentConfig
        The experiment, for the order of the rows.

    Returns
    -------
    tuple of TransferRow
        In the order of ``config.transfers``, then of the teachers.
    """
    scratch = {run.seed: run.table.summary().dice.mean for run in runs
               if run.transfer == "scratch"}
    return tuple(_transfer_row(transfer, teacher, [r for r in runs if r.transfer == transfer
                                                   and r.teacher == teacher], scratch)
                 for transfer in config.transfers for teacher in config.teacher_names(transfer))


def _transfer_row(transfer: str, teacher: str | None, runs: list[RunResult],
                  scratch: Mapping[int, float]) -> TransferRow:
    """``scratch``: the scratch runs' mean Dice by seed, the baseline of the paired columns."""
    summaries = [run.table.summary() for run in runs]
    dice = mean_std(s.dice.mean for s in summaries)
    hd95 = mean_std(s.hd95.mean for s in summaries)
    by_seed = {run.seed: s.dice.mean for run, s in zip(runs, summaries, strict=True)}
    paired = (math.nan, math.nan, 0) if transfer == "scratch" else \
        paired_difference(by_seed, scratch)
    return TransferRow(
        transfer=transfer, seeds=len(runs), dice_mean=dice.mean, dice_std=dice.std,
        hd95_mean=hd95.mean, hd95_std=hd95.std, dice_vs_scratch_mean=paired[0],
        dice_vs_scratch_std=paired[1], seeds_above_scratch=paired[2],
        train_seconds=float(np.mean([r.train_seconds for r in runs])),
        steps=max(r.steps for r in runs),
        empty_predictions=sum(s.n_empty_prediction for s in summaries),
        hd95_infinite=sum(s.n_hd95_infinite for s in summaries),
        stacks=max(s.n_scored for s in summaries), teacher=teacher)


def paired_difference(values: Mapping[int, float], baseline: Mapping[int, float]
                      ) -> tuple[float, float, int]:
    """Differences to a baseline paired by seed: mean, std and how many are positive.

    Parameters
    ----------
    values : Mapping of int to float
        A value (a run's Dice) by seed.
    baseline : Mapping of int to float
        The baseline's value by seed.

    Returns
    -------
    tuple of (float, float, int)
        Mean and std (ddof=0) of ``values[seed] - baseline[seed]`` over the seeds where both
        are finite, and how many of those differences are positive; (nan, nan, 0) when none are.

    Examples
    --------
    >>> mean, std, above = paired_difference({0: 0.7, 1: 0.6, 2: 0.9}, {0: 0.6, 1: 0.6})
    >>> round(mean, 3), round(std, 3), above
    (0.05, 0.05, 1)
    """
    differences = [values[seed] - baseline[seed] for seed in values
                   if seed in baseline and math.isfinite(values[seed])
                   and math.isfinite(baseline[seed])]
    mean, std = mean_std(differences)
    return mean, std, sum(d > 0 for d in differences)


def write_ablation_tables(rows: Sequence[TransferRow], out: str | os.PathLike,
                          config: ExperimentConfig | None = None) -> tuple[Path, Path]:
    """Write ``ablation.csv`` and ``ablation.md`` into ``out``, atomically.

    The CSV has full-precision numbers, empty where undefined. With named teachers it has a
    ``teacher`` column (:data:`TEACHER_CSV_COLUMNS`), empty for scratch, and a row per
    (transfer, teacher): tidy, one observation per row. Earlier versions are replaced.

    Parameters
    ----------
    rows : sequence of TransferRow
        The rows (:func:`ablation_rows`).
    out : str or os.PathLike
        The experiment folder.
    config : ExperimentConfig, optional
        The experiment, for the notes under the Markdown table.

    Returns
    -------
    tuple of Path
        The CSV and Markdown paths.
    """
    out = Path(out)
    csv_path, md_path = out / CSV_NAME, out / MARKDOWN_NAME
    columns = TEACHER_CSV_COLUMNS if named_teachers(rows) else CSV_COLUMNS
    write_csv(csv_path, columns, ([getattr(row, c) for c in columns] for row in rows))
    with atomic_file(md_path) as tmp:
        tmp.write_text(ablation_markdown(rows, config))
    return csv_path, md_path


def write_runs_table(runs: Sequence[RunResult], out: str | os.PathLike) -> Path:
    """Write ``runs.csv`` into ``out`` (atomically): a row per run, :data:`RUN_CSV_COLUMNS`.

    Dice and HD95 are the run's means over the evaluation stacks (as in ablation.csv, before
    the mean over seeds); teacher is empty for scratch and with a single teacher.

    Parameters
    ----------
    runs : sequence of RunResult
        Every run of the experiment.
    out : str or os.PathLike
        The experiment folder.

    Returns
    -------
    Path
        The CSV's path.
    """
    return write_csv(Path(out) / RUNS_CSV_NAME, RUN_CSV_COLUMNS,
                     (_run_csv_row(run) for run in runs))


def _run_csv_row(run: RunResult) -> tuple:
    """The cells of ``run``'s row of runs.csv."""
    summary = run.table.summary()
    return (run.transfer, run.teacher, run.seed, summary.dice.mean, summary.hd95.mean,
            summary.n_empty_prediction, summary.n_hd95_infinite, summary.n_scored,
            run.train_seconds, run.steps, run.folder.name)


def ablation_markdown(rows: Sequence[TransferRow], config: ExperimentConfig | None = None) -> str:
    """The ablation table as Markdown, with what the numbers mean underneath.

    Parameters
    ----------
    rows : sequence of TransferRow
        The rows of ablation.csv.
    config : ExperimentConfig, optional
        The experiment; its split and shared settings are then named under the table.

    Returns
    -------
    str
        A row per transfer, and with named teachers a Dice, an HD95 and a Dice-vs-scratch
        column per teacher.

    Examples
    --------
    >>> nan = float("nan")
    >>> rows = [TransferRow("scratch", 2, 0.8, 0.01, 3.0, 0.5, nan, nan, 0, 60.0, 100, 0, 0, 8),
    ...         TransferRow("tubular", 2, 0.83, 0.02, 2.5, 0.4, 0.03, 0.01, 2, 61.0, 100, 0, 0, 8)]
    >>> print("\\n".join(ablation_markdown(rows).splitlines()[2:4]))
    | scratch | 2 | 0.800 ± 0.010 | 3.00 ± 0.50 | baseline | 60 s | 100 | 0 |
    | tubular | 2 | 0.830 ± 0.020 | 2.50 ± 0.40 | +0.030 ± 0.010 (2/2 seeds) | 61 s | 100 | 0 |
    """
    teachers = named_teachers(rows)
    metrics = ("Dice", "HD95", "Dice vs scratch")
    heads = [f"{metric} ({teacher})" for teacher in teachers for metric in metrics]
    heads = heads or list(metrics)
    lines = [f"| transfer | seeds | {' | '.join(heads)} | train time | steps | empty predictions |",
             f"|---|---:|{'---:|' * len(heads)}---:|---:|---:|"]
    for transfer in dict.fromkeys(row.transfer for row in rows):
        lines.append(_markdown_row([row for row in rows if row.transfer == transfer], teachers))
    split = config.split if config is not None else "evaluation"
    lines += ["", f"Dice and HD95: mean ± std over seeds of each run's mean over the {split} "
              f"stacks ({rows[0].stacks if rows else 0} per run). HD95 is in x/y voxels (z "
              "scaled by the z/x spacing ratio); a run's HD95 mean leaves out stacks with an "
              "infinite HD95 (an empty mask; hd95_infinite in ablation.csv). Dice vs scratch: "
              "each run's Dice minus that of the scratch run of the same seed (same training "
              "crops in the same order), mean ± std over seeds, and in how many seeds the "
              "transfer beat scratch. Empty predictions "
              "are summed over seeds and scored as Dice 0. Train time: mean wall-clock training "
              "seconds per run, validation included; axes of overlays.png are in spacing "
              "units."]
    if teachers:
        lines[-1] += (" scratch uses no teacher: its row repeats the same scratch runs under "
                      "every teacher, the baseline each teacher's columns compare against. Train "
                      "time, steps and empty predictions cover a transfer's runs with every "
                      "teacher.")
    if config is not None:
        base = config.run_config(*config.jobs()[0])
        lines.append("")
        lines.append(f"Shared settings: data `{base.data}`, size `{base.size}`, crop "
                     f"{base.crop}, batch {base.batch_size}, {base.steps} steps, lr {base.lr:g}, "
                     f"seeds {config.seeds}, {_teacher_text(config.teacher)}, predict overlap "
                     f"{config.predict['overlap']:g}.")
    return "\n".join(lines) + "\n"


def _markdown_row(group: Sequence[TransferRow], teachers: Sequence[str]) -> str:
    """The Markdown row of one transfer from its CSV rows.

    A row per teacher; scratch's single row fills every teacher's columns. Time, steps and
    empty predictions cover all of the transfer's runs.
    """
    by_teacher = {row.teacher: row for row in group}
    shown = [by_teacher.get(teacher, by_teacher.get(None)) for teacher in teachers] or group
    cells = [f"{plus_minus(MeanStd(row.dice_mean, row.dice_std), 3)} "
             f"| {plus_minus(MeanStd(row.hd95_mean, row.hd95_std), 2)} | {_paired_cell(row)}"
             for row in shown]
    seconds = float(np.mean([row.train_seconds for row in group]))
    return (f"| {group[0].transfer} | {group[0].seeds} | {' | '.join(cells)} "
            f"| {_duration(seconds)} | {max(row.steps for row in group)} "
            f"| {sum(row.empty_predictions for row in group)} |")


def _teacher_text(teacher: str | dict[str, str] | None) -> str:
    """The teacher(s) as named in the shared-settings line."""
    if isinstance(teacher, dict):
        return "teachers " + ", ".join(f"{name} `{path}`" for name, path in teacher.items())
    return f"teacher `{teacher}`"


def _paired_cell(row: TransferRow) -> str:
    """"+0.004 ± 0.010 (2/3 seeds)"; "baseline" for scratch, "n/a" without scratch runs."""
    if row.transfer == "scratch":
        return "baseline"
    if math.isnan(row.dice_vs_scratch_mean):
        return "n/a"
    return (f"{row.dice_vs_scratch_mean:+.3f} ± {row.dice_vs_scratch_std:.3f} "
            f"({row.seeds_above_scratch}/{row.seeds} seeds)")


def _duration(seconds: float) -> str:
    """Seconds as "42 s", "3.5 min" or "2.25 h"; "n/a" for nan."""
    if math.isnan(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
