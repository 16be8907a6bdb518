"""Probability map (or binary mask) -> one SWC tree per neuron; see :mod:`dineuro.trace`."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.sparse import csgraph

from dineuro.data.render import spacing_in_x_voxels
from dineuro.defaults import (
    DEFAULT_GAP_FLOOR,
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_MAX_GAP,
    DEFAULT_MIN_PIECE_LENGTH,
    DEFAULT_MIN_TREE_LENGTH,
    DEFAULT_NODE_STEP,
    DEFAULT_PRUNE_LENGTH,
    DEFAULT_ROOT_SNAP,
    DEFAULT_SMOOTH,
    DEFAULT_SPUR_RADII,
)
from dineuro.errors import InputError
from dineuro.io.atomic import refuse_existing
from dineuro.io.swc import SwcTree, write_swc, zyx_to_swc
from dineuro.io.volume import Volume, read_volume
from dineuro.trace._geodesic import geodesic_graph
from dineuro.trace._root import (
    BLOB,
    GIVEN,
    SOMA,
    SOMA_RADIUS_RATIO,
    end_root,
    is_soma,
    thickest_node,
)
from dineuro.trace._skeleton import skeleton_graph
from dineuro.trace._tree import (
    bridge_gaps,
    edge_lengths,
    graph_matrix,
    prune_spurs,
    reroot,
    resample,
    rooted_tree,
    subtree,
)

#: More foreground than this fraction of the stack is no neuron (they fill 0.02-2 %).
MAX_FOREGROUND_FRACTION = 0.5
#: Smallest radius written (x voxels): thinner neurites are still drawn a voxel wide.
MIN_RADIUS = 0.5
SOMA_TYPE, NEURITE_TYPE = 1, 3
KINDS = ("auto", "probability", "mask", "image")
#: How centre lines are found: 3D thinning, or minimal paths from a root (APP2, Rivulet).
METHODS = ("thinning", "geodesic")
_FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity, as the skeleton's


class EmptyTraceWarning(UserWarning):
    """Nothing in a map is above the high threshold, so the traced SWC has no nodes."""


def as_probability(array: np.ndarray, kind: str = "auto") -> np.ndarray:
    """A probability map or mask as float32 probabilities in [0, 1], (z, y, x) kept.

    ``kind="auto"`` reads boolean arrays and integer arrays holding only 0 and 1 as masks,
    other unsigned integer arrays as probabilities scaled to the dtype's maximum (uint8 255,
    uint16 65535; ``dineuro predict --prob-dtype uint8`` writes round(p * 255)), and float
    arrays as probabilities. ``"probability"`` never reads a mask (a uint8 map whose largest
    value is 1 is then p = 1/255, not foreground); ``"mask"`` takes every non-zero voxel as
    foreground. ``"image"`` reads a raw intensity stack (a 12-bit camera's uint16, say, which
    as a probability would be at most 4095 / 65535) and scales it as ``dineuro predict`` does
    for the network (:func:`~dineuro.data.normalize.percentile_normalize`: 0 at the 1st
    percentile, 1 at the 99.9th), so the thresholds apply to normalised intensity.

    Raises:
        InputError: an array that is not 3D, NaNs, negative values or floats above 1, or a
            signed integer or other non-numeric dtype read as probabilities.
    """
    if kind not in KINDS:
        raise InputError(f"kind should be one of {', '.join(KINDS)}, not {kind!r}.")
    array = np.asarray(array)
    if array.ndim != 3 or array.size == 0:
        raise InputError(f"should be a non-empty 3D (z, y, x) map, got shape {array.shape}.")
    if kind == "mask" or array.dtype == bool:
        return (array != 0).astype(np.float32)
    if array.dtype.kind not in "uif":
        raise InputError(f"should hold numbers, not {array.dtype}.")
    low, high = array.min(), array.max()
    if array.dtype.kind == "f" and not (math.isfinite(low) and math.isfinite(high)):
        raise InputError("holds NaN or infinite values; a probability map lies in [0, 1].")
    if kind == "image":
        from dineuro.data.normalize import percentile_normalize

        return percentile_normalize(array)
    if low < 0 or (array.dtype.kind == "f" and high > 1):
        raise InputError(f"values should be probabilities in [0, 1] (or a 0/1 mask), found "
                         f"{low:g}..{high:g}.")
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if kind == "auto" and high <= 1:
        return array.astype(np.float32)
    if array.dtype.kind != "u":
        raise InputError(f"a {array.dtype} map cannot be read as probabilities: use float in "
                         "[0, 1], uint8 or uint16.")
    return (array / np.float32(np.iinfo(array.dtype).max)).astype(np.float32)


def trace(prob: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0), *,
          image: np.ndarray | None = None, high: float = DEFAULT_HIGH,
          low: float = DEFAULT_LOW, root: str | Sequence[float] = "auto",
          max_gap: float = DEFAULT_MAX_GAP, gap_floor: float = DEFAULT_GAP_FLOOR,
          prune_length: float = DEFAULT_PRUNE_LENGTH, spur_radii: float = DEFAULT_SPUR_RADII,
          min_piece_length: float = DEFAULT_MIN_PIECE_LENGTH,
          min_tree_length: float = DEFAULT_MIN_TREE_LENGTH, smooth: float = DEFAULT_SMOOTH,
          node_step: float = DEFAULT_NODE_STEP, root_snap: float = DEFAULT_ROOT_SNAP,
          keep_fragments: bool = False, kind: str = "auto",
          method: str = "thinning") -> SwcTree:
    """Trace a (z, y, x) probability map, mask or raw image into SWC trees, one per neuron.

    Steps (see :mod:`dineuro.trace` for why): hysteresis threshold, skeleton, removal of
    pieces too short to be neurites, bridges across small gaps with evidence, roots, spur
    pruning, smoothing and resampling, radii.

    Args:
        prob: (z, y, x) map, read by :func:`as_probability` with ``kind``.
        spacing: (z, y, x) voxel size; only ratios matter. Lengths below are in x voxels.
        image: the raw (z, y, x) stack, same shape; when given, gaps are judged by its
            percentile-normalised intensity instead of the probability, and a soma's
            brightness breaks ties.
        high, low: hysteresis thresholds: foreground is p > low, connected to some p > high.
        root: "auto" (each tree's soma, else where it leaves the stack, else its thickest
            end) or the soma's (x, y, z) in voxels, SWC order. A point in the foreground snaps
            to the nearest centre-line node of its component; a point outside it to the
            nearest node within ``root_snap``.
        max_gap: longest bridge between centre-line nodes of separate pieces.
        gap_floor: least mean evidence on the part of a bridge outside the foreground.
        prune_length: a terminal branch reaching less than this beyond the radius of the
            branch point it leaves is a spur.
        spur_radii: so is one reaching less than this many of those radii from that point.
        min_piece_length: pieces of the foreground with less centre line than this are noise:
            removed before bridging.
        min_tree_length: separate trees with less cable than this are dropped as debris,
            except the first (the one holding a given ``root``, else the largest).
        smooth: Gaussian sigma along the centre lines (0: the voxel staircase as it is).
        node_step: spacing of the written nodes along branches.
        root_snap: how far a ``root`` outside the foreground may be from the centre lines.
        keep_fragments: also keep separate trees shorter than ``min_tree_length``.
        kind: "auto", "probability", "mask" or "image" (see :func:`as_probability`).
        method: how centre lines are found: "thinning" (3D thinning) or "geodesic" (minimal
            paths from each piece's thickest point through a cost low on the bright, thick
            middle, as APP2 and Rivulet; :mod:`dineuro.trace._geodesic`).

    Returns:
        The trees, largest first (the one holding a given ``root`` first), ids 1..N, parents
        before children, type 1 at the first tree's root when it is a soma (found, or given)
        and 3 elsewhere, (x, y, z) voxel coordinates and radii in x voxels; comments record
        the spacing, the options and how each root was chosen. No nodes (and an
        :class:`EmptyTraceWarning`) when nothing exceeds ``high`` or every piece is shorter
        than ``min_piece_length``.

    Raises:
        InputError: a bad map or option, a map that is mostly foreground, or a ``root`` outside
            the stack or too far from the foreground.

    Examples::

        >>> prob = np.zeros((9, 9, 40), np.float32)
        >>> prob[3:6, 3:6, 5:35] = 0.9
        >>> tree = trace(prob)
        >>> tree.types[0], int(tree.xyz[:, 0].min()), int(tree.xyz[:, 0].max())
        (np.int64(3), 6, 33)
        >>> tree.comments[-1]  # no soma, and it does not leave the stack
        'root: thickest end at (6.0, 4.0, 4.0)'
        >>> prob[3:6, 3:6, :5] = 0.9
        >>> trace(prob).comments[-1]
        'root: end leaving the stack at (1.0, 4.0, 4.0)'
    """
    if method not in METHODS:
        raise InputError(f"method should be one of {', '.join(METHODS)}, not {method!r}.")
    dtype = np.asarray(prob).dtype
    prob = as_probability(prob, kind)
    scale = spacing_in_x_voxels(spacing)
    options = {"high": high, "low": low, "max_gap": max_gap, "gap_floor": gap_floor,
               "prune_length": prune_length, "spur_radii": spur_radii,
               "min_piece_length": min_piece_length, "min_tree_length": min_tree_length,
               "smooth": smooth, "node_step": node_step, "root_snap": root_snap}
    _check_options(**options)
    evidence = prob if image is None else _image_evidence(image, prob.shape)
    comments = [f"spacing (z, y, x): {tuple(float(s) for s in spacing)}; coordinates in voxels "
                "(x, y, z), radii in x voxels",
                "traced by dineuro: " + ", ".join(f"{k} {v:g}" for k, v in options.items())
                + f", keep_fragments {keep_fragments}, kind {kind}, method {method}, "
                f"root {root if isinstance(root, str) else tuple(root)}"]
    mask = _foreground(prob, high, low)
    hint = "; for a raw image use kind 'image'" if kind != "image" and dtype.kind in "ui" else ""
    if not mask.any():
        warnings.warn(f"nothing in the map is above the high threshold {high:g}; the traced "
                      f"SWC is empty{hint}.", EmptyTraceWarning, stacklevel=2)
        return _empty(comments)
    # Work inside the bounding box of the foreground, plus a voxel where the stack allows.
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1)
                for s in ndimage.find_objects(mask.view(np.uint8))[0])
    offset = np.array([s.start for s in box], dtype=np.float64)
    evidence = evidence[box]
    mask, labels, zyx, edges, removed = _centre_lines(mask[box], scale, min_piece_length,
                                                      method, prob[box])
    if removed:
        comments.append(f"removed {removed} piece(s) of the foreground with less centre line "
                        f"than min_piece_length {min_piece_length:g} as noise")
    if not len(zyx):
        warnings.warn(f"no piece of the foreground has {min_piece_length:g} x voxels of centre "
                      f"line; the traced SWC is empty{hint}.", EmptyTraceWarning, stacklevel=2)
        return _empty(comments)
    voxel = tuple(np.rint(zyx).astype(np.int64).T)
    radius = np.maximum(_radii(labels, voxel, scale), MIN_RADIUS)
    given = None
    if isinstance(root, str):
        if root != "auto":
            raise InputError(f"root should be 'auto' or x,y,z voxel coordinates, not {root!r}.")
    else:
        given = _given_root(root, offset, prob.shape, zyx, labels[voxel], labels, scale,
                            root_snap)
    edges = np.concatenate([edges, bridge_gaps(zyx, edges, scale, mask, evidence, max_gap,
                                               gap_floor)])
    finish = partial(_finish, scale=scale, offset=offset, shape=prob.shape,
                     prune_length=prune_length, spur_radii=spur_radii, smooth=smooth,
                     node_step=node_step)
    trees, hows, dropped = _separate_trees(zyx, radius, evidence[voxel], edges, given, scale,
                                           None if keep_fragments else min_tree_length, finish)
    if dropped:
        comments.append(f"dropped {dropped} separate tree(s) with less cable than "
                        f"min_tree_length {min_tree_length:g}")
    comments += _root_comments(trees, hows, offset)
    return _as_swc(trees, hows[0] in (SOMA, GIVEN), offset, comments)


def _centre_lines(mask, scale, min_piece_length, method, prob):
    """Centre lines of the foreground's pieces that are long enough to be neurites.

    ``method`` is one of :data:`METHODS`; ``prob`` the map in the same box (its ridge steers
    geodesic centre lines).

    Returns ``(mask, labels, zyx, edges, removed)``: the mask with its cavities filled and its
    short pieces removed, its 26-connected component labels (0 off it), the centre-line forest
    and how many pieces were removed as noise.
    """
    filled = _fill_cavities(mask)
    labels = ndimage.label(filled, structure=_FULL)[0]
    if method == "geodesic":
        # A filled cavity (a dim core) counts as typical foreground, so that minimal paths run
        # through its middle rather than round it in the shell.
        prob = np.where(filled & ~mask, np.median(prob[mask]), prob)
        zyx, edges = geodesic_graph(filled, scale, prob, min_length=min_piece_length)
    else:
        zyx, edges = skeleton_graph(filled, scale)
    mask = filled
    zyx, edges, noise = _drop_short_pieces(zyx, edges, labels, scale, min_piece_length)
    if noise[1:].any():
        mask &= ~noise[labels]
        labels[~mask] = 0
    return mask, labels, zyx, edges, int(noise[1:].sum())


def _radii(labels: np.ndarray, voxel: tuple[np.ndarray, ...], scale) -> np.ndarray:
    """Distance from each centre-line voxel to the background around its piece.

    One distance transform per piece, in the piece's bounding box grown by a voxel, instead of
    one over the whole box of the foreground: on a noisy 60x512x512 map that box is most of the
    stack and its transform took seconds, while the pieces fill a fraction of a percent of it.
    A piece's neighbours are at least a voxel of background away (pieces are 26-connected
    components), so the nearest background is the same as in the whole mask.
    """
    radius = np.zeros(len(voxel[0]))
    label_of = labels[voxel]
    order = np.argsort(label_of, kind="stable")
    bounds = np.searchsorted(label_of[order], np.arange(labels.max() + 2))
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        at = order[bounds[k]:bounds[k + 1]]
        if box is None or not len(at):
            continue
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        distance = ndimage.distance_transform_edt(labels[grown] == k, sampling=scale)
        radius[at] = distance[tuple(v[at] - g.start for v, g in zip(voxel, grown, strict=True))]
    return radius


def _separate_trees(zyx, radius, brightness, edges, given, scale, min_tree_length, finish):
    """The finished trees of the forest's pieces, first and largest first (see :func:`trace`).

    Returns ``(trees, hows, dropped)``: ``(zyx, radius, parent)`` per tree, how each root was
    chosen, and how many trees other than the first were shorter than ``min_tree_length``
    (None: keep them all).
    """
    floor = -math.inf if min_tree_length is None else min_tree_length
    trees, hows, dropped = [], [], 0
    for rank, (nodes, piece_edges, length) in enumerate(_pieces(zyx, edges, scale, given)):
        if rank and length < floor:  # pruning and smoothing only shorten a tree
            dropped += 1
            continue
        start = int(np.flatnonzero(nodes == given)[0]) if rank == 0 and given is not None \
            else None
        *tree, how = finish(zyx[nodes], radius[nodes], brightness[nodes], piece_edges, start)
        if rank and edge_lengths(tree[0], tree[2], scale).sum() < floor:
            dropped += 1
            continue
        trees.append(tree)
        # Only the first tree's root may be typed a soma: on a fragment, a thick blob is too
        # often a crossing or a clump of noise, and most gold SWCs have one soma per stack.
        hows.append(BLOB if rank and how == SOMA else how)
    return trees, hows, dropped


def _root_comments(trees, hows, offset) -> list[str]:
    """A header line per tree: how its root was chosen and where it is (x, y, z voxels)."""
    lines = []
    for k, ((zyx, _, _), how) in enumerate(zip(trees, hows, strict=True)):
        x, y, z = zyx_to_swc(zyx[0] + offset)
        which = f", tree {k + 1} of {len(trees)}" if len(trees) > 1 else ""
        lines.append(f"root: {how} at ({x:.1f}, {y:.1f}, {z:.1f}){which}")
    return lines


def _image_evidence(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The raw stack, percentile-normalised, as evidence in gaps (see :func:`trace`)."""
    from dineuro.data.normalize import percentile_normalize

    image = np.asarray(image)
    if image.shape != shape:
        raise InputError(f"the image has shape {image.shape} but the map {shape}; they should "
                         "be the same (z, y, x) stack.")
    return percentile_normalize(image)


def _fill_cavities(mask: np.ndarray) -> np.ndarray:
    """The mask with enclosed background (not reaching a face of the array) made foreground.

    A neurite or soma that is hollow in the map (a dim core, a nucleus) thins to a shell and
    then to loops, which the spanning forest cuts into hooks; filled, it thins to a line.
    """
    background, count = ndimage.label(~mask)  # 6-connected, the complement of 26
    faces = np.concatenate([np.unique(np.take(background, [0, -1], axis=axis))
                            for axis in range(3)])
    enclosed = np.ones(count + 1, dtype=bool)
    enclosed[faces] = False
    return mask | enclosed[background]


def _drop_short_pieces(zyx, edges, labels, scale, min_length):
    """Remove the centre lines of foreground components with less than ``min_length`` of them.

    Returns the remaining ``(zyx, edges)`` and a boolean over component labels (0 being the
    background, never noise): which components were removed, including those thinning erased.
    """
    label_of = labels[tuple(np.rint(zyx).astype(np.int64).T)]
    step = np.linalg.norm((zyx[edges[:, 0]] - zyx[edges[:, 1]]) * scale, axis=1)
    cable = np.bincount(label_of[edges[:, 0]], weights=step, minlength=labels.max() + 1)
    noise = cable < min_length  # a lone voxel has no edge: cable 0
    noise[0] = False
    keep = ~noise[label_of]
    index = np.cumsum(keep) - 1
    return zyx[keep], index[edges[keep[edges[:, 0]]]], noise


def _pieces(zyx, edges, scale, first):
    """Each tree of the forest: ``(nodes, edges, cable)``, edges in indices into ``nodes``.

    Sorted by cable (x voxels), largest first, except that the tree holding node ``first``
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
    by_piece = local[edges[np.argsort(edge_piece, kind="stable")]]
    nodes_of = np.split(order, np.cumsum(sizes)[:-1])
    edges_of = np.split(by_piece, np.cumsum(np.bincount(edge_piece, minlength=count))[:-1])
    ranking = sorted(range(count), key=lambda k: (first is None or piece_of[first] != k,
                                                  -cable[k], k))
    return [(nodes_of[k], edges_of[k], float(cable[k])) for k in ranking]


def _finish(zyx, radius, brightness, edges, given, *, scale, offset, shape, prune_length,
            spur_radii, smooth, node_step):
    """One piece's rooted, pruned, smoothed and resampled tree: ``(zyx, radius, parent, how)``.

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
    zyx, radius = zyx[nodes], radius[nodes]
    keep = prune_spurs(zyx, radius, parent, scale, prune_length, spur_radii,
                       radius_cap=SOMA_RADIUS_RATIO * float(np.median(radius)), soma_root=soma)
    zyx, radius, parent = zyx[keep], radius[keep], subtree(parent, keep)
    how = GIVEN if given is not None else SOMA
    if not soma:
        root, how = end_root(zyx, radius, parent, scale, offset, shape)
        if root:
            order, parent = reroot(parent, root)
            zyx, radius = zyx[order], radius[order]
    return (*resample(zyx, radius, parent, scale, node_step, smooth), how)


def _foreground(prob: np.ndarray, high: float, low: float) -> np.ndarray:
    mask = hysteresis(prob, low, high)
    fraction = mask.mean()
    if fraction > MAX_FOREGROUND_FRACTION:
        raise InputError(f"{fraction:.0%} of the voxels are foreground at thresholds {low:g}/"
                         f"{high:g}; a neuron fills a small fraction of a stack, so this is "
                         "not a neurite probability map (or the thresholds are too low).")
    return mask


def hysteresis(prob: np.ndarray, low: float, high: float) -> np.ndarray:
    """Voxels above ``low`` in a (face-connected) piece holding a voxel above ``high``.

    What scikit-image's ``apply_hysteresis_threshold`` computes, found by looking up the labels
    under the ``high`` voxels instead of summing them over every label: on a noisy 60x512x512
    map with tens of thousands of pieces that sum was half of the whole trace's time.
    """
    labels, count = ndimage.label(prob > low)
    keep = np.zeros(count + 1, dtype=bool)
    keep[labels[prob > high]] = True
    keep[0] = False
    return keep[labels]


def _given_root(root, offset, shape, zyx, label_of, labels, scale, root_snap) -> int:
    """Centre-line node for a user's soma position (x, y, z) in voxels (see :func:`trace`)."""
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


def _as_swc(trees, soma, offset, comments) -> SwcTree:
    """One SwcTree from (zyx, radius, parent) trees; the first root is type 1 if ``soma``."""
    parts, start = [], 0
    for zyx, radius, parent in trees:
        types = np.full(len(zyx), NEURITE_TYPE)
        types[0] = SOMA_TYPE if soma and not parts else NEURITE_TYPE
        ids = np.arange(start + 1, start + len(zyx) + 1)
        parents = np.where(parent >= 0, parent + start + 1, -1)
        parts.append((ids, types, zyx_to_swc(zyx + offset), radius, parents))
        start += len(zyx)
    ids, types, xyz, radius, parents = (np.concatenate(column) for column in zip(*parts,
                                                                                  strict=True))
    return SwcTree(ids, types, xyz, radius, parents, comments).renumbered()


def _empty(comments) -> SwcTree:
    return SwcTree([], [], np.zeros((0, 3)), [], [], comments)


def _check_options(high, low, node_step, **lengths) -> None:
    if not 0.0 <= low <= high < 1.0:
        raise InputError(f"thresholds should satisfy 0 <= low <= high < 1, got low {low:g} and "
                         f"high {high:g}.")
    for name, value in lengths.items():
        if not (math.isfinite(value) and value >= 0):
            raise InputError(f"{name} should be a finite number >= 0, got {value}.")
    if not (math.isfinite(node_step) and node_step > 0):
        raise InputError(f"node_step should be a positive number, got {node_step}.")


def trace_file(path: str | os.PathLike, out: str | os.PathLike, *,
               image: str | os.PathLike | None = None, channel: int | None = None,
               **options) -> SwcTree:
    """Trace a probability map or mask file into a new SWC file, atomically.

    The map's voxel spacing goes into the SWC header (coordinates stay in voxels). An empty
    map writes an SWC of comments only (with an :class:`EmptyTraceWarning`), so a batch goes
    on.

    Args:
        path: the map: any stack :func:`~dineuro.io.volume.read_volume` reads, e.g.
            ``NAME_prob.tif`` or ``NAME_mask.tif`` from ``dineuro predict``.
        out: the SWC to write; must not exist.
        image: the raw stack, for gap evidence and the soma's brightness (see :func:`trace`).
        channel: channel of a multi-channel ``image``.
        **options: passed to :func:`trace`.

    Returns:
        The tree written.

    Raises:
        InputError: naming the file: a missing or unreadable file, not 3D, shapes that differ,
            an existing ``out``, or any of :func:`trace`'s reasons; nothing is written then.
    """
    out = refuse_existing(out)
    volume = read_volume(path)
    raw = None
    if image is not None:
        raw = read_volume(image, channel).array
        if raw.shape != volume.array.shape:
            raise InputError(f"has shape {raw.shape} but the map {path} has "
                             f"{volume.array.shape}; they should be the same stack.", image)
    return write_trace(volume, out, source=path, image=raw, **options)


def write_trace(prob: Volume, out: str | os.PathLike, *, source: str | os.PathLike,
                image: np.ndarray | None = None, **options) -> SwcTree:
    """Trace a map held in memory (with its spacing) into a new SWC file, atomically.

    What :func:`trace_file` does once it has read the map: :func:`trace_volume`, then write.

    Args:
        prob, source, image, **options: as for :func:`trace_volume`.
        out: the SWC to write; must not exist.

    Raises:
        InputError: naming ``source``, for any of :func:`trace`'s reasons, or an existing
            ``out``; nothing is written then.
    """
    out = refuse_existing(out)
    tree = trace_volume(prob, source=source, image=image, **options)
    write_swc(out, tree, allow_empty=True)
    return tree


def trace_volume(prob: Volume, *, source: str | os.PathLike, image: np.ndarray | None = None,
                 **options) -> SwcTree:
    """:func:`trace` of a map held in memory, with its spacing; ``dineuro run`` calls it with
    the map it has just predicted, so the map is not read back from disk.

    Args:
        prob: the map and its (z, y, x) spacing.
        source: the file the map is (or came from): named in errors and the SWC header.
        image, **options: as for :func:`trace`.

    Raises:
        InputError: naming ``source``, for any of :func:`trace`'s reasons.
    """
    try:
        tree = trace(prob.array, prob.spacing, image=image, **options)
    except InputError as exc:
        raise exc if exc.path else InputError(str(exc), source) from exc
    tree.comments.insert(0, f"traced from {Path(source).name}")
    return tree


def untraced(source: str | os.PathLike, reason: str) -> SwcTree:
    """An SWC of comments only, for a map that could not be traced: it says why, and a batch
    that finds it knows the stack was done (``dineuro run --skip-existing``)."""
    return _empty([f"not traced from {Path(source).name}: {reason}"])
