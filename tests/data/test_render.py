"""render_mask against independent computations: tube volumes, a brute-force inside test over
whole grids, the minimum-radius connectivity guarantee, clipping and argument checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dineuro.data import render
from dineuro.data.render import render_mask
from dineuro.errors import InputError
from dineuro.io.swc import SwcTree

# Voxels whose distance to the tube surface is below this are skipped in exact comparisons:
# two correct float computations may round them either way.
SURFACE_TOL = 1e-9


def tree_from_zyx(points_zyx, radii, parents):
    """SwcTree from (z, y, x) points (written independently of swc_to_zyx: explicit columns)."""
    p = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    xyz = np.stack([p[:, 2], p[:, 1], p[:, 0]], axis=1)
    n = len(p)
    return SwcTree(np.arange(1, n + 1), np.full(n, 3), xyz, radii, parents)


def brute_force(shape, segments, spacing=(1.0, 1.0, 1.0), min_radius=0.0):
    """Foreground by definition, over every voxel of the grid, one segment at a time.

    Returns the mask and the voxels within SURFACE_TOL of a tube or min-radius surface.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    unit = spacing / spacing[2]  # radii are in x-voxel units
    centres = np.indices(shape).reshape(3, -1).T.astype(np.float64)  # (z, y, x)
    inside = np.zeros(len(centres), dtype=bool)
    ambiguous = np.zeros(len(centres), dtype=bool)
    for a, b, ra, rb in segments:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        for metric, test_radius in ((unit, None), (np.ones(3), min_radius)):
            if test_radius == 0.0:
                continue
            ap, bp, cp = a * metric, b * metric, centres * metric  # physical positions
            seg = bp - ap
            length2 = seg @ seg
            t = np.zeros(len(cp)) if length2 == 0 else np.clip((cp - ap) @ seg / length2, 0, 1)
            closest = ap + t[:, None] * seg
            distance = np.sqrt(((cp - closest) ** 2).sum(axis=1))
            radius = ra + t * (rb - ra) if test_radius is None else np.full(len(cp), test_radius)
            inside |= distance <= radius
            ambiguous |= np.abs(distance - radius) < SURFACE_TOL
    return inside.reshape(shape), ambiguous.reshape(shape)


def assert_matches_brute_force(mask, expected, ambiguous):
    assert ambiguous.sum() < 0.01 * ambiguous.size  # the comparison is not vacuous
    assert expected.sum() > 0
    wrong = (mask != expected) & ~ambiguous
    assert not wrong.any(), f"{wrong.sum()} voxels differ, e.g. at {np.argwhere(wrong)[:3]}"


# --- tube volume -----------------------------------------------------------------------------
R, L = 5.0, 40.0
CAPSULE_VOLUME = np.pi * R**2 * L + 4 / 3 * np.pi * R**3  # 3665.2 voxels


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_axis_aligned_tube_has_the_lattice_count_of_a_capsule(axis):
    # Centre line on lattice points from 10 to 50 along `axis`. The count is exact: 39 interior
    # slices of the radius-5 disc (Gauss circle problem: 81 lattice points) plus the two end
    # caps, which together make a radius-5 ball (515 points, OEIS A000605) with the x = 10 disc
    # counted once more: 39 * 81 + 515 + 81 = 3755. That is +2.45% over the continuous volume;
    # the lattice excess of the disc (81 vs 25 pi = 78.5, +3.1%) is why a 5% tolerance fits r=5.
    a, b = np.full(3, 30.0), np.full(3, 30.0)
    a[axis], b[axis] = 10.0, 50.0
    mask = render_mask(tree_from_zyx([a, b], [R, R], [-1, 1]), (60, 60, 60), min_radius=0)
    assert mask.sum() == 39 * 81 + 515 + 81
    assert abs(mask.sum() / CAPSULE_VOLUME - 1) < 0.05


def test_diagonal_tube_volume_within_five_percent():
    # Off-lattice, oblique: slices cut the lattice at varying offsets, so the lattice excess of
    # the axis-aligned case (+2.45%) is an upper guide; 5% as above.
    a = np.array([12.3, 11.7, 12.1])
    b = a + L * np.ones(3) / np.sqrt(3)
    mask = render_mask(tree_from_zyx([a, b], [R, R], [-1, 1]), (50, 50, 50), min_radius=0)
    assert abs(mask.sum() / CAPSULE_VOLUME - 1) < 0.05


@pytest.mark.parametrize("z_spacing", [2.0, 2.5])
def test_anisotropic_tube_volume_is_physical_volume_over_voxel_volume(z_spacing):
    # A z voxel z_spacing times thicker holds z_spacing times less of the tube. The lattice count
    # of a body averaged over uniformly random translations equals its volume exactly; with 16
    # random sub-voxel offsets the mean's spread was measured below 1.5% (single renders vary by
    # up to ~5%), so 5% is over 3 standard deviations.
    rng = np.random.default_rng(0)
    counts = []
    for offset in rng.uniform(0, 1, (16, 3)):
        a, b = np.array([15.0, 30.0, 10.0]) + offset, np.array([15.0, 30.0, 50.0]) + offset
        tree = tree_from_zyx([a, b], [R, R], [-1, 1])
        counts.append(render_mask(tree, (30, 60, 60), (z_spacing, 1, 1), min_radius=0).sum())
    assert abs(np.mean(counts) / (CAPSULE_VOLUME / z_spacing) - 1) < 0.05


# --- exact geometry against brute force ------------------------------------------------------
SMALL = (18, 22, 26)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 1.0, 1.0), (1.5, 0.8, 1.2)])
@pytest.mark.parametrize("min_radius", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_tapered_edge_matches_brute_force(spacing, min_radius, seed):
    rng = np.random.default_rng(seed)
    # Endpoints may lie a little outside the grid: clipping is part of what is tested.
    a, b = rng.uniform(-3, np.array(SMALL) + 2, (2, 3))
    ra, rb = rng.uniform(0.2, 4.5, 2)
    mask = render_mask(tree_from_zyx([a, b], [ra, rb], [-1, 1]), SMALL, spacing, min_radius)
    expected, ambiguous = brute_force(SMALL, [(a, b, ra, rb), (b, b, rb, rb)], spacing,
                                      min_radius)
    assert_matches_brute_force(mask, expected, ambiguous)


@pytest.mark.parametrize(("spacing", "min_radius"), [((1.0, 1.0, 1.0), 0.0),
                                                    ((2.5, 1.0, 1.0), 1.0)])
def test_branching_tree_is_the_union_of_its_edges(spacing, min_radius):
    rng = np.random.default_rng(7)
    n = 12
    points = rng.uniform(0, np.array(SMALL) - 1, (n, 3))
    radii = rng.uniform(0.3, 3.0, n)
    parent_rows = [-1] + [int(rng.integers(k)) for k in range(1, n)]
    tree = tree_from_zyx(points, radii, [p + 1 if p >= 0 else -1 for p in parent_rows])
    segments = [(points[k], points[p], radii[k], radii[p])
                for k, p in enumerate(parent_rows) if p >= 0]
    segments.append((points[0], points[0], radii[0], radii[0]))  # the root's ball
    mask = render_mask(tree, SMALL, spacing, min_radius)
    assert_matches_brute_force(mask, *brute_force(SMALL, segments, spacing, min_radius))


def test_isolated_node_is_a_ball():
    tree = tree_from_zyx([[10, 10, 10], [3.3, 4.2, 20.5]], [3.0, 0.0], [-1, -1])
    mask = render_mask(tree, (20, 20, 25), min_radius=0)
    # Lattice points within 3 of a lattice point: 123 (OEIS A000605); radius 0 off-lattice: none.
    assert mask.sum() == 123
    assert mask[10, 10, 7] and mask[10, 10, 13] and not mask[10, 10, 14]


def test_only_spacing_ratios_matter():
    rng = np.random.default_rng(4)
    points = rng.uniform(0, np.array(SMALL) - 1, (6, 3))
    tree = tree_from_zyx(points, rng.uniform(0.5, 3, 6), [-1, 1, 2, 2, 4, 1])
    np.testing.assert_array_equal(render_mask(tree, SMALL, (5.0, 2.0, 2.0)),
                                  render_mask(tree, SMALL, (2.5, 1.0, 1.0)))


def test_clipping_equals_rendering_larger_and_cropping():
    rng = np.random.default_rng(5)
    shape, pad = np.array([16, 20, 24]), 6
    points = rng.uniform(-8, shape + 8, (15, 3))  # many nodes outside
    radii = rng.uniform(0.5, 3.5, 15)
    parents = [-1] + [int(rng.integers(k)) + 1 for k in range(1, 15)]
    small = render_mask(tree_from_zyx(points, radii, parents), tuple(shape), (2.0, 1.0, 1.0))
    big = render_mask(tree_from_zyx(points + pad + 5, radii, parents), tuple(shape + 2 * pad + 10),
                      (2.0, 1.0, 1.0))
    crop = big[pad + 5:pad + 5 + shape[0], pad + 5:pad + 5 + shape[1], pad + 5:pad + 5 + shape[2]]
    np.testing.assert_array_equal(small, crop)
    assert small.any()


def test_far_away_long_edge_costs_nothing_and_draws_nothing():
    tree = tree_from_zyx([[-1e7, -1e7, -1e7], [-1e7, 1e7, -1e7]], [2.0, 2.0], [-1, 1])
    assert not render_mask(tree, (8, 8, 8)).any()


def test_memory_chunking_does_not_change_the_result(monkeypatch):
    tree = tree_from_zyx([[8, 10, 12], [9, 11, 20], [3, 3, 3]], [7.0, 2.0, 1.0], [-1, 1, 2])
    reference = render_mask(tree, SMALL, (1.5, 1.0, 1.0))
    monkeypatch.setattr(render, "_CHUNK_VOXELS", 20)  # forces z slabs and y rows
    np.testing.assert_array_equal(render_mask(tree, SMALL, (1.5, 1.0, 1.0)), reference)


# --- minimum radius --------------------------------------------------------------------------
THIN_A, THIN_B = np.array([3.2, 2.7, 4.1]), np.array([14.6, 27.3, 11.8])


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (5.0, 1.0, 1.0)])
def test_min_radius_draws_a_thin_neurite_as_a_six_connected_line(spacing):
    tree = tree_from_zyx([THIN_A, THIN_B], [0.1, 0.1], [-1, 1])
    mask = render_mask(tree, (18, 32, 16), spacing, min_radius=1.0)
    _, n_parts = ndimage.label(mask)  # default structure: 6-connectivity
    assert n_parts == 1
    # No holes along its length: the voxel nearest to every point of the centre line is set.
    t = np.linspace(0, 1, 2000)[:, None]
    nearest = np.round(THIN_A + t * (THIN_B - THIN_A)).astype(int)
    assert mask[tuple(nearest.T)].all()


def test_without_min_radius_a_thin_neurite_breaks_up():
    # Shows the previous test can fail: radius 0.1 alone misses most voxel centres.
    tree = tree_from_zyx([THIN_A, THIN_B], [0.1, 0.1], [-1, 1])
    mask = render_mask(tree, (18, 32, 16), (5.0, 1.0, 1.0), min_radius=0)
    assert ndimage.label(mask)[1] != 1


# --- argument checks -------------------------------------------------------------------------
TINY = tree_from_zyx([[1, 1, 1], [2, 2, 2]], [1.0, 1.0], [-1, 1])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"shape": (4, 4)}, "shape should be 3 positive integers"),
    ({"shape": (4, 0, 4)}, "shape should be 3 positive integers"),
    ({"shape": (4, 4.5, 4)}, "shape should be 3 positive integers"),
    ({"shape": (4, 4, 4), "spacing": (1, 1)}, "spacing should be 3 positive numbers"),
    ({"shape": (4, 4, 4), "spacing": (1, -1, 1)}, "spacing should be 3 positive numbers"),
    ({"shape": (4, 4, 4), "spacing": (1, np.nan, 1)}, "spacing should be 3 positive numbers"),
    ({"shape": (4, 4, 4), "min_radius": -0.5}, "min_radius should be a finite number >= 0"),
])
def test_bad_arguments_raise_input_error(kwargs, message):
    with pytest.raises(InputError, match=message):
        render_mask(TINY, **kwargs)


def test_invalid_tree_is_refused():
    bad = SwcTree([1, 2], [1, 3], [[1, 1, 1], [2, 2, 2]], [1.0, np.nan], [-1, 1])
    with pytest.raises(InputError, match="NaN or infinite radius"):
        render_mask(bad, (4, 4, 4))
