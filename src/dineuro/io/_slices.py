"""A folder of 2D TIFF slices, one file per z plane, as many microscopes and Fiji export them.

Slices are ordered by natural sort of their names, so ``2.tif`` comes before ``10.tif`` whether or
not the numbers are zero-padded. Hidden files and files that are not ``.tif``/``.tiff`` are
ignored (thumbnails, ``.DS_Store``, notes). The voxel spacing is the first slice's (see
:mod:`dineuro.io._tiff`); a single slice rarely records its z step, which then reads as 1.0.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dineuro.errors import InputError
from dineuro.io import _tiff
from dineuro.io._placeholder import placeholder

SLICE_SUFFIXES = (".tif", ".tiff")


def read(folder: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """Stack the slices of ``folder`` into a (z, y, x) array.

    Every slice must be 2D with the shape and dtype of the first; the first that is not is named
    in the error.

    Returns
    -------
    array, axes, spacing
        The stacked voxels, ``"ZYX"``, and the first slice's (z, y, x) spacing.
    """
    return _stack(folder, load=True)


def probe(folder: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """What :func:`read` returns, with a :func:`placeholder` for the voxels: every slice's
    header only."""
    return _stack(folder, load=False)


def _stack(folder: Path, load: bool) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """The slices of ``folder``, each checked against the first; stacked when ``load``, else
    only their headers read."""
    paths = slice_paths(folder)
    if not paths:
        raise InputError("holds no TIFF slices (.tif or .tiff files).", folder)
    open_slice = _tiff.read if load else _tiff.probe
    first, spacing = _open_slice(paths[0], open_slice)
    shape = (len(paths), *first.shape)
    stack = np.empty(shape, first.dtype) if load else placeholder(shape, first.dtype)
    for index, path in enumerate(paths):
        plane = first if index == 0 else _open_slice(path, open_slice)[0]
        if plane.shape != first.shape or plane.dtype != first.dtype:
            raise InputError(f"has shape {plane.shape} and dtype {plane.dtype}, but the first "
                             f"slice {paths[0].name} has shape {first.shape} and dtype "
                             f"{first.dtype}; all slices must match.", path)
        if load:
            stack[index] = plane
    return stack, "ZYX", spacing


def slice_paths(folder: Path) -> list[Path]:
    """The TIFF slices in ``folder``, in natural order (``1.tif, 2.tif, 10.tif``)."""
    paths = [path for path in folder.iterdir()
             if path.suffix.lower() in SLICE_SUFFIXES and not path.name.startswith(".")
             and path.is_file()]
    return sorted(paths, key=_natural_key)


def _natural_key(path: Path) -> tuple[list[str | int], str]:
    """Sort key comparing runs of digits as numbers; the full name breaks ties (``1`` vs ``01``).

    ``re.split`` with a capturing group puts the digit runs at odd positions, so text is always
    compared with text and numbers with numbers.
    """
    parts = re.split(r"(\d+)", path.name.lower())
    return [int(part) if position % 2 else part for position, part in enumerate(parts)], path.name


def _open_slice(path: Path, open_slice) -> tuple[np.ndarray, tuple[float, float, float]]:
    array, axes, spacing = open_slice(path)
    if axes != "YX":
        raise InputError(f"is not a 2D slice: it has axes {axes} and shape {array.shape}.", path)
    return array, spacing
