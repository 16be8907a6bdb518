"""The window loop: which windows run, the network on them in batches, Gaussian blending.

Every window of a :class:`~dineuro.predict.WindowGrid` is weighted by MONAI's Gaussian
importance map (:func:`importance_map`, sigma = :data:`SIGMA_SCALE` of the crop, floored at
1e-3) and the map is the weighted sum of the windows' class-1 probabilities over the sum of all
weights: what ``monai.inferers.sliding_window_inference(mode="gaussian")`` computes, whose
windows the grid's are. We run the loop ourselves rather than through MONAI for two reasons:
a block of a large stack is blended from exactly the whole stack's windows that touch it
(MONAI would place its own windows over the block), and windows without signal
(:func:`~dineuro.predict.signal_windows`) are not computed at all, yet keep their weight with
probability 0, so a skipped window gives exactly what a network that sees only background
would give it.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dineuro.defaults import PASS_VOXELS
from dineuro.errors import InputError
from dineuro.models.vit3d import Triple
from dineuro.predict._signal import SignalLevel, Starts, region_signal

#: MONAI's Gaussian blending: sigma = this fraction of the crop, per axis.
SIGMA_SCALE = 0.125
#: Least weight of a window voxel (MONAI's floor): a voxel that only windows' far corners
#: cover is not divided by a weight near zero.
LEAST_WEIGHT = 1e-3
#: Every combination of flipping the (z, y, x) axes of a (B, C, z, y, x) batch; () is none.
FLIP_AXES = tuple(axes for n in range(4) for axes in itertools.combinations((2, 3, 4), n))
CLASSES = 2
NEURITE = 1

Progress = Callable[[int, int], None]


@dataclass
class WindowStats:
    """What a prediction did, filled in when passed as ``stats``: for reports and benchmarks.

    Attributes
    ----------
    windows : int
        Windows in the grid (over all blocks, for block-wise prediction).
    computed : int
        Windows the network ran on (the others held no signal).
    precision : str
        "bf16" or "fp32", as resolved for the device.
    """

    windows: int = 0
    computed: int = 0
    precision: str = ""


class WindowPredictor:
    """The network on a batch of windows: class-1 softmax, flips, precision, progress.

    ``progress(done, total)`` counts windows: computed ones after their batch, skipped ones
    when the skip is decided, so the bar moves at the speed the stack really costs.
    """

    def __init__(self, model: nn.Module, crop: Triple, flips: bool, device, precision: str,
                 total: int, progress: Progress | None, stats: WindowStats | None = None):
        self.model, self.crop = model, crop
        self.bf16 = precision == "bf16"
        self.device = torch.device(device)
        self.flips = FLIP_AXES if flips else ((),)
        self.total, self.progress, self.done = total, progress, 0
        self.stats = WindowStats() if stats is None else stats
        self.stats.windows, self.stats.computed, self.stats.precision = total, 0, precision

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        windows = windows.to(self.device)
        prob = sum(self._prob(windows.flip(axes)).flip(axes) if axes else self._prob(windows)
                   for axes in self.flips)
        self.stats.computed += len(windows)
        self.advance(len(windows))
        return (prob[:, 0] / len(self.flips) if len(self.flips) > 1 else prob[:, 0]).cpu()

    def advance(self, windows: int) -> None:
        self.done += windows
        if self.progress is not None and windows:
            self.progress(self.done, self.total)

    def _prob(self, windows: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":  # as the weights (see inference)
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(windows)
        expected = (windows.shape[0], CLASSES, *self.crop)
        if tuple(logits.shape) != expected:
            raise ValueError(f"the model should map windows {tuple(windows.shape)} to logits "
                             f"{expected} (background, neurite), got {tuple(logits.shape)}.")
        return torch.softmax(logits.float(), dim=1)[:, NEURITE:NEURITE + 1]


def importance_map(crop: Triple) -> torch.Tensor:
    """The weight of each voxel of a window: exp(-d^2 / (2 sigma^2)) per axis, d the distance
    from the window's centre and sigma :data:`SIGMA_SCALE` of its side, multiplied over the axes
    and floored at :data:`LEAST_WEIGHT`; what ``monai.data.utils.compute_importance_map(crop,
    "gaussian")`` gives, without importing MONAI at prediction (its import costs more than a
    second; :mod:`dineuro.models.unet_blocks`)."""
    weight = torch.ones(())
    for side in crop:
        d = torch.arange(side, dtype=torch.float32) - (side - 1) / 2
        weight = weight[..., None] * torch.exp(d**2 / (-2 * (SIGMA_SCALE * side) ** 2))
    return weight.clamp_(min=max(weight.min().item(), LEAST_WEIGHT))


def blend(region: torch.Tensor, starts: Starts, crop: Triple, batch_size: int,
          predictor: WindowPredictor, level: SignalLevel | None) -> torch.Tensor:
    """Gaussian-blended probability over a (z, y, x) region covered by the given windows.

    ``starts`` holds, per axis, where the windows start in ``region``; every window lies
    inside it and every voxel of it is in some window. With the stack's signal ``level`` only
    the windows with signal are computed, without it all of them.
    """
    weight = importance_map(crop)
    corners = list(itertools.product(*starts))
    run = (region_signal(region, starts, crop, level) if level is not None
           else np.ones(len(corners), dtype=bool))
    total = torch.zeros(region.shape)
    for corner in corners:
        total[_window(corner, crop)] += weight
    chosen = [corner for corner, keep in zip(corners, run, strict=True) if keep]
    predictor.advance(len(corners) - len(chosen))
    out = torch.zeros(region.shape)
    for first in range(0, len(chosen), batch_size):
        batch = [_window(corner, crop) for corner in chosen[first:first + batch_size]]
        prob = predictor(torch.stack([region[where] for where in batch])[:, None])
        for where, window_prob in zip(batch, prob, strict=True):
            out[where] += weight * window_prob
    return out.div_(total)


@contextlib.contextmanager
def inference(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode and inference mode on ``device``; the model's train/eval mode is restored.

    On a CPU the 3D convolutions' weights are stored channels-last meanwhile (their memory
    layout only, restored afterwards so that training goes on bit for bit as it would have):
    oneDNN then convolves without reordering every activation, measured about 25 % faster per
    window for the default network in bf16 and 10 % in float32.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model should be a torch.nn.Module, got {type(model).__name__}.")
    training = model.training
    model.to(device).eval()
    convolutions = [module for module in model.modules()
                    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d))
                    and module.weight.is_contiguous()] if device.type == "cpu" else []
    for module in convolutions:
        module.to(memory_format=torch.channels_last_3d)
    try:
        with torch.inference_mode():
            yield
    finally:
        for module in convolutions:
            module.to(memory_format=torch.contiguous_format)
        model.train(training)


def resolve_batch_size(batch_size: int | None, crop: Triple) -> int:
    """Windows per forward pass: ``batch_size``, or for None as many windows of ``crop`` as
    hold about :data:`~dineuro.defaults.PASS_VOXELS` voxels (at least one).

    Examples
    --------
    >>> resolve_batch_size(None, (48, 48, 48)), resolve_batch_size(None, (48, 96, 96))
    (4, 1)
    """
    if batch_size is None:
        return max(1, round(PASS_VOXELS / math.prod(crop)))
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise InputError(f"batch_size should be a positive int, got {batch_size!r}.")
    return batch_size


def _window(corner: tuple[int, ...], crop: Triple) -> tuple[slice, ...]:
    return tuple(slice(c, c + n) for c, n in zip(corner, crop, strict=True))

