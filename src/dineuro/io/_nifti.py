"""NIfTI-1/2 volumes (``.nii``, ``.nii.gz``), through nibabel.

nibabel indexes voxels as (x, y, z[, t[, c]]) (the NIfTI on-disk order, x fastest); we reverse
the axes to (z, y, x), which is also C order in memory. Voxels are kept in the order they are
stored: we do not reorient to RAS, so the array matches what viewers show in voxel coordinates.
The spacing comes from the header's pixdim (zooms), converted to micrometres from the header's
spatial unit when it has one. Data keep their on-disk dtype unless the header asks for scaling
(scl_slope other than 0 or 1, or a non-zero scl_inter), which nibabel then applies.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from dineuro.errors import InputError
from dineuro.io._placeholder import placeholder
from dineuro.io._readers import Unitless, has_unit

DTYPES = tuple(np.dtype(name) for name in ("uint8", "int8", "uint16", "int16", "uint32",
                                           "int32", "uint64", "int64", "float32", "float64"))
# nibabel's axis order reversed: NIfTI stores x, y, z, then time, then vector components.
_AXES = "CTZYX"
_UM_PER_UNIT = {"meter": 1e6, "mm": 1e3, "micron": 1.0}
_READ_ERRORS = (ImageFileError, HeaderDataError, ValueError, OSError, EOFError)
# nibabel's own default: fast, and microscopy stacks hardly shrink further at higher levels.
_GZIP_LEVEL = 1


def read(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """Read a NIfTI file with its axes reversed to (..., z, y, x).

    Returns
    -------
    array, axes, spacing
        The voxels; their axis names (``"ZYX"`` for a 3D file, ``"CZYX"`` for a 5D file with a
        single time point, a singleton time axis dropped); and the (z, y, x) spacing.
    """
    return _open(path, lambda image: np.asanyarray(image.dataobj))


def probe(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """What :func:`read` returns, with a :func:`placeholder` for the voxels: the header only."""
    return _open(path, lambda image: placeholder(image.shape, image.get_data_dtype()))


def _open(path: Path, voxels) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """``voxels(image)`` as (..., z, y, x), its axis names and the spacing of a NIfTI file."""
    try:
        image = nib.load(path, mmap=False)
        data = voxels(image)
    except _READ_ERRORS as exc:
        raise InputError(f"cannot be read as a NIfTI file ({exc}).", path) from exc
    if data.ndim > len(_AXES):
        raise InputError(f"has {data.ndim} dimensions; at most x, y, z, time and channels are "
                         f"understood.", path)
    array, axes = data.transpose(), _AXES[-data.ndim:]
    if "T" in axes and array.shape[axes.index("T")] == 1:
        array, axes = array.squeeze(axes.index("T")), axes.replace("T", "")
    return array, axes, _spacing(image.header)


def _spacing(header: nib.Nifti1Header) -> tuple[float, float, float]:
    """The (z, y, x) voxel spacing from the header, in micrometres when the unit is set."""
    zooms = header.get_zooms()[:3]
    zooms += (1.0,) * (3 - len(zooms))
    um_per_unit = _UM_PER_UNIT.get(header.get_xyzt_units()[0])
    spacing = tuple(_shortest_float(zoom) * (um_per_unit or 1.0) for zoom in reversed(zooms))
    return spacing if um_per_unit else Unitless(spacing)


def _shortest_float(value: float) -> float:
    """The float32 header value as the shortest decimal that round-trips: 0.3, not 0.30000001."""
    return float(str(np.float32(value)))


def write(path: Path, array: np.ndarray, spacing: tuple[float, float, float]) -> None:
    """Write a (z, y, x) array with an affine scaling voxels to micrometres.

    The file is gzip-compressed when ``path`` ends in ``.gz``; the data keep their dtype and are
    written unscaled. nibabel picks the format from the file name, which is a temporary name here,
    so the image is streamed into a file we open ourselves.
    """
    z, y, x = spacing
    image = nib.Nifti1Image(array.transpose(), np.diag([x, y, z, 1.0]), dtype=array.dtype)
    image.header.set_xyzt_units("micron" if has_unit(spacing) else "unknown")
    if path.suffix.lower() == ".gz":
        with gzip.open(path, "wb", compresslevel=_GZIP_LEVEL) as file:
            image.to_stream(file)
    else:
        with open(path, "wb") as file:
            image.to_stream(file)
