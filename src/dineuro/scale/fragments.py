"""Centre-line fragments of one block, and the stitching of all blocks into one graph.

A block traces its region (owned box plus halo) as :func:`dineuro.trace.trace` traces a whole
map, steps 1-4: hysteresis foreground, rows of beads joined (:mod:`dineuro.trace._beads`),
cavities filled, thinning and skan's graph, pieces too short to be neurites removed (only
those that lie wholly inside the region: a piece cut by the region's border may be long beyond
it), radii and evidence at each node, where each centre line's ends go as tips
(:mod:`dineuro.trace._ends`), and bridges across gaps (with the block's raw image for the line
test of :func:`~dineuro.trace._tree.line_contrast`, whose box reaches less far beyond a bridge
than the halo's margin). It then keeps only the nodes in its owned box. An edge from a kept
node to a node in the halo is kept as a *dangling* edge to that voxel, which the neighbouring
block owns.

Stitching (:func:`stitch`) is the graph merge of chunked skeletonisation (kimimaro's and
igneous's: skeletonise overlapping tasks, then join the pieces at the vertices they share):
nodes are identified by their voxel; a dangling edge is joined to the neighbour's node at that
voxel, or to its nearest node within :data:`SNAP` voxels where the neighbour's thinning
placed the line a voxel aside. Because each block read a halo wider than the longest bridge
plus a margin, the neighbour's line at a seam is almost always at that very voxel. Cycles the
join makes (a bridge both blocks proposed a different way) are cut by the shortest spanning
forest, as within a block; pieces that are still too short are removed over the whole graph.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix, csgraph
from scipy.spatial import cKDTree

from dineuro.io.atomic import atomic_file
from dineuro.trace._beads import join_bead_rows
from dineuro.trace._centre_lines import (
    _FULL,
    _drop_short_pieces,
    _fill_cavities,
    _radii,
    foreground_box,
    hysteresis,
)
from dineuro.trace._ends import end_points
from dineuro.trace._skeleton import skeleton_graph
from dineuro.trace._trace import MIN_RADIUS
from dineuro.trace._tree import bridge_gaps, graph_matrix

#: Farthest (voxels) a dangling edge's far end may be from the neighbour's node it is joined
#: to; a dangling edge with no node that near is dropped.
SNAP = 2.0
#: Nodes within SNAP looked at per dangling edge: a ball of radius 2 holds at most a few dozen
#: voxels, and a centre line passes through a handful of them.
_SNAP_CANDIDATES = 16


@dataclass
class Fragments:
    """Centre-line nodes a block owns, in volume voxels, and their edges.

    Attributes
    ----------
    zyx : ndarray
        (N, 3) int64 node voxels (z, y, x) in the volume.
    radius, evidence : ndarray
        (N,) float64: radius in x voxels, probability at the node.
    edges : ndarray
        (E, 2) int64 pairs of node indices, both owned.
    dangling : ndarray
        (D,) int64 owned node indices ...
    towards : ndarray
        (D, 3) int64 ... and the voxel in another block's box each is joined to.
    meta : dict
        What the block did (windows, seconds, foreground voxels), for the run's summary.
    ends : ndarray or None
        (N, 3) float64 volume voxels where each node that ends a centre line in the block's
        region goes as a tip (:func:`~dineuro.trace._ends.end_points`), nan elsewhere; None:
        not known (every row nan: tips stay where thinning left them).
    """

    zyx: np.ndarray
    radius: np.ndarray
    evidence: np.ndarray
    edges: np.ndarray
    dangling: np.ndarray
    towards: np.ndarray
    meta: dict = field(default_factory=dict)
    ends: np.ndarray | None = None

    def end_rows(self) -> np.ndarray:
        """``ends``, or nan rows when it is not known."""
        return np.full((len(self.zyx), 3), np.nan) if self.ends is None else self.ends

    @classmethod
    def empty(cls, meta: dict | None = None) -> Fragments:
        return cls(np.zeros((0, 3), np.int64), np.zeros(0), np.zeros(0),
                   np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.int64),
                   dict(meta or {}))

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (.npz) atomically: a block's file exists only once it is done."""
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, zyx=self.zyx, radius=self.radius, evidence=self.evidence,
                     edges=self.edges, dangling=self.dangling, towards=self.towards,
                     ends=self.end_rows(), meta=np.array(json.dumps(self.meta)))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Fragments:
        """A saved block; one saved before blocks kept their end points (a run resumed after
        an upgrade) loads without them."""
        with np.load(path) as data:
            return cls(data["zyx"], data["radius"], data["evidence"], data["edges"],
                       data["dangling"], data["towards"], json.loads(str(data["meta"])),
                       data["ends"] if "ends" in data.files else None)


def block_fragments(prob: np.ndarray, region_begin, begin, end, shape, scale, *, high: float,
                    low: float, min_piece_length: float, max_gap: float,
                    gap_floor: float, follow_gap: float, follow_contrast: float,
                    follow_line_gap: float, link_beads: bool = True,
                    image: np.ndarray | None = None) -> Fragments:
    """The centre-line fragments a block owns, traced from the probability of its region.

    Parameters
    ----------
    prob : ndarray
        float32 probability over the block's region (owned box plus halo).
    region_begin : sequence of int
        Where the region starts in the volume (z, y, x).
    begin, end : sequence of int
        The owned box in the volume.
    shape : sequence of int
        The volume's shape: a region face on the volume's face is not a cut.
    scale : ndarray
        (z, y, x) spacing in x voxels.
    high, low, min_piece_length, max_gap, gap_floor, follow_gap, follow_contrast, \
follow_line_gap, link_beads
        As for :func:`dineuro.trace.trace`.
    image : ndarray, optional
        The raw stack over the same region, for ``follow_contrast``.
    """
    mask = hysteresis(prob, low, high)
    if not mask.any():
        return Fragments.empty()
    if link_beads:
        mask = join_bead_rows(mask, prob, scale, high)[0]
    offset = np.asarray(region_begin, dtype=np.int64)
    box = foreground_box(mask)
    start = np.array([s.start for s in box], dtype=np.int64)
    filled = _fill_cavities(mask[box])
    labels = ndimage.label(filled, structure=_FULL)[0]
    zyx, edges = skeleton_graph(filled, scale)
    whole = ~_touching_cuts(labels, start, offset, prob.shape, shape)
    zyx, edges, noise = _drop_short_pieces(zyx, edges, labels, scale, min_piece_length, whole)
    if noise[1:].any():
        filled &= ~noise[labels]
        labels[~filled] = 0
    if not len(zyx):
        return Fragments.empty()
    voxel = tuple(np.rint(zyx).astype(np.int64).T)
    radius = np.maximum(_radii(labels, voxel, scale), MIN_RADIUS)
    local_prob = prob[box]
    evidence = local_prob[voxel].astype(np.float64)
    ends = end_points(zyx, edges, filled, radius, scale) + start + offset
    edges = np.concatenate([edges, bridge_gaps(
        zyx, edges, scale, filled, local_prob, max_gap, gap_floor, follow_gap,
        image=None if image is None else image[box], follow_contrast=follow_contrast,
        follow_line_gap=follow_line_gap)])
    global_zyx = np.rint(zyx).astype(np.int64) + start + offset
    owned = np.all((global_zyx >= np.asarray(begin)) & (global_zyx < np.asarray(end)), axis=1)
    index = np.cumsum(owned) - 1
    a_owned, b_owned = owned[edges[:, 0]], owned[edges[:, 1]]
    inner = edges[a_owned & b_owned]
    out_a, out_b = edges[a_owned & ~b_owned], edges[~a_owned & b_owned]
    dangling = np.concatenate([index[out_a[:, 0]], index[out_b[:, 1]]])
    towards = np.concatenate([global_zyx[out_a[:, 1]], global_zyx[out_b[:, 0]]])
    return Fragments(global_zyx[owned], radius[owned], evidence[owned], index[inner],
                     dangling.astype(np.int64), towards.reshape(-1, 3), ends=ends[owned])


def _touching_cuts(labels, box_start, region_begin, region_shape, shape) -> np.ndarray:
    """Over labels: whether the component reaches a face of the region that is a cut (a face
    inside the volume, beyond which it may go on). ``labels`` covers a box of the region
    starting at ``box_start``; the region starts at ``region_begin`` in a volume of ``shape``."""
    touching = np.zeros(labels.max() + 1, dtype=bool)
    for axis in range(3):
        size = labels.shape[axis]
        if box_start[axis] == 0 and region_begin[axis] > 0:
            touching[np.unique(np.take(labels, 0, axis=axis))] = True
        if (box_start[axis] + size == region_shape[axis]
                and region_begin[axis] + region_shape[axis] < shape[axis]):
            touching[np.unique(np.take(labels, size - 1, axis=axis))] = True
    touching[0] = False
    return touching


@dataclass
class Graph:
    """The stitched centre-line forest of a volume: nodes in volume voxels, edges between
    them, a tree per piece; ``ends`` as :class:`Fragments`'."""

    zyx: np.ndarray
    radius: np.ndarray
    evidence: np.ndarray
    edges: np.ndarray
    joined: int = 0
    snapped: int = 0
    unmatched: int = 0
    removed: int = 0
    ends: np.ndarray | None = None


def stitch(blocks: list[Fragments], scale, min_piece_length: float) -> Graph:
    """One forest from the blocks' fragments: dangling edges joined, cycles cut, short pieces
    removed (see the module docstring).

    Returns
    -------
    Graph
        With counts of dangling edges joined at the exact voxel, snapped to a node within
        :data:`SNAP`, left unmatched (dropped), and pieces removed as too short.
    """
    scale = np.asarray(scale, dtype=np.float64)
    sizes = [len(f.zyx) for f in blocks]
    first = np.cumsum([0, *sizes])[:-1]
    zyx = np.concatenate([f.zyx for f in blocks]) if blocks else np.zeros((0, 3), np.int64)
    radius = np.concatenate([f.radius for f in blocks]) if blocks else np.zeros(0)
    evidence = np.concatenate([f.evidence for f in blocks]) if blocks else np.zeros(0)
    ends = np.concatenate([f.end_rows() for f in blocks]) if blocks else np.zeros((0, 3))
    if not len(zyx):
        return Graph(zyx.astype(np.float64), radius, evidence, np.zeros((0, 2), np.int64))
    edges = [f.edges + k for f, k in zip(blocks, first, strict=True)]
    dangling = np.concatenate([f.dangling + k for f, k in zip(blocks, first, strict=True)])
    towards = np.concatenate([f.towards for f in blocks]).reshape(-1, 3)
    block_of = np.repeat(np.arange(len(blocks)), sizes)
    target, exact, snapped = _match(zyx, block_of, towards, dangling)
    found = target >= 0
    edges.append(np.stack([dangling[found], target[found]], axis=1))
    edges = np.concatenate(edges).astype(np.int64)
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    edges = edges[edges[:, 0] != edges[:, 1]]
    points = zyx.astype(np.float64)
    length = np.linalg.norm((points[edges[:, 0]] - points[edges[:, 1]]) * scale, axis=1)
    n = len(points)
    forest = csgraph.minimum_spanning_tree(
        coo_matrix((length, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()).tocoo()
    edges = np.stack([forest.row, forest.col], axis=1).astype(np.int64)
    keep, removed = _long_pieces(points, edges, scale, min_piece_length)
    index = np.cumsum(keep) - 1
    edges = index[edges[keep[edges[:, 0]]]]
    return Graph(points[keep], radius[keep], evidence[keep], edges.reshape(-1, 2),
                 joined=int(exact), snapped=int(snapped), unmatched=int((~found).sum()),
                 removed=removed, ends=ends[keep])


def _match(zyx: np.ndarray, block_of: np.ndarray, towards: np.ndarray,
           source: np.ndarray) -> tuple[np.ndarray, int, int]:
    """For each voxel in ``towards`` (a dangling edge from node ``source``): the node at it,
    else the nearest within :data:`SNAP` (inclusive) of another block than ``source``'s, else
    -1; and how many matched exactly and by snapping. The dangling edge's own node is a voxel
    step from its target, so it and its block's other nodes are never candidates."""
    if not len(towards):
        return np.zeros(0, np.int64), 0, 0
    neighbours = min(_SNAP_CANDIDATES, len(zyx))
    distance, index = cKDTree(zyx).query(towards, k=neighbours,
                                         distance_upper_bound=np.nextafter(SNAP, np.inf))
    distance, index = distance.reshape(len(towards), -1), index.reshape(len(towards), -1)
    found = np.isfinite(distance)
    index = np.where(found, index, 0)
    usable = found & (block_of[index] != block_of[source][:, None])
    first = np.argmax(usable, axis=1)  # nearest usable: candidates come nearest first
    row = np.arange(len(towards))
    matched = usable[row, first]
    target = np.where(matched, index[row, first], -1).astype(np.int64)
    exact = int((matched & (distance[row, first] == 0)).sum())
    return target, exact, int(matched.sum()) - exact


def _long_pieces(zyx, edges, scale, min_length) -> tuple[np.ndarray, int]:
    """Which nodes lie on pieces of the forest with at least ``min_length`` of centre line,
    and how many pieces were shorter."""
    n = len(zyx)
    count, piece = csgraph.connected_components(graph_matrix(n, edges), directed=False)
    step = np.linalg.norm((zyx[edges[:, 0]] - zyx[edges[:, 1]]) * scale, axis=1)
    cable = np.bincount(piece[edges[:, 0]], weights=step, minlength=count)
    short = cable < min_length
    return ~short[piece], int(short.sum())
