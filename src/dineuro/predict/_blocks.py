"""Prediction of a stack larger than memory: zarr to zarr, block by block."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dineuro.data.normalize import NonFiniteError, NormalizationConfig
from dineuro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLOCK,
    DEFAULT_OVERLAP,
    DEFAULT_PROB_DTYPE,
    PROB_DTYPES,
)
from dineuro.errors import InputError
from dineuro.io._omezarr import LEVEL_0, ome_metadata, open_image, open_stack
from dineuro.io.atomic import atomic_dir, refuse_existing
from dineuro.models.vit3d import Triple, as_triple
from dineuro.predict._grid import WindowGrid
from dineuro.predict._precision import resolve_precision
from dineuro.predict._signal import SignalLevel, signal_level
from dineuro.predict._storage import (
    check_choice,
    encode_probability,
    encoding_note,
)
from dineuro.predict._views import strongest, views_of
from dineuro.predict._windows import (
    Progress,
    WindowPredictor,
    WindowStats,
    blend,
    inference,
    resolve_batch_size,
)


def predict_blocks(model: nn.Module, src, dst, crop: int | Sequence[int],
                   norm: NormalizationConfig, *, block: int | Sequence[int] = DEFAULT_BLOCK,
                   overlap: float = DEFAULT_OVERLAP, batch_size: int | None = DEFAULT_BATCH_SIZE,
                   flips: bool = False, device: str | torch.device = "cpu", precision: str = "auto",
                   skip_empty: bool = True, background_view: float = 0.0,
                   prob_dtype: str = DEFAULT_PROB_DTYPE, progress: Progress | None = None,
                   stats: WindowStats | None = None):
    """Predict a raw stack that does not fit in memory, block by block, from zarr to zarr.

    The output equals :func:`sliding_window_predict` on the whole normalised stack (with a
    background view, :func:`~dineuro.predict.predict_raw`; up to float rounding of the model
    on different batches): intensity limits come from the whole stack
    (:meth:`NormalizationConfig.limits`, a strided subsample read slab by slab), and each block
    is predicted from the region of exactly the :class:`WindowGrid` windows that touch it. That
    region is the halo: it reaches up to ``crop - 1`` voxels beyond the block on each side, set
    by the grid rather than chosen. Memory is bounded by that region (a few float32 copies of
    ``block + 2 * crop`` voxels) whatever the stack size. Windows that touch two blocks are
    computed for each, so the extra compute is about ``(block + crop - step) / block`` per axis:
    larger blocks waste less.

    Parameters
    ----------
    model : torch.nn.Module
        As for :func:`sliding_window_predict`.
    src : zarr.Array or str or os.PathLike or array_like
        The raw (z, y, x) stack: a zarr array, a path to one or to an OME-Zarr image (its
        full-resolution level), or any array with numpy slicing.
    dst : str or os.PathLike or zarr.Array
        A path where a new OME-Zarr image is written (NGFF 0.5, its array "0" with the source's
        spacing, so viewers and :func:`~dineuro.io.read_volume` place it over the stack; it
        must not exist; written to a temporary folder and renamed when complete), or an
        existing zarr array of the stack's shape to fill.
    crop : int or sequence of int
        Window (z, y, x) of the model.
    norm : NormalizationConfig
        The normalisation the model was trained with.
    block : int or sequence of int, optional
        Output block (z, y, x) computed at a time; also the chunk shape of a new array.
    overlap, batch_size, flips, device, precision, skip_empty
        As for :func:`sliding_window_predict`; whether a window holds signal depends on its
        voxels and on the whole stack's background level, measured in the same tiles as in
        memory (a pass over the stack before the first block), so the same windows are
        skipped.
    background_view : float, optional
        Also predict the stack less its background of this sigma (voxels) and keep the larger
        probability (:func:`~dineuro.predict.predict_raw`); 0: off. Each view has its own
        signal level, as in memory.
    prob_dtype : str, optional
        "float32", "float16" or "uint8" (round(p * 255)) for a new array.
    progress : callable, optional
        ``progress(done, total)`` in windows, over all blocks.
    stats : WindowStats, optional
        A :class:`WindowStats` to fill in, over all blocks.

    Returns
    -------
    zarr.Array
        The probability array; for a path, its level 0 reopened read-only.

    Raises
    ------
    InputError
        ``src`` cannot be opened as a 3D array or holds NaN or infinite voxels, ``dst`` exists
        or does not fit, or bad options (see :func:`sliding_window_predict`).
    """
    import zarr

    check_choice(prob_dtype, PROB_DTYPES, "prob_dtype")
    if not isinstance(dst, zarr.Array):
        refuse_existing(dst)  # before the whole-stack percentiles, which take a while
    source, spacing = _open_source(src)
    grid = WindowGrid.of(source.shape, crop, overlap)
    block = as_triple(block, "block")
    with _naming(src):  # NaN or inf found by the limits, the signal pass or a block
        views = views_of(norm, background_view)
        limits = norm.limits(source)  # the raw stack's, whatever the view
        blocks = list(itertools.product(*(range(0, n, b)
                                          for n, b in zip(grid.shape, block, strict=True))))
        ends = [tuple(min(c + b, n) for c, b, n in zip(corner, block, grid.shape, strict=True))
                for corner in blocks]
        batch_size = resolve_batch_size(batch_size, grid.crop)
        total = len(views) * sum(box_windows(grid, corner, end)
                                 for corner, end in zip(blocks, ends, strict=True))
        predictor = WindowPredictor(model, grid.crop, flips, device,
                                    resolve_precision(precision, device), total, progress, stats)
        levels = [signal_level(lambda region, view=view: view.normalize_region(source, region,
                                                                              limits),
                               source.shape) if skip_empty else None for view in views]
        attrs = {"dineuro": {"content": "probability of neurite (class 1)",
                             "encoding": encoding_note(prob_dtype), "normalization": norm.to_dict(),
                             "background_view": float(background_view),
                             "limits": list(limits), "crop": list(grid.crop), "overlap": overlap,
                             "flips": flips, "precision": predictor.stats.precision,
                             "skip_empty": skip_empty}}
        with _destination(dst, grid.shape, block, prob_dtype, attrs, spacing) as out, \
                inference(model, predictor.device):
            for corner, end in zip(blocks, ends, strict=True):
                prob = strongest([predict_box(source, grid, corner, end, view, limits,
                                              batch_size, predictor, level)
                                  for view, level in zip(views, levels, strict=True)])
                out[tuple(slice(c, e) for c, e in zip(corner, end, strict=True))] = \
                    encode_probability(prob, np.dtype(out.dtype).name)
    return dst if isinstance(dst, zarr.Array) else open_image(Path(dst))[0]


def box_windows(grid: WindowGrid, begin: Sequence[int], end: Sequence[int]) -> int:
    """How many windows of ``grid`` touch the box ``[begin, end)``: what predicting it costs."""
    return math.prod(last - first + 1 for first, last in
                     (grid.touching(axis, b, e) for axis, (b, e) in enumerate(zip(begin, end,
                                                                                 strict=True))))


def predict_box(source, grid: WindowGrid, begin: Sequence[int], end: Sequence[int],
                norm: NormalizationConfig, limits: tuple[float, float], batch_size: int,
                predictor: WindowPredictor, level: SignalLevel | None) -> np.ndarray:
    """The float32 probability over the box ``[begin, end)`` of a stack on disk.

    Blended from exactly the windows of ``grid`` that touch the box, read with their context
    from ``source`` (normalised with the whole stack's ``limits``): every voxel of the box gets
    the same windows, so the same value, as when the whole stack is predicted at once. The
    caller holds :func:`inference` and gives the stack's signal ``level`` (None: every window).
    """
    region = [grid.touching(axis, b, e) for axis, (b, e) in enumerate(zip(begin, end,
                                                                          strict=True))]
    first = tuple(grid.start(axis, k) for axis, (k, _) in enumerate(region))
    stop = tuple(grid.start(axis, k) + grid.crop[axis] for axis, (_, k) in enumerate(region))
    starts = tuple(tuple(grid.start(axis, k) - first[axis] for k in range(lo, hi + 1))
                   for axis, (lo, hi) in enumerate(region))
    data = _read_padded(source, first, stop, norm, limits)
    prob = blend(torch.from_numpy(data), starts, grid.crop, batch_size, predictor, level)
    keep = tuple(slice(b - f, e - f) for b, e, f in zip(begin, end, first, strict=True))
    return prob[keep].numpy()


@contextlib.contextmanager
def _naming(src):
    """A stack with NaN or infinite voxels as bad input, naming ``src`` when it is a path."""
    try:
        yield
    except NonFiniteError as exc:
        raise InputError(str(exc), src if isinstance(src, (str, os.PathLike)) else None) from exc


def _open_source(src) -> tuple:
    """``src`` as a 3D array with numpy slicing, and its (z, y, x) spacing: a zarr array, or an
    OME-Zarr image (level 0, as its multiscales metadata names it), opened read-only."""
    spacing = (1.0, 1.0, 1.0)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise InputError("does not exist.", path)
        src, spacing = open_stack(path)
    if len(getattr(src, "shape", ())) != 3 or min(src.shape) < 1:
        raise InputError(f"the stack should be a non-empty 3D (z, y, x) array, got shape "
                         f"{getattr(src, 'shape', None)}.")
    return src, spacing


@contextlib.contextmanager
def _destination(dst, shape: Triple, block: Triple, prob_dtype: str, attrs: dict,
                 spacing: tuple[float, float, float]):
    """The output array: an existing zarr array to fill, or a new OME-Zarr image (NGFF 0.5,
    one level, the stack's spacing) written atomically."""
    import zarr

    if isinstance(dst, zarr.Array):
        if tuple(dst.shape) != shape:
            raise InputError(f"the output array has shape {tuple(dst.shape)}, the stack "
                             f"{shape}.")
        if dst.dtype.name not in PROB_DTYPES:
            raise InputError(f"the output array has dtype {dst.dtype}; probabilities are "
                             f"stored as {', '.join(PROB_DTYPES)}.")
        yield dst
        return
    with atomic_dir(dst) as tmp:
        image = zarr.open_group(str(tmp), mode="w")
        image.attrs.update({**attrs, **ome_metadata(spacing, Path(dst).name)})
        yield image.create_array(LEVEL_0, shape=shape, dtype=prob_dtype, fill_value=0,
                                 chunks=tuple(min(b, n) for b, n in zip(block, shape,
                                                                        strict=True)))


def _read_padded(source, first: Triple, stop: Triple, norm: NormalizationConfig,
                 limits: tuple[float, float]) -> np.ndarray:
    """``source[first:stop]`` normalised, with zeros where the range leaves the stack."""
    region = np.zeros(tuple(b - a for a, b in zip(first, stop, strict=True)), np.float32)
    inside = tuple(slice(max(a, 0), min(b, n))
                   for a, b, n in zip(first, stop, source.shape, strict=True))
    local = tuple(slice(s.start - a, s.stop - a) for s, a in zip(inside, first, strict=True))
    region[local] = norm.normalize_region(source, inside, limits)
    return region

