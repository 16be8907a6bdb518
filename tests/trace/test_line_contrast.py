"""The line test of a cone bridge in the raw image (:func:`dineuro.trace._tree.line_contrast`):
its statistic against a hand-made image worked out separately, a faint line against noise, and
the cases it cannot judge."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from dineuro.data.normalize import robust_level
from dineuro.defaults import DEFAULT_FOLLOW_CONTRAST
from dineuro.trace import _tree
from dineuro.trace._tree import LINE_CLEARANCE, LINE_MARGIN, line_contrast

SHAPE = (21, 21, 48)  # (z, y, x)
# two pieces of foreground along x at (z, y) = (10, 10), with a 20-voxel gap between them
A, B = np.array([10.0, 10.0, 13.0]), np.array([10.0, 10.0, 34.0])


def two_pieces() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[10, 9:12, 4:14] = True
    mask[10, 9:12, 34:44] = True
    return mask


def background_values(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The line test's background worked out separately: the box around the segment A-B, grown
    by the margin, less every voxel within LINE_CLEARANCE face steps (city-block distance) of
    the mask."""
    low = (A - LINE_MARGIN).astype(int)
    high = (B + LINE_MARGIN + 1).astype(int)
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))
    points = np.argwhere(mask)
    grid = np.stack(np.indices(SHAPE), axis=-1)[box].reshape(-1, 3)
    city = np.abs(grid[:, None, :] - points[None, :, :]).sum(axis=2).min(axis=1)
    return image[box].reshape(-1)[city > LINE_CLEARANCE]


def test_the_statistic_is_the_line_over_the_backgrounds_median_and_spread(monkeypatch):
    # Smoothing off, the value is plain arithmetic: a background of 8, 10 and 12 in turn
    # (median 10, median absolute deviation 2; the standard deviation is smaller) and 16 on
    # the gap's line.
    monkeypatch.setattr(_tree, "LINE_SMOOTH", 0.0)
    mask = two_pieces()
    z, y, x = np.indices(SHAPE)
    image = np.choose((z + y + x) % 3, [8.0, 10.0, 12.0])
    image[10, 10, 14:34] = 16.0
    values = background_values(mask, image)
    median = np.median(values)
    robust = 1.4826 * np.median(np.abs(values - median))
    assert (median, robust) == (10.0, pytest.approx(1.4826 * 2))
    assert values.std() < robust  # the robust spread is the larger: it is the one used
    assert line_contrast(A, B, mask, image) == pytest.approx((16.0 - median) / robust)
    # any affine rescaling of the image (a normalisation) gives the same value
    assert line_contrast(A, B, mask, 3 * image + 7) == pytest.approx(
        line_contrast(A, B, mask, image))


def test_a_background_mostly_zero_is_measured_by_its_standard_deviation(monkeypatch):
    # A stack clipped at zero: nine background voxels in ten are 0, the tenth 4. The median
    # absolute deviation is 0, so the robust spread would make any rise infinite; the
    # standard deviation is the spread instead.
    monkeypatch.setattr(_tree, "LINE_SMOOTH", 0.0)
    mask = two_pieces()
    z, y, x = np.indices(SHAPE)
    image = np.where((z + y + x) % 10 == 0, 4.0, 0.0)
    image[10, 10, 14:34] = 16.0
    values = background_values(mask, image)
    assert np.median(values) == 0.0 and np.median(np.abs(values)) == 0.0
    assert values.std() > 0
    assert line_contrast(A, B, mask, image) == pytest.approx(16.0 / values.std())


def test_a_faint_line_stands_out_of_noise_that_a_gap_of_noise_does_not():
    # A line 3 noise units high (each voxel), in 20 draws of white noise: every line passes the
    # default, no gap holding noise alone does.
    mask = two_pieces()
    lines, noise_only = [], []
    for seed in range(20):
        noise = np.random.default_rng(seed).normal(0.0, 1.0, SHAPE)
        line = noise.copy()
        line[10, 10, 14:34] += 3.0
        lines.append(line_contrast(A, B, mask, line))
        noise_only.append(line_contrast(A, B, mask, noise))
    assert min(lines) > DEFAULT_FOLLOW_CONTRAST > max(noise_only)


def test_what_the_line_test_cannot_judge():
    mask = two_pieces()
    image = np.zeros(SHAPE)
    # a segment inside the foreground has nothing missing
    assert line_contrast(A, A + [0, 0, -5], mask, image) == math.inf
    # a gap too short to leave the pieces' light: no voxel of it is background
    short = mask.copy()
    short[10, 9:12, 14:31] = True
    assert line_contrast(np.array([10.0, 10.0, 30.0]), B, short, image) == -math.inf
    # a flat background, the gap among it, shows nothing; a line on it stands out
    assert line_contrast(A, B, mask, image) == 0.0
    lit = image.copy()
    lit[10, 10, 14:34] = 1.0
    assert line_contrast(A, B, mask, lit) > DEFAULT_FOLLOW_CONTRAST
    # a box that is nearly all foreground has no background to compare with
    full = np.ones(SHAPE, bool)
    full[10, 10, 14:34] = False
    assert line_contrast(A, B, full, lit) == -math.inf


def test_a_dark_gap_between_haloed_pieces_on_a_zero_background_does_not_stand_out():
    # The pieces' light reaches beyond the map's mask (a halo of 20 out to 3 face steps, on
    # 100 inside), and the rest of the stack is 0, as in a stack clipped at zero. Smoothed, the
    # halo's edge leaks a little light into the dark gap; most of the background stays about
    # 0, so its robust spread is almost nothing and, over it, that leak stood out tenfold.
    mask = two_pieces()
    steps = ndimage.distance_transform_cdt(~mask, metric="taxicab")
    image = np.where(mask, 100.0, np.where(steps <= 3, 20.0, 0.0))
    smooth = ndimage.gaussian_filter(image, _tree.LINE_SMOOTH)
    median, robust = robust_level(background_values(mask, smooth))
    gap = smooth[10, 10, 14 + LINE_CLEARANCE:34 - LINE_CLEARANCE].mean()  # its clear voxels
    assert (gap - median) / robust > 10 * DEFAULT_FOLLOW_CONTRAST  # over the robust spread
    assert line_contrast(A, B, mask, image) < DEFAULT_FOLLOW_CONTRAST
    # a dim fibre across it, as bright as the halo, does stand out
    fibre = image.copy()
    fibre[10, 10, 14:34] = 20.0
    assert line_contrast(A, B, mask, fibre) > DEFAULT_FOLLOW_CONTRAST
