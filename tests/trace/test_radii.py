"""Radii of centre-line voxels against scipy's Euclidean distance transform of the whole mask.

:func:`dineuro.trace._centre_lines._radii` measures to the shell around the foreground, not by
a distance transform; the transform over the whole mask (every piece at once, background
around the array's border not assumed) is the independent reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dineuro.trace._centre_lines import _FULL, _radii


@pytest.mark.parametrize("scale", [(1.0, 1.0, 1.0), (2.5, 1.0, 1.0), (0.7, 1.3, 1.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_radii_equal_the_distance_transform(scale, seed):
    rng = np.random.default_rng(seed)
    # blobs of many sizes and shapes, some cut by the array's border, some touching each other
    mask = ndimage.gaussian_filter(rng.random((24, 40, 36)), 2.0) > 0.52
    mask[:, 18:22, :] = True  # a slab cut by the array's border on four sides
    labels, count = ndimage.label(mask, _FULL)
    assert count > 3
    voxel = np.nonzero(mask)
    expected = ndimage.distance_transform_edt(mask, sampling=scale)[voxel]
    assert expected.max() > 2 * min(scale)  # thick pieces as well as thin ones
    np.testing.assert_allclose(_radii(labels, voxel, scale), expected, rtol=1e-12)


def test_a_tube_by_hand_and_an_array_without_background():
    z, y, x = np.mgrid[:9, :21, :30]
    tube = (y - 10) ** 2 + (z - 4) ** 2 <= 3.5 ** 2
    labels = tube.astype(np.int32)
    axis = (np.full(30, 4), np.full(30, 10), np.arange(30))
    # from the axis, the nearest voxel outside (dy^2 + dz^2 > 12.25) is 3 and 2 away: sqrt(13)
    np.testing.assert_allclose(_radii(labels, axis, (1.0, 1.0, 1.0)), np.sqrt(13.0))
    everything = np.ones((3, 4, 5), np.int32)
    assert np.all(_radii(everything, np.nonzero(everything), (1.0, 1.0, 1.0)) == 0.0)
