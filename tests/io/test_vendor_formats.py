"""The vendor formats of the ``formats`` extra: Imaris, BigDataViewer HDF5, CZI, ND2 and LIF.

Imaris and BigDataViewer files are HDF5, so they are written here with h5py in the layouts
their own software writes (Imaris' padded chunks and one-byte-per-character attributes,
BigDataViewer's int16 ``cells`` and XML beside the ``.h5``) and read back through
:func:`read_volume`. CZI, ND2 and LIF cannot be written without the vendors' software, so the
adapter is checked against a stand-in for ``bioio.BioImage`` that answers as bioio does. Without
the extra, every one of these files is refused with a sentence naming it.
"""

from __future__ import annotations

import struct
import sys
import types
import xml.etree.ElementTree as ElementTree
from typing import NamedTuple

import numpy as np
import pytest

from dineuro.errors import InputError
from dineuro.io import probe_volume, read_volume

SHAPE = (5, 20, 30)
#: Two channels of uint16 voxels, some above 32767 (BigDataViewer keeps them in int16).
CHANNELS = (np.random.default_rng(0).random((2, *SHAPE)) * 60000).astype(np.uint16)
#: (z, y, x) voxel size in micrometres.
SPACING = (2.0, 0.5, 0.25)


def _chars(value) -> np.ndarray:
    """An attribute as Imaris writes it: an array of one-character byte strings."""
    return np.array([c.encode() for c in str(value)], dtype="S1")


def write_imaris(path, channels=CHANNELS, unit="um", time_points=1, padded=(8, 32, 32)):
    """An Imaris 5.5 file: each channel's (z, y, x) data padded to whole (8, 32, 32) chunks,
    the image size and extents (x = axis 0) as text attributes of DataSetInfo/Image."""
    import h5py

    z, y, x = channels.shape[1:]
    per_um = {"um": 1.0, "nm": 1e3}[unit]
    origin = (-3.0, 1.0, 0.0)  # x, y, z: the extent, not its start, gives the voxel size
    sizes = (x * SPACING[2], y * SPACING[1], z * SPACING[0])
    with h5py.File(path, "w") as file:
        file.attrs["ImarisDataSet"] = _chars("ImarisDataSet")
        file.attrs["ImarisVersion"] = _chars("5.5.0")
        info = file.create_group("DataSetInfo/Image")
        for name, value in {"X": x, "Y": y, "Z": z, "Unit": unit}.items():
            info.attrs[name] = _chars(value)
        for axis in range(3):
            info.attrs[f"ExtMin{axis}"] = _chars(origin[axis] * per_um)
            info.attrs[f"ExtMax{axis}"] = _chars((origin[axis] + sizes[axis]) * per_um)
        for t in range(time_points):
            for c, stack in enumerate(channels):
                group = file.create_group(f"DataSet/ResolutionLevel 0/TimePoint {t}/Channel {c}")
                data = np.zeros(padded, stack.dtype)
                data[:z, :y, :x] = stack
                group.create_dataset("Data", data=data, chunks=padded, compression="gzip")
                for axis, size in zip("ZYX", (z, y, x), strict=True):
                    group.attrs[f"ImageSize{axis}"] = _chars(size)


def write_bdv(path, channels=CHANNELS, xml=True, tiles=False, unit="µm"):
    """A BigDataViewer HDF5 file (setup N = channel N, time point 0, one level) and its XML."""
    import h5py

    with h5py.File(path, "w") as file:
        for setup, stack in enumerate(channels):
            file[f"s{setup:02d}/resolutions"] = np.ones((1, 3))
            file[f"s{setup:02d}/subdivisions"] = np.array([[32, 32, 4]], np.int32)
            file.create_dataset(f"t00000/s{setup:02d}/0/cells", data=stack.view(np.int16),
                                chunks=(4, 20, 30))
    if not xml:
        return
    root = ElementTree.Element("SpimData", version="0.2")
    ElementTree.SubElement(root, "BasePath", type="relative").text = "."
    sequence = ElementTree.SubElement(root, "SequenceDescription")
    loader = ElementTree.SubElement(sequence, "ImageLoader", format="bdv.hdf5")
    ElementTree.SubElement(loader, "hdf5", type="relative").text = path.name
    setups = ElementTree.SubElement(sequence, "ViewSetups")
    z, y, x = channels.shape[1:]
    for setup in range(len(channels)):
        element = ElementTree.SubElement(setups, "ViewSetup")
        ElementTree.SubElement(element, "id").text = str(setup)
        ElementTree.SubElement(element, "size").text = f"{x} {y} {z}"
        voxel = ElementTree.SubElement(element, "voxelSize")
        ElementTree.SubElement(voxel, "unit").text = unit
        ElementTree.SubElement(voxel, "size").text = " ".join(str(s) for s in SPACING[::-1])
        attributes = ElementTree.SubElement(element, "attributes")
        for name, value in {"illumination": 0, "channel": 0 if tiles else setup,
                            "tile": setup if tiles else 0, "angle": 0}.items():
            ElementTree.SubElement(attributes, name).text = str(value)
    ElementTree.SubElement(sequence, "Timepoints", type="range")
    ElementTree.ElementTree(root).write(path.with_suffix(".xml"), encoding="utf-8")


@pytest.mark.parametrize(("unit", "channel"), [("um", 0), ("um", 1), ("nm", 1)])
def test_imaris_channels_are_read_without_padding_in_micrometres(tmp_path, unit, channel):
    pytest.importorskip("h5py")
    path = tmp_path / "cell.ims"
    write_imaris(path, unit=unit)
    volume = read_volume(path, channel=channel)
    np.testing.assert_array_equal(volume.array, CHANNELS[channel])
    assert volume.spacing == pytest.approx(SPACING)
    header = probe_volume(path, channel=channel)
    assert (header.shape, header.dtype, header.spacing) == (SHAPE, np.uint16, volume.spacing)


def test_an_imaris_file_with_two_channels_needs_one_picked(tmp_path):
    pytest.importorskip("h5py")
    path = tmp_path / "cell.ims"
    write_imaris(path)
    with pytest.raises(InputError, match=r"cell\.ims: has 2 channels; pass --channel"):
        read_volume(path)


def test_an_imaris_time_series_is_refused(tmp_path):
    pytest.importorskip("h5py")
    path = tmp_path / "movie.ims"
    write_imaris(path, channels=CHANNELS[:1], time_points=3)
    with pytest.raises(InputError, match="holds 3 time points"):
        probe_volume(path)


def test_an_hdf5_file_that_is_not_imaris_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "other.ims"
    with h5py.File(path, "w") as file:
        file["volume"] = CHANNELS[0]
    with pytest.raises(InputError, match="is not an Imaris 5.5"):
        read_volume(path)


def test_bigdataviewer_setups_are_channels_with_the_xml_voxel_size(tmp_path):
    pytest.importorskip("h5py")
    path = tmp_path / "dataset.h5"
    write_bdv(path)
    for channel in (0, 1):
        volume = read_volume(path, channel=channel)
        np.testing.assert_array_equal(volume.array, CHANNELS[channel])  # uint16 again
        assert volume.spacing == pytest.approx(SPACING)
    header = probe_volume(path, channel=1)
    assert (header.shape, header.dtype, header.spacing) == (SHAPE, np.uint16, volume.spacing)


def test_bigdataviewer_voxel_size_in_nanometres_is_converted(tmp_path):
    pytest.importorskip("h5py")
    path = tmp_path / "dataset.h5"
    write_bdv(path, channels=CHANNELS[:1], unit="nm")
    assert read_volume(path).spacing == pytest.approx(tuple(s * 1e-3 for s in SPACING))


def test_bigdataviewer_without_its_xml_has_unit_spacing(tmp_path):
    pytest.importorskip("h5py")
    path = tmp_path / "dataset.h5"
    write_bdv(path, channels=CHANNELS[:1], xml=False)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, CHANNELS[0])
    assert volume.spacing == (1.0, 1.0, 1.0)


def test_bigstitcher_tiles_are_not_taken_for_channels(tmp_path):
    pytest.importorskip("h5py")
    path = tmp_path / "tiles.h5"
    write_bdv(path, tiles=True)
    with pytest.raises(InputError, match="several tiles, angles or illuminations"):
        read_volume(path, channel=0)


def test_an_h5_file_without_bigdataviewer_layout_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "ilastik.h5"
    with h5py.File(path, "w") as file:
        file["exported_data"] = CHANNELS[0]
    with pytest.raises(InputError, match=r"ilastik\.h5: .*without BigDataViewer's layout"):
        probe_volume(path)


@pytest.mark.parametrize(("name", "module", "libraries"), [
    ("cell.ims", "h5py", "h5py"), ("dataset.h5", "h5py", "h5py"),
    ("cell.czi", "bioio", "bioio and bioio-czi"), ("cell.lif", "bioio_lif", "bioio and bioio-lif"),
])
def test_without_the_extra_the_file_is_refused_naming_it(tmp_path, monkeypatch, name, module,
                                                        libraries):
    path = tmp_path / name
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    expected = (f"{name}: reading {path.suffix} files needs the formats extra: pip install "
                f"'dineuro[formats]' ({libraries}).")
    for read in (read_volume, probe_volume):
        with pytest.raises(InputError) as error:
            read(path)
        assert str(error.value) == f"{tmp_path}/{expected}"


class PhysicalPixelSizes(NamedTuple):
    """bioio's (Z, Y, X) pixel sizes in micrometres, None where the file gives none."""

    Z: float | None
    Y: float | None
    X: float | None


PIXEL_SIZES = PhysicalPixelSizes(*SPACING)


def fake_bioio(monkeypatch, data, order="TCZYX", sizes=PIXEL_SIZES):
    """Install a ``bioio`` whose BioImage shows ``data`` (standard axes ``order``) as bioio
    does, and the three plugins; return the list of (path, reader) BioImage was opened with."""
    opened = []

    class BioImage:
        def __init__(self, image, reader=None):
            opened.append((image, reader))
            self.dims = types.SimpleNamespace(order=order, shape=data.shape)
            self.dask_data = data
            self.physical_pixel_sizes = sizes

    monkeypatch.setitem(sys.modules, "bioio", types.SimpleNamespace(BioImage=BioImage))
    for plugin in ("bioio_czi", "bioio_nd2", "bioio_lif"):
        monkeypatch.setitem(sys.modules, plugin, types.SimpleNamespace(Reader=plugin))
    return opened


@pytest.mark.parametrize(("name", "plugin"), [("a.czi", "bioio_czi"), ("a.nd2", "bioio_nd2"),
                                              ("a.lif", "bioio_lif")])
def test_bioio_images_are_read_with_their_plugin_and_spacing(tmp_path, monkeypatch, name,
                                                             plugin):
    opened = fake_bioio(monkeypatch, CHANNELS[np.newaxis])  # T, C, Z, Y, X
    path = tmp_path / name
    path.write_bytes(b"")
    volume = read_volume(path, channel=1)
    np.testing.assert_array_equal(volume.array, CHANNELS[1])
    assert volume.spacing == SPACING
    assert probe_volume(path, channel=0) == (SHAPE, np.uint16, SPACING)
    assert opened == [(path, plugin)] * 2


def test_bioio_gives_no_pixel_size_for_an_axis_then_it_is_one(tmp_path, monkeypatch):
    fake_bioio(monkeypatch, CHANNELS[np.newaxis, :1], sizes=PhysicalPixelSizes(None, 0.5, 0.5))
    path = tmp_path / "a.nd2"
    path.write_bytes(b"")
    assert read_volume(path).spacing == (1.0, 0.5, 0.5)


def test_bioio_rgb_samples_are_channels(tmp_path, monkeypatch):
    rgb = np.moveaxis(CHANNELS[:2, np.newaxis], 0, -1)[np.newaxis]  # T, C=1, Z, Y, X, S=2
    fake_bioio(monkeypatch, rgb, order="TCZYXS")
    path = tmp_path / "a.czi"
    path.write_bytes(b"")
    np.testing.assert_array_equal(read_volume(path, channel=1).array, CHANNELS[1])


def test_a_bioio_time_series_is_refused(tmp_path, monkeypatch):
    fake_bioio(monkeypatch, np.zeros((3, 1, *SHAPE), np.uint8))
    path = tmp_path / "movie.lif"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"movie\.lif: holds 3 time points"):
        probe_volume(path)


def test_a_file_bioio_cannot_parse_is_one_sentence(tmp_path, monkeypatch):
    def refuse(image, reader=None):
        raise RuntimeError("not a CZI file")

    fake_bioio(monkeypatch, CHANNELS)
    monkeypatch.setattr(sys.modules["bioio"], "BioImage", refuse)
    path = tmp_path / "broken.czi"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"broken\.czi: cannot be read by bioio \(not a CZI"):
        read_volume(path)


def test_v3dpbd_reads_what_vaa3d_s_pbd_encoder_wrote(tmp_path):
    """A file written by v3d-py-helper's PBD encoder (Vaa3D's scheme, uint8 and uint16): the
    header gives shape and dtype without the extra, the voxels come back exactly with it."""
    loaders = pytest.importorskip("v3dpy.loaders")
    for dtype, top in ((np.uint8, 255), (np.uint16, 4095)):
        stack = (np.random.default_rng(3).random((2, 5, 20, 30)) * top).astype(dtype)
        stack[:, 2, 5:9, :] = top  # runs, which the encoder packs
        path = tmp_path / f"stack_{np.dtype(dtype).name}.v3dpbd"
        loaders.PBD().save(path, stack)
        assert probe_volume(path, channel=1) == (stack.shape[1:], stack.dtype, (1.0, 1.0, 1.0))
        np.testing.assert_array_equal(read_volume(path, channel=1).array, stack[1])


def test_v3dpbd_without_the_extra_is_one_sentence(tmp_path, monkeypatch):
    path = tmp_path / "stack.v3dpbd"
    path.write_bytes(b"v3d_volume_pkbitdf_encodL" + struct.pack("<H4I", 1, 4, 3, 2, 1) + b"\0")
    assert probe_volume(path) == ((2, 3, 4), np.dtype(np.uint8), (1.0, 1.0, 1.0))
    monkeypatch.setitem(sys.modules, "v3dpy", None)
    monkeypatch.setitem(sys.modules, "v3dpy.loaders", None)
    with pytest.raises(InputError, match=r"formats extra.*v3d-py-helper"):
        read_volume(path)
    path.write_bytes(b"raw_image_stack_by_hpengL" + b"\0" * 18)
    with pytest.raises(InputError, match="not a Vaa3D v3dpbd file"):
        read_volume(path)
