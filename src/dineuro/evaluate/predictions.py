"""Find and read what ``predict`` wrote, as boolean masks to score.

Per stack ``NAME``, a prediction folder holds:

- ``NAME_mask.tif``: a binary mask (0 and one positive value);
- ``NAME_prob.tif``: a probability map, float in [0, 1] or uint8 meaning round(p x 255); a
  voxel is foreground when p > threshold, as in ``predict``.

Anything else is refused with the file named, rather than guessed into a mask: a "mask" with
several values is most likely a map under the wrong name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dineuro.defaults import DEFAULT_THRESHOLD
from dineuro.errors import InputError
from dineuro.io.volume import read_volume
from dineuro.outputs import MASK_SUFFIX, PROB_SUFFIX

UINT8_FULL_SCALE = 255  # a uint8 probability map stores round(p * 255)


def find_predictions(pred_dir: str | os.PathLike, prefer_prob: bool = False) -> dict[str, Path]:
    """Prediction file per stack name: ``NAME_mask.tif`` or ``NAME_prob.tif``.

    Where a stack has both, the mask is chosen, or the probability map if ``prefer_prob``.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError("is not a folder of predictions.", pred_dir)
    masks, probs = {}, {}
    for path in sorted(pred_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue  # hidden files include half-written ``.NAME.partial.tif`` outputs
        for suffix, found in ((MASK_SUFFIX, masks), (PROB_SUFFIX, probs)):
            if path.name.endswith(suffix) and len(path.name) > len(suffix):
                found[path.name[: -len(suffix)]] = path
    predictions = masks | probs if prefer_prob else probs | masks
    if not predictions:
        raise InputError(f"has no NAME{MASK_SUFFIX} or NAME{PROB_SUFFIX} files.", pred_dir)
    return predictions


def read_prediction(path: str | os.PathLike, threshold: float = DEFAULT_THRESHOLD
                    ) -> np.ndarray:
    """A prediction file as a boolean (z, y, x) mask; a ``_prob.tif`` map is p > threshold."""
    path = Path(path)
    array = read_volume(path).array
    if path.name.endswith(PROB_SUFFIX):
        return _thresholded(array, threshold, path)
    return _binary(array, path)


def _thresholded(array: np.ndarray, threshold: float, path: Path) -> np.ndarray:
    if array.dtype == np.uint8:
        return array > np.float64(threshold) * UINT8_FULL_SCALE
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"holds {array.dtype} voxels; a probability map is float in [0, 1] "
                         f"or uint8 (p x {UINT8_FULL_SCALE}).", path)
    low, high = float(array.min()), float(array.max())
    if not 0 <= low <= high <= 1:  # also false for NaN
        raise InputError(f"holds values from {low} to {high}; a float probability map must "
                         f"lie in [0, 1].", path)
    return array > np.float64(threshold)  # in float64: a float16 threshold would round


def _binary(array: np.ndarray, path: Path) -> np.ndarray:
    mask = array != 0
    if mask.any():
        values = array[mask]
        low, high = values.min(), values.max()
        if low != high or low < 0:
            raise InputError(f"is not a binary mask: its non-zero values range from {low} to "
                             f"{high}; name a probability map NAME{PROB_SUFFIX}.", path)
    return mask
