"""Imaris ``.ims`` and BigDataViewer/BigStitcher ``.h5`` stacks, through h5py (read only).

Both are HDF5 files that keep each channel as its own 3D dataset in (z, y, x) order, so the
channels are stacked into one (c, z, y, x) array:

- Imaris 5.5 and later: ``DataSet/ResolutionLevel 0/TimePoint 0/Channel N/Data``. Imaris pads
  each dataset to whole chunks, so the image is the corner of it whose size the ``X``, ``Y``
  and ``Z`` attributes of ``DataSetInfo/Image`` give; the voxel size along each axis is the
  image's extent (``ExtMax`` minus ``ExtMin``, axes 0, 1, 2 = x, y, z) over its size, in the
  ``Unit`` of the same group. Imaris writes every attribute as an array of one-byte strings,
  one per character.
- BigDataViewer: ``tNNNNN/sNN/0/cells`` (time point, view setup, resolution level 0). The XML
  file of the same name beside it gives each setup's ``voxelSize`` (x, y, z) and unit; without
  it the spacing is 1.0. BigDataViewer stores unsigned 16-bit voxels in signed int16
  datasets, so those are read as uint16. Setups are the channels; setups that are different
  tiles, angles or illuminations of one channel (as the XML says) are refused rather than
  mistaken for channels.

Only one time point is read: a file with several is refused, as for OME-Zarr (a stack is one
moment). h5py comes with the ``formats`` extra; without it the file is refused with a sentence
that says how to install it.
"""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath
from typing import NamedTuple

import numpy as np

from dineuro.errors import InputError
from dineuro.io._placeholder import placeholder
from dineuro.io._readers import missing_extra, one_time_point

#: How a user gets the optional readers.
#: Length units as Imaris and BigDataViewer spell them, in micrometres; numbers in any other
#: unit (or none, e.g. BigDataViewer's "pixel") are kept as they are.
_UM_PER_UNIT = {"um": 1.0, "µm": 1.0, "\u03bcm": 1.0, "micron": 1.0, "microns": 1.0,
                "micrometer": 1.0, "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3,
                "cm": 1e4, "m": 1e6, "meter": 1e6}
_UNIT_SPACING = (1.0, 1.0, 1.0)
_IMARIS_LEVEL_0 = "DataSet/ResolutionLevel 0"
_IMARIS_INFO = "DataSetInfo/Image"
_BDV_TIME_POINT = re.compile(r"t\d{5}")
_BDV_SETUP = re.compile(r"s\d{2,}")
#: The view attributes that make BigDataViewer setups different views rather than channels.
_BDV_VIEW_ATTRIBUTES = ("tile", "angle", "illumination")


class _Layout(NamedTuple):
    """Where the voxels of one time point are in an open file, and what they are."""

    channels: list  # one h5py.Dataset per channel, each (z, y, x), possibly padded
    shape: tuple[int, int, int]  # the (z, y, x) image in each dataset
    dtype: np.dtype  # what the voxels are (may differ from the datasets': BDV's int16)
    spacing: tuple[float, float, float]


def read(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """The channels of the first (only) time point, axes ``"CZYX"``, and the (z, y, x)
    spacing, in micrometres when the file names its unit.

    Raises
    ------
    InputError
        h5py is missing, the file is not HDF5 or lacks the format's layout, holds several
        time points, or its voxels cannot be decoded.
    """
    with _open(path) as layout:
        z, y, x = layout.shape
        try:
            array = np.stack([channel[:z, :y, :x] for channel in layout.channels])
        except OSError as exc:  # a damaged chunk, or a compression filter h5py lacks
            raise InputError(f"holds voxels h5py cannot decode ({exc}).", path) from exc
    return array.view(layout.dtype), "CZYX", layout.spacing


def probe(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """What :func:`read` returns, with a placeholder for the voxels: the layout only."""
    with _open(path) as layout:
        shape = (len(layout.channels), *layout.shape)
        return placeholder(shape, layout.dtype), "CZYX", layout.spacing


@contextlib.contextmanager
def _open(path: Path) -> Iterator[_Layout]:
    """The layout of an Imaris or BigDataViewer file, valid while the file is open."""
    try:
        import h5py
    except ImportError as exc:
        raise missing_extra(path, "h5py") from exc
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"cannot be opened as an HDF5 file ({exc}).", path) from exc
    with file:
        yield _imaris(file, path) if path.suffix.lower() == ".ims" else _bdv(file, path)


def _imaris(file, path: Path) -> _Layout:
    """The datasets, image size and spacing of an Imaris file's full-resolution level."""
    if _IMARIS_LEVEL_0 not in file or _IMARIS_INFO not in file:
        raise InputError(f"is not an Imaris 5.5+ file: it lacks {_IMARIS_LEVEL_0} or "
                         f"{_IMARIS_INFO}.", path)
    level = file[_IMARIS_LEVEL_0]
    time_points = _numbered(level, "TimePoint ")
    one_time_point(len(time_points), path)
    channel_groups = _numbered(time_points[0], "Channel ")
    if not channel_groups or any("Data" not in group for group in channel_groups):
        raise InputError("has no channel data at time point 0 of resolution level 0.", path)
    channels = [group["Data"] for group in channel_groups]
    attrs = file[_IMARIS_INFO].attrs
    sizes = [_number(attrs, name, path) for name in "ZYX"]
    if any(size is None or size < 1 for size in sizes):
        raise InputError(f"lacks the image size (the X, Y and Z attributes of {_IMARIS_INFO}, "
                         f"here {sizes}).", path)
    shape = tuple(int(size) for size in sizes)
    for channel in channels:
        if channel.ndim != 3 or any(n < s for n, s in zip(channel.shape, shape, strict=True)):
            raise InputError(f"holds a {channel.shape} dataset for an image of (z, y, x) size "
                             f"{shape}.", path)
    um = _UM_PER_UNIT.get(_text(attrs.get("Unit")), 1.0)
    spacing = []
    for axis, size in zip((2, 1, 0), shape, strict=True):
        low, high = _number(attrs, f"ExtMin{axis}", path), _number(attrs, f"ExtMax{axis}", path)
        spacing.append(1.0 if low is None or high is None else (high - low) / size * um)
    return _Layout(channels, shape, channels[0].dtype, tuple(spacing))


def _bdv(file, path: Path) -> _Layout:
    """The level-0 datasets of a BigDataViewer file's setups, and their spacing."""
    time_points = [file[name] for name in file if _BDV_TIME_POINT.fullmatch(name)]
    if not time_points:
        raise InputError("is an HDF5 file without BigDataViewer's layout (tNNNNN/sNN/0/cells); "
                         ".h5 files are read as BigDataViewer/BigStitcher datasets only.", path)
    one_time_point(len(time_points), path)
    setups = sorted((name for name in time_points[0] if _BDV_SETUP.fullmatch(name)),
                    key=lambda name: int(name[1:]))
    try:
        channels = [time_points[0][f"{setup}/0/cells"] for setup in setups]
    except KeyError as exc:
        raise InputError(f"lacks a setup's level-0 voxels in {time_points[0].name} ({exc}).",
                         path) from exc
    if not channels:
        raise InputError(f"has no view setups in {time_points[0].name}.", path)
    shapes = {channel.shape for channel in channels}
    if len(shapes) != 1 or len(channels[0].shape) != 3:
        raise InputError(f"holds setups of (z, y, x) shapes {sorted(shapes)}; the channels of a "
                         "stack must be 3D and of one shape.", path)
    spacings = _bdv_spacings(path, [int(setup[1:]) for setup in setups])
    if len(set(spacings)) != 1:
        raise InputError(f"gives its setups different voxel sizes {sorted(set(spacings))} "
                         "(z, y, x); the channels of a stack share one.", path)
    # BigDataViewer keeps uint16 voxels in int16 datasets (Java has no unsigned short).
    dtype = np.dtype(np.uint16) if channels[0].dtype == np.int16 else channels[0].dtype
    return _Layout(channels, channels[0].shape, dtype, spacings[0])


def _bdv_spacings(path: Path, setup_ids: list[int]) -> list[tuple[float, float, float]]:
    """The (z, y, x) voxel size of each setup from the XML beside ``path``, in micrometres when
    it names the unit; 1.0 for all without an XML file that describes ``path``."""
    xml_path = path.with_suffix(".xml")
    if not xml_path.is_file():
        return [_UNIT_SPACING] * len(setup_ids)
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as exc:
        raise InputError(f"cannot be parsed as XML ({exc}).", xml_path) from exc
    loader_file = root.findtext("SequenceDescription/ImageLoader/hdf5")
    # An absolute path may be a Windows one: PureWindowsPath splits on both separators.
    if loader_file is None or PureWindowsPath(loader_file.strip()).name != path.name:
        return [_UNIT_SPACING] * len(setup_ids)
    ids = {str(i): i for i in setup_ids}
    voxel_sizes, views = {}, set()
    for setup in root.iterfind("SequenceDescription/ViewSetups/ViewSetup"):
        setup_id = ids.get(setup.findtext("id", "").strip())
        if setup_id is not None:
            voxel_sizes[setup_id] = setup.find("voxelSize")
            views.add(tuple(setup.findtext(f"attributes/{name}")
                            for name in _BDV_VIEW_ATTRIBUTES))
    if len(views) > 1:
        raise InputError(f"holds several tiles, angles or illuminations ({xml_path.name} says "
                         "so); a stack is one view: fuse them in BigStitcher, or export one "
                         "view, first.", path)
    return [_bdv_voxel_size(voxel_sizes.get(i), xml_path) for i in setup_ids]


def _bdv_voxel_size(element, xml_path: Path) -> tuple[float, float, float]:
    """The (z, y, x) size of a ``voxelSize`` element (which lists x, y, z), 1.0 without one."""
    if element is None:
        return _UNIT_SPACING
    try:
        x, y, z = (float(size) for size in element.findtext("size", "").split())
    except ValueError as exc:
        raise InputError("has a voxelSize that is not three numbers (x y z).", xml_path) from exc
    um = _UM_PER_UNIT.get(element.findtext("unit", "").strip(), 1.0)
    return z * um, y * um, x * um


def _numbered(group, prefix: str) -> list:
    """The members of ``group`` named ``prefix`` and a number, in the numbers' order."""
    names = [name for name in group if re.fullmatch(re.escape(prefix) + r"\d+", name)]
    return [group[name] for name in sorted(names, key=lambda name: int(name[len(prefix):]))]


def _number(attrs, name: str, path: Path) -> float | None:
    """The attribute ``name`` as a number, None when it is absent."""
    text = _text(attrs.get(name))
    if not text:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise InputError(f"has a {name} attribute that is not a number ({text!r}).",
                         path) from exc


def _text(value) -> str:
    """An HDF5 attribute as text: Imaris writes an array of one-character byte strings.

    Examples
    --------
    >>> _text(np.array([b"5", b"1", b"2"], dtype="S1")), _text(b"um"), _text(None)
    ('512', 'um', '')
    """
    if value is None:
        return ""
    if isinstance(value, np.ndarray):
        value = b"".join(np.atleast_1d(value).astype(bytes).ravel().tolist())
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).strip()
