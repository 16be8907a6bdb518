"""Coarser levels of the probability map, so viewers open a whole-brain map at once.

Each level halves y and x (and z once the level is as coarse in z as in y, so an anisotropic
stack becomes isotropic before z is halved), keeping the largest probability of the voxels it
merges: a mean would fade a neurite one voxel thick to a quarter at the first level and to
nothing soon after, while the maximum keeps it visible at every zoom. Levels are added until
one fits a block in y and x, computed by dask on the run's cluster from the level before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dineuro.io._omezarr import ome_metadata


def level_factors(shape: Sequence[int], spacing: Sequence[float],
                  block: Sequence[int]) -> list[tuple[int, int, int]]:
    """Per level, how many level-0 voxels one voxel spans along (z, y, x), level 0 first.

    Examples
    --------
    >>> level_factors((40, 2000, 2000), (2.0, 0.5, 0.5), (32, 256, 256))
    [(1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8)]
    """
    factors = [(1, 1, 1)]
    while any(-(-n // f) > b for n, f, b in zip(shape[1:], factors[-1][1:], block[1:],
                                                strict=True)):
        fz, fy, fx = factors[-1]
        halve_z = spacing[0] * fz <= spacing[1] * fy and -(-shape[0] // fz) > 1
        factors.append((fz * 2 if halve_z else fz, fy * 2, fx * 2))
    return factors


def add_levels(group, spacing: Sequence[float], block: Sequence[int], name: str) -> int:
    """Write the coarser levels of the map in the zarr ``group`` (whose array "0" is level 0)
    and its multiscales metadata; returns the number of levels. Computed by dask (on the
    current distributed client, when there is one)."""
    import dask.array as da

    level0 = group["0"]
    factors = level_factors(level0.shape, spacing, block)
    previous = da.from_zarr(level0)
    for k in range(1, len(factors)):
        step = tuple(f // g for f, g in zip(factors[k], factors[k - 1], strict=True))
        # Pad to a multiple of the step with zeros, which the maximum ignores.
        padding = tuple((0, -n % s) for n, s in zip(previous.shape, step, strict=True))
        padded = da.pad(previous, padding) if any(p for _, p in padding) else previous
        coarse = da.coarsen(np.max, padded, dict(enumerate(step)))
        chunks = tuple(min(b, n) for b, n in zip(block, coarse.shape, strict=True))
        array = group.create_array(str(k), shape=coarse.shape, dtype=level0.dtype,
                                   chunks=chunks, fill_value=0)
        da.store(coarse.rechunk(chunks), array, lock=False)  # chunks aligned: no write races
        previous = da.from_zarr(array)
    group.attrs.update(ome_metadata(tuple(spacing), name, tuple(factors)))
    return len(factors)
