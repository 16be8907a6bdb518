"""A whole volume's mask block by block (dineuro.scale.mask): the same pieces as
:func:`dineuro.trace.traced_mask` of the whole map at once, each block handed only the cable
near it."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from dineuro.io import SwcTree
from dineuro.scale import BlockPlan
from dineuro.scale.mask import mask_block, segments_in, segments_per_block
from dineuro.trace import traced_mask
from dineuro.trace._mask import cable_segments


def test_segments_near_a_region_are_kept_and_shifted():
    segments = np.array([
        [[0.0, 0.0, 0.0], [0.0, 0.0, 30.0]],    # crosses the region, both ends outside
        [[0.0, 0.0, 12.5], [0.0, 0.0, 12.5]],   # a point a voxel and a half past its far end
        [[0.0, 0.0, 14.0], [0.0, 0.0, 20.0]],   # farther out
        [[0.0, 9.0, 5.0], [0.0, 9.0, 6.0]],     # beside it in y
    ])
    kept = segments_in(segments, (0, 0, 5), (1, 5, 12))
    assert kept.tolist() == [[[0, 0, -5], [0, 0, 25]], [[0, 0, 7.5], [0, 0, 7.5]]]


@pytest.mark.parametrize("halo", [(0, 0, 0), (3, 5, 5), (12, 30, 30)])
def test_segments_per_block_equal_testing_every_block(halo):
    # Binned by the lattice, the same segments (same order) as segments_in on every block:
    # short edges, long bridges, points on the faces and beyond the volume, uneven last blocks.
    rng = np.random.default_rng(4)
    plan = BlockPlan((45, 100, 70), (16, 32, 32), halo)
    start = rng.uniform(-0.02, 1.02, (300, 3)) * [45, 100, 70]
    step = rng.normal(0, 1, (300, 3)) * rng.choice([1.0, 4.0, 25.0], (300, 1))
    segments = np.stack([start, start + step], axis=1)
    segments[:20, 1] = segments[:20, 0]                       # roots: zero-length segments
    segments[20:28, :, 1] = [[32.0, 32.0], [31.5, 31.5], [63.9, 64.1], [0, 0], [99.6, 99.6],
                             [-1.4, -1.4], [100.4, 100.4], [-1.6, -1.6]]
    by_block = segments_per_block(plan, segments)

    expected = [segments_in(segments, b.region_begin, b.region_end) for b in plan.blocks()]
    assert len(by_block) == len(plan)
    for got, want in zip(by_block, expected, strict=True):
        assert np.array_equal(got, want)
    assert sum(len(e) for e in expected) >= len(segments) - 8  # the test reaches most blocks
    assert [len(b) for b in segments_per_block(plan, segments[:0])] == [0] * len(plan)


def _fibre(points):
    """An SWC chain through ``points`` (z, y, x) voxels."""
    xyz = np.asarray(points, dtype=float)[:, ::-1]
    n = len(xyz)
    return SwcTree(np.arange(1, n + 1), [3] * n, xyz, [1.0] * n, [-1, *range(1, n)])


@pytest.mark.parametrize("prob_dtype", ["float32", "uint8"])
def test_block_by_block_equals_the_whole_map(tmp_path, prob_dtype):
    # Two traced fibres crossing block borders, a third the trace leaves out, and specks:
    # blocks of 10x24x24 with a halo of 4, against the whole map at once.
    shape = (20, 60, 60)
    prob = np.zeros(shape, np.float32)
    prob[10, 30, 2:58] = 0.9                      # traced, along x through three blocks
    for k in range(50):                           # traced, a diagonal
        prob[2 + k * 16 // 50, 5 + k, 5 + k] = 0.8
    prob[15, 50, 5:40] = 0.7                      # untraced fibre
    prob[5, 2:26, 50] = 0.9                       # traced to y 21.5, its end in the next block
    prob[3, 3, 50] = prob[18, 55, 3] = 0.95       # specks
    prob[5, 45, 45] = 0.3                         # below the threshold
    fibres = [_fibre([(10, 30, 2), (10, 30, 57)]), _fibre([(2, 5, 5), (17.7, 54, 54)]),
              _fibre([(5, 2, 50), (5, 21.5, 50)])]
    tree = SwcTree(np.arange(1, 7), [3] * 6, np.concatenate([f.xyz for f in fibres]),
                   [1.0] * 6, [-1, 1, -1, 3, -1, 5])
    stored = np.rint(prob * 255).astype(np.uint8) if prob_dtype == "uint8" else prob
    prob_path, mask_path = str(tmp_path / "prob"), str(tmp_path / "mask")
    zarr.create_array(prob_path, data=stored, chunks=(10, 24, 24))
    zarr.create_array(mask_path, shape=shape, dtype="uint8", chunks=(10, 24, 24), fill_value=0)
    plan = BlockPlan(shape, (10, 24, 24), (4, 4, 4))
    segments = cable_segments(tree)
    voxels = sum(mask_block(prob_path, mask_path, block, 0.5,
                            segments_in(segments, block.region_begin, block.region_end))
                 for block in plan.blocks())

    expected = traced_mask(prob > 0.5, tree)
    got = zarr.open_array(mask_path)[:]
    assert np.array_equal(got.astype(bool), expected)
    assert voxels == expected.sum()
    assert got[10, 30, 40] and got[5, 25, 50] and not got[15, 50, 20] and not got[3, 3, 50]

    for block in plan.blocks():  # the plain threshold, block by block
        mask_block(prob_path, mask_path, block, 0.5, None)
    assert np.array_equal(zarr.open_array(mask_path)[:].astype(bool), prob > 0.5)
