"""Vaa3D ``.v3draw`` stacks, read and written by hand (no maintained Python library reads them).

The layout, as Vaa3D's ``loadRaw2Stack``/``saveStack2Raw`` use it:

- the 24-byte key ``raw_image_stack_by_hpeng``;
- one byte of byte order, ``B`` (big-endian) or ``L`` (little-endian), which applies to every
  number that follows;
- a 2-byte data type code: the bytes per voxel, 1 (uint8), 2 (uint16) or 4 (float32);
- the sizes (x, y, z, channels) as four 4-byte integers, or four 2-byte integers in files from
  old Vaa3D versions; the header does not say which, so we take the one that makes the file size
  equal header + voxels * bytes per voxel;
- the voxels, channel slowest, then z, then y, x fastest, i.e. a C-order (c, z, y, x) array.

The format has no field for voxel spacing: it reads as 1.0 and is dropped on writing.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from dineuro.errors import InputError
from dineuro.io._placeholder import placeholder
from dineuro.io._readers import Unitless

MAGIC = b"raw_image_stack_by_hpeng"
_BYTE_ORDERS = {b"B": ">", b"L": "<"}
_DTYPE_OF_CODE = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: np.dtype(np.float32)}
_CODE_OF_DTYPE = {dtype: code for code, dtype in _DTYPE_OF_CODE.items()}
DTYPES = tuple(_DTYPE_OF_CODE.values())
_PREFIX_LEN = len(MAGIC) + 1 + 2  # key, byte order, data type code
# struct codes of the four sizes: the current 4-byte format first, then the old 2-byte one.
_SIZE_CODES = ("I", "H")
_NO_SPACING = Unitless((1.0, 1.0, 1.0))


def read(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """Read a ``.v3draw`` file as a (c, z, y, x) array in native byte order.

    Returns
    -------
    array, axes, spacing
        The voxels, the axis names ``"CZYX"``, and (1.0, 1.0, 1.0) since the format stores no
        spacing.
    """
    byte_order, dtype, sizes, header_len = _header(path)
    x, y, z, c = sizes
    data = np.fromfile(path, dtype=dtype.newbyteorder(byte_order), count=math.prod(sizes),
                       offset=header_len)
    return data.reshape(c, z, y, x).astype(dtype, copy=False), "CZYX", _NO_SPACING


def probe(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """What :func:`read` returns, with a :func:`placeholder` for the voxels: the header only."""
    _, dtype, (x, y, z, c), _ = _header(path)
    return placeholder((c, z, y, x), dtype), "CZYX", _NO_SPACING


def _header(path: Path) -> tuple[str, np.dtype, tuple[int, int, int, int], int]:
    """Byte order, voxel dtype, (x, y, z, c) sizes and header length, checked against the
    file size."""
    file_size = path.stat().st_size
    with open(path, "rb") as file:
        head = file.read(_PREFIX_LEN + 4 * struct.calcsize(_SIZE_CODES[0]))
    byte_order, dtype = _parse_prefix(head, path)
    sizes, header_len = _parse_sizes(head, byte_order, dtype.itemsize, file_size, path)
    return byte_order, dtype, sizes, header_len


def _parse_prefix(head: bytes, path: Path) -> tuple[str, np.dtype]:
    """Check the key and return the byte order ('<' or '>') and the voxel dtype."""
    if not head.startswith(MAGIC):
        raise InputError(f"is not a Vaa3D v3draw file: it does not start with {MAGIC.decode()!r}.",
                         path)
    if len(head) < _PREFIX_LEN:
        raise InputError("is truncated: it ends inside the v3draw header.", path)
    byte_order = _BYTE_ORDERS.get(head[len(MAGIC):len(MAGIC) + 1])
    if byte_order is None:
        raise InputError(f"has byte order code {head[len(MAGIC):len(MAGIC) + 1]!r} in its v3draw "
                         f"header where 'B' or 'L' was expected.", path)
    (code,) = struct.unpack(byte_order + "h", head[len(MAGIC) + 1:_PREFIX_LEN])
    if code not in _DTYPE_OF_CODE:
        raise InputError(f"has v3draw data type code {code}; only 1 (uint8), 2 (uint16) and "
                         f"4 (float32) exist.", path)
    return byte_order, _DTYPE_OF_CODE[code]


def _parse_sizes(head: bytes, byte_order: str, itemsize: int, file_size: int,
                 path: Path) -> tuple[tuple[int, int, int, int], int]:
    """Return the (x, y, z, c) sizes and the header length, trying 4-byte then 2-byte sizes."""
    candidates = []
    for code in _SIZE_CODES:
        header_len = _PREFIX_LEN + struct.calcsize("4" + code)
        if len(head) >= header_len:
            sizes = struct.unpack(byte_order + "4" + code, head[_PREFIX_LEN:header_len])
            if header_len + math.prod(sizes) * itemsize == file_size:
                return sizes, header_len
            candidates.append((sizes, header_len))
    if not candidates:
        raise InputError("is truncated: it ends inside the v3draw header.", path)
    (x, y, z, c), header_len = candidates[0]
    expected = header_len + x * y * z * c * itemsize
    raise InputError(f"is truncated or corrupt: its v3draw header says {x} x {y} x {z} voxels "
                     f"(x, y, z) and {c} channel(s) of {itemsize} byte(s), which needs "
                     f"{expected} bytes, but the file has {file_size}.", path)


def write(path: Path, array: np.ndarray, spacing: tuple[float, float, float]) -> None:
    """Write a (z, y, x) array as a one-channel, little-endian v3draw with 4-byte sizes.

    ``spacing`` is accepted for a uniform writer signature and dropped: v3draw cannot store it.
    """
    z, y, x = array.shape
    header = (MAGIC + b"L" + struct.pack("<h", _CODE_OF_DTYPE[array.dtype])
              + struct.pack("<4" + _SIZE_CODES[0], x, y, z, 1))
    with open(path, "wb") as file:
        file.write(header)
        array.astype(array.dtype.newbyteorder("<"), copy=False).tofile(file)
