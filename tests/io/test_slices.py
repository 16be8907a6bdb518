"""Folders of 2D TIFF slices: natural order, ignored files, mismatched slices."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from dineuro.errors import InputError
from dineuro.io.volume import read_volume


def write_slices(folder, names, shape=(4, 5), dtype=np.uint16):
    """One constant slice per name; its value is the number in the name."""
    folder.mkdir(exist_ok=True)
    for name in names:
        value = int("".join(filter(str.isdigit, name)))
        tifffile.imwrite(folder / name, np.full(shape, value, dtype))


@pytest.mark.parametrize("names", [
    ["10.tif", "2.tif", "1.tif"],
    ["01.tif", "10.tif", "02.tif", "09.tif"],
    ["slice_10.TIF", "slice_9.tiff", "slice_100.tif"],
])
def test_natural_order(tmp_path, names):
    write_slices(tmp_path / "stack", names)
    volume = read_volume(tmp_path / "stack")
    numbers = sorted(int("".join(filter(str.isdigit, name))) for name in names)
    assert volume.array[:, 0, 0].tolist() == numbers
    assert volume.array.shape == (len(names), 4, 5)
    assert volume.array.dtype == np.uint16


def test_hidden_and_other_files_are_ignored(tmp_path):
    folder = tmp_path / "stack"
    write_slices(folder, ["1.tif", "2.tif", ".3.tif"])
    (folder / "notes.txt").write_text("imaged on Tuesday")
    (folder / "4.png").write_bytes(b"\x89PNG")
    (folder / "5.tif").mkdir()
    assert read_volume(folder).array[:, 0, 0].tolist() == [1, 2]


def test_spacing_from_the_first_slice(tmp_path):
    folder = tmp_path / "stack"
    folder.mkdir()
    for name in ("1.tif", "2.tif"):
        tifffile.imwrite(folder / name, np.zeros((4, 5), np.uint8), resolution=(1 / 0.4, 1 / 0.2),
                         resolutionunit="NONE")
    assert read_volume(folder).spacing == pytest.approx((1.0, 0.2, 0.4))


def test_mismatched_shape_names_the_slice(tmp_path):
    folder = tmp_path / "stack"
    write_slices(folder, ["1.tif", "2.tif", "4.tif"])
    write_slices(folder, ["3.tif"], shape=(4, 6))
    with pytest.raises(InputError, match=r"3\.tif: has shape \(4, 6\).*first slice 1\.tif"):
        read_volume(folder)


def test_mismatched_dtype_names_the_slice(tmp_path):
    folder = tmp_path / "stack"
    write_slices(folder, ["1.tif", "2.tif"])
    write_slices(folder, ["3.tif"], dtype=np.uint8)
    with pytest.raises(InputError, match=r"3\.tif: has shape .* dtype uint8"):
        read_volume(folder)


def test_a_stack_among_slices_names_it(tmp_path):
    folder = tmp_path / "stack"
    write_slices(folder, ["1.tif"])
    tifffile.imwrite(folder / "2.tif", np.zeros((3, 4, 5), np.uint16), photometric="minisblack")
    with pytest.raises(InputError, match=r"2\.tif: is not a 2D slice"):
        read_volume(folder)


def test_folder_without_slices(tmp_path):
    folder = tmp_path / "nothing_here"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images")
    with pytest.raises(InputError, match=r"nothing_here: holds no TIFF slices"):
        read_volume(folder)
