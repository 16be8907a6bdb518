"""Centre-line ends carried on to where the foreground ends: :mod:`dineuro.trace._ends`.

Expected points come from the mask's geometry worked out by hand (where a rod of voxels ends,
less a radius), and traced tips from the gold tree that drew the mask.
"""

from __future__ import annotations

import numpy as np
import pytest

from dineuro.data.render import render_mask
from dineuro.io import SwcTree
from dineuro.trace import trace
from dineuro.trace._ends import END_MIN, END_STEP, end_points, extend_ends


def line(x0: int, x1: int, y: int = 5, z: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Centre-line nodes (z, y, x) at x0..x1 and the edges of the path through them."""
    x = np.arange(x0, x1 + 1, dtype=np.float64)
    zyx = np.stack([np.full_like(x, z), np.full_like(x, y), x], axis=1)
    return zyx, np.stack([np.arange(len(x) - 1), np.arange(1, len(x))], axis=1)


def rod(shape, x0: int, x1: int) -> np.ndarray:
    """A 3x3 rod of voxels along x at (z, y) = (5, 5), voxels x0..x1."""
    mask = np.zeros(shape, dtype=bool)
    mask[4:7, 4:7, x0:x1 + 1] = True
    return mask


def test_each_end_moves_to_a_radius_inside_where_the_rod_ends():
    # The rod's voxels end at x 5 and 40, so the foreground ends at 4.5 and 40.5; a centre
    # line thinned short (x 10..30) with radius 1.5 goes on to about 6 and 39.
    zyx, edges = line(10, 30)
    radius = np.full(len(zyx), 1.5)
    ends = end_points(zyx, edges, rod((11, 11, 50), 5, 40), radius, np.ones(3))
    assert np.isnan(ends[1:-1]).all()  # only ends move
    first, last = ends[0], ends[-1]
    assert first[:2].tolist() == last[:2].tolist() == [5.0, 5.0]  # along the axis
    assert 4.5 + 1.5 <= first[2] <= 4.5 + 1.5 + END_STEP
    assert 40.5 - 1.5 - END_STEP <= last[2] <= 40.5 - 1.5


def test_an_end_already_a_radius_inside_its_end_stays():
    zyx, edges = line(10, 30)
    radius = np.full(len(zyx), 2.0)
    # Foreground to x 32 (ends at 32.5): the end at 30 is 2.5 from it, 0.5 more than its
    # radius, which is less than END_MIN.
    assert END_MIN > 0.5
    ends = end_points(zyx, edges, rod((11, 11, 50), 8, 32), radius, np.ones(3))
    assert np.isnan(ends).all()


def test_an_end_whose_foreground_runs_out_of_the_array_stays():
    zyx, edges = line(10, 30)
    ends = end_points(zyx, edges, rod((11, 11, 36), 5, 35), np.ones(len(zyx)), np.ones(3))
    assert np.isnan(ends[-1]).all()  # runs into the face at x 35
    assert np.isfinite(ends[0]).all()  # the other end meets background at x 4


def test_an_end_in_a_foreground_longer_than_the_march_stays():
    zyx, edges = line(12, 16)
    ends = end_points(zyx, edges, rod((11, 11, 200), 5, 190), np.ones(len(zyx)), np.ones(3))
    assert np.isnan(ends[-1]).all()  # foreground on for 174 voxels beyond END_REACH
    assert np.isfinite(ends[0]).all()  # background 7.5 voxels on


def test_the_march_steps_in_physical_units_on_anisotropic_stacks():
    # A rod along z with z voxels twice the x voxels: it ends at z index 20.5, which is 41 x
    # voxels; a radius of 2 x voxels puts the end's centre at 39 x voxels, z index 19.5, from
    # an end at z index 16 (32 x voxels).
    mask = np.zeros((30, 11, 11), dtype=bool)
    mask[2:21, 4:7, 4:7] = True
    z = np.arange(5.0, 17.0)
    zyx = np.stack([z, np.full_like(z, 5), np.full_like(z, 5)], axis=1)
    edges = np.stack([np.arange(len(z) - 1), np.arange(1, len(z))], axis=1)
    ends = end_points(zyx, edges, mask, np.full(len(z), 2.0), np.array([2.0, 1.0, 1.0]))
    assert 19.5 - END_STEP / 2 <= ends[-1, 0] <= 19.5
    assert ends[-1, 1:].tolist() == [5.0, 5.0]


def test_extend_ends_adds_a_tip_to_leaves_and_to_an_end_root_only():
    # A fork: root 0 - 1, then 1 - 2 and 1 - 3 (leaves); leaf 3 has no point.
    zyx = np.array([[0.0, 0, 0], [0, 0, 1], [0, 1, 2], [0, -1, 2]])
    parent = np.array([-1, 0, 1, 1])
    ends = np.full((4, 3), np.nan)
    ends[0] = [0, 0, -2]
    ends[2] = [0, 2, 4]
    radius = np.array([1.0, 2, 3, 4])
    z, r, p = extend_ends(zyx, radius, parent, ends, root_is_end=False)
    assert z.tolist() == [*zyx.tolist(), [0, 2, 4]] and p.tolist() == [-1, 0, 1, 1, 2]
    assert r[-1] == 3
    z, r, p = extend_ends(zyx, radius, parent, ends, root_is_end=True)
    assert z[0].tolist() == [0, 0, -2] and p.tolist() == [-1, 0, 1, 2, 2, 3]
    assert r[0] == 1
    assert all(p[k] < k for k in range(1, len(p)))  # parents first


@pytest.mark.parametrize(("r0", "r1"), [(3.0, 3.0), (4.0, 1.0), (3.0, 0.5)])
def test_a_thick_tube_traces_to_its_gold_ends(r0, r1):
    # Thinning alone stops a voxel short of a gold end of radius 3 or 4 (at x 11 for 10, at 69
    # for 70); carried on, each traced end is within half a voxel of the gold's.
    gold = SwcTree([1, 2], [3, 3], [[10.0, 10.0, 10.0], [70.0, 10.0, 10.0]], [r0, r1], [-1, 1])
    traced = trace(render_mask(gold, (20, 20, 80)).astype(np.float32))
    x = traced.xyz[:, 0]
    assert abs(x.min() - 10.0) <= 0.5 and abs(x.max() - 70.0) <= 0.5
    assert np.abs(traced.xyz[:, 1:] - 10.0).max() <= 0.5  # on the axis
