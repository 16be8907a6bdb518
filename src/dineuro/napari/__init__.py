"""dineuro in napari: readers for SWC traces, probability maps, masks and stacks, and a widget
that predicts and traces the selected image (``pip install "dineuro[napari]"``).

napari finds the plugin through its npe2 manifest, ``napari.yaml`` beside this file. Building
layer data needs no napari, so this package imports none: ``import dineuro`` and the command line
work without it. Only the widget module (:mod:`dineuro.napari._widget`) imports napari and Qt,
when napari opens the widget.

Examples
--------
>>> from dineuro.io import SwcTree
>>> paths, kwargs, kind = swc_layer_data(SwcTree([1, 2], [1, 3], [[0, 0, 0], [3, 4, 5]],
...                                              [1, 1], [-1, 1]))
>>> kind, paths[0].tolist()              # (z, y, x) voxels, as the stack's arrays
('shapes', [[0.0, 0.0, 0.0], [5.0, 4.0, 3.0]])
"""

from dineuro.napari._layers import (
    LayerData,
    image_layer_data,
    mask_layer_data,
    probability_layer_data,
    swc_layer_data,
)

__all__ = [
    "LayerData",
    "image_layer_data",
    "mask_layer_data",
    "probability_layer_data",
    "swc_layer_data",
]
