"""Which windows hold signal: the cheap test that lets prediction skip empty background.

A window is computed when the brightest voxel of its 3x3x3 running mean stands out of the
stack's background: above ``background + NOISE_FACTOR * noise``, the median and the scaled
median absolute deviation of the same running mean over the whole stack
(:func:`signal_level`), and never below :data:`SPECK_FLOOR`. A mean over 27 voxels rather
than single voxels, because on noisy stacks isolated shot-noise voxels and hot pixels stand out
in nearly every window, while a neurite, even a dim one, is a line of voxels that the mean keeps
(a blurred neurite keeps most of its brightness; a lone speck a 27th). Relative to the stack's
own background, because after percentile normalisation the background of a sparse stack sits
anywhere from 0 to 0.3 with its own noise.

Only a window's own voxels enter its test (the mean is taken where the 3x3x3 neighbourhood
lies inside the window), and the level comes from the whole stack measured tile by tile in a
fixed tiling, so a window is skipped or computed alike whether the stack is predicted whole or
block by block. ``benchmarks/run_speed.py`` and ``benchmarks/skip_threshold.py`` measure what
skipping costs: the largest full-run probability inside a skipped window, and Dice and traced
F1 against computing every window.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dineuro.data.normalize import robust_level
from dineuro.predict._grid import WindowGrid

#: A window holds signal above background + this many noise units (see the module docstring;
#: chosen on synthetic stacks with ``benchmarks/skip_threshold.py``: 4 skips about twice as
#: many windows but moved one stack's Dice by 0.0023).
NOISE_FACTOR = 3.0
#: ... and above this 3x3x3 mean in any case: a lone saturated speck gives 1/27 = 0.037.
SPECK_FLOOR = 0.05
#: Edge of the running mean, per axis (1 along an axis where the window is thinner).
SMOOTHING = 3
#: The background level is measured on every slice and every STRIDE-th row and column, read
#: in tiles of TILE (z, y, x) voxels: bounded memory for stacks on disk, the same voxels for
#: a stack in memory.
STRIDE = 3
TILE = (32, 256, 256)
#: At most this many running-mean samples: a stack of up to about 150 M voxels is measured
#: on every tile, a larger one (a whole brain) on this many samples' worth of tiles spread
#: over it by a seeded draw, so that the level costs a bounded read, not a pass over the volume.
MAX_LEVEL_SAMPLES = 2**24

Reader = Callable[[tuple[slice, ...]], np.ndarray]
#: Per axis, where windows start in a region.
Starts = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class SignalLevel:
    """A stack's background and noise of its 3x3x3 running mean (normalised intensity)."""

    background: float
    noise: float

    @property
    def threshold(self) -> float:
        """The least running mean that makes a window worth computing."""
        return max(self.background + NOISE_FACTOR * self.noise, SPECK_FLOOR)


def signal_level(read: Reader, shape: Sequence[int]) -> SignalLevel:
    """Background (median) and noise (scaled MAD) of a stack's 3x3x3 running mean.

    Parameters
    ----------
    read : callable
        Returns the normalised float32 voxels of a (z, y, x) region given as slices.
    shape : sequence of int
        The stack's shape; a stack thinner than 3 voxels along an axis has no full
        neighbourhood, and gets background and noise 0 (the :data:`SPECK_FLOOR` alone).
    """
    shape = tuple(int(n) for n in shape)
    if min(shape) < SMOOTHING:
        return SignalLevel(0.0, 0.0)
    samples = []
    # Interior voxels (a full neighbourhood inside the stack) in tiles; each read with a halo.
    corners = list(itertools.product(*(range(1, n - 1, t) for n, t in zip(shape, TILE,
                                                                           strict=True))))
    tiles = max(1, MAX_LEVEL_SAMPLES * STRIDE**2 // math.prod(TILE))
    if len(corners) > tiles:
        chosen = np.sort(np.random.default_rng(0).permutation(len(corners))[:tiles])
        corners = [corners[k] for k in chosen]
    for corner in corners:
        end = [min(c + t, n - 1) for c, t, n in zip(corner, TILE, shape, strict=True)]
        region = tuple(slice(c - 1, e + 1) for c, e in zip(corner, end, strict=True))
        mean = running_mean(torch.from_numpy(np.ascontiguousarray(read(region), np.float32)),
                            (SMOOTHING,) * 3)[0, 0].numpy()
        _, y, x = corner  # every STRIDE-th row and column of the stack, wherever the tile is
        samples.append(mean[:, (-y) % STRIDE::STRIDE, (-x) % STRIDE::STRIDE].ravel())
    return SignalLevel(*robust_level(np.concatenate(samples)))


def signal_windows(volume: np.ndarray, crop: int | Sequence[int], overlap: float) -> np.ndarray:
    """Which windows of a normalised stack's :class:`WindowGrid` hold signal.

    Returns
    -------
    numpy.ndarray
        bool array of shape ``WindowGrid.counts``: True where the window is computed.

    Examples
    --------
    >>> volume = np.zeros((16, 64, 64), np.float32)
    >>> volume[8, 10, 5:20] = 1.0  # a bright line near one corner
    >>> run = signal_windows(volume, crop=16, overlap=0.5)  # windows every 8 voxels
    >>> run.shape, [tuple(map(int, np.flatnonzero(run.any(axis=a)))) for a in [(0, 2), (0, 1)]]
    ((1, 7, 7), [(0, 1), (0, 1, 2)])
    """
    from dineuro.predict._stack import checked_volume, grid_region

    volume = checked_volume(volume)
    grid = WindowGrid.of(volume.shape, crop, overlap)
    region, starts = grid_region(volume, grid)
    level = signal_level(volume.__getitem__, volume.shape)
    return region_signal(region, starts, grid.crop, level).reshape(grid.counts)


def region_signal(region: torch.Tensor, starts: Starts, crop: Sequence[int],
                  level: SignalLevel) -> np.ndarray:
    """Whether each window (``itertools.product`` of ``starts``, in ``region``) holds signal:
    the largest running mean inside it above the level (see the module docstring)."""
    kernel = tuple(SMOOTHING if c >= SMOOTHING else 1 for c in crop)
    inside = tuple(c - k + 1 for c, k in zip(crop, kernel, strict=True))
    mean = running_mean(region, kernel)[0, 0]
    return np.array([float(mean[tuple(slice(s, s + n) for s, n in zip(corner, inside,
                                                                      strict=True))].max())
                     > level.threshold for corner in itertools.product(*starts)], dtype=bool)


def running_mean(volume: torch.Tensor, kernel: Sequence[int]) -> torch.Tensor:
    """(1, 1, ...) mean over ``kernel`` around every voxel whose neighbourhood lies inside.

    Separable: three passes of a few reads each, not one pass of ``prod(kernel)``.
    """
    mean = volume[None, None]
    for axis, size in enumerate(kernel):
        if size > 1:
            shape = [1] * 3
            shape[axis] = size
            mean = F.avg_pool3d(mean, tuple(shape), stride=1)
    return mean


