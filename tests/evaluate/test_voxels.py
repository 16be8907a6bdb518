"""Dice, precision, recall and HD95 against hand counts and independent computations."""

import math

import numpy as np
import pytest
from scipy import ndimage

from dineuro.errors import InputError
from dineuro.evaluate.voxels import dice, hd95, precision, recall

# MONAI keeps surface distances in float32; a float64 reference agrees to this relative error.
FLOAT32_RTOL = 1e-6


def ball(shape, centre, radius):
    """Voxels whose centre is within ``radius`` (voxels) of ``centre``, (z, y, x)."""
    grid = np.indices(shape).astype(float)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius ** 2


def box(shape, lo, hi):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return mask


def surface_points(mask, spacing):
    """Physical coordinates of voxels with a face neighbour outside (outside the array too)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1]
    all_neighbours_in = np.ones_like(mask)
    for axis in range(3):
        for step in (-1, 1):
            all_neighbours_in &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return np.argwhere(inner & ~all_neighbours_in) * np.asarray(spacing, float)


def brute_force_hd95(pred, gold, spacing):
    """All pairs of surface points, per-direction 95th percentile, max of the two."""
    p, g = surface_points(pred, spacing), surface_points(gold, spacing)
    pairwise = np.sqrt(((p[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(pairwise.min(axis=1), 95), np.percentile(pairwise.min(axis=0), 95))


def random_mask(rng, shape, density):
    return ndimage.binary_opening(rng.random(shape) < density) | (rng.random(shape) < 0.02)


# ---------------------------------------------------------------- overlap scores


def test_dice_precision_recall_of_shifted_cube_by_hand():
    a = box((6, 6, 6), (1, 1, 1), (5, 5, 5))  # 64 voxels
    b = box((6, 6, 6), (1, 1, 2), (5, 5, 6))  # shifted one voxel in x: overlap 4 * 4 * 3 = 48
    assert dice(a, b) == pytest.approx(2 * 48 / 128)
    assert precision(a, b) == pytest.approx(48 / 64)
    assert recall(a, b) == pytest.approx(48 / 64)


def test_precision_and_recall_are_not_symmetric():
    pred = box((6, 6, 6), (1, 1, 1), (5, 5, 5))  # 64 voxels
    gold = box((6, 6, 6), (1, 1, 1), (3, 5, 5))  # 32 voxels, all inside pred
    assert precision(pred, gold) == pytest.approx(0.5)
    assert recall(pred, gold) == 1.0
    assert dice(pred, gold) == pytest.approx(2 * 32 / 96)


def test_dice_of_ball_against_shifted_copy_matches_a_count_of_points():
    shape, centre, radius, shift = (20, 20, 20), (9.0, 10.0, 9.5), 6.3, (1, 2, 0)
    a = ball(shape, centre, radius)
    b = ball(shape, np.add(centre, shift), radius)
    points = [(z, y, x) for z in range(20) for y in range(20) for x in range(20)]
    moved = tuple(c + s for c, s in zip(centre, shift, strict=True))

    def inside(point, c):
        return sum((q - cq) ** 2 for q, cq in zip(point, c, strict=True)) <= radius ** 2

    in_a = {p for p in points if inside(p, centre)}
    in_b = {p for p in points if inside(p, moved)}
    assert dice(a, b) == pytest.approx(2 * len(in_a & in_b) / (len(in_a) + len(in_b)))
    assert 0.5 < dice(a, b) < 1.0


def test_integer_masks_count_non_zero_voxels():
    a = box((4, 4, 4), (0, 0, 0), (2, 4, 4))
    assert dice(a.astype(np.uint8) * 255, a.astype(np.int16)) == 1.0


# ---------------------------------------------------------------- HD95


def test_concentric_balls_are_the_difference_of_their_radii_apart():
    # Each ball's surface voxels lie between r - 1 and r from the centre (6-neighbour surface),
    # so the distances between the two surfaces are within one voxel of r2 - r1.
    shape, centre, r1, r2 = (27, 27, 27), (13, 13, 13), 5.0, 10.0
    inner, outer = ball(shape, centre, r1), ball(shape, centre, r2)
    assert hd95(inner, outer) == pytest.approx(r2 - r1, abs=1.0)
    assert hd95(inner, outer) == hd95(outer, inner)  # symmetric by definition


def test_anisotropic_spacing_of_a_displaced_plate():
    gold = box((10, 12, 12), (3, 2, 2), (4, 10, 10))  # one slice thick: every voxel is surface
    pred = np.roll(gold, 2, axis=0)
    assert hd95(pred, gold, spacing=(3.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert hd95(pred, gold, spacing=(3.0, 0.5, 7.0)) == pytest.approx(6.0)
    assert hd95(pred, gold) == pytest.approx(2.0)
    side = np.roll(box((12, 12, 10), (2, 2, 3), (10, 10, 4)), 2, axis=2)
    assert hd95(side, box((12, 12, 10), (2, 2, 3), (10, 10, 4)),
                spacing=(3.0, 1.0, 0.5)) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hd95_equals_brute_force_all_pairs(seed):
    rng = np.random.default_rng(seed)
    shape = (9, 11, 12)
    pred, gold = random_mask(rng, shape, 0.45), random_mask(rng, shape, 0.45)
    spacing = tuple(rng.uniform(0.4, 2.5, 3))
    assert hd95(pred, gold, spacing) == pytest.approx(brute_force_hd95(pred, gold, spacing),
                                                      rel=FLOAT32_RTOL)


def test_hd95_of_small_masks_inside_a_big_stack_equals_brute_force():
    # The bounding-box crop must not change which voxels are surface.
    rng = np.random.default_rng(7)
    pred, gold = np.zeros((40, 60, 70), bool), np.zeros((40, 60, 70), bool)
    pred[5:13, 20:30, 50:60] = random_mask(rng, (8, 10, 10), 0.5)
    gold[8:16, 24:34, 52:62] = random_mask(rng, (8, 10, 10), 0.5)
    gold[0, 0, 0] = True  # a stray voxel in the corner, on the array border
    spacing = (2.0, 0.7, 0.7)
    assert hd95(pred, gold, spacing) == pytest.approx(brute_force_hd95(pred, gold, spacing),
                                                      rel=FLOAT32_RTOL)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI 1.6 about its own argument
def test_hd95_agrees_with_monai_compute_hausdorff_distance():
    from monai.metrics import compute_hausdorff_distance

    rng = np.random.default_rng(3)
    pred, gold = random_mask(rng, (10, 12, 14), 0.4), random_mask(rng, (10, 12, 14), 0.4)
    spacing = (1.5, 0.5, 0.8)
    expected = compute_hausdorff_distance(pred[None, None], gold[None, None],
                                          include_background=True, percentile=95,
                                          spacing=spacing)
    assert hd95(pred, gold, spacing) == pytest.approx(float(expected), rel=1e-5)


def kdtree_hd95(pred, gold, spacing):
    """The same definition as brute_force_hd95, with scipy's kd-tree for the nearest surface
    point, so it handles neuron-sized stacks."""
    from scipy.spatial import cKDTree

    p, g = surface_points(pred, spacing), surface_points(gold, spacing)
    return max(np.percentile(cKDTree(g).query(p)[0], 95),
               np.percentile(cKDTree(p).query(g)[0], 95))


def neurite_masks(seed=0, shape=(64, 256, 256)):
    """A neurite-like gold mask (a dilated 3D random walk) and a prediction of the same walk
    with every point jittered by up to two voxels (how fast hd95 is: benchmarks/hd95_speed.py)."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 1.5, (4000, 3)), axis=0) + np.array(shape) / 2
    walk = np.clip(walk, 0, np.array(shape) - 1).astype(int)
    jittered = np.clip(walk + rng.integers(-2, 3, walk.shape), 0, np.array(shape) - 1)
    masks = []
    for points in (jittered, walk):
        mask = np.zeros(shape, bool)
        mask[tuple(points.T)] = True
        masks.append(ndimage.binary_dilation(mask, iterations=2))
    return tuple(masks)


def test_hd95_of_a_neuron_sized_stack_equals_a_kd_tree_search():
    pred, gold = neurite_masks()
    spacing = (1.6, 0.55, 0.5)
    assert hd95(pred, gold, spacing) == pytest.approx(kdtree_hd95(pred, gold, spacing),
                                                      rel=FLOAT32_RTOL)
    # Rolled one voxel along x: the two surfaces are one x step (0.5) apart.
    assert hd95(np.roll(gold, 1, axis=2), gold, spacing) == pytest.approx(0.5)


# ---------------------------------------------------------------- empty masks and bad input


@pytest.mark.parametrize("pred_empty, gold_empty, expected", [
    (True, True, {"dice": 1.0, "hd95": 0.0, "precision": 1.0, "recall": 1.0}),
    (True, False, {"dice": 0.0, "hd95": math.inf, "precision": 0.0, "recall": 0.0}),
    (False, True, {"dice": 0.0, "hd95": math.inf, "precision": 0.0, "recall": 0.0}),
])
def test_empty_masks(pred_empty, gold_empty, expected):
    some = box((5, 5, 5), (1, 1, 1), (3, 3, 3))
    none = np.zeros((5, 5, 5), bool)
    pred, gold = (none if pred_empty else some), (none if gold_empty else some)
    scores = {f.__name__: f(pred, gold) for f in (dice, hd95, precision, recall)}
    assert scores == expected


def test_bad_input_is_refused():
    mask = np.zeros((4, 4, 4), bool)
    with pytest.raises(InputError, match="same shape"):
        dice(mask, np.zeros((4, 4, 5), bool))
    with pytest.raises(InputError, match="threshold probabilities first"):
        hd95(mask.astype(np.float32), mask)
    with pytest.raises(InputError, match="3D"):
        dice(mask[0], mask[0])
    with pytest.raises(InputError, match="spacing"):
        hd95(mask, mask, spacing=(1.0, 0.0, 1.0))
