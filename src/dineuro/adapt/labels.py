"""Pseudo-labels: what the current model and the tracer are sure of in an unlabelled stack.

A pseudo-label is a uint8 volume with three values:

- :data:`FOREGROUND` (1): the core of a traced tree (:func:`dineuro.data.render.render_mask`
  of the SWC the tracer made from the model's map, radii scaled by ``core``, at least the
  one-voxel line) where the map is also at least ``fg_prob``. Both must agree: the tube alone
  would label the blur around a thin fibre, the map alone the isolated noise voxels that the
  tracer dropped as debris. Only the core, because on a new microscope the map's (and so the
  trace's) radius is the least certain thing about a neurite; the rest of the tube is ignored.
- :data:`BACKGROUND` (0): map below ``bg_prob``, farther than ``margin`` voxels (in x voxels,
  physical) from every traced tube, and, when the image is given, no brighter there than its
  surroundings (:func:`not_brighter`: the 3x3x3 running mean at most ``LOCAL_CONTRAST`` noise
  units above the local background). The margin keeps the dim edges of traced neurites out of
  the background; the image test keeps out the neurites the model missed, which a low map alone
  would teach it to go on missing. The test is local, not the stack-wide signal level that
  prediction skips windows by: a dim fibre is darker than a bright, uneven background
  elsewhere. With that level, 8 %, 32 % and 22 % of the gold neurite voxels of the shift
  benchmark's widefield, haze and beads train stacks were labelled background (the first 4 of
  each); with the local test 2.5 %, 1.5 % and 4.7 % (all 12; ``benchmarks/adapt_shift.py``),
  with 80-82 % of the rest still background, and adapt closed 0.79, 0.49 and 0.41 of the gap
  to the gold-label ceiling instead of 0.62, 0.16 and 0.09.
- :data:`IGNORE` (2): everything else; it contributes no loss (:mod:`dineuro.adapt.loss`).

Only what the tracer keeps counts as foreground, so the labels inherit its judgement of what a
neurite is (pruned spurs, no debris trees), and the network is taught its own confident,
traced output, not its raw map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from dineuro.data.normalize import robust_level
from dineuro.data.render import render_mask, spacing_in_x_voxels
from dineuro.errors import InputError
from dineuro.io.swc import SwcTree

BACKGROUND, FOREGROUND, IGNORE = 0, 1, 2
#: Least map value of a foreground voxel (the mask threshold of predict).
FG_PROB = 0.5
#: Largest map value of a background voxel.
BG_PROB = 0.1
#: Background keeps this far (x voxels, physical) from every traced tube.
MARGIN = 3.0
#: Foreground is the traced tube with its radii scaled by this.
CORE = 0.5
#: Background is no brighter than the local background plus this many noise units (of the
#: running mean's deviation from it): 1 keeps 80-83 % of the non-neurite voxels as background
#: on the shift benchmark's stacks and the noisy set (first 4 train stacks each); 2 keeps
#: 90-97 % but lets 3-16 % of the neurite in.
LOCAL_CONTRAST = 1.0
#: The local background is the median of blocks of this many (z, y, x) voxels, wider than a
#: neurite, narrower than the unevenness of an autofluorescent background; linear in between.
BACKGROUND_BLOCK = (4, 8, 8)


@dataclass(frozen=True)
class LabelStats:
    """How much of a stack a pseudo-label decides.

    Attributes
    ----------
    voxels : int
        Voxels of the stack.
    foreground : int
        Voxels labelled foreground.
    background : int
        Voxels labelled background.
    ignored : int
        Voxels left out of the loss.
    trees : int
        Traced trees behind the foreground.
    nodes : int
        Their SWC nodes.
    map_foreground : int
        Voxels of the map above ``fg_prob`` (on a tree or not), for comparison.
    """

    voxels: int
    foreground: int
    background: int
    ignored: int
    trees: int
    nodes: int
    map_foreground: int

    def to_dict(self) -> dict[str, float]:
        out = dict(vars(self))
        out["foreground_share"] = self.foreground / self.voxels
        out["ignored_share"] = self.ignored / self.voxels
        return out


def pseudo_label(prob: np.ndarray, tree: SwcTree, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                 fg_prob: float = FG_PROB, bg_prob: float = BG_PROB, margin: float = MARGIN,
                 core: float = CORE, image: np.ndarray | None = None) -> np.ndarray:
    """The pseudo-label (uint8: :data:`BACKGROUND`, :data:`FOREGROUND`, :data:`IGNORE`) of a
    stack from the model's map ``prob`` and the tracer's ``tree`` of it.

    Parameters
    ----------
    prob : ndarray
        (z, y, x) probability map in [0, 1].
    tree : SwcTree
        The traced trees, in the map's voxel coordinates (empty: no foreground).
    spacing : sequence of float, optional
        (z, y, x) voxel size; the tube and the margin are physical.
    fg_prob : float, optional
        Least map value of a foreground voxel (inside the core).
    core : float, optional
        Foreground is the tube with its radii times this, in [0, 1].
    bg_prob : float, optional
        Background needs a map value below this ...
    margin : float, optional
        ... a distance of more than this from every tube, in x voxels ...
    image : ndarray, optional
        ... and, when given, no local signal in this normalised (z, y, x) image there
        (:func:`not_brighter`).

    Returns
    -------
    ndarray of uint8
        The (z, y, x) pseudo-label.

    Raises
    ------
    InputError
        Thresholds not in order in [0, 1], a negative ``margin`` or a ``core`` outside [0, 1].

    Examples
    --------
    >>> from dineuro.io.swc import SwcTree
    >>> prob = np.zeros((5, 5, 20), np.float32)
    >>> prob[2, 2, 3:17] = 0.9
    >>> line = SwcTree(ids=[1, 2], types=[3, 3], xyz=[[3, 2, 2], [16, 2, 2]],
    ...                radius=[1, 1], parents=[-1, 1])
    >>> label = pseudo_label(prob, line, margin=1)
    >>> int((label == FOREGROUND).sum()), int(label[2, 2, 1]), int(label[2, 2, 0])
    (14, 2, 0)
    """
    prob = np.asarray(prob)
    if not 0.0 <= bg_prob <= fg_prob <= 1.0:
        raise InputError(f"need 0 <= bg_prob <= fg_prob <= 1, got {bg_prob} and {fg_prob}.")
    if margin < 0 or not 0.0 <= core <= 1.0:
        raise InputError(f"need margin >= 0 and core in [0, 1], got {margin} and {core}.")
    label = np.full(prob.shape, IGNORE, np.uint8)
    if len(tree):
        near = distance_to(render_mask(tree, prob.shape, spacing), spacing) <= margin
        inner = render_mask(replace(tree, radius=tree.radius * core), prob.shape, spacing)
    else:
        near = inner = np.zeros(prob.shape, bool)
    background = (prob < bg_prob) & ~near
    if image is not None:
        background &= not_brighter(image)
    label[background] = BACKGROUND
    label[inner & (prob >= fg_prob)] = FOREGROUND
    return label


def not_brighter(image: np.ndarray, contrast: float = LOCAL_CONTRAST) -> np.ndarray:
    """Voxels whose 3x3x3 running mean (over the part of the neighbourhood inside the stack) is
    at most ``contrast`` noise units above the local background (:func:`local_background`);
    the noise is the scaled median absolute deviation of the running mean from that background
    over the stack."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    kernel = tuple(3 if n >= 3 else 1 for n in image.shape)  # a thin stack: no mean across it
    mean = F.avg_pool3d(torch.from_numpy(image)[None, None], kernel, stride=1,
                        padding=tuple(k // 2 for k in kernel),
                        count_include_pad=False)[0, 0].numpy()
    excess = mean - local_background(image)
    centre, noise = robust_level(excess)
    return excess <= centre + contrast * noise


def local_background(image: np.ndarray, block: Sequence[int] = BACKGROUND_BLOCK) -> np.ndarray:
    """The median of each ``block`` of ``image`` (edge blocks padded by reflection), linearly
    interpolated between block centres to every voxel. A neurite fills a small part of a block,
    so the median is the background around it; an even ramp is reproduced exactly inside."""
    shape = image.shape
    pad = [(0, -n % b) for n, b in zip(shape, block, strict=True)]
    padded = np.pad(image, pad, mode="reflect" if min(shape) > 1 else "edge")
    grid = [n // b for n, b in zip(padded.shape, block, strict=True)]
    blocks = padded.reshape(grid[0], block[0], grid[1], block[1], grid[2], block[2])
    coarse = np.median(blocks.transpose(0, 2, 4, 1, 3, 5).reshape(*grid, -1), axis=-1)
    full = ndimage.zoom(coarse, block, order=1, mode="nearest", grid_mode=True)
    return full[: shape[0], : shape[1], : shape[2]]


def distance_to(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Physical distance (x voxels) of every voxel to the nearest voxel of ``mask`` (0 on it;
    inf everywhere when the mask is empty)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return ndimage.distance_transform_edt(~mask, sampling=spacing_in_x_voxels(spacing))


def label_stats(label: np.ndarray, prob: np.ndarray, tree: SwcTree,
                fg_prob: float = FG_PROB) -> LabelStats:
    """What ``label`` decides, with the tree and map it came from."""
    counts = np.bincount(label.ravel(), minlength=IGNORE + 1)
    roots = len(tree.roots)
    return LabelStats(voxels=int(label.size), foreground=int(counts[FOREGROUND]),
                      background=int(counts[BACKGROUND]), ignored=int(counts[IGNORE]),
                      trees=roots, nodes=len(tree),
                      map_foreground=int(np.count_nonzero(prob >= fg_prob)))
