"""What dineuro writes for a stack, and what it is called: one place for the names.

A stack ``NAME.tif`` (any supported extension) gives, in the output folder:

- ``NAME_prob.tif``: the probability map (``dineuro predict``, ``run``);
- ``NAME_mask.tif``: the map thresholded;
- ``NAME.swc``: the traced trees (``dineuro run``);
- ``NAME_prob.zarr``: the map of a zarr stack predicted block by block (``predict --blocks``).

``dineuro evaluate`` finds predictions and traces by the same suffixes.
"""

from __future__ import annotations

import os
from pathlib import Path

from dineuro.io.volume import SUPPORTED_EXTENSIONS

PROB_SUFFIX, MASK_SUFFIX, SWC_SUFFIX = "_prob.tif", "_mask.tif", ".swc"
ZARR_SUFFIX, ZARR_PROB_SUFFIX = ".zarr", "_prob.zarr"
#: Endings a stack's name drops, longest first: the readers' extensions, the OME flavours' and
#: zarr folders'.
_STACK_ENDINGS = tuple(sorted({*SUPPORTED_EXTENSIONS, ".ome.tif", ".ome.tiff", ".ome.zarr",
                               ZARR_SUFFIX}, key=len, reverse=True))


def stack_name(path: str | os.PathLike) -> str:
    """The name outputs of the stack at ``path`` are called by: its file name without the
    volume extension.

    Examples
    --------
    >>> stack_name("data/neuron_03.nii.gz"), stack_name("brain.ome.zarr")
    ('neuron_03', 'brain')
    """
    name = Path(path).name
    for extension in _STACK_ENDINGS:
        if name.lower().endswith(extension):
            return name[:-len(extension)]
    return name


def output_paths(path: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(out_dir/NAME_prob.tif, out_dir/NAME_mask.tif)`` for the stack at ``path``.

    Examples
    --------
    >>> [p.name for p in output_paths("data/neuron_03.nii.gz", "out")]
    ['neuron_03_prob.tif', 'neuron_03_mask.tif']
    """
    name, out_dir = stack_name(path), Path(out_dir)
    return out_dir / f"{name}{PROB_SUFFIX}", out_dir / f"{name}{MASK_SUFFIX}"


def swc_path(path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``out_dir/NAME.swc``, the trace of the stack at ``path``, beside its map.

    Examples
    --------
    >>> swc_path("data/neuron_03.nii.gz", "out").name
    'neuron_03.swc'
    """
    return Path(out_dir) / f"{stack_name(path)}{SWC_SUFFIX}"


def run_outputs(path: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path, Path]:
    """The three files ``dineuro run`` writes for the stack at ``path``: map, mask, trace."""
    return (*output_paths(path, out_dir), swc_path(path, out_dir))


def zarr_output(path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``out_dir/NAME_prob.zarr`` for the zarr stack ``NAME.zarr`` (``predict --blocks``).

    Examples
    --------
    >>> zarr_output("volumes/brain.zarr", "out").name
    'brain_prob.zarr'
    """
    return Path(out_dir) / f"{Path(path).name.removesuffix(ZARR_SUFFIX)}{ZARR_PROB_SUFFIX}"
