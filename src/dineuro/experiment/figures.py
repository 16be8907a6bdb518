"""The experiment's figures: validation curves of every run, and predictions over one stack.

The overlays are drawn with :func:`dineuro.report.draw_view`, as every other MIP picture.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from dineuro.experiment.config import TRANSFERS
from dineuro.experiment.results import PREDICTIONS, RunResult, named_teachers

#: Line colour per transfer in the figures (matplotlib's tab10, by position in TRANSFERS).
TRANSFER_COLORS = dict(zip(TRANSFERS, ("tab:gray", "tab:blue", "tab:green", "tab:orange",
                                       "tab:red"), strict=True))
#: Curve styles: by seed with one teacher, by teacher with named teachers.
LINE_STYLES = ("-", "--", ":", "-.")
#: The panel of overlays.png that shows the gold alone.
GOLD_PANEL = "gold"
#: Panels a row of overlays.png holds with a single teacher.
PANELS_PER_ROW = 3


def val_curves_figure(runs: Sequence[RunResult]):
    """Validation Dice against step, one line per run, one colour per transfer.

    Parameters
    ----------
    runs : sequence of RunResult
        Every run of the experiment.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; the line style tells seeds apart, or teachers when the experiment names
        them.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for run in runs:
        if not run.curve:
            continue
        steps, dice = zip(*run.curve, strict=True)
        linestyle, label = _line_style(runs, run)
        ax.plot(steps, dice, marker="o", ms=3, color=TRANSFER_COLORS[run.transfer],
                linestyle=linestyle, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("validation Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if any(run.curve for run in runs):
        ax.legend(fontsize=7, ncol=2, handlelength=4)  # long enough to show the dashes
    else:
        ax.text(0.5, 0.5, "no validation split: no curves", ha="center",
                transform=ax.transAxes)
    ax.set_title("Validation Dice during training", fontsize=10)
    return fig


def _line_style(runs: Sequence[RunResult], run: RunResult) -> tuple[str, str | None]:
    """Line style and legend label of ``run``'s curve.

    With named teachers the seeds of a (transfer, teacher) share a style and one legend entry,
    so that a few dozen runs still make a legend that fits.
    """
    teachers = named_teachers(runs)
    if not teachers:
        seeds = sorted({r.seed for r in runs})
        return (LINE_STYLES[seeds.index(run.seed) % len(LINE_STYLES)],
                f"{run.transfer} seed {run.seed}")
    style = LINE_STYLES[teachers.index(run.teacher) % len(LINE_STYLES)] if run.teacher else "-"
    first = next(r for r in runs if r.curve and (r.transfer, r.teacher) == (run.transfer,
                                                                            run.teacher))
    return style, _run_label(run) if first is run else None


def _run_label(run: RunResult) -> str:
    """"transfer" or "transfer · teacher"."""
    return f"{run.transfer} · {run.teacher}" if run.teacher else run.transfer


def overlays_figure(runs: Sequence[RunResult], data: str | os.PathLike, name: str):
    """x-y MIP of one stack with the gold, and each transfer's predicted mask over it.

    Parameters
    ----------
    runs : sequence of RunResult
        Every run of the experiment; a transfer (and teacher) is shown by its first seed.
    data : str or os.PathLike
        The dataset folder.
    name : str
        The stack shown.

    Returns
    -------
    matplotlib.figure.Figure
        The gold alone (SWC lines, or the label outline) in the first panel, then a panel per
        transfer (and teacher) with its predicted mask tinted over the image and the gold. With
        named teachers the panels are a row per transfer and a column per teacher, as the
        columns of ablation.md.
    """
    import matplotlib.pyplot as plt

    from dineuro.data.dataset import open_dataset
    from dineuro.report import draw_view

    dataset = open_dataset(data)
    image = dataset.image(name)
    stack = np.asarray(image.array)
    tree = dataset.tree(name)
    outline = None if tree is not None else dataset.label(name, image).max(axis=0)
    grid = _overlay_grid(runs)
    rows, cols = len(grid), len(grid[0])
    aspect = (stack.shape[1] * image.spacing[1]) / (stack.shape[2] * image.spacing[2])
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows * aspect + 0.6),
                             layout="constrained", squeeze=False)
    for ax, run in zip(axes.flat, [run for row in grid for run in row], strict=True):
        if run is None:
            ax.axis("off")
            continue
        title, mask = ("image + gold", None) if run is GOLD_PANEL else _run_panel(run, name)
        draw_view(ax, stack, image.spacing, "xy", mask=mask, gold=tree)
        if outline is not None:
            _draw_outline(ax, outline, image.spacing)
        ax.set_title(title, fontsize=9, loc="left")  # in place of the view's name
        ax.set_xlabel("x", fontsize=8)
        ax.set_ylabel("y", fontsize=8)
    fig.suptitle(f"{name}: x-y MIP, prediction magenta, gold "
                 f"{'SWC' if tree is not None else 'outline'} cyan", fontsize=10)
    return fig


def _run_panel(run: RunResult, name: str) -> tuple[str, np.ndarray | None]:
    """Title and predicted (z, y, x) mask (None when missing) of ``run``'s panel."""
    from dineuro.evaluate import find_predictions, read_prediction

    prediction = find_predictions(run.folder / PREDICTIONS).get(name)
    mask = None if prediction is None else read_prediction(prediction)
    score = next((r for r in run.table.rows if r.name == name), None)
    dice = "" if score is None or score.dice is None else f"  Dice {score.dice:.3f}"
    return f"{_run_label(run)} (seed {run.seed}){dice}", mask


def _overlay_grid(runs: Sequence[RunResult]) -> list[list[RunResult | str | None]]:
    """Panels of overlays.png by row, padded with None.

    :data:`GOLD_PANEL` first, then the first seed's run of each transfer (and teacher);
    :data:`PANELS_PER_ROW` a row with one teacher, otherwise a row per transfer (scratch beside
    the gold) so that each teacher has a column.
    """
    firsts: dict[tuple[str, str | None], RunResult] = {}
    for run in runs:
        firsts.setdefault((run.transfer, run.teacher), run)
    if not named_teachers(runs):
        panels = [GOLD_PANEL, *firsts.values()]
        grid = [panels[i:i + PANELS_PER_ROW] for i in range(0, len(panels), PANELS_PER_ROW)]
    else:
        by_transfer: dict[str, list] = {}
        for (transfer, _), run in firsts.items():
            by_transfer.setdefault(transfer, []).append(run)
        grid = [[GOLD_PANEL, *by_transfer.pop("scratch", [])], *by_transfer.values()]
    cols = max(len(row) for row in grid)
    return [row + [None] * (cols - len(row)) for row in grid]


def _draw_outline(ax, label: np.ndarray, spacing) -> None:
    """The outline of a (y, x) gold label MIP, in the gold colour, in physical units."""
    from dineuro.report import GOLD_COLOR

    if label.any():
        ys, xs = np.arange(label.shape[0]) * spacing[1], np.arange(label.shape[1]) * spacing[2]
        ax.contour(xs, ys, label.astype(float), levels=[0.5], colors=GOLD_COLOR,
                   linewidths=0.6)
