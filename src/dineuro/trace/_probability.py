"""Reading a map: probability maps, masks and raw stacks as the float32 values traced.

The tracer's thresholds apply to probabilities; :func:`as_probability` says how each kind of
input is read as such, and refuses what no reading fits (NaNs, negative values, signed
integers) instead of guessing.
"""

from __future__ import annotations

import math

import numpy as np

from dineuro.errors import InputError

#: How :func:`as_probability` may read an array.
KINDS = ("auto", "probability", "mask", "image")


def as_probability(array: np.ndarray, kind: str = "auto") -> np.ndarray:
    """A probability map or mask as float32 probabilities in [0, 1], (z, y, x) kept.

    ``kind="auto"`` reads boolean arrays and integer arrays holding only 0 and 1 as masks,
    other unsigned integer arrays as probabilities scaled to the dtype's maximum (uint8 255,
    uint16 65535; ``dineuro predict --prob-dtype uint8`` writes round(p * 255)), and float
    arrays as probabilities. ``"probability"`` never reads a mask (a uint8 map whose largest
    value is 1 is then p = 1/255, not foreground); ``"mask"`` takes every non-zero voxel as
    foreground. ``"image"`` reads a raw intensity stack (a 12-bit camera's uint16, say, which
    as a probability would be at most 4095 / 65535) and scales it as ``dineuro predict`` does
    for the network (:func:`~dineuro.data.normalize.percentile_normalize`: 0 at the 1st
    percentile, 1 at the 99.9th), so the thresholds apply to normalised intensity.

    Parameters
    ----------
    array : ndarray
        (z, y, x) map, mask or raw stack.
    kind : {"auto", "probability", "mask", "image"}
        How to read it, as above.

    Returns
    -------
    ndarray
        float32 (z, y, x) array of the same shape.

    Raises
    ------
    InputError
        An array that is not 3D, NaNs, negative values or floats above 1, or a signed integer
        or other non-numeric dtype read as probabilities.
    """
    if kind not in KINDS:
        raise InputError(f"kind should be one of {', '.join(KINDS)}, not {kind!r}.")
    array = np.asarray(array)
    if array.ndim != 3 or array.size == 0:
        raise InputError(f"should be a non-empty 3D (z, y, x) map, got shape {array.shape}.")
    if kind == "mask" or array.dtype == bool:
        return (array != 0).astype(np.float32)
    if array.dtype.kind not in "uif":
        raise InputError(f"should hold numbers, not {array.dtype}.")
    low, high = array.min(), array.max()
    if array.dtype.kind == "f" and not (math.isfinite(low) and math.isfinite(high)):
        raise InputError("holds NaN or infinite values; a probability map lies in [0, 1].")
    if kind == "image":
        from dineuro.data.normalize import percentile_normalize

        return percentile_normalize(array)
    if low < 0 or (array.dtype.kind == "f" and high > 1):
        raise InputError(f"values should be probabilities in [0, 1] (or a 0/1 mask), found "
                         f"{low:g}..{high:g}.")
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if kind == "auto" and high <= 1:
        return array.astype(np.float32)
    if array.dtype.kind != "u":
        raise InputError(f"a {array.dtype} map cannot be read as probabilities: use float in "
                         "[0, 1], uint8 or uint16.")
    return (array / np.float32(np.iinfo(array.dtype).max)).astype(np.float32)

