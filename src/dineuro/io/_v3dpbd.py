"""Vaa3D ``.v3dpbd`` stacks: v3draw's header over voxels compressed by Vaa3D's PBD scheme
(pack-bits with difference runs), decoded by v3d-py-helper (the ``formats`` extra).

The 43-byte header is v3draw's with another key: the 24-byte key
``v3d_volume_pkbitdf_encod``, one byte of byte order (``B`` or ``L``), a 2-byte data type code
(1: uint8, 2: uint16), then the sizes (x, y, z, channels) as four 4-byte integers. It is read
here, so a batch checks a file's shape and dtype without the extra; the voxels need it. Like
v3draw, the format stores no spacing: it reads as 1.0.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from dineuro.errors import InputError
from dineuro.io._placeholder import placeholder
from dineuro.io._readers import Unitless, missing_extra

MAGIC = b"v3d_volume_pkbitdf_encod"
_HEADER = struct.Struct("=c H 4I")  # byte order, type code, x, y, z, channels (after MAGIC)
_BYTE_ORDERS = {b"B": ">", b"L": "<"}
_DTYPE_OF_CODE = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16)}
_NO_SPACING = Unitless((1.0, 1.0, 1.0))


def read(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """The voxels as a (c, z, y, x) array, ``"CZYX"``, and (1.0, 1.0, 1.0)."""
    _, _, shape = _header(path)
    try:
        from v3dpy.loaders import PBD
    except ImportError as exc:
        raise missing_extra(path, "v3d-py-helper") from exc
    try:
        array = np.asarray(PBD().load(path))
    except Exception as exc:  # the decoder raises several types on a damaged file
        raise InputError(f"cannot be decoded as a v3dpbd file ({exc}).", path) from exc
    if array.shape != shape:
        raise InputError(f"decodes to shape {array.shape}, but its header says {shape}; the "
                         "file is damaged.", path)
    return array, "CZYX", _NO_SPACING


def probe(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """What :func:`read` returns, with a placeholder for the voxels: the header only."""
    _, dtype, shape = _header(path)
    return placeholder(shape, dtype), "CZYX", _NO_SPACING


def _header(path: Path) -> tuple[str, np.dtype, tuple[int, int, int, int]]:
    """Byte order, voxel dtype and (c, z, y, x) shape from the 43-byte header."""
    with open(path, "rb") as file:
        head = file.read(len(MAGIC) + _HEADER.size)
    if not head.startswith(MAGIC):
        raise InputError(f"is not a Vaa3D v3dpbd file: it does not start with "
                         f"{MAGIC.decode()!r}.", path)
    if len(head) < len(MAGIC) + _HEADER.size:
        raise InputError("is truncated: it ends inside the v3dpbd header.", path)
    byte_order = _BYTE_ORDERS.get(head[len(MAGIC):len(MAGIC) + 1])
    if byte_order is None:
        raise InputError("has an unknown byte order in its v3dpbd header.", path)
    _, code, x, y, z, c = struct.unpack(byte_order + _HEADER.format[1:],
                                        head[len(MAGIC):])
    if code not in _DTYPE_OF_CODE:
        raise InputError(f"has data type code {code}; v3dpbd holds 1 (uint8) or 2 (uint16).",
                         path)
    return byte_order, _DTYPE_OF_CODE[code], (c, z, y, x)
