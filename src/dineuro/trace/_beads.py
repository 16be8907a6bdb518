"""Beads: a varicose fibre the network sees only at its swellings, joined back into a line.

Fly and mouse axons are often beaded: swellings every few micrometres with dim stretches
between. On a dim stack a network fires on the swellings and not between them, so the map
holds a row of small blobs a few voxels apart along the fibre. Each blob is too small to be a
neurite (step 3 of :mod:`dineuro.trace` removes it as a speck) and has no direction to bridge
along (step 4 joins ends that point at each other), so the fibre is lost. Scattered firing on
noise also leaves small blobs, but rarely several of them nearly in a row, each sure.

:func:`join_bead_rows` finds such rows before the centre lines are made and draws a one-voxel line
between consecutive blobs into the foreground, so that the row thins to one piece and is
traced, bridged and judged as any other:

- a bead is a 26-connected piece of the map above the high threshold, of 2 to
  :data:`BEAD_MAX_VOXELS` voxels (a single voxel is a noise speck; a larger piece has centre
  lines of its own); its core, not the hysteresis foreground around it, whose rim of unsure
  voxels joins neighbouring blobs and dilutes the map over them;
- beads closer than :data:`BEAD_REACH` x voxels (spacing-aware, between their centroids) are
  neighbours, and rows are paths of their shortest spanning forest: the longest path first,
  then the longest of what is left, each cut where it turns by more than
  :data:`BEAD_MAX_TURN` degrees;
- a row is kept when it holds at least :data:`BEAD_MIN_COUNT` beads and the mean over them of
  each bead's mean map is at least :data:`BEAD_MIN_MAP` (sure swellings, not noise a little
  above the threshold).

The numbers were chosen on traced maps of train and validation stacks, never test ones
(README, "Beaded fibres").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree

from dineuro.defaults import (
    BEAD_MAX_TURN,
    BEAD_MAX_VOXELS,
    BEAD_MIN_COUNT,
    BEAD_MIN_MAP,
    BEAD_REACH,
    DEFAULT_HIGH,
)
from dineuro.trace._centre_lines import _FULL
from dineuro.trace._tree import segment_voxels


def join_bead_rows(mask: np.ndarray, prob: np.ndarray, scale,
                   high: float = DEFAULT_HIGH) -> tuple[np.ndarray, int]:
    """``mask`` with each row of beads (module docstring) joined by one-voxel lines, and how
    many rows were joined. ``prob`` is the map the mask was thresholded from with ``high`` as
    its high threshold, ``scale`` the voxel spacing in x voxels (z, y, x).

    Examples
    --------
    Five sure blobs of 8 voxels, 8 voxels apart along x, and one more 18 voxels on, out of reach:

    >>> prob = np.zeros((7, 7, 60), np.float32)
    >>> for x in (6, 14, 22, 30, 38, 56):
    ...     prob[2:4, 2:4, x:x + 2] = 0.9
    >>> joined, rows = join_bead_rows(prob > 0.5, prob, (1.0, 1.0, 1.0))
    >>> rows, bool(joined[2, 2, 6:40].all()), bool(joined[:, :, 40:56].any())
    (1, True, False)
    >>> join_bead_rows(prob > 0.5, prob * 0.7, (1.0, 1.0, 1.0))[1]  # unsure: left alone
    0
    """
    core = prob > high
    labels, count = ndimage.label(core, _FULL)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    is_bead = (sizes >= 2) & (sizes <= BEAD_MAX_VOXELS)
    is_bead[0] = False
    beads = np.flatnonzero(is_bead)
    if len(beads) < BEAD_MIN_COUNT:
        return mask, 0
    # centroids and mean map of the beads alone: ndimage's per-label measures walk every piece
    voxels = np.nonzero(is_bead[labels])
    which = np.searchsorted(beads, labels[voxels])
    count_of = sizes[beads].astype(np.float64)
    centre = np.stack([np.bincount(which, weights=v, minlength=len(beads)) for v in voxels],
                      axis=1) / count_of[:, None]
    sure = np.bincount(which, weights=prob[voxels], minlength=len(beads)) / count_of
    rows = _rows(centre * np.asarray(scale, dtype=np.float64))
    joined, kept = mask.copy(), 0
    for row in rows:
        if len(row) < BEAD_MIN_COUNT or sure[row].mean() < BEAD_MIN_MAP:
            continue
        for a, b in zip(row, row[1:], strict=False):
            joined[tuple(segment_voxels(centre[a], centre[b]).T)] = True
        kept += 1
    return joined, kept


def _rows(points: np.ndarray) -> list[list[int]]:
    """Paths through ``points`` (physical positions): the longest path of their shortest
    spanning forest over pairs closer than :data:`BEAD_REACH`, then the longest of what is
    left, and so on, each cut where it turns by more than :data:`BEAD_MAX_TURN` degrees.

    Examples
    --------
    Three points along x, then two turning back by 110 degrees; and a lone point:

    >>> V = np.array([[0, 0, 0], [0, 0, 8], [0, 0, 16], [0, 8, 13], [0, 16, 10], [0, 90, 90]])
    >>> sorted(sorted(row) for row in _rows(V.astype(float)))
    [[0, 1, 2], [2, 3, 4]]
    """
    pairs = cKDTree(points).query_pairs(BEAD_REACH, output_type="ndarray")
    if not len(pairs):
        return []
    length = np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1)
    forest = minimum_spanning_tree(coo_matrix((length, (pairs[:, 0], pairs[:, 1])),
                                              shape=(len(points),) * 2)).tocoo()
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(forest.row.tolist(), forest.col.tolist(), strict=True):
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    left, rows = set(neighbours), []
    while left:
        path = _longest_path(next(iter(left)), neighbours, left)
        left -= set(path)
        rows.extend(_cut_at_turns(path, points))
    return rows


def _longest_path(start: int, neighbours: dict[int, list[int]], left: set[int]) -> list[int]:
    """The longest path (in hops) of the tree holding ``start`` among the nodes ``left``: the
    farthest node from the farthest node from ``start``, as for any tree's diameter."""
    far, _ = _farthest(start, neighbours, left)
    other, previous = _farthest(far, neighbours, left)
    path = [other]
    while previous[path[-1]] is not None:
        path.append(previous[path[-1]])
    return path


def _farthest(start, neighbours, left):
    """Breadth first from ``start`` over the nodes ``left``: the last node reached, and each
    reached node's predecessor."""
    previous, queue = {start: None}, [start]
    for node in queue:
        for other in neighbours[node]:
            if other in left and other not in previous:
                previous[other] = node
                queue.append(other)
    return queue[-1], previous


def _cut_at_turns(path: list[int], points: np.ndarray) -> list[list[int]]:
    """``path`` cut at each node where it turns by more than :data:`BEAD_MAX_TURN` degrees; the
    node ends one part and starts the next."""
    if len(path) < 3:
        return [path]
    limit = np.cos(np.radians(180.0 - BEAD_MAX_TURN))
    parts, part = [], [path[0]]
    for before, node, after in zip(path, path[1:], path[2:], strict=False):
        part.append(node)
        back, on = points[before] - points[node], points[after] - points[node]
        if back @ on / (np.linalg.norm(back) * np.linalg.norm(on)) > limit:
            parts.append(part)
            part = [node]
    part.append(path[-1])
    parts.append(part)
    return parts

