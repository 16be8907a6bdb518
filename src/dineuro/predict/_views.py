"""A second view of the stack: the network also sees it less its smooth background.

Haze, the glow of out-of-focus structures and an unevenly lit field raise the background under
a dim fibre until a network that learnt on darker backgrounds no longer tells the fibre from
it. With a background view of sigma ``s`` (voxels), the network is applied twice: to the stack
normalised as in training, and to the same less its Gaussian blur of ``s`` voxels
(:func:`~dineuro.data.normalize.subtract_background`, with the same whole-stack limits, so a
block read with its halo gets exactly the whole stack's voxels). The map is the larger of the
two probabilities at each voxel: the subtraction hollows somas and thick trunks, and the
maximum keeps everything the first view finds. It costs a second pass of the network.

Measured with the default model (README, "A second view of the stack"): on the haze and
widefield microscopes of ``benchmarks/adapt_shift.py``, which it never saw, traced recall rose
by 0.16 and 0.09 of the gold's length; on the presets it was trained for, by 0.006-0.017, with
F1 from -0.007 to +0.007. Hence an option, not the default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from torch import nn

from dineuro.data.normalize import NormalizationConfig
from dineuro.errors import InputError
from dineuro.predict._stack import sliding_window_predict
from dineuro.predict._windows import Progress, WindowStats


def views_of(norm: NormalizationConfig, background_view: float) -> tuple[NormalizationConfig, ...]:
    """The normalisations the network sees a stack through: the checkpoint's ``norm`` and,
    for ``background_view`` > 0, the same less a background of that sigma (voxels).

    Raises
    ------
    InputError
        A sigma that is negative or not a number, or a network trained on stacks less their
        background already (its checkpoint's ``norm`` has one), for which the view adds nothing.

    Examples
    --------
    >>> [view.background for view in views_of(NormalizationConfig(), 4)]
    [0.0, 4.0]
    """
    try:
        sigma = float(background_view)
    except (TypeError, ValueError):
        sigma = math.nan
    if not (math.isfinite(sigma) and sigma >= 0):
        raise InputError(f"background_view should be a sigma >= 0 in voxels (0: off), got "
                         f"{background_view!r}.")
    if not sigma:
        return (norm,)
    if norm.background:
        raise InputError(f"the network already sees each stack less its background (sigma "
                         f"{norm.background:g} voxels), so a background view adds nothing; "
                         "leave it at 0.")
    return norm, dataclasses.replace(norm, background=sigma)


def view_progress(progress: Progress | None, view: int, views: int) -> Progress | None:
    """``progress`` for the ``view``-th of ``views`` passes over the same windows, so that the
    bar runs once from 0 to all passes' windows."""
    if progress is None or views == 1:
        return progress
    return lambda done, total: progress(view * total + done, views * total)


def strongest(maps: Sequence[np.ndarray]) -> np.ndarray:
    """The larger probability of the views' maps at each voxel, in place in the first (no
    stacked copy of them all)."""
    out = maps[0]
    for other in maps[1:]:
        np.maximum(out, other, out=out)
    return out


def predict_raw(model: nn.Module, raw: np.ndarray, crop: int | Sequence[int],
                norm: NormalizationConfig, *, background_view: float = 0.0,
                progress: Progress | None = None, stats: WindowStats | None = None,
                **window_options) -> np.ndarray:
    """The probability map of a raw (z, y, x) stack held in memory: normalised with ``norm``
    (and, with a ``background_view``, also less its background), then
    :func:`sliding_window_predict` (``**window_options``) on each view.

    ``stats`` counts the windows of every view; ``progress`` runs over all of them.
    """
    views = views_of(norm, background_view)
    maps, passes = [], []
    for k, view in enumerate(views):
        passes.append(WindowStats())
        maps.append(sliding_window_predict(model, view.normalize(raw), crop,
                                           progress=view_progress(progress, k, len(views)),
                                           stats=passes[-1], **window_options))
    if stats is not None:
        stats.windows = sum(p.windows for p in passes)
        stats.computed = sum(p.computed for p in passes)
        stats.precision = passes[0].precision
    return strongest(maps)
