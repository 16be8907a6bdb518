"""The v3draw reader against files built byte by byte here, and the writer's bytes.

The files are made with ``struct`` and ``ndarray.tobytes`` following the layout Vaa3D's
``loadRaw2Stack`` reads (key, byte order, type code, 4 sizes, then c/z/y/x-ordered voxels), never
with our writer, so a reader bug cannot cancel out a writer bug.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest

from dineuro.errors import InputError
from dineuro.io.volume import read_volume, write_volume

KEY = b"raw_image_stack_by_hpeng"
TYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 2, np.dtype(np.float32): 4}


def coded(shape, dtype):
    """Voxels whose value spells their (c, z, y, x) index, e.g. 1234 at c=1, z=2, y=3, x=4."""
    index = np.indices(shape)
    weights = np.array([1000, 100, 10, 1][-len(shape):]).reshape(-1, *[1] * len(shape))
    return (index * weights).sum(axis=0).astype(dtype)


def v3draw_bytes(channels, byte_order="<", size_code="I", type_code=None):
    """A v3draw file for a (c, z, y, x) array; ``size_code`` 'I' = 4-byte sizes, 'H' = 2-byte."""
    c, z, y, x = channels.shape
    order_byte = {"<": b"L", ">": b"B"}[byte_order]
    code = TYPE_CODES[channels.dtype] if type_code is None else type_code
    header = (KEY + order_byte + struct.pack(byte_order + "h", code)
              + struct.pack(byte_order + "4" + size_code, x, y, z, c))
    return header + channels.astype(channels.dtype.newbyteorder(byte_order)).tobytes()


def test_big_endian_old_two_byte_header(tmp_path):
    stack = coded((3, 4, 5), np.uint16)
    path = tmp_path / "old.v3draw"
    path.write_bytes(v3draw_bytes(stack[np.newaxis], byte_order=">", size_code="H"))
    volume = read_volume(path)
    assert volume.array.dtype == np.uint16 and volume.array.dtype.isnative
    np.testing.assert_array_equal(volume.array, stack)
    assert volume.array[2, 3, 4] == 234
    assert volume.spacing == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_little_endian_four_byte_header(tmp_path, dtype):
    stack = coded((2, 3, 6), dtype) + (0.5 if dtype == np.float32 else 0)
    path = tmp_path / "new.v3draw"
    path.write_bytes(v3draw_bytes(stack[np.newaxis]))
    volume = read_volume(path)
    assert volume.array.dtype == dtype
    np.testing.assert_array_equal(volume.array, stack)


def test_big_endian_float32(tmp_path):
    stack = coded((2, 3, 4), np.float32) / 7
    path = tmp_path / "big.v3draw"
    path.write_bytes(v3draw_bytes(stack[np.newaxis], byte_order=">"))
    np.testing.assert_array_equal(read_volume(path).array, stack)


def test_two_channels_pick_the_second(tmp_path):
    channels = coded((2, 3, 4, 5), np.uint16)
    path = tmp_path / "two.v3draw"
    path.write_bytes(v3draw_bytes(channels))
    second = read_volume(path, channel=1).array
    np.testing.assert_array_equal(second, channels[1])
    assert second[0, 0, 0] == 1000
    with pytest.raises(InputError, match=r"two\.v3draw.*2 channels.*--channel"):
        read_volume(path)
    with pytest.raises(InputError, match=r"two\.v3draw.*out of range"):
        read_volume(path, channel=2)


def test_writer_bytes_match_the_layout(tmp_path):
    stack = coded((3, 4, 5), np.uint16)
    path = write_volume(tmp_path / "out.v3draw", stack, spacing=(2.0, 0.5, 0.5))
    assert path.read_bytes() == v3draw_bytes(stack[np.newaxis])
    assert read_volume(path).spacing == (1.0, 1.0, 1.0)  # v3draw has no spacing field


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.v3draw"
    path.write_bytes(v3draw_bytes(coded((1, 3, 4, 5), np.uint16))[:-1])
    with pytest.raises(InputError, match=r"cut\.v3draw.*truncated"):
        read_volume(path)


def test_file_cut_inside_the_header(tmp_path):
    path = tmp_path / "stub.v3draw"
    path.write_bytes(KEY + b"L")
    with pytest.raises(InputError, match=r"stub\.v3draw.*truncated"):
        read_volume(path)


@pytest.mark.parametrize(("content", "problem"), [
    (b"not a vaa3d file at all, just some text", "not a Vaa3D v3draw file"),
    (KEY + b"X" + bytes(18), "byte order"),
])
def test_bad_header(tmp_path, content, problem):
    path = tmp_path / "bad.v3draw"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"bad\.v3draw.*" + re.escape(problem)):
        read_volume(path)


def test_unknown_data_type_code(tmp_path):
    path = tmp_path / "f64.v3draw"
    path.write_bytes(v3draw_bytes(coded((1, 2, 2, 2), np.uint8), type_code=8))
    with pytest.raises(InputError, match=r"f64\.v3draw.*data type code 8"):
        read_volume(path)


def test_zero_slices_is_empty(tmp_path):
    path = tmp_path / "empty.v3draw"
    path.write_bytes(v3draw_bytes(np.zeros((1, 0, 4, 5), np.uint8)))
    with pytest.raises(InputError, match=r"empty\.v3draw.*empty"):
        read_volume(path)
