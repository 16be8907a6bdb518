"""Prediction of a normalised stack held in memory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dineuro.defaults import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP
from dineuro.errors import InputError
from dineuro.predict._grid import WindowGrid
from dineuro.predict._precision import resolve_precision
from dineuro.predict._signal import Starts, signal_level
from dineuro.predict._windows import (
    Progress,
    WindowPredictor,
    WindowStats,
    blend,
    inference,
    resolve_batch_size,
)


def sliding_window_predict(model: nn.Module, volume: np.ndarray, crop: int | Sequence[int],
                           overlap: float = DEFAULT_OVERLAP,
                           batch_size: int | None = DEFAULT_BATCH_SIZE, flips: bool = False,
                           device: str | torch.device = "cpu",
                           progress: Progress | None = None, precision: str = "auto",
                           skip_empty: bool = True, stats: WindowStats | None = None
                           ) -> np.ndarray:
    """Probability of neurite for every voxel of a normalised stack held in memory.

    Windows lie on the stack's :class:`WindowGrid` (as MONAI places them) and are blended
    with MONAI's Gaussian weights; any stack size works, the output has the input's shape
    exactly.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (B, 1, *crop) float32 to (B, 2, *crop) logits (background, neurite). It is moved
        to ``device`` (in place, as ``Module.to`` does) and run in eval mode under
        ``torch.inference_mode``; its train/eval mode is restored afterwards.
    volume : numpy.ndarray
        Normalised (z, y, x) float stack (see :mod:`dineuro.data.normalize`).
    crop : int or sequence of int
        Window (z, y, x) the model takes, or one int for a cube.
    overlap : float, optional
        Fraction of a window shared with its neighbour along each axis, in [0, 1).
    batch_size : int or None, optional
        Windows per forward pass; None (the default) picks it from the crop
        (:func:`resolve_batch_size`).
    flips : bool, optional
        Average over all 8 axis-flip combinations (8x the compute).
    device : str or torch.device, optional
        Where the model runs; the stack and the blended output stay in CPU memory.
    progress : callable, optional
        Called as ``progress(done, total)`` in windows, after every batch.
    precision : str, optional
        "auto" (bf16 where ``device`` has native bf16, else fp32), "bf16" (autocast) or
        "fp32"; see :func:`resolve_precision`. Blending is float32 either way.
    skip_empty : bool, optional
        Compute only the windows with signal (:func:`signal_windows`); the others get
        probability 0. False computes every window.
    stats : WindowStats, optional
        A :class:`WindowStats` to fill in (windows computed, precision used).

    Returns
    -------
    numpy.ndarray
        float32 array of ``volume``'s shape, values in [0, 1].

    Raises
    ------
    InputError
        A volume that is not a non-empty 3D float array, or bad options.
    ValueError
        A model whose output is not (B, 2, *crop).

    Examples
    --------
    >>> conv = nn.Conv3d(1, 2, 1)
    >>> prob = sliding_window_predict(conv, np.zeros((5, 40, 9), np.float32), crop=16)
    >>> prob.shape, prob.dtype
    ((5, 40, 9), dtype('float32'))
    """
    volume = checked_volume(volume)
    grid = WindowGrid.of(volume.shape, crop, overlap)
    batch_size = resolve_batch_size(batch_size, grid.crop)
    predictor = WindowPredictor(model, grid.crop, flips, device,
                                resolve_precision(precision, device), grid.n_windows, progress,
                                stats)
    level = signal_level(volume.__getitem__, volume.shape) if skip_empty else None
    region, starts = grid_region(volume, grid)
    with inference(model, predictor.device):
        prob = blend(region, starts, grid.crop, batch_size, predictor, level)
    return np.ascontiguousarray(prob[inner(grid)].numpy())


def grid_region(volume: np.ndarray, grid: WindowGrid) -> tuple[torch.Tensor, Starts]:
    """The stack as the region its windows cover (zeros around it only along an axis shorter
    than the crop; no copy otherwise) and where the windows start in it."""
    extent = grid.extent
    if all(first == 0 for first, _ in extent):
        region = torch.from_numpy(volume)
    else:
        region = torch.zeros(tuple(end - first for first, end in extent))
        region[inner(grid)] = torch.from_numpy(volume)
    starts = tuple(tuple(s - first for s in grid.starts(axis))
                   for axis, (first, _) in enumerate(extent))
    return region, starts


def inner(grid: WindowGrid) -> tuple[slice, ...]:
    """Where the stack lies in the region its windows cover."""
    return tuple(slice(-first, -first + n)
                 for (first, _), n in zip(grid.extent, grid.shape, strict=True))


def checked_volume(volume) -> np.ndarray:
    """A normalised stack as a contiguous float32 (z, y, x) array.

    Raises
    ------
    InputError
        Not floating point (a raw stack), not 3D, or empty.
    """
    volume = np.asarray(volume)
    if not np.issubdtype(volume.dtype, np.floating):
        raise InputError(f"volume should be a normalised float stack, got {volume.dtype}; "
                         "normalise raw stacks first (NormalizationConfig.normalize).")
    if volume.ndim != 3 or volume.size == 0:
        raise InputError(f"volume should be a non-empty 3D (z, y, x) stack, got shape "
                         f"{volume.shape}.")
    return np.ascontiguousarray(volume, dtype=np.float32)
