"""traced_mask: the pieces of a mask that a trace runs through, checked on hand-made masks and
against exact point-to-segment distances on random ones."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dineuro.io.swc import SwcTree
from dineuro.io.swc_units import in_micrometres
from dineuro.trace import traced_mask


def chain(points_zyx) -> SwcTree:
    """One unbranched tree through the (z, y, x) points, in order."""
    xyz = np.asarray(points_zyx, float)[:, ::-1]
    n = len(xyz)
    return SwcTree(np.arange(1, n + 1), np.full(n, 3), xyz, np.ones(n),
                   np.r_[-1, np.arange(1, n)])


def test_keeps_the_traced_fibre_whole_and_drops_the_rest():
    mask = np.zeros((5, 20, 30), bool)
    mask[2, 5, 2:28] = True                      # the traced fibre
    mask[2, 6, 10:13] = True                     # a bulge on it: part of the same piece
    mask[2, 15, 2:28] = True                     # another fibre, 10 voxels away
    mask[0, 0, 0] = mask[4, 19, 29] = True       # specks
    tree = chain([(2, 5, 4), (2, 5, 25)])        # nodes only at the ends
    kept = traced_mask(mask, tree)
    expected = np.zeros_like(mask)
    expected[2, 5, 2:28] = True
    expected[2, 6, 10:13] = True
    np.testing.assert_array_equal(kept, expected)


def test_a_piece_between_two_nodes_is_kept():
    """The cable, not only its nodes: a bead halfway along a long edge whose ends lie in
    background is kept."""
    mask = np.zeros((3, 5, 41), bool)
    mask[1, 2, 17:19] = True
    kept = traced_mask(mask, chain([(1, 2, 0), (1, 2, 40)]))
    np.testing.assert_array_equal(kept, mask)


@pytest.mark.parametrize(("offset", "kept"), [((0, 1, 1), True), ((1, 1, 1), True),
                                               ((0, 2, 0), False), ((0, 0, 2), False)])
def test_reach_is_the_26_neighbourhood_of_the_cable(offset, kept):
    """A single voxel beside a node: kept one voxel off in every axis, dropped two off."""
    mask = np.zeros((7, 7, 7), bool)
    mask[tuple(np.add((3, 3, 3), offset))] = True
    tree = chain([(3, 3, 3), (3, 3, 3.2)])
    assert traced_mask(mask, tree).any() == kept


def test_a_tree_in_micrometres_gives_what_it_gives_in_voxels():
    rng = np.random.default_rng(3)
    mask = rng.random((12, 30, 30)) > 0.9
    tree = chain([(2, 3, 4), (6, 15, 10), (10, 25, 27)])
    np.testing.assert_array_equal(traced_mask(mask, in_micrometres(tree, (2.5, 0.4, 0.4))),
                                  traced_mask(mask, tree))


def test_an_empty_trace_keeps_nothing_and_the_input_is_not_changed():
    mask = np.ones((4, 4, 4), bool)
    assert not traced_mask(mask, SwcTree([], [], np.zeros((0, 3)), [], [])).any()
    tree = chain([(1, 1, 1), (2, 2, 2)])
    kept = traced_mask(mask, tree)
    assert kept.all() and mask.all() and kept is not mask


def _distance_to_segments(points: np.ndarray, starts: np.ndarray, stops: np.ndarray):
    """Euclidean distance of each point (N, 3) to the nearest segment (M, 3 each)."""
    d = stops - starts
    t = np.einsum("nmk,mk->nm", points[:, None] - starts[None], d)
    t = np.clip(t / np.maximum((d * d).sum(1), 1e-12), 0, 1)
    nearest = starts[None] + t[..., None] * d[None]
    return np.linalg.norm(points[:, None] - nearest, axis=2).min(axis=1)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_exact_distances_on_random_masks(seed):
    """Against a brute-force distance from every voxel to every edge: a piece the cable passes
    through (a voxel within 0.5 of it) is kept, a piece whose voxels all lie beyond the reach
    (1.5 voxels in every axis, so farther than 1.5 * sqrt(3)) is dropped, and pieces are kept
    or dropped whole."""
    rng = np.random.default_rng(seed)
    shape = (10, 24, 24)
    mask = ndimage.binary_opening(rng.random(shape) > 0.75) | (rng.random(shape) > 0.985)
    nodes = rng.uniform(0, np.subtract(shape, 1), size=(6, 3))
    parents = np.r_[-1, [rng.integers(0, k) for k in range(1, 6)]]
    tree = SwcTree(np.arange(1, 7), np.full(6, 3), nodes[:, ::-1], np.ones(6),
                   np.where(parents < 0, -1, parents + 1))
    kept = traced_mask(mask, tree)
    pieces, n = ndimage.label(mask, np.ones((3, 3, 3)))
    child = np.arange(1, 6)
    for label in range(1, n + 1):
        voxels = np.argwhere(pieces == label).astype(float)
        near = _distance_to_segments(voxels, nodes[child], nodes[parents[child]]).min()
        inside = kept[pieces == label]
        assert inside.all() or not inside.any()
        if near <= 0.5:
            assert inside.all()
        if near > 1.5 * np.sqrt(3):
            assert not inside.any()
    assert not (kept & ~mask).any()
