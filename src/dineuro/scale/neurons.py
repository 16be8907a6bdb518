"""The stitched forest of a volume -> one SWC tree per neuron, as :func:`dineuro.trace.trace`
finishes a map's forest (steps 5-8: separate trees, debris dropped, roots, spurs, smoothing and
resampling, radii), and the files they are written to.

Each neuron is also written alone (``neuron_00001.swc``, largest first) with the ids it has in
the volume's SWC, so ids are unique across the volume and the files can be concatenated back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dineuro.data.render import spacing_in_x_voxels
from dineuro.io.swc import SwcTree, write_swc
from dineuro.io.swc_units import in_micrometres, metadata_comment
from dineuro.scale.fragments import Graph
from dineuro.trace._forest import _empty, finish_forest

#: Name of the per-neuron files: neuron_00001.swc, ...
NEURON_NAME = "neuron_{:05d}.swc"


def graph_trees(graph: Graph, spacing: Sequence[float], shape: Sequence[int], *,
                prune_length: float, spur_radii: float, min_tree_length: float, smooth: float,
                node_step: float, keep_fragments: bool, units: str, neurite_type: int,
                comments: list[str]) -> SwcTree:
    """The volume's SWC: every tree of the stitched forest finished as ``trace`` finishes them.

    ``comments`` start the header (units, spacing, options); a line per tree says how its root
    was chosen. Returns a tree without nodes when the forest is empty.
    """
    scale = spacing_in_x_voxels(spacing)
    offset = np.zeros(3)
    comments = [metadata_comment(units, spacing), *comments]
    if not len(graph.zyx):
        return _empty(comments)
    tree = finish_forest(graph.zyx, graph.radius, graph.evidence, graph.edges, None,
                         scale=scale, offset=offset, shape=tuple(shape),
                         prune_length=prune_length, spur_radii=spur_radii, smooth=smooth,
                         node_step=node_step,
                         min_tree_length=None if keep_fragments else min_tree_length,
                         comments=comments, neurite_type=neurite_type, ends=graph.ends)
    return tree if units == "voxel" else in_micrometres(tree, spacing)


def neurons(tree: SwcTree) -> list[SwcTree]:
    """Each tree of ``tree`` (ids 1..N, trees one after another, as :func:`graph_trees`
    writes them) alone, with its ids and the header lines that are not about another tree.

    Examples
    --------
    >>> both = SwcTree([1, 2, 3], [3, 3, 3], np.zeros((3, 3)), [1, 1, 1], [-1, 1, -1],
    ...                ["units", "root: a, tree 1 of 2", "root: b, tree 2 of 2"])
    >>> [(n.ids.tolist(), n.comments[-1]) for n in neurons(both)]
    [([1, 2], 'root: a, tree 1 of 2'), ([3], 'root: b, tree 2 of 2')]
    """
    roots = np.flatnonzero(tree.parents == -1)
    if not len(roots):
        return []
    ends = [*roots[1:], len(tree)]
    general = [line for line in tree.comments if not line.startswith("root:")]
    own = [line for line in tree.comments if line.startswith("root:")]
    return [SwcTree(tree.ids[a:b], tree.types[a:b], tree.xyz[a:b], tree.radius[a:b],
                    tree.parents[a:b], general + own[k:k + 1])
            for k, (a, b) in enumerate(zip(roots, ends, strict=True))]


def cable_length(tree: SwcTree, spacing: Sequence[float], units: str) -> float:
    """Total length of ``tree``'s edges: in micrometres for a tree in micrometres, else in x
    voxels (a z step of a (2, 1, 1) spacing counts 2).

    Examples
    --------
    >>> line = SwcTree([1, 2], [3, 3], [[0, 0, 0], [3, 0, 2]], [1, 1], [-1, 1])
    >>> cable_length(line, (2.0, 1.0, 1.0), "voxel")
    5.0
    """
    if not len(tree):
        return 0.0
    parent = tree.parent_index
    child = np.flatnonzero(parent >= 0)
    step = tree.xyz[child] - tree.xyz[parent[child]]
    if units == "voxel":
        step = step * (spacing_in_x_voxels(spacing)[::-1])
    return float(np.linalg.norm(step, axis=1).sum())


def write_neurons(tree: SwcTree, swc: Path, folder: Path) -> list[Path]:
    """``swc`` (the whole volume) and one file per neuron in ``folder``; both must be new."""
    write_swc(swc, tree, allow_empty=True)
    folder.mkdir()
    return [write_swc(folder / NEURON_NAME.format(k), neuron)
            for k, neuron in enumerate(neurons(tree), start=1)]
