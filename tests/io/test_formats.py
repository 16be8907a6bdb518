"""The formats labs record in: compressed TIFF, OME-TIFF, Zeiss LSM and OME-Zarr (NGFF 0.4/0.5).

Every file here is written in the format's official layout by its own library (tifffile for
TIFF flavours, zarr with hand-written NGFF metadata for OME-Zarr), and read back through
:func:`read_volume`: the voxels must be the ones written and the spacing the one declared,
converted to micrometres.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from dineuro.errors import InputError
from dineuro.io import probe_volume, read_volume, write_volume
from dineuro.outputs import stack_name
from dineuro.predict import find_stacks

STACK = (np.random.default_rng(0).random((5, 20, 30)) * 200).astype(np.uint8)


@pytest.mark.parametrize("compression", ["lzw", "zstd", "deflate", "packbits"])
def test_compressed_tiffs_read_as_written(tmp_path, compression):
    path = tmp_path / f"{compression}.tif"
    tifffile.imwrite(path, STACK, compression=compression)
    np.testing.assert_array_equal(read_volume(path).array, STACK)


@pytest.mark.parametrize(("unit", "factor"), [("µm", 1.0), ("nm", 1e-3), ("mm", 1e3)])
def test_ome_tiff_physical_size_is_the_spacing(tmp_path, unit, factor):
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, STACK, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeZ": 2.0, "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.25,
        "PhysicalSizeZUnit": unit, "PhysicalSizeYUnit": unit, "PhysicalSizeXUnit": unit})
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, STACK)
    assert volume.spacing == pytest.approx((2.0 * factor, 0.5 * factor, 0.25 * factor))
    assert probe_volume(path).spacing == volume.spacing


def test_an_ome_tiff_pyramid_is_read_at_full_resolution(tmp_path):
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(STACK, subifds=1, metadata={"axes": "ZYX", "PhysicalSizeX": 0.3,
                                              "PhysicalSizeY": 0.3, "PhysicalSizeZ": 1.5})
        tif.write(STACK[:, ::2, ::2], subfiletype=1)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, STACK)
    assert volume.spacing == pytest.approx((1.5, 0.3, 0.3))


def test_lsm_files_are_read_with_their_voxel_size_in_metres(tmp_path, monkeypatch):
    """tifffile cannot write LSM, so an LSM is a TIFF that says it is one: what tifffile
    reports of a real LSM's CZ_LSMINFO block (voxel sizes in metres) is put in its place."""
    path = tmp_path / "scan.lsm"
    tifffile.imwrite(path, STACK)
    monkeypatch.setattr(tifffile.TiffFile, "is_lsm", property(lambda self: True), raising=False)
    monkeypatch.setattr(tifffile.TiffFile, "lsm_metadata", property(
        lambda self: {"VoxelSizeX": 2e-7, "VoxelSizeY": 2e-7, "VoxelSizeZ": 1e-6}))
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, STACK)
    assert volume.spacing == pytest.approx((1.0, 0.2, 0.2))


def test_lsm_is_read_but_never_written(tmp_path):
    with pytest.raises(InputError, match="unsupported file type"):
        write_volume(tmp_path / "out.lsm", STACK, (1.0, 1.0, 1.0))


def _ome_zarr(path, version: str, data: np.ndarray, axes: str, scale, units=None,
              level_path: str = "s0"):
    """An OME-Zarr image in the NGFF ``version`` layout, with a half-size second level."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    units = units or {}
    multiscales = {
        "axes": [{"name": a, "type": "space" if a in "zyx" else {"t": "time", "c": "channel"}[a],
                  **({"unit": units[a]} if a in units else {})} for a in axes],
        "datasets": [
            {"path": level_path,
             "coordinateTransformations": [{"type": "scale", "scale": list(scale)}]},
            {"path": "s1", "coordinateTransformations": [
                {"type": "scale", "scale": [s * (2 if a in "yx" else 1)
                                            for a, s in zip(axes, scale, strict=True)]}]}]}
    if version == "0.4":
        group.attrs["multiscales"] = [{"version": "0.4", **multiscales}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscales]}
    group.create_array(level_path, data=data)
    group.create_array("s1", data=data[..., ::2, ::2])
    return path


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_level_zero_and_its_scale_in_micrometres(tmp_path, version):
    image = _ome_zarr(tmp_path / "brain.ome.zarr", version, STACK[None, None], "tczyx",
                      (1, 1, 2.0, 500.0, 250.0),
                      {"z": "micrometer", "y": "nanometer", "x": "nanometer"}, "full")
    volume = read_volume(image)
    np.testing.assert_array_equal(volume.array, STACK)
    assert volume.spacing == pytest.approx((2.0, 0.5, 0.25))
    assert probe_volume(image) == (STACK.shape, STACK.dtype, volume.spacing)


def test_ome_zarr_channels_are_chosen_as_in_other_formats(tmp_path):
    two = np.stack([STACK, 255 - STACK])
    image = _ome_zarr(tmp_path / "two.ome.zarr", "0.5", two, "czyx", (1, 1, 1, 1))
    np.testing.assert_array_equal(read_volume(image, channel=1).array, 255 - STACK)
    with pytest.raises(InputError, match="channel"):
        read_volume(image)


def test_ome_zarr_that_cannot_be_one_stack_is_refused_in_one_sentence(tmp_path):
    movie = _ome_zarr(tmp_path / "movie.ome.zarr", "0.5", np.stack([STACK, STACK]), "tzyx",
                      (1, 1, 1, 1))
    with pytest.raises(InputError, match="2 time points"):
        read_volume(movie)
    bare = tmp_path / "bare.zarr"
    zarr.open_group(str(bare), mode="w").create_array("0", data=STACK)
    with pytest.raises(InputError, match="without OME-Zarr multiscales metadata"):
        read_volume(bare)
    broken = _ome_zarr(tmp_path / "broken.ome.zarr", "0.4", STACK, "zyx", (1, 1, 1))
    zarr.open_group(str(broken), mode="a", zarr_format=2).attrs["multiscales"] = [
        {"version": "0.4", "axes": ["z", "y", "x"], "datasets": [{"path": "gone"}]}]
    with pytest.raises(InputError, match="'gone'"):
        read_volume(broken)


def test_ome_zarr_written_and_read_back_with_its_spacing_and_chunks(tmp_path):
    """What `dineuro convert stack.tif brain.ome.zarr` makes for a distributed run: NGFF 0.5,
    the voxels and spacing kept, chunks of 64x256x256 (fewer where the stack is thinner); a
    stack without units stays without; nothing is written over."""
    from dineuro.io._readers import Unitless

    array = np.random.default_rng(0).integers(0, 4000, (70, 300, 40), dtype=np.uint16)
    path = write_volume(tmp_path / "brain.ome.zarr", array, (2.0, 0.5, 0.25))
    back = read_volume(path)
    assert np.array_equal(back.array, array) and back.spacing == (2.0, 0.5, 0.25)
    group = zarr.open_group(str(path), mode="r")
    assert group.attrs["ome"]["version"] == "0.5" and group["0"].chunks == (64, 256, 40)
    unitless = write_volume(tmp_path / "plain.ome.zarr", array[:2], Unitless((1.0, 1.0, 1.0)))
    assert isinstance(read_volume(unitless).spacing, Unitless)
    with pytest.raises(InputError, match="already exists"):
        write_volume(path, array)
    with pytest.raises(InputError, match="cannot hold bool"):
        write_volume(tmp_path / "mask.ome.zarr", array > 0)
    assert not (tmp_path / "mask.ome.zarr").exists()


def test_a_plain_zarr_array_is_a_stack(tmp_path):
    array = zarr.create_array(store=str(tmp_path / "plain.zarr"), shape=STACK.shape,
                              dtype=STACK.dtype)
    array[...] = STACK
    array.attrs["spacing"] = [2.0, 0.5, 0.5]
    volume = read_volume(tmp_path / "plain.zarr")
    np.testing.assert_array_equal(volume.array, STACK)
    assert volume.spacing == (2.0, 0.5, 0.5)


def test_batches_take_ome_zarr_images_as_stacks_and_name_them_without_endings(tmp_path):
    folder = tmp_path / "session"
    folder.mkdir()
    _ome_zarr(folder / "a.ome.zarr", "0.5", STACK, "zyx", (1, 1, 1))
    tifffile.imwrite(folder / "b.ome.tif", STACK, ome=True, metadata={"axes": "ZYX"})
    stacks = sorted(find_stacks([folder]))
    assert [s.name for s in stacks] == ["a.ome.zarr", "b.ome.tif"]
    assert [stack_name(s) for s in stacks] == ["a", "b"]
    assert find_stacks([folder / "a.ome.zarr"]) == [folder / "a.ome.zarr"]


def test_written_tiffs_are_compressed_and_open_in_their_display_range(tmp_path):
    """A sparse map shrinks (deflate), and a 0/1 mask opens in Fiji as 0..1, not 0..255."""
    prob = np.zeros((20, 64, 64), np.float32)
    prob[:, 30:33, :] = 0.8
    mask = (prob > 0.5).astype(np.uint8)
    for name, array in (("prob.tif", prob), ("mask.tif", mask)):
        write_volume(tmp_path / name, array, (2.0, 0.5, 0.5))
        with tifffile.TiffFile(tmp_path / name) as tif:
            assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
            shown = (tif.imagej_metadata["min"], tif.imagej_metadata["max"])
        assert shown == (0.0, float(array.max()))
        assert (tmp_path / name).stat().st_size < array.nbytes / 5
        np.testing.assert_array_equal(read_volume(tmp_path / name).array, array)


def _imagej_unit(path):
    with tifffile.TiffFile(path) as tif:
        return tif.imagej_metadata.get("unit")


def test_outputs_say_micrometres_only_when_the_input_did(tmp_path):
    """A stack without a unit (a plain TIFF, a v3draw) gives outputs without one, so Fiji shows
    pixels, not micrometres the microscope never reported; a calibrated stack keeps micron."""
    import torch

    from dineuro.data.normalize import NormalizationConfig
    from dineuro.predictor import Predictor

    net = Predictor(torch.nn.Conv3d(1, 2, 1), (8, 8, 8), NormalizationConfig(), "a 1x1x1 conv",
                    precision="fp32")
    tifffile.imwrite(tmp_path / "plain.tif", STACK)
    write_volume(tmp_path / "calibrated.tif", STACK, (2.0, 0.5, 0.5))
    write_volume(tmp_path / "vaa3d.v3draw", STACK, (2.0, 0.5, 0.5))
    for name, unit in (("plain.tif", None), ("calibrated.tif", "micron"),
                       ("vaa3d.v3draw", None)):
        out = tmp_path / name.replace(".", "_")
        out.mkdir()
        prob_path, mask_path = net.predict_to(tmp_path / name, out)
        assert _imagej_unit(prob_path) == unit and _imagej_unit(mask_path) == unit, name
        assert read_volume(prob_path).spacing == read_volume(tmp_path / name).spacing
    write_volume(tmp_path / "from_v3draw.nii", read_volume(tmp_path / "vaa3d.v3draw"))
    import nibabel

    assert nibabel.load(tmp_path / "from_v3draw.nii").header.get_xyzt_units()[0] == "unknown"
