"""Tracing maps into SWC trees: geometry against rendered gold trees, corner cases, the CLI.

Inputs are masks rendered from hand-made SWC trees (:func:`render_mask`), or maps made from them
as a network would on a noisy stack (blurred, rough, speckled), so every expected value (length,
axis, branch point, radius, soma, root) comes from the tree that drew the mask, not from the
tracer.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from helpers import invoke
from scipy import ndimage
from scipy.sparse import coo_matrix, csgraph

from dineuro.checkpoint import save_checkpoint
from dineuro.data.render import render_mask
from dineuro.errors import InputError
from dineuro.io import SwcTree, read_swc, read_volume, write_volume
from dineuro.models.build import build_model
from dineuro.trace import (
    DEFAULT_MAX_GAP,
    DEFAULT_MIN_TREE_LENGTH,
    DEFAULT_PRUNE_LENGTH,
    DEFAULT_SPUR_RADII,
    METHODS,
    EmptyTraceWarning,
    as_probability,
    trace,
    trace_file,
)
from dineuro.trace._tree import end_directions

TUBE_SHAPE = (30, 40, 90)  # (z, y, x)
AXIS_Y, AXIS_Z = 20.0, 15.0  # a tube along x at this (y, z)


def tree_of(xyz, radius, parents) -> SwcTree:
    n = len(xyz)
    return SwcTree(np.arange(1, n + 1), [3] * n, xyz, radius, parents)


def tube(x0=10.0, x1=80.0, r=2.0) -> SwcTree:
    return tree_of([[x0, AXIS_Y, AXIS_Z], [x1, AXIS_Y, AXIS_Z]], [r, r], [-1, 1])


def cable(tree: SwcTree, spacing=(1.0, 1.0, 1.0)) -> float:
    """Total edge length in x voxels."""
    child, parent = tree.edges()
    scale = np.asarray(spacing)[::-1] / spacing[2]  # (x, y, z)
    return float(np.linalg.norm((tree.xyz[child] - tree.xyz[parent]) * scale, axis=1).sum())


def children_count(tree: SwcTree) -> np.ndarray:
    parent = tree.parent_index
    return np.bincount(parent[parent >= 0], minlength=len(tree))


def tree_ids(tree: SwcTree) -> np.ndarray:
    """Which tree of the forest each node belongs to: the index of its root."""
    parent = tree.parent_index
    label = np.arange(len(tree))
    for node in range(len(tree)):  # parents come first
        if parent[node] >= 0:
            label[node] = label[parent[node]]
    return label


def one_tree_spans(tree: SwcTree, below: float, above: float) -> bool:
    """Whether a single tree has nodes at x < ``below`` and at x > ``above``."""
    label, x = tree_ids(tree), tree.xyz[:, 0]
    return bool(np.intersect1d(label[x < below], label[x > above]).size)


def distance_to_segment(points, a, b, scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Physical distance of (x, y, z) points to the segment a-b (x, y, z)."""
    scale = np.asarray(scale)
    p, a, b = np.asarray(points) * scale, np.asarray(a) * scale, np.asarray(b) * scale
    t = np.clip((p - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1)


STRAIGHT = ((10.0, AXIS_Y, AXIS_Z), (80.0, AXIS_Y, AXIS_Z))  # the axis of tube()
STRAIGHT_LENGTH = STRAIGHT[1][0] - STRAIGHT[0][0]
OBLIQUE = [((10.0, 5.0, 5.0), (75.0, 35.0, 25.0)), ((10.0, 30.0, 3.0), (70.0, 10.0, 27.0))]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("start", "end"), [STRAIGHT, *OBLIQUE])
def test_a_tube_traces_to_its_axis_with_its_length(start, end, method):
    gold = tree_of([start, end], [2.0, 2.0], [-1, 1])
    traced = trace(render_mask(gold, TUBE_SHAPE), method=method)
    true_length = float(np.linalg.norm(np.subtract(end, start)))
    assert cable(traced) == pytest.approx(true_length, rel=0.02)
    assert distance_to_segment(traced.xyz, start, end).max() <= 0.75
    assert children_count(traced).max() == 1  # one unbranched path
    steps = np.linalg.norm(np.diff(traced.xyz, axis=0), axis=1)
    assert steps.min() >= 1.0 and steps.max() <= 3.0  # resampled about every 2 voxels


@pytest.mark.parametrize(("start", "end"), OBLIQUE)
def test_smoothing_removes_the_voxel_staircase_of_an_oblique_tube(start, end):
    mask = render_mask(tree_of([start, end], [2.0, 2.0], [-1, 1]), TUBE_SHAPE)
    true_length = float(np.linalg.norm(np.subtract(end, start)))
    staircase, smoothed = trace(mask, smooth=0), trace(mask)
    assert cable(staircase) > 1.02 * true_length  # the zig-zag adds length ...
    assert abs(cable(smoothed) - true_length) < abs(cable(staircase) - true_length) / 2
    wobble = [distance_to_segment(t.xyz, start, end).max() for t in (staircase, smoothed)]
    assert wobble[1] < wobble[0]  # ... and wobble


@pytest.mark.parametrize("method", METHODS)
def test_a_y_has_one_branch_point_near_the_fork_and_three_branches(method):
    fork = np.array([40.0, 30.0, 15.0])
    gold = tree_of([[10, 30, 15], fork, [70, 8, 15], [70, 52, 15]], [2.0] * 4, [-1, 1, 2, 2])
    traced = trace(render_mask(gold, (30, 60, 80)), method=method)
    children = children_count(traced)
    branch_points = np.flatnonzero(children >= 2)
    assert len(branch_points) == 1
    assert np.linalg.norm(traced.xyz[branch_points[0]] - fork) <= 3.0
    # Branches run between the root, branch points and leaves: three for a Y.
    key = (children != 1) | (traced.parents == -1)
    assert key.sum() - 1 == 3
    ends = traced.xyz[(children == 0) | (traced.parents == -1)]
    for tip in ([10, 30, 15], [70, 8, 15], [70, 52, 15]):
        assert np.linalg.norm(ends - tip, axis=1).min() <= 2.0


def gapped(gap: float, evidence: float) -> tuple[np.ndarray, float]:
    """A tube from x=10 to 80 cut at x=45 by ``gap`` voxels holding probability ``evidence``."""
    prob = render_mask(tube(), TUBE_SHAPE).astype(np.float32) * 0.9
    x = np.arange(TUBE_SHAPE[2])
    in_gap = (x >= 45) & (x < 45 + gap)
    prob[:, :, in_gap] = np.where(prob[:, :, in_gap] > 0, evidence, 0.0)
    return prob, 45 + gap


@pytest.mark.parametrize(("gap", "evidence", "bridged"), [
    (3, 0.2, True),                   # below the low threshold, above the gap floor
    (3, 0.0, False),                  # no evidence
    (DEFAULT_MAX_GAP + 4, 0.2, False),  # too long, whatever the evidence
])
def test_gaps_are_bridged_only_when_short_and_supported(gap, evidence, bridged):
    prob, _ = gapped(gap, evidence)
    # keep both halves when they stay apart; no bridge along the tube's direction beyond max_gap
    traced = trace(prob, min_tree_length=0, follow_gap=0)
    assert one_tree_spans(traced, 20, 70) == bridged
    assert len(traced.roots) == (1 if bridged else 2)


def two_pieces(far_start: float, far_y: float, background: float = 0.05) -> np.ndarray:
    """A map of a tube from x=10 to 40 and one from ``far_start`` to 85 at y ``far_y``, over a
    background of ``background`` (below gap_floor, above FOLLOW_FLOOR) everywhere else."""
    near = tree_of([[10.0, AXIS_Y, AXIS_Z], [40.0, AXIS_Y, AXIS_Z]], [2.0] * 2, [-1, 1])
    far = tree_of([[far_start, far_y, AXIS_Z], [85.0, far_y, AXIS_Z]], [2.0] * 2, [-1, 1])
    prob = np.full(TUBE_SHAPE, background, np.float32)
    prob[render_mask(near, TUBE_SHAPE) | render_mask(far, TUBE_SHAPE)] = 0.9
    return prob


def test_a_fibre_is_followed_across_a_long_dim_gap_in_its_direction_only():
    # ends about 15 x voxels apart (the skeleton stops short of each cap): beyond max_gap
    straight = two_pieces(53.0, AXIS_Y)
    assert one_tree_spans(trace(straight), 30, 60)
    assert not one_tree_spans(trace(straight, follow_gap=0, min_tree_length=0), 30, 60)
    assert not one_tree_spans(trace(straight, follow_gap=10, min_tree_length=0), 30, 60)
    # the same gap with nothing in it (a clean background) is not crossed
    assert not one_tree_spans(trace(two_pieces(53.0, AXIS_Y, 0.0), min_tree_length=0), 30, 60)
    # a piece as near but 45 degrees aside is not where the fibre goes
    aside = two_pieces(52.0, AXIS_Y + 12.0)
    assert not one_tree_spans(trace(aside, min_tree_length=0), 30, 60)


def test_a_fibre_the_map_lost_is_followed_where_the_raw_image_shows_it():
    # The map holds nothing in the gap (a clean background), so alone it is not crossed; the
    # raw stack shows the fibre going on through it, 3 noise units above its background.
    prob = two_pieces(53.0, AXIS_Y, 0.0)
    noise = np.random.default_rng(0).normal(100.0, 10.0, TUBE_SHAPE)
    fibre = noise + 30.0 * render_mask(tube(10.0, 85.0), TUBE_SHAPE)
    assert not one_tree_spans(trace(prob, min_tree_length=0), 30, 60)
    assert one_tree_spans(trace(prob, image=fibre), 30, 60)
    # noise alone in the gap, or the line test switched off: not crossed
    assert not one_tree_spans(trace(prob, image=noise, min_tree_length=0), 30, 60)
    assert not one_tree_spans(trace(prob, image=fibre, follow_contrast=math.inf,
                                    min_tree_length=0), 30, 60)
    # a map's own gaps stay judged by the map: the image is no evidence for a short bridge
    gap_prob, _ = gapped(3, 0.0)
    assert not one_tree_spans(trace(gap_prob, image=fibre, follow_gap=0, min_tree_length=0),
                              20, 70)


def test_the_image_carries_a_bridge_further_than_the_map():
    # A 25-voxel gap: beyond the map's follow_gap (20), within the image's follow_line_gap (30).
    prob = two_pieces(65.0, AXIS_Y)  # the map's dim background (0.05) fills the gap
    noise = np.random.default_rng(1).normal(100.0, 10.0, TUBE_SHAPE)
    fibre = noise + 30.0 * render_mask(tube(10.0, 85.0), TUBE_SHAPE)
    assert not one_tree_spans(trace(prob, min_tree_length=0), 30, 70)
    assert not one_tree_spans(trace(prob, image=noise, min_tree_length=0), 30, 70)
    assert one_tree_spans(trace(prob, image=fibre), 30, 70)
    assert not one_tree_spans(trace(prob, image=fibre, follow_line_gap=20.0, min_tree_length=0),
                              30, 70)


def test_debris_chained_across_a_gap_stays_debris():
    # a long tube, and beside it two 12-voxel pieces in a line 14 voxels apart over a dim gap
    pieces = [[10.0, 8.0, AXIS_Z], [80.0, 8.0, AXIS_Z], [20.0, 30.0, AXIS_Z],
              [32.0, 30.0, AXIS_Z], [46.0, 30.0, AXIS_Z], [58.0, 30.0, AXIS_Z]]
    prob = np.full(TUBE_SHAPE, 0.05, np.float32)
    prob[render_mask(tree_of(pieces, [1.5] * 6, [-1, 1, -1, 3, -1, 5]), TUBE_SHAPE)] = 0.9
    # together with their bridge the pair holds 30 x voxels or more of cable; alone, less
    traced = trace(prob)
    assert len(traced.roots) == 1 and traced.xyz[:, 1].max() < 20
    kept = trace(prob, min_tree_length=15)
    assert len(kept.roots) == 2  # joined along their direction, and now kept
    pair = tree_ids(kept) == tree_ids(kept)[kept.roots[1]]
    assert kept.xyz[pair, 0].min() < 30 and kept.xyz[pair, 0].max() > 50


def test_an_end_points_along_its_last_stretch_of_centre_line():
    # an L: nodes along y from (0, 0, 0) to (0, 9, 0), then along x to (0, 9, 9)
    zyx = np.array([[0, y, 0] for y in range(10)] + [[0, 9, x] for x in range(1, 10)], float)
    edges = np.array([[i, i + 1] for i in range(len(zyx) - 1)])
    lone = np.vstack([zyx, [[5.0, 5.0, 5.0]]])
    ends = np.array([0, len(zyx) - 1, len(zyx)])
    direction = end_directions(lone, edges, ends)
    np.testing.assert_allclose(direction[0], [0, -1, 0])  # 5 voxels back along y
    np.testing.assert_allclose(direction[1], [0, 0, 1])  # along x
    np.testing.assert_allclose(direction[2], [0, 0, 0])  # a lone node points nowhere
    # physical lengths: with z twice as long, 3 nodes back along a z chain already reach 5
    chain = np.array([[z, 0, 0] for z in range(6)], float) * [2.0, 1.0, 1.0]
    diagonal = np.vstack([chain, [[12.0, 1.0, 0.0]]])
    turned = end_directions(diagonal, np.array([[i, i + 1] for i in range(6)]), np.array([6]))
    np.testing.assert_allclose(turned[0], np.array([6.0, 1.0, 0.0]) / np.hypot(6.0, 1.0))


def test_a_binary_mask_is_bridged_by_image_evidence():
    prob, _ = gapped(3, 0.0)
    mask = prob > 0
    image = render_mask(tube(), TUBE_SHAPE).astype(np.uint8) * 200
    assert one_tree_spans(trace(mask, image=image), 20, 70)
    dark = image.copy()
    dark[:, :, 45:48] = 0
    assert not one_tree_spans(trace(mask, image=dark), 20, 70)


def test_separate_trees_are_kept_when_sizeable_and_debris_dropped():
    long_piece, short_piece = (10.0, 60.0), (70.0, 70.0 + DEFAULT_MIN_TREE_LENGTH / 2)
    gold = tree_of([[long_piece[0], AXIS_Y, AXIS_Z], [long_piece[1], AXIS_Y, AXIS_Z],
                    [short_piece[0], AXIS_Y, AXIS_Z], [short_piece[1], AXIS_Y, AXIS_Z]],
                   [2.0] * 4, [-1, 1, -1, 3])
    mask = render_mask(gold, TUBE_SHAPE)
    traced = trace(mask)
    assert len(traced.roots) == 1 and traced.xyz[:, 0].max() < short_piece[0]
    assert any("dropped 1 separate tree" in c for c in traced.comments)
    both = trace(mask, keep_fragments=True)
    assert len(both.roots) == 2 and both.xyz[:, 0].max() > short_piece[0]
    assert both.roots[0] == 0 and both.xyz[0, 0] < short_piece[0]  # the largest comes first
    assert both.types[both.roots].tolist() == [3, 3]  # no soma anywhere
    two_long = trace(mask, min_tree_length=DEFAULT_MIN_TREE_LENGTH / 4)
    assert len(two_long.roots) == 2


def comb_and_fibre(comb_p: float, fibre_p: float, neuron_p: float = 0.95) -> np.ndarray:
    """A map of a sure neuron (a straight tube along x), a separate comb (a 40-voxel back with
    six 10-voxel teeth: 7 tips on 100 voxels of cable, as speckle chains up) at ``comb_p`` and
    a separate straight fibre (one tip on 60 voxels) at ``fibre_p``."""
    shape = (20, 80, 120)
    neuron = tree_of([[10, 10, 10], [110, 10, 10]], [2.0, 2.0], [-1, 1])
    back = [[40 + 8 * k, 40, 10] for k in range(6)]
    comb = tree_of([[36, 40, 10], *back, *([x, 50, 10] for x, _, _ in back)], [1.2] * 13,
                   [-1, 1, 2, 3, 4, 5, 6, 2, 3, 4, 5, 6, 7])
    fibre = tree_of([[30, 70, 10], [90, 70, 10]], [1.5, 1.5], [-1, 1])
    prob = np.zeros(shape, np.float32)
    for tree, p in ((neuron, neuron_p), (comb, comb_p), (fibre, fibre_p)):
        prob[render_mask(tree, shape)] = p
    return prob


def test_an_unsure_much_branched_tree_is_dropped_as_speckle():
    def kept(traced):  # which of neuron (y 10), comb (y 40-50), fibre (y 70) were traced
        y = traced.xyz[traced.roots, 1]
        return {name for name, (lo, hi) in {"neuron": (0, 20), "comb": (30, 60),
                                           "fibre": (60, 80)}.items()
                if np.any((y >= lo) & (y <= hi))}

    unsure = trace(comb_and_fibre(0.55, 0.55))
    assert kept(unsure) == {"neuron", "fibre"}  # the dim fibre has too few tips to be speckle
    assert any("dropped 1 separate tree(s) that look like speckle" in c
               for c in unsure.comments)
    assert kept(trace(comb_and_fibre(0.9, 0.55))) == {"neuron", "comb", "fibre"}  # sure
    assert kept(trace(comb_and_fibre(0.55, 0.55), keep_fragments=True)) == {
        "neuron", "comb", "fibre"}
    # the largest tree is never dropped, however unsure
    assert kept(trace(comb_and_fibre(0.55, 0.0, neuron_p=0.0))) == {"comb"}


def neuron_with_side(side_p: float, comb: bool, neuron_p: float = 0.95) -> np.ndarray:
    """A map of a sure neuron (a 130-voxel tube along x at y 10) with, hanging off it at x 60,
    either a comb (a back up y to y 40 with five 10-voxel teeth along x: 5 tips on 78 voxels of
    cable, as speckle chains up off a neuron) or a plain side branch of the same reach, at
    ``side_p``."""
    shape = (20, 60, 150)
    neuron = tree_of([[5, 10, 10], [135, 10, 10]], [2.0, 2.0], [-1, 1])
    teeth = [16, 22, 28, 34, 40]
    if comb:
        side = tree_of([[60, 12, 10], [60, 40, 10], *([60, y, 10] for y in teeth),
                        *([70, y, 10] for y in teeth)], [1.2] * 12,
                       [-1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 7])
    else:
        side = tree_of([[60, 12, 10], [60, 40, 10], [70, 40, 10]], [1.2] * 3, [-1, 1, 2])
    prob = np.zeros(shape, np.float32)
    for tree, p in ((side, side_p), (neuron, neuron_p)):
        prob[render_mask(tree, shape)] = p
    return prob


def test_an_unsure_much_branched_branch_is_removed_as_speckle():
    def reach(traced):  # how far up y the trace goes
        return float(traced.xyz[:, 1].max())

    unsure = trace(neuron_with_side(0.5, comb=True))
    assert len(unsure.roots) == 1 and reach(unsure) < 15  # the neuron alone
    assert any("removed 1 branch(es) that look like speckle" in c for c in unsure.comments)
    assert reach(trace(neuron_with_side(0.9, comb=True))) > 38  # sure: a real arbor
    assert reach(trace(neuron_with_side(0.5, comb=False))) > 38  # dim, but hardly branched
    assert reach(trace(neuron_with_side(0.5, comb=True), keep_fragments=True)) > 38
    # a raw image's dim arbor is as unsure as the comb by this measure: kept
    image = (neuron_with_side(0.5, comb=True) * 200).astype(np.uint8)
    assert reach(trace(image, kind="image")) > 38


def test_a_short_spur_is_pruned_and_a_real_branch_kept():
    r = 2.0
    spur_tip = 2.0 + DEFAULT_PRUNE_LENGTH / 2  # sticks out of the trunk by half the limit
    branch_tip = 20.0
    gold = tree_of([[10, 20, 15], [30, 20, 15], [80, 20, 15], [30, 20 + r + branch_tip, 15],
                    [60, 20, 15], [60, 20 - r - spur_tip, 15]],
                   [r, r, r, 1.5, r, 1.5], [-1, 1, 2, 2, 3, 5])
    traced = trace(render_mask(gold, (30, 50, 90)))
    children = children_count(traced)
    assert (children >= 2).sum() == 1
    assert traced.xyz[:, 1].max() >= 20 + r + branch_tip - 2  # the branch reaches its tip
    assert traced.xyz[:, 1].min() >= 20 - 1.5  # no spur below the trunk
    unpruned = trace(render_mask(gold, (30, 50, 90)), prune_length=0, spur_radii=0)
    assert unpruned.xyz[:, 1].min() < 20 - r  # the spur is in the skeleton


@pytest.mark.parametrize("r", [2.0, 3.0, 4.0])
def test_radii_match_the_tube_radius(r):
    traced = trace(render_mask(tube(r=r), TUBE_SHAPE))
    middle = (traced.xyz[:, 0] > 20) & (traced.xyz[:, 0] < 70)
    assert np.median(traced.radius[middle]) == pytest.approx(r, abs=0.3)


def ball_on_tube(soma_x: float, soma_r: float, tips=(10.0, 85.0), r: float = 2.0) -> SwcTree:
    """A soma ball on a tube along x: the neurites narrow to ``r`` a voxel outside the ball."""
    xs = [soma_x, soma_x - soma_r - 1, tips[0], soma_x + soma_r + 1, tips[1]]
    return tree_of([[x, AXIS_Y, AXIS_Z] for x in xs], [soma_r, r, r, r, r], [-1, 1, 2, 1, 4])


def test_the_root_is_the_soma_of_a_ball_on_a_tube():
    soma = np.array([55.0, AXIS_Y, AXIS_Z])
    # The tube leaves the stack at x = 0, but a soma is the better root.
    traced = trace(render_mask(ball_on_tube(soma[0], 7.0, tips=(-5.0, 85.0)), TUBE_SHAPE))
    root = traced.roots[0]
    assert root == 0 and traced.types[0] == 1 and (traced.types[1:] == 3).all()
    assert np.linalg.norm(traced.xyz[root] - soma) <= 1.5
    assert traced.radius[root] == pytest.approx(7.0, abs=1.0)
    assert traced.comments[-1].startswith("root: soma at (55")


def test_a_given_root_is_used_and_snapped_within_reach():
    mask = render_mask(tube(), TUBE_SHAPE)
    traced = trace(mask, root=(70, AXIS_Y, AXIS_Z))
    assert np.linalg.norm(traced.xyz[0] - (70, AXIS_Y, AXIS_Z)) <= 1.0
    assert traced.types[0] == 1 and traced.comments[-1].startswith("root: given at (70")
    near = trace(mask, root=(70, AXIS_Y + 5, AXIS_Z))  # 3 voxels off the surface
    assert np.linalg.norm(near.xyz[0] - (70, AXIS_Y, AXIS_Z)) <= 1.0
    with pytest.raises(InputError, match="from the nearest traced neurite"):
        trace(mask, root=(70, AXIS_Y + 15, AXIS_Z))
    with pytest.raises(InputError, match="outside the stack"):
        trace(mask, root=(200, AXIS_Y, AXIS_Z))


def test_anisotropic_spacing_along_z():
    spacing = (2.0, 1.0, 1.0)
    start, end = (20.0, 20.0, 5.0), (20.0, 20.0, 35.0)  # 30 z voxels = 60 x voxels
    gold = tree_of([start, end], [3.0, 3.0], [-1, 1])
    traced = trace(render_mask(gold, (41, 40, 40), spacing=spacing), spacing)
    # Thinning stops up to one voxel inside each rounded tip: here a z voxel, 2 x voxels.
    assert 60.0 - 2 * 2.0 <= cable(traced, spacing) <= 61.0
    assert distance_to_segment(traced.xyz, start, end).max() <= 1.0
    middle = (traced.xyz[:, 2] > 10) & (traced.xyz[:, 2] < 30)
    assert np.median(traced.radius[middle]) == pytest.approx(3.0, abs=0.3)
    assert len(traced) == pytest.approx(60 / 2 + 1, abs=3)  # every ~2 x voxels = 1 z voxel


@pytest.mark.parametrize("method", METHODS)
def test_written_swc_is_what_viewers_expect(tmp_path, method):
    ball = ball_on_tube(55.0, 8.0)  # twice as thick as a z voxel (3 x voxels)
    gold = tree_of([*ball.xyz, [55, AXIS_Y + 7, AXIS_Z], [55, 35, AXIS_Z]],
                   [*ball.radius, 2.0, 2.0], [*ball.parents, 1, 6])
    mask = write_volume(tmp_path / "mask.tif", render_mask(gold, TUBE_SHAPE).astype(np.uint8),
                        spacing=(1.5, 0.5, 0.5))
    written = trace_file(mask, tmp_path / "n.swc", method=method)
    tree = read_swc(tmp_path / "n.swc")
    assert np.array_equal(tree.ids, np.arange(1, len(tree) + 1))
    parent = tree.parent_index
    assert (parent < np.arange(len(tree))).all()
    assert tree.parents.tolist().count(-1) == 1 and tree.parents[0] == -1
    assert tree.types[0] == 1 and (tree.types[1:] == 3).all()
    assert any("spacing (z, y, x): (1.5, 0.5, 0.5)" in c for c in tree.comments)
    assert any(f"method {method}" in c for c in tree.comments)
    assert np.allclose(tree.xyz, written.xyz, atol=1e-3)


def test_navis_reads_the_written_swc(tmp_path):
    navis = pytest.importorskip("navis")
    mask = write_volume(tmp_path / "mask.tif", render_mask(tube(), TUBE_SHAPE).astype(np.uint8))
    trace_file(mask, tmp_path / "n.swc")
    neuron = navis.read_swc(tmp_path / "n.swc")
    assert neuron.n_nodes == len(read_swc(tmp_path / "n.swc")) and neuron.n_trees == 1


def test_an_empty_map_gives_an_empty_swc_and_a_warning(tmp_path):
    path = write_volume(tmp_path / "prob.tif", np.zeros((8, 16, 16), np.float32))
    with pytest.warns(EmptyTraceWarning, match="empty"):
        tree = trace_file(path, tmp_path / "empty.swc")
    assert len(tree) == 0
    lines = (tmp_path / "empty.swc").read_text().splitlines()
    assert lines and all(line.startswith("#") for line in lines)


def test_a_mostly_foreground_map_is_refused():
    with pytest.raises(InputError, match="foreground"):
        trace(np.ones((8, 16, 16), np.float32))


def test_probability_encodings():
    assert as_probability(np.array([[[0, 1]]], np.uint8)).tolist() == [[[0.0, 1.0]]]
    assert as_probability(np.array([[[0, 255]]], np.uint8)).tolist() == [[[0.0, 1.0]]]
    assert as_probability(np.array([[[1, 255]]], np.uint8), "probability")[0, 0, 0] == \
        pytest.approx(1 / 255)
    assert as_probability(np.array([[[65535]]], np.uint16))[0, 0, 0] == 1.0
    assert as_probability(np.array([[[0, 7]]], np.uint16), "mask").tolist() == [[[0.0, 1.0]]]
    twelve_bit = np.linspace(0, 4095, 1000).astype(np.uint16).reshape(10, 10, 10)
    image = as_probability(twelve_bit, "image")  # 0 at the 1st percentile, 1 at the 99.9th
    assert image.min() == 0.0 and image.max() == 1.0
    assert image[5, 0, 0] == pytest.approx((twelve_bit[5, 0, 0] - np.percentile(twelve_bit, 1))
                                           / np.ptp(np.percentile(twelve_bit, [1, 99.9])),
                                           abs=1e-3)
    for bad in (np.array([[[1.5]]]), np.array([[[np.nan]]]), np.array([[[-1]]], np.int16),
                np.zeros((4, 4))):
        with pytest.raises(InputError):
            as_probability(bad)


def test_trace_file_names_the_file_and_writes_nothing(tmp_path):
    with pytest.raises(InputError, match="missing.tif"):
        trace_file(tmp_path / "missing.tif", tmp_path / "a.swc")
    flat = write_volume(tmp_path / "flat.tif", np.ones((8, 16, 16), np.float32))
    with pytest.raises(InputError, match="flat.tif"):
        trace_file(flat, tmp_path / "a.swc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.tif"]


# --- noisy maps, several neurons, raw images ----------------------------------------------


def rough_blurred(mask: np.ndarray, seed: int, roughness: float = 0.3) -> np.ndarray:
    """A map as a network gives on a blurry stack: fatter than ``mask`` (p = 0.25 about three
    voxels outside it), soft, and with a bumpy surface (a smooth random gain of ``roughness``
    standard deviation)."""
    rng = np.random.default_rng(seed)
    grain = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0)
    gain = 1 + roughness * grain / grain.std()
    return np.clip(ndimage.gaussian_filter(mask.astype(np.float32), 2.0) * 3.0 * gain, 0, 1)


def ends(tree: SwcTree) -> int:
    """Terminal nodes: the leaves, and the roots with one child."""
    children = children_count(tree)
    return int((children == 0).sum() + (children[tree.roots] == 1).sum())


def test_noise_specks_and_small_blobs_are_removed_not_traced():
    """Without the bead rule (``link_beads``): this clutter of sure blobs, about one in every
    18^3 voxels, lines up by chance into rows that the rule would join (test_beads.py)."""
    rng = np.random.default_rng(0)
    prob = render_mask(tube(), TUBE_SHAPE).astype(np.float32) * 0.9
    prob.flat[rng.integers(0, prob.size, 400)] = 0.9  # isolated voxels, some on the surface
    for z, y, x in rng.integers(0, np.subtract(TUBE_SHAPE, 5), (20, 3)):
        if abs(y + 1 - AXIS_Y) > 6 or abs(z + 1 - AXIS_Z) > 6:  # off the tube
            prob[z:z + 3, y:y + 3, x:x + 5] = 0.9  # a few voxels of centre line: debris
    traced = trace(prob, link_beads=False)
    assert len(traced.roots) == 1 and ends(traced) == 2
    assert distance_to_segment(traced.xyz, *STRAIGHT).max() <= 1.0
    assert any("as noise" in c for c in traced.comments)
    assert len(trace(prob, min_piece_length=0, keep_fragments=True, link_beads=False).roots) > 1


def test_a_blob_beyond_a_gap_is_bridged_unless_min_piece_length_calls_it_noise():
    prob = render_mask(tube(x1=68.0), TUBE_SHAPE).astype(np.float32) * 0.9  # cap ends at 70
    near = slice(int(AXIS_Z) - 1, int(AXIS_Z) + 2), slice(int(AXIS_Y) - 1, int(AXIS_Y) + 2)
    prob[(*near, slice(71, 73))] = 0.2  # evidence above gap_floor in the gap
    prob[(*near, slice(73, 79))] = 0.9  # a blob with 5 voxels of centre line, in line: a bead
    assert trace(prob).xyz[:, 0].max() >= 76
    assert trace(prob, min_piece_length=10).xyz[:, 0].max() <= 70  # noise: never bridged


def test_a_beaded_fibre_of_short_pieces_is_traced_whole():
    """Beads of 6 voxels, 3-voxel dim gaps between (evidence below gap_floor, so only bridges
    along the fibre's direction join them): no piece has 10 voxels of centre line, yet the
    fibre is one tree from the first bead to the last."""
    prob = np.zeros(TUBE_SHAPE, np.float32)
    near = slice(int(AXIS_Z) - 1, int(AXIS_Z) + 2), slice(int(AXIS_Y) - 1, int(AXIS_Y) + 2)
    prob[(*near, slice(10, 80))] = 0.05
    starts = range(10, 75, 9)
    for x in starts:
        prob[(*near, slice(x, x + 6))] = 0.9
    traced = trace(prob)
    assert len(traced.roots) == 1 and ends(traced) == 2
    assert traced.xyz[:, 0].min() <= 11 and traced.xyz[:, 0].max() >= starts[-1] + 4
    assert distance_to_segment(traced.xyz, *STRAIGHT).max() <= 1.0
    with pytest.warns(EmptyTraceWarning):  # beads shorter than min_piece_length: noise ...
        assert not len(trace(prob, min_piece_length=10, link_beads=False))
    row = trace(prob, min_piece_length=10)  # ... unless the bead rule joins them first
    assert len(row.roots) == 1 and row.xyz[:, 0].max() - row.xyz[:, 0].min() >= starts[-1] - 10


@pytest.mark.parametrize("seed", range(3))
def test_a_fat_rough_tube_traces_without_spurs(seed):
    prob = rough_blurred(render_mask(tube(), TUBE_SHAPE), seed)
    traced = trace(prob)
    assert len(traced.roots) == 1 and ends(traced) == 2
    # The rough map's own centre wanders by a voxel or two; a spur would reach past its surface.
    assert distance_to_segment(traced.xyz, *STRAIGHT).max() <= 3.0
    assert cable(traced) <= STRAIGHT_LENGTH


@pytest.mark.parametrize("method", METHODS)
def test_a_hollow_tube_traces_to_one_path(method):
    """A dim core (a soma's nucleus, say) would thin to a shell and a tangle of loops, and
    minimal paths would run round it in the shell."""
    outer = render_mask(tube(r=4.0), TUBE_SHAPE)
    core = render_mask(tube(x0=20.0, x1=70.0, r=1.5), TUBE_SHAPE)
    traced = trace(outer & ~core, method=method)
    assert len(traced.roots) == 1 and ends(traced) == 2
    assert distance_to_segment(traced.xyz, *STRAIGHT).max() <= 1.0


def speckled(mask: np.ndarray, seed: int, speckles: float = 0.01) -> np.ndarray:
    """A blurred map of ``mask`` (Gaussian sigma 1.5 voxels, doubled, so p = 0.25 about a voxel
    outside it) with additive noise (sd 0.05) and a fraction ``speckles`` of voxels set to
    isolated specks of p 0.3-0.7, some of them touching the neurite."""
    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(mask.astype(np.float32), 1.5) * 2.0
    prob += rng.normal(0.0, 0.05, mask.shape)
    specks = rng.random(mask.shape) < speckles
    prob[specks] = rng.uniform(0.3, 0.7, int(specks.sum()))
    return np.clip(prob, 0, 1).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_speck_pairs_beside_a_tube_are_not_hung_on_it_as_spurs(seed):
    """At 1 % of voxels, a quarter of the specks touch another. The default min_piece_length
    removes such pairs too; at 1 they are kept, and bridges hang them on the tube as spurs."""
    prob = speckled(render_mask(tube(), TUBE_SHAPE), seed)
    traced = trace(prob)
    assert len(traced.roots) == 1 and ends(traced) == 2
    assert ends(trace(prob, min_piece_length=1)) > 2


@pytest.mark.parametrize("seed", range(4))
def test_geodesic_traces_a_speckled_blurred_tube_without_spurs(seed):
    traced = trace(speckled(render_mask(tube(), TUBE_SHAPE), seed), method="geodesic")
    assert len(traced.roots) == 1 and ends(traced) == 2
    middle = np.abs(traced.xyz[:, 0] - 45.0) < 30.0  # away from the rounded ends
    off_axis = np.hypot(traced.xyz[middle, 1] - AXIS_Y, traced.xyz[middle, 2] - AXIS_Z)
    assert off_axis.max() <= 1.0  # no twig into a speck touching the tube
    children = children_count(traced)
    tips = traced.xyz[(children == 0) | (traced.parents == -1)]
    for end in STRAIGHT:  # each end reached, give or take the blurred map's fatter cap
        assert np.linalg.norm(tips - end, axis=1).min() <= 4.0
    assert cable(traced) == pytest.approx(STRAIGHT_LENGTH, rel=0.1)


def test_geodesic_keeps_a_short_stretch_beyond_the_thickest_point():
    """Minimal paths start at the thickest point, which covers the neurite around it; the
    short stretch beyond that cover extends the line, so it is kept however short."""
    gold = tree_of([[10, AXIS_Y, AXIS_Z], [16, AXIS_Y, AXIS_Z], [80, AXIS_Y, AXIS_Z]],
                   [2.0, 4.0, 2.0], [-1, 1, 2])
    traced = trace(render_mask(gold, TUBE_SHAPE), method="geodesic")
    assert ends(traced) == 2 and traced.xyz[:, 0].min() <= 12.5  # without: the bulge, 16


def test_geodesic_runs_a_neurite_cut_by_the_stack_to_the_face_and_stops_inside_a_cap():
    gold = tree_of([[-5, AXIS_Y, AXIS_Z], [60, AXIS_Y, AXIS_Z]], [2.0, 2.0], [-1, 1])
    traced = trace(render_mask(gold, TUBE_SHAPE), method="geodesic")
    assert traced.xyz[:, 0].min() <= 0.5  # no cap where the stack cuts the neurite
    assert traced.xyz[:, 0].max() == pytest.approx(60, abs=1.0)  # the rounded end's centre
    assert traced.comments[-1].startswith("root: end leaving the stack")


def test_geodesic_graph_is_a_forest_of_neighbouring_voxels_one_tree_per_piece():
    """The format of the thinning graph, which the rest of the tracer takes."""
    from dineuro.trace._geodesic import geodesic_graph

    gold = tree_of([[10, 10, AXIS_Z], [80, 10, AXIS_Z], [10, 30, AXIS_Z], [50, 38, 5]],
                   [2.0, 2.0, 1.5, 1.5], [-1, 1, -1, 3])
    mask = render_mask(gold, TUBE_SHAPE)
    mask[2, 2, 2] = True  # a lone voxel holds no path
    scale = np.array([2.0, 1.0, 1.0])
    zyx, edges = geodesic_graph(mask, scale)
    assert zyx.dtype == np.float64 and edges.dtype == np.int64
    assert mask[tuple(zyx.astype(int).T)].all() and len(np.unique(zyx, axis=0)) == len(zyx)
    step = np.abs(zyx[edges[:, 0]] - zyx[edges[:, 1]])
    assert step.max() == 1 and step.sum(axis=1).min() >= 1  # 26-neighbours, no self-loops
    labels = ndimage.label(mask, np.ones((3, 3, 3)))[0]
    count, tree_of_node = csgraph.connected_components(
        coo_matrix((np.ones(len(edges)), edges.T), shape=(len(zyx),) * 2), directed=False)
    assert count == 2 and len(edges) == len(zyx) - 2  # two trees, no cycles
    piece = labels[tuple(zyx.astype(int).T)]
    assert all(len(np.unique(piece[tree_of_node == k])) == 1 for k in range(count))


def test_an_unknown_method_is_refused():
    with pytest.raises(InputError, match=r"^method should be one of thinning, geodesic, not "
                                         r"'teasar'\.$"):
        trace(render_mask(tube(), TUBE_SHAPE), method="teasar")


def test_a_fat_rough_y_keeps_its_branches():
    fork = np.array([40.0, 30.0, 15.0])
    tips = [[10, 30, 15], [70, 8, 15], [70, 52, 15]]
    gold = tree_of([tips[0], fork, *tips[1:]], [2.0] * 4, [-1, 1, 2, 2])
    traced = trace(rough_blurred(render_mask(gold, (30, 60, 80)), 0))
    children = children_count(traced)
    assert ends(traced) == 3 and (children >= 2).sum() == 1
    assert np.linalg.norm(traced.xyz[children >= 2] - fork, axis=1).max() <= 3.5
    tree_ends = traced.xyz[(children == 0) | (traced.parents == -1)]
    for tip in tips:  # each branch reaches its tip, less the fatter map's rounder cap
        assert np.linalg.norm(tree_ends - tip, axis=1).min() <= 6.0


def test_a_twig_shorter_than_a_few_radii_of_a_thick_neurite_is_a_spur():
    r, reach = 4.0, 4.0 + DEFAULT_PRUNE_LENGTH + 2  # sticks out more than prune_length
    assert reach < DEFAULT_SPUR_RADII * r
    gold = tree_of([[10, AXIS_Y, AXIS_Z], [45, AXIS_Y, AXIS_Z], [80, AXIS_Y, AXIS_Z],
                    [45, AXIS_Y + reach, AXIS_Z]], [r, r, r, 1.5], [-1, 1, 2, 2])
    mask = render_mask(gold, TUBE_SHAPE)
    assert trace(mask).xyz[:, 1].max() <= AXIS_Y + 1
    assert trace(mask, spur_radii=0).xyz[:, 1].max() >= AXIS_Y + reach - 2


def test_separate_neurons_without_soma_are_rooted_where_they_leave_the_stack():
    y_max = TUBE_SHAPE[1] - 1
    gold = tree_of([[-5, 10, AXIS_Z], [60, 10, AXIS_Z], [75, y_max + 5, AXIS_Z], [75, 5, AXIS_Z]],
                   [2.0] * 4, [-1, 1, -1, 3])
    traced = trace(render_mask(gold, TUBE_SHAPE))
    assert len(traced.roots) == 2 and (traced.types[traced.roots] == 3).all()
    first, second = traced.xyz[traced.roots]
    assert first[0] <= 3.0 and first[1] == pytest.approx(10, abs=1)  # the longer tube first
    assert second[1] >= y_max - 3.0 and second[0] == pytest.approx(75, abs=1)
    assert sum(c.startswith("root: end leaving the stack") for c in traced.comments) == 2


@pytest.mark.parametrize("thick_x", [15.0, 75.0])
def test_a_tube_inside_the_stack_is_rooted_at_its_thickest_end(thick_x):
    thin_x = 90.0 - thick_x
    gold = tree_of([[thick_x, AXIS_Y, AXIS_Z], [thin_x, AXIS_Y, AXIS_Z]], [3.5, 1.5], [-1, 1])
    traced = trace(render_mask(gold, TUBE_SHAPE))
    assert traced.types[0] == 3 and abs(traced.xyz[0, 0] - thick_x) <= 4.0
    assert traced.comments[-1].startswith("root: thickest end")


def test_a_thick_trunk_beside_a_thin_arbor_is_no_soma():
    trunk_r, thin_r = 4.0, 1.5
    gold = tree_of([[-5, 20, 15], [40, 20, 15], [45, 17, 15], [80, 3, 15], [45, 23, 15],
                    [80, 37, 15]], [trunk_r, trunk_r, thin_r, thin_r, thin_r, thin_r],
                   [-1, 1, 2, 3, 2, 5])
    traced = trace(render_mask(gold, TUBE_SHAPE))
    assert traced.radius.max() >= 2 * np.median(traced.radius)  # as thick as a soma ...
    assert traced.types[0] == 3 and traced.xyz[0, 0] <= 3.0  # ... but long: not one
    assert traced.comments[-1].startswith("root: end leaving the stack")


def test_a_raw_12_bit_image_traces_with_kind_image():
    rng = np.random.default_rng(0)
    image = rng.normal(200.0, 30.0, TUBE_SHAPE)
    image[render_mask(tube(), TUBE_SHAPE)] += 3000.0
    image = np.clip(image, 0, 4095).astype(np.uint16)
    with pytest.warns(EmptyTraceWarning, match="kind 'image'"):
        assert len(trace(image)) == 0  # as a probability it is at most 4095 / 65535
    traced = trace(image, kind="image")
    assert len(traced.roots) == 1 and ends(traced) == 2
    assert distance_to_segment(traced.xyz, *STRAIGHT).max() <= 1.0
    assert cable(traced) == pytest.approx(STRAIGHT_LENGTH, rel=0.04)


# --- command line -------------------------------------------------------------------------


def test_cli_trace_writes_a_tree_and_refuses_to_overwrite(tmp_path):
    mask = write_volume(tmp_path / "mask.tif", render_mask(tube(), TUBE_SHAPE).astype(np.uint8))
    out = tmp_path / "n.swc"
    result = invoke("trace", mask, "-o", out, "--root", f"70,{AXIS_Y:g},{AXIS_Z:g}")
    assert result.code == 0, result.err
    tree = read_swc(out)
    assert np.linalg.norm(tree.xyz[0] - (70, AXIS_Y, AXIS_Z)) <= 1.0
    forks = int((children_count(tree) >= 2).sum())  # the root, mid-tube, has two children
    assert forks == 1
    assert f"1 tree(s), {len(tree)} nodes, {forks} branch points" in " ".join(result.err.split())
    before = out.read_bytes()
    again = invoke("trace", mask, "-o", out)
    assert again.code == 2 and "already exists" in again.err and out.read_bytes() == before


@pytest.mark.parametrize("case", ["missing", "2d", "bad root", "far root"])
def test_cli_trace_bad_input_is_one_sentence_and_exit_2(tmp_path, case):
    import tifffile

    mask = write_volume(tmp_path / "mask.tif", render_mask(tube(), TUBE_SHAPE).astype(np.uint8))
    args = {"missing": (tmp_path / "none.tif",),
            "2d": (tmp_path / "flat2d.tif",),
            "bad root": (mask, "--root", "1,2"),
            "far root": (mask, "--root", "70,39,15")}[case]
    if case == "2d":
        tifffile.imwrite(tmp_path / "flat2d.tif", np.zeros((16, 16), np.uint8))
    result = invoke("trace", *args, "-o", tmp_path / "out.swc")
    assert result.code == 2, result.err
    assert len(result.err_lines) == 1 and "Traceback" not in result.err
    assert not (tmp_path / "out.swc").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    if case in ("missing", "2d"):
        assert str(args[0].name) in result.err


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained tiny network whose output layer says "background" everywhere."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("tiny", "scratch", crop=(16, 32, 32), patch=(8, 16, 16))
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([5.0, -5.0]))
    path = save_checkpoint(tmp_path_factory.mktemp("model") / "net.pt", model,
                           normalization={"method": "percentile", "low": 1.0, "high": 99.9})
    yield path
    torch.set_num_threads(threads)


def test_cli_run_predicts_and_traces_every_stack(tiny_checkpoint, tmp_path):
    stacks = tmp_path / "stacks"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_volume(stacks / f"{name}.tif", rng.integers(0, 255, (8, 24, 24), dtype=np.uint8),
                     spacing=(2.0, 0.5, 0.5))
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = invoke("run", tiny_checkpoint, stacks, "-o", out, "--device", "cpu")
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == [
        "a.swc", "a_mask.tif", "a_prob.tif", "b.swc", "b_mask.tif", "b_prob.tif"]
    assert "warning: a.tif: " in result.err and "empty" in result.err  # names the stack
    predicted = invoke("predict", tiny_checkpoint, stacks / "a.tif", "-o", tmp_path / "pred",
                       "--device", "cpu")
    assert predicted.code == 0, predicted.err
    for suffix in ("_prob.tif", "_mask.tif"):
        ran, alone = read_volume(out / f"a{suffix}"), read_volume(tmp_path / "pred" /
                                                                   f"a{suffix}")
        assert np.array_equal(ran.array, alone.array) and ran.spacing == alone.spacing
    assert "spacing (z, y, x): (2.0, 0.5, 0.5)" in (out / "a.swc").read_text()
    (out / "b.swc").unlink()
    again = invoke("run", tiny_checkpoint, stacks, "-o", out, "--device", "cpu")
    assert again.code == 2 and "already exists" in again.err
    assert not (out / "b.swc").exists()


@pytest.mark.parametrize("seed", [0, 1])
def test_hysteresis_equals_scikit_image(seed):
    from skimage.filters import apply_hysteresis_threshold

    from dineuro.trace._centre_lines import hysteresis

    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(rng.random((20, 40, 30)), 1.2).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    expected = apply_hysteresis_threshold(prob, 0.5, 0.7)
    assert expected.any() and (prob > 0.5).sum() > expected.sum()  # some pieces lack a high
    np.testing.assert_array_equal(hysteresis(prob, 0.5, 0.7), expected)
