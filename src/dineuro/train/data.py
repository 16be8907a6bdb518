"""Training data in memory: stacks, foreground-biased random crops and augmentations.

- Loading. Every stack and label is read once (:func:`load_stacks`) and kept in its stored
  dtype (a uint8 stack costs one byte per voxel); labels are kept as bool with the flat indices
  of their foreground voxels. Each stack gets its whole-stack intensity limits once
  (:meth:`NormalizationConfig.limits`, percentile 1 and 99.9 by default); a crop is normalised
  with its stack's limits (clip, then scale to [0, 1]), which gives exactly the voxels of
  normalising the whole stack first, as prediction does, without holding a float32 copy.
- Crops (:class:`CropSampler`). A crop comes from a uniformly chosen training stack. With
  probability ``foreground_prob`` it is centred on a uniformly chosen foreground voxel (voxel
  ``c`` is at index ``crop // 2`` of the crop); otherwise its start is uniform over all
  positions that keep it inside the stack (or, along an axis where the stack is smaller than
  the crop, over all positions that keep the stack inside the crop). Whatever lies outside the
  stack is zeros in the image (the normalised background, as prediction pads) and background in
  the label. With ``augment.zero_floor``, a crop may come from its stack less one of the
  stack's percentiles, clipped at zero (see :meth:`CropSampler.draw`). A normalisation that
  subtracts a background needs each crop's surroundings: such stacks are kept normalised
  (:func:`crop_source`). A stack without foreground gets uniform crops. MONAI's
  ``RandCropByPosNegLabeld`` is not used: it centres "negative" crops on background voxels
  rather than uniformly, and clips centres away from the border, so a foreground voxel near the
  edge is never the centre.
- Augmentation (:class:`Augmenter`): MONAI dict transforms, spatial ones on image and label
  together, intensity ones on the image only. Each crop's transforms are re-seeded from the
  sampler's generator, so the generator's state is the whole random state of the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dineuro.data.dataset import Dataset
from dineuro.data.normalize import NormalizationConfig, rescale
from dineuro.errors import InputError
from dineuro.train.config import ZERO_FLOOR_PERCENTILES, ZERO_FLOOR_PROB, AugmentConfig

#: Limits of a stack kept already normalised: crops are rescaled by them unchanged.
NORMALISED = (0.0, 1.0)
#: Probability of mirroring each of the z, y, x axes.
FLIP_PROB = 0.5
#: Probability of a rotation by k * 90 degrees (k uniform in 1..3) in the x-y plane.
ROTATE90_PROB = 0.5
#: Intensity transforms: probability and magnitude (image in [0, 1] after normalisation).
SCALE_PROB, SCALE_FACTOR = 0.3, 0.2  # image * (1 + U(-0.2, 0.2))
SHIFT_PROB, SHIFT_OFFSET = 0.3, 0.1  # image + U(-0.1, 0.1)
CONTRAST_PROB, CONTRAST_GAMMA = 0.3, (0.7, 1.5)
NOISE_PROB, NOISE_STD = 0.2, 0.03  # std drawn from U(0, 0.03)
#: Strong augmentation (``Augmenter(strong=True)``, for crops labelled by the model itself):
#: on top of the above, another blur, a wider gamma and more noise, so the network cannot
#: match its own labels by repeating what it already saw.
BLUR_PROB, BLUR_SIGMA = 0.3, (0.3, 1.2)  # Gaussian blur, sigma per axis from U(0.3, 1.2)
STRONG_CONTRAST_PROB, STRONG_CONTRAST_GAMMA = 0.3, (0.5, 2.0)
STRONG_NOISE_PROB, STRONG_NOISE_STD = 0.3, 0.08
#: Seeds handed to MONAI transforms are below this (``RandomState`` takes uint32).
SEED_BOUND = 2**32


@dataclass
class Stack:
    """One training or validation stack in memory.

    Attributes
    ----------
    name : str
        The stack's name in the dataset.
    raw : numpy.ndarray
        The stack as stored, (z, y, x).
    label : numpy.ndarray
        Foreground mask, bool, same shape (or a uint8 pseudo-label whose values 0, 1 and
        :data:`dineuro.adapt.labels.IGNORE` pass through crops and augmentation).
    limits : tuple of 2 float
        Whole-stack intensity limits of the normalisation.
    spacing : tuple of 3 float
        Voxel size (z, y, x).
    foreground : numpy.ndarray
        Flat indices of the foreground voxels (int64).
    """

    name: str
    raw: np.ndarray
    label: np.ndarray
    limits: tuple[float, float]
    spacing: tuple[float, float, float]
    foreground: np.ndarray

    def normalized(self) -> np.ndarray:
        """The whole stack normalised (float32 in [0, 1])."""
        return rescale(self.raw, *self.limits)


def load_stacks(dataset: Dataset, names: Sequence[str], norm: NormalizationConfig
                ) -> list[Stack]:
    """Read the stacks ``names`` with their labels (rendered from SWC when absent).

    With a ``background`` to subtract (:class:`NormalizationConfig`), each stack is kept
    normalised (float32) with limits :data:`NORMALISED`, which crops rescale by as they are.
    """
    stacks = []
    for name in names:
        image = dataset.image(name)
        if image.array.ndim != 3:
            raise InputError(f"stack {name!r} should be 3D (z, y, x), got shape "
                             f"{image.array.shape}.", dataset.root)
        label = np.ascontiguousarray(dataset.label(name, image), dtype=bool)
        try:
            raw, limits = crop_source(image.array, norm.limits(image.array), norm)
        except InputError as exc:  # name the stack the dataset's folder holds
            raise InputError(f"stack {name!r} cannot be normalised: {exc}",
                             dataset.root) from exc
        stacks.append(Stack(name, np.ascontiguousarray(raw), label, limits,
                            tuple(float(s) for s in image.spacing),
                            np.flatnonzero(label).astype(np.int64)))
    return stacks


def crop_source(raw: np.ndarray, limits: tuple[float, float], norm: NormalizationConfig
                ) -> tuple[np.ndarray, tuple[float, float]]:
    """What a :class:`Stack` holds of a raw stack with its ``limits``: the stack as stored, or,
    when ``norm`` subtracts a background (which a crop cannot do without the stack around
    it), the stack normalised once with limits :data:`NORMALISED`."""
    if not norm.background:
        return raw, limits
    return norm.normalize(raw, limits), NORMALISED


def extract(array: np.ndarray, start: Sequence[int], crop: Sequence[int],
            fill=0) -> np.ndarray:
    """``array[start:start + crop]`` with ``fill`` where the box leaves the array.

    Examples
    --------
    >>> extract(np.arange(4).reshape(1, 1, 4), (0, 0, -1), (1, 1, 3))
    array([[[0, 0, 1]]])
    """
    out = np.full(tuple(crop), fill, dtype=array.dtype)
    box = _overlap(start, crop, array.shape)
    if box is not None:
        out[box[1]] = array[box[0]]
    return out


def _overlap(start, crop, shape):
    """(slices into the array, slices into the crop) of the part of the box inside the array,
    or None when the box misses the array."""
    inside = tuple(slice(max(s, 0), min(s + c, n)) for s, c, n in zip(start, crop, shape,
                                                                        strict=True))
    if any(sl.stop <= sl.start for sl in inside):
        return None
    return inside, tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(inside, start,
                                                                          strict=True))


class CropSampler:
    """Foreground-biased random crops (z, y, x) from stacks in memory; see the module docstring.

    Parameters
    ----------
    stacks : sequence of Stack
        The training stacks.
    crop : sequence of int
        Crop size (z, y, x).
    foreground_prob : float
        Probability of centring a crop on a foreground voxel.
    rng : numpy.random.Generator
        The generator of every random choice (stack, position, augmentation seeds).
    zero_floor : bool, optional
        Clip a share of the crops' stacks at one of their percentiles (:meth:`draw`); off, no
        random number is drawn for it, so samplers without it draw as before it existed.
    """

    def __init__(self, stacks: Sequence[Stack], crop: Sequence[int], foreground_prob: float,
                 rng: np.random.Generator, zero_floor: bool = False):
        if not stacks:
            raise ValueError("CropSampler needs at least one stack.")
        self.stacks, self.crop = list(stacks), tuple(int(c) for c in crop)
        self.foreground_prob, self.rng = float(foreground_prob), rng
        self.zero_floor = bool(zero_floor)
        self._percentiles: dict[int, np.ndarray] = {}  # stack index -> ZERO_FLOOR_PERCENTILES

    def start(self) -> tuple[int, tuple[int, int, int], bool]:
        """(stack index, crop start (may be negative), whether the crop is foreground-centred)."""
        index = int(self.rng.integers(len(self.stacks)))
        stack = self.stacks[index]
        if self.rng.random() < self.foreground_prob and stack.foreground.size:
            flat = stack.foreground[self.rng.integers(stack.foreground.size)]
            centre = np.unravel_index(flat, stack.label.shape)
            return index, tuple(int(c) - k // 2 for c, k in zip(centre, self.crop, strict=True)
                                ), True
        start = tuple(int(self.rng.integers(min(0, n - k), max(0, n - k) + 1))
                      for n, k in zip(stack.label.shape, self.crop, strict=True))
        return index, start, False

    def draw(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(normalised image float32, label bool, foreground-centred) of one random crop.

        With ``zero_floor``, the image is, with probability
        :data:`~dineuro.train.config.ZERO_FLOOR_PROB`, the crop of ``max(stack - f, 0)``
        normalised with that clipped stack's own limits, ``f`` the stack's p-th percentile for
        p uniform in :data:`~dineuro.train.config.ZERO_FLOOR_PERCENTILES`. Clipping is monotone
        and p lies between the normalisation's percentiles, so those limits are 0 and the
        stack's upper limit less ``f``: no pass over the clipped stack is needed.
        """
        index, start, centred = self.start()
        stack = self.stacks[index]
        floor = self._floor(index) if self.zero_floor else None
        # Normalise, then pad with 0: the normalised background, as prediction pads.
        image = np.zeros(self.crop, np.float32)
        box = _overlap(start, self.crop, stack.raw.shape)
        if box is not None:
            raw, (low, high) = stack.raw[box[0]], stack.limits
            if floor is not None:
                raw, low, high = np.maximum(raw.astype(np.float32) - floor, 0), 0.0, high - floor
            image[box[1]] = rescale(raw, low, high)
        return image, extract(stack.label, start, self.crop, fill=False), centred

    def _floor(self, index: int) -> float | None:
        """The percentile to clip stack ``index`` at for this crop, or None (not clipped)."""
        if self.rng.random() >= ZERO_FLOOR_PROB:
            return None
        k = int(self.rng.integers(len(ZERO_FLOOR_PERCENTILES)))
        if index not in self._percentiles:
            self._percentiles[index] = np.percentile(self.stacks[index].raw,
                                                     ZERO_FLOOR_PERCENTILES)
        floor = float(self._percentiles[index][k])
        return floor if floor < self.stacks[index].limits[1] else None


class Augmenter:
    """MONAI dict transforms for (1, z, y, x) image/label crops; see :class:`AugmentConfig`.

    Parameters
    ----------
    config : AugmentConfig
        Which transforms are on.
    crop : sequence of int
        The crop (z, y, x); ``rotate90`` needs y == x.
    strong : bool, optional
        Add the strong intensity transforms (blur, wide gamma, more noise) after the configured
        ones.

    Raises
    ------
    InputError
        ``rotate90`` with a crop whose y and x differ.
    """

    def __init__(self, config: AugmentConfig, crop: Sequence[int], strong: bool = False):
        from monai.transforms import (
            Compose,
            RandAdjustContrastd,
            RandFlipd,
            RandGaussianNoised,
            RandGaussianSmoothd,
            RandRotate90d,
            RandScaleIntensityd,
            RandShiftIntensityd,
            ToTensord,
        )

        both, image = ["image", "label"], ["image"]
        if config.rotate90 and crop[1] != crop[2]:
            raise InputError(f"augment.rotate90 needs a crop with equal y and x, got crop "
                             f"{list(crop)}; change the crop or set augment.rotate90=false.")
        transforms = []
        if config.flip:
            transforms += [RandFlipd(both, prob=FLIP_PROB, spatial_axis=axis) for axis in range(3)]
        if config.rotate90:  # spatial axes (1, 2) = (y, x); z is never rotated into y or x
            transforms.append(RandRotate90d(both, prob=ROTATE90_PROB, max_k=3,
                                            spatial_axes=(1, 2)))
        if config.scale_intensity:
            transforms.append(RandScaleIntensityd(image, factors=SCALE_FACTOR, prob=SCALE_PROB))
        if config.shift_intensity:
            transforms.append(RandShiftIntensityd(image, offsets=SHIFT_OFFSET, prob=SHIFT_PROB))
        if config.contrast:
            transforms.append(RandAdjustContrastd(image, gamma=CONTRAST_GAMMA,
                                                  prob=CONTRAST_PROB))
        if config.noise:
            transforms.append(RandGaussianNoised(image, prob=NOISE_PROB, std=NOISE_STD))
        if strong:
            transforms += [
                RandGaussianSmoothd(image, sigma_x=BLUR_SIGMA, sigma_y=BLUR_SIGMA,
                                    sigma_z=BLUR_SIGMA, prob=BLUR_PROB),
                RandAdjustContrastd(image, gamma=STRONG_CONTRAST_GAMMA,
                                    prob=STRONG_CONTRAST_PROB),
                RandGaussianNoised(image, prob=STRONG_NOISE_PROB, std=STRONG_NOISE_STD)]
        transforms.append(ToTensord(both, track_meta=False))
        self.transform = Compose(transforms)

    def __call__(self, image: np.ndarray, label: np.ndarray, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented (1, z, y, x) float32 image and label tensors; ``seed`` fixes every choice."""
        self.transform.set_random_state(seed=int(seed))
        out = self.transform({"image": torch.from_numpy(image[None].copy()),
                              "label": torch.from_numpy(label[None].astype(np.float32))})
        return out["image"].float().contiguous(), out["label"].float().contiguous()


class TrainingCrops:
    """Batches of augmented crops: the sampler and the augmenter behind one generator.

    Parameters
    ----------
    stacks : sequence of Stack
        The training stacks.
    crop : sequence of int
        Crop size (z, y, x).
    foreground_prob : float
        See :class:`CropSampler`.
    augment : AugmentConfig
        See :class:`Augmenter`.
    rng : numpy.random.Generator
        The single source of randomness; its state (:meth:`state`) is all a resumed run needs to
        draw the same batches.
    """

    def __init__(self, stacks: Sequence[Stack], crop: Sequence[int], foreground_prob: float,
                 augment: AugmentConfig, rng: np.random.Generator):
        self.rng = rng
        self.sampler = CropSampler(stacks, crop, foreground_prob, rng, augment.zero_floor)
        self.augmenter = Augmenter(augment, crop)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (size, 1, z, y, x) float32 in about [0, 1] and labels (size, 1, z, y, x) 0/1."""
        pairs = []
        for _ in range(size):
            image, label, _ = self.sampler.draw()
            pairs.append(self.augmenter(image, label, int(self.rng.integers(SEED_BOUND))))
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def state(self) -> dict:
        """The generator state (plain dict of str and int)."""
        return self.rng.bit_generator.state

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
