"""The napari dock widget: predict and trace the selected image (``dineuro run`` in napari).

It applies the default model (or a checkpoint file) to a 3D image layer with
:meth:`dineuro.Predictor.predict`, traces the map with :func:`dineuro.trace.trace` at the
layer's scale as (z, y, x) spacing, and adds the probability map, the mask that goes with the
trace (:func:`dineuro.trace.traced_mask`, as ``dineuro run`` writes it) and the trace as layers
placed over the image, as the readers would show them. The work runs in a napari
``thread_worker``, so the viewer stays responsive; a progress bar counts the windows predicted.

This module imports napari and Qt; napari imports it when the widget is opened.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
)
from napari.layers import Image, Layer
from napari.qt.threading import FunctionWorker, thread_worker
from qtpy.QtWidgets import QSizePolicy
from superqt.utils import ensure_main_thread

from dineuro.defaults import DEFAULT_THRESHOLD
from dineuro.errors import InputError
from dineuro.io.swc import SwcTree
from dineuro.napari._layers import mask_layer_data, probability_layer_data, swc_layer_data

if TYPE_CHECKING:
    import napari

    from dineuro.predictor import Predictor


#: The widest background view the spin box offers (voxels); haze is wider than neurites, not
#: than the image.
BACKGROUND_VIEW_MAX = 32.0


class Traced(NamedTuple):
    """What the worker gives back: the map, its trees and their mask (None when it could not be
    traced, then ``message`` says why) and a line for the widget's status."""

    prob: np.ndarray
    tree: SwcTree | None
    mask: np.ndarray | None
    message: str


class TraceWidget(Container):
    """Predict and trace a 3D image layer; adds ``NAME probability``, ``NAME mask`` and
    ``NAME trace``.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose image layers are offered and to which the results are added (any
        ``napari.components.ViewerModel`` will do).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self._viewer = napari_viewer
        self._image = ComboBox(label="image", choices=self._image_layers)
        self._model = FileEdit(label="model", mode="r", filter="*.pt", nullable=True,
                               tooltip="A checkpoint of dineuro train or adapt; empty: the "
                                       "default model that ships with dineuro.")
        self._background_view = FloatSpinBox(
            label="background view", value=0.0, min=0.0, max=BACKGROUND_VIEW_MAX, step=1.0,
            tooltip="Sigma (voxels) of a second view, the image less its blur (dineuro run "
                    "--background-view): for hazy or unevenly lit images, 4 is a good start; "
                    "twice the prediction time. 0: off.")
        self._button = PushButton(text="Predict and trace")
        self._progress = ProgressBar(label="windows", min=0, max=1, value=0)
        self._status = Label(value="")
        # error sentences are longer than the dock is wide: wrap them, using the whole width
        self._status.native.setWordWrap(True)
        self._status.native.setSizePolicy(QSizePolicy.Policy.Expanding,
                                          QSizePolicy.Policy.Preferred)
        super().__init__(widgets=[self._image, self._model, self._background_view, self._button,
                                  self._progress, self._status])
        self._button.changed.connect(self.run)

    def _image_layers(self, _widget=None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def run(self) -> FunctionWorker | None:
        """Start predicting and tracing the selected layer in a worker thread.

        Returns
        -------
        FunctionWorker or None
            The started worker (its ``finished`` signal comes after the layers are added), or
            None when there is nothing to run on; the status line says why.
        """
        layer = self._image.value
        if layer is None:
            self._status.value = "Open a 3D image first."
            return None
        if layer.rgb or layer.multiscale or layer.ndim != 3:
            self._status.value = (f"{layer.name} is not a 3D (z, y, x) single-channel image, "
                                  "which dineuro predicts on.")
            return None
        model = self._model.value  # None: the default model
        worker = _predict_and_trace(layer.data, tuple(layer.scale), model,
                                    self._background_view.value, self._show_progress)
        worker.returned.connect(lambda traced: self._add_layers(layer, traced))
        worker.errored.connect(self._show_error)
        worker.finished.connect(self._finish)
        self._button.enabled = False
        self._progress.value = 0
        self._status.value = f"loading {model or 'the default model'}"
        worker.start()
        return worker

    @ensure_main_thread
    def _show_progress(self, done: int, total: int) -> None:
        """Called from the worker with windows predicted; runs in the main (Qt) thread."""
        self._progress.max, self._progress.value = total, done
        self._status.value = "tracing" if done == total else f"predicting: {done} of {total}"

    def _add_layers(self, layer: Image, traced: Traced) -> None:
        placed = {"translate": tuple(layer.translate)}
        data, kwargs, kind = probability_layer_data(traced.prob, layer.scale,
                                                    f"{layer.name} probability")
        self._viewer.add_layer(Layer.create(data, {**kwargs, **placed}, kind))
        if traced.tree is not None:
            for data, kwargs, kind in (
                    mask_layer_data(traced.mask, layer.scale, f"{layer.name} mask"),
                    swc_layer_data(traced.tree, f"{layer.name} trace")):
                self._viewer.add_layer(Layer.create(data, {**kwargs, **placed}, kind))
        self._status.value = traced.message

    def _show_error(self, exc: Exception) -> None:
        self._status.value = str(exc)

    def _finish(self) -> None:
        self._button.enabled = True


@thread_worker
def _predict_and_trace(image, spacing: Sequence[float], model: Path | None,
                       background_view: float, progress) -> Traced:
    """The map, trees and mask of a (z, y, x) image with the model named (and a background view
    of that sigma, 0: none), in a worker thread."""
    from dineuro.trace import trace, traced_mask

    start = time.perf_counter()
    image = np.asarray(image)
    predictor = dataclasses.replace(load_predictor(model), background_view=background_view)
    prob = predictor.predict(image, progress=progress)
    try:
        tree = trace(prob, spacing, kind="probability", image=image)
    except InputError as exc:
        return Traced(prob, None, None, f"not traced: {exc}")
    mask = traced_mask(prob > DEFAULT_THRESHOLD, tree)
    return Traced(prob, tree, mask, f"{len(tree)} nodes in {len(tree.roots)} trees, "
                                    f"{time.perf_counter() - start:.1f} s")


def load_predictor(model: Path | None) -> Predictor:
    """The :class:`~dineuro.Predictor` of a checkpoint (None: the default model), loaded once
    per file version: the same unchanged checkpoint is not loaded again for the next image."""
    modified = model.stat().st_mtime_ns if model is not None and model.is_file() else None
    return _load_predictor(model, modified)


@lru_cache(maxsize=1)
def _load_predictor(model: Path | None, modified: int | None) -> Predictor:
    """``modified`` only keys the cache: a checkpoint written again is loaded again."""
    from dineuro.predictor import Predictor

    return Predictor.from_checkpoint(model)
