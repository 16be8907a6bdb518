"""napari readers (npe2 ``readers`` contributions, see ``napari.yaml``): SWC files and stacks.

Each ``*_reader(path)`` returns a function that reads the file into a list of layer-data tuples,
or None for a path it does not read, as npe2 asks. Errors are :class:`~dineuro.errors.InputError`
sentences naming the file, which napari shows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from dineuro.errors import InputError
from dineuro.io.swc import read_swc
from dineuro.io.volume import SUPPORTED_EXTENSIONS, read_volume
from dineuro.napari._layers import (
    LayerData,
    image_layer_data,
    mask_layer_data,
    probability_layer_data,
    swc_layer_data,
)
from dineuro.outputs import MASK_SUFFIX, PROB_SUFFIX, SWC_SUFFIX, stack_name

Reader = Callable[[str], list[LayerData]]


def swc_reader(path: str | os.PathLike | list) -> Reader | None:
    """:func:`read_swc_layers` for one ``.swc`` file, else None.

    Examples
    --------
    >>> swc_reader("neuron.swc").__name__, swc_reader("neuron.tif"), swc_reader(["a.swc"])
    ('read_swc_layers', None, None)
    """
    if isinstance(path, (str, os.PathLike)) and str(path).lower().endswith(SWC_SUFFIX):
        return read_swc_layers
    return None


def stack_reader(path: str | os.PathLike | list) -> Reader | None:
    """:func:`read_stack_layers` for one stack file :func:`~dineuro.io.read_volume` reads, else
    None.

    Examples
    --------
    >>> stack_reader("out/neuron_prob.tif").__name__, stack_reader("neuron.swc")
    ('read_stack_layers', None)
    """
    if isinstance(path, (str, os.PathLike)) and str(path).lower().endswith(SUPPORTED_EXTENSIONS):
        return read_stack_layers
    return None


def read_swc_layers(path: str | os.PathLike) -> list[LayerData]:
    """An SWC file as one Shapes layer of paths (:func:`~dineuro.napari.swc_layer_data`).

    Raises
    ------
    InputError
        An SWC that :func:`~dineuro.io.read_swc` refuses, or a header with a bad spacing. A file
        of comments only (a stack that could not be traced) gives an empty layer.
    """
    return [swc_layer_data(read_swc(path, allow_empty=True), name=Path(path).name)]


def read_stack_layers(path: str | os.PathLike) -> list[LayerData]:
    """A stack as one layer at its spacing: ``NAME_prob.tif`` a probability map (magma, 0 to 1),
    ``NAME_mask.tif`` a Labels layer, anything else a grey image.

    Raises
    ------
    InputError
        A stack that :func:`~dineuro.io.read_volume` refuses (a multi-channel file among them:
        ``dineuro convert --channel`` takes one out), or a mask that does not hold integers.
    """
    array, spacing = read_volume(path)
    name = stack_name(path)
    if str(path).endswith(PROB_SUFFIX):
        return [probability_layer_data(array, spacing, name)]
    if str(path).endswith(MASK_SUFFIX):
        try:
            return [mask_layer_data(array, spacing, name)]
        except InputError as exc:
            raise InputError(str(exc), path) from None
    return [image_layer_data(array, spacing, name)]
