"""Zeiss ``.czi``, Nikon ``.nd2`` and Leica ``.lif`` files, through bioio (read only).

Each format's layout is proprietary and only its bioio plugin (bioio-czi, bioio-nd2,
bioio-lif) parses it; bioio then shows every one the same way: dimensions T, C, Z, Y, X (plus S,
the samples of an RGB image) and the physical pixel sizes (Z, Y, X) in micrometres, None where
the file gives none (1.0 here). Mosaic tiles come stitched.

We read resolution level 0 (bioio's default) of scene 0, the first series of a Leica project
or position of a multi-position file, and one time point: a file with several is refused, as
for OME-Zarr. The plugin is chosen by extension rather than by bioio's search over every
installed plugin, so a missing plugin is named. bioio and the plugins come with the
``formats`` extra; without them the file is refused with a sentence that says how to install
it.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import numpy as np

from dineuro.errors import InputError
from dineuro.io._placeholder import placeholder
from dineuro.io._readers import missing_extra, one_time_point

#: The bioio plugin (its module) that reads each extension.
PLUGINS = {".czi": "bioio_czi", ".nd2": "bioio_nd2", ".lif": "bioio_lif"}


def read(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """The voxels of scene 0, time point 0, their axis letters and the (z, y, x) spacing in
    micrometres.

    Raises
    ------
    InputError
        bioio or the format's plugin is missing, the plugin cannot parse the file or decode
        its voxels, or the file holds several time points.
    """
    array, axes, spacing = _open(path)
    try:
        return np.asarray(array), axes, spacing
    except Exception as exc:  # each plugin raises its own types for data it cannot decode
        raise InputError(f"holds voxels bioio cannot decode ({exc}).", path) from exc


def probe(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """What :func:`read` returns, with a placeholder for the voxels: the metadata only."""
    array, axes, spacing = _open(path)
    return placeholder(array.shape, array.dtype), axes, spacing


def _open(path: Path):
    """Scene 0, time point 0, as a lazy (dask) array with its axis letters, and the spacing."""
    plugin = PLUGINS[path.suffix.lower()]
    try:
        from bioio import BioImage

        reader = importlib.import_module(plugin).Reader
    except ImportError as exc:
        raise missing_extra(path, f"bioio and {plugin.replace('_', '-')}") from exc
    # bioio logs a warning for a reader that fails, which Python prints when no handler is set:
    # the error below says it once, and library code never prints.
    quiet, logger = logging.NullHandler(), logging.getLogger("bioio")
    logger.addHandler(quiet)
    try:
        image = BioImage(path, reader=reader)
        array, axes = image.dask_data, image.dims.order
        sizes = image.physical_pixel_sizes
    except Exception as exc:  # each plugin raises its own types for a file it cannot parse
        # bioio's message spans several indented lines (one per reader tried): make it one.
        raise InputError(f"cannot be read by bioio ({' '.join(str(exc).split())}).",
                         path) from exc
    finally:
        logger.removeHandler(quiet)
    array, axes = _one_stack(array, axes, path)
    spacing = tuple(1.0 if size is None else float(size) for size in (sizes.Z, sizes.Y, sizes.X))
    return array, axes, spacing


def _one_stack(array, axes: str, path: Path):
    """``array`` without its time axis (of length 1) and with RGB samples as channels.

    bioio always gives a channel axis and, for RGB images, a samples axis S: the samples are the
    channels of an image with one channel (as for TIFF), and an S of length 1 is dropped. An
    image with both several channels and several samples keeps S, which the caller refuses.

    Examples
    --------
    >>> rgb, axes = _one_stack(np.zeros((1, 1, 5, 7, 9, 3)), "TCZYXS", Path("a.czi"))
    >>> rgb.shape, axes
    ((5, 7, 9, 3), 'ZYXC')
    """
    sizes = dict(zip(axes, array.shape, strict=True))
    one_time_point(sizes.get("T", 1), path)
    samples_are_channels = sizes.get("S", 1) > 1 and sizes.get("C", 1) == 1
    dropped = {"T", "C" if samples_are_channels else "S"}
    index = tuple(0 if axis in dropped and sizes[axis] == 1 else slice(None) for axis in axes)
    kept = "".join(axis for axis, i in zip(axes, index, strict=True) if isinstance(i, slice))
    return array[index], kept.replace("S", "C") if samples_are_channels else kept
