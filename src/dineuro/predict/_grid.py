"""The fixed grid of windows over a stack, shared by in-memory and block-wise prediction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dineuro.models.vit3d import Triple, as_triple


@dataclass(frozen=True)
class WindowGrid:
    """The fixed grid of windows over a stack, shared by in-memory and block-wise prediction.

    Window ``k`` along an axis covers ``[start(axis, k), start(axis, k) + crop)`` in stack
    coordinates; starts below 0 or ends beyond the stack read zeros.

    Attributes:
        shape: stack shape (z, y, x).
        crop: window shape (z, y, x).
        step: distance between window starts, ``max(int(crop * (1 - overlap)), 1)`` per axis.
        counts: windows per axis.
        pad_before: zeros before the stack per axis (the padding after it is the rest).

    Examples::

        >>> grid = WindowGrid.of((37, 50, 23), crop=(16, 32, 32), overlap=0.5)
        >>> grid.counts, grid.padded_shape, grid.pad_before
        ((4, 3, 1), (40, 64, 32), (1, 7, 4))
    """

    shape: Triple
    crop: Triple
    step: Triple
    counts: Triple
    pad_before: Triple

    @classmethod
    def of(cls, shape: Sequence[int], crop: int | Sequence[int], overlap: float) -> WindowGrid:
        """The grid for a stack of ``shape`` and windows of ``crop`` overlapping by ``overlap``.

        Raises:
            ValueError: a bad shape, crop or overlap.
        """
        shape, crop = tuple(int(n) for n in shape), as_triple(crop, "crop")
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"volume should be a non-empty 3D (z, y, x) stack, got shape "
                             f"{shape}.")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap should be in [0, 1), got {overlap}.")
        # MONAI's expression for its scan interval, so that its tiling of a padded region is ours.
        step = tuple(max(int(c * (1 - overlap)), 1) for c in crop)
        counts = tuple(math.ceil(max(n - c, 0) / s) + 1
                       for n, c, s in zip(shape, crop, step, strict=True))
        padded = (c + (k - 1) * s for c, k, s in zip(crop, counts, step, strict=True))
        pad_before = tuple((p - n) // 2 for p, n in zip(padded, shape, strict=True))
        return cls(shape, crop, step, counts, pad_before)

    @property
    def padded_shape(self) -> Triple:
        """Extent covered by all windows: ``crop + (counts - 1) * step`` per axis."""
        return tuple(c + (k - 1) * s
                     for c, k, s in zip(self.crop, self.counts, self.step, strict=True))

    @property
    def n_windows(self) -> int:
        return math.prod(self.counts)

    def start(self, axis: int, k: int) -> int:
        """First voxel (stack coordinates, may be negative) of window ``k`` along ``axis``."""
        return k * self.step[axis] - self.pad_before[axis]

    def touching(self, axis: int, begin: int, end: int) -> tuple[int, int]:
        """First and last index of the windows that overlap ``[begin, end)`` along ``axis``."""
        step, crop, pad = self.step[axis], self.crop[axis], self.pad_before[axis]
        first = max(0, (begin + pad - crop) // step + 1)
        last = min(self.counts[axis] - 1, (end + pad - 1) // step)
        return first, last
