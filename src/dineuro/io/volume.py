"""Read and write 3D light-microscopy stacks as (z, y, x) arrays with their voxel spacing.

Every format comes in as a :class:`Volume`: a numpy array in (z, y, x) order, in the file's own
dtype (8- and 16-bit data are never rescaled), and the (z, y, x) voxel spacing, in micrometres
when the file names its unit and 1.0 where it gives none. Supported:

- ``.tif``/``.tiff``: multi-page TIFF, ImageJ hyperstacks and OME-TIFF (tifffile, with
  imagecodecs for compressed files);
- ``.lsm``: Zeiss LSM, a TIFF (read only);
- an OME-Zarr image (NGFF 0.4 or 0.5; level 0) or a plain zarr array: a folder;
- a folder of 2D TIFF slices, in natural order of their names;
- ``.v3draw``: Vaa3D's raw format, which stores no spacing;
- ``.nii``/``.nii.gz``: NIfTI (nibabel), axes reversed from nibabel's (x, y, z);
- with the ``formats`` extra (read only): ``.ims`` (Imaris) and ``.h5`` (BigDataViewer/
  BigStitcher) through h5py, ``.czi`` (Zeiss), ``.nd2`` (Nikon) and ``.lif`` (Leica) through
  bioio, ``.v3dpbd`` (Vaa3D's compressed raw) through v3d-py-helper.

Multi-channel files need a channel index. Anything that is not one readable 3D stack raises
:class:`~dineuro.errors.InputError` with one sentence naming the file. Writing goes through a
temporary file renamed into place and never replaces an existing file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np

from dineuro.errors import InputError
from dineuro.io import _bioio, _hdf5, _nifti, _omezarr, _slices, _tiff, _v3dpbd, _v3draw
from dineuro.io._readers import Unitless, has_unit
from dineuro.io.atomic import atomic_dir, atomic_file, refuse_existing

_WRITERS: dict[str, ModuleType] = {".tif": _tiff, ".tiff": _tiff, ".v3draw": _v3draw,
                                   ".nii": _nifti, ".nii.gz": _nifti}
#: Zeiss LSM files are TIFFs that tifffile reads; we never write them, nor the vendor formats
#: of the optional readers (the ``formats`` extra).
_READERS: dict[str, ModuleType] = {**_WRITERS, ".lsm": _tiff, ".ims": _hdf5, ".h5": _hdf5,
                                   ".v3dpbd": _v3dpbd, **dict.fromkeys(_bioio.PLUGINS, _bioio)}
SUPPORTED_EXTENSIONS = tuple(_READERS)
WRITABLE_EXTENSIONS = tuple(_WRITERS)
#: The ending of the OME-Zarr images write_volume makes (folders).
OME_ZARR = ".ome.zarr"
_WRITABLE = ", ".join((*WRITABLE_EXTENSIONS, OME_ZARR))
_READABLE = (f"{', '.join(SUPPORTED_EXTENSIONS)}, an OME-Zarr image (.ome.zarr) or a folder of "
             "2D TIFF slices")
_UNIT_SPACING = Unitless((1.0, 1.0, 1.0))  # for an array written without a spacing


class Volume(NamedTuple):
    """A 3D stack and its voxel size.

    Attributes
    ----------
    array : numpy.ndarray
        Voxels in (z, y, x) order, in the dtype of the file.
    spacing : tuple of float
        Voxel size along (z, y, x), in micrometres when the file says so, else 1.0.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]


def read_volume(path: str | os.PathLike, channel: int | None = None) -> Volume:
    """Read a 3D stack from a TIFF, v3draw or NIfTI file, or from a folder of TIFF slices.

    Parameters
    ----------
    path : str or os.PathLike
        A file with one of :data:`SUPPORTED_EXTENSIONS`, or a folder of 2D TIFF slices.
    channel : int, optional
        Which channel (0-based) to take from a multi-channel file; required when there are
        several, optional (must be 0) otherwise.

    Returns
    -------
    Volume
        The (z, y, x) array in the file's dtype and native byte order, C-contiguous, and the
        (z, y, x) spacing.

    Raises
    ------
    InputError
        The path does not exist, has an unknown extension, cannot be parsed, is not 3D, is empty,
        holds NaN or infinite voxels, or the channel is missing or out of range.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "stack.tif"
    >>> _ = write_volume(path, np.zeros((5, 7, 9), np.uint16), spacing=(2.0, 0.5, 0.5))
    >>> volume = read_volume(path)
    >>> volume.array.shape, volume.array.dtype, volume.spacing
    ((5, 7, 9), dtype('uint16'), (2.0, 0.5, 0.5))
    """
    path = Path(path)
    array, spacing = _open(path, channel, "read")
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    _check_finite(array, path)
    return Volume(array, spacing)


class StackHeader(NamedTuple):
    """What a stack file says about itself, without its voxels: (z, y, x) shape, dtype and
    spacing of the channel that would be read."""

    shape: tuple[int, int, int]
    dtype: np.dtype
    spacing: tuple[float, float, float]


def probe_volume(path: str | os.PathLike, channel: int | None = None) -> StackHeader:
    """The shape, dtype and spacing :func:`read_volume` would return, from the file's header.

    Runs every check of :func:`read_volume` that does not need the voxels (format, header,
    axes, channel, spacing), so a batch can refuse a bad stack before the first one is
    processed, at the cost of reading headers only.

    Raises
    ------
    InputError
        As :func:`read_volume`, except for damaged or non-finite voxel data.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "stack.tif"
    >>> _ = write_volume(path, np.zeros((5, 7, 9), np.uint16), spacing=(2.0, 0.5, 0.5))
    >>> probe_volume(path)
    StackHeader(shape=(5, 7, 9), dtype=dtype('uint16'), spacing=(2.0, 0.5, 0.5))
    """
    path = Path(path)
    array, spacing = _open(path, channel, "probe")
    return StackHeader(array.shape, array.dtype.newbyteorder("="), spacing)


def _open(path: Path, channel: int | None, how: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """The (z, y, x) channel of a stack (``how`` = "read") or a placeholder of it ("probe"),
    and its checked spacing."""
    if not path.exists():
        raise InputError("does not exist.", path)
    if path.is_dir():
        module = _omezarr if _omezarr.is_zarr(path) else _slices
    else:
        module = _format_of(path, _READERS, _READABLE)[1]
    array, axes, spacing = getattr(module, how)(path)
    return _as_zyx(array, axes, channel, path), _checked_spacing(spacing, path)


def _check_finite(array: np.ndarray, path: Path) -> None:
    """Refuse NaN and infinite voxels: no normalisation, threshold or distance means anything
    on them, and they would surface much later as an unrelated error."""
    if array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array)
    if array.dtype.itemsize > 4:  # every stage computes in float32, where these become inf
        with np.errstate(over="ignore"):
            bad |= ~np.isfinite(array.astype(np.float32))
    if bad.any():
        first = tuple(int(i) for i in np.unravel_index(np.argmax(bad), array.shape))
        raise InputError(f"holds {int(bad.sum())} NaN or infinite voxel(s) (or beyond float32's "
                         f"range), the first at (z, y, x) = {first}; replace them (with 0, say) "
                         "before using the stack.", path)


def write_volume(path: str | os.PathLike, volume_or_array: Volume | np.ndarray,
                 spacing: tuple[float, float, float] | None = None) -> Path:
    """Write a (z, y, x) stack as TIFF, v3draw, NIfTI or OME-Zarr, chosen by the extension of
    ``path``.

    TIFF files are ImageJ hyperstacks whose calibration Fiji shows in micrometres; NIfTI files
    carry the spacing in their affine and pixdim, in micrometres; an OME-Zarr image (a folder
    ``NAME.ome.zarr``, NGFF 0.5, chunks of 64x256x256, what ``dineuro run --workers`` reads)
    in its scale; v3draw cannot store spacing and drops it. The dtype is kept: a format that
    cannot hold it is an error, never a conversion.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (or OME-Zarr folder); must not exist yet. Written to a temporary name and
        renamed when complete.
    volume_or_array : Volume or numpy.ndarray
        The stack, in (z, y, x) order.
    spacing : tuple of 3 float, optional
        (z, y, x) voxel size in micrometres; defaults to the Volume's spacing, or 1.0 for a bare
        array. Given together with a Volume, it replaces the Volume's spacing.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputError
        ``path`` exists, has an unknown extension, or its format cannot hold the dtype; the
        array is not 3D or is empty, or the spacing is not 3 positive finite numbers.
    """
    path = Path(path)
    extension, module = _writer_of(path)
    array, spacing = _array_and_spacing(volume_or_array, spacing)
    if array.dtype not in module.DTYPES:
        raise InputError(f"cannot hold {array.dtype} voxels as {extension}; it holds "
                         f"{', '.join(str(dtype) for dtype in module.DTYPES)}.", path)
    refuse_existing(path)
    with (atomic_dir if module is _omezarr else atomic_file)(path) as tmp:
        module.write(tmp, array, spacing)
    return path


def _writer_of(path: Path) -> tuple[str, ModuleType]:
    """The extension of an output ``path`` and the module that writes it: an OME-Zarr image
    (a folder, never read by extension, so not among :data:`WRITABLE_EXTENSIONS`) or a file."""
    if path.name.lower().endswith(OME_ZARR):
        return OME_ZARR, _omezarr
    return _format_of(path, _WRITERS, _WRITABLE)


def convert_volume(src: str | os.PathLike, dst: str | os.PathLike,
                   channel: int | None = None) -> Volume:
    """Copy a stack from one supported format to another, keeping dtype and spacing.

    The output's format is checked before the input is read, so a bad output name fails fast.
    Spacing is lost when ``dst`` is a v3draw file (the format has no field for it).

    Parameters
    ----------
    src : str or os.PathLike
        Input file or slice folder (see :func:`read_volume`).
    dst : str or os.PathLike
        Output file (see :func:`write_volume`); must not exist and must differ from ``src``.
    channel : int, optional
        Channel to take from a multi-channel input.

    Returns
    -------
    Volume
        What was read from ``src`` (and written to ``dst``).
    """
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise InputError("is both the input and the output; choose another output path.", dst)
    _writer_of(Path(dst))
    refuse_existing(dst)
    volume = read_volume(src, channel)
    write_volume(dst, volume)
    return volume


def _format_of(path: Path, formats: dict[str, ModuleType],
               supported: str) -> tuple[str, ModuleType]:
    """The extension of ``path`` and the module of ``formats`` that handles it."""
    name = path.name.lower()
    for extension, module in formats.items():
        if name.endswith(extension):
            return extension, module
    raise InputError(f"has an unsupported file type; supported: {supported}.", path)


def _as_zyx(array: np.ndarray, axes: str, channel: int | None, path: Path) -> np.ndarray:
    """Pick the channel and check the result is a non-empty (z, y, x) stack (a view).

    ``axes`` names the axes of ``array`` with tifffile's letters (Z, Y, X, C, T, ...).
    """
    if array.size == 0:
        raise InputError(f"is empty: its shape is {array.shape} ({axes}).", path)
    if "C" not in axes:
        array, axes = array[np.newaxis], "C" + axes
    array = _pick_channel(np.moveaxis(array, axes.index("C"), 0), channel, path)
    axes = axes.replace("C", "")
    if axes == "YX":
        raise InputError(f"is 2D (Y x X, shape {array.shape}); a 3D stack is needed.", path)
    if axes != "ZYX":
        raise InputError(f"has axes {axes} (shape {array.shape}); a 3D (Z, Y, X) stack, "
                         f"optionally with channels, is needed.", path)
    return array


def _pick_channel(channels: np.ndarray, channel: int | None, path: Path) -> np.ndarray:
    """``channels[channel]``, with the checks a user needs when a file holds several channels."""
    count = len(channels)
    if channel is None:
        if count > 1:
            raise InputError(f"has {count} channels; pass --channel (0 to {count - 1}) to pick "
                             f"one.", path)
        channel = 0
    if not 0 <= channel < count:
        raise InputError(f"has {count} channel(s); channel {channel} is out of range "
                         f"(0 to {count - 1}).", path)
    return channels[channel]


def _checked_spacing(spacing: tuple[float, ...], path: Path) -> tuple[float, float, float]:
    """The spacing a file gave, refused when it cannot be a voxel size."""
    if not _is_voxel_size(spacing):
        raise InputError(f"records voxel spacing {spacing} (z, y, x); sizes must be positive "
                         f"numbers.", path)
    return spacing


def _is_voxel_size(spacing: tuple[float, ...]) -> bool:
    return len(spacing) == 3 and all(math.isfinite(size) and size > 0 for size in spacing)


def _array_and_spacing(volume_or_array: Volume | np.ndarray,
                       spacing: tuple[float, float, float] | None
                       ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Unpack what :func:`write_volume` was given into a checked array and spacing."""
    if isinstance(volume_or_array, Volume):
        array, stored = volume_or_array
        spacing = stored if spacing is None else spacing
    else:
        array = np.asarray(volume_or_array)
    if spacing is None:
        spacing = _UNIT_SPACING
    else:  # the same type, so a Unitless spacing stays unitless
        spacing = (Unitless if not has_unit(spacing) else tuple)(float(s) for s in spacing)
    if array.ndim != 3 or array.size == 0:
        raise InputError(f"array should be a non-empty 3D (z, y, x) stack, got shape "
                         f"{array.shape}.")
    if not _is_voxel_size(spacing):
        raise InputError(f"spacing should be 3 positive (z, y, x) sizes, got {spacing}.")
    return array.astype(array.dtype.newbyteorder("="), copy=False), spacing
