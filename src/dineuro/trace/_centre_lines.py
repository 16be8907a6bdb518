"""Foreground of a map and the centre lines of its pieces: steps 1-3 of :mod:`dineuro.trace`.

Hysteresis threshold (a map that is mostly foreground is refused), cavities filled, centre
lines by thinning or minimal paths (:data:`METHODS`), pieces too short to be neurites removed
as noise, and the radius at each centre-line voxel (the radii of step 8).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from dineuro.errors import InputError
from dineuro.trace._geodesic import geodesic_graph
from dineuro.trace._skeleton import skeleton_graph

#: More foreground than this fraction of the stack is no neuron (they fill 0.02-2 %).
MAX_FOREGROUND_FRACTION = 0.5
#: How centre lines are found: 3D thinning, or minimal paths from a root (APP2, Rivulet).
METHODS = ("thinning", "geodesic")
_FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity, as the skeleton's


def _foreground(prob: np.ndarray, high: float, low: float) -> np.ndarray:
    """The :func:`hysteresis` foreground, refused above :data:`MAX_FOREGROUND_FRACTION`."""
    mask = hysteresis(prob, low, high)
    fraction = mask.mean()
    if fraction > MAX_FOREGROUND_FRACTION:
        raise InputError(f"{fraction:.0%} of the voxels are foreground at thresholds {low:g}/"
                         f"{high:g}; a neuron fills a small fraction of a stack, so this is "
                         "not a neurite probability map (or the thresholds are too low).")
    return mask


def hysteresis(prob: np.ndarray, low: float, high: float) -> np.ndarray:
    """Voxels above ``low`` in a (face-connected) piece holding a voxel above ``high``.

    What scikit-image's ``apply_hysteresis_threshold`` computes, found by looking up the labels
    under the ``high`` voxels instead of summing them over every label: on a noisy 60x512x512
    map with tens of thousands of pieces that sum was half of the whole trace's time.
    """
    labels, count = ndimage.label(prob > low)
    keep = np.zeros(count + 1, dtype=bool)
    keep[labels[prob > high]] = True
    keep[0] = False
    return keep[labels]


def foreground_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The box of a non-empty mask's foreground plus a voxel where the array allows: tracing
    works inside it (thinning, labels and distances cost what the box holds, not the stack)."""
    return tuple(slice(max(s.start - 1, 0), s.stop + 1)
                 for s in ndimage.find_objects(mask.view(np.uint8))[0])


def _fill_cavities(mask: np.ndarray) -> np.ndarray:
    """The mask with enclosed background (not reaching a face of the array) made foreground.

    A neurite or soma that is hollow in the map (a dim core, a nucleus) thins to a shell and
    then to loops, which the spanning forest cuts into hooks; filled, it thins to a line.
    """
    background, count = ndimage.label(~mask)  # 6-connected, the complement of 26
    faces = np.concatenate([np.unique(np.take(background, [0, -1], axis=axis))
                            for axis in range(3)])
    enclosed = np.ones(count + 1, dtype=bool)
    enclosed[faces] = False
    return mask | enclosed[background]


def _centre_lines(mask, scale, min_piece_length, method, prob):
    """Centre lines of the foreground's pieces that are long enough to be neurites.

    ``method`` is one of :data:`METHODS`; ``prob`` the map in the same box (its ridge steers
    geodesic centre lines).

    Returns ``(mask, labels, zyx, edges, removed)``: the mask with its cavities filled and its
    short pieces removed, its 26-connected component labels (0 off it), the centre-line forest
    and how many pieces were removed as noise.
    """
    filled = _fill_cavities(mask)
    labels = ndimage.label(filled, structure=_FULL)[0]
    if method == "geodesic":
        # A filled cavity (a dim core) counts as typical foreground, so that minimal paths run
        # through its middle rather than round it in the shell.
        prob = np.where(filled & ~mask, np.median(prob[mask]), prob)
        zyx, edges = geodesic_graph(filled, scale, prob, min_length=min_piece_length)
    else:
        zyx, edges = skeleton_graph(filled, scale)
    mask = filled
    zyx, edges, noise = _drop_short_pieces(zyx, edges, labels, scale, min_piece_length)
    if noise[1:].any():
        mask &= ~noise[labels]
        labels[~mask] = 0
    return mask, labels, zyx, edges, int(noise[1:].sum())


def _drop_short_pieces(zyx, edges, labels, scale, min_length, whole=None):
    """Remove the centre lines of foreground components with less than ``min_length`` of them.

    ``whole`` (bool over labels) says which components can be judged: a block of a larger
    volume (:mod:`dineuro.scale`) sees only part of a component cut by its border, which may
    be long beyond it. Default: all.

    Returns the remaining ``(zyx, edges)`` and a boolean over component labels (0 being the
    background, never noise): which components were removed, including those thinning erased.
    """
    label_of = labels[tuple(np.rint(zyx).astype(np.int64).T)]
    step = np.linalg.norm((zyx[edges[:, 0]] - zyx[edges[:, 1]]) * scale, axis=1)
    cable = np.bincount(label_of[edges[:, 0]], weights=step, minlength=labels.max() + 1)
    noise = cable < min_length  # a lone voxel has no edge: cable 0
    if whole is not None:
        noise &= whole
    noise[0] = False
    keep = ~noise[label_of]
    index = np.cumsum(keep) - 1
    return zyx[keep], index[edges[keep[edges[:, 0]]]], noise


def _radii(labels: np.ndarray, voxel: tuple[np.ndarray, ...], scale) -> np.ndarray:
    """Distance from each centre-line voxel to the nearest background voxel (``scale``'s
    spacing, x voxels).

    That background voxel always has a face-neighbour in the foreground (a step from it
    towards the centre-line voxel, along any axis where the two differ, comes closer, so it
    is not background), so a nearest-neighbour query among the shell of such voxels finds it.
    A distance transform over each piece's box gives the same numbers, but on a real stack
    whose neuron spans it that box is the whole stack, and its transform took over a second.
    """
    foreground = labels > 0
    shell = np.argwhere(ndimage.binary_dilation(foreground) & ~foreground)
    if not len(shell):  # the foreground fills the array: no background to measure to
        return np.zeros(len(voxel[0]))
    scale = np.asarray(scale, dtype=np.float64)
    distance, _ = cKDTree(shell * scale).query(np.stack(voxel, axis=1) * scale)
    return distance
