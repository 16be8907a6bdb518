"""Multi-page TIFF, ImageJ hyperstacks, OME-TIFF and Zeiss LSM, through tifffile.

Voxel spacing lives in different places by flavour, and is read from the one that says most:

- OME-TIFF: the ``PhysicalSizeX/Y/Z`` attributes of the OME-XML ``Pixels`` element, each with
  its own unit (micrometres when none is given, as the OME schema says);
- Zeiss LSM: ``VoxelSizeX/Y/Z`` of the CZ_LSMINFO block, in metres;
- anything else: the x and y pixel sizes are the inverse of the XResolution and YResolution
  tags (pixels per unit), and the z step is the ``spacing`` entry of the ImageJ description. The
  unit is the ImageJ ``unit`` entry when there is one, else the ResolutionUnit tag.

We convert to micrometres when the unit is known and keep the numbers as they are otherwise
(1.0 for anything the file does not give). Compressed files (LZW, zstd, deflate, JPEG 2000, ...)
are decoded by imagecodecs, a dependency; OME-TIFF pyramids are read at full resolution.
"""

from __future__ import annotations

import contextlib
import logging
import re
import struct
import xml.etree.ElementTree as ElementTree
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from dineuro.errors import InputError
from dineuro.io._placeholder import placeholder
from dineuro.io._readers import Unitless, has_unit

# What ImageJ hyperstacks can hold (tifffile refuses anything else with imagej=True).
DTYPES = tuple(np.dtype(name) for name in ("uint8", "uint16", "int16", "float32"))
# ImageJ writes its unit as free text; these are the spellings of lengths we have seen.
_UM_PER_IMAGEJ_UNIT = {"micron": 1.0, "microns": 1.0, "um": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0,
                       "\\u00b5m": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6,
                       "inch": 25400.0}
# OME length units (the schema's UnitsLength symbols) in micrometres.
_UM_PER_OME_UNIT = {"µm": 1.0, "\u03bcm": 1.0, "um": 1.0, "nm": 1e-3, "pm": 1e-6, "Å": 1e-4,
                    "mm": 1e3, "cm": 1e4, "m": 1e6}
# TIFF ResolutionUnit codes (4 and 5 are tifffile extensions); 1 (none) keeps numbers as they are.
_UM_PER_RESOLUTION_UNIT = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}
# Exceptions tifffile and imagecodecs raise on files they cannot parse or decode.
# zlib.error: tifffile decodes deflate with the standard library when imagecodecs is absent.
_READ_ERRORS = (ValueError, OSError, EOFError, struct.error, RuntimeError, zlib.error)


def read(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """Read the one image series of a TIFF file.

    Returns
    -------
    array, axes, spacing
        The voxels; tifffile's axis names, with the stack axis called Z and samples (RGB) called
        C; and the (z, y, x) voxel spacing (see the module docstring for units).
    """
    return _open(path, lambda series: series.asarray())


def probe(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """What :func:`read` returns, with a :func:`placeholder` for the voxels: the header only."""
    return _open(path, lambda series: placeholder(series.shape, series.dtype))


def _open(path: Path, voxels) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """``voxels(series)``, the axes and the spacing of the one image series of a TIFF file."""
    with _tifffile_errors() as errors:
        try:
            with tifffile.TiffFile(path) as tif:
                n_series = len(tif.series)
                if not n_series:
                    raise InputError("holds no image data; it is truncated or empty.", path)
                series = tif.series[0]
                array, axes, spacing = voxels(series), series.axes, _spacing(tif)
        except _READ_ERRORS as exc:
            raise InputError(f"cannot be read as a TIFF file ({exc}).", path) from exc
    if errors:
        raise InputError(f"is corrupt or truncated (tifffile: {errors[0]}).", path)
    if n_series != 1:
        raise InputError(f"holds {n_series} image series of different shapes; one stack is "
                         f"expected.", path)
    return array, _canonical_axes(axes), spacing


@contextlib.contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """Collect the errors tifffile logs instead of raising, e.g. on a truncated file.

    tifffile recovers from a missing page or a failed reshape by logging and returning less data;
    we refuse such files rather than segment part of a stack. The handler also keeps tifffile's
    warnings off stderr, since library code never prints.
    """
    handler = _ErrorCollector()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


class _ErrorCollector(logging.Handler):
    """A logging handler that keeps the text of ERROR records."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # tifffile prefixes its messages with the repr of the object that failed: drop it.
        self.messages.append(re.sub(r"^<[^>]*>\s*", "", record.getMessage()))


def _canonical_axes(axes: str) -> str:
    """Name the stack axis Z and the samples axis C, whatever tifffile called them.

    A plain multi-page TIFF has axes IYX (image sequence), one written by tifffile without
    metadata QYX (unknown); ImageJ and OME files already say Z. RGB samples (S) are channels.
    """
    if "C" not in axes:
        axes = axes.replace("S", "C")
    if "Z" not in axes and axes.count("I") + axes.count("Q") == 1:
        axes = axes.replace("I", "Z").replace("Q", "Z")
    return axes


def _spacing(tif: tifffile.TiffFile) -> tuple[float, float, float]:
    """The (z, y, x) voxel spacing, in micrometres when the file names its unit."""
    if tif.is_ome:
        spacing = _ome_spacing(tif.ome_metadata)
        if spacing is not None:
            return spacing
    if tif.is_lsm:
        info = tif.lsm_metadata or {}
        sizes = [info.get(f"VoxelSize{axis}") for axis in "ZYX"]
        return tuple(float(size) * 1e6 if size else 1.0 for size in sizes)
    tags = tif.pages[0].tags
    imagej = tif.imagej_metadata or {}
    if "unit" in imagej:
        um_per_unit = _UM_PER_IMAGEJ_UNIT.get(str(imagej["unit"]).lower())
    elif "ResolutionUnit" in tags:
        um_per_unit = _UM_PER_RESOLUTION_UNIT.get(int(tags["ResolutionUnit"].value))
    else:
        um_per_unit = None
    sizes = (imagej.get("spacing"), _pixel_size(tags.get("YResolution")),
             _pixel_size(tags.get("XResolution")))
    spacing = tuple(1.0 if size is None else float(size) * (um_per_unit or 1.0)
                    for size in sizes)
    return spacing if um_per_unit else Unitless(spacing)


def _ome_spacing(xml: str | None) -> tuple[float, float, float] | None:
    """The (z, y, x) physical voxel size of the first image of an OME-XML description, in
    micrometres, or None when it gives none (1.0 for an axis it leaves out).

    Examples
    --------
    >>> _ome_spacing('<OME><Image><Pixels PhysicalSizeX="250" PhysicalSizeXUnit="nm" '
    ...              'PhysicalSizeY="0.25" PhysicalSizeZ="2"/></Image></OME>')
    (2.0, 0.25, 0.25)
    """
    try:
        root = ElementTree.fromstring(xml or "")
    except ElementTree.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.rpartition("}")[2] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for axis in "ZYX":
        size = pixels.get(f"PhysicalSize{axis}")
        unit = _UM_PER_OME_UNIT.get(pixels.get(f"PhysicalSize{axis}Unit", "µm"), 1.0)
        sizes.append(None if size is None else float(size) * unit)
    if all(size is None for size in sizes):
        return None
    return tuple(1.0 if size is None else size for size in sizes)


def _pixel_size(tag: tifffile.TiffTag | None) -> float | None:
    """The pixel size of a resolution tag (a rational, pixels per unit), or None if unset."""
    if tag is None:
        return None
    numerator, denominator = tag.value
    return denominator / numerator if numerator else None


def write(path: Path, array: np.ndarray, spacing: tuple[float, float, float]) -> None:
    """Write a (z, y, x) array as an ImageJ hyperstack that Fiji opens with the right voxel size.

    ImageJ reads the x/y pixel size from the resolution tags and the z step and unit from its
    description, so both are written, in micrometres (no unit for a :class:`Unitless` spacing,
    taken from a file that gave none). The description also sets the display
    range to the data's (a 0/1 mask shown on 0-255 would look black), and the pixels are
    deflate-compressed, which ImageJ and every TIFF reader decode (a sparse map or a mask
    shrinks many times). A single-slice stack reads back as a 2D image, like any one-page
    TIFF.
    """
    z, y, x = spacing
    unit = {"unit": "micron"} if has_unit(spacing) else {}
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
    # Given ZYX, tifffile takes a trailing size-1 axis for RGB samples; the full ImageJ
    # TZCYXS shape leaves it nothing to guess.
    hyperstack = array[np.newaxis, :, np.newaxis, :, :, np.newaxis]
    tifffile.imwrite(path, hyperstack, imagej=True, photometric="minisblack",
                     compression="zlib", resolution=(1.0 / x, 1.0 / y),
                     metadata={"axes": "TZCYXS", "spacing": z, **unit,
                               "min": low, "max": high if high > low else low + 1.0})
