"""A trained network ready to apply: loaded once from a checkpoint, applied to arrays, files and
batches, with tracing for ``dineuro run``.

Prediction needs more than weights: the window the network was trained on, the normalisation
its inputs had, and the window options (overlap, flips, precision, skipping). Before this
object existed, every caller (the CLI, the experiment runner, the demo, the benchmarks) loaded
a checkpoint into those pieces itself and passed them along; now :meth:`Predictor.from_checkpoint`
does it in one place, and the object carries them, says what it holds
(:meth:`Predictor.describe`), and offers each way of applying them (as nnU-Net's
``nnUNetPredictor`` does for its trained model folders).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from dineuro.data.normalize import NormalizationConfig
from dineuro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_OVERLAP,
    DEFAULT_PROB_DTYPE,
    DEFAULT_RUN_MASK,
    DEFAULT_THRESHOLD,
    RUN_MASKS,
)
from dineuro.errors import InputError
from dineuro.io.atomic import undo_on_failure
from dineuro.io.swc import SwcTree, write_swc
from dineuro.io.volume import Volume, read_volume
from dineuro.outputs import swc_path
from dineuro.predict import (
    DEFAULT_BLOCK,
    Progress,
    WindowStats,
    check_choice,
    checked_outputs,
    predict_blocks,
    predict_file,
    predict_raw,
    predict_stack,
    resolve_batch_size,
    resolve_precision,
    views_of,
    write_prediction,
)

Triple = tuple[int, int, int]


@dataclass
class StackRun:
    """What :meth:`Predictor.run` did with one stack.

    Attributes
    ----------
    stack : Path
        The input stack.
    outputs : tuple of Path
        The probability map, the mask and the SWC written.
    tree : SwcTree
        The traced trees (no nodes when the map could not be traced).
    stats : WindowStats
        Windows in the grid, windows the network ran on, and the precision.
    predict_seconds, trace_seconds : float
        Wall-clock time of the two stages.
    untraced : str or None
        Why the map could not be traced (the SWC says so too), or None when it was.
    """

    stack: Path
    outputs: tuple[Path, Path, Path]
    tree: SwcTree
    stats: WindowStats
    predict_seconds: float
    trace_seconds: float
    untraced: str | None = None


@dataclass
class Predictor:
    """A network with the window, normalisation and options it is applied with.

    Build it with :meth:`from_checkpoint`; the fields may be replaced afterwards
    (``dataclasses.replace(predictor, overlap=0.25)``), since every method reads them when
    called.

    Parameters
    ----------
    network : torch.nn.Module
        Maps (B, 1, *crop) windows to (B, 2, *crop) logits (background, neurite).
    crop : tuple of int
        The window (z, y, x) the network predicts through.
    normalization : NormalizationConfig
        How raw stacks are normalised, as in training.
    source : str
        Where the weights came from (the checkpoint path), for reports.
    device : str
        Where the network runs: "cpu", "cuda" or "cuda:N".
    overlap, batch_size, flips, precision, skip_empty
        The window options of :func:`dineuro.predict.sliding_window_predict`.
    background_view : float
        With a sigma (voxels) > 0, the network also sees each stack less its smooth background
        and the map keeps the larger probability (:func:`dineuro.predict.predict_raw`): for
        hazy or unevenly lit stacks, at twice the network's time. 0: off.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Conv3d(1, 2, 1)
    >>> predictor = Predictor(net, (8, 8, 8), NormalizationConfig(), source="a 1x1x1 conv",
    ...                       precision="fp32")
    >>> predictor.predict(np.zeros((4, 20, 20), np.uint8)).shape
    (4, 20, 20)
    """

    network: nn.Module
    crop: Triple
    normalization: NormalizationConfig
    source: str
    device: str = "cpu"
    overlap: float = DEFAULT_OVERLAP
    batch_size: int | None = DEFAULT_BATCH_SIZE
    flips: bool = False
    precision: str = "auto"
    skip_empty: bool = True
    background_view: float = 0.0

    def __post_init__(self):
        views_of(self.normalization, self.background_view)  # refused now, not mid-batch

    @classmethod
    def from_checkpoint(cls, model: str | os.PathLike | None = "default", *,
                        device: str = "auto", window: Sequence[int] | None = None,
                        **options) -> Predictor:
        """Load a checkpoint (or the packaged default model) for prediction.

        Parameters
        ----------
        model : str or os.PathLike or None
            A checkpoint written by ``dineuro train`` or ``adapt``; "default" or None for the
            model that ships with dineuro.
        device : str
            "auto" (a GPU when one is visible, else the CPU), "cpu", "cuda" or "cuda:N".
        window : sequence of int, optional
            Predict through windows of this size (multiples of the network's patch) instead
            of the training crop; larger windows with less overlap compute fewer voxels.
        **options
            overlap, batch_size, flips, precision, skip_empty, background_view.

        Raises
        ------
        InputError
            Naming the file: not a dineuro checkpoint, weights that are not finite or do not
            fit the stored config, no normalisation settings, a window that does not fit the
            patch, a device that is not there, or a background view the network cannot take.
        """
        from dineuro.checkpoint import load_for_prediction, resolve_model
        from dineuro.train.runtime import resolve_device

        path = resolve_model(model)
        device = str(resolve_device(device))
        network, crop, norm = load_for_prediction(path, device, window)
        return cls(network, tuple(int(c) for c in np.broadcast_to(crop, 3)), norm, str(path),
                   device, **options)

    @property
    def views(self) -> tuple[NormalizationConfig, ...]:
        """The normalisations the network sees each stack through
        (:func:`~dineuro.predict.views_of`): training's, and the background view's."""
        return views_of(self.normalization, self.background_view)

    @property
    def window_options(self) -> dict:
        """The keyword options of :func:`~dineuro.predict.predict_raw` and of the file and
        block functions: those of :func:`~dineuro.predict.sliding_window_predict` and the
        background view."""
        return {"overlap": self.overlap, "batch_size": self.batch_size, "flips": self.flips,
                "device": self.device, "precision": self.precision,
                "skip_empty": self.skip_empty, "background_view": self.background_view}

    def describe(self) -> str:
        """One line: the weights, the network, the window and how it runs.

        Examples
        --------
        >>> import torch
        >>> Predictor(torch.nn.Conv3d(1, 2, 1), (8, 8, 8), NormalizationConfig(), "c",
        ...           precision="fp32", batch_size=4).describe()
        'c: Conv3d, window 8x8x8, overlap 0.25, batch 4, cpu fp32, windows without signal skipped'
        """
        config = getattr(self.network, "config", {})  # what dineuro's networks record
        kind = config.get("size", type(self.network).__name__)
        transfer = config.get("transfer")
        network = f"{kind} ({transfer})" if transfer else str(kind)
        window = "x".join(str(c) for c in self.crop)
        skipping = "windows without signal skipped" if self.skip_empty else "every window"
        flips = ", 8 flips" if self.flips else ""
        batch = resolve_batch_size(self.batch_size, self.crop)
        sigma = self.normalization.background
        background = f", background of sigma {sigma:g} voxels subtracted" if sigma else ""
        view = (f", and a view less a background of sigma {self.background_view:g} voxels"
                if self.background_view else "")
        return (f"{self.source}: {network}{background}{view}, window {window}, overlap "
                f"{self.overlap:g}, batch {batch}{flips}, {self.device} "
                f"{resolve_precision(self.precision, self.device)}, {skipping}")

    def predict(self, image: np.ndarray, *, progress: Progress | None = None,
                stats: WindowStats | None = None) -> np.ndarray:
        """The probability map of a raw (z, y, x) stack held in memory.

        The stack is normalised as in training (and, with a background view, also less its
        background), then predicted window by window; the result is float32 in [0, 1] with the
        stack's shape.
        """
        return predict_raw(self.network, image, self.crop, self.normalization,
                           progress=progress, stats=stats, **self.window_options)

    def predict_file(self, path: str | os.PathLike, *, channel: int | None = None,
                     progress: Progress | None = None,
                     stats: WindowStats | None = None) -> Volume:
        """The probability map of a stack file, in memory, with the stack's spacing."""
        return predict_file(self.network, path, self.crop, self.normalization, channel=channel,
                            progress=progress, stats=stats, **self.window_options)

    def predict_to(self, path: str | os.PathLike, out_dir: str | os.PathLike, *,
                   threshold: float = DEFAULT_THRESHOLD, prob_dtype: str = DEFAULT_PROB_DTYPE,
                   channel: int | None = None, progress: Progress | None = None,
                   stats: WindowStats | None = None) -> tuple[Path, Path]:
        """Write a stack's probability map and mask into ``out_dir``
        (:func:`~dineuro.predict.predict_stack`); returns their paths."""
        return predict_stack(self.network, path, out_dir, self.crop, self.normalization,
                             threshold=threshold, prob_dtype=prob_dtype, channel=channel,
                             progress=progress, stats=stats, **self.window_options)

    def predict_blocks(self, src, dst, *, block: Sequence[int] = DEFAULT_BLOCK,
                       prob_dtype: str = "float32", progress: Progress | None = None,
                       stats: WindowStats | None = None):
        """Predict a zarr array block by block into a zarr array
        (:func:`~dineuro.predict.predict_blocks`), for stacks larger than memory."""
        return predict_blocks(self.network, src, dst, self.crop, self.normalization,
                              block=block, prob_dtype=prob_dtype, progress=progress,
                              stats=stats, **self.window_options)

    def run(self, stack: str | os.PathLike, out_dir: str | os.PathLike, *,
            threshold: float = DEFAULT_THRESHOLD, prob_dtype: str = DEFAULT_PROB_DTYPE,
            channel: int | None = None, mask: str = DEFAULT_RUN_MASK,
            progress: Progress | None = None,
            on_tracing: Callable[[], None] | None = None, **trace_options) -> StackRun:
        """Predict and trace one stack: writes NAME_prob.tif, NAME_mask.tif and NAME.swc.

        The map is traced from memory (at full float precision, whatever ``prob_dtype``), and
        the three files are written after tracing, all or none, so a stack whose files exist is
        done. A map that cannot be traced (empty, or mostly foreground) gets an SWC that says
        why and a ``UserWarning``; the map and the mask above ``threshold`` are written as
        usual.

        Parameters
        ----------
        stack : str or os.PathLike
            The input stack.
        out_dir : str or os.PathLike
            The output folder (it must exist).
        threshold, prob_dtype, channel
            As for :func:`~dineuro.predict.predict_stack`.
        mask : {"traced", "threshold"}, optional
            NAME_mask.tif holds the pieces of the map above ``threshold`` that the trace runs
            through (:func:`dineuro.trace.traced_mask`: without the noise and debris the tracer
            removed), or with "threshold" every voxel above it, as ``predict`` writes.
        progress : callable, optional
            ``progress(done, total)`` in windows.
        on_tracing : callable, optional
            Called when prediction is done and tracing starts.
        **trace_options
            Options of :func:`dineuro.trace.trace` (high, low, max_gap, ...).

        Raises
        ------
        InputError
            An unreadable stack, an output that exists, or a bad option.
        """
        from dineuro import trace

        stack = Path(stack)
        check_choice(mask, RUN_MASKS, "mask")
        outputs = (*checked_outputs(stack, out_dir, threshold, prob_dtype),
                   swc_path(stack, out_dir))
        stats, start = WindowStats(), time.perf_counter()
        raw = read_volume(stack, channel)
        prob = Volume(self.predict(raw.array, progress=progress, stats=stats), raw.spacing)
        predicted = time.perf_counter()
        if on_tracing is not None:
            on_tracing()
        reason = None
        try:
            tree = trace.trace_volume(prob, source=outputs[0], kind="probability",
                                      image=raw.array, **trace_options)
        except InputError as exc:
            reason = str(exc)
            tree = trace.untraced(outputs[0], reason)
            warnings.warn(f"not traced: {reason}", UserWarning, stacklevel=2)
        foreground = prob.array > threshold
        if mask == "traced" and reason is None:
            foreground = trace.traced_mask(foreground, tree)
        traced = time.perf_counter()
        with undo_on_failure(*outputs):
            write_prediction(prob, *outputs[:2], prob_dtype=prob_dtype, mask=foreground)
            write_swc(outputs[2], tree, allow_empty=True)
        return StackRun(stack, outputs, tree, stats, predicted - start, traced - predicted,
                        reason)


def run(stack: np.ndarray | str | os.PathLike, model: str | os.PathLike | None = "default", *,
        spacing: Sequence[float] | None = None, channel: int | None = None,
        device: str = "auto", **trace_options) -> tuple[np.ndarray, SwcTree]:
    """Predict and trace one stack, in memory: ``dineuro run`` for a notebook.

    Parameters
    ----------
    stack : numpy.ndarray or str or os.PathLike
        A raw (z, y, x) stack, or a file or folder :func:`~dineuro.io.read_volume` reads.
    model : str or os.PathLike, optional
        A checkpoint, or "default" for the packaged model.
    spacing : sequence of float, optional
        (z, y, x) voxel size of an array (1.0 each if not given); a file's own spacing is used
        for a file.
    channel : int, optional
        The channel of a multi-channel file.
    device : str, optional
        "auto", "cpu", "cuda" or "cuda:N".
    **trace_options
        Options of :func:`dineuro.trace.trace` (units, neurite_type, high, low, ...).

    Returns
    -------
    probability : numpy.ndarray
        The float32 probability map, the stack's shape.
    tree : SwcTree
        The traced trees (``tree.to_navis()`` for navis).

    Examples
    --------
    >>> from dineuro.data.synth import PRESETS, synthesize_stack
    >>> neuron = synthesize_stack(PRESETS["small"], 0)
    >>> prob, tree = run(neuron.image, spacing=neuron.spacing, device="cpu")
    >>> prob.shape == neuron.image.shape and len(tree) > 0
    True
    """
    from dineuro.trace import trace

    if isinstance(stack, (str, os.PathLike)):
        stack, spacing = read_volume(stack, channel)
    predictor = Predictor.from_checkpoint(model, device=device)
    stack = np.asarray(stack)
    prob = predictor.predict(stack)
    return prob, trace(prob, spacing or (1.0, 1.0, 1.0), kind="probability", image=stack,
                       **trace_options)
