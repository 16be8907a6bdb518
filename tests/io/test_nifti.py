"""NIfTI: axis order against nibabel's own indexing, spacing and units, dtype and scaling."""

from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from dineuro.errors import InputError
from dineuro.io.volume import read_volume, write_volume

SCL_SLOPE_OFFSET = 112  # NIfTI-1 header: float32 scl_slope, then float32 scl_inter


def zyx_stack(dtype=np.uint16):
    """A (z, y, x) = (2, 3, 4) array whose value spells its index: 123 at z=1, y=2, x=3."""
    z, y, x = np.indices((2, 3, 4))
    return (100 * z + 10 * y + x).astype(dtype)


def save_nifti(path, xyz, zooms=(1.0, 1.0, 1.0), unit="micron", endianness=None):
    header = nib.Nifti1Header(endianness=endianness)
    header.set_data_dtype(xyz.dtype)
    image = nib.Nifti1Image(xyz, np.diag([*zooms, 1.0]), header=header)
    image.header.set_xyzt_units(unit)
    nib.save(image, path)
    return path


def test_written_axes_match_nibabel_indexing(tmp_path):
    stack = zyx_stack()
    path = write_volume(tmp_path / "out.nii.gz", stack, spacing=(2.5, 0.2, 0.4))
    image = nib.load(path)
    data = image.get_fdata()
    assert data.shape == (4, 3, 2)
    for z, y, x in np.ndindex(stack.shape):
        assert data[x, y, z] == stack[z, y, x]
    assert image.get_data_dtype() == np.uint16
    assert image.header.get_zooms() == pytest.approx((0.4, 0.2, 2.5))
    assert image.header.get_xyzt_units()[0] == "micron"
    np.testing.assert_allclose(image.affine, np.diag([0.4, 0.2, 2.5, 1.0]))


def test_read_axes_and_spacing_from_a_nibabel_file(tmp_path):
    stack = zyx_stack()
    path = save_nifti(tmp_path / "in.nii", np.ascontiguousarray(stack.transpose()),
                      zooms=(0.4, 0.2, 2.5))
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, stack)
    assert volume.array.flags.c_contiguous and volume.array.dtype == np.uint16
    assert volume.spacing == (2.5, 0.2, 0.4)


def test_millimetres_become_micrometres(tmp_path):
    path = save_nifti(tmp_path / "mm.nii", zyx_stack().transpose(), zooms=(0.0004, 0.0002, 0.003),
                      unit="mm")
    assert read_volume(path).spacing == pytest.approx((3.0, 0.2, 0.4))


def test_big_endian_file_reads_in_native_order(tmp_path):
    path = save_nifti(tmp_path / "big.nii", zyx_stack().transpose(), endianness=">")
    array = read_volume(path).array
    assert array.dtype.isnative and array.dtype == np.uint16
    np.testing.assert_array_equal(array, zyx_stack())


@pytest.mark.parametrize(("slope", "inter", "dtype", "factor"), [
    (0.0, 0.0, np.uint16, 1),  # slope 0 means "no scaling" in NIfTI
    (1.0, 0.0, np.uint16, 1),
    (2.0, 0.0, np.float64, 2),  # nibabel applies the scaling in float64
])
def test_scaling_only_when_asked(tmp_path, slope, inter, dtype, factor):
    path = save_nifti(tmp_path / "scaled.nii", zyx_stack().transpose())
    with open(path, "r+b") as file:
        file.seek(SCL_SLOPE_OFFSET)
        file.write(struct.pack("<2f", slope, inter))
    array = read_volume(path).array
    assert array.dtype == dtype
    np.testing.assert_array_equal(array, zyx_stack() * factor)


def test_singleton_time_axis_is_dropped(tmp_path):
    path = save_nifti(tmp_path / "t1.nii", zyx_stack().transpose()[..., np.newaxis])
    np.testing.assert_array_equal(read_volume(path).array, zyx_stack())


def test_time_series_is_refused(tmp_path):
    path = save_nifti(tmp_path / "movie.nii", np.stack([zyx_stack().transpose()] * 2, axis=-1))
    with pytest.raises(InputError, match=r"movie\.nii.*axes TZYX"):
        read_volume(path)


def test_vector_components_are_channels(tmp_path):
    channels = np.stack([zyx_stack(), zyx_stack() + 1000])  # (c, z, y, x)
    xyztc = channels.transpose()[:, :, :, np.newaxis]
    path = save_nifti(tmp_path / "vec.nii", np.ascontiguousarray(xyztc))
    np.testing.assert_array_equal(read_volume(path, channel=1).array, channels[1])
    with pytest.raises(InputError, match=r"vec\.nii.*2 channels"):
        read_volume(path)


def test_2d_image_is_refused(tmp_path):
    path = save_nifti(tmp_path / "flat.nii", np.zeros((4, 3), np.uint8), zooms=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match=r"flat\.nii.*is 2D"):
        read_volume(path)


def test_truncated_gzip(tmp_path):
    path = save_nifti(tmp_path / "whole.nii.gz", zyx_stack().transpose())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(InputError, match=r"cut\.nii\.gz.*cannot be read as a NIfTI"):
        read_volume(cut)


def test_not_nifti(tmp_path):
    path = tmp_path / "text.nii.gz"
    path.write_bytes(gzip.compress(b"this is not a NIfTI header"))
    with pytest.raises(InputError, match=r"text\.nii\.gz.*cannot be read as a NIfTI"):
        read_volume(path)
