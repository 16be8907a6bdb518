"""Recall of a trace split by how clearly each stretch of the gold shows in the image.

A benchmark's mean recall mixes neurites anyone would trace with ones at the noise floor. Here
each gold sample point (the points :func:`~dineuro.evaluate.compare_trees` measures recall on,
with the length each stands for) gets the contrast of the image there, in noise units:

- signal: the image smoothed by a Gaussian of :data:`SMOOTH_SIGMA` voxels, at the point's voxel;
- background and noise: the median and the robust spread (1.4826 x the median absolute
  deviation) of the same smoothed image over the voxels more than :data:`FAR` voxels from every
  neurite, gold and unlabelled (drawn as :func:`~dineuro.data.render.render_mask` draws labels).

For a thin line in white noise, smoothing at 1 voxel scales the line's peak and the noise's
spread alike (by about 0.16 and 0.15), so the contrast is about the line's height over the
noise's standard deviation. Uneven background (haze) widens the spread and so lowers every
point's contrast: the measure is stack by stack, for telling dim neurites from clear ones, not
an absolute signal-to-noise ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dineuro.data.normalize import robust_level
from dineuro.data.render import render_mask
from dineuro.defaults import DEFAULT_SWC_THRESHOLD
from dineuro.evaluate.reconstruction import _check_threshold, _check_tree, _sample, _SegmentIndex
from dineuro.io.swc import SwcTree, swc_to_zyx

#: Gaussian sigma (voxels) of the smoothing before contrast is read.
SMOOTH_SIGMA = 1.0
#: Voxels farther than this from every neurite are background.
FAR = 5.0
#: Upper edges of the contrast bins (noise units); the last bin is open.
CONTRAST_EDGES = (1.0, 2.0, 3.0, 5.0, 8.0)


@dataclass(frozen=True)
class ContrastRecall:
    """Gold length and the part of it the trace recalls, per contrast bin.

    Attributes
    ----------
    edges : tuple of float
        Upper edges of the bins; bin k holds contrast in [edges[k-1], edges[k]), the first from
        minus infinity, the last (``len(edges)``) to infinity.
    length : ndarray
        Gold length per bin (SWC units).
    recalled : ndarray
        Of it, the length within the threshold of the trace.
    """

    edges: tuple[float, ...]
    length: np.ndarray
    recalled: np.ndarray

    def labels(self) -> list[str]:
        """Each bin as text: "< 1", "1-2", ..., ">= 8"."""
        edges = [f"{e:g}" for e in self.edges]
        return [f"< {edges[0]}", *(f"{a}-{b}" for a, b in zip(edges, edges[1:], strict=False)),
                f">= {edges[-1]}"]

    def __add__(self, other: ContrastRecall) -> ContrastRecall:
        """Pooled over two stacks (same bins)."""
        if self.edges != other.edges:
            raise ValueError("cannot pool contrast bins with different edges.")
        return ContrastRecall(self.edges, self.length + other.length,
                              self.recalled + other.recalled)


def _contrast(image: np.ndarray, points: np.ndarray, gold: SwcTree, spacing: Sequence[float],
              unlabelled: SwcTree | None) -> np.ndarray:
    """Contrast (noise units) at each (x, y, z) point; see the module docstring."""
    image = np.asarray(image, dtype=np.float32)
    neurites = render_mask(gold, image.shape, spacing)
    if unlabelled is not None and len(unlabelled):
        neurites |= render_mask(unlabelled, image.shape, spacing)
    background = ndimage.distance_transform_edt(~neurites) > FAR
    if not background.any():
        raise ValueError(f"no voxel of the stack is more than {FAR:g} voxels from a neurite.")
    smooth = ndimage.gaussian_filter(image, SMOOTH_SIGMA)
    level, spread = robust_level(smooth[background])
    voxel = np.clip(np.rint(swc_to_zyx(points)).astype(np.int64), 0, np.array(image.shape) - 1)
    return (smooth[tuple(voxel.T)] - level) / max(spread, float(np.finfo(np.float32).tiny))


def recall_by_contrast(test: SwcTree, gold: SwcTree, image: np.ndarray,
                       spacing: Sequence[float] = (1.0, 1.0, 1.0),
                       unlabelled: SwcTree | None = None,
                       threshold: float = DEFAULT_SWC_THRESHOLD,
                       edges: Sequence[float] = CONTRAST_EDGES) -> ContrastRecall:
    """The gold's length per contrast bin and how much of it ``test`` recalls.

    Parameters
    ----------
    test, gold : SwcTree
        The trace (may be empty) and the gold, in the image's voxels (x, y, z).
    image : ndarray
        The raw (z, y, x) stack the trace was made from.
    spacing : sequence of float, optional
        (z, y, x) voxel size, for drawing the neurites.
    unlabelled : SwcTree, optional
        Neurites in the image the gold leaves out: kept out of the background.
    threshold : float, optional
        Distance (SWC units) within which a gold point counts as recalled, as in
        :func:`compare_trees`.
    edges : sequence of float, optional
        Increasing upper edges of the bins.
    """
    threshold = _check_threshold(threshold)
    _check_tree(gold, "gold")
    _check_tree(test, "test", allow_empty=True)
    edges = tuple(float(e) for e in edges)
    if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"edges should increase, got {edges}.")
    points = _sample(gold)
    contrast = _contrast(image, points.points, gold, spacing, unlabelled)
    near = np.zeros(len(contrast), dtype=bool)
    if len(test):
        trace = _sample(test)
        near = _SegmentIndex(trace.start, trace.end).distances(points.points) < threshold
    which = np.searchsorted(edges, contrast, side="right")
    bins = len(edges) + 1
    return ContrastRecall(edges, np.bincount(which, weights=points.weight, minlength=bins),
                          np.bincount(which, weights=points.weight * near, minlength=bins))
