"""The public volume API: round trips through every format, dispatch errors, safe writing."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from dineuro.errors import InputError
from dineuro.io import _tiff
from dineuro.io.volume import (
    WRITABLE_EXTENSIONS,
    Volume,
    convert_volume,
    read_volume,
    write_volume,
)

SPACING = (2.5, 0.3, 0.17)
# v3draw has no spacing field: it reads back as 1.0 whatever was written.
STORED_SPACING = {".tif": SPACING, ".tiff": SPACING, ".nii": SPACING, ".nii.gz": SPACING,
                  ".v3draw": (1.0, 1.0, 1.0)}


def random_stack(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def test_every_format_is_tested():
    assert set(STORED_SPACING) == set(WRITABLE_EXTENSIONS)


@pytest.mark.parametrize("extension", WRITABLE_EXTENSIONS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(5, 7, 9), (3, 1, 4), (2, 6, 1)])
def test_round_trip(tmp_path, extension, dtype, shape):
    stack = random_stack(shape, dtype)
    path = write_volume(tmp_path / f"stack{extension}", Volume(stack, SPACING))
    volume = read_volume(path)
    assert volume.array.dtype == dtype
    np.testing.assert_array_equal(volume.array, stack)
    assert volume.spacing == STORED_SPACING[extension]


@pytest.mark.parametrize("extension", [".tif", ".nii.gz"])
def test_int16_round_trip(tmp_path, extension):
    stack = random_stack((3, 4, 5), np.int16)
    np.testing.assert_array_equal(read_volume(write_volume(tmp_path / f"s{extension}", stack))
                                  .array, stack)


def test_bare_array_gets_unit_spacing_and_explicit_spacing_wins(tmp_path):
    stack = random_stack((3, 4, 5), np.uint8)
    assert read_volume(write_volume(tmp_path / "a.tif", stack)).spacing == (1.0, 1.0, 1.0)
    written = write_volume(tmp_path / "b.nii", Volume(stack, SPACING), spacing=(1.0, 2.0, 3.0))
    assert read_volume(written).spacing == (1.0, 2.0, 3.0)


def test_single_channel_file_accepts_channel_0_only(tmp_path):
    path = write_volume(tmp_path / "one.tif", random_stack((3, 4, 5), np.uint8))
    assert read_volume(path, channel=0).array.shape == (3, 4, 5)
    with pytest.raises(InputError, match=r"one\.tif.*1 channel.*channel 1 is out of range"):
        read_volume(path, channel=1)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"ghost\.tif: does not exist"):
        read_volume(tmp_path / "ghost.tif")


def test_unknown_extension_lists_the_supported_ones(tmp_path):
    path = tmp_path / "stack.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match=r"stack\.png.*\.tif.*\.v3draw.*\.nii\.gz.*folder"):
        read_volume(path)
    with pytest.raises(InputError, match=r"out\.zarr.*unsupported file type.*\.tif"):
        write_volume(tmp_path / "out.zarr", np.zeros((2, 3, 4), np.uint8))


def test_uppercase_extension(tmp_path):
    stack = random_stack((3, 4, 5), np.uint16)
    np.testing.assert_array_equal(read_volume(write_volume(tmp_path / "S.TIF", stack)).array,
                                  stack)


@pytest.mark.parametrize(("array", "spacing"), [
    (np.zeros((4, 5), np.uint8), None),
    (np.zeros((0, 4, 5), np.uint8), None),
    (np.zeros((3, 4, 5), np.uint8), (1.0, 1.0)),
    (np.zeros((3, 4, 5), np.uint8), (1.0, 0.0, 1.0)),
    (np.zeros((3, 4, 5), np.uint8), (1.0, float("nan"), 1.0)),
])
def test_write_refuses_bad_arrays_and_spacings(tmp_path, array, spacing):
    with pytest.raises(InputError, match="should be"):
        write_volume(tmp_path / "out.tif", array, spacing)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extension", WRITABLE_EXTENSIONS)
def test_write_never_overwrites(tmp_path, extension):
    path = tmp_path / f"mine{extension}"
    path.write_bytes(b"precious")
    with pytest.raises(InputError, match=rf"mine{extension}: already exists"):
        write_volume(path, np.zeros((2, 3, 4), np.uint8))
    assert path.read_bytes() == b"precious"


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def half_write(path, array, spacing):
        path.write_bytes(b"half a stack")
        raise OSError("disk full")

    monkeypatch.setattr(_tiff, "write", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_volume(tmp_path / "out.tif", np.zeros((2, 3, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_convert_keeps_dtype_and_spacing(tmp_path):
    stack = random_stack((5, 7, 9), np.uint16)
    src = write_volume(tmp_path / "in.tif", stack, spacing=SPACING)
    returned = convert_volume(src, tmp_path / "out.nii.gz")
    converted = read_volume(tmp_path / "out.nii.gz")
    for volume in (returned, converted):
        assert volume.array.dtype == np.uint16 and volume.spacing == SPACING
        np.testing.assert_array_equal(volume.array, stack)


def test_convert_picks_a_channel(tmp_path):
    channels = random_stack((3, 2, 4, 5), np.uint8)
    src = tmp_path / "two.tif"
    tifffile.imwrite(src, channels, imagej=True, metadata={"axes": "ZCYX"})
    convert_volume(src, tmp_path / "green.v3draw", channel=1)
    np.testing.assert_array_equal(read_volume(tmp_path / "green.v3draw").array, channels[:, 1])


def test_convert_refuses_existing_or_same_output(tmp_path):
    src = write_volume(tmp_path / "in.tif", np.zeros((2, 3, 4), np.uint8))
    before = src.read_bytes()
    with pytest.raises(InputError, match=r"in\.tif: is both the input and the output"):
        convert_volume(src, tmp_path / "." / "in.tif")
    other = tmp_path / "other.nii"
    other.write_bytes(b"precious")
    with pytest.raises(InputError, match=r"other\.nii: already exists"):
        convert_volume(src, other)
    assert src.read_bytes() == before and other.read_bytes() == b"precious"


def test_convert_checks_the_output_before_reading(tmp_path):
    with pytest.raises(InputError, match=r"out\.png: has an unsupported file type"):
        convert_volume(tmp_path / "missing.tif", tmp_path / "out.png")


def test_convert_to_a_format_that_cannot_hold_the_dtype(tmp_path):
    src = write_volume(tmp_path / "in.nii", random_stack((2, 3, 4), np.int16))
    with pytest.raises(InputError, match=r"out\.v3draw: cannot hold int16 voxels"):
        convert_volume(src, tmp_path / "out.v3draw")
    assert not (tmp_path / "out.v3draw").exists()
