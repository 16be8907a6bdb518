"""The napari readers, called directly and through the npe2 manifest as napari finds them."""

from __future__ import annotations

import numpy as np
import pytest

from dineuro.errors import InputError
from dineuro.io import SwcTree, swc_to_zyx, write_swc, write_volume
from dineuro.io.swc_units import in_micrometres, metadata_comment
from dineuro.napari._reader import (
    read_stack_layers,
    read_swc_layers,
    stack_reader,
    swc_reader,
)

SPACING = (2.0, 0.5, 0.5)


def _tree(comments=()) -> SwcTree:
    return SwcTree([1, 2, 3, 4], [1, 3, 3, 3], [[5, 6, 1], [8, 6, 1], [11, 9, 2], [9, 2, 3]],
                   [2, 1, 1, 1], [-1, 1, 2, 2], list(comments))


@pytest.fixture
def swc_file(tmp_path):
    path = tmp_path / "neuron.swc"
    write_swc(path, _tree([metadata_comment("voxel", SPACING)]))
    return path


def test_readers_claim_their_files_only(swc_file):
    assert swc_reader(swc_file) is read_swc_layers and swc_reader(str(swc_file)) is not None
    assert swc_reader("neuron_prob.tif") is None and swc_reader([str(swc_file)]) is None
    for name in ("neuron_prob.tif", "neuron_mask.tif", "neuron.v3draw", "neuron.nii.gz"):
        assert stack_reader(name) is read_stack_layers
    assert stack_reader("neuron.swc") is None


def test_an_swc_file_becomes_paths_through_its_nodes(swc_file):
    [(paths, kwargs, kind)] = read_swc_layers(swc_file)
    assert kind == "shapes" and kwargs["name"] == "neuron.swc"
    vertices = np.unique(np.concatenate(paths), axis=0)
    np.testing.assert_allclose(vertices, np.unique(swc_to_zyx(_tree().xyz), axis=0))
    assert kwargs["scale"] == SPACING


def test_a_micrometre_swc_file_is_shown_in_voxels_at_its_spacing(tmp_path, swc_file):
    path = tmp_path / "microns.swc"
    write_swc(path, in_micrometres(_tree(), SPACING))
    [(paths, kwargs, _)] = read_swc_layers(path)
    [(voxel_paths, _, _)] = read_swc_layers(swc_file)
    assert kwargs["scale"] == SPACING
    for got, want in zip(paths, voxel_paths, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-3)  # SWC files keep 3 decimals


def test_an_untraced_swc_gives_an_empty_layer(tmp_path):
    path = tmp_path / "empty.swc"
    path.write_text("# not traced from empty_prob.tif: nothing above the threshold\n")
    [(paths, _, kind)] = read_swc_layers(path)
    assert paths == [] and kind == "shapes"


@pytest.mark.parametrize(("dtype", "top"), [(np.float32, 1), (np.uint8, 255)])
def test_a_probability_map_is_an_image_at_its_spacing(tmp_path, dtype, top):
    path = tmp_path / "neuron_prob.tif"
    write_volume(path, np.zeros((3, 4, 5), dtype), spacing=SPACING)
    [(data, kwargs, kind)] = read_stack_layers(path)
    assert kind == "image" and data.shape == (3, 4, 5) and data.dtype == dtype
    assert kwargs["scale"] == SPACING and kwargs["contrast_limits"] == (0, top)
    assert kwargs["colormap"] == "magma" and kwargs["name"] == "neuron_prob"


def test_a_mask_is_labels_at_its_spacing(tmp_path):
    path = tmp_path / "neuron_mask.tif"
    write_volume(path, np.eye(4, dtype=np.uint8)[None].repeat(3, 0), spacing=SPACING)
    [(data, kwargs, kind)] = read_stack_layers(path)
    assert kind == "labels" and data.sum() == 12 and kwargs["scale"] == SPACING
    write_volume(tmp_path / "float_mask.tif", np.zeros((3, 4, 5), np.float32))
    with pytest.raises(InputError, match="float_mask.tif: a mask should hold integer"):
        read_stack_layers(tmp_path / "float_mask.tif")


def test_other_stacks_are_grey_images(tmp_path):
    path = tmp_path / "neuron.v3draw"
    write_volume(path, np.ones((3, 4, 5), np.uint16))
    [(data, kwargs, kind)] = read_stack_layers(path)
    assert kind == "image" and kwargs["colormap"] == "gray" and kwargs["scale"] == (1, 1, 1)


@pytest.fixture
def plugins():
    """npe2's plugin manager with the installed plugins found, as napari finds them at start."""
    import npe2

    manager = npe2.PluginManager.instance()
    manager.discover()
    return manager


def test_napari_finds_the_readers_through_the_manifest(tmp_path, swc_file, plugins):
    """What napari does on File > Open, without a viewer: npe2 matches the manifest's filename
    patterns and calls the reader."""
    import npe2

    prob = tmp_path / "neuron_prob.tif"
    write_volume(prob, np.zeros((3, 4, 5), np.float32), spacing=SPACING)
    for path, kind in ((swc_file, "shapes"), (prob, "image")):
        [(_, kwargs, got)] = npe2.read([str(path)], stack=False, plugin_name="dineuro")
        assert got == kind and kwargs["scale"] == SPACING


def test_the_manifest_offers_the_widget(plugins):
    from dineuro.napari._widget import TraceWidget

    [widget] = [w for w in plugins.iter_widgets() if w.plugin_name == "dineuro"]
    assert widget.display_name == "Predict and trace"
    assert widget.get_callable() is TraceWidget
