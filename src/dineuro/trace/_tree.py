"""Graph and tree operations on centre-line nodes: bridge gaps, root, prune spurs, resample.

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

# Points per voxel at which the probability is read along a straight bridge (index space).
_SAMPLES_PER_VOXEL = 2


def graph_matrix(n: int, edges: np.ndarray):
    """Symmetric sparse adjacency of ``n`` nodes, for scipy's graph routines."""
    ones = np.ones(len(edges))
    return coo_matrix((ones, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()


def bridge_gaps(zyx: np.ndarray, edges: np.ndarray, scale: np.ndarray, mask: np.ndarray,
                evidence: np.ndarray, max_gap: float, floor: float) -> np.ndarray:
    """Straight edges that join separate trees of a forest across small gaps with evidence.

    Candidates join an end (a node with at most one neighbour) of one tree to the nearest node
    of another tree at most ``max_gap`` x voxels away. They are taken shortest first, as in
    Kruskal's algorithm, so trees are chained into larger ones and never into a cycle; a
    candidate is accepted when the mean ``evidence`` (trilinear) along the part of the straight
    segment that lies outside ``mask`` is at least ``floor``. A segment entirely inside the
    mask (fragments touching diagonally) is accepted.

    Args:
        zyx, edges: the forest (see the module docstring).
        scale: (z, y, x) spacing in x voxels.
        mask: the boolean (z, y, x) foreground the forest was skeletonised from.
        evidence: float (z, y, x) map in [0, 1]: probability or normalised intensity.
        max_gap: longest bridge, in x voxels.
        floor: least mean evidence along the gap.

    Returns:
        ``(B, 2)`` node pairs of the accepted bridges.
    """
    n = len(zyx)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    _, tree_of = csgraph.connected_components(graph_matrix(n, edges), directed=False)
    ends = np.flatnonzero(np.bincount(edges.ravel(), minlength=n) <= 1)
    phys = zyx * scale
    near_lists = cKDTree(phys).query_ball_point(phys[ends], r=max_gap)
    candidates = []
    for end, near in zip(ends.tolist(), near_lists, strict=True):
        near = np.asarray(near, dtype=np.int64)
        near = near[tree_of[near] != tree_of[end]]
        if not len(near):
            continue
        distance = np.linalg.norm(phys[near] - phys[end], axis=1)
        order = np.lexsort((distance, tree_of[near]))
        first = np.flatnonzero(np.diff(tree_of[near][order], prepend=-1))  # nearest per tree
        candidates += [(distance[i], end, near[i]) for i in order[first].tolist()]
    candidates.sort()
    group = np.arange(tree_of.max() + 1)

    def find(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    bridges = []
    for _, a, b in candidates:
        ga, gb = find(tree_of[a]), find(tree_of[b])
        if ga != gb and gap_evidence(zyx[a], zyx[b], mask, evidence) >= floor:
            group[ga] = gb
            bridges.append((a, b))
    return np.asarray(bridges, dtype=np.int64).reshape(-1, 2)


def gap_evidence(a: np.ndarray, b: np.ndarray, mask: np.ndarray, evidence: np.ndarray) -> float:
    """Mean ``evidence`` on the straight segment a-b (voxels, z, y, x) where it leaves ``mask``.

    Infinite when the whole segment lies in the mask: nothing is missing there.
    """
    count = max(2, math.ceil(np.linalg.norm(b - a) * _SAMPLES_PER_VOXEL) + 1)
    points = a + np.linspace(0.0, 1.0, count)[:, None] * (b - a)
    voxels = np.rint(points).astype(np.int64)
    outside = ~mask[tuple(voxels.T)]
    if not outside.any():
        return math.inf
    return float(ndimage.map_coordinates(evidence, points[outside].T, order=1).mean())


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


def prune_spurs(zyx: np.ndarray, radius: np.ndarray, parent: np.ndarray, scale: np.ndarray,
                min_length: float) -> np.ndarray:
    """Which nodes of a rooted tree remain after removing short terminal branches.

    A terminal branch runs from a leaf up to the nearest branch point (a node with several
    children; the root counts when it has two or more). It is a spur when its length minus the
    branch point's radius, i.e. the part that sticks out of the parent neurite, is below
    ``min_length``. Spurs are removed in rounds until none is left, since removing one can
    turn a longer stretch into a terminal branch; at a branch point whose children are all
    spurs the longest is kept, so pruning shortens a tree's tips but never eats a whole branch
    that ends in a small fork. The root is never removed.

    Args:
        zyx, parent: the rooted tree (coordinates in voxels, tree indices).
        radius: radius of each node in x voxels.
        scale: (z, y, x) spacing in x voxels.
        min_length: shortest terminal branch kept, in x voxels.

    Returns:
        Boolean keep mask over the tree nodes; kept nodes still form one tree.
    """
    n = len(parent)
    length = edge_lengths(zyx, parent, scale).tolist()
    parents = parent.tolist()
    keep = np.ones(n, dtype=bool)
    while True:
        children = np.bincount(parent[1:][keep[1:]], minlength=n)
        leaves = np.flatnonzero(keep & (children == 0))
        spurs: dict[int, list[tuple[float, list[int]]]] = {}
        for leaf in leaves.tolist():
            if leaf == 0:
                continue
            path, total, node = [leaf], 0.0, leaf
            while True:
                total += length[node]
                node = parents[node]
                if children[node] >= 2 or node == 0:
                    break
                path.append(node)
            if children[node] >= 2 and total - radius[node] < min_length:
                spurs.setdefault(node, []).append((total, path))
        removed = False
        for branch, found in spurs.items():
            if len(found) == children[branch]:
                found = sorted(found)[:-1]
            for _, path in found:
                keep[path] = False
                removed = True
        if not removed:
            return keep


def resample(zyx: np.ndarray, radius: np.ndarray, parent: np.ndarray, scale: np.ndarray,
             step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample a rooted tree to about one node every ``step`` x voxels along its branches.

    The root, branch points and leaves are kept where they are; the stretch between two of them
    gets ``max(1, round(length / step))`` equal pieces, with positions and radii interpolated
    linearly along the arc. Returns ``(zyx, radius, parent)`` of the new tree, parents first.
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
        pieces = max(1, round(arc[-1] / step))
        at = arc[-1] * np.arange(1, pieces + 1) / pieces
        points = np.stack([np.interp(at, arc, zyx[path, k]) for k in range(3)], axis=1)
        points[-1] = zyx[end]  # exact, whatever the rounding of the arc
        previous = new_index[start]
        for point, r in zip(points, np.interp(at, arc, radius[path]), strict=True):
            out_zyx.append(point)
            out_radius.append(r)
            out_parent.append(previous)
            previous = len(out_zyx) - 1
        new_index[end] = previous
    return np.asarray(out_zyx), np.asarray(out_radius), np.asarray(out_parent, dtype=np.int64)
