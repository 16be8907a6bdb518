"""Speckle: trees and branches a network chains out of its scattered firing on noise.

On a noisy stack a network fires on shot noise over bright haze in scattered voxels just above
the low threshold; their centre lines chain into trees, or into tangles hanging off the real
neuron, that are unsure (a low map along them) and branched all over. A real neurite is sure
or, when dim, hardly branched: the gold trees of 16 noisy train stacks have a median of 2 tips
per 100 x voxels of cable.

- A separate tree (never the first) is speckle when the map median along its centre line is
  below :data:`~dineuro.defaults.SPECKLE_MAP` (0.7) and it has more than
  :data:`~dineuro.defaults.SPECKLE_TIPS` (4) tips per 100 x voxels of cable
  (:func:`looks_like_speckle`).
- A branch (the subtree beyond a branch point, away from the root, with less than half the
  tree's cable) is speckle when it has at least :data:`~dineuro.defaults.SPECKLE_BRANCH_MIN_TIPS`
  (4) tips, more than :data:`~dineuro.defaults.SPECKLE_BRANCH_TIPS` (3.5) per 100 x voxels of
  centre line, and a map median below :data:`~dineuro.defaults.SPECKLE_BRANCH_MAP` (0.75)
  (:func:`speckle_branches`). It reads the pruned tree before smoothing, whose voxel centre
  line is up to a fifth longer than the smoothed cable the tree rule counts. A branch with half
  its tree's cable or more stays, so that an unsure neuron is not cut down to a sure stub.

All numbers were chosen on traced maps of train stacks, never test ones
(``benchmarks/speckle_rule.py``): 16 of the noisy set with the default model, and 8 of each of
the adaptation benchmark's three shifted domains with the default and with the adapted model;
the branch rule also on 16 bench stacks with the default model and on the 16 noisy stacks with
the widefield- and haze-adapted models and the widefield gold-label model (which fire on that
set's noise: what adapting forgets). Tree rule: over its 64 maps it drops 1725 x voxels of
cable off the gold (more than 2 voxels from a gold node) and 110 on it; no set loses more than
0.23 % of its cable on the gold. A median below 0.6 with more than 5 tips dropped 1027 off and
48 on; below 0.8 with more than 4, 1871 off and 428 on. Branch rule: the setting that removes
the most cable off the gold among those under which no set loses more cable on the gold than
it sheds off it (README, "The default model").
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csgraph

from dineuro.defaults import (
    SPECKLE_BRANCH_MAP,
    SPECKLE_BRANCH_MIN_TIPS,
    SPECKLE_BRANCH_TIPS,
    SPECKLE_MAP,
    SPECKLE_TIPS,
)
from dineuro.trace._tree import edge_lengths, graph_matrix


def looks_like_speckle(confidence: np.ndarray, parent: np.ndarray, cable: float) -> bool:
    """Whether a finished tree (``parent`` array, ``cable`` x voxels) whose centre-line voxels
    have map values ``confidence`` is speckle (module docstring).

    Examples
    --------
    >>> star = np.array([-1, 0, 0, 0, 0, 0, 0])  # six tips on 60 voxels of cable: 10 per 100
    >>> looks_like_speckle(np.full(7, 0.4), star, 60.0), looks_like_speckle(np.full(7, 0.9),
    ...                                                                     star, 60.0)
    (True, False)
    >>> looks_like_speckle(np.full(7, 0.4), np.arange(-1, 6), 60.0)  # one tip: a dim fibre
    False
    """
    tips = len(parent) - len(np.unique(parent[parent >= 0]))
    return bool(np.median(confidence) < SPECKLE_MAP and 100.0 * tips / cable > SPECKLE_TIPS)


def speckle_branches(zyx: np.ndarray, parent: np.ndarray, confidence: np.ndarray,
                     scale: np.ndarray) -> np.ndarray:
    """Which nodes of a rooted tree (parents before children, as
    :func:`~dineuro.trace._tree.rooted_tree` orders them) remain after removing its speckle
    branches (module docstring), outermost first: a branch inside a removed one is gone with it.

    Examples
    --------
    A trunk along x with, at node 20, a tangle: a back of 10 nodes up y and five 9-voxel teeth
    along z, 5 tips on 55 voxels of cable:

    >>> def tangled(trunk):
    ...     zyx, parent = [[0, 0, x] for x in range(trunk)], [-1, *range(trunk - 1)]
    ...     for y in range(1, 11):
    ...         zyx.append([0, y, 20]); parent.append(20 if y == 1 else len(zyx) - 2)
    ...     for y in (2, 4, 6, 8, 10):
    ...         for z in range(1, 10):
    ...             zyx.append([z, y, 20]); parent.append(trunk + y - 1 if z == 1 else len(zyx) - 2)
    ...     unsure = np.where(np.arange(len(zyx)) < trunk, 0.95, 0.4)
    ...     return np.array(zyx, float), np.array(parent), unsure
    >>> zyx, parent, unsure = tangled(80)
    >>> int(speckle_branches(zyx, parent, unsure, np.ones(3)).sum())  # the trunk alone
    80
    >>> int(speckle_branches(zyx, parent, np.full(len(zyx), 0.95), np.ones(3)).sum())  # sure
    135
    >>> zyx, parent, unsure = tangled(30)  # the tangle holds most of the tree's cable
    >>> int(speckle_branches(zyx, parent, unsure, np.ones(3)).sum())
    85
    """
    n = len(parent)
    keep = np.ones(n, dtype=bool)
    if n < 2:
        return keep
    children = np.bincount(parent[1:], minlength=n)
    # depth first from the root: every subtree is one stretch of it
    order = csgraph.depth_first_order(graph_matrix(n, np.stack([np.arange(1, n), parent[1:]], 1)),
                                      0, directed=False, return_predecessors=False)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    size, tips = np.ones(n, dtype=np.int64), (children == 0).astype(np.int64)
    cable = edge_lengths(zyx, parent, scale)
    for node in range(n - 1, 0, -1):  # children before parents
        size[parent[node]] += size[node]
        tips[parent[node]] += tips[node]
        cable[parent[node]] += cable[node]
    for node in order[1:]:
        if not keep[node] or children[parent[node]] < 2 \
                or tips[node] < SPECKLE_BRANCH_MIN_TIPS or 2 * cable[node] >= cable[0] \
                or 100.0 * tips[node] / cable[node] <= SPECKLE_BRANCH_TIPS:
            continue
        inside = order[position[node]:position[node] + size[node]]
        if np.median(confidence[inside]) < SPECKLE_BRANCH_MAP:
            keep[inside] = False
    return keep
