"""MIP pictures: what each panel shows, where it is drawn, and how the file is written.

The stack is made by hand: a few bright voxels at known (z, y, x) positions, anisotropic spacing
(2, 1, 1), so a swapped axis, a missing transpose or spacing applied to the wrong axis changes
what the panels hold.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba

from dineuro.errors import InputError
from dineuro.io import SwcTree
from dineuro.report import GOLD_COLOR, MASK_RGBA, SWC_COLOR, mip_figure, save_figure

SHAPE = (4, 5, 6)  # z, y, x: all different, so a swapped axis shows as a shape mismatch
SPACING = (2.0, 1.0, 1.0)  # z, y, x
# (z, y, x) -> value; no two share a pixel in any projection.
BRIGHT = {(0, 1, 2): 100, (3, 4, 5): 200, (2, 0, 4): 300}
VIEW_NAMES = ("xy", "xz", "zy")
# view -> (array axis collapsed, transposed?, (array axis along rows, along columns),
#          SWC columns (x=0, y=1, z=2) along the horizontal and vertical axes)
VIEWS = {"xy": (0, False, (1, 2), (0, 1)),
         "xz": (1, False, (0, 2), (0, 2)),
         "zy": (2, True, (1, 0), (2, 1))}


@pytest.fixture
def image() -> np.ndarray:
    stack = np.zeros(SHAPE, np.uint16)
    stack[0, 0, 0] = 1  # off the other bright voxels: no projection is two-valued only
    for zyx, value in BRIGHT.items():
        stack[zyx] = value
    return stack


@pytest.fixture
def tree() -> SwcTree:
    # SWC order (x, y, z): root at voxel (z=0, y=1, x=2), two children in a chain.
    return SwcTree(ids=[1, 2, 3], types=[1, 3, 3],
                   xyz=[[2, 1, 0], [5, 4, 3], [4, 0, 2.5]], radius=[1.0, 1.0, 1.0],
                   parents=[-1, 1, 2])


@pytest.fixture
def mask() -> np.ndarray:
    label = np.zeros(SHAPE, bool)
    label[1, 2, 3] = True
    label[3, 0:2, 0] = True
    return label


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def panels(fig) -> list[dict]:
    """The sets of views in the figure, in order: [{"xy": ax, "xz": ax, "zy": ax}, ...]."""
    titled = [ax for ax in fig.axes if ax.get_title(loc="left") in VIEW_NAMES]
    sets = [titled[i:i + 3] for i in range(0, len(titled), 3)]
    return [{ax.get_title(loc="left"): ax for ax in views} for views in sets]


def projection(volume: np.ndarray, view: str) -> np.ndarray:
    axis, transposed, _, _ = VIEWS[view]
    shown = volume.max(axis=axis)
    return shown.T if transposed else shown


def physical(points_xyz: np.ndarray, view: str) -> np.ndarray:
    """SWC (x, y, z) voxel points -> the view's (horizontal, vertical) in physical units."""
    scaled = np.asarray(points_xyz, float) * np.array(SPACING[::-1])
    return scaled[:, list(VIEWS[view][3])]


def test_panels_show_the_three_projections(image):
    (views,) = panels(mip_figure(image, SPACING))
    for name, ax in views.items():
        (shown,) = ax.get_images()
        np.testing.assert_array_equal(np.asarray(shown.get_array()), projection(image, name))
    np.testing.assert_array_equal(views["xy"].get_images()[0].get_array(), image.max(axis=0))
    np.testing.assert_array_equal(views["xz"].get_images()[0].get_array(), image.max(axis=1))
    np.testing.assert_array_equal(views["zy"].get_images()[0].get_array(),
                                  image.max(axis=2).T)


def test_extents_are_physical_with_voxel_centres_at_index_times_spacing(image):
    (views,) = panels(mip_figure(image, SPACING))
    z, y, x = SHAPE
    sz, sy, sx = SPACING
    expected = {  # (left, right, bottom, top): rows run downwards from the top
        "xy": (-0.5 * sx, (x - 0.5) * sx, (y - 0.5) * sy, -0.5 * sy),
        "xz": (-0.5 * sx, (x - 0.5) * sx, (z - 0.5) * sz, -0.5 * sz),
        "zy": (-0.5 * sz, (z - 0.5) * sz, (y - 0.5) * sy, -0.5 * sy),
    }
    for name, ax in views.items():
        shown = ax.get_images()[0]
        assert shown.get_extent() == pytest.approx(expected[name]), name
        assert ax.get_xlim() == pytest.approx(expected[name][:2]), name
        assert ax.get_ylim() == pytest.approx(expected[name][2:]), name
        # Each bright voxel's physical centre falls in the pixel holding its value.
        left, right, bottom, top = shown.get_extent()
        data = np.asarray(shown.get_array())
        rows, cols = data.shape
        assert shown.origin == "upper"  # row 0 at `top`
        for zyx, value in BRIGHT.items():
            h, v = physical(np.array([zyx[::-1]]), name)[0]
            col = int((h - left) / (right - left) * cols)
            row = int((v - top) / (bottom - top) * rows)
            assert data[row, col] == value, (name, zyx)


def test_swc_segments_and_roots_in_physical_units(image, tree):
    plain, overlay = panels(mip_figure(image, SPACING, tree=tree))
    for name in VIEW_NAMES:
        assert not plain[name].collections and not plain[name].get_lines()
        (lines,) = overlay[name].collections
        expected = physical(tree.xyz, name)
        segments = np.asarray(lines.get_segments())
        # One segment per edge, child then parent: (node 2 -> 1) and (node 3 -> 2).
        np.testing.assert_allclose(segments, [[expected[1], expected[0]],
                                              [expected[2], expected[1]]])
        (roots,) = overlay[name].get_lines()
        np.testing.assert_allclose(roots.get_xydata(), expected[:1])


def test_gold_tree_is_drawn_under_the_trace_in_its_own_colour(image, tree):

    shifted = SwcTree(tree.ids, tree.types, tree.xyz + [1.0, 0.0, 0.0], tree.radius,
                      tree.parents)
    _, overlay = panels(mip_figure(image, SPACING, tree=tree, gold=shifted))
    for name in VIEW_NAMES:
        gold_lines, trace_lines = overlay[name].collections  # gold first: drawn underneath
        np.testing.assert_allclose(gold_lines.get_colors()[0], to_rgba(GOLD_COLOR))
        np.testing.assert_allclose(trace_lines.get_colors()[0], to_rgba(SWC_COLOR))
        expected = physical(shifted.xyz, name)
        np.testing.assert_allclose(np.asarray(gold_lines.get_segments()),
                                   [[expected[1], expected[0]], [expected[2], expected[1]]])


def test_mask_overlay_is_opaque_exactly_where_the_projection_is_true(image, mask):
    plain, overlay = panels(mip_figure(image, SPACING, mask=mask))
    for name in VIEW_NAMES:
        assert len(plain[name].get_images()) == 1
        shown, tint = overlay[name].get_images()
        np.testing.assert_array_equal(np.asarray(shown.get_array()), projection(image, name))
        rgba = np.asarray(tint.get_array())
        expected = projection(mask, name)
        assert rgba.shape == expected.shape + (4,)
        np.testing.assert_array_equal(rgba[..., 3] > 0, expected)
        np.testing.assert_allclose(rgba[expected], np.tile(MASK_RGBA, (expected.sum(), 1)))
        assert tint.get_extent() == pytest.approx(shown.get_extent())


@pytest.mark.parametrize("overlays, n_sets", [
    ({}, 1), ({"tree": True}, 2), ({"mask": True}, 2), ({"tree": True, "mask": True}, 2)])
def test_one_set_of_views_without_overlays_two_with(image, tree, mask, overlays, n_sets):
    fig = mip_figure(image, SPACING, tree=tree if overlays.get("tree") else None,
                     mask=mask if overlays.get("mask") else None, title="t")
    sets = panels(fig)
    assert len(sets) == n_sets
    assert all(sorted(views) == sorted(VIEW_NAMES) for views in sets)
    assert fig.get_suptitle() == "t"


def test_mask_of_another_shape_is_refused(image):
    with pytest.raises(InputError, match="mask shape"):
        mip_figure(image, SPACING, mask=np.zeros((4, 5, 7), bool))


def test_save_figure_replaces_atomically_and_closes(image, tmp_path):
    path = tmp_path / "mip.png"
    path.write_bytes(b"an older picture")  # save_figure refuses nothing: the CLI checks first
    fig = mip_figure(image, SPACING)
    save_figure(fig, path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in tmp_path.iterdir()] == ["mip.png"]  # no temporary file left
    assert not plt.fignum_exists(fig.number)


@pytest.mark.parametrize("name", ["mip.svg", "mip.pdf"])
def test_save_figure_other_formats(image, tmp_path, name):
    save_figure(mip_figure(image, SPACING), tmp_path / name)
    head = (tmp_path / name).read_bytes()[:200]
    assert (b"<svg" in head) if name.endswith("svg") else head.startswith(b"%PDF")
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_save_figure_failure_leaves_nothing(image, tmp_path):
    with pytest.raises(InputError, match="should end in one of"):
        save_figure(mip_figure(image, SPACING), tmp_path / "mip.xyz")
    assert list(tmp_path.iterdir()) == []


def test_swc_lines_stand_out_on_a_saturated_neurite():
    # A bright trunk filling the middle rows of the x-y view, traced along its axis: without a
    # dark rim the yellow line is drawn on white, and nothing in the trunk is dark.
    stack = np.zeros((8, 40, 60), np.uint8)
    stack[:, 14:26, :] = 255
    trunk = SwcTree(ids=[1, 2], types=[3, 3], xyz=[[5, 20, 4], [55, 20, 4]],
                    radius=[6.0, 6.0], parents=[-1, 1])
    fig = mip_figure(stack, (1.0, 1.0, 1.0), tree=trunk)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0
    overlay = panels(fig)[1]["xy"]
    # the trunk's inside, away from its edges and the line's ends, in display pixels
    (left, bottom), (right, top) = overlay.transData.transform([(15, 16), (45, 24)])
    height = pixels.shape[0]
    inside = pixels[int(height - bottom) + 1:int(height - top), int(left):int(right)]
    luminance = inside @ np.array([0.299, 0.587, 0.114])
    assert luminance.max() > 0.95  # the trunk is white there
    assert luminance.min() < 0.3   # and the line's rim is dark on it
