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

from dineuro.scale.plan import Block
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


def write_mask(client, prob: str, mask: str, blocks: Sequence[Block], threshold: float,
               segments: np.ndarray | None) -> int:
    """:func:`mask_block` for every block on the dask ``client``, each handed only the
    segments near its region; returns the mask's voxels."""
    futures = client.map(mask_block, [prob] * len(blocks), [mask] * len(blocks), blocks,
                         [threshold] * len(blocks),
                         [None if segments is None
                          else segments_in(segments, b.region_begin, b.region_end)
                          for b in blocks], pure=False)
    return int(sum(client.gather(futures)))
