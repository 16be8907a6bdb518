"""Cutting a volume into blocks: ownership, regions, names, the halo's size, bad input.

Every expected value is computed here independently of :class:`BlockPlan`: ownership is
counted voxel by voxel with numpy, regions from the distance of each index to the owned box.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dineuro.errors import InputError
from dineuro.scale.plan import SEAM_MARGIN, BlockPlan, halo_for

# (shape, block, halo): shapes not divisible by the block, a block larger than the volume
# along an axis, blocks of one voxel, halos of 0 and halos wider than a block.
CASES = [
    ((7, 10, 13), (3, 4, 5), (1, 2, 0)),
    ((5, 9, 4), (5, 2, 8), (0, 3, 6)),
    ((1, 6, 11), (4, 1, 3), (2, 0, 1)),
    ((6, 6, 6), (2, 3, 6), (5, 5, 5)),
]


def region_by_distance(n: int, begin: int, end: int, halo: int) -> tuple[int, int]:
    """The indices of [0, n) at most ``halo`` from [begin, end), as [first, last + 1)."""
    index = np.arange(n)
    distance = np.maximum.reduce([begin - index, index - (end - 1), np.zeros(n, np.int64)])
    inside = np.flatnonzero(distance <= halo)
    return int(inside[0]), int(inside[-1]) + 1


@pytest.mark.parametrize(("shape", "block", "halo"), CASES)
def test_every_voxel_is_owned_by_exactly_one_block(shape, block, halo):
    plan = BlockPlan(shape, block, halo)
    owners = np.zeros(shape, np.int64)
    for b in plan.blocks():
        owners[b.box] += 1
        assert all(0 <= s < e <= n for s, e, n in zip(b.begin, b.end, shape, strict=True))
    assert owners.min() == owners.max() == 1
    expected = math.prod(-(-n // k) for n, k in zip(shape, block, strict=True))
    assert len(plan) == len(list(plan.blocks())) == expected
    assert plan.counts == tuple(-(-n // k) for n, k in zip(shape, block, strict=True))


@pytest.mark.parametrize(("shape", "block", "halo"), CASES)
def test_blocks_are_full_size_except_at_the_far_faces(shape, block, halo):
    plan = BlockPlan(shape, block, halo)
    for b in plan.blocks():
        for axis in range(3):
            size = b.end[axis] - b.begin[axis]
            last = b.index[axis] == plan.counts[axis] - 1
            assert size == (shape[axis] - b.begin[axis] if last else block[axis])
            assert b.begin[axis] == b.index[axis] * block[axis]


@pytest.mark.parametrize(("shape", "block", "halo"), CASES)
def test_region_is_the_owned_box_grown_by_the_halo_inside_the_volume(shape, block, halo):
    plan = BlockPlan(shape, block, halo)
    volume = np.arange(math.prod(shape)).reshape(shape)
    for b in plan.blocks():
        expected = [region_by_distance(n, s, e, h)
                    for n, s, e, h in zip(shape, b.begin, b.end, halo, strict=True)]
        assert b.region_begin == tuple(first for first, _ in expected)
        assert b.region_end == tuple(last for _, last in expected)
        # ``owned`` picks the box out of an array of the region.
        region = volume[tuple(slice(s, e) for s, e in zip(b.region_begin, b.region_end,
                                                         strict=True))]
        np.testing.assert_array_equal(region[b.owned], volume[b.box])


@pytest.mark.parametrize(("shape", "block", "halo"), CASES)
def test_names_are_unique_and_say_the_index_in_lattice_order(shape, block, halo):
    blocks = list(BlockPlan(shape, block, halo).blocks())
    names = [b.name for b in blocks]
    assert len(set(names)) == len(names)
    for b in blocks:
        assert b.name == f"z{b.index[0]}_y{b.index[1]}_x{b.index[2]}"
        assert all(c.isalnum() or c == "_" for c in b.name)
    indices = [b.index for b in blocks]
    assert indices == sorted(indices)  # z slowest, x fastest


def test_plan_examples_by_hand():
    plan = BlockPlan((10, 20, 30), block=(4, 20, 16), halo=(3, 5, 2))
    blocks = {b.name: b for b in plan.blocks()}
    assert sorted(blocks) == ["z0_y0_x0", "z0_y0_x1", "z1_y0_x0", "z1_y0_x1", "z2_y0_x0",
                              "z2_y0_x1"]
    middle = blocks["z1_y0_x1"]
    assert (middle.begin, middle.end) == ((4, 0, 16), (8, 20, 30))
    assert (middle.region_begin, middle.region_end) == ((1, 0, 14), (10, 20, 30))
    assert middle.owned == (slice(3, 7), slice(0, 20), slice(2, 16))


def test_plan_normalises_its_fields():
    plan = BlockPlan(np.array([8, 8, 8]), [4, 4, 4], np.array([1, 1, 1]))
    assert plan.shape == (8, 8, 8) and plan.block == (4, 4, 4) and plan.halo == (1, 1, 1)
    assert all(type(v) is int for v in (*plan.shape, *plan.block, *plan.halo))
    assert BlockPlan((8, 8, 8), 3, (0, 0, 0)).block == (3, 3, 3)  # an int: every axis


@pytest.mark.parametrize("shape", [(0, 5, 5), (5, 0, 5), (5, 5), (2, 5, 5, 5), (-1, 5, 5)])
def test_bad_shapes_are_refused(shape):
    with pytest.raises(InputError, match="shape"):
        BlockPlan(shape, (4, 4, 4), (1, 1, 1))


@pytest.mark.parametrize("block", [(0, 4, 4), (4, -2, 4), (4, 4), (4, 4, 4, 4), (4.0, 4, 4),
                                   0, "444"])
def test_bad_blocks_are_refused(block):
    with pytest.raises(InputError, match="block"):
        BlockPlan((8, 8, 8), block, (1, 1, 1))


def test_halo_for_is_the_longest_bridge_plus_the_margin_in_each_axis_voxels():
    assert SEAM_MARGIN == 10  # the closed forms below are written with it
    assert halo_for(6.0, (1.0, 1.0, 1.0)) == (16, 16, 16)
    # z voxels twice as long: a 6 x-voxel bridge spans 3 z voxels.
    assert halo_for(6.0, (2.0, 1.0, 1.0)) == (13, 16, 16)
    # Rounded up: 6 / 4 = 1.5 -> 2, 5 / 3 = 1.67 -> 2, 5 / 0.5 = 10.
    assert halo_for(6.0, (4.0, 1.0, 1.0)) == (12, 16, 16)
    assert halo_for(5.0, (3.0, 0.5, 1.0)) == (12, 20, 15)
    assert halo_for(0.0, (2.0, 1.0, 1.0)) == (10, 10, 10)
    assert all(type(h) is int for h in halo_for(6.0, (2.5, 1.0, 1.0)))


@pytest.mark.parametrize("max_gap", [0.0, 2.5, 6.0, 13.0])
@pytest.mark.parametrize("scale", [(1.0, 1.0, 1.0), (3.0, 1.0, 1.0), (0.7, 1.3, 1.0)])
def test_halo_reaches_a_bridge_plus_the_margin_physically(max_gap, scale):
    halo = halo_for(max_gap, scale)
    for h, s in zip(halo, scale, strict=True):
        # At least the bridge plus the margin in voxels, and not a voxel more than needed.
        assert (h - SEAM_MARGIN) * s >= max_gap
        assert (h - SEAM_MARGIN - 1) * s < max_gap or h == SEAM_MARGIN
