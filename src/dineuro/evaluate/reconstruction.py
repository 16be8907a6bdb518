"""Distances between two SWC reconstructions: Vaa3D's ESA, DSA and PDS, and length precision/recall.

A reconstruction is compared as the set of points it passes through. Every edge (child node to
parent node) of length ``L`` is sampled at ``int(1 + L + 0.5)`` evenly spaced points that include
both of its nodes (one point, the child, when ``L < 0.5``), as Vaa3D's ``neuron_distance`` does.
A point's distance to the other tree is its shortest distance to any of that tree's edges taken
as straight segments. With ``d`` the distances of one tree's points to the other tree and ``T``
the threshold (2 by default):

- **ESA** (entire-structure average): the mean of ``d`` in each direction, averaged over the two
  directions.
- **DSA** (different-structure average): the mean of the ``d >= T`` in each direction, averaged
  over the directions that have such points (0 when neither has).
- **PDS** (percentage of different structure): the fraction of points with ``d >= T`` in each
  direction, averaged over the two directions.
- **precision** / **recall** / **F1**: the fraction of the test tree's length within ``d < T`` of
  the gold tree, the same for the gold tree's length near the test tree, and their harmonic
  mean. Each sample point stands for ``L / int(1 + L + 0.5)`` of its edge, so the fraction is
  ``sum(weight[d < T]) / sum(weight)``: the length of the tree near the other one, measured at
  the sampling resolution.
- **hairiness**: terminal tips per :data:`HAIRINESS_LENGTH` (100) units of cable length, for
  each tree, and ``hairiness_ratio`` = test / gold. A terminal tip is a node of degree 1 in the
  undirected tree: every leaf, and a root with exactly one child (it ends the cable as much as a
  leaf does); an isolated node has no cable and is no tip. A tracer that sprouts short false
  spurs scores well on F1 (the spurs are few points) but has a ratio well above 1; one that
  loses branches, below 1. A tree without length has no hairiness (None), and the ratio is
  None unless both trees have one.

Distances and lengths are in raw SWC units ((x, y, z) voxels for dineuro's own files); node
types and radii play no part. Sample points at a node are counted once per edge that ends there,
as in Vaa3D.

Where this differs from Vaa3D (``neuron_sim_scores.cpp``):

- A root without children (an isolated node, e.g. in a forest) is one sample point and, as a
  target, a segment of length zero (a point). Vaa3D skips such nodes, and refuses a tree with
  fewer than two nodes (printing a message and returning no scores); here a one-node tree is
  simply one point.
- Distances are computed in float64; Vaa3D projects onto a segment in float32, so the two agree
  to about 1e-6 relative.
- A tree without length (only isolated nodes and zero-length edges) has precision or recall
  equal to the fraction of its points within ``T``, instead of 0 / 0.
- The threshold must be positive; a directional DSA without any distant point is 0.
- An empty test tree (no nodes: what the tracer writes for a map with nothing in it) is scored as
  an empty reconstruction (see :class:`ReconstructionScores`) rather than refused; Vaa3D refuses
  it. An empty gold tree is refused: there is nothing to score against.

Zero-length edges count as in Vaa3D: one sample point (the child) and, as a target, a point.

Examples
--------
>>> from dineuro.io.swc import SwcTree
>>> def line(y):  # a 10-voxel line along x at height y
...     return SwcTree([1, 2], [3, 3], [[0, y, 0], [10, y, 0]], [1, 1], [-1, 1])
>>> result = compare_trees(line(0), line(3))
>>> round(result.esa, 6), round(result.dsa, 6), result.pds, result.f1
(3.0, 3.0, 1.0, 0.0)
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from dineuro.defaults import DEFAULT_SWC_THRESHOLD
from dineuro.errors import InputError
from dineuro.io.swc import ROOT_PARENT, SwcTree, read_swc, validate_swc

# Target segments are cut into pieces at most this long (SWC units), whose centres go into the
# kd-tree. Only speed depends on it: shorter pieces mean more centres to search, longer ones more
# candidate segments per point; 4 was fastest on random trees (benchmarks/compare_speed.py).
PIECE_LENGTH = 4.0
# Nearest piece centres fetched per query point at first; doubled for the points that need more
# (see _SegmentIndex.distances).
FIRST_NEIGHBOURS = 8
# Most (point, candidate) pairs handled at once, to bound memory (about 100 MB of temporaries).
CANDIDATE_BUDGET = 2**20
#: Cable length (SWC units) that hairiness counts terminal tips per.
HAIRINESS_LENGTH = 100.0


@dataclass(frozen=True)
class ReconstructionScores:
    """Distances between a test and a gold reconstruction; see the module docstring.

    Distances and lengths are in SWC units; fractions are in [0, 1]. ``*_test_to_gold`` values
    are over the test tree's sample points measured against the gold tree, ``*_gold_to_test``
    the other way round.

    An empty test tree (no nodes) matches none of the gold: recall and F1 are 0, and
    ``pds_gold_to_test`` is 1. What averages over its sample points, of which there are none, is
    undefined (nan): precision, ``esa_test_to_gold``, ``dsa_test_to_gold``,
    ``pds_test_to_gold``, and so ESA, DSA and PDS. A gold point is infinitely far from no tree:
    ``esa_gold_to_test`` and ``dsa_gold_to_test`` are inf. Its length, nodes, points and tips
    are 0, its hairiness and the ratio None. :meth:`to_dict` writes nan and inf as None.

    Parameters
    ----------
    threshold : float
        Distance from which a point counts as apart.
    esa : float
        Entire-structure average, the mean of the two directional ESAs.
    dsa : float
        Different-structure average over the directions that have distant points.
    pds : float
        Percentage (as a fraction) of different structure, mean of the two directions.
    precision : float
        Fraction of the test tree's length within ``threshold`` of the gold tree.
    recall : float
        Fraction of the gold tree's length within ``threshold`` of the test tree.
    f1 : float
        Harmonic mean of precision and recall (0 when both are 0).
    esa_test_to_gold : float
        Mean distance of the test tree's points to the gold tree.
    esa_gold_to_test : float
        Mean distance of the gold tree's points to the test tree.
    dsa_test_to_gold : float
        Mean distance of the test tree's points at ``>= threshold`` (0 if none).
    dsa_gold_to_test : float
        The same for the gold tree's points.
    pds_test_to_gold : float
        Fraction of the test tree's points at ``>= threshold``.
    pds_gold_to_test : float
        Fraction of the gold tree's points at ``>= threshold``.
    test_length : float
        Total edge length of the test tree.
    gold_length : float
        Total edge length of the gold tree.
    test_nodes : int
        Number of nodes of the test tree.
    gold_nodes : int
        Number of nodes of the gold tree.
    test_points : int
        Number of sample points of the test tree.
    gold_points : int
        Number of sample points of the gold tree.
    test_tips : int
        Terminal tips (nodes of degree 1) of the test tree.
    gold_tips : int
        Terminal tips of the gold tree.
    test_hairiness : float or None
        Test tips per 100 units of test length (None without length).
    gold_hairiness : float or None
        Gold tips per 100 units of gold length (None without length).
    hairiness_ratio : float or None
        ``test_hairiness / gold_hairiness``; None when either tree has no length.
    """

    threshold: float
    esa: float
    dsa: float
    pds: float
    precision: float
    recall: float
    f1: float
    esa_test_to_gold: float
    esa_gold_to_test: float
    dsa_test_to_gold: float
    dsa_gold_to_test: float
    pds_test_to_gold: float
    pds_gold_to_test: float
    test_length: float
    gold_length: float
    test_nodes: int
    gold_nodes: int
    test_points: int
    gold_points: int
    test_tips: int
    gold_tips: int
    test_hairiness: float | None
    gold_hairiness: float | None
    hairiness_ratio: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        """All fields as a plain dict, ready for ``json.dumps``: nan and inf (the undefined
        scores of an empty test tree) become None, hence null, as JSON has no such numbers."""
        return {key: None if isinstance(value, float) and not math.isfinite(value) else value
                for key, value in asdict(self).items()}


class _Sampling(NamedTuple):
    """A tree as query points (with the length each stands for) and as target segments."""

    points: np.ndarray  # (P, 3) sample points
    weight: np.ndarray  # (P,) edge length per sample point, 0 for isolated nodes
    start: np.ndarray  # (S, 3) first ends of the target segments
    end: np.ndarray  # (S, 3) second ends; equal to start for isolated nodes
    length: float  # total edge length


class _Direction(NamedTuple):
    """Scores of one tree's sample points measured against the other tree."""

    mean: float
    far_mean: float
    far_count: int
    far_fraction: float
    near_length_fraction: float


def _sample(tree: SwcTree) -> _Sampling:
    """Sample every edge at ``int(1 + L + 0.5)`` points from child to parent, plus lone roots."""
    xyz = tree.xyz
    child, parent = tree.edges()
    has_child = np.zeros(len(tree), dtype=bool)
    has_child[parent] = True
    isolated = np.flatnonzero((tree.parents == ROOT_PARENT) & ~has_child)
    start, end = xyz[child], xyz[parent]
    step = end - start
    length = np.linalg.norm(step, axis=1)
    count = (1.0 + length + 0.5).astype(np.int64)  # truncation, as C's int()
    edge = np.repeat(np.arange(len(child)), count)
    position = np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count)
    fraction = position / np.maximum(count - 1, 1)[edge]
    points = start[edge] + fraction[:, None] * step[edge]
    weight = (length / count)[edge]
    return _Sampling(points=np.concatenate([points, xyz[isolated]]),
                     weight=np.concatenate([weight, np.zeros(len(isolated))]),
                     start=np.concatenate([start, xyz[isolated]]),
                     end=np.concatenate([end, xyz[isolated]]),
                     length=float(length.sum()))


def _point_segment_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Euclidean distance from each point to the closed segment ``start``-``end`` (broadcast)."""
    step = end - start
    squared = np.einsum("...i,...i->...", step, step)
    offset = points - start
    along = np.einsum("...i,...i->...", offset, step)
    t = np.clip(np.divide(along, squared, out=np.zeros_like(along), where=squared > 0), 0.0, 1.0)
    return np.linalg.norm(offset - t[..., None] * step, axis=-1)


class _SegmentIndex:
    """Exact nearest-segment distances through a kd-tree of points along the segments.

    Each segment is cut into ``m = max(1, ceil(L / PIECE_LENGTH))`` equal pieces and the piece
    centres go into a kd-tree, so every point of a segment lies within ``h = L / (2 m)`` of one
    of its centres. For a query point ``p`` at distance ``c`` from its nearest centre, the
    nearest segment is at most ``c`` away, so its closest point is within ``c + max(h)`` of one of
    its centres: the segments owning the centres within that radius hold the answer, and exact
    point-to-segment distances to them give it.
    """

    def __init__(self, start: np.ndarray, end: np.ndarray):
        self.start, self.end = start, end
        length = np.linalg.norm(end - start, axis=1)
        pieces = np.maximum(1, np.ceil(length / PIECE_LENGTH)).astype(np.int64)
        self.segment = np.repeat(np.arange(len(start)), pieces)
        position = np.arange(len(self.segment)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        fraction = (position + 0.5) / pieces[self.segment]
        centres = start[self.segment] + fraction[:, None] * (end - start)[self.segment]
        self.max_half_piece = float((length / (2 * pieces)).max())
        self.kdtree = cKDTree(centres)

    def distances(self, points: np.ndarray) -> np.ndarray:
        """Distance of each ``(P, 3)`` point to the nearest segment.

        Fetches the ``k`` nearest centres of every point; a point whose ``k``-th centre is still
        inside its search radius may have more candidates, so it is asked again with ``2 k``.
        """
        n_centres = len(self.segment)
        result = np.empty(len(points))
        todo = np.arange(len(points))
        k = min(FIRST_NEIGHBOURS, n_centres)
        while todo.size:
            rows = max(1, CANDIDATE_BUDGET // k)
            unfinished = []
            for first in range(0, todo.size, rows):
                chunk = todo[first:first + rows]
                near, index = self.kdtree.query(points[chunk], k=k)
                near, index = near.reshape(len(chunk), k), index.reshape(len(chunk), k)
                segment = self.segment[index]
                exact = _point_segment_distance(points[chunk, None, :], self.start[segment],
                                                self.end[segment]).min(axis=1)
                complete = (near[:, -1] > near[:, 0] + self.max_half_piece) | (k == n_centres)
                result[chunk[complete]] = exact[complete]
                unfinished.append(chunk[~complete])
            todo = np.concatenate(unfinished)
            k = min(2 * k, n_centres)
        return result


def _direction(distance: np.ndarray, weight: np.ndarray, threshold: float) -> _Direction:
    far = distance >= threshold
    far_count = int(np.count_nonzero(far))
    total = weight.sum()
    # A tree without length: every point counts the same (see the module docstring).
    near = np.sum(weight[~far]) / total if total > 0 else float(np.mean(~far))
    return _Direction(mean=float(distance.mean()),
                      far_mean=float(distance[far].mean()) if far_count else 0.0,
                      far_count=far_count, far_fraction=far_count / len(distance),
                      near_length_fraction=float(near))


def terminal_tips(tree: SwcTree) -> int:
    """Nodes of degree 1 in the undirected tree: leaves, and roots with exactly one child.

    Examples
    --------
    >>> from dineuro.io.swc import SwcTree
    >>> y = SwcTree([1, 2, 3, 4], [3] * 4, [[0, 0, 0], [1, 0, 0], [2, 1, 0], [2, -1, 0]],
    ...             [1] * 4, [-1, 1, 2, 2])
    >>> terminal_tips(y)
    3
    """
    child, parent = tree.edges()
    degree = np.bincount(np.concatenate([child, parent]), minlength=len(tree))
    return int(np.count_nonzero(degree == 1))


def hairiness(tips: int, length: float) -> float | None:
    """Terminal tips per :data:`HAIRINESS_LENGTH` units of cable; None for a tree without
    length, which has no cable to count along."""
    return HAIRINESS_LENGTH * tips / length if length > 0 else None


def _ratio(test: float | None, gold: float | None) -> float | None:
    return test / gold if test is not None and gold else None


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not (np.isfinite(threshold) and threshold > 0):
        raise InputError(f"threshold should be a positive number of SWC units, not {threshold}.")
    return threshold


def _check_tree(tree: SwcTree, name: str, allow_empty: bool = False) -> None:
    try:
        validate_swc(tree, allow_empty=allow_empty)
    except InputError as exc:
        raise InputError(f"{name} tree: {exc}") from None


def _against_empty_test(gold: SwcTree, threshold: float) -> ReconstructionScores:
    """The scores of a test tree without nodes against ``gold`` (see
    :class:`ReconstructionScores`)."""
    sampling, tips = _sample(gold), terminal_tips(gold)
    nan, inf = math.nan, math.inf
    return ReconstructionScores(
        threshold=threshold, esa=nan, dsa=nan, pds=nan, precision=nan, recall=0.0, f1=0.0,
        esa_test_to_gold=nan, esa_gold_to_test=inf, dsa_test_to_gold=nan, dsa_gold_to_test=inf,
        pds_test_to_gold=nan, pds_gold_to_test=1.0, test_length=0.0,
        gold_length=sampling.length, test_nodes=0, gold_nodes=len(gold), test_points=0,
        gold_points=len(sampling.points), test_tips=0, gold_tips=tips, test_hairiness=None,
        gold_hairiness=hairiness(tips, sampling.length), hairiness_ratio=None)


def compare_trees(test: SwcTree, gold: SwcTree,
                  threshold: float = DEFAULT_SWC_THRESHOLD) -> ReconstructionScores:
    """ESA, DSA, PDS, length precision/recall/F1 and hairiness of ``test`` against ``gold``.

    Definitions, units and corner cases are in the module docstring. Two trees of 10^4 nodes
    each take a fraction of a second.

    Parameters
    ----------
    test : SwcTree
        The reconstruction to score (forests allowed; without nodes: an empty one).
    gold : SwcTree
        The reference reconstruction (forests allowed; at least one node).
    threshold : float, optional
        Distance in SWC units from which a sample point counts as apart (DSA, PDS) and below which
        it counts as matched (precision, recall).

    Returns
    -------
    ReconstructionScores
        The scores; ESA, DSA and PDS are symmetric, swapping the trees swaps the directional values
        and precision with recall.

    Raises
    ------
    InputError
        An invalid tree (see :func:`dineuro.io.swc.validate_swc`), a gold tree without nodes, or a
        threshold that is not positive.
    """
    threshold = _check_threshold(threshold)
    _check_tree(test, "test", allow_empty=True)
    _check_tree(gold, "gold")
    if not len(test):
        return _against_empty_test(gold, threshold)
    test_sampling, gold_sampling = _sample(test), _sample(gold)
    test_distance = _SegmentIndex(gold_sampling.start, gold_sampling.end).distances(
        test_sampling.points)
    gold_distance = _SegmentIndex(test_sampling.start, test_sampling.end).distances(
        gold_sampling.points)
    forward = _direction(test_distance, test_sampling.weight, threshold)
    backward = _direction(gold_distance, gold_sampling.weight, threshold)
    far_means = [d.far_mean for d in (forward, backward) if d.far_count]
    precision, recall = forward.near_length_fraction, backward.near_length_fraction
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    test_tips, gold_tips = terminal_tips(test), terminal_tips(gold)
    test_hairiness = hairiness(test_tips, test_sampling.length)
    gold_hairiness = hairiness(gold_tips, gold_sampling.length)
    return ReconstructionScores(
        threshold=threshold,
        esa=(forward.mean + backward.mean) / 2,
        dsa=float(np.mean(far_means)) if far_means else 0.0,
        pds=(forward.far_fraction + backward.far_fraction) / 2,
        precision=precision, recall=recall, f1=f1,
        esa_test_to_gold=forward.mean, esa_gold_to_test=backward.mean,
        dsa_test_to_gold=forward.far_mean, dsa_gold_to_test=backward.far_mean,
        pds_test_to_gold=forward.far_fraction, pds_gold_to_test=backward.far_fraction,
        test_length=test_sampling.length, gold_length=gold_sampling.length,
        test_nodes=len(test), gold_nodes=len(gold),
        test_points=len(test_sampling.points), gold_points=len(gold_sampling.points),
        test_tips=test_tips, gold_tips=gold_tips, test_hairiness=test_hairiness,
        gold_hairiness=gold_hairiness, hairiness_ratio=_ratio(test_hairiness, gold_hairiness))


def labelled_precision(test: SwcTree, gold: SwcTree, unlabelled: SwcTree | None,
                       threshold: float = DEFAULT_SWC_THRESHOLD) -> float:
    """Length precision of ``test`` with the neurites the gold leaves out on purpose set aside.

    A benchmark stack can hold neurites that are in the image but not in the gold (``synth``'s
    unlabelled fragments of other neurons): tracing them is right about the image and wrong only
    about which neuron was asked for. Here the test length within ``threshold`` of
    ``unlabelled`` and not within it of ``gold`` counts neither way; the rest is scored as
    :func:`compare_trees` scores precision, which this equals when the trace keeps away from
    the unlabelled neurites, or when there are none (``unlabelled`` None or without nodes).

    Returns
    -------
    float
        The fraction; nan when no test length is left to score (an empty trace, or one that lies
        only on unlabelled neurites).
    """
    threshold = _check_threshold(threshold)
    _check_tree(test, "test", allow_empty=True)
    _check_tree(gold, "gold")
    if not len(test):
        return math.nan
    sampling, gold_sampling = _sample(test), _sample(gold)
    to_gold = _SegmentIndex(gold_sampling.start, gold_sampling.end).distances(sampling.points)
    kept = np.ones(len(to_gold), dtype=bool)
    if unlabelled is not None and len(unlabelled):
        _check_tree(unlabelled, "unlabelled")
        aside = _sample(unlabelled)
        kept = (to_gold < threshold) | (
            _SegmentIndex(aside.start, aside.end).distances(sampling.points) >= threshold)
    if not kept.any():
        return math.nan
    return _direction(to_gold[kept], sampling.weight[kept], threshold).near_length_fraction


def read_gold_swc(path: str | os.PathLike) -> SwcTree:
    """A gold SWC file, read strictly with :func:`read_swc`; one without nodes is refused in
    words that say why, since an empty *test* file is accepted (an empty reconstruction)."""
    tree = read_swc(path, allow_empty=True)
    if not len(tree):
        raise InputError("contains no nodes, so there is no gold reconstruction to score "
                         "against.", path)
    return tree


def compare_swc_files(test_path: str | os.PathLike, gold_path: str | os.PathLike,
                      threshold: float = DEFAULT_SWC_THRESHOLD) -> ReconstructionScores:
    """:func:`compare_trees` of two SWC files, read strictly with :func:`read_swc`.

    Parameters
    ----------
    test_path : str or os.PathLike
        The reconstruction to score; a file of comments only (what ``dineuro trace`` writes for an
        empty map) is an empty reconstruction.
    gold_path : str or os.PathLike
        The reference reconstruction; it must have nodes.
    threshold : float, optional
        Distance in SWC units; see :func:`compare_trees`.

    Raises
    ------
    InputError
        A threshold that is not positive, or a file that is missing, unreadable, not a valid SWC
        forest, or a gold file without nodes (naming the file).
    """
    return compare_trees(read_swc(test_path, allow_empty=True), read_gold_swc(gold_path),
                         _check_threshold(threshold))
