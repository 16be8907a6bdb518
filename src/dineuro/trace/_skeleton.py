"""Foreground mask -> centre-line graph: skeleton voxels joined to their 26 neighbours.

Thinning is scikit-image's 3D ``skeletonize`` (Lee et al.); skan turns the skeleton voxels into a
graph. The graph is returned as plain arrays, so that :mod:`dineuro.trace._tree` does not care
which skeletoniser made it: ``zyx`` ``(N, 3)`` float64 voxel coordinates in (z, y, x) order and
``edges`` ``(E, 2)`` int64 node indices, a forest with one tree per connected component.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix, csgraph


def skeleton_graph(mask: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre lines of a boolean (z, y, x) mask as a forest of voxel nodes.

    Thinning can leave small cycles of voxels where branches meet; the shortest spanning forest
    (edge lengths in physical units) removes them.

    Parameters
    ----------
    mask : ndarray of bool
        (z, y, x) foreground.
    scale : ndarray
        (z, y, x) voxel size; only ratios matter.

    Returns
    -------
    zyx : ndarray
        (N, 3) node coordinates in voxels.
    edges : ndarray
        (E, 2) node indices: the edges of the forest.
    """
    from skan.csr import skeleton_to_csgraph
    from skimage.morphology import skeletonize

    skeleton = skeletonize(mask)
    if not skeleton.any():
        return np.zeros((0, 3)), np.zeros((0, 2), dtype=np.int64)
    graph, coordinates = skeleton_to_csgraph(skeleton, spacing=scale)
    forest = csgraph.minimum_spanning_tree(coo_matrix(graph).tocsr()).tocoo()
    zyx = np.stack(coordinates, axis=1).astype(np.float64)
    return zyx, np.stack([forest.row, forest.col], axis=1).astype(np.int64)
