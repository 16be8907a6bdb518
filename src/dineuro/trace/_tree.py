"""Graph and tree operations on centre-line nodes: bridge gaps, root, prune, smooth, resample.

Nodes are given by ``zyx`` ``(N, 3)`` voxel coordinates (z, y, x). Lengths are physical lengths
in units of the x voxel size ("x voxels", the unit of SWC radii): ``scale`` is the (z, y, x)
spacing divided by the x spacing, and a vector ``v`` of voxel offsets is ``|v * scale|`` long.

A rooted tree is ``(nodes, parent)``: ``nodes`` the graph node of each tree node in
breadth-first order from the root (tree node 0), ``parent`` the tree index of each node's parent
(smaller than its own index), -1 at the root.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix, csgraph
from scipy.spatial import cKDTree

from dineuro.data.normalize import robust_level

# Points per voxel at which a straight bridge is sampled (index space): every voxel it crosses.
_SAMPLES_PER_VOXEL = 2
# Spacing (x voxels) of the samples on which a centre line is smoothed: fine against a voxel.
_SMOOTH_SAMPLE = 0.5
#: Half-angle (degrees) of the cone around the direction an end points in, inside which a
#: bridge may reach ``follow_gap`` (:func:`bridge_gaps`).
FOLLOW_CONE_DEGREES = 35.0
#: How far back along the centre line (x voxels) an end's direction is taken from: a few
#: voxels, so that the staircase of a voxel skeleton does not turn it.
DIRECTION_REACH = 5.0
#: Least mean evidence along a bridge inside an end's cone: anything above a clean background
#: (a network's map is about 0.001 there), since the fibre's direction is the evidence.
FOLLOW_FLOOR = 0.01
#: The line test of a cone bridge in the raw image (:func:`line_contrast`): the image is smoothed
#: with this Gaussian sigma (voxels), about a thin neurite's profile, so that its background's
#: spread is that of what a line through it averages;
LINE_SMOOTH = 1.0
#: the background is sampled in the segment's box grown by this many voxels,
LINE_MARGIN = 6
#: on voxels more than this many voxels (face steps) from the foreground, neurites' edges aside;
LINE_CLEARANCE = 2
#: and with fewer background voxels than this, the test has nothing to go by.
LINE_MIN_BACKGROUND = 50


def graph_matrix(n: int, edges: np.ndarray):
    """Sparse adjacency of ``n`` nodes, each edge once (scipy's routines read it with
    ``directed=False``)."""
    ones = np.ones(len(edges))
    return coo_matrix((ones, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()


def bridge_gaps(zyx: np.ndarray, edges: np.ndarray, scale: np.ndarray, mask: np.ndarray,
                evidence: np.ndarray, max_gap: float, floor: float,
                follow_gap: float = 0.0, *, image: np.ndarray | None = None,
                follow_contrast: float = math.inf, follow_line_gap: float = 0.0) -> np.ndarray:
    """Straight edges that join separate trees of a forest across gaps with evidence.

    Candidates join an end (a node with at most one neighbour) of one tree to a node of
    another tree at most ``max_gap`` x voxels away in any direction, or at most ``follow_gap``
    away inside a cone of half-angle :data:`FOLLOW_CONE_DEGREES` around the direction the end
    points in (from the centre line :data:`DIRECTION_REACH` behind it): a fibre that fades for a
    stretch (dim between beads, or dimmed along its length) goes on in the same direction,
    while noise lies anywhere. Each end keeps its best candidate per other tree, ranked by
    distance lengthened by the turn it asks (``d * (2 - cos angle)``; ``d`` for an end without
    a direction). They are taken best first, as in Kruskal's algorithm, so trees are chained
    into larger ones and never into a cycle; a candidate is accepted when the mean
    ``evidence`` on the voxels of the part of the straight segment outside ``mask`` is at
    least ``floor``, or :data:`FOLLOW_FLOOR` inside the cone. A segment entirely inside the
    mask (fragments touching diagonally) is accepted. Inside the cone, where the map has
    nothing (a fibre too dim for the network), the raw ``image`` may still show the line: a
    bridge of at most ``follow_line_gap`` is then accepted when its :func:`line_contrast` is
    at least ``follow_contrast``. That test is a measurement along the whole gap, where the
    map's floor asks for hardly anything, so it may reach further than ``follow_gap``.

    Parameters
    ----------
    zyx, edges : ndarray
        The forest (see the module docstring).
    scale : ndarray
        (z, y, x) spacing in x voxels.
    mask : ndarray of bool
        The (z, y, x) foreground the forest was skeletonised from.
    evidence : ndarray of float
        (z, y, x) map in [0, 1]: probability or normalised intensity.
    max_gap : float
        Longest bridge in any direction, in x voxels.
    floor : float
        Least mean evidence along a gap outside the cone.
    follow_gap : float, optional
        Longest bridge inside an end's cone, in x voxels; 0 leaves only the bridges of
        ``max_gap`` and ``floor``.
    image : ndarray, optional
        The raw (z, y, x) stack over the same box as ``mask``, any dtype.
    follow_contrast : float, optional
        Least :func:`line_contrast` of a cone bridge the ``evidence`` does not carry; infinite
        (the default) or without ``image``: none is.
    follow_line_gap : float, optional
        Longest such bridge, in x voxels.

    Returns
    -------
    ndarray
        ``(B, 2)`` node pairs of the accepted bridges.
    """
    n = len(zyx)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    _, tree_of = csgraph.connected_components(graph_matrix(n, edges), directed=False)
    ends = np.flatnonzero(np.bincount(edges.ravel(), minlength=n) <= 1)
    phys = zyx * scale
    direction = end_directions(phys, edges, ends)
    cone = math.cos(math.radians(FOLLOW_CONE_DEGREES))
    # an infinite follow_contrast takes no line: none is measured
    line_gap = follow_line_gap if image is not None and math.isfinite(follow_contrast) else 0.0
    near_lists = cKDTree(phys).query_ball_point(phys[ends],
                                                r=max(max_gap, follow_gap, line_gap))
    candidates = []
    for end, pointing, near in zip(ends.tolist(), direction, near_lists, strict=True):
        near = np.asarray(near, dtype=np.int64)
        near = near[tree_of[near] != tree_of[end]]
        if not len(near):
            continue
        offset = phys[near] - phys[end]
        distance = np.linalg.norm(offset, axis=1)
        cosine = offset @ pointing / np.maximum(distance, 1e-9)  # 0 without a direction
        in_cone = (cosine >= cone) if pointing.any() else np.zeros(len(near), dtype=bool)
        short = distance <= max_gap
        by_map = in_cone & (distance <= follow_gap)
        by_line = in_cone & (distance <= line_gap)
        cost = distance * (2.0 - cosine) if pointing.any() else distance
        allowed = short | by_map | by_line
        near, cost = near[allowed], cost[allowed]
        short, by_map, by_line = short[allowed], by_map[allowed], by_line[allowed]
        order = np.lexsort((cost, tree_of[near]))
        first = np.flatnonzero(np.diff(tree_of[near][order], prepend=-1))  # best per tree
        candidates += [(cost[i], end, near[i], bool(short[i]), bool(by_map[i]),
                        bool(by_line[i])) for i in order[first].tolist()]
    candidates.sort()
    group = np.arange(tree_of.max() + 1)

    def find(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    def supported(a: int, b: int, short: bool, by_map: bool, by_line: bool) -> bool:
        if ((short or by_map) and gap_evidence(zyx[a], zyx[b], mask, evidence)
                >= (FOLLOW_FLOOR if by_map else floor)):
            return True
        return by_line and line_contrast(zyx[a], zyx[b], mask, image) >= follow_contrast

    bridges = []
    for _, a, b, *reach in candidates:
        ga, gb = find(tree_of[a]), find(tree_of[b])
        if ga != gb and supported(a, b, *reach):
            group[ga] = gb
            bridges.append((a, b))
    return np.asarray(bridges, dtype=np.int64).reshape(-1, 2)


def end_directions(phys: np.ndarray, edges: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Unit vector (physical) in which each end points: from the centre-line node about
    :data:`DIRECTION_REACH` behind it (or the last before a branch point) to the end; zeros for
    an end without neighbours, which points nowhere."""
    graph = graph_matrix(len(phys), edges)
    graph = (graph + graph.T).tocsr()  # both directions of every edge
    indptr, indices = graph.indptr, graph.indices
    out = np.zeros((len(ends), 3))
    for k, end in enumerate(ends.tolist()):
        if indptr[end] == indptr[end + 1]:
            continue
        previous, current = end, indices[indptr[end]]
        while (np.linalg.norm(phys[current] - phys[end]) < DIRECTION_REACH
               and indptr[current + 1] - indptr[current] == 2):
            pair = indices[indptr[current]:indptr[current + 1]]
            previous, current = current, pair[0] if pair[0] != previous else pair[1]
        vector = phys[end] - phys[current]
        out[k] = vector / np.linalg.norm(vector)
    return out


def segment_voxels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The voxels (z, y, x) the straight segment a-b crosses, sampled :data:`_SAMPLES_PER_VOXEL`
    times per voxel of its length (a voxel may repeat), ends included."""
    count = max(2, math.ceil(np.linalg.norm(b - a) * _SAMPLES_PER_VOXEL) + 1)
    return np.rint(a + np.linspace(0.0, 1.0, count)[:, None] * (b - a)).astype(np.int64)


def gap_evidence(a: np.ndarray, b: np.ndarray, mask: np.ndarray, evidence: np.ndarray) -> float:
    """Mean ``evidence`` on the voxels of the straight segment a-b (voxels, z, y, x) that lie
    outside ``mask`` (each its own value: interpolating would lend the gap the foreground's).

    Infinite when the whole segment lies in the mask: nothing is missing there.
    """
    voxels = segment_voxels(a, b)
    outside = ~mask[tuple(voxels.T)]
    if not outside.any():
        return math.inf
    return float(evidence[tuple(voxels[outside].T)].mean())


def line_contrast(a: np.ndarray, b: np.ndarray, mask: np.ndarray, image: np.ndarray) -> float:
    """How far the raw image along the straight segment a-b (voxels, z, y, x) stands out of the
    background around it, in units of that background's spread.

    The image, smoothed with :data:`LINE_SMOOTH`, is averaged on the segment's voxels that are
    background: in the segment's box grown by :data:`LINE_MARGIN` voxels, more than
    :data:`LINE_CLEARANCE` from the foreground (``mask``), where the light of the pieces it
    joins does not reach through the smoothing. The result is (that mean - the background's
    median) / its spread. Averaging along the gap is a matched filter: a fibre a few noise
    units high, too dim for a network to mark voxel by voxel, stands clear of noise over a gap
    of ten voxels or more, where a patch of noise does not keep to a line. Any affine rescaling
    of the image (a percentile normalisation) gives the same value.

    The spread is the larger of the background's robust spread
    (:func:`~dineuro.data.normalize.robust_level`, which a few bright voxels do not inflate)
    and its standard deviation. In a stack whose background was clipped at zero (background
    subtracted, or an 8-bit export of a dim stack) most background voxels are 0 and their
    median absolute deviation collapses to almost nothing, while speckles and the faint edges
    of the pieces still lift the mean along a dark gap a little: over the robust spread alone
    nearly every dark gap "stood out". The standard deviation counts those speckles, so a
    dark gap stays within it. In camera noise (about normal) the two are about equal; hot
    pixels make the standard deviation the larger there too, which asks a little more of a
    line.

    Infinite when the whole segment lies in the mask; minus infinity when none of its voxels is
    background (a gap too short to tell a line) or the box holds fewer than
    :data:`LINE_MIN_BACKGROUND` background voxels (nothing to compare with).
    """
    low = np.maximum(np.floor(np.minimum(a, b)).astype(np.int64) - LINE_MARGIN, 0)
    high = np.minimum(np.ceil(np.maximum(a, b)).astype(np.int64) + LINE_MARGIN + 1, mask.shape)
    box = tuple(slice(lo, hi) for lo, hi in zip(low.tolist(), high.tolist(), strict=True))
    voxels = segment_voxels(a, b) - low
    inside = mask[box]
    if inside[tuple(voxels.T)].all():
        return math.inf
    background = ~ndimage.binary_dilation(inside, iterations=LINE_CLEARANCE)
    clear = background[tuple(voxels.T)]
    if not clear.any() or background.sum() < LINE_MIN_BACKGROUND:
        return -math.inf
    smooth = ndimage.gaussian_filter(np.asarray(image[box], dtype=np.float64), LINE_SMOOTH)
    median, spread = robust_level(smooth[background])
    spread = max(spread, float(smooth[background].std()))
    if spread == 0:  # a flat background, the gap's voxels among it: nothing stands out
        return 0.0
    return float((smooth[tuple(voxels[clear].T)].mean() - median) / spread)


def rooted_tree(n: int, edges: np.ndarray, root: int) -> tuple[np.ndarray, np.ndarray]:
    """The tree of the forest that holds ``root``, breadth-first from it (module docstring)."""
    nodes, predecessor = csgraph.breadth_first_order(graph_matrix(n, edges), root,
                                                     directed=False, return_predecessors=True)
    index = np.full(n, -1, dtype=np.int64)
    index[nodes] = np.arange(len(nodes))
    parent = index[np.where(predecessor[nodes] >= 0, predecessor[nodes], nodes[0])]
    parent[0] = -1
    return nodes, parent


def edge_lengths(zyx: np.ndarray, parent: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Length of the edge from each tree node to its parent in x voxels; 0 at the root."""
    step = zyx - zyx[np.maximum(parent, 0)]
    return np.linalg.norm(step * scale, axis=1)


def subtree(parent: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Parents (new tree indices) of the kept nodes of a rooted tree whose kept nodes connect."""
    index = np.cumsum(keep) - 1
    kept = parent[keep]
    return np.where(kept >= 0, index[np.maximum(kept, 0)], -1)


def reroot(parent: np.ndarray, root: int) -> tuple[np.ndarray, np.ndarray]:
    """The same tree hung from another of its nodes: ``(order, parent)`` as :func:`rooted_tree`.

    ``order`` lists the old tree indices breadth-first from ``root``; ``parent`` is in the new
    indices.
    """
    n = len(parent)
    edges = np.stack([np.arange(1, n), parent[1:]], axis=1)
    return rooted_tree(n, edges, root)


def terminal_branches(parent: list[int], children: np.ndarray, keep: np.ndarray):
    """Each terminal branch of the kept part of a rooted tree: ``(path, stop)``.

    A terminal branch runs from a leaf (not the root) up to the nearest node with several kept
    children, or the root: ``path`` its tree indices from the leaf up, ``stop`` that node (not
    in ``path``).
    """
    for leaf in np.flatnonzero(keep & (children == 0)).tolist():
        if leaf == 0:
            continue
        path, node = [leaf], parent[leaf]
        while children[node] < 2 and node != 0:
            path.append(node)
            node = parent[node]
        yield path, node


def prune_spurs(zyx: np.ndarray, radius: np.ndarray, parent: np.ndarray, scale: np.ndarray,
                min_length: float, spur_radii: float = 0.0, radius_cap: float = math.inf,
                soma_root: bool = True) -> np.ndarray:
    """Which nodes of a rooted tree remain after removing short terminal branches.

    How far a terminal branch (see :func:`terminal_branches`) reaches is the largest distance
    of its nodes from the branch point it leaves; with the branch point's radius r, it is a
    spur when either

    - the part that sticks out of the parent neurite, its reach minus r, is shorter than
      ``min_length``: a floor for thin neurites, whose spurs are a voxel or two; or
    - its reach is shorter than ``spur_radii * min(r, radius_cap)``: on a fat, rough mask
      thinning grows a twig towards every bump of the surface, about as long as the mask is
      thick, which no fixed floor fits at all widths. ``radius_cap`` (e.g. twice the median
      neurite radius) keeps a soma's large radius from swallowing the short neurites that
      leave it.

    Reach rather than length along the branch, because a small cycle of the skeleton (a hole
    in the mask) broken by the spanning forest leaves a hook that is long but stays close to
    its branch point. Spurs are removed in rounds until none is left, since removing one can
    turn a longer stretch into a terminal branch; at a branch point whose children are all
    spurs the one reaching farthest is kept, so pruning shortens a tree's tips but never eats a
    whole branch that ends in a small fork. The root is never removed. It counts as a branch
    point when it has two or more children if it is a soma (``soma_root``: every neurite leaves
    it), three or more if not (a node inside a neurite, where two children are just its two
    sides: a branch point there would cut short whichever side is shorter).

    Parameters
    ----------
    zyx, parent : ndarray
        The rooted tree (coordinates in voxels, tree indices).
    radius : ndarray
        Radius of each node in x voxels.
    scale : ndarray
        (z, y, x) spacing in x voxels.
    min_length : float
        Shortest reach outside the parent neurite kept, in x voxels.
    spur_radii : float, optional
        Shortest reach kept, in radii of the branch point.
    radius_cap : float, optional
        Largest branch-point radius the ``spur_radii`` rule uses, in x voxels.
    soma_root : bool, optional
        Whether the root is a soma (see above).

    Returns
    -------
    ndarray of bool
        Keep mask over the tree nodes; kept nodes still form one tree.
    """
    n = len(parent)
    limit = np.maximum(radius + min_length, spur_radii * np.minimum(radius, radius_cap))
    parents = parent.tolist()
    keep = np.ones(n, dtype=bool)
    while True:
        children = np.bincount(parent[1:][keep[1:]], minlength=n)
        fork = children >= 2
        fork[0] = children[0] >= (2 if soma_root else 3)
        spurs: dict[int, list[tuple[float, list[int]]]] = {}
        for path, branch in terminal_branches(parents, children, keep):
            if not fork[branch]:
                continue
            reach = float(np.linalg.norm((zyx[path] - zyx[branch]) * scale, axis=1).max())
            if reach < limit[branch]:
                spurs.setdefault(branch, []).append((reach, path))
        removed = False
        for branch, found in spurs.items():
            if len(found) == children[branch]:
                found = sorted(found, key=lambda spur: spur[0])[:-1]
            for _, path in found:
                keep[path] = False
                removed = True
        if not removed:
            return keep


def resample(zyx: np.ndarray, radius: np.ndarray, parent: np.ndarray, scale: np.ndarray,
             step: float, smooth: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth a rooted tree's centre lines and resample them every ``step`` x voxels.

    The root, branch points and leaves stay where they are. Each stretch between two of them
    is smoothed (:func:`smooth_stretch`) and then cut into ``max(1, round(length / step))``
    equal pieces of its smoothed arc, radii read along it the same way. Returns ``(zyx,
    radius, parent)`` of the new tree, parents first.
    """
    n = len(parent)
    children = np.bincount(parent[1:], minlength=n)
    is_key = children != 1
    is_key[0] = True
    length = edge_lengths(zyx, parent, scale)
    out_zyx, out_radius, out_parent = [zyx[0]], [radius[0]], [-1]
    new_index = {0: 0}
    parents = parent.tolist()
    for end in (np.flatnonzero(is_key[1:]) + 1).tolist():
        path = [end]
        while not is_key[parents[path[-1]]]:
            path.append(parents[path[-1]])
        start = parents[path[-1]]
        path = np.asarray([start, *path[::-1]])
        arc = np.concatenate([[0.0], np.cumsum(length[path[1:]])])
        line, radii = smooth_stretch(zyx[path], radius[path], arc, smooth)
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(line, axis=0) * scale,
                                                              axis=1))])
        pieces = max(1, round(arc[-1] / step))
        at = arc[-1] * np.arange(1, pieces + 1) / pieces
        points = np.stack([np.interp(at, arc, line[:, k]) for k in range(3)], axis=1)
        points[-1] = zyx[end]  # exact, whatever the rounding of the arc
        previous = new_index[start]
        for point, r in zip(points, np.interp(at, arc, radii), strict=True):
            out_zyx.append(point)
            out_radius.append(r)
            out_parent.append(previous)
            previous = len(out_zyx) - 1
        new_index[end] = previous
    return np.asarray(out_zyx), np.asarray(out_radius), np.asarray(out_parent, dtype=np.int64)


def smooth_stretch(zyx: np.ndarray, radius: np.ndarray, arc: np.ndarray,
                   sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """A polyline with fixed ends, smoothed by a Gaussian of ``sigma`` x voxels along its arc.

    A voxel skeleton steps between neighbouring voxel centres, so an oblique neurite becomes a
    staircase a voxel off its axis and up to a fifth longer. The line is sampled every
    ``_SMOOTH_SAMPLE`` x voxels of ``arc`` and filtered; beyond each end it is continued by its
    point reflection through that end, which keeps both ends in place and a straight line
    straight. Radii are filtered alike (continued as constant), except the ends' own.

    Returns
    -------
    line, radii : ndarray
        The smoothed samples, ends first and last; the polyline itself when ``sigma`` is 0.
    """
    from scipy.ndimage import gaussian_filter1d

    count = max(2, math.ceil(arc[-1] / _SMOOTH_SAMPLE) + 1)
    if sigma <= 0 or count <= 2:
        return zyx, radius
    at = np.linspace(0.0, arc[-1], count)
    line = np.stack([np.interp(at, arc, zyx[:, k]) for k in range(3)], axis=1)
    radii = np.interp(at, arc, radius)
    width = sigma / (arc[-1] / (count - 1))  # in samples
    pad = math.ceil(4 * width)  # gaussian_filter1d's reach at its default truncate=4
    padded = np.pad(line, ((pad, pad), (0, 0)), mode="reflect", reflect_type="odd")
    line = gaussian_filter1d(padded, width, axis=0)[pad:-pad]
    line[0], line[-1] = zyx[0], zyx[-1]
    smoothed = gaussian_filter1d(radii, width, mode="nearest")
    smoothed[0], smoothed[-1] = radius[0], radius[-1]
    return line, smoothed
