"""SWC trees and maps as napari layer data: coordinates, scale, colours, contrast."""

from __future__ import annotations

import numpy as np
import pytest

from dineuro.errors import InputError
from dineuro.io import SwcTree, swc_to_zyx
from dineuro.io.swc_units import in_micrometres, metadata_comment
from dineuro.napari import (
    mask_layer_data,
    probability_layer_data,
    swc_layer_data,
)
from dineuro.napari._layers import OTHER_TYPE_COLOUR, TYPE_COLOURS, unbranched_paths

SPACING = (2.0, 0.5, 0.25)


def _forked_tree() -> SwcTree:
    """A soma, a dendrite that forks into two, an axon from the soma, and a lone point."""
    xyz = [[10, 10, 2], [12, 10, 2], [14, 11, 3], [16, 13, 3], [15, 8, 4], [17, 6, 4],
           [8, 9, 1], [6, 8, 1], [30, 30, 5]]
    return SwcTree(ids=[1, 2, 3, 4, 5, 6, 7, 8, 9], types=[1, 3, 3, 3, 3, 3, 2, 2, 7],
                   xyz=xyz, radius=[3, 1, 1, 1, 1, 1, 1, 1, 1],
                   parents=[-1, 1, 2, 3, 3, 5, 1, 7, -1],
                   comments=[metadata_comment("voxel", SPACING)])


def _edges(paths: list[np.ndarray]) -> set[tuple[tuple[float, ...], tuple[float, ...]]]:
    return {(tuple(a), tuple(b)) for path in paths for a, b in zip(path[:-1], path[1:],
                                                                  strict=True)}


def test_paths_hold_every_edge_once_in_zyx_voxels():
    tree = _forked_tree()
    paths, kwargs, kind = swc_layer_data(tree)
    zyx = swc_to_zyx(tree.xyz)
    parent = tree.parent_index
    assert kind == "shapes" and kwargs["shape_type"] == "path" and kwargs["ndim"] == 3
    expected = {(tuple(zyx[p]), tuple(zyx[i])) for i, p in enumerate(parent) if p >= 0}
    assert _edges(paths) == expected
    assert sum(len(path) - 1 for path in paths) == len(expected)  # each edge once
    # soma -> fork, fork -> tip, fork -> tip, soma -> axon tip; the lone point has no edge
    assert [len(path) for path in paths] == [3, 2, 3, 3]
    assert kwargs["scale"] == SPACING


def test_paths_are_coloured_by_type():
    paths, kwargs, _ = swc_layer_data(_forked_tree())
    assert kwargs["edge_color"] == [TYPE_COLOURS[3]] * 3 + [TYPE_COLOURS[2]]
    assert kwargs["features"]["type"] == [3, 3, 3, 2]
    odd = SwcTree([1, 2], [1, 9], [[0, 0, 0], [1, 1, 1]], [1, 1], [-1, 1])
    assert swc_layer_data(odd)[1]["edge_color"] == [OTHER_TYPE_COLOUR]


def test_a_micrometre_tree_is_shown_in_voxels_at_its_spacing():
    voxels = _forked_tree()
    microns = in_micrometres(voxels, SPACING)
    assert not np.allclose(microns.xyz, voxels.xyz)
    paths, kwargs, _ = swc_layer_data(microns)
    expected, _, _ = swc_layer_data(voxels)
    assert kwargs["scale"] == SPACING
    for path, want in zip(paths, expected, strict=True):
        np.testing.assert_allclose(path, want)


def test_a_tree_without_the_header_is_at_unit_scale():
    tree = SwcTree([1, 2], [1, 3], [[0, 0, 0], [3, 4, 5]], [1, 1], [-1, 1])
    paths, kwargs, _ = swc_layer_data(tree)
    assert kwargs["scale"] == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(paths[0], [[0, 0, 0], [5, 4, 3]])


def test_a_header_with_a_bad_spacing_is_refused():
    tree = SwcTree([1, 2], [1, 3], [[0, 0, 0], [3, 4, 5]], [1, 1], [-1, 1],
                   ['dineuro {"units": "voxel", "spacing_zyx": [1, 0, 1]}'])
    with pytest.raises(InputError, match="spacing"):
        swc_layer_data(tree)


def test_an_empty_tree_gives_an_empty_layer():
    paths, kwargs, _ = swc_layer_data(SwcTree([], [], [], [], []))
    assert paths == [] and kwargs["edge_color"] == []


def test_a_chain_is_one_path():
    n = 50
    tree = SwcTree(np.arange(1, n + 1), [3] * n, np.c_[np.arange(n), np.zeros((n, 2))],
                   [1] * n, np.r_[-1, np.arange(1, n)])
    assert unbranched_paths(tree) == [list(range(n))]


@pytest.mark.parametrize(("dtype", "top"), [(np.float32, 1), (np.uint8, 255)])
def test_probability_maps_show_zero_to_one(dtype, top):
    prob = np.zeros((2, 3, 4), dtype)
    data, kwargs, kind = probability_layer_data(prob, SPACING, "p")
    assert data is prob and kind == "image"
    assert kwargs["contrast_limits"] == (0, top) and kwargs["scale"] == SPACING
    assert kwargs["colormap"] == "magma" and kwargs["name"] == "p"


def test_masks_are_labels_of_integers():
    mask = np.zeros((2, 3, 4), np.uint8)
    data, kwargs, kind = mask_layer_data(mask, SPACING)
    assert data is mask and kind == "labels" and kwargs["scale"] == SPACING
    with pytest.raises(InputError, match="integer"):
        mask_layer_data(mask.astype(np.float32), SPACING)


def test_napari_builds_the_layers():
    from napari.layers import Image, Labels, Layer, Shapes

    shapes = Layer.create(*swc_layer_data(_forked_tree()))
    assert isinstance(shapes, Shapes) and len(shapes.data) == 4
    assert tuple(shapes.scale) == SPACING and set(shapes.shape_type) == {"path"}
    image = Layer.create(*probability_layer_data(np.zeros((2, 3, 4), np.float32), SPACING))
    assert isinstance(image, Image) and tuple(image.contrast_limits) == (0, 1)
    labels = Layer.create(*mask_layer_data(np.zeros((2, 3, 4), np.uint8), SPACING))
    assert isinstance(labels, Labels) and tuple(labels.scale) == SPACING
