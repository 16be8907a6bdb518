"""Coarser levels of the probability map: how many, their factors, their values, metadata.

Factors are worked out by hand; each level is compared with a max-pooling of level 0 written
here (zero padding, numpy reshape), computed straight from level 0 rather than level by level.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from dineuro.io._omezarr import open_image
from dineuro.scale.pyramid import add_levels, level_factors


def max_pool(array: np.ndarray, factor) -> np.ndarray:
    """The maximum over ``factor`` blocks of ``array``, padded with zeros to a multiple."""
    padded = np.pad(array, [(0, -n % f) for n, f in zip(array.shape, factor, strict=True)])
    (z, y, x), (fz, fy, fx) = padded.shape, factor
    return padded.reshape(z // fz, fz, y // fy, fy, x // fx, fx).max(axis=(1, 3, 5))


def test_max_pool_reference_by_hand():
    array = np.arange(1, 1 + 2 * 3 * 5).reshape(2, 3, 5)
    pooled = max_pool(array, (1, 2, 2))
    assert pooled.shape == (2, 2, 3)
    # Rows 0-1 and columns 0-1 of the first plane: 1 2 / 6 7 -> 7; the lone last row and
    # column: 15 (padding adds zeros, which never win).
    assert pooled[0, 0, 0] == 7 and pooled[0, 1, 2] == 15 and pooled[1, 1, 2] == 30


def test_level_factors_isotropic_by_hand():
    # 1000 voxels over 256-voxel blocks: 1000/2 = 500 still too many, 1000/4 = 250 fits.
    # Isotropic voxels halve z too, as long as there is more than one z voxel.
    assert level_factors((64, 1000, 1000), (1.0, 1.0, 1.0), (32, 256, 256)) == [
        (1, 1, 1), (2, 2, 2), (4, 4, 4)]
    # z stops at a single voxel: 3 -> 2 -> 1, then y and x go on alone.
    assert level_factors((3, 2000, 2000), (1.0, 1.0, 1.0), (64, 128, 128)) == [
        (1, 1, 1), (2, 2, 2), (4, 4, 4), (4, 8, 8), (4, 16, 16)]
    # The larger of y and x decides: 700/8 fits, 1100/8 = 137.5 does not.
    # z: 8 -> 4 -> 2 -> 1 voxels, then stays.
    assert level_factors((8, 1100, 700), (1.0, 1.0, 1.0), (8, 128, 128))[-1] == (8, 16, 16)
    # A map that fits one block has level 0 only; z alone never asks for more.
    assert level_factors((500, 256, 100), (1.0, 1.0, 1.0), (32, 256, 256)) == [(1, 1, 1)]


def test_level_factors_anisotropic_by_hand():
    # z voxels 4 times as long as y and x: z is first halved on the step from the level whose
    # y voxels are as long as its z voxels (fy = 4), then along with y and x.
    assert level_factors((10, 1100, 700), (4.0, 1.0, 1.0), (8, 128, 128)) == [
        (1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16)]
    # 2 um z over 0.5 um y and x: 1000/4 = 250 fits 256 before z is halved; 1100/4 = 275 does
    # not, and the next level's y voxels (4 x 0.5 um) are as long as z's, so z halves too.
    assert level_factors((40, 1000, 1000), (2.0, 0.5, 0.5), (32, 256, 256)) == [
        (1, 1, 1), (1, 2, 2), (1, 4, 4)]
    assert level_factors((40, 1100, 1100), (2.0, 0.5, 0.5), (32, 256, 256)) == [
        (1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8)]
    # Finer z than y: z is halved at every level.
    assert level_factors((16, 512, 512), (0.5, 1.0, 1.0), (16, 128, 128)) == [
        (1, 1, 1), (2, 2, 2), (4, 4, 4)]


@pytest.mark.parametrize(("shape", "spacing", "block"), [
    ((10, 1100, 700), (4.0, 1.0, 1.0), (8, 128, 128)),
    ((3, 2000, 2000), (1.0, 1.0, 1.0), (64, 128, 128)),
    ((7, 333, 999), (1.0, 0.3, 0.3), (4, 50, 60)),
    ((1, 1, 1), (1.0, 1.0, 1.0), (1, 1, 1)),
])
def test_level_factors_stop_at_the_first_level_that_fits_a_block(shape, spacing, block):
    factors = level_factors(shape, spacing, block)

    def fits(factor):
        return all(-(-n // f) <= b for n, f, b in zip(shape[1:], factor[1:], block[1:],
                                                      strict=True))

    assert factors[0] == (1, 1, 1)
    assert fits(factors[-1]) and not any(fits(f) for f in factors[:-1])
    for before, after in zip(factors, factors[1:], strict=False):
        assert after[1:] == (2 * before[1], 2 * before[2])
        assert after[0] in (before[0], 2 * before[0])
        # z is never coarser than y, nor halved below one voxel.
        assert after[0] == before[0] or (spacing[0] * before[0] <= spacing[1] * before[1]
                                         and -(-shape[0] // before[0]) > 1)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize(("spacing", "factors"), [
    ((1.0, 1.0, 1.0), [(1, 1, 1), (2, 2, 2), (4, 4, 4), (8, 8, 8)]),
    ((3.0, 0.5, 0.5), [(1, 1, 1), (1, 2, 2), (1, 4, 4), (1, 8, 8)]),
])
def test_add_levels_max_pools_level_0(tmp_path, dtype, spacing, factors):
    rng = np.random.default_rng(0)
    shape, block = (5, 37, 29), (4, 8, 8)  # 37/8 -> 5, 37/4 -> 10: three levels above 0
    if dtype == "uint8":
        level0 = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
        level0 = rng.random(shape, dtype=np.float32)
    path = tmp_path / "prob.ome.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("0", shape=shape, dtype=dtype, chunks=block, fill_value=0)
    group["0"][:] = level0

    assert add_levels(group, spacing, block, "prob") == len(factors)
    assert level_factors(shape, spacing, block) == factors
    for k, factor in enumerate(factors):
        array, axes, level_spacing = open_image(path, level=k)
        np.testing.assert_array_equal(array[:], max_pool(level0, factor))
        assert array.dtype == np.dtype(dtype)
        assert array.shape == tuple(-(-n // f) for n, f in zip(shape, factor, strict=True))
        assert all(c <= b for c, b in zip(array.chunks, block, strict=True))
        assert all(c <= n for c, n in zip(array.chunks, array.shape, strict=True))
        assert axes.upper() == "ZYX"
        assert level_spacing == pytest.approx([s * f for s, f in zip(spacing, factor,
                                                                     strict=True)])
    # The last level fits a block in y and x.
    assert all(n <= b for n, b in zip(array.shape[1:], block[1:], strict=True))
    names = [d["path"] for d in group.attrs["ome"]["multiscales"][0]["datasets"]]
    assert names == [str(k) for k in range(len(factors))]
    assert group.attrs["ome"]["multiscales"][0]["name"] == "prob"


def test_add_levels_keeps_a_one_voxel_neurite_at_every_level(tmp_path):
    # What the maximum is for: a faint line one voxel thick stays at its value.
    shape, block = (4, 64, 64), (4, 16, 16)
    level0 = np.zeros(shape, np.float32)
    level0[1, 33, 5:60] = 0.6
    group = zarr.open_group(str(tmp_path / "m.zarr"), mode="w")
    group.create_array("0", shape=shape, dtype="float32", chunks=block, fill_value=0)
    group["0"][:] = level0
    levels = add_levels(group, (1.0, 1.0, 1.0), block, "m")
    assert levels == 3
    for k in range(1, levels):
        coarse = group[str(k)][:]
        assert coarse.max() == np.float32(0.6)
        assert np.count_nonzero(coarse) == np.count_nonzero(coarse.max(axis=(0, 1)))
