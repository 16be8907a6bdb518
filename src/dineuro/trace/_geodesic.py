"""Foreground mask -> centre-line graph by minimal paths from a root, as APP2 and Rivulet do.

Thinning (:mod:`dineuro.trace._skeleton`) peels a mask from its surface, so every bump of a
rough, blurred map grows a twig and every hole a loop. Here each connected piece of the
foreground is traced instead by minimal paths through a cost that is low on the bright, thick
middle of a neurite: from one source (the piece's fastest voxel, a soma's centre when it has
one) scikit-image's ``MCP_Geometric`` gives in one sweep the geodesic distance of every voxel
and the traceback to the source. Then, as Rivulet's coverage loop:

1. the uncovered voxel farthest from the source (in geodesic distance: the end of the longest,
   thinnest, dimmest way in) is a tip; its minimal path is followed back until it meets the
   covered part around the tree built so far;
2. the voxels within ``cover`` times the distance-transform radius of that new stretch are
   marked covered, so the neurite it runs along is not traced again;
3. the stretch becomes a branch when it is at least ``min_branch`` long; a shorter one is a
   bump of the surface (APP2's hierarchical pruning drops such branches in the same way),
   except on the far side of a source inside a neurite, where it extends a line. A branch
   follows its minimal path on to where it touches the tree, which is where minimal paths
   merge: at the fork. Its tip, on the surface of the neurite's rounded end, is cut back to
   where the path reaches the middle (unless the stack's face cuts the neurite there).

The loop ends when every voxel of the piece is covered. The output is the same forest of voxel
nodes as :func:`~dineuro.trace._skeleton.skeleton_graph`'s, so bridging, rooting, pruning,
smoothing and radii are shared: ``zyx`` ``(N, 3)`` float64 voxel coordinates (z, y, x) and
``edges`` ``(E, 2)`` int64 node indices, one tree per piece.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

#: Speed along a path is p ** PROB_POWER * r ** RADIUS_POWER (p the map, r the distance to the
#: background in x voxels); a step costs its length over the speed. The radius term keeps paths
#: in the middle of a binary mask, where p is flat; the probability term on the ridge of a map.
PROB_POWER, RADIUS_POWER = 1.0, 1.0
#: A new stretch covers the voxels within this many of its distance-transform radii.
DEFAULT_COVER = 1.5
#: Shortest new stretch (x voxels, outside the covered part) that becomes a branch.
DEFAULT_MIN_BRANCH = 3.0
#: A path voxel lies on the ridge of its neurite when it is at least this fraction as thick as
#: the thickest path voxel within RIDGE_WINDOW of its radii further on (see ``_trim_cap``), or
#: thinner by at most RIDGE_SLACK x voxels: the distance transform of a thin neurite steps
#: between 1 and 2 voxels along its middle.
RIDGE_FRACTION, RIDGE_WINDOW, RIDGE_SLACK = 0.75, 2.0, 1.0
# Least speed (of at most 1): keeps the cost of a thin, dim voxel finite and the sweep exact.
_SPEED_FLOOR = 1e-9
_FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity, as the skeleton's
_NEIGHBOURS = np.argwhere(_FULL) - 1  # a voxel and its 26 neighbours, as offsets


def geodesic_graph(mask: np.ndarray, scale: np.ndarray, prob: np.ndarray | None = None, *,
                   cover: float = DEFAULT_COVER, min_branch: float = DEFAULT_MIN_BRANCH,
                   min_length: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Centre lines of a boolean (z, y, x) mask as a forest of minimal paths, a tree per piece.

    Parameters
    ----------
    mask : ndarray of bool
        (z, y, x) foreground. Its faces are taken for the stack's: a neurite that reaches one
        is cut there and runs to it, with no rounded end to trim.
    scale : ndarray
        (z, y, x) voxel size in x voxels (only ratios matter).
    prob : ndarray, optional
        The map the mask was thresholded from, (z, y, x) in [0, 1]; None reads the mask as
        probability 1, so that only the distance transform steers the paths.
    cover : float, optional
        A stretch covers the voxels within this many radii of it (see module docstring).
    min_branch : float, optional
        Shortest new stretch kept as a branch, in x voxels.
    min_length : float, optional
        Pieces with too few voxels to hold a path this long (x voxels) are skipped: they would
        be removed as noise anyway.

    Returns
    -------
    zyx : ndarray
        (N, 3) node coordinates in voxels.
    edges : ndarray
        (E, 2) node indices: the edges of the forest.

    Examples
    --------
    >>> mask = np.zeros((7, 7, 30), dtype=bool)
    >>> mask[2:5, 2:5, 3:27] = True
    >>> zyx, edges = geodesic_graph(mask, np.ones(3))
    >>> len(edges) == len(zyx) - 1, zyx[:, 2].min(), zyx[:, 2].max()
    (True, np.float64(4.0), np.float64(24.0))
    """
    scale = np.asarray(scale, dtype=np.float64)
    labels, _ = ndimage.label(mask, structure=_FULL)
    distance = ndimage.distance_transform_edt(mask, sampling=scale)
    prob = mask.astype(np.float32) if prob is None else prob
    longest_step = float(np.linalg.norm(scale))
    all_zyx, all_edges, count = [], [], 0
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        inside = labels[box] == k
        size = int(inside.sum())
        if size < 2 or (size - 1) * longest_step < min_length:
            continue
        cut = np.array([[s.start == 0 for s in box],
                        [s.stop == n for s, n in zip(box, mask.shape, strict=True)]])
        zyx, edges = piece_paths(inside, prob[box], distance[box], scale, cut, cover,
                                 min_branch)
        all_zyx.append(zyx + [s.start for s in box])
        all_edges.append(edges + count)
        count += len(zyx)
    if not all_zyx:
        return np.zeros((0, 3)), np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(all_zyx).astype(np.float64), np.concatenate(all_edges)


def speed(prob: np.ndarray, radius: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """How fast a minimal path runs through each voxel of a piece (see :data:`PROB_POWER`).

    0 off the piece, and at most 1 on it, so that the floor that keeps the cost finite means
    the same for every piece.
    """
    fast = np.where(inside, prob.astype(np.float64) ** PROB_POWER * radius ** RADIUS_POWER, 0.0)
    return fast / max(float(fast.max()), np.finfo(float).tiny)


def piece_paths(inside: np.ndarray, prob: np.ndarray, radius: np.ndarray, scale: np.ndarray,
                cut: np.ndarray, cover: float, min_branch: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """The minimal-path tree of one connected piece (see the module docstring).

    Parameters
    ----------
    inside : ndarray of bool
        Box around the piece, True on it.
    prob, radius : ndarray
        The map and the distance transform (x voxels) in the same box.
    scale, cover, min_branch
        As :func:`geodesic_graph`.
    cut : ndarray of bool
        (2, 3): which of the box's low (row 0) and high (row 1) faces along (z, y, x) are
        faces of the stack, where neurites are cut.

    Returns
    -------
    zyx, edges : ndarray
        The piece's tree, as :func:`geodesic_graph`'s, voxel coordinates in the box.
    """
    source, arrival, back = _sweep(inside, speed(prob, radius, inside), scale)
    nodes = np.asarray([source], dtype=np.int64)
    covered = np.zeros(inside.shape, dtype=bool)
    _stamp(covered, nodes, radius, scale, cover)
    node_at = np.full(inside.shape, -1, dtype=np.int64)  # node index at its voxel
    node_at[source] = 0
    at_source = 0  # stretches joined to the source
    edges: list[np.ndarray] = []
    for tip in _farthest_first(np.flatnonzero(inside), arrival, covered):
        walk = back(np.unravel_index(tip, inside.shape))
        outside, reached = _until_covered(walk, covered)
        short = _length(np.asarray(outside), scale) < min_branch
        _stamp(covered, np.asarray(outside), radius, scale, cover)
        # The first two stretches joined to the source run from it both ways along the neurite
        # it lies in; the second, however short, extends a line and starts no branch.
        if short and at_source >= 2:
            continue
        inward, join = _into_tree(itertools.chain([reached], walk), node_at, scale)
        if short and join != 0:
            continue
        at_source += join == 0
        stretch = _trim_cap(np.asarray(outside + inward), radius, scale, cut)
        new = np.arange(len(nodes), len(nodes) + len(stretch))
        node_at[tuple(stretch.T)] = new
        edges.append(np.stack([new, np.append(new[1:], join)], axis=1))
        nodes = np.concatenate([nodes, stretch])
    edges_array = np.concatenate(edges) if edges else np.zeros((0, 2), dtype=np.int64)
    return nodes.astype(np.float64), edges_array.astype(np.int64)


def _sweep(inside: np.ndarray, fast: np.ndarray, scale: np.ndarray):
    """Minimal paths from the fastest voxel of a piece: ``(source, arrival, back)``.

    One sweep of scikit-image's ``MCP_Geometric`` gives ``arrival``, the cumulative cost of
    every voxel (infinite off the piece), and the step by which a minimal path reaches it;
    ``back(voxel)`` walks those steps back: an iterator over the voxels (index tuples) of the
    minimal path from ``voxel`` to ``source``, both included.
    """
    from skimage.graph import MCP_Geometric

    source = np.unravel_index(int(np.argmax(fast)), inside.shape)
    with np.errstate(divide="ignore"):
        cost = np.where(inside, 1.0 / np.maximum(fast, _SPEED_FLOOR), np.inf)
    mcp = MCP_Geometric(cost, sampling=tuple(scale))
    arrival, step = mcp.find_costs([source])
    offsets = np.asarray(mcp.offsets).tolist()

    def back(voxel):
        while True:
            yield voxel
            move = step[voxel]
            if move < 0:  # the source
                return
            voxel = tuple(v - d for v, d in zip(voxel, offsets[move], strict=True))

    return source, arrival, back


def _farthest_first(voxels: np.ndarray, arrival: np.ndarray, covered: np.ndarray):
    """The flat indices of ``voxels`` by decreasing arrival, each only if not yet covered when
    it comes up (``covered`` grows as the caller traces)."""
    for voxel in voxels[np.argsort(-arrival.flat[voxels], kind="stable")].tolist():
        if not covered.flat[voxel]:
            yield voxel


def _until_covered(walk, covered: np.ndarray) -> tuple[list, tuple]:
    """The voxels of a walk before the first covered one, and that one."""
    outside = []
    for voxel in walk:
        if covered[voxel]:
            return outside, voxel
        outside.append(voxel)
    raise AssertionError("a minimal path ended uncovered")  # the source is covered


def _into_tree(walk, node_at: np.ndarray, scale: np.ndarray) -> tuple[list, int]:
    """Follow a minimal path on into the tree: ``(voxels, node)``.

    Minimal paths to one source merge where their neurites meet, so a new branch follows its
    path on, through the covered part, until it touches the tree: a node on the path or among
    the 26 neighbours of a path voxel (a path may cut a voxel corner past the node where it
    merges). The branch point lands at the fork, and every edge joins neighbouring voxels.
    ``walk`` starts at the first covered voxel; every path ends at the source, a node.
    Returns the voxels before the node and the node.
    """
    shape = np.asarray(node_at.shape)
    voxels = []
    for voxel in walk:
        near = np.asarray(voxel) + _NEIGHBOURS
        near = near[np.all((near >= 0) & (near < shape), axis=1)]
        found = node_at[tuple(near.T)]
        if (found >= 0).any():
            near, found = near[found >= 0], found[found >= 0]
            nearest = int(np.argmin(np.linalg.norm((near - voxel) * scale, axis=1)))
            if np.any(near[nearest] != voxel):  # beside the node, not on it
                voxels.append(voxel)
            return voxels, int(found[nearest])
        voxels.append(voxel)
    raise AssertionError("a minimal path ended off the tree")  # the source is a node


def _length(path: np.ndarray, scale: np.ndarray) -> float:
    """Length of a voxel path in x voxels; 0 for fewer than two voxels."""
    return float(np.linalg.norm(np.diff(path, axis=0) * scale, axis=1).sum())


def _stamp(covered: np.ndarray, path: np.ndarray, radius: np.ndarray, scale: np.ndarray,
           cover: float) -> None:
    """Mark the voxels within ``cover`` radii of each voxel of ``path`` (in place).

    At least its 26 neighbours: a thin neurite is a few voxels thick across coarse z steps
    whatever its radius, and an uncovered lane beside a path would be traced as a branch.
    """
    shape = np.asarray(covered.shape)
    least = float(np.linalg.norm(scale))  # the longest step to a neighbour
    for point in path:
        reach = max(cover * float(radius[tuple(point)]), least)
        half = np.floor(reach / scale).astype(np.int64)
        low, high = np.maximum(point - half, 0), np.minimum(point + half + 1, shape)
        grid = np.ogrid[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
        squared = sum(((g - p) * s) ** 2 for g, p, s in zip(grid, point, scale, strict=True))
        covered[tuple(slice(a, b) for a, b in zip(low, high, strict=True))] |= \
            squared <= reach * reach


def _trim_cap(stretch: np.ndarray, radius: np.ndarray, scale: np.ndarray,
              cut: np.ndarray) -> np.ndarray:
    """The stretch from where it reaches the middle of the neurite's end, tip cut off.

    The farthest voxel lies on the surface of the neurite's rounded end, often on a bump of
    it, and the minimal path climbs from there to the middle along the surface. The voxels
    cut off are that climb (off the ridge: thinner than :data:`RIDGE_FRACTION` of the
    thickest voxel within :data:`RIDGE_WINDOW` of their radii further on) and the cap (their
    inscribed ball holds the tip), so the stretch ends about where the neurite, and a gold
    tracing, ends. A tip on a ``cut`` face (see :func:`piece_paths`) is where the stack cuts
    the neurite, which goes on: the stretch keeps the face, only the climb is cut. The
    stretch keeps at least its last voxel.
    """
    tip, last = stretch[0], np.asarray(radius.shape) - 1
    at_face = np.any(cut[0] & (tip == 0)) or np.any(cut[1] & (tip == last))
    thickness = radius[tuple(stretch.T)]
    reach = np.linalg.norm((stretch - tip) * scale, axis=1)
    for i in range(len(stretch)):
        if not at_face and reach[i] < thickness[i]:
            continue
        ahead = np.linalg.norm((stretch[i:] - stretch[i]) * scale, axis=1)
        thickest = thickness[i:][ahead <= RIDGE_WINDOW * thickness[i]].max()
        if thickness[i] >= min(RIDGE_FRACTION * thickest, thickest - RIDGE_SLACK):
            return stretch[i:]
    return stretch[-1:]
