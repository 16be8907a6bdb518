"""Probability map (or binary mask) -> one SWC tree per neuron; see :mod:`dineuro.trace`.

:func:`trace` runs the steps in order and checks its options; the steps live in
:mod:`~dineuro.trace._probability` (reading the map), :mod:`~dineuro.trace._centre_lines`
(foreground, centre lines, noise, radii), :mod:`~dineuro.trace._tree` (gaps) and
:mod:`~dineuro.trace._forest` (separate trees, roots, spurs, nodes, the SWC).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from dineuro.data.normalize import percentile_normalize
from dineuro.data.render import spacing_in_x_voxels
from dineuro.defaults import (
    DEFAULT_FOLLOW_CONTRAST,
    DEFAULT_FOLLOW_GAP,
    DEFAULT_FOLLOW_LINE_GAP,
    DEFAULT_GAP_FLOOR,
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_MAX_GAP,
    DEFAULT_MIN_PIECE_LENGTH,
    DEFAULT_MIN_TREE_LENGTH,
    DEFAULT_NEURITE_TYPE,
    DEFAULT_NODE_STEP,
    DEFAULT_PRUNE_LENGTH,
    DEFAULT_ROOT_SNAP,
    DEFAULT_SMOOTH,
    DEFAULT_SPUR_RADII,
    DEFAULT_SWC_UNITS,
    NEURITE_TYPES,
)
from dineuro.errors import InputError
from dineuro.io.swc import SwcTree
from dineuro.io.swc_units import check_units, in_micrometres, metadata_comment
from dineuro.trace._beads import join_bead_rows
from dineuro.trace._centre_lines import (
    METHODS,
    _centre_lines,
    _foreground,
    _radii,
    foreground_box,
)
from dineuro.trace._ends import end_points
from dineuro.trace._forest import _empty, finish_forest
from dineuro.trace._probability import as_probability
from dineuro.trace._root import _given_root
from dineuro.trace._tree import bridge_gaps

#: Smallest radius written (x voxels): thinner neurites are still drawn a voxel wide.
MIN_RADIUS = 0.5


class EmptyTraceWarning(UserWarning):
    """Nothing in a map is above the high threshold, so the traced SWC has no nodes."""


def trace(prob: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0), *,
          image: np.ndarray | None = None, high: float = DEFAULT_HIGH,
          low: float = DEFAULT_LOW, root: str | Sequence[float] = "auto",
          max_gap: float = DEFAULT_MAX_GAP, gap_floor: float = DEFAULT_GAP_FLOOR,
          follow_gap: float = DEFAULT_FOLLOW_GAP,
          follow_contrast: float = DEFAULT_FOLLOW_CONTRAST,
          follow_line_gap: float = DEFAULT_FOLLOW_LINE_GAP,
          prune_length: float = DEFAULT_PRUNE_LENGTH, spur_radii: float = DEFAULT_SPUR_RADII,
          min_piece_length: float = DEFAULT_MIN_PIECE_LENGTH,
          min_tree_length: float = DEFAULT_MIN_TREE_LENGTH, smooth: float = DEFAULT_SMOOTH,
          node_step: float = DEFAULT_NODE_STEP, root_snap: float = DEFAULT_ROOT_SNAP,
          keep_fragments: bool = False, link_beads: bool = True, kind: str = "auto",
          method: str = "thinning", units: str = DEFAULT_SWC_UNITS,
          neurite_type: str = DEFAULT_NEURITE_TYPE) -> SwcTree:
    """Trace a (z, y, x) probability map, mask or raw image into SWC trees, one per neuron.

    Steps (see :mod:`dineuro.trace` for why): hysteresis threshold, skeleton, removal of
    pieces too short to be neurites, bridges across small gaps with evidence, roots, spur
    pruning, smoothing and resampling, radii.

    Parameters
    ----------
    prob : ndarray
        (z, y, x) map, read by :func:`as_probability` with ``kind``.
    spacing : sequence of float, optional
        (z, y, x) voxel size; only ratios matter. Lengths below are in x voxels.
    image : ndarray, optional
        The raw (z, y, x) stack, same shape (``dineuro run`` passes the stack it predicted).
        A fibre's line in it carries a bridge along the direction a piece ends in where the
        map has nothing (``follow_contrast``). A mask has no evidence of its own between its
        pieces, nor brightness: its gaps are judged by the image's percentile-normalised
        intensity instead of the map, and its soma's brightness breaks ties.
    high, low : float, optional
        Hysteresis thresholds: foreground is p > low, connected to some p > high.
    root : "auto" or sequence of float, optional
        "auto" (each tree's soma, else where it leaves the stack, else its thickest end) or
        the soma's (x, y, z) in voxels, SWC order. A point in the foreground snaps to the
        nearest centre-line node of its component; a point outside it to the nearest node
        within ``root_snap``.
    max_gap : float, optional
        Longest bridge between centre-line nodes of separate pieces, in any direction.
    gap_floor : float, optional
        Least mean evidence on the part of such a bridge outside the foreground.
    follow_gap : float, optional
        Longest bridge along the direction a centre line ends in (0: none beyond
        ``max_gap``): a fibre that fades for a stretch goes on that way, so such a bridge
        needs only evidence above a clean background.
    follow_contrast : float, optional
        Or, with ``image``, a raw image that stands out along it by at least this many spreads
        of the background around it (:func:`~dineuro.trace._tree.line_contrast`): a fibre too
        dim for the network still shows as a line (``inf``: never).
    follow_line_gap : float, optional
        Longest bridge the image carries so, in x voxels: a measurement along the whole gap,
        it may reach further than the map's ``follow_gap``.
    prune_length : float, optional
        A terminal branch reaching less than this beyond the radius of the branch point it
        leaves is a spur.
    spur_radii : float, optional
        So is one reaching less than this many of those radii from that point.
    min_piece_length : float, optional
        Pieces of the foreground with less centre line than this are noise: removed before
        bridging.
    min_tree_length : float, optional
        Separate trees with less cable than this, on the foreground alone (bridges not
        counted) or after pruning and smoothing, are dropped as debris, except the first (the
        one holding a given ``root``, else the largest); so are unsure, much-branched trees
        that look like speckle (:mod:`dineuro.trace._forest`).
    smooth : float, optional
        Gaussian sigma along the centre lines (0: the voxel staircase as it is).
    node_step : float, optional
        Spacing of the written nodes along branches.
    root_snap : float, optional
        How far a ``root`` outside the foreground may be from the centre lines.
    keep_fragments : bool, optional
        Also keep separate trees shorter than ``min_tree_length`` and those that look like
        speckle.
    link_beads : bool, optional
        Join rows of small sure blobs, what a network sees of a beaded fibre, into lines before
        the centre lines are made (:mod:`dineuro.trace._beads`); never on a raw image, whose
        noise makes such blobs.
    kind : {"auto", "probability", "mask", "image"}, optional
        How ``prob`` is read (see :func:`as_probability`).
    method : {"thinning", "geodesic"}, optional
        How centre lines are found: "thinning" (3D thinning) or "geodesic" (minimal paths from
        each piece's thickest point through a cost low on the bright, thick middle, as APP2 and
        Rivulet; :mod:`dineuro.trace._geodesic`).
    units : {"voxel", "um"}, optional
        Coordinates of the result: voxels (x, y, z) with radii in x voxels, or micrometres
        from ``spacing`` (:mod:`dineuro.io.swc_units`).
    neurite_type : {"dendrite", "axon", "apical", "neurite"}, optional
        The SWC type of traced nodes (:data:`~dineuro.defaults.NEURITE_TYPES`): 3, 2, 4 or 0.

    Returns
    -------
    SwcTree
        The trees, largest first (the one holding a given ``root`` first), ids 1..N, parents
        before children, type 1 at the first tree's root when it is a soma (found, or given)
        and ``neurite_type`` elsewhere, in ``units``; comments record the units and spacing
        (also as a machine-readable line), the options and how each root was chosen. No nodes
        when nothing exceeds ``high`` or every piece is shorter than ``min_piece_length``.

    Raises
    ------
    InputError
        A bad map or option, a map that is mostly foreground, or a ``root`` outside the stack
        or too far from the foreground.

    Warns
    -----
    EmptyTraceWarning
        When the trees have no nodes.

    Examples
    --------
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
               "follow_gap": follow_gap, "follow_contrast": follow_contrast,
               "follow_line_gap": follow_line_gap,
               "prune_length": prune_length,
               "spur_radii": spur_radii,
               "min_piece_length": min_piece_length, "min_tree_length": min_tree_length,
               "smooth": smooth, "node_step": node_step, "root_snap": root_snap}
    _check_options(**options)
    check_units(units)
    if neurite_type not in NEURITE_TYPES:
        raise InputError(f"neurite_type should be one of {', '.join(NEURITE_TYPES)}, not "
                         f"{neurite_type!r}.")
    if image is not None:
        image = np.asarray(image)
        if image.shape != prob.shape:
            raise InputError(f"the image has shape {image.shape} but the map {prob.shape}; they "
                             "should be the same (z, y, x) stack.")
    # a mask (nothing between 0 and 1) has no evidence or brightness: the image's intensity is
    mask_only = image is not None and _is_binary(prob)
    evidence = percentile_normalize(image) if mask_only else prob
    where = ("voxels (x, y, z), radii in x voxels" if units == "voxel"
             else "micrometres (x, y, z), radii in micrometres")
    comments = [metadata_comment(units, spacing),
                f"spacing (z, y, x): {tuple(float(s) for s in spacing)}; coordinates in {where}",
                "traced by dineuro: " + ", ".join(f"{k} {v:g}" for k, v in options.items())
                + f", keep_fragments {keep_fragments}, link_beads {link_beads}, kind {kind}, "
                f"method {method}, "
                f"root {root if isinstance(root, str) else tuple(root)}"]
    mask = _foreground(prob, high, low)
    hint = "; for a raw image use kind 'image'" if kind != "image" and dtype.kind in "ui" else ""
    if not mask.any():
        warnings.warn(f"nothing in the map is above the high threshold {high:g}; the traced "
                      f"SWC is empty{hint}.", EmptyTraceWarning, stacklevel=2)
        return _empty(comments)
    box = foreground_box(mask)
    offset = np.array([s.start for s in box], dtype=np.float64)
    evidence = evidence[box]
    mask = mask[box]
    if link_beads and kind != "image":
        mask, rows = join_bead_rows(mask, prob[box], scale, high)
        if rows:
            comments.append(f"joined {rows} row(s) of beads (small sure blobs in a line) into "
                            "fibres")
    mask, labels, zyx, edges, removed = _centre_lines(mask, scale, min_piece_length, method,
                                                      prob[box])
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
    # Minimal paths already run out to the far end of a piece; thinning stops short of it.
    ends = end_points(zyx, edges, mask, radius, scale) if method == "thinning" else None
    edges = np.concatenate([edges, bridge_gaps(
        zyx, edges, scale, mask, evidence, max_gap, gap_floor, follow_gap,
        image=None if image is None else image[box],
        follow_contrast=follow_contrast, follow_line_gap=follow_line_gap)])
    tree = finish_forest(zyx, radius, evidence[voxel], edges, given, scale=scale, offset=offset,
                         shape=prob.shape, prune_length=prune_length, spur_radii=spur_radii,
                         smooth=smooth, node_step=node_step,
                         min_tree_length=None if keep_fragments else min_tree_length,
                         comments=comments, neurite_type=NEURITE_TYPES[neurite_type],
                         confidence=prob[box][voxel], ends=ends,
                         branch_rule=kind != "image")
    return tree if units == "voxel" else in_micrometres(tree, spacing)


def _is_binary(prob: np.ndarray) -> bool:
    """Whether a map read by :func:`as_probability` holds only 0 and 1 (a mask)."""
    return not np.any((prob > 0) & (prob < 1))


def _check_options(high, low, node_step, follow_contrast, **lengths) -> None:
    if not 0.0 <= low <= high < 1.0:
        raise InputError(f"thresholds should satisfy 0 <= low <= high < 1, got low {low:g} and "
                         f"high {high:g}.")
    for name, value in lengths.items():
        if not (math.isfinite(value) and value >= 0):
            raise InputError(f"{name} should be a finite number >= 0, got {value}.")
    if not (math.isfinite(node_step) and node_step > 0):
        raise InputError(f"node_step should be a positive number, got {node_step}.")
    if not follow_contrast >= 0:  # NaN fails too
        raise InputError(f"follow_contrast should be a number >= 0 (inf: never), got "
                         f"{follow_contrast}.")
