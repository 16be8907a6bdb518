"""SWC tree -> boolean foreground mask: every edge drawn as a tapered tube, vectorised with numpy.

The mask is the training label for segmentation, so its geometry is defined exactly (see
:func:`render_mask`) and tested against a brute-force computation over whole grids.

How it stays fast: each segment only looks at the voxels in its bounding box (grown by its
radius). Boxes of the same size are stacked into one ``(G, Dz, Dy, Dx)`` block and tested with
broadcasting, so numpy does the work and Python loops only over box sizes and memory chunks, never
over edges. Long segments get several smaller candidate boxes along their length (a long diagonal
segment's single box would be mostly empty), but every candidate voxel is still tested against
the *whole* segment, so splitting cannot change the result: a voxel inside the tube has its
closest segment point at some parameter t*, which lies on some piece, and the voxel is within that
piece's largest radius of it on every axis, hence inside that piece's box.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Sequence

import numpy as np

from dineuro.errors import InputError
from dineuro.io.swc import SwcTree, validate_swc

# Candidate voxels tested per numpy block; bounds memory at roughly 15 float64 arrays of this
# size (~30 MB) and keeps the working set near the CPU caches.
_CHUNK_VOXELS = 2**18
# Candidate boxes are grown by this much (voxels) so that rounding in the box arithmetic never
# drops a voxel lying exactly on a tube surface; extra candidates are harmless.
_BOX_SLACK = 1e-6
# A long segment gets one candidate box per this many box margins of its length (2 was fastest
# in benchmarks/render_speed.py; any value gives the same mask).
_PIECE_PER_MARGIN = 2.0


def render_mask(tree: SwcTree, shape: Sequence[int],
                spacing: Sequence[float] = (1.0, 1.0, 1.0),
                min_radius: float = 1.0) -> np.ndarray:
    """Draw an SWC tree into a boolean ``(z, y, x)`` volume as tapered tubes.

    Geometry:

    - SWC coordinates are voxel indices (x, y, z), with voxel centres at integer coordinates;
      nodes outside the volume are fine (the drawing is clipped).
    - Radii are in units of the x voxel size (x and y voxels are normally equal). ``spacing`` is
      the physical (z, y, x) voxel size, so with a z spacing twice the x spacing a tube of radius
      r covers r voxels along x but only r/2 voxels along z.
    - Every edge (child a, parent b) is a tapered tube: a voxel centre p is foreground iff its
      physical distance to the segment ab is <= r(t), where t is the parameter of p's closest
      point on the segment (projection in physical space, clamped to [0, 1]) and
      ``r(t) = r_a + t (r_b - r_a)``. Ends are therefore round caps; roots and isolated nodes
      are drawn as balls.
    - Minimum radius: additionally, every voxel centre within ``min_radius`` of the segment,
      measured in voxel *index* space (all axes unit length, whatever the spacing), is
      foreground. A neurite thinner than a voxel, or a thin one in coarse z, then still shows as
      an unbroken line: with ``min_radius >= sqrt(3)/2`` the voxels of each segment form a
      6-connected run, since the voxels around any point of the segment are all within
      sqrt(3)/2 of it, and any other voxel within ``min_radius`` can step one face towards the
      segment and come strictly closer. ``min_radius=0`` draws the pure geometry.

    Parameters
    ----------
    tree : SwcTree
        The neuron; validated with :func:`dineuro.io.swc.validate_swc`.
    shape : sequence of int
        The volume shape (z, y, x), three positive integers.
    spacing : sequence of float, optional
        Physical voxel size (z, y, x), three positive numbers; only ratios matter.
    min_radius : float, optional
        Minimum tube radius in voxels (index space), >= 0.

    Returns
    -------
    numpy.ndarray
        A boolean array of ``shape``.

    Examples
    --------
    >>> tree = SwcTree([1, 2], [1, 3], [[2, 4, 4], [12, 4, 4]], [2.0, 2.0], [-1, 1])
    >>> mask = render_mask(tree, (9, 9, 16), min_radius=0)
    >>> int(mask[4, 4].sum()), int(mask[4, :, 7].sum()), int(mask[:, 4, 7].sum())
    (15, 5, 5)
    >>> int(render_mask(tree, (9, 9, 16), spacing=(2, 1, 1), min_radius=0)[:, 4, 7].sum())
    3
    """
    shape = _check_shape(shape)
    scale = spacing_in_x_voxels(spacing)
    min_radius = float(min_radius)
    if not (math.isfinite(min_radius) and min_radius >= 0):
        raise InputError(f"min_radius should be a finite number >= 0, got {min_radius}.")
    validate_swc(tree)
    zyx, radius = tree.zyx, tree.radius
    child, parent = tree.edges()
    roots = tree.roots  # balls: zero-length segments
    start = np.concatenate([child, roots])
    end = np.concatenate([parent, roots])
    mask = np.zeros(shape, dtype=bool)
    _draw_segments(mask, zyx[start], zyx[end], radius[start], radius[end], scale, min_radius)
    return mask


def _check_shape(shape) -> tuple[int, int, int]:
    try:
        dims = tuple(operator.index(n) for n in shape)
    except TypeError:
        dims = ()
    if len(dims) != 3 or min(dims) <= 0:
        raise InputError(f"shape should be 3 positive integers (z, y, x), got {shape!r}.")
    return dims


def spacing_in_x_voxels(spacing) -> np.ndarray:
    """(z, y, x) spacing in units of the x voxel size (the unit of SWC radii), checked."""
    try:
        values = np.asarray(spacing, dtype=np.float64).reshape(-1 if np.ndim(spacing) == 1 else 0)
    except (TypeError, ValueError):
        values = np.zeros(0)
    if values.shape != (3,) or not np.all(np.isfinite(values) & (values > 0)):
        raise InputError(f"spacing should be 3 positive numbers (z, y, x), got {spacing!r}.")
    return values / values[2]


def _draw_segments(mask, a, b, ra, rb, scale, min_radius) -> None:
    """Set every voxel of ``mask`` inside any segment's tube (see :func:`render_mask`)."""
    shape = np.asarray(mask.shape)
    d = b - a
    dr = rb - ra
    margin = np.maximum(np.maximum(ra, rb)[:, None] / scale, min_radius) + _BOX_SLACK
    t0, t1 = _clip_to_volume(a, d, margin, shape)
    keep = np.flatnonzero(t0 <= t1)
    seg, lo, hi = _piece_boxes(keep, a, d, ra, dr, t0, t1, margin, scale, min_radius, shape)
    seg, lo, hi = _bound_box_volume(seg, lo, hi)
    if len(seg) == 0:
        return

    # Per-segment constants of the distance test, in units of the x voxel size.
    scale2 = scale**2
    d_phys = d * scale2  # so that (w * d_phys).sum() is the physical dot product
    dd_phys = (d * d_phys).sum(axis=1)
    inv_dd_phys = np.divide(1.0, dd_phys, out=np.zeros_like(dd_phys), where=dd_phys > 0)
    # With isotropic voxels the index-space and physical projections coincide, so the minimum
    # radius is just a floor on r(t); otherwise it is a second, index-space test.
    isotropic = bool(np.all(scale == 1.0))
    separate_min = min_radius > 0 and not isotropic
    dd_index = (d * d).sum(axis=1)
    inv_dd_index = np.divide(1.0, dd_index, out=np.zeros_like(dd_index), where=dd_index > 0)

    flat_mask = mask.reshape(-1)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    dims = hi - lo + 1
    key = (dims[:, 0] * (shape[1] + 1) + dims[:, 1]) * (shape[2] + 1) + dims[:, 2]
    order = np.argsort(key, kind="stable")
    group_starts = np.flatnonzero(np.diff(key[order], prepend=-1))
    group_ends = np.append(group_starts[1:], len(order))
    for g_start, g_end in zip(group_starts.tolist(), group_ends.tolist(), strict=True):
        box = tuple(dims[order[g_start]].tolist())
        volume = box[0] * box[1] * box[2]
        step = max(1, _CHUNK_VOXELS // volume)
        offsets = [np.arange(n) for n in box]
        box_offset = (offsets[0][:, None, None] * strides[0] + offsets[1][:, None] * strides[1]
                      + offsets[2]).reshape(-1)
        for c_start in range(g_start, g_end, step):
            rows = order[c_start:min(c_start + step, g_end)]
            s = seg[rows]
            # w[k]: voxel coordinate minus segment start along axis k, shaped to broadcast
            # over (G, Dz, Dy, Dx).
            w = [(lo[rows, k][:, None] + offsets[k] - a[s, k][:, None]).reshape(
                (len(rows),) + tuple(box[k] if j == k else 1 for j in range(3)))
                for k in range(3)]
            inside = _inside(w, s, d_phys, dd_phys, inv_dd_phys, scale2, ra, dr,
                             min_radius if (isotropic and min_radius > 0) else None)
            if separate_min:
                inside |= _inside_index_space(w, s, d, dd_index, inv_dd_index, min_radius)
            hits = np.flatnonzero(inside)
            box_index, within = np.divmod(hits, volume)
            flat_mask[(lo[rows] @ strides)[box_index] + box_offset[within]] = True


def _col(values: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-segment values as a (G, 1, 1, 1) column that broadcasts over a box block."""
    return values[s][:, None, None, None]


def _inside(w, s, d_phys, dd_phys, inv_dd_phys, scale2, ra, dr, radius_floor) -> np.ndarray:
    """Physical tube test for a block; dist^2 = |w|^2 - t (2 w.d - t |d|^2), all physical."""
    dot = w[0] * _col(d_phys[:, 0], s) + w[1] * _col(d_phys[:, 1], s) + w[2] * _col(
        d_phys[:, 2], s)
    w2 = scale2[0] * w[0] ** 2 + scale2[1] * w[1] ** 2 + scale2[2] * w[2] ** 2
    t = dot * _col(inv_dd_phys, s)
    np.clip(t, 0.0, 1.0, out=t)
    dist2 = 2.0 * dot
    dist2 -= t * _col(dd_phys, s)
    dist2 *= t
    np.subtract(w2, dist2, out=dist2)
    r = t * _col(dr, s)
    r += _col(ra, s)
    if radius_floor is not None:
        np.maximum(r, radius_floor, out=r)
    r *= r
    return dist2 <= r


def _inside_index_space(w, s, d, dd_index, inv_dd_index, min_radius) -> np.ndarray:
    """Minimum-radius test for a block: distance to the segment in voxel index units."""
    dot = w[0] * _col(d[:, 0], s) + w[1] * _col(d[:, 1], s) + w[2] * _col(d[:, 2], s)
    w2 = w[0] ** 2 + w[1] ** 2 + w[2] ** 2
    t = dot * _col(inv_dd_index, s)
    np.clip(t, 0.0, 1.0, out=t)
    dist2 = 2.0 * dot
    dist2 -= t * _col(dd_index, s)
    dist2 *= t
    np.subtract(w2, dist2, out=dist2)
    return dist2 <= min_radius * min_radius


def _clip_to_volume(a, d, margin, shape) -> tuple[np.ndarray, np.ndarray]:
    """Parameter range [t0, t1] of each segment inside the volume grown by its margin.

    Voxels outside this part of a segment cannot be in its tube (their closest point would be
    more than a margin outside the volume), so far-away or long out-of-volume edges cost nothing.
    Empty ranges have t0 > t1.
    """
    low = -margin - a  # bounds on t * d per axis
    high = (shape - 1) + margin - a
    with np.errstate(divide="ignore", invalid="ignore"):
        t_low = np.where(d > 0, low / d, high / d)
        t_high = np.where(d > 0, high / d, low / d)
    flat = d == 0
    inside_flat = (low <= 0) & (high >= 0)
    t_low = np.where(flat, np.where(inside_flat, -np.inf, np.inf), t_low)
    t_high = np.where(flat, np.where(inside_flat, np.inf, -np.inf), t_high)
    return np.maximum(t_low.max(axis=1), 0.0), np.minimum(t_high.min(axis=1), 1.0)


def _piece_boxes(keep, a, d, ra, dr, t0, t1, margin, scale, min_radius, shape):
    """Candidate boxes: each kept segment's [t0, t1] cut into pieces about a margin long.

    Returns the segment of each box and its inclusive (z, y, x) voxel bounds inside the volume.
    """
    length = np.linalg.norm(d[keep], axis=1) * (t1[keep] - t0[keep])
    piece = np.maximum(_PIECE_PER_MARGIN * margin[keep].mean(axis=1), 1.0)
    counts = np.maximum(np.ceil(length / piece), 1).astype(np.int64)
    seg = np.repeat(keep, counts)
    j = np.arange(len(seg)) - np.repeat(np.cumsum(counts) - counts, counts)
    n = np.repeat(counts, counts)
    span = t1[seg] - t0[seg]
    t_start = t0[seg] + span * (j / n)
    t_end = t0[seg] + span * ((j + 1) / n)
    p_start = a[seg] + t_start[:, None] * d[seg]
    p_end = a[seg] + t_end[:, None] * d[seg]
    r_max = ra[seg] + np.maximum(t_start * dr[seg], t_end * dr[seg])  # r(t) is linear
    box_margin = np.maximum(r_max[:, None] / scale, min_radius) + _BOX_SLACK
    lo = np.ceil(np.minimum(p_start, p_end) - box_margin)
    hi = np.floor(np.maximum(p_start, p_end) + box_margin)
    lo = np.clip(lo, 0, shape - 1).astype(np.int64)
    hi = np.clip(hi, -1, shape - 1).astype(np.int64)
    nonempty = np.all(hi >= lo, axis=1)
    return seg[nonempty], lo[nonempty], hi[nonempty]


def _bound_box_volume(seg, lo, hi):
    """Cut boxes bigger than a chunk into slabs along z, then rows along y."""
    for axis in (0, 1):
        dims = hi - lo + 1
        other = np.prod(np.delete(dims, axis, axis=1), axis=1)
        max_len = np.maximum(_CHUNK_VOXELS // other, 1)
        counts = -(-dims[:, axis] // max_len)
        if np.all(counts == 1):
            continue
        rep = np.repeat(np.arange(len(seg)), counts)
        j = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
        seg, lo, hi = seg[rep], lo[rep].copy(), hi[rep].copy()
        lo[:, axis] += j * max_len[rep]
        hi[:, axis] = np.minimum(lo[:, axis] + max_len[rep] - 1, hi[:, axis])
    return seg, lo, hi


def check_tree_in_stack(tree: SwcTree, shape: Sequence[int],
                        path: str | os.PathLike | None = None) -> None:
    """Raise if no node of ``tree`` lies inside a (z, y, x) stack of ``shape``.

    An SWC whose nodes all fall outside the stack is almost always the wrong file, or one in
    physical units rather than voxels; drawing it would silently give an empty mask.
    """
    if len(tree) and not len(tree.crop(shape)):
        lo, hi = tree.xyz.min(axis=0), tree.xyz.max(axis=0)
        raise InputError(
            f"lies entirely outside the stack of shape {tuple(shape)} (z, y, x): its nodes span "
            f"x {lo[0]:g}..{hi[0]:g}, y {lo[1]:g}..{hi[1]:g}, z {lo[2]:g}..{hi[2]:g}, but SWC "
            "coordinates should be voxel indices.", path)
