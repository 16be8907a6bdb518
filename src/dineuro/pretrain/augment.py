"""DINO's multi-crop augmentation (Caron et al. 2021), as plain tensor operations.

Each image gives two *global* crops covering 40-100 % of it and several small *local* crops
covering 5-40 %; the student sees all of them, the teacher only the global ones, so the student
learns to predict from a part what the teacher sees in the whole. Every crop is then flipped,
colour-jittered, maybe turned grey, blurred and (second global crop only) solarised, with the
probabilities and magnitudes of the published recipe, and normalised with the ImageNet mean and
standard deviation that the official DINO checkpoints expect, so a teacher trained here reads
the same input as a downloaded one.

Images are float tensors (channel, row, column) with values in [0, 1], (3, H, W) for colour
and (1, H, W) for grey: a training set of grey images is held in memory as one plane per image
(see :mod:`dineuro.pretrain.images`), and a grey image becomes three equal channels only after
its random resized crop, which then costs a third as much. Crops are always (3, S, S), the
input of DINO's networks; the operations also take a leading batch dimension. Every random draw
comes from the ``torch.Generator`` passed in, so the same seed gives the same crops, and a grey
image gives exactly the crops of its three-channel copy.

The published recipe works at 224-pixel global crops. Smaller crops show the same content at
a coarser pixel size, so the blur's standard deviation (given in pixels at
:data:`REFERENCE_SIZE`) is scaled by ``global_size / REFERENCE_SIZE`` for every crop; the
Gaussian kernel is cut at :data:`BLUR_TRUNCATE` standard deviations, so its size follows. At
``global_size=224`` this is exactly the published blur, local crops included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dineuro.errors import InputError

#: Channels of every crop (red, green, blue), as DINO's networks take them.
CHANNELS = 3
#: Side in pixels of the global crops of the published recipe; blur sizes are given at it.
REFERENCE_SIZE = 224
#: Channel mean and standard deviation of ImageNet, which DINO's teachers are trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ITU-R 601-2 luma weights of (R, G, B): the grey value of a colour.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: Range (min, max) of the width / height ratio of a random crop, drawn log-uniformly.
CROP_RATIO = (3 / 4, 4 / 3)
#: Random crop boxes tried before falling back to a centre crop.
CROP_TRIES = 10
#: The Gaussian blur kernel extends this many standard deviations either side.
BLUR_TRUNCATE = 4.0
#: Values at or above this are inverted by solarisation (128 of 255 in the original).
SOLARIZE_THRESHOLD = 0.5
#: Sectors of the hue circle (red, yellow, green, cyan, blue, magenta).
_HUE_SECTORS = 6
#: n of the closed form in hsv_to_rgb, for red, green and blue.
_HSV_OFFSETS = torch.tensor((5.0, 3.0, 1.0)).view(3, 1, 1)
_LUMA = torch.tensor(LUMA_WEIGHTS).view(3, 1, 1)


def crop_box(height: int, width: int, scale: Sequence[float], generator: torch.Generator,
             ratio: Sequence[float] = CROP_RATIO) -> tuple[int, int, int, int]:
    """A random crop box (top, left, height, width) in pixels of a (height, width) image.

    The box covers an area fraction drawn uniformly in ``scale`` with a width / height ratio
    drawn log-uniformly in ``ratio``; when :data:`CROP_TRIES` draws do not fit in the image, the
    largest centred box whose ratio lies in ``ratio`` is taken instead.
    """
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    tries = torch.rand(CROP_TRIES, 2, generator=generator).tolist()
    position = torch.rand(2, generator=generator).tolist()
    for area_draw, ratio_draw in tries:
        target = area * _between(scale[0], scale[1], area_draw)
        aspect = math.exp(_between(log_low, log_high, ratio_draw))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = min(int(position[0] * (height - h + 1)), height - h)
            left = min(int(position[1] * (width - w + 1)), width - w)
            return top, left, h, w
    image_ratio = width / height
    if image_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif image_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: torch.Tensor, top: int, left: int, height: int, width: int,
                 size: int) -> torch.Tensor:
    """Crop a box from a (..., C, H, W) image and resize it to (size, size).

    Bicubic interpolation with antialiasing (as a downscaling photo library does), clamped to
    [0, 1] because bicubic overshoots at edges. Cropping first keeps the cost at that of the box.
    """
    box = image[..., top:top + height, left:left + width]
    flat = box.reshape(-1, *box.shape[-3:])
    out = F.interpolate(flat, size=(size, size), mode="bicubic", antialias=True,
                        align_corners=False)
    return out.clamp_(0.0, 1.0).reshape(*box.shape[:-2], size, size)


def luma(image: torch.Tensor) -> torch.Tensor:
    """The grey value (..., 1, H, W) of a (..., 3, H, W) RGB image, ITU-R 601-2 weights."""
    weights = _LUMA.to(image)
    return (image * weights).sum(dim=-3, keepdim=True)


def to_grayscale(image: torch.Tensor) -> torch.Tensor:
    """A (..., 3, H, W) RGB image as grey, kept as three equal channels."""
    return luma(image).expand_as(image).contiguous()


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply by ``factor`` (1 = unchanged, 0 = black), clamped to [0, 1]."""
    return (image * factor).clamp_(0.0, 1.0)


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the image's mean grey value: ``factor * x + (1 - factor) * mean``, in [0, 1].

    ``factor`` 1 is unchanged, 0 a uniform grey; the mean is that of :func:`luma` over the whole
    image, as the photo libraries compute it.
    """
    mean = luma(image).mean(dim=(-3, -2, -1), keepdim=True)
    return (factor * image + (1.0 - factor) * mean).clamp_(0.0, 1.0)


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the grey image: ``factor * x + (1 - factor) * luma(x)``, in [0, 1].

    ``factor`` 1 is unchanged, 0 grey, above 1 more colourful.
    """
    return (factor * image + (1.0 - factor) * luma(image)).clamp_(0.0, 1.0)


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] to (hue, saturation, value), each in [0, 1].

    Hue is in turns of the colour circle (0 red, 1/3 green, 2/3 blue); grey pixels get hue 0.
    """
    tiny = torch.finfo(image.dtype).tiny
    r, g, b = image.unbind(dim=-3)
    value = image.amax(dim=-3)
    delta = value - image.amin(dim=-3)
    # Hue in sixths of a turn: the largest channel picks the centre (red 0, green 2, blue 4),
    # the difference of the other two the offset from it, in [-1, 1].
    sector = torch.where(r == value, g - b,
                         torch.where(g == value, b - r + 2 * delta, r - g + 4 * delta))
    hue = torch.remainder(sector / delta.clamp_min(tiny), _HUE_SECTORS) / _HUE_SECTORS
    hue = hue.masked_fill_(delta == 0, 0.0)
    return torch.stack((hue, delta / value.clamp_min(tiny), value), dim=-3)


def hsv_to_rgb(image: torch.Tensor, shift: float = 0.0) -> torch.Tensor:
    """(..., 3, H, W) (hue, saturation, value) in [0, 1] back to RGB; inverse of rgb_to_hsv.

    ``shift`` (turns) is added to the hue first. Uses the closed form
    ``c_n = v - v s clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h) mod 6`` and n = 5, 3, 1
    for red, green and blue.
    """
    hue, saturation, value = (t.unsqueeze(-3) for t in image.unbind(dim=-3))
    k = torch.remainder(_HSV_OFFSETS.to(image) + hue * _HUE_SECTORS + shift * _HUE_SECTORS,
                        _HUE_SECTORS)
    return value - value * saturation * torch.minimum(k, 4 - k).clamp_(0.0, 1.0)


def adjust_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns of the colour circle (in [-0.5, 0.5]; 0 = unchanged)."""
    return hsv_to_rgb(rgb_to_hsv(image), shift)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur a (..., C, H, W) image with a Gaussian of standard deviation ``sigma`` pixels.

    Separable, cut at :data:`BLUR_TRUNCATE` standard deviations and normalised to sum 1, so a
    constant image stays constant; borders are mirrored (reflection without repeating the edge
    pixel). The kernel radius is capped at the image side minus one, which mirroring requires.
    Each axis is blurred as a product with a (side x side) matrix (:func:`blur_matrix`), which
    for crops of a few hundred pixels is faster on a CPU than a convolution.
    """
    if sigma <= 0:
        raise InputError(f"sigma should be positive, got {sigma}.")
    height, width = image.shape[-2:]
    rows = blur_matrix(height, sigma, image.dtype, image.device)
    columns = rows if width == height else blur_matrix(width, sigma, image.dtype, image.device)
    return rows @ image @ columns.T


def blur_matrix(size: int, sigma: float, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
    """The (size, size) matrix that blurs a signal of ``size`` samples; see gaussian_blur.

    Row ``i`` holds the Gaussian weights of the samples around ``i``, those beyond an end folded
    back onto their mirror image, so every row sums to 1.
    """
    radius = min(math.ceil(BLUR_TRUNCATE * sigma), size - 1)
    offsets = torch.arange(-radius, radius + 1)
    kernel = torch.exp(-0.5 * (offsets.to(torch.float64) / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(dtype)
    sources = (torch.arange(size).unsqueeze(1) + offsets).abs()
    sources = torch.where(sources > size - 1, 2 * (size - 1) - sources, sources)
    matrix = torch.zeros(size, size, dtype=dtype)
    matrix.scatter_add_(1, sources, kernel.expand(size, -1))
    return matrix.to(device=device)


def solarize(image: torch.Tensor, threshold: float = SOLARIZE_THRESHOLD) -> torch.Tensor:
    """Invert (``1 - x``) every value at or above ``threshold``; values in [0, 1]."""
    return torch.where(image >= threshold, 1.0 - image, image)


def normalize(image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """``(x - mean) / std`` per channel of a (..., 3, H, W) image."""
    mean_t = image.new_tensor(mean).view(-1, 1, 1)
    std_t = image.new_tensor(std).view(-1, 1, 1)
    return (image - mean_t) / std_t


class MultiCropAugment:
    """DINO's multi-crop views of one image: 2 global crops, then ``n_local`` local crops.

    Each crop is, in this order: a random resized crop (:func:`crop_box`,
    :func:`resized_crop`), for a grey image its replication to three channels, a horizontal
    flip, colour jitter (brightness, contrast, saturation and hue in random order), conversion
    to grey, Gaussian blur, solarisation (second global crop only) and :func:`normalize`. Each
    step is applied with its own probability.

    Parameters
    ----------
    global_size : int, optional
        Side of the global crops, pixels.
    local_size : int, optional
        Side of the local crops, pixels.
    n_local : int, optional
        Number of local crops (0 for global crops only).
    global_scale : sequence of float, optional
        (min, max) area fraction of the image a global crop covers.
    local_scale : sequence of float, optional
        (min, max) area fraction of the image a local crop covers.
    flip_p : float, optional
        Probability of a horizontal flip.
    jitter_p : float, optional
        Probability of the colour jitter.
    brightness : float, optional
        Brightness factor drawn in [1 - brightness, 1 + brightness].
    contrast : float, optional
        Contrast factor drawn in [1 - contrast, 1 + contrast].
    saturation : float, optional
        Saturation factor drawn in [1 - saturation, 1 + saturation].
    hue : float, optional
        Hue shift drawn in [-hue, hue] turns of the colour circle (at most 0.5).
    grayscale_p : float, optional
        Probability of turning a crop grey.
    blur_sigma : sequence of float, optional
        (min, max) of the blur's standard deviation, pixels at :data:`REFERENCE_SIZE` (scaled by
        ``global_size / REFERENCE_SIZE``).
    blur_p : sequence of float, optional
        Probability of the blur on (first global, second global, local) crops.
    solarize_p : float, optional
        Probability of solarising the second global crop.
    mean, std : sequence of float, optional
        Per-channel normalisation of the output.

    Examples
    --------
    >>> augment = MultiCropAugment(global_size=32, local_size=16, n_local=2)
    >>> crops = augment(torch.rand(3, 64, 80), torch.Generator().manual_seed(0))
    >>> [tuple(c.shape) for c in crops]
    [(3, 32, 32), (3, 32, 32), (3, 16, 16), (3, 16, 16)]
    >>> grey = augment(torch.rand(1, 64, 80), torch.Generator().manual_seed(0))
    >>> [tuple(c.shape) for c in grey]
    [(3, 32, 32), (3, 32, 32), (3, 16, 16), (3, 16, 16)]
    """

    def __init__(self, global_size: int = 224, local_size: int = 96, n_local: int = 8,
                 global_scale: Sequence[float] = (0.4, 1.0),
                 local_scale: Sequence[float] = (0.05, 0.4), flip_p: float = 0.5,
                 jitter_p: float = 0.8, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.2, hue: float = 0.1, grayscale_p: float = 0.2,
                 blur_sigma: Sequence[float] = (0.1, 2.0),
                 blur_p: Sequence[float] = (1.0, 0.1, 0.5), solarize_p: float = 0.2,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if global_size < 1 or local_size < 1:
            raise InputError(f"global_size and local_size should be positive, got "
                             f"{global_size} and {local_size}.")
        if n_local < 0:
            raise InputError(f"n_local should be >= 0, got {n_local}.")
        for name, low_high in (("global_scale", global_scale), ("local_scale", local_scale)):
            if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1] <= 1:
                raise InputError(f"{name} should be (min, max) with 0 < min <= max <= 1, got "
                                 f"{tuple(low_high)}.")
        if len(blur_sigma) != 2 or not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise InputError(f"blur_sigma should be (min, max) with 0 < min <= max, got "
                             f"{tuple(blur_sigma)}.")
        if len(blur_p) != 3:
            raise InputError(f"blur_p should give 3 probabilities (first global, second global, "
                             f"local), got {tuple(blur_p)}.")
        for name, p in (("flip_p", flip_p), ("jitter_p", jitter_p),
                        ("grayscale_p", grayscale_p), ("solarize_p", solarize_p),
                        *(("blur_p", p) for p in blur_p)):
            if not 0 <= p <= 1:
                raise InputError(f"{name} should be a probability in [0, 1], got {p}.")
        for name, amount in (("brightness", brightness), ("contrast", contrast),
                             ("saturation", saturation)):
            if amount < 0:
                raise InputError(f"{name} should be >= 0, got {amount}.")
        if not 0 <= hue <= 0.5:
            raise InputError(f"hue should be in [0, 0.5] turns, got {hue}.")
        if len(mean) != CHANNELS or len(std) != CHANNELS or min(std) <= 0:
            raise InputError(f"mean and std should give 3 channels with std > 0, got {mean} "
                             f"and {std}.")
        self.global_size, self.local_size, self.n_local = global_size, local_size, n_local
        self.global_scale, self.local_scale = tuple(global_scale), tuple(local_scale)
        self.flip_p, self.jitter_p, self.grayscale_p = flip_p, jitter_p, grayscale_p
        self.brightness, self.contrast, self.saturation, self.hue = (brightness, contrast,
                                                                      saturation, hue)
        self.blur_sigma = tuple(s * global_size / REFERENCE_SIZE for s in blur_sigma)
        self.blur_p, self.solarize_p = tuple(blur_p), solarize_p
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        """The 2 + ``n_local`` normalised crops of a (1, H, W) or (3, H, W) image in [0, 1].

        A grey (1, H, W) image gives the same crops, bit for bit, as its three-channel copy.

        Returns
        -------
        list of torch.Tensor
            Two (3, global_size, global_size) tensors, then ``n_local`` (3, local_size, local_size)
            tensors, float32.
        """
        if image.ndim != 3 or image.shape[0] not in (1, CHANNELS) or not image.is_floating_point():
            raise ValueError(f"image should be a float (1, H, W) or (3, H, W) tensor, got "
                             f"{image.dtype} {tuple(image.shape)}.")
        first_blur, second_blur, local_blur = self.blur_p
        crops = [self._view(image, self.global_size, self.global_scale, first_blur, 0.0,
                            generator),
                 self._view(image, self.global_size, self.global_scale, second_blur,
                            self.solarize_p, generator)]
        crops += [self._view(image, self.local_size, self.local_scale, local_blur, 0.0,
                             generator) for _ in range(self.n_local)]
        return crops

    def _view(self, image: torch.Tensor, size: int, scale: tuple[float, float], blur_p: float,
              solarize_p: float, generator: torch.Generator) -> torch.Tensor:
        """One augmented, normalised crop."""
        view = resized_crop(image, *crop_box(*image.shape[-2:], scale, generator), size)
        if view.shape[0] == 1:
            # A copy, not an expanded view: the steps below may write in place.
            view = view.repeat(CHANNELS, 1, 1)
        # One draw per decision and magnitude, fetched in one call; unused ones are still drawn
        # so every crop consumes the same number.
        (flip, jitter, bright, contrast, saturation, hue, grey, blur, sigma,
         solar) = torch.rand(10, generator=generator).tolist()
        if flip < self.flip_p:
            view = view.flip(-1)
        if jitter < self.jitter_p:
            steps = [(adjust_brightness, _factor(self.brightness, bright)),
                     (adjust_contrast, _factor(self.contrast, contrast)),
                     (adjust_saturation, _factor(self.saturation, saturation)),
                     (adjust_hue, _between(-self.hue, self.hue, hue))]
            for index in torch.randperm(len(steps), generator=generator).tolist():
                op, amount = steps[index]
                view = op(view, amount)
        if grey < self.grayscale_p:
            view = to_grayscale(view)
        if blur < blur_p:
            view = gaussian_blur(view, _between(*self.blur_sigma, sigma))
        if solar < solarize_p:
            view = solarize(view)
        return normalize(view, self.mean, self.std)


def collate_crops(batch: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Stack crop ``k`` of every image into one (B, 3, S, S) tensor, for each ``k``.

    ``batch`` holds one list of crops per image, as :class:`MultiCropAugment` returns them.
    """
    if not batch:
        raise ValueError("batch should hold the crops of at least one image.")
    return [torch.stack(crops) for crops in zip(*batch, strict=True)]


def _between(low: float, high: float, draw: float) -> float:
    """The point a fraction ``draw`` (uniform in [0, 1)) of the way from ``low`` to ``high``."""
    return low + (high - low) * draw


def _factor(amount: float, draw: float) -> float:
    """A jitter factor, uniform in [max(0, 1 - amount), 1 + amount] for a uniform ``draw``."""
    return _between(max(0.0, 1.0 - amount), 1.0 + amount, draw)
