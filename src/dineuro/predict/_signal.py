"""Which windows hold signal: the cheap test that lets prediction skip empty background.

A window is computed when the brightest voxel of its 3x3x3 running mean exceeds
:data:`SIGNAL_THRESHOLD` (normalised intensity). A mean over 27 voxels, not a single voxel,
because on noisy stacks isolated shot-noise voxels and hot pixels reach 0.3-0.5 after
normalisation in nearly every window, while a neurite, even a dim one, is a line of voxels that
a 3x3x3 mean keeps (a one-voxel-radius neurite keeps about a third of its brightness; a lone
speck a 27th). Only the window's own voxels enter its test (the mean is taken where the 3x3x3
neighbourhood lies inside the window), so a window is skipped or computed alike whether the
stack is predicted whole or block by block. ``benchmarks/run_speed.py`` measures what skipping
costs: the largest full-run probability inside a skipped window, and Dice and traced F1 against
computing every window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dineuro.predict._grid import WindowGrid

#: Least 3x3x3 mean of normalised intensity that makes a window worth computing.
SIGNAL_THRESHOLD = 0.05
#: Edge of the running mean, per axis (1 along an axis where the window is thinner).
SMOOTHING = 3


def signal_windows(volume: np.ndarray, crop: int | Sequence[int], overlap: float) -> np.ndarray:
    """Which windows of a normalised stack's :class:`WindowGrid` hold signal.

    Returns:
        bool array of shape ``WindowGrid.counts``: True where the window is computed.

    Examples::

        >>> volume = np.zeros((16, 64, 64), np.float32)
        >>> volume[8, 10, 5:20] = 1.0  # a bright line near one corner
        >>> run = signal_windows(volume, crop=16, overlap=0.5)  # windows every 8 voxels
        >>> run.shape, [tuple(map(int, np.flatnonzero(run.any(axis=a)))) for a in [(0, 2), (0, 1)]]
        ((1, 7, 7), [(0, 1), (0, 1, 2)])
    """
    from dineuro.predict._stack import checked_volume, pad_to_grid

    volume = checked_volume(volume)
    grid = WindowGrid.of(volume.shape, crop, overlap)
    return region_signal(pad_to_grid(volume, grid), grid)


def region_signal(padded: torch.Tensor, region: WindowGrid) -> np.ndarray:
    """:func:`signal_windows` of a region that its grid tiles without padding."""
    kernel = tuple(SMOOTHING if c >= SMOOTHING else 1 for c in region.crop)
    mean = padded[None, None]
    for axis, size in enumerate(kernel):  # separable: three passes of 3 reads, not one of 27
        if size > 1:
            shape = [1, 1, 1]
            shape[axis] = size
            mean = F.avg_pool3d(mean, tuple(shape), stride=1)
    inside = tuple(c - k + 1 for c, k in zip(region.crop, kernel, strict=True))
    peaks = F.max_pool3d(mean, inside, stride=region.step)[0, 0]
    return (peaks > SIGNAL_THRESHOLD).numpy()
