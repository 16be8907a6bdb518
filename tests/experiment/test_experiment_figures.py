"""dineuro.experiment.figures: a curve per run, and the overlays drawn as report's MIPs, a panel
per transfer (and teacher) after the gold."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba

from dineuro.experiment.figures import overlays_figure, val_curves_figure
from dineuro.report import GOLD_COLOR, MASK_RGBA


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _first_test_stack(dataset: Path) -> str:
    return json.loads((dataset / "split.json").read_text())["test"][0]


def _panels(fig) -> list:
    return [ax for ax in fig.axes if ax.axison]


def test_overlays_show_the_gold_then_each_transfers_mask(experiment, dataset):
    _, result, _ = experiment
    fig = overlays_figure(result.runs, dataset, _first_test_stack(dataset))
    panels = _panels(fig)
    titles = [ax.get_title(loc="left") for ax in panels]
    assert titles[0] == "image + gold"
    assert [title.split("  Dice ")[0] for title in titles[1:]] == [
        "scratch (seed 0)", "deformable (seed 0)"]
    for ax, tinted in zip(panels, (False, True, True), strict=True):
        assert len(ax.get_images()) == 1 + tinted  # the MIP, and the mask over it
        if tinted:
            tint = ax.get_images()[1].get_array()
            assert np.allclose(tint[tint[..., 3] > 0][0], MASK_RGBA)
        gold = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(gold) == 1 and np.allclose(gold[0].get_colors()[0], to_rgba(GOLD_COLOR))


def test_named_teacher_overlays_have_a_row_per_transfer_and_a_column_per_teacher(
        teachers_experiment, dataset):
    _, result = teachers_experiment
    fig = overlays_figure(result.runs, dataset, _first_test_stack(dataset))
    titles = [ax.get_title(loc="left").split(" (seed")[0] for ax in _panels(fig)]
    assert titles == ["image + gold", "scratch", "center · photos", "center · mips"]
    assert len(fig.axes) == 4  # two rows of two


def test_val_curves_have_a_line_per_run(experiment):
    _, result, _ = experiment
    ax = val_curves_figure(result.runs).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == [
        "scratch seed 0", "deformable seed 0"]
    assert [line.get_xydata().tolist() for line in ax.get_lines()] == [
        [list(point) for point in run.curve] for run in result.runs]
