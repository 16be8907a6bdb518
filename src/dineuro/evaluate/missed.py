"""Where a trace's missing recall lies: in what the network never saw, or in what the tracer lost.

Recall by contrast (:mod:`dineuro.evaluate.contrast`) says how dim the missed gold is; this says
what the map shows there and what the tracer did with it. Each gold sample point (the points
:func:`~dineuro.evaluate.compare_trees` measures recall on, with the length each stands for)
that lies ``threshold`` or more from the trace goes into the first class that fits, judged by
the map within ``threshold`` voxels of it (a ball):

- **blind**: the map stays at or below the tracer's low threshold there: the network did not
  see it;
- **unsure**: it rises above the low threshold, not above the high one: seen, too faintly to
  start foreground;
- **short of a tip**: it rises above the high threshold, the trace passes within twice
  ``threshold``, its nearest point of the trace is one of the trace's ends (a node of degree
  1), and it lies ahead of that end (in the half-space the end's last edge points into): the
  gold goes on beyond where the trace stops;
- **alongside**: the same, nearest to a point along the trace: it runs beside the gold
  (through a dense arbor the map merges into one blob, whose twigs one centre line cannot all
  pass close to, or pulled to one side of a neurite the map draws lopsided);
- **traced piece**: sure, and a piece of the map's foreground (hysteresis, as the tracer
  makes it) within the ball holds trace: the tracer kept the piece and left this part of it
  (a pruned branch, a blob's inside);
- **untraced piece**: sure, and no piece there holds trace: dropped as noise, debris or speckle.

The first two are the network's share of the gap, the last four the tracer's (or the map's
shape, for **alongside**).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from dineuro.defaults import DEFAULT_HIGH, DEFAULT_LOW, DEFAULT_SWC_THRESHOLD
from dineuro.evaluate.reconstruction import _check_threshold, _check_tree, _sample, _SegmentIndex
from dineuro.io.swc import SwcTree, swc_to_zyx
from dineuro.trace._centre_lines import _FULL, hysteresis

#: The classes of missed gold, in the order they are tried (module docstring).
MISSED_CLASSES = ("blind", "unsure", "short of a tip", "alongside", "traced piece",
                  "untraced piece")


@dataclass(frozen=True)
class MissedGold:
    """Gold length, the part of it the trace recalls, and the rest by class.

    Attributes
    ----------
    length : float
        Gold length (SWC units).
    recalled : float
        Of it, the length within the threshold of the trace.
    missed : dict
        The remaining length per class of :data:`MISSED_CLASSES`.
    """

    length: float
    recalled: float
    missed: dict[str, float]

    def __add__(self, other: MissedGold) -> MissedGold:
        """Pooled over two stacks."""
        return MissedGold(self.length + other.length, self.recalled + other.recalled,
                          {key: self.missed[key] + other.missed[key] for key in MISSED_CLASSES})


def _ball(radius: float) -> np.ndarray:
    """Voxels within ``radius`` of the centre voxel, as a footprint."""
    reach = int(np.floor(radius))
    offsets = np.mgrid[(slice(-reach, reach + 1),) * 3]
    return np.sum(offsets ** 2, axis=0) <= radius ** 2


#: How much farther than the trace (SWC units) an end of it may lie from a gold point and still
#: be its nearest point: rounding only.
END_TOL = 1e-6


def _ahead_of_ends(tree: SwcTree, points: np.ndarray) -> np.ndarray:
    """Distance from each point (N, 3; x, y, z) to its nearest end of ``tree`` (a node of
    degree 1: a tip, or a root with one child), or inf where the point does not lie ahead of
    that end, past it along its last edge."""
    parent = tree.parent_index
    child = np.flatnonzero(parent >= 0)
    degree = np.bincount(parent[child], minlength=len(tree)) + (parent >= 0)
    ends = np.flatnonzero(degree == 1)
    if not len(ends):
        return np.full(len(points), np.inf)
    neighbour = parent.copy()
    under_root = child[parent[parent[child]] < 0]
    neighbour[parent[under_root]] = under_root  # a root's neighbour: its child (one, if an end)
    distance, nearest = cKDTree(tree.xyz[ends]).query(points)
    end = ends[nearest]
    heading = tree.xyz[end] - tree.xyz[neighbour[end]]
    ahead = np.einsum("nk,nk->n", points - tree.xyz[end], heading) > 0
    return np.where(ahead, distance, np.inf)


def missed_gold(test: SwcTree, gold: SwcTree, prob: np.ndarray,
                threshold: float = DEFAULT_SWC_THRESHOLD, high: float = DEFAULT_HIGH,
                low: float = DEFAULT_LOW) -> MissedGold:
    """The gold's length, what ``test`` recalls of it, and the rest by class (module docstring).

    Parameters
    ----------
    test, gold : SwcTree
        The trace of ``prob`` (may be empty) and the gold, in the map's voxels (x, y, z).
    prob : ndarray
        The (z, y, x) probability map the trace was made from.
    threshold : float, optional
        Distance (SWC units, voxels) within which a gold point counts as recalled, as in
        :func:`compare_trees`; also the radius of the ball the map is read in.
    high, low : float, optional
        The tracer's hysteresis thresholds.

    Examples
    --------
    A gold line the map shows surely, and a trace beside it, three voxels off:

    >>> prob = np.zeros((9, 20, 30), np.float32)
    >>> prob[4, 8:13, 5:25] = 0.9
    >>> line = lambda y: SwcTree([1, 2], [3, 3], [[5, y, 4], [24, y, 4]], [1, 1], [-1, 1])
    >>> result = missed_gold(line(12), line(9), prob)
    >>> round(result.recalled, 1), round(result.missed["alongside"], 1)
    (0.0, 19.0)
    """
    threshold = _check_threshold(threshold)
    _check_tree(gold, "gold")
    _check_tree(test, "test", allow_empty=True)
    prob = np.asarray(prob, dtype=np.float32)
    points = _sample(gold)
    distance = np.full(len(points.points), np.inf)
    to_end = np.full(len(points.points), np.inf)
    if len(test):
        trace = _sample(test)
        distance = _SegmentIndex(trace.start, trace.end).distances(points.points)
        to_end = _ahead_of_ends(test, points.points)
    ball = _ball(threshold)
    voxel = tuple(np.clip(np.rint(swc_to_zyx(points.points)).astype(np.int64), 0,
                          np.array(prob.shape) - 1).T)
    near_map = ndimage.maximum_filter(prob, footprint=ball)[voxel]
    pieces, _ = ndimage.label(hysteresis(prob, low, high), _FULL)  # as the tracer's pieces
    traced = np.zeros(pieces.max() + 1, dtype=bool)
    if len(test):
        node = np.clip(np.rint(swc_to_zyx(test.xyz)).astype(np.int64), 0,
                       np.array(prob.shape) - 1)
        traced[pieces[tuple(node.T)]] = True
    traced[0] = False
    near_traced = ndimage.binary_dilation(traced[pieces], structure=ball)[voxel]
    recalled = distance < threshold
    classes = {"blind": near_map <= low,
               "unsure": near_map <= high,
               "short of a tip": (distance < 2 * threshold) & (to_end <= distance + END_TOL),
               "alongside": distance < 2 * threshold,
               "traced piece": near_traced,
               "untraced piece": np.ones(len(distance), dtype=bool)}
    left = ~recalled
    missed = {}
    for key in MISSED_CLASSES:
        chosen = left & classes[key]
        missed[key] = float(points.weight[chosen].sum())
        left &= ~chosen
    return MissedGold(float(points.weight.sum()), float(points.weight[recalled].sum()), missed)
