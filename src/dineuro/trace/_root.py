"""Where a traced tree starts: at its soma when it has one, else where it leaves the stack.

Trees are given as in :mod:`dineuro.trace._tree`: ``zyx`` voxel coordinates in the working box,
``radius`` in x voxels, ``parent`` tree indices (-1 at the root, parents first).

A soma is the one part of a neuron much thicker than its neurites, and compact: a thick trunk
beside a thin arbor is as thick but long. Without a soma in the stack, a neuron's tree was cut
from a larger one by the stack's border, and the cut nearest the soma is where its thickest
neurite leaves the stack; a tree that leaves nowhere starts at its thickest end. A root the
user gives, (x, y, z) in the stack's voxels, is the nearest centre-line node of the forest
(:func:`_given_root`).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csgraph

from dineuro.errors import InputError
from dineuro.trace._tree import edge_lengths, graph_matrix

#: A soma is at least this many times as thick as the median centre-line radius of its tree.
SOMA_RADIUS_RATIO = 2.0
#: ... and the part of the tree thicker than halfway to the soma's radius lies within this many
#: soma radii of its centre (a ball's lies within one; a trunk's runs along the trunk).
SOMA_MAX_EXTENT = 3.0
#: An end within its radius plus this (x voxels) of a face of the stack leaves the stack there:
#: thinning stops a radius or so inside the face a neurite is cut by.
BORDER_REACH = 1.0
#: An end's thickness is the median radius over this many x voxels of neurite behind it.
END_WINDOW = 10.0
# Radii within this (x voxels) of the largest count as equally thick: the distance transform
# of a voxel mask takes few distinct values.
_RADIUS_TIE = 0.5

#: How a root was chosen, as the SWC header says it (a soma of a tree other than the first is
#: called a blob: see :func:`dineuro.trace.trace`).
SOMA, BLOB, GIVEN = "soma", "thick blob", "given"
BORDER, THICKEST_END = "end leaving the stack", "thickest end"


def thickest_node(zyx: np.ndarray, radius: np.ndarray, brightness: np.ndarray) -> int:
    """The node at the centre of the thickest part: the soma's centre if there is one.

    The thickest node wins, the brightest among equals (a soma is bright); then, of the nodes
    about as thick (within ``_RADIUS_TIE``) and within its radius, the one nearest their
    centroid: the middle of a ball, not a node off centre that the distance transform's coarse
    values happen to favour.
    """
    thickest = np.flatnonzero(radius >= radius.max())
    top = int(thickest[np.argmax(brightness[thickest])])
    near = np.linalg.norm(zyx - zyx[top], axis=1) <= radius[top]
    candidates = np.flatnonzero(near & (radius >= radius[top] - _RADIUS_TIE))
    centre = zyx[candidates].mean(axis=0)
    return int(candidates[np.argmin(np.linalg.norm(zyx[candidates] - centre, axis=1))])


def is_soma(zyx: np.ndarray, radius: np.ndarray, parent: np.ndarray, node: int,
            scale: np.ndarray) -> bool:
    """Whether ``node`` is the centre of a soma: clearly thicker than the tree, and compact.

    See :data:`SOMA_RADIUS_RATIO` and :data:`SOMA_MAX_EXTENT`.
    """
    typical, thickness = float(np.median(radius)), float(radius[node])
    if thickness < SOMA_RADIUS_RATIO * typical:
        return False
    thick = radius >= (thickness + typical) / 2
    child = np.flatnonzero(thick & thick[np.maximum(parent, 0)] & (parent >= 0))
    edges = np.stack([child, parent[child]], axis=1)
    _, part = csgraph.connected_components(graph_matrix(len(parent), edges), directed=False)
    members = np.flatnonzero(part == part[node])
    reach = np.linalg.norm((zyx[members] - zyx[node]) * scale, axis=1).max()
    return bool(reach <= SOMA_MAX_EXTENT * thickness)


def end_root(zyx: np.ndarray, radius: np.ndarray, parent: np.ndarray, scale: np.ndarray,
             offset: np.ndarray, shape: tuple[int, ...]) -> tuple[int, str]:
    """The root of a tree without a soma, and how it was chosen (:data:`BORDER` or
    :data:`THICKEST_END`).

    Of the ends where the tree leaves the stack (``offset`` places the tree's box in the stack
    of ``shape``, both (z, y, x)), the thickest (:func:`end_thickness`); else the thickest of
    all its ends. Ends are the leaves, and the root when it has one child.
    """
    children = np.bincount(parent[1:], minlength=len(parent))
    ends = np.flatnonzero(children == 0)
    if children[0] == 1:
        ends = np.concatenate([[0], ends])
    if len(ends) == 0:  # a single node
        return 0, THICKEST_END
    position = zyx[ends] + offset
    margin = np.minimum(position, np.asarray(shape) - 1 - position) * scale
    leaving = margin.min(axis=1) <= radius[ends] + BORDER_REACH
    thickness = end_thickness(zyx, radius, parent, scale, ends)
    if leaving.any():
        thickness = np.where(leaving, thickness, -np.inf)
    return int(ends[np.argmax(thickness)]), BORDER if leaving.any() else THICKEST_END


def end_thickness(zyx: np.ndarray, radius: np.ndarray, parent: np.ndarray, scale: np.ndarray,
                  ends: np.ndarray) -> np.ndarray:
    """Median radius over the last :data:`END_WINDOW` x voxels of neurite behind each end.

    The walk from an end stops at the first branch point, so a short terminal twig is judged
    by itself, not by the trunk it leaves.
    """
    graph = graph_matrix(len(parent), np.stack([np.arange(1, len(parent)), parent[1:]], axis=1))
    graph = (graph + graph.T).tocsr()
    length = edge_lengths(zyx, parent, scale)
    parents = parent.tolist()
    out = []
    for end in ends.tolist():
        walked, previous, node, seen = 0.0, -1, end, [end]
        while walked < END_WINDOW:
            neighbours = graph.indices[graph.indptr[node]:graph.indptr[node + 1]]
            onward = neighbours[neighbours != previous]
            if len(onward) != 1:
                break
            step = int(onward[0])
            walked += length[node] if parents[node] == step else length[step]
            previous, node = node, step
            seen.append(node)
        out.append(float(np.median(radius[seen])))
    return np.asarray(out)


def _given_root(root, offset, shape, zyx, label_of, labels, scale, root_snap) -> int:
    """Centre-line node for a user's soma position (x, y, z) in voxels.

    See :func:`~dineuro.trace.trace` for how it snaps to the forest of ``zyx``, whose box
    starts at ``offset`` in the stack of ``shape``.
    """
    try:
        xyz = np.asarray(root, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        raise InputError(f"root should be x,y,z voxel coordinates, not {root!r}.") from None
    point = xyz[::-1]
    if not (np.all(np.isfinite(point)) and np.all(point >= -0.5)
            and np.all(point < np.asarray(shape) - 0.5)):
        raise InputError(f"root (x, y, z) = {tuple(xyz.tolist())} lies outside the stack of "
                         f"shape {tuple(shape)} (z, y, x).")
    local = point - offset
    voxel = np.rint(local).astype(np.int64)
    in_box = np.all(voxel >= 0) and np.all(voxel < labels.shape)
    label = labels[tuple(voxel)] if in_box else 0
    nodes = np.flatnonzero(label_of == label) if label else np.arange(len(zyx))
    distance = np.linalg.norm((zyx[nodes] - local) * scale, axis=1)
    nearest = int(np.argmin(distance))
    if not label and distance[nearest] > root_snap:
        raise InputError(f"root (x, y, z) = {tuple(xyz.tolist())} is outside the foreground "
                         f"and {distance[nearest]:.1f} x voxels from the nearest traced "
                         f"neurite, more than root_snap = {root_snap:g}.")
    return int(nodes[nearest])
