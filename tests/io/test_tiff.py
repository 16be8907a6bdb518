"""TIFF reading: ImageJ hyperstacks, resolution tags, plain page sequences, broken files.

Inputs are written with tifffile directly, the way microscopes and Fiji write them; what our
writer puts in a file is checked with tifffile, the way Fiji would see it.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from dineuro.errors import InputError
from dineuro.io.volume import read_volume, write_volume


def distinct(shape, dtype=np.uint16):
    return np.arange(np.prod(shape), dtype=dtype).reshape(shape)


@pytest.fixture
def hyperstack(tmp_path):
    """A 2-channel ImageJ hyperstack, 3 slices of 4 x 5, z step 2.5, pixels 0.2 (y) x 0.4 (x)."""
    path = tmp_path / "hyper.tif"
    data = distinct((3, 2, 4, 5))
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.4, 1 / 0.2),
                     metadata={"axes": "ZCYX", "spacing": 2.5})
    return path, data


def test_hyperstack_channel_and_spacing(hyperstack):
    path, data = hyperstack
    volume = read_volume(path, channel=1)
    np.testing.assert_array_equal(volume.array, data[:, 1])
    assert volume.array.flags.c_contiguous
    assert volume.spacing == (2.5, 0.2, 0.4)


def test_hyperstack_needs_a_channel(hyperstack):
    path, _ = hyperstack
    with pytest.raises(InputError, match=r"hyper\.tif.*2 channels.*--channel"):
        read_volume(path)
    with pytest.raises(InputError, match=r"hyper\.tif.*channel 2 is out of range"):
        read_volume(path, channel=2)
    with pytest.raises(InputError, match=r"hyper\.tif.*out of range"):
        read_volume(path, channel=-1)


@pytest.mark.parametrize(("unit", "resolution", "expected"), [
    ("NONE", (1 / 0.4, 1 / 0.2), (1.0, 0.2, 0.4)),  # no unit: numbers as written
    ("CENTIMETER", (1e4 / 0.4, 1e4 / 0.2), (1.0, 0.2, 0.4)),  # pixels per cm -> um
])
def test_resolution_tags_give_xy_spacing(tmp_path, unit, resolution, expected):
    path = tmp_path / "res.tif"
    tifffile.imwrite(path, distinct((3, 4, 5)), photometric="minisblack", resolution=resolution,
                     resolutionunit=unit)
    assert read_volume(path).spacing == pytest.approx(expected, rel=1e-9)


def test_imagej_unit_converts_to_micrometres(tmp_path):
    path = tmp_path / "nm.tif"
    tifffile.imwrite(path, distinct((3, 4, 5)), imagej=True, resolution=(1 / 100, 1 / 50),
                     metadata={"axes": "ZYX", "spacing": 300.0, "unit": "nm"})
    assert read_volume(path).spacing == pytest.approx((0.3, 0.05, 0.1))


def test_plain_page_sequence_is_a_stack(tmp_path):
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as writer:
        for value in range(3):
            writer.write(np.full((4, 5), value, np.uint8), metadata=None)
    volume = read_volume(path)
    assert volume.array[:, 0, 0].tolist() == [0, 1, 2]
    assert volume.spacing == (1.0, 1.0, 1.0)


def test_rgb_samples_are_channels(tmp_path):
    path = tmp_path / "rgb.tif"
    data = distinct((3, 4, 5, 3), np.uint8)
    tifffile.imwrite(path, data, photometric="rgb")
    np.testing.assert_array_equal(read_volume(path, channel=2).array, data[..., 2])


def test_single_page_is_2d(tmp_path):
    path = tmp_path / "page.tif"
    tifffile.imwrite(path, distinct((4, 5)))
    with pytest.raises(InputError, match=r"page\.tif.*is 2D \(Y x X.*3D stack is needed"):
        read_volume(path)


def test_time_series_is_not_a_stack(tmp_path):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, distinct((2, 3, 4, 5), np.uint8), imagej=True,
                     metadata={"axes": "TZYX"})
    with pytest.raises(InputError, match=r"movie\.tif.*axes TZYX"):
        read_volume(path)


def test_non_positive_spacing_is_refused(tmp_path):
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, distinct((3, 4, 5)), imagej=True,
                     metadata={"axes": "ZYX", "spacing": 0.0})
    with pytest.raises(InputError, match=r"flat\.tif.*spacing"):
        read_volume(path)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_file(tmp_path, compression):
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, np.random.default_rng(0).integers(0, 2**16, (6, 40, 50), np.uint16),
                     imagej=compression is None, compression=compression)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[:-1000])
    with pytest.raises(InputError, match=r"cut\.tif: (is corrupt or truncated|cannot be read)"):
        read_volume(cut)


def test_page_sequence_cut_between_pages(tmp_path):
    # tifffile only logs the broken page chain and returns the pages before the cut.
    whole = tmp_path / "whole.tif"
    with tifffile.TiffWriter(whole) as writer:
        for value in range(6):
            writer.write(np.full((40, 50), value, np.uint8), metadata=None)
    cut = tmp_path / "cut.tif"
    with tifffile.TiffFile(whole) as tif:
        fifth_page = tif.pages[4].offset
    cut.write_bytes(whole.read_bytes()[:fifth_page])
    with pytest.raises(InputError, match=r"cut\.tif: is corrupt or truncated.*invalid page"):
        read_volume(cut)


def test_not_a_tiff(tmp_path):
    path = tmp_path / "text.tif"
    path.write_text("hello")
    with pytest.raises(InputError, match=r"text\.tif.*cannot be read as a TIFF"):
        read_volume(path)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_written_file_is_an_imagej_hyperstack(tmp_path, dtype):
    path = write_volume(tmp_path / "out.tif", distinct((5, 7, 9), dtype),
                        spacing=(2.5, 0.3, 0.17))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata["spacing"] == 2.5
        assert tif.imagej_metadata["unit"] == "micron"
        assert tif.series[0].axes == "ZYX"
        assert tif.series[0].dtype == dtype
        x_resolution = tif.pages[0].tags["XResolution"].value
        y_resolution = tif.pages[0].tags["YResolution"].value
    assert x_resolution[1] / x_resolution[0] == pytest.approx(0.17)
    assert y_resolution[1] / y_resolution[0] == pytest.approx(0.3)


def test_write_float64_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"out\.tif.*cannot hold float64"):
        write_volume(tmp_path / "out.tif", np.zeros((2, 3, 4)))
    assert not (tmp_path / "out.tif").exists()
