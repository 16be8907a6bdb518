"""The widget end to end: it predicts and traces an image layer and adds its three layers."""

from __future__ import annotations

import numpy as np
import pytest

from dineuro.napari import swc_layer_data

#: Seconds the worker may take: loading the default model, 4 windows and tracing take 2-5 s on
#: 2 busy cores.
WORKER_TIMEOUT_MS = 60_000


@pytest.fixture
def viewer():
    """A napari viewer model: layers without a window or canvas, so no OpenGL is needed."""
    from napari.components import ViewerModel

    return ViewerModel()


@pytest.fixture
def make_widget(qtbot):
    from dineuro.napari._widget import TraceWidget

    def make(viewer):
        widget = TraceWidget(viewer)
        qtbot.addWidget(widget.native)
        return widget

    return make


def test_the_widget_adds_the_map_and_the_trace(qtbot, viewer, make_widget, small_stack):
    from dineuro.trace import trace, traced_mask

    image, spacing = small_stack
    image = np.concatenate([image, image[:, :, ::-1]], axis=2)  # two windows of the model wide
    viewer.add_image(image, name="neuron", scale=spacing, translate=(0, 16, 16))
    widget = make_widget(viewer)
    worker = widget.run()
    assert worker is not None and not widget._button.enabled
    qtbot.waitUntil(lambda: widget._button.enabled, timeout=WORKER_TIMEOUT_MS)

    assert [layer.name for layer in viewer.layers] == ["neuron", "neuron probability",
                                                       "neuron mask", "neuron trace"]
    prob, paths = viewer.layers["neuron probability"], viewer.layers["neuron trace"]
    mask = viewer.layers["neuron mask"]
    assert prob.data.shape == image.shape and prob.data.dtype == np.float32
    assert prob.data.min() >= 0 and 0.5 < prob.data.max() <= 1
    assert tuple(prob.contrast_limits) == (0, 1)
    for layer in (prob, mask, paths):
        assert tuple(layer.scale) == spacing and tuple(layer.translate) == (0, 16, 16)
    # the trace is the map's, traced at the layer's scale with the image beside it, drawn as
    # the SWC reader draws it; the mask, the pieces of the map above 0.5 it runs through
    tree = trace(prob.data, spacing, kind="probability", image=image)
    np.testing.assert_array_equal(mask.data, traced_mask(prob.data > 0.5, tree))
    assert mask.data.sum() > 0
    expected, _, _ = swc_layer_data(tree)
    assert len(paths.data) == len(expected) > 0
    for got, want in zip(paths.data, expected, strict=True):
        np.testing.assert_allclose(got, want)
    assert widget._progress.value == widget._progress.max > 1
    assert "nodes in" in widget._status.value


def test_the_widget_predicts_with_a_background_view(qtbot, viewer, make_widget, small_stack):
    from dineuro import Predictor

    image, spacing = small_stack
    viewer.add_image(image, name="neuron", scale=spacing)
    widget = make_widget(viewer)
    widget._background_view.value = 4.0
    widget.run()
    qtbot.waitUntil(lambda: widget._button.enabled, timeout=WORKER_TIMEOUT_MS)
    expected = Predictor.from_checkpoint("default", background_view=4).predict(image)
    np.testing.assert_array_equal(viewer.layers["neuron probability"].data, expected)
    assert not np.array_equal(expected, Predictor.from_checkpoint("default").predict(image))
    assert widget._progress.value == widget._progress.max  # both views' windows counted


def test_the_widget_says_what_it_cannot_run_on(qtbot, viewer, make_widget):
    widget = make_widget(viewer)
    assert widget.run() is None and "Open a 3D image" in widget._status.value
    viewer.add_image(np.zeros((32, 32)), name="flat")
    widget.reset_choices()
    assert widget.run() is None and "flat is not a 3D" in widget._status.value


def test_a_bad_checkpoint_is_one_sentence_in_the_status(qtbot, viewer, make_widget, tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    viewer.add_image(np.zeros((8, 16, 16), np.uint8), name="neuron")
    widget = make_widget(viewer)
    widget._model.value = bad
    with qtbot.capture_exceptions() as raised:  # napari also raises it in the main thread
        widget.run()
        qtbot.waitUntil(lambda: widget._button.enabled, timeout=WORKER_TIMEOUT_MS)
    assert "notes.pt" in widget._status.value
    assert [type(exc).__name__ for _, exc, _ in raised] == ["InputError"]
    assert len(viewer.layers) == 1


def test_the_plugin_in_a_viewer(opengl, make_napari_viewer, tmp_path):
    """The whole viewer: the widget opens from the plugin menu's entry and a reader opens a file
    into a layer the canvas draws (which needs OpenGL: see the ``opengl`` fixture)."""
    from dineuro.io import SwcTree, write_swc
    from dineuro.napari._widget import TraceWidget

    napari_viewer = make_napari_viewer()
    _, widget = napari_viewer.window.add_plugin_dock_widget("dineuro", "Predict and trace")
    assert isinstance(widget, TraceWidget)
    path = tmp_path / "neuron.swc"
    write_swc(path, SwcTree([1, 2], [1, 3], [[0, 0, 0], [3, 4, 5]], [1, 1], [-1, 1]))
    [layer] = napari_viewer.open(path, plugin="dineuro")
    np.testing.assert_allclose(layer.data[0], [[0, 0, 0], [5, 4, 3]])
