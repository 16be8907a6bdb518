"""Voxel-overlap and surface-distance scores of a predicted mask against a gold mask.

All functions take two masks of the same (z, y, x) shape, boolean or integer (non-zero is
foreground); probability maps must be thresholded first.

Empty masks never raise and never vanish from a mean by accident:

==============================  ======  =======  =========  ======
case                            dice    hd95     precision  recall
==============================  ======  =======  =========  ======
both empty (perfect agreement)  1.0     0.0      1.0        1.0
empty prediction only           0.0     inf      0.0        0.0
empty gold only                 0.0     inf      0.0        0.0
==============================  ======  =======  =========  ======

HD95 follows MONAI's ``compute_hausdorff_distance(percentile=95)``; see :func:`hd95`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from dineuro.errors import InputError

#: Which percentile of the surface distances :func:`hd95` reports.
HD_PERCENTILE = 95.0
_UNIT_SPACING = (1.0, 1.0, 1.0)


def dice(pred: np.ndarray, gold: np.ndarray) -> float:
    """Dice coefficient 2|P ∩ G| / (|P| + |G|) of two (z, y, x) masks, in [0, 1].

    Both masks empty: 1.0 (they agree perfectly).

    Examples
    --------
    >>> a = np.zeros((1, 1, 4), bool); a[0, 0, :2] = True
    >>> b = np.zeros((1, 1, 4), bool); b[0, 0, 1:] = True
    >>> dice(a, b)  # 2 * 1 / (2 + 3)
    0.4
    """
    pred, gold = _masks(pred, gold)
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(gold))
    return 1.0 if total == 0 else float(2 * _overlap(pred, gold) / total)


def precision(pred: np.ndarray, gold: np.ndarray) -> float:
    """Fraction of predicted voxels that are gold, |P ∩ G| / |P|, in [0, 1].

    Empty prediction: 1.0 when the gold is empty too, else 0.0.
    """
    pred, gold = _masks(pred, gold)
    return _ratio(_overlap(pred, gold), int(np.count_nonzero(pred)), bool(gold.any()))


def recall(pred: np.ndarray, gold: np.ndarray) -> float:
    """Fraction of gold voxels that are predicted, |P ∩ G| / |G|, in [0, 1].

    Empty gold: 1.0 when the prediction is empty too, else 0.0.
    """
    pred, gold = _masks(pred, gold)
    return _ratio(_overlap(pred, gold), int(np.count_nonzero(gold)), bool(pred.any()))


def hd95(pred: np.ndarray, gold: np.ndarray,
         spacing: Sequence[float] = _UNIT_SPACING) -> float:
    """95th-percentile symmetric Hausdorff distance between two (z, y, x) masks.

    Definition (MONAI's ``compute_hausdorff_distance(percentile=95, directed=False)``,
    computed with MONAI's own edge and distance functions):

    1. The surface of a mask is its voxels with at least one of their 6 face neighbours
       outside the mask (voxels on the border of the array count as surface).
    2. For every surface voxel of P, the Euclidean distance, in physical units
       (index differences times ``spacing``), to the nearest surface voxel of G; likewise
       from G to P.
    3. The 95th percentile of each of the two lists of distances, with linear
       interpolation between ranks (``numpy.percentile``'s default, ``torch.quantile``'s
       default), and the larger of the two is the result.

    So it is the max of two directed HD95s, not the 95th percentile of the pooled distances
    (medpy's ``hd95``), which can be smaller when one surface is much larger than the other.
    MONAI's distances are float32, so results agree with a float64 computation to about
    1e-7 relative.

    Parameters
    ----------
    pred, gold : numpy.ndarray
        Masks of equal (z, y, x) shape.
    spacing : sequence of 3 float
        Voxel size along (z, y, x); the result is in the same unit (voxels for the default).

    Returns
    -------
    float
        The distance; 0.0 when both masks are empty, ``inf`` when exactly one is.

    Examples
    --------
    >>> gold = np.zeros((5, 4, 4), bool); gold[1] = True
    >>> hd95(np.roll(gold, 2, axis=0), gold, spacing=(3.0, 1.0, 1.0))  # 2 slices of 3
    6.0
    """
    pred, gold = _masks(pred, gold)
    spacing = _checked_spacing(spacing)
    has_pred, has_gold = bool(pred.any()), bool(gold.any())
    if not (has_pred and has_gold):
        return 0.0 if has_pred == has_gold else math.inf
    box = _union_box(pred, gold)
    distances = _surface_distances(pred[box], gold[box], spacing)
    return max(float(np.percentile(d, HD_PERCENTILE)) for d in distances)


def _surface_distances(pred: np.ndarray, gold: np.ndarray,
                       spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances P-surface -> G-surface and G-surface -> P-surface, by MONAI.

    We call ``get_edge_surface_distance`` (what ``compute_hausdorff_distance`` calls) on
    boolean tensors rather than ``compute_hausdorff_distance`` itself, which first copies
    both masks to float32 (8 bytes per voxel for a whole stack) and whose ``torch.quantile``
    refuses more than 2**24 surface voxels.
    """
    import torch  # imported here: MONAI and torch take seconds to import
    from monai.metrics.utils import get_edge_surface_distance

    with warnings.catch_warnings():
        # MONAI 1.6 passes its own deprecated ``always_return_as_numpy`` argument internally.
        warnings.simplefilter("ignore", FutureWarning)
        _, distances, _ = get_edge_surface_distance(
            torch.from_numpy(pred), torch.from_numpy(gold), distance_metric="euclidean",
            spacing=spacing, symmetric=True)
    return tuple(d.numpy() for d in distances)


def _union_box(pred: np.ndarray, gold: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    """Bounding box of ``pred | gold`` grown by ``margin`` voxels, clipped to the array.

    Cropping to it changes no surface voxel (a mask voxel is on the crop's border only if it
    is on the array's border), so distances are unchanged while work shrinks to the neuron.
    """
    union = pred | gold
    box = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=others))
        box.append(slice(max(hits[0] - margin, 0), hits[-1] + margin + 1))
    return tuple(box)


def _overlap(pred: np.ndarray, gold: np.ndarray) -> int:
    return int(np.count_nonzero(pred & gold))


def _ratio(hits: int, total: int, other_has_voxels: bool) -> float:
    """``hits / total``; for an empty ``total`` mask, 1.0 if the other is empty too, else 0.0."""
    if total == 0:
        return 0.0 if other_has_voxels else 1.0
    return hits / total


def _masks(pred: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as boolean arrays, after checking they are comparable (z, y, x) masks."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    for name, mask in (("pred", pred), ("gold", gold)):
        if mask.ndim != 3:
            raise InputError(f"{name} should be a 3D (z, y, x) mask, got shape {mask.shape}.")
        if mask.dtype != bool and not np.issubdtype(mask.dtype, np.integer):
            raise InputError(f"{name} should be a boolean or integer mask, got {mask.dtype}; "
                             f"threshold probabilities first.")
    if pred.shape != gold.shape:
        raise InputError(f"pred and gold should have the same shape, got {pred.shape} and "
                         f"{gold.shape}.")
    return pred.astype(bool, copy=False), gold.astype(bool, copy=False)


def _checked_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    spacing = tuple(float(size) for size in spacing)
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"spacing should be 3 positive (z, y, x) sizes, got {spacing}.")
    return spacing
