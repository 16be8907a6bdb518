"""Probability map (or binary mask) -> one SWC tree per neuron; see :mod:`dineuro.trace`."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.sparse import csgraph

from dineuro.data.render import spacing_in_x_voxels
from dineuro.errors import InputError
from dineuro.io._atomic import refuse_existing
from dineuro.io.swc import SwcTree, write_swc, zyx_to_swc
from dineuro.trace._skeleton import skeleton_graph
from dineuro.trace._tree import (
    bridge_gaps,
    edge_lengths,
    graph_matrix,
    prune_spurs,
    resample,
    rooted_tree,
)

DEFAULT_HIGH = 0.5
DEFAULT_LOW = 0.25
#: Longest gap bridged, in x voxels between the two centre-line nodes it joins.
DEFAULT_MAX_GAP = 6.0
#: Least mean probability (or normalised intensity) along the part of a bridge outside the mask.
DEFAULT_GAP_FLOOR = 0.15
#: Shortest terminal branch kept, in x voxels beyond the radius of the neurite it leaves.
DEFAULT_PRUNE_LENGTH = 4.0
#: Distance between resampled nodes along a branch, in x voxels.
DEFAULT_NODE_STEP = 2.0
#: A --root point outside the foreground snaps to a centre-line node at most this far (x voxels).
DEFAULT_ROOT_SNAP = 5.0
#: More foreground than this fraction of the stack is no neuron (they fill 0.02-2 %).
MAX_FOREGROUND_FRACTION = 0.5
#: Smallest radius written (x voxels): thinner neurites are still drawn a voxel wide.
MIN_RADIUS = 0.5
SOMA, NEURITE = 1, 3
KINDS = ("auto", "probability", "mask")
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
    foreground.

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
          prune_length: float = DEFAULT_PRUNE_LENGTH, node_step: float = DEFAULT_NODE_STEP,
          root_snap: float = DEFAULT_ROOT_SNAP, keep_fragments: bool = False,
          kind: str = "auto") -> SwcTree:
    """Trace a (z, y, x) probability map or mask into an SWC tree rooted at the soma.

    Steps (see :mod:`dineuro.trace` for why): hysteresis threshold, skeleton, bridges across
    small gaps with evidence, root, spur pruning, resampling, radii.

    Args:
        prob: (z, y, x) map, read by :func:`as_probability` with ``kind``.
        spacing: (z, y, x) voxel size; only ratios matter. Lengths below are in x voxels.
        image: the raw (z, y, x) stack, same shape; when given, gaps are judged by its
            percentile-normalised intensity instead of the probability, and the soma's
            brightness breaks ties.
        high, low: hysteresis thresholds: foreground is p > low, connected to some p > high.
        root: "auto" (the thickest point of the largest component, ties to the brightest) or
            the soma's (x, y, z) in voxels, SWC order. A point in the foreground snaps to the
            nearest centre-line node of its component; a point outside it to the nearest node
            within ``root_snap``.
        max_gap: longest bridge between centre-line nodes of separate pieces.
        gap_floor: least mean evidence on the part of a bridge outside the foreground.
        prune_length: shortest terminal branch kept, beyond the radius of its parent.
        node_step: spacing of the written nodes along branches.
        root_snap: how far a ``root`` outside the foreground may be from the centre lines.
        keep_fragments: also return pieces that no bridge reaches, as extra trees (rooted at
            their thickest node, type 3) when their cable is at least ``prune_length`` long;
            by default they are dropped as other neurons' fragments or noise.
        kind: "auto", "probability" or "mask" (see :func:`as_probability`).

    Returns:
        The tree with ids 1..N, parents before children, type 1 at the root and 3 elsewhere,
        (x, y, z) voxel coordinates and radii in x voxels; comments record the spacing and
        options. No nodes (and an :class:`EmptyTraceWarning`) when nothing exceeds ``high``.

    Raises:
        InputError: a bad map or option, a map that is mostly foreground, or a ``root`` outside
            the stack or too far from the foreground.

    Examples::

        >>> prob = np.zeros((5, 5, 40), np.float32)
        >>> prob[1:4, 1:4, 5:35] = 0.9
        >>> tree = trace(prob)
        >>> tree.types[0], int(tree.xyz[:, 0].min()), int(tree.xyz[:, 0].max())
        (np.int64(1), 6, 33)
    """
    prob = as_probability(prob, kind)
    scale = spacing_in_x_voxels(spacing)
    _check_options(high, low, max_gap, gap_floor, prune_length, node_step, root_snap)
    evidence = prob
    if image is not None:
        from dineuro.data.normalize import percentile_normalize

        image = np.asarray(image)
        if image.shape != prob.shape:
            raise InputError(f"the image has shape {image.shape} but the map {prob.shape}; "
                             "they should be the same (z, y, x) stack.")
        evidence = percentile_normalize(image)
    comments = [f"spacing (z, y, x): {tuple(float(s) for s in spacing)}; coordinates in voxels "
                "(x, y, z), radii in x voxels",
                f"traced by dineuro: high {high:g}, low {low:g}, max_gap {max_gap:g}, gap_floor "
                f"{gap_floor:g}, prune_length {prune_length:g}, node_step {node_step:g}, "
                f"root {root if isinstance(root, str) else tuple(root)}"]
    mask = _foreground(prob, high, low)
    if not mask.any():
        warnings.warn(f"nothing in the map is above the high threshold {high:g}; the traced "
                      "SWC is empty.", EmptyTraceWarning, stacklevel=2)
        return _empty(comments)
    # Work inside the bounding box of the foreground, plus a voxel where the stack allows.
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1)
                for s in ndimage.find_objects(mask.view(np.uint8))[0])
    offset = np.array([s.start for s in box], dtype=np.float64)
    mask, evidence = mask[box], evidence[box]
    labels = ndimage.label(mask, structure=_FULL)[0]
    distance = ndimage.distance_transform_edt(mask, sampling=scale)
    zyx, edges = skeleton_graph(mask, scale)
    voxel = tuple(np.rint(zyx).astype(np.int64).T)
    label_of, radius = labels[voxel], np.maximum(distance[voxel], MIN_RADIUS)
    if isinstance(root, str):
        if root != "auto":
            raise InputError(f"root should be 'auto' or x,y,z voxel coordinates, not {root!r}.")
        root_node = _auto_root(zyx, label_of, labels, distance, evidence, scale)
    else:
        root_node = _given_root(root, offset, prob.shape, zyx, label_of, labels, scale,
                                root_snap)
    edges = np.concatenate([edges, bridge_gaps(zyx, edges, scale, mask, evidence, max_gap,
                                               gap_floor)])
    trees = [_finish(zyx, radius, edges, root_node, scale, prune_length, node_step)]
    n_pieces, piece_of = csgraph.connected_components(graph_matrix(len(zyx), edges),
                                                      directed=False)
    dropped = [piece for piece in range(n_pieces) if piece != piece_of[root_node]]
    if keep_fragments:
        kept = []
        for piece in dropped:
            members = np.flatnonzero(piece_of == piece)
            thickest = int(members[np.argmax(radius[members])])
            tree = _finish(zyx, radius, edges, thickest, scale, prune_length, node_step)
            if edge_lengths(tree[0], tree[2], scale).sum() >= prune_length:
                kept.append(piece)
                trees.append(tree)
        dropped = sorted(set(dropped) - set(kept))
    if dropped:
        comments.append(f"dropped {len(dropped)} unconnected piece(s) of the foreground")
    return _as_swc(trees, offset, comments)


def _foreground(prob: np.ndarray, high: float, low: float) -> np.ndarray:
    from skimage.filters import apply_hysteresis_threshold

    mask = apply_hysteresis_threshold(prob, low, high)
    fraction = mask.mean()
    if fraction > MAX_FOREGROUND_FRACTION:
        raise InputError(f"{fraction:.0%} of the voxels are foreground at thresholds {low:g}/"
                         f"{high:g}; a neuron fills a small fraction of a stack, so this is "
                         "not a neurite probability map (or the thresholds are too low).")
    return mask


def _finish(zyx, radius, edges, root, scale, prune_length, node_step):
    """Rooted, pruned and resampled tree of the piece holding ``root``: (zyx, radius, parent)."""
    nodes, parent = rooted_tree(len(zyx), edges, root)
    keep = prune_spurs(zyx[nodes], radius[nodes], parent, scale, prune_length)
    index = np.cumsum(keep) - 1
    kept_parent = np.where(parent[keep] >= 0, index[np.maximum(parent[keep], 0)], -1)
    return resample(zyx[nodes][keep], radius[nodes][keep], kept_parent, scale, node_step)


def _auto_root(zyx, label_of, labels, distance, evidence, scale) -> int:
    """Centre-line node nearest the thickest voxel of the largest component.

    Among equally thick voxels (the distance transform takes few distinct values) the one with
    the highest evidence wins: the soma is the thickest and brightest part of a neuron.
    """
    sizes = np.bincount(labels.ravel())
    # Thinning can erase a tiny component entirely; only components with a centre line count.
    sizes[np.setdiff1d(np.arange(len(sizes)), label_of)] = 0
    largest = int(np.argmax(sizes))
    inside = labels == largest
    thickest = distance[inside].max()
    candidates = np.flatnonzero(inside.ravel() & (distance.ravel() >= thickest))
    best = candidates[np.argmax(evidence.ravel()[candidates])]
    centre = np.array(np.unravel_index(best, labels.shape), dtype=np.float64)
    nodes = np.flatnonzero(label_of == largest)
    return int(nodes[np.argmin(np.linalg.norm((zyx[nodes] - centre) * scale, axis=1))])


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


def _as_swc(trees, offset, comments) -> SwcTree:
    """One SwcTree from (zyx, radius, parent) trees: the first one's root is the soma."""
    parts, start = [], 0
    for zyx, radius, parent in trees:
        types = np.full(len(zyx), NEURITE)
        types[0] = SOMA if not parts else NEURITE
        ids = np.arange(start + 1, start + len(zyx) + 1)
        parents = np.where(parent >= 0, parent + start + 1, -1)
        parts.append((ids, types, zyx_to_swc(zyx + offset), radius, parents))
        start += len(zyx)
    ids, types, xyz, radius, parents = (np.concatenate(column) for column in zip(*parts,
                                                                                  strict=True))
    return SwcTree(ids, types, xyz, radius, parents, comments).renumbered()


def _empty(comments) -> SwcTree:
    return SwcTree([], [], np.zeros((0, 3)), [], [], comments)


def _check_options(high, low, max_gap, gap_floor, prune_length, node_step, root_snap) -> None:
    if not 0.0 <= low <= high < 1.0:
        raise InputError(f"thresholds should satisfy 0 <= low <= high < 1, got low {low:g} and "
                         f"high {high:g}.")
    for name, value in (("max_gap", max_gap), ("gap_floor", gap_floor),
                        ("prune_length", prune_length), ("root_snap", root_snap)):
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
    from dineuro.io.volume import read_volume

    out = refuse_existing(out)
    volume = read_volume(path)
    raw = None
    if image is not None:
        raw = read_volume(image, channel).array
        if raw.shape != volume.array.shape:
            raise InputError(f"has shape {raw.shape} but the map {path} has "
                             f"{volume.array.shape}; they should be the same stack.", image)
    try:
        tree = trace(volume.array, volume.spacing, image=raw, **options)
    except InputError as exc:
        raise exc if exc.path else InputError(str(exc), path) from exc
    tree.comments.insert(0, f"traced from {Path(path).name}")
    write_swc(out, tree, allow_empty=True)
    return tree
