"""SWC trees and stacks as napari layer data: ``(data, keyword arguments, layer type)`` tuples.

napari builds a layer from such a tuple (``napari.layers.Layer.create(*tuple)``); a reader
returns a list of them. Building them needs no napari, so this module imports none, and the
readers and the widget share it: a trace opened from a file and one traced in napari look the
same.

Everything is placed in the stack's (z, y, x) voxel frame with ``scale`` the (z, y, x) voxel
spacing, so layers of one stack overlay whatever their units: an image opened with its spacing
as its scale, its probability map, its mask and its SWC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dineuro.errors import InputError
from dineuro.io.swc import SwcTree
from dineuro.io.swc_units import swc_metadata, to_voxels

#: What napari builds a layer from: (data, keyword arguments, layer type).
LayerData = tuple[Any, dict, str]

#: Path colours by SWC type (soma, axon, dendrite, apical dendrite); other types get
#: :data:`OTHER_TYPE_COLOUR`.
TYPE_COLOURS = {1: "white", 2: "red", 3: "cyan", 4: "magenta"}
OTHER_TYPE_COLOUR = "yellow"
#: Line width of traced paths, in voxels: a centre line drawn thin enough to see the neurite.
PATH_WIDTH = 1.0
PROBABILITY_COLORMAP = "magma"
_UNIT_SPACING = (1.0, 1.0, 1.0)


def swc_layer_data(tree: SwcTree, name: str = "trace") -> LayerData:
    """A napari Shapes layer of a tree: one path per unbranched stretch, in (z, y, x) voxels.

    A tree in micrometres (its header says so) is converted to voxels first; the layer's
    ``scale`` is the (z, y, x) spacing the header records (1 without one), so the trace overlays
    its stack opened at that spacing. Paths run from a branch point (or root) to the next branch
    point or end, far fewer shapes than one per edge, which napari draws quickly; in a 2D view a
    path shows on every slice its z range crosses. A tree without edges gives an empty layer.

    Parameters
    ----------
    tree : SwcTree
        The trees, as :func:`dineuro.io.read_swc` or :func:`dineuro.trace.trace` give them.
    name : str, optional
        The layer's name.

    Returns
    -------
    LayerData
        ``(paths, keyword arguments, "shapes")``; each path is a ``(k, 3)`` (z, y, x) array,
        coloured by the SWC type of its nodes (:data:`TYPE_COLOURS`).

    Raises
    ------
    InputError
        A header that gives no valid spacing.

    Examples
    --------
    >>> tree = SwcTree([1, 2, 3, 4], [1, 3, 3, 2], [[0, 0, 0], [1, 0, 0], [2, 1, 0], [2, -1, 4]],
    ...                [2, 1, 1, 1], [-1, 1, 2, 2])
    >>> paths, kwargs, kind = swc_layer_data(tree)
    >>> kind, len(paths), paths[2].tolist()   # the axon: from the branch point, (z, y, x)
    ('shapes', 3, [[0.0, 0.0, 1.0], [4.0, -1.0, 2.0]])
    >>> kwargs["edge_color"], kwargs["scale"]
    (['cyan', 'cyan', 'red'], (1.0, 1.0, 1.0))
    """
    tree = to_voxels(tree)
    zyx = tree.zyx
    paths = unbranched_paths(tree)
    types = [int(tree.types[path[1]]) for path in paths]  # the first node past the start
    colours = [TYPE_COLOURS.get(kind, OTHER_TYPE_COLOUR) for kind in types]
    kwargs = {"name": name, "ndim": 3, "shape_type": "path", "edge_width": PATH_WIDTH,
              "edge_color": colours, "face_color": "transparent", "scale": header_spacing(tree),
              "features": {"type": types}}
    return [zyx[path] for path in paths], kwargs, "shapes"


def unbranched_paths(tree: SwcTree) -> list[list[int]]:
    """Node rows of a tree's unbranched stretches, each edge in exactly one.

    A stretch starts at a root or a branch point (a node with other than one child) and follows
    single children to the next branch point or end, so a root with two children starts two
    stretches. A root without children has no edge and no stretch.

    Examples
    --------
    >>> tree = SwcTree([1, 2, 3, 4, 5], [1] * 5, np.zeros((5, 3)), [1] * 5, [-1, 1, 2, 2, -1])
    >>> unbranched_paths(tree)
    [[0, 1], [1, 2], [1, 3]]
    """
    parents = tree.parent_index
    children: list[list[int]] = [[] for _ in parents]
    for node, parent in enumerate(parents):
        if parent >= 0:
            children[parent].append(node)
    paths = []
    for node, parent in enumerate(parents):
        if parent >= 0 and len(children[parent]) == 1:
            continue  # inside a stretch that starts further up
        path = [node] if parent < 0 else [int(parent), node]
        while len(children[path[-1]]) == 1:
            path.append(children[path[-1]][0])
        if len(path) > 1:
            paths.append(path)
    return paths


def header_spacing(tree: SwcTree) -> tuple[float, float, float]:
    """The (z, y, x) spacing an SWC header records, or 1 each for a file without it.

    Raises
    ------
    InputError
        A header whose spacing is not three positive numbers.

    Examples
    --------
    >>> from dineuro.io.swc_units import metadata_comment
    >>> header_spacing(SwcTree([], [], [], [], [], [metadata_comment("voxel", (2, 0.5, 0.5))]))
    (2.0, 0.5, 0.5)
    """
    metadata = swc_metadata(tree) or {}
    if "spacing_zyx" not in metadata:
        return _UNIT_SPACING
    try:
        spacing = tuple(float(s) for s in metadata["spacing_zyx"])
    except (TypeError, ValueError):
        spacing = ()
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"its header gives no valid (z, y, x) spacing: {metadata}.")
    return spacing


def probability_layer_data(prob: np.ndarray, spacing: Sequence[float],
                           name: str = "probability") -> LayerData:
    """A napari Image layer of a probability map, shown with the ``magma`` colormap from 0 to 1.

    A uint8 map (``--prob-dtype uint8``) stores ``round(p * 255)``
    (:data:`~dineuro.predict.UINT8_SCALE`); it stays uint8, shown from 0 to 255, so the map
    takes no more memory than its file.

    Examples
    --------
    >>> data, kwargs, kind = probability_layer_data(np.zeros((2, 3, 4), np.uint8), (2, 1, 1))
    >>> kind, kwargs["contrast_limits"], kwargs["scale"]
    ('image', (0, 255), (2.0, 1.0, 1.0))
    """
    from dineuro.predict import UINT8_SCALE  # here: dineuro.predict imports torch (seconds)

    top = UINT8_SCALE if prob.dtype == np.uint8 else 1
    return prob, {"name": name, "scale": _spacing(spacing), "colormap": PROBABILITY_COLORMAP,
                  "contrast_limits": (0, top), "blending": "additive"}, "image"


def mask_layer_data(mask: np.ndarray, spacing: Sequence[float], name: str = "mask") -> LayerData:
    """A napari Labels layer of a mask (0 background, other integers labels).

    Raises
    ------
    InputError
        A mask that does not hold integers.

    Examples
    --------
    >>> data, kwargs, kind = mask_layer_data(np.zeros((2, 3, 4), bool), (2, 1, 1))
    >>> kind, data.dtype, kwargs["scale"]
    ('labels', dtype('uint8'), (2.0, 1.0, 1.0))
    """
    if mask.dtype.kind not in "biu":
        raise InputError(f"a mask should hold integer labels, not {mask.dtype} values.")
    if mask.dtype == bool:
        mask = mask.view(np.uint8)
    return mask, {"name": name, "scale": _spacing(spacing)}, "labels"


def image_layer_data(image: np.ndarray, spacing: Sequence[float],
                     name: str = "image") -> LayerData:
    """A napari Image layer of a raw stack, grey, at its spacing.

    Examples
    --------
    >>> image_layer_data(np.zeros((2, 3, 4)), (2, 1, 1))[1]
    {'name': 'image', 'scale': (2.0, 1.0, 1.0), 'colormap': 'gray'}
    """
    return image, {"name": name, "scale": _spacing(spacing), "colormap": "gray"}, "image"


def _spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    z, y, x = (float(s) for s in spacing)
    return z, y, x
