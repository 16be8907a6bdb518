"""The bridged centre-line forest -> finished trees, one per piece, and the SWC they make.

Steps 5 to 8 of :mod:`dineuro.trace`: pieces ranked (the one holding a given root first, then
by cable), debris trees dropped, each tree rooted, pruned, smoothed and resampled, and all of
them written as one :class:`~dineuro.io.swc.SwcTree` with a header line per root.

Debris is a separate tree that is short, or one that looks like speckle; branches that look
like speckle are removed from every tree after pruning (:mod:`dineuro.trace._speckle`).
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
from scipy.sparse import csgraph

from dineuro.defaults import (
    SPECKLE_BRANCH_MAP,
    SPECKLE_BRANCH_MIN_TIPS,
    SPECKLE_BRANCH_TIPS,
    SPECKLE_MAP,
    SPECKLE_TIPS,
)
from dineuro.io.swc import SwcTree, zyx_to_swc
from dineuro.trace._ends import extend_ends
from dineuro.trace._root import (
    BLOB,
    GIVEN,
    SOMA,
    SOMA_RADIUS_RATIO,
    end_root,
    is_soma,
    thickest_node,
)
from dineuro.trace._speckle import looks_like_speckle, speckle_branches
from dineuro.trace._tree import (
    edge_lengths,
    graph_matrix,
    prune_spurs,
    reroot,
    resample,
    rooted_tree,
    subtree,
)

#: SWC types written: 1 at the first tree's root when it is a soma, 3 everywhere else.
SOMA_TYPE = 1


def finish_forest(zyx, radius, brightness, edges, given, *, scale, offset, shape,
                  prune_length, spur_radii, smooth, node_step, min_tree_length, comments,
                  neurite_type: int, confidence=None, ends=None,
                  branch_rule: bool = True) -> SwcTree:
    """Steps 5 to 8 on a bridged forest: its finished trees as one SwcTree in voxels, after
    ``comments`` and a line for the dropped debris and for each root. ``min_tree_length``
    None keeps every tree. ``confidence`` is the map at each node (``brightness`` when None).
    ``ends`` is where each end node's tip goes (:func:`~dineuro.trace._ends.end_points`; None:
    tips stay where thinning left them).
    ``branch_rule`` False keeps speckle branches: on a raw image (normalised intensity) a
    neuron's dim, hairy arbor looks like them (removing them cut bench's raw-image recall from
    0.82 to 0.16).
    Shared by :func:`~dineuro.trace.trace` and the stitched forest of a volume
    (:mod:`dineuro.scale.neurons`), so both finish a forest alike."""
    root_prune = partial(_rooted_pruned, scale=scale, offset=offset, shape=shape,
                         prune_length=prune_length, spur_radii=spur_radii)
    finish = partial(resample, scale=scale, step=node_step, smooth=smooth)
    confidence = brightness if confidence is None else confidence
    ends = np.full((len(zyx), 3), np.nan) if ends is None else ends
    trees, hows, dropped = _separate_trees(zyx, radius, brightness, confidence, ends, edges,
                                           given, scale, min_tree_length, branch_rule,
                                           root_prune, finish)
    comments = list(comments)
    if dropped["short"]:
        comments.append(f"dropped {dropped['short']} separate tree(s) with less cable than "
                        f"min_tree_length {min_tree_length:g}")
    if dropped["speckle"]:
        comments.append(f"dropped {dropped['speckle']} separate tree(s) that look like speckle: "
                        f"map median below {SPECKLE_MAP:g} and more than {SPECKLE_TIPS:g} tips "
                        f"per 100 voxels of cable")
    if dropped["branches"]:
        comments.append(f"removed {dropped['branches']} branch(es) that look like speckle: at "
                        f"least {SPECKLE_BRANCH_MIN_TIPS} tips, more than "
                        f"{SPECKLE_BRANCH_TIPS:g} per 100 voxels of centre line, map median below "
                        f"{SPECKLE_BRANCH_MAP:g}")
    return _as_swc(trees, hows[0] in (SOMA, GIVEN), offset,
                   comments + _root_comments(trees, hows, offset), neurite_type)


def _separate_trees(zyx, radius, brightness, confidence, ends, edges, given, scale,
                    min_tree_length, branch_rule, root_prune, finish):
    """The finished trees of the forest's pieces, first and largest first.

    Which tree is first and which are dropped: see :func:`~dineuro.trace.trace` and the module
    docstring. A tree is judged as debris before its speckle branches are removed, so that a
    speckle tree does not pass for a dim fibre once its tangles are gone, and before its ends
    are carried to where the foreground ends (:func:`extend_ends`), so that the debris rules
    read the centre lines as thinned.

    Returns ``(trees, hows, dropped)``: ``(zyx, radius, parent)`` per tree, how each root was
    chosen, and counts of the trees other than the first dropped for less cable than
    ``min_tree_length`` ("short") and as speckle ("speckle"), and of the speckle branches
    removed ("branches"). ``min_tree_length`` None keeps them all; ``branch_rule`` False keeps
    the branches.
    """
    floor = -math.inf if min_tree_length is None else min_tree_length
    trees, hows, dropped = [], [], {"short": 0, "speckle": 0, "branches": 0}
    for rank, (nodes, piece_edges, shown) in enumerate(_pieces(zyx, edges, scale, given)):
        if rank and shown < floor:
            dropped["short"] += 1
            continue
        start = int(np.flatnonzero(nodes == given)[0]) if rank == 0 and given is not None \
            else None
        *pruned, parent, how = root_prune(zyx[nodes], radius[nodes], brightness[nodes],
                                          confidence[nodes], ends[nodes], piece_edges, start)
        if rank and min_tree_length is not None:
            tree = finish(pruned[0], pruned[1], parent)
            cable = edge_lengths(tree[0], tree[2], scale).sum()
            if cable < floor:
                dropped["short"] += 1
                continue
            if looks_like_speckle(confidence[nodes], tree[2], cable):
                dropped["speckle"] += 1
                continue
        if branch_rule and min_tree_length is not None:
            keep = speckle_branches(pruned[0], parent, pruned[2], scale)
            if not keep.all():
                dropped["branches"] += _count_roots(parent, keep)
                pruned, parent = [column[keep] for column in pruned], subtree(parent, keep)
        tree = finish(*extend_ends(pruned[0], pruned[1], parent, pruned[3],
                                   root_is_end=how not in (SOMA, GIVEN)))
        trees.append(tree)
        # Only the first tree's root may be typed a soma: on a fragment, a thick blob is too
        # often a crossing or a clump of noise, and most gold SWCs have one soma per stack.
        hows.append(BLOB if rank and how == SOMA else how)
    return trees, hows, dropped


def _count_roots(parent, keep) -> int:
    """How many removed subtrees ``keep`` cuts from a rooted tree: removed nodes whose parent
    stays."""
    cut = ~keep
    cut[0] = False
    return int(np.sum(cut & keep[np.maximum(parent, 0)]))


def _pieces(zyx, edges, scale, first):
    """Each tree of the forest: ``(nodes, edges, shown)``, edges in indices into ``nodes``,
    ``shown`` its cable (x voxels) without bridges: edges longer than a step between
    neighbouring voxels, which the map does not show.

    Sorted by cable with bridges, largest first, except that the tree holding node ``first``
    (when given) comes first.
    """
    n = len(zyx)
    count, piece_of = csgraph.connected_components(graph_matrix(n, edges), directed=False)
    order = np.argsort(piece_of, kind="stable")
    sizes = np.bincount(piece_of, minlength=count)
    local = np.empty(n, dtype=np.int64)
    local[order] = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    edge_piece = piece_of[edges[:, 0]]
    step = np.linalg.norm((zyx[edges[:, 0]] - zyx[edges[:, 1]]) * scale, axis=1)
    cable = np.bincount(edge_piece, weights=step, minlength=count)
    voxel_step = np.linalg.norm(scale) + 1e-6  # the longest step between neighbouring voxels
    shown = np.bincount(edge_piece, weights=np.where(step <= voxel_step, step, 0.0),
                        minlength=count)
    by_piece = local[edges[np.argsort(edge_piece, kind="stable")]]
    nodes_of = np.split(order, np.cumsum(sizes)[:-1])
    edges_of = np.split(by_piece, np.cumsum(np.bincount(edge_piece, minlength=count))[:-1])
    ranking = sorted(range(count), key=lambda k: (first is None or piece_of[first] != k,
                                                  -cable[k], k))
    return [(nodes_of[k], edges_of[k], float(shown[k])) for k in ranking]


def _rooted_pruned(zyx, radius, brightness, confidence, ends, edges, given, *, scale, offset,
                   shape, prune_length, spur_radii):
    """One piece's rooted and pruned tree: ``(zyx, radius, confidence, ends, parent, how)``,
    parents first.

    ``given`` is the index of a given root. Otherwise the thickest node is the root if it is a
    soma; if not, pruning starts from the thickest branch point (a root inside a neurite would
    hide a spur through it) and the root is then chosen among the pruned tree's ends, which are
    the real ones. ``how`` says how the root was chosen (:mod:`dineuro.trace._root`).
    """
    start = thickest_node(zyx, radius, brightness) if given is None else given
    nodes, parent = rooted_tree(len(zyx), edges, start)
    soma = given is not None or is_soma(zyx[nodes], radius[nodes], parent, 0, scale)
    if not soma:
        forks = np.flatnonzero(np.bincount(edges.ravel(), minlength=len(zyx)) >= 3)
        if len(forks):
            nodes, parent = rooted_tree(len(zyx), edges, int(forks[np.argmax(radius[forks])]))
    zyx, radius, confidence, ends = zyx[nodes], radius[nodes], confidence[nodes], ends[nodes]
    keep = prune_spurs(zyx, radius, parent, scale, prune_length, spur_radii,
                       radius_cap=SOMA_RADIUS_RATIO * float(np.median(radius)), soma_root=soma)
    zyx, radius, confidence, ends, parent = zyx[keep], radius[keep], confidence[keep], \
        ends[keep], subtree(parent, keep)
    how = GIVEN if given is not None else SOMA
    if not soma:
        root, how = end_root(zyx, radius, parent, scale, offset, shape)
        if root:
            order, parent = reroot(parent, root)
            zyx, radius, confidence, ends = zyx[order], radius[order], confidence[order], \
                ends[order]
    return zyx, radius, confidence, ends, parent, how


def _root_comments(trees, hows, offset) -> list[str]:
    """A header line per tree: how its root was chosen and where it is (x, y, z voxels)."""
    lines = []
    for k, ((zyx, _, _), how) in enumerate(zip(trees, hows, strict=True)):
        x, y, z = zyx_to_swc(zyx[0] + offset)
        which = f", tree {k + 1} of {len(trees)}" if len(trees) > 1 else ""
        lines.append(f"root: {how} at ({x:.1f}, {y:.1f}, {z:.1f}){which}")
    return lines


def _as_swc(trees, soma, offset, comments, neurite_type: int) -> SwcTree:
    """One SwcTree from (zyx, radius, parent) trees, nodes of ``neurite_type``; the first root
    is type 1 if ``soma``."""
    parts, start = [], 0
    for zyx, radius, parent in trees:
        types = np.full(len(zyx), neurite_type)
        types[0] = SOMA_TYPE if soma and not parts else neurite_type
        ids = np.arange(start + 1, start + len(zyx) + 1)
        parents = np.where(parent >= 0, parent + start + 1, -1)
        parts.append((ids, types, zyx_to_swc(zyx + offset), radius, parents))
        start += len(zyx)
    ids, types, xyz, radius, parents = (np.concatenate(column) for column in zip(*parts,
                                                                                  strict=True))
    return SwcTree(ids, types, xyz, radius, parents, comments).renumbered()


def _empty(comments) -> SwcTree:
    """A tree without nodes: an SWC of ``comments`` only."""
    return SwcTree([], [], np.zeros((0, 3)), [], [], comments)
