"""Centre-line ends carried on to where the foreground ends (thinning only).

A gold SWC ends a neurite at the centre of its round end: the tip node lies a radius inside
the end of the neurite's voxels. Thinning stops short of that on thick ends (a voxel short of
a rendered tube of radius 3) and on the ragged, fading tips of a network's map often by more.
So each end of the centre-line forest is given where the centre of a round end would lie
(:func:`end_points`): a march from the end along its direction (:func:`~dineuro.trace._tree.
end_directions`), in steps of :data:`END_STEP` x voxels, to the last point before the
foreground stops, less the end's radius. An end moves only when that is at least
:data:`END_MIN` on, and only when the march met background: one that leaves the stack (or the
block of a volume) or walks :data:`END_REACH` does not see where its foreground ends. The
finished trees take the point as the tip of each terminal branch, and of a root that is an end
rather than a soma (:func:`extend_ends`), after pruning and the debris rules, which read the
centre lines as thinned. Minimal paths (the geodesic method) already run out to a piece's far
end and are left as they are.

On the default model's maps of the 8 noisy and 8 bench test stacks and of 16 held-out noisy
train stacks this gained recall 0.005-0.007 at the same precision, with lower hairiness
(README, "The default model": "Tips carried on to the end of the foreground").
"""

from __future__ import annotations

import numpy as np

from dineuro.trace._tree import end_directions

#: Step of the march beyond an end (x voxels). Not a divisor of 1: along an axis, steps of
#: 0.5 from a voxel centre land on voxel faces, where rounding picks the voxel by parity and so
#: depends on where the array starts (a box of a map, a block of a volume).
END_STEP = 0.4
#: Shortest move of an end (x voxels): less stays within the end's own voxel.
END_MIN = 1.0
#: Longest march (x voxels): far beyond the thickest neurite's radius, so that an end this far
#: from background is not at the end of its foreground (a direction running down a neurite).
END_REACH = 15.0


def end_points(zyx: np.ndarray, edges: np.ndarray, mask: np.ndarray, radius: np.ndarray,
               scale: np.ndarray) -> np.ndarray:
    """Where the centre of a round end would lie beyond each end of a centre-line forest: the
    foreground's end along the end's direction, less the end's radius.

    Parameters
    ----------
    zyx : ndarray
        (N, 3) centre-line nodes in voxels of ``mask``.
    edges : ndarray
        (E, 2) node indices of the forest.
    mask : ndarray of bool
        The foreground the centre lines were thinned from.
    radius : ndarray
        (N,) radius at each node in x voxels.
    scale : ndarray
        (z, y, x) voxel size in x voxels.

    Returns
    -------
    ndarray
        (N, 3) float64: for each end (a node with one edge) that this moves by at least
        :data:`END_MIN`, the point; nan for every other node.
    """
    n = len(zyx)
    out = np.full((n, 3), np.nan)
    degree = np.bincount(edges.ravel(), minlength=n)
    ends = np.flatnonzero(degree == 1)
    if not len(ends):
        return out
    direction = end_directions(zyx * scale, edges, ends)
    step = END_STEP * direction / scale  # voxel index steps of END_STEP x voxels
    point = zyx[ends].astype(np.float64)
    walked = np.zeros(len(ends), dtype=np.int64)
    going = np.ones(len(ends), dtype=bool)
    at_background = np.zeros(len(ends), dtype=bool)
    limit = np.array(mask.shape) - 1
    for _ in range(int(END_REACH / END_STEP)):
        which = np.flatnonzero(going)
        ahead = point[which] + step[which]
        voxel = np.rint(ahead).astype(np.int64)
        in_array = np.all((voxel >= 0) & (voxel <= limit), axis=1)
        in_mask = in_array.copy()
        in_mask[in_array] = mask[tuple(voxel[in_array].T)]
        point[which[in_mask]] = ahead[in_mask]
        walked[which[in_mask]] += 1
        at_background[which[in_array & ~in_mask]] = True
        going[which[~in_mask]] = False
        if not going.any():
            break
    beyond = walked * END_STEP - radius[ends]
    moved = at_background & (beyond >= END_MIN)
    out[ends[moved]] = zyx[ends[moved]] + (beyond[moved] / END_STEP)[:, None] * step[moved]
    return out


def extend_ends(zyx: np.ndarray, radius: np.ndarray, parent: np.ndarray, ends: np.ndarray,
                root_is_end: bool):
    """A rooted tree with a node added at the :func:`end_points` point of each leaf, and of
    the root when ``root_is_end``; an added node takes its end's radius.

    Returns ``(zyx, radius, parent)``, parents first (an added root is node 0).

    Examples
    --------
    >>> zyx = np.array([[0.0, 0, 0], [0, 0, 1], [0, 0, 2]])
    >>> ends = np.array([[0.0, 0, -1], [np.nan] * 3, [0, 0, 4]])
    >>> new = extend_ends(zyx, np.ones(3), np.array([-1, 0, 1]), ends, True)
    >>> new[0][:, 2].tolist(), new[2].tolist()
    ([-1.0, 0.0, 1.0, 2.0, 4.0], [-1, 0, 1, 2, 3])
    """
    n = len(parent)
    leaf = np.bincount(parent[parent >= 0], minlength=n) == 0
    leaf[0] = False
    grow = np.flatnonzero(leaf & np.isfinite(ends[:, 0]))
    zyx = np.concatenate([zyx, ends[grow]])
    radius = np.concatenate([radius, radius[grow]])
    parent = np.concatenate([parent, grow])
    if root_is_end and np.isfinite(ends[0, 0]):
        zyx = np.concatenate([ends[:1], zyx])
        radius = np.concatenate([radius[:1], radius])
        parent = np.concatenate([[-1], parent + 1])
    return zyx, radius, parent
