"""A stand-in for voxels not read: lets a file's header go through the same checks as its data."""

from __future__ import annotations

import numpy as np


def placeholder(shape: tuple[int, ...], dtype) -> np.ndarray:
    """A read-only array of ``shape`` and ``dtype`` that takes no memory (every element is one
    zero), so shape and channel checks written for arrays also check a header.

    Examples
    --------
    >>> array = placeholder((100, 512, 512), "uint16")
    >>> array.shape, array.dtype, array.nbytes > array.base.nbytes
    ((100, 512, 512), dtype('uint16'), True)
    """
    return np.broadcast_to(np.zeros((), dtype), tuple(shape))
