"""Tracing files: a map on disk, or held in memory, -> a new SWC file, written atomically.

The file-level entry points of ``dineuro trace`` and ``dineuro run`` around :func:`trace`:
the map's spacing goes into the SWC header, errors name the file, and a map that cannot be
traced still leaves an SWC that says why (:func:`untraced`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dineuro.errors import InputError
from dineuro.io.atomic import refuse_existing
from dineuro.io.swc import SwcTree, write_swc
from dineuro.io.volume import Volume, read_volume
from dineuro.trace._forest import _empty
from dineuro.trace._trace import trace


def trace_file(path: str | os.PathLike, out: str | os.PathLike, *,
               image: str | os.PathLike | None = None, channel: int | None = None,
               **options) -> SwcTree:
    """Trace a probability map or mask file into a new SWC file, atomically.

    The map's voxel spacing goes into the SWC header (coordinates in voxels unless
    ``units="um"``). An empty map writes an SWC of comments only (with an
    :class:`~dineuro.trace.EmptyTraceWarning`), so a batch goes on.

    Parameters
    ----------
    path : str or os.PathLike
        The map: any stack :func:`~dineuro.io.volume.read_volume` reads, e.g.
        ``NAME_prob.tif`` or ``NAME_mask.tif`` from ``dineuro predict``.
    out : str or os.PathLike
        The SWC to write; must not exist.
    image : str or os.PathLike, optional
        The raw stack, for gap evidence and the soma's brightness (see :func:`trace`).
    channel : int, optional
        Channel of a multi-channel ``image``.
    **options
        Passed to :func:`trace`.

    Returns
    -------
    SwcTree
        The tree written.

    Raises
    ------
    InputError
        Naming the file: a missing or unreadable file, not 3D, shapes that differ, an existing
        ``out``, or any of :func:`trace`'s reasons; nothing is written then.
    """
    out = refuse_existing(out)
    volume = read_volume(path)
    raw = None
    if image is not None:
        raw = read_volume(image, channel).array
        if raw.shape != volume.array.shape:
            raise InputError(f"has shape {raw.shape} but the map {path} has "
                             f"{volume.array.shape}; they should be the same stack.", image)
    return write_trace(volume, out, source=path, image=raw, **options)


def write_trace(prob: Volume, out: str | os.PathLike, *, source: str | os.PathLike,
                image: np.ndarray | None = None, **options) -> SwcTree:
    """Trace a map held in memory (with its spacing) into a new SWC file, atomically.

    What :func:`trace_file` does once it has read the map: :func:`trace_volume`, then write.

    Parameters
    ----------
    prob, source, image, **options
        As for :func:`trace_volume`.
    out : str or os.PathLike
        The SWC to write; must not exist.

    Returns
    -------
    SwcTree
        The tree written.

    Raises
    ------
    InputError
        Naming ``source``, for any of :func:`trace`'s reasons, or an existing ``out``; nothing
        is written then.
    """
    out = refuse_existing(out)
    tree = trace_volume(prob, source=source, image=image, **options)
    write_swc(out, tree, allow_empty=True)
    return tree


def trace_volume(prob: Volume, *, source: str | os.PathLike, image: np.ndarray | None = None,
                 **options) -> SwcTree:
    """:func:`trace` of a map held in memory, with its spacing; ``dineuro run`` calls it with
    the map it has just predicted, so the map is not read back from disk.

    Parameters
    ----------
    prob : Volume
        The map and its (z, y, x) spacing.
    source : str or os.PathLike
        The file the map is (or came from): named in errors and the SWC header.
    image, **options
        As for :func:`trace`.

    Returns
    -------
    SwcTree
        The traced tree, its first comment naming ``source``.

    Raises
    ------
    InputError
        Naming ``source``, for any of :func:`trace`'s reasons.
    """
    try:
        tree = trace(prob.array, prob.spacing, image=image, **options)
    except InputError as exc:
        raise exc if exc.path else InputError(str(exc), source) from exc
    tree.comments.insert(0, f"traced from {Path(source).name}")
    return tree


def untraced(source: str | os.PathLike, reason: str) -> SwcTree:
    """An SWC of comments only, for a map that could not be traced: it says why, and a batch
    that finds it knows the stack was done (``dineuro run --skip-existing``)."""
    return _empty([f"not traced from {Path(source).name}: {reason}"])
