"""Stack files in, probability map and mask files out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn

from dineuro.data.normalize import NormalizationConfig
from dineuro.defaults import DEFAULT_PROB_DTYPE, DEFAULT_THRESHOLD, TIFF_PROB_DTYPES
from dineuro.errors import InputError
from dineuro.io._omezarr import is_zarr
from dineuro.io._slices import slice_paths
from dineuro.io.atomic import refuse_existing, undo_on_failure
from dineuro.io.volume import SUPPORTED_EXTENSIONS, Volume, read_volume, write_volume
from dineuro.outputs import output_paths
from dineuro.predict._storage import (
    check_choice,
    encode_probability,
)
from dineuro.predict._views import predict_raw
from dineuro.predict._windows import Progress


def predict_stack(model: nn.Module, path: str | os.PathLike, out_dir: str | os.PathLike,
                  crop: int | Sequence[int], norm: NormalizationConfig, *,
                  threshold: float = DEFAULT_THRESHOLD, prob_dtype: str = DEFAULT_PROB_DTYPE,
                  channel: int | None = None, progress: Progress | None = None,
                  **window_options) -> tuple[Path, Path]:
    """Predict one stack file and write its probability map and binary mask next to each other.

    :func:`predict_file`, then :func:`write_prediction` into ``out_dir``:

    - ``out_dir/NAME_prob.tif``: probability of neurite, float32, or uint8 = round(p * 255);
    - ``out_dir/NAME_mask.tif``: uint8, 1 where the (float) probability exceeds ``threshold``.

    ``NAME`` is the input's name without its extension (see :func:`output_paths`). Both outputs
    are checked not to exist, and the options checked, before anything is computed.

    Parameters
    ----------
    model, crop, progress
        See :func:`sliding_window_predict`.
    path : str or os.PathLike
        Input stack (file or folder of TIFF slices).
    out_dir : str or os.PathLike
        Output folder, created if missing.
    norm : NormalizationConfig
        The normalisation the model was trained with.
    threshold : float, optional
        mask = probability > threshold, in [0, 1].
    prob_dtype : str, optional
        "float32" or "uint8" (ImageJ TIFF cannot hold float16).
    channel : int, optional
        Channel of a multi-channel input.
    **window_options
        overlap, batch_size, flips, device, precision, skip_empty of
        :func:`sliding_window_predict`, and background_view (:func:`predict_raw`).

    Returns
    -------
    tuple of pathlib.Path
        The paths of the probability map and of the mask.

    Raises
    ------
    InputError
        Unreadable input, an output that already exists, or a bad option.
    """
    outputs = checked_outputs(path, out_dir, threshold, prob_dtype)
    prob = predict_file(model, path, crop, norm, channel=channel, progress=progress,
                        **window_options)
    write_prediction(prob, *outputs, threshold=threshold, prob_dtype=prob_dtype)
    return outputs


def checked_outputs(path: str | os.PathLike, out_dir: str | os.PathLike, threshold: float,
                    prob_dtype: str) -> tuple[Path, Path]:
    """The map and mask paths of a stack, refused when they exist or the options are bad."""
    check_choice(prob_dtype, TIFF_PROB_DTYPES, "prob_dtype")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold should be in [0, 1], got {threshold}.")
    prob_path, mask_path = output_paths(path, out_dir)
    refuse_existing(prob_path)
    refuse_existing(mask_path)
    return prob_path, mask_path


def predict_file(model: nn.Module, path: str | os.PathLike, crop: int | Sequence[int],
                 norm: NormalizationConfig, *, channel: int | None = None,
                 progress: Progress | None = None, **window_options) -> Volume:
    """The probability map of a stack file, in memory, with the stack's voxel spacing.

    Reads any stack :func:`~dineuro.io.volume.read_volume` reads, normalises it with ``norm``
    and runs :func:`sliding_window_predict` (``**window_options`` are its options, and
    ``background_view``: see :func:`~dineuro.predict.predict_raw`).

    Raises
    ------
    InputError
        An unreadable input.
    """
    raw, spacing = read_volume(path, channel)
    return Volume(predict_raw(model, raw, crop, norm, progress=progress, **window_options),
                  spacing)


def write_prediction(prob: Volume, prob_path: Path, mask_path: Path, *,
                     threshold: float = DEFAULT_THRESHOLD,
                     prob_dtype: str = DEFAULT_PROB_DTYPE,
                     mask: np.ndarray | None = None) -> None:
    """Write a map as ``prob_dtype`` and its mask (probability > ``threshold``, or ``mask``
    when given, as ``run`` gives the traced pieces of it) as uint8, each through a temporary
    file renamed when complete; if the mask cannot be written, the map written for it is
    removed again."""
    if mask is None:
        mask = prob.array > threshold
    with undo_on_failure(prob_path, mask_path):
        write_volume(prob_path, encode_probability(prob.array, prob_dtype), prob.spacing)
        write_volume(mask_path, np.asarray(mask).astype(np.uint8), prob.spacing)


def find_stacks(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand the inputs of ``predict`` into stacks, each to be predicted once.

    A stack file is taken as it is; a folder of 2D TIFF slices and a zarr folder (an OME-Zarr
    image) are one stack each; any other folder is a folder of stacks, expanded into its
    supported files and zarr folders in natural order. Two stacks with
    the same name would write the same outputs, so that is an error.

    Raises
    ------
    InputError
        An input that does not exist, a folder with no stacks, or a name clash.
    """
    stacks: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise InputError("does not exist.", item)
        if item.is_dir() and not _is_slice_folder(item) and not is_zarr(item):
            found = [p for p in slice_paths(item) + sorted(item.iterdir())
                     if not p.name.startswith(".") and _is_stack(p)]
            if not found:
                raise InputError(f"holds no stacks ({', '.join(SUPPORTED_EXTENSIONS)}) and no 2D "
                                 "TIFF slices.", item)
            stacks += list(dict.fromkeys(found))  # natural order, each file once
        else:
            stacks.append(item)
    names: dict[str, Path] = {}
    for stack in stacks:
        name = output_paths(stack, ".")[0].name
        if name in names:
            raise InputError(f"has the same name as {names[name]}, so their outputs would "
                             "collide; predict them into separate folders.", stack)
        names[name] = stack
    return stacks


def _is_stack(path: Path) -> bool:
    """A stack file of a supported format, or a zarr folder (an OME-Zarr image)."""
    if path.is_dir():
        return is_zarr(path)
    return any(path.name.lower().endswith(ext) for ext in SUPPORTED_EXTENSIONS)


def _is_slice_folder(folder: Path) -> bool:
    """Whether ``folder`` holds 2D TIFF slices (one stack) rather than 3D stacks."""
    import tifffile

    slices = slice_paths(folder)
    if not slices:
        return False
    try:
        with tifffile.TiffFile(slices[0]) as tif:
            return len(tif.pages) == 1 and tif.pages[0].ndim == 2
    except (OSError, ValueError, IndexError) as exc:
        raise InputError(f"cannot be read as a TIFF file ({exc}).", slices[0]) from exc
