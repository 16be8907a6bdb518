"""Rows of beads (small sure blobs, what a network sees of a varicose fibre) traced as fibres.

Each map is hand-made: cubes of 3x3x3 voxels (27, a bead) at known centres, nothing between
them. The expected cable is the distance from the first cube's centre to the last's, computed
here from those centres; which rows are joined follows from the rule's numbers in
:mod:`dineuro.defaults` (reach, turn, count, map), each case built to fall on one side of one.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dineuro.defaults import BEAD_MIN_COUNT, BEAD_MIN_MAP, BEAD_REACH
from dineuro.trace import EmptyTraceWarning, trace
from dineuro.trace._beads import join_bead_rows

SHAPE = (24, 48, 120)  # (z, y, x)
SURE = 0.9


def beads(centres, value=SURE, shape=SHAPE) -> np.ndarray:
    """A map with a 3x3x3 cube of ``value`` at each (z, y, x) centre."""
    prob = np.zeros(shape, np.float32)
    for z, y, x in np.asarray(centres, dtype=int):
        prob[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] = value
    return prob


def cable(tree) -> float:
    """Length of all edges of a traced tree, in x voxels with z scaled as given to trace."""
    index = {int(i): k for k, i in enumerate(tree.ids)}
    child = [k for k, p in enumerate(tree.parents) if p >= 0]
    parent = [index[int(tree.parents[k])] for k in child]
    return float(np.linalg.norm(tree.xyz[child] - tree.xyz[parent], axis=1).sum())


def quiet_trace(prob, spacing=(1.0, 1.0, 1.0), **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyTraceWarning)
        return trace(prob, spacing, kind="probability", **options)


# a slanted row: 7 beads, 9 voxels apart along x, rising 2 in y and 1 in z per step
ROW = [(8 + k // 2, 12 + 2 * k, 10 + 9 * k) for k in range(7)]
SPAN = float(np.linalg.norm(np.subtract(ROW[-1], ROW[0])))


def test_a_row_of_sure_beads_is_traced_as_one_fibre_and_said_so():
    prob = beads(ROW)
    apart = quiet_trace(prob, link_beads=False)
    assert cable(apart) < 0.2 * SPAN  # each bead is a speck: removed, or debris
    joined = quiet_trace(prob)
    assert joined.parents.tolist().count(-1) == 1
    assert SPAN - 3 <= cable(joined) <= SPAN + 4  # centre to centre, tips a voxel or so beyond
    assert "joined 1 row(s) of beads (small sure blobs in a line) into fibres" in joined.comments
    assert "link_beads True" in " ".join(joined.comments)


def test_unsure_beads_stay_apart():
    """Above the high threshold, below BEAD_MIN_MAP: what noise a little above it looks like."""
    value = (0.5 + BEAD_MIN_MAP) / 2
    assert join_bead_rows(beads(ROW, value) > 0.5, beads(ROW, value), (1.0, 1.0, 1.0))[1] == 0
    assert join_bead_rows(beads(ROW) > 0.5, beads(ROW), (1.0, 1.0, 1.0))[1] == 1


@pytest.mark.parametrize("step, joined", [(BEAD_REACH - 2, 1), (BEAD_REACH + 2, 0)])
def test_beads_join_only_within_reach(step, joined):
    centres = [(12, 24, 10 + round(step * k)) for k in range(BEAD_MIN_COUNT + 1)]
    prob = beads(centres)
    assert join_bead_rows(prob > 0.5, prob, (1.0, 1.0, 1.0))[1] == joined


def test_reach_is_physical_on_an_anisotropic_stack():
    """8 voxels apart along z at z spacing 2 is 16 x voxels, beyond reach; along x it is 8."""
    along_z = [(2 + 8 * k, 24, 60) for k in range(BEAD_MIN_COUNT)]
    along_x = [(12, 24, 10 + 8 * k) for k in range(BEAD_MIN_COUNT)]
    for centres, expected in ((along_z, 0), (along_x, 1)):
        prob = beads(centres, shape=(30, 48, 120))
        assert join_bead_rows(prob > 0.5, prob, (2.0, 1.0, 1.0))[1] == expected


def test_a_zig_zag_and_too_few_beads_are_not_a_row():
    """Turning back by 127 degrees at every bead cuts the path into pairs; two beads in reach
    are fewer than BEAD_MIN_COUNT."""
    zig = [(12, 20 + (8 if k % 2 else 0), 10 + 6 * k) for k in range(6)]
    prob = beads(zig)
    assert join_bead_rows(prob > 0.5, prob, (1.0, 1.0, 1.0))[1] == 0
    pair = beads(ROW[:BEAD_MIN_COUNT - 1])
    assert join_bead_rows(pair > 0.5, pair, (1.0, 1.0, 1.0))[1] == 0


def test_scattered_sure_blobs_are_not_joined():
    """Blobs at random places, every pair farther apart than reach: no row."""
    rng = np.random.default_rng(0)
    centres: list[np.ndarray] = []
    while len(centres) < 12:
        c = rng.integers((2, 2, 2), np.subtract(SHAPE, 2))
        if all(np.linalg.norm(c - o) > BEAD_REACH + 2 for o in centres):
            centres.append(c)
    prob = beads(centres)
    assert join_bead_rows(prob > 0.5, prob, (1.0, 1.0, 1.0))[1] == 0
    assert not any("row(s) of beads" in c for c in quiet_trace(prob).comments)


def test_a_raw_image_is_never_joined():
    """On a raw image such blobs are as often noise: the rule is for maps."""
    image = (beads(ROW) * 200).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyTraceWarning)
        tree = trace(image, kind="image")
    assert not any("row(s) of beads" in c for c in tree.comments)
