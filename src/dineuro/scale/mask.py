"""A whole volume's mask, block by block, once its neurons are traced.

``dineuro run`` writes beside each SWC the mask of the pieces of the map that the trace runs
through (:func:`dineuro.trace.traced_mask`); a whole volume gets the same, as one more pass over
the blocks after the stitch, since only then is the trace known. Each block reads its region of
the stored map (its box and the run's halo), thresholds it, keeps the 26-connected pieces that
the cable passing through the region touches, and writes only its own box. A piece is judged
within one region, so a block leaves out a piece that the trace reaches only farther than the
halo away: a piece longer than the halo (the tracer's longest bridge plus a margin) whose part
near the block the tracer pruned or removed as speckle. ``mask="threshold"`` writes every voxel
above the threshold instead, as ``predict`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dineuro.scale.plan import Block, BlockPlan
from dineuro.trace._mask import pieces_on_segments
from dineuro.trace._probability import as_probability


def segments_in(segments: np.ndarray, begin: Sequence[int], end: Sequence[int]) -> np.ndarray:
    """The segments (E, 2, 3), voxel (z, y, x), that come within a voxel of the region
    ``[begin, end)`` (by their bounding boxes), shifted into the region's frame."""
    low = segments.min(axis=1)
    high = segments.max(axis=1)
    near = np.all((high >= np.asarray(begin) - 1.5) & (low <= np.asarray(end) + 0.5), axis=1)
    return segments[near] - np.asarray(begin, dtype=np.float64)


def mask_block(prob: str, mask: str, block: Block, threshold: float,
               segments: np.ndarray | None) -> int:
    """Write ``block``'s box of the mask array ``mask`` (zarr path) from its region of the map
    ``prob``: the map above ``threshold``, only its pieces near ``segments`` (already in the
    region's frame; None keeps every voxel above it). Returns the box's mask voxels."""
    import zarr

    above = as_probability(zarr.open_array(prob, mode="r")[block.region],
                           "probability") > threshold
    if segments is not None:
        above = pieces_on_segments(above, segments)
    owned = above[block.owned]
    zarr.open_array(mask, mode="r+")[block.box] = owned.astype(np.uint8)
    return int(owned.sum())


def segments_per_block(plan: BlockPlan, segments: np.ndarray) -> list[np.ndarray]:
    """:func:`segments_in` of every block of ``plan`` (in ``plan.blocks()`` order).

    Each segment is binned into the few blocks whose regions its bounding box can reach (the
    lattice range it spans, grown by the halo and the voxel of slack ``segments_in`` allows),
    and only those candidates are tested: a whole brain has 10^4 blocks and 10^6 segments,
    too many to test every pair.
    """
    count = np.asarray(plan.counts)
    block = np.asarray(plan.block, dtype=np.float64)
    halo = np.asarray(plan.halo, dtype=np.float64)
    low = segments.min(axis=1)
    high = segments.max(axis=1)
    first = np.clip(np.ceil((low - halo - 0.5) / block - 1), 0, count - 1).astype(np.int64)
    last = np.clip(np.floor((high + halo + 1.5) / block), 0, count - 1).astype(np.int64)
    span = (last - first).max(axis=0, initial=0) + 1
    pairs_block, pairs_segment = [], []
    for offset in np.ndindex(*span):
        index = first + np.asarray(offset)
        reach = np.all(index <= last, axis=1)
        pairs_block.append(np.ravel_multi_index(tuple(index[reach].T), tuple(count)))
        pairs_segment.append(np.flatnonzero(reach))
    by_block = np.concatenate(pairs_block)
    segment_ids = np.concatenate(pairs_segment)
    order = np.lexsort((segment_ids, by_block))  # by block, then in the segments' order
    bounds = np.searchsorted(by_block[order], np.arange(len(plan) + 1))
    return [segments_in(segments[segment_ids[order[a:b]]], blk.region_begin, blk.region_end)
            for blk, a, b in zip(plan.blocks(), bounds[:-1], bounds[1:], strict=True)]


def write_mask(client, prob: str, mask: str, plan: BlockPlan, threshold: float,
               segments: np.ndarray | None) -> int:
    """:func:`mask_block` for every block of ``plan`` on the dask ``client``, each handed only
    the segments near its region (:func:`segments_per_block`); returns the mask's voxels."""
    blocks = list(plan.blocks())
    near = ([None] * len(blocks) if segments is None
            else segments_per_block(plan, segments))
    futures = client.map(mask_block, [prob] * len(blocks), [mask] * len(blocks), blocks,
                         [threshold] * len(blocks), near, pure=False)
    return int(sum(client.gather(futures)))
