"""The mask that goes with a trace: the pieces of the foreground its cable runs through.

A thresholded map holds, besides the neurites, the specks of noise and the small debris that the
tracer removes as not neurite (steps 2 and 6 of :mod:`dineuro.trace`). A mask written beside the
SWC with them shows a user again what the trace has already judged, and scores lower against a
gold mask (README, "The mask beside the trace": Dice 0.015-0.037 lower on the default model's
synthetic test sets). :func:`traced_mask` keeps every 26-connected piece of a mask that the
trace passes through, whole, and nothing else: the pieces stay the network's segmentation, not
tubes drawn from the SWC's radii, so the mask still shows what the network saw of each kept
neurite.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dineuro.io.swc import SwcTree
from dineuro.io.swc_units import to_voxels

#: Largest distance (voxels) between two points sampled along an edge of the trace: below a
#: voxel, so no voxel the cable crosses is stepped over.
SAMPLE_STEP = 0.5

#: 26-connectivity, for the pieces and for the reach around each sampled point: a smoothed
#: centre line may pass a voxel beside a bead or a thin piece it was traced through.
NEIGHBOURS = np.ones((3, 3, 3), dtype=bool)


def traced_mask(mask: np.ndarray, tree: SwcTree) -> np.ndarray:
    """The 26-connected pieces of ``mask`` that ``tree``'s cable passes through or within a
    voxel of (26-neighbourhood), as a new boolean array; everything else is dropped.

    Parameters
    ----------
    mask : numpy.ndarray
        (z, y, x) foreground, e.g. a probability map above its threshold; not changed.
    tree : SwcTree
        The trace of that map, in voxels or micrometres (its header says which).

    Examples
    --------
    >>> mask = np.zeros((1, 5, 9), bool)
    >>> mask[0, 2, 1:5] = mask[0, 2, 7] = True          # a neurite and a speck
    >>> tree = SwcTree([1, 2], [3, 3], [[1, 2, 0], [4, 2, 0]], [1, 1], [-1, 1])
    >>> traced_mask(mask, tree)[0, 2].astype(int).tolist()
    [0, 1, 1, 1, 1, 0, 0, 0, 0]
    """
    return pieces_on_segments(mask, cable_segments(tree))


def cable_segments(tree: SwcTree) -> np.ndarray:
    """The tree's cable as straight segments (E, 2, 3) in voxel (z, y, x): one per edge, plus
    each root as a segment of length 0, so a one-node tree is still a point of cable. Apart,
    the segments of a large tree can be handed out by region (a whole volume's blocks)."""
    tree = to_voxels(tree)
    zyx = tree.zyx
    child = np.flatnonzero(tree.parent_index >= 0)
    roots = np.flatnonzero(tree.parent_index < 0)
    starts = np.concatenate([zyx[child], zyx[roots]])
    stops = np.concatenate([zyx[tree.parent_index[child]], zyx[roots]])
    return np.stack([starts, stops], axis=1).reshape(-1, 2, 3)


def pieces_on_segments(mask: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """The 26-connected pieces of ``mask`` that the ``segments`` (E, 2, 3), voxel (z, y, x) in
    ``mask``'s frame, pass through or within a voxel of; see :func:`traced_mask`."""
    mask = np.asarray(mask, dtype=bool)
    if not len(segments) or not mask.any():
        return np.zeros_like(mask)
    pieces, n = ndimage.label(mask, NEIGHBOURS)
    voxels = _near_segments(np.asarray(segments, dtype=np.float64), mask.shape)
    keep = np.zeros(n + 1, dtype=bool)
    keep[pieces[tuple(voxels.T)]] = True
    keep[0] = False
    return keep[pieces]


def _near_segments(segments: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The voxels (N, 3) within the 26-neighbourhood of points sampled every
    :data:`SAMPLE_STEP` along each segment (both ends included), inside ``shape``."""
    start, stop = segments[:, 0], segments[:, 1]
    steps = np.ceil(np.linalg.norm(stop - start, axis=1) / SAMPLE_STEP).astype(int) + 1
    edge = np.repeat(np.arange(len(segments)), steps)
    first = np.repeat(np.cumsum(steps) - steps, steps)
    t = (np.arange(len(edge)) - first) / np.maximum(steps[edge] - 1, 1)
    points = start[edge] + t[:, None] * (stop[edge] - start[edge])
    centres = np.unique(np.rint(points).astype(np.int64), axis=0)
    offsets = np.argwhere(NEIGHBOURS) - 1
    voxels = (centres[:, None, :] + offsets[None]).reshape(-1, 3)
    inside = np.all((voxels >= 0) & (voxels < np.asarray(shape)), axis=1)
    return voxels[inside]
