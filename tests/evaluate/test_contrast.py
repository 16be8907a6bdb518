"""Recall split by the gold's contrast in the image (:mod:`dineuro.evaluate.contrast`).

A hand-made stack: white noise with a bright line and a dim line, both gold, and a trace along
the bright one only. The expected contrast comes from smoothing a line and a point of noise
separately (the line's peak and the noise's spread after smoothing), not from the module.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dineuro.evaluate import compare_trees
from dineuro.evaluate.contrast import (
    CONTRAST_EDGES,
    SMOOTH_SIGMA,
    ContrastRecall,
    recall_by_contrast,
)
from dineuro.io import SwcTree

SHAPE = (40, 40, 80)  # (z, y, x)
BRIGHT, DIM = 20.0, 1.5  # line heights over noise of standard deviation 1
X0, X1 = 10, 70


def line_tree(y: float, z: float, first_id: int = 1) -> SwcTree:
    ids = [first_id, first_id + 1]
    return SwcTree(ids, [3, 3], [[X0, y, z], [X1, y, z]], [0.5, 0.5], [-1, first_id])


def stack() -> tuple[np.ndarray, SwcTree, SwcTree]:
    """(image, gold of both lines, trace of the bright line)."""
    rng = np.random.default_rng(0)
    image = 10.0 + rng.standard_normal(SHAPE)
    image[10, 10, X0:X1 + 1] += BRIGHT
    image[30, 30, X0:X1 + 1] += DIM
    bright, dim = line_tree(10, 10), line_tree(30, 30, first_id=3)
    gold = SwcTree([1, 2, 3, 4], [3] * 4, np.concatenate([bright.xyz, dim.xyz]),
                   [0.5] * 4, [-1, 1, -1, 3])
    return image.astype(np.float32), gold, bright


def expected_contrast(height: float, half_width: int = 0) -> float:
    """A line's contrast after smoothing: its smoothed peak over smoothed unit noise's spread
    (the line ``2 half_width + 1`` voxels wide and high)."""
    line = np.zeros((21, 21, 21))
    line[10 - half_width:11 + half_width, 10 - half_width:11 + half_width, :] = height
    point = np.zeros((21, 21, 21))
    point[10, 10, 10] = 1.0
    noise_spread = np.sqrt((ndimage.gaussian_filter(point, SMOOTH_SIGMA) ** 2).sum())
    return float(ndimage.gaussian_filter(line, SMOOTH_SIGMA)[10, 10, 10] / noise_spread)


def test_a_bright_line_is_recalled_in_the_top_bin_and_a_dim_untraced_one_low():
    image, gold, bright = stack()
    result = recall_by_contrast(bright, gold, image)
    top = len(CONTRAST_EDGES)  # contrast >= 8
    assert expected_contrast(BRIGHT) > CONTRAST_EDGES[-1] > expected_contrast(DIM) * 2
    assert result.length.sum() == pytest.approx(2 * (X1 - X0))
    assert result.length[top] == pytest.approx(X1 - X0, abs=2.0)  # the bright line, ends aside
    assert result.recalled[top] == pytest.approx(result.length[top])
    low = result.length[:3].sum()  # contrast below 3: the dim line
    assert low >= 0.9 * (X1 - X0) and result.recalled[:3].sum() == 0
    # Pooled over the bins, the recall is compare_trees' own.
    assert result.recalled.sum() / result.length.sum() == pytest.approx(
        compare_trees(bright, gold).recall)


def test_the_contrast_is_the_line_height_in_noise_units_after_smoothing():
    # A rod 3 voxels thick and 5 noise units high: smoothing keeps most of its height and
    # averages the noise down, so its contrast is about 4x its height.
    rng = np.random.default_rng(1)
    image = 10.0 + rng.standard_normal(SHAPE)
    image[9:12, 9:12, X0:X1 + 1] += 5.0
    bright = line_tree(10, 10)
    want = expected_contrast(5.0, half_width=1)
    assert want > 3 * 5.0
    # Most of the rod (not its ends, where the smoothed rod is half as high) lies within 10 %
    # of the expected contrast: above an edge at 0.9 of it and below one at 1.1.
    below = recall_by_contrast(bright, bright, image, edges=(0.9 * want,)).length
    above = recall_by_contrast(bright, bright, image, edges=(1.1 * want,)).length
    assert below[1] >= 0.8 * (X1 - X0) and above[0] >= 0.8 * (X1 - X0)


def test_an_empty_trace_recalls_nothing_and_bins_pool_by_adding():
    image, gold, bright = stack()
    empty = SwcTree([], [], np.zeros((0, 3)), [], [])
    none = recall_by_contrast(empty, gold, image)
    assert none.recalled.sum() == 0 and none.length.sum() == pytest.approx(2 * (X1 - X0))
    some = recall_by_contrast(bright, gold, image)
    both = none + some
    np.testing.assert_allclose(both.length, 2 * some.length)
    np.testing.assert_allclose(both.recalled, some.recalled)
    assert none.labels() == ["< 1", "1-2", "2-3", "3-5", "5-8", ">= 8"]
    with pytest.raises(ValueError, match="different edges"):
        none + ContrastRecall((1.0,), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="should increase"):
        recall_by_contrast(bright, gold, image, edges=(2.0, 1.0))
