"""Training images for DINO pre-training: 2D pictures and projections of 3D stacks.

Every image comes out as a float32 (C, H, W) array (channel, row, column) with values in
[0, 1]: C = 1 for grey images (grey files, grey photographs, every projection of a stack) and
C = 3 for colour ones. Grey images are kept as one plane because the whole training set is held
in memory: 10,000 projections of 448 x 448 pixels take 8 GB as one plane, 24 GB as three.
They become three equal channels only crop by crop, in
:class:`~dineuro.pretrain.augment.MultiCropAugment`, because the teacher takes RGB: the 3D
student sums the RGB channels of the teacher's patch kernel, so a grey picture replicated to
RGB gives the teacher exactly the response the student will have to a grey stack.

Sources (see :func:`collect_images`):

- 2D image files (PNG, JPEG, BMP, 2D TIFF), grey or colour, any alpha channel dropped;
- folders of such files (not recursive, natural order of names);
- 3D stacks (TIFF, v3draw, NIfTI), only when asked for, through their maximum-intensity
  projections (:func:`stack_projections`);
- a dataset folder made by ``dineuro synth`` (only its train split, so a teacher never sees the
  stacks a model is later tested on);
- ``photos``: the natural photographs shipped with scikit-image (:func:`skimage_photos`).

Images with a side shorter than :data:`MIN_SIDE` pixels are refused (a file) or left out (a
projection): DINO's local crops cover 5-40 % of an image, which on a smaller image is a few
pixels blown up to the crop size and teaches nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import scipy.ndimage as ndi
import skimage.data
import torch

from dineuro.data.dataset import IMAGES, SPLIT_FILE, open_dataset
from dineuro.data.normalize import percentile_normalize
from dineuro.errors import InputError
from dineuro.io import _tiff
from dineuro.io._slices import _natural_key
from dineuro.io.volume import SUPPORTED_EXTENSIONS, Volume, read_volume

#: Shortest side, in pixels, of an image worth training on.
MIN_SIDE = 32
#: Channels of a colour image (red, green, blue); a grey image has one.
RGB_CHANNELS = 3
#: Thick-slab projections along z span this many slices at least (the whole stack if thinner)
#: and at most half the stack, so that they differ from the full z projection.
MIN_SLAB = 8
#: Files read as 2D images; TIFFs may also turn out to be 3D stacks.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_TIFF_SUFFIXES = (".tif", ".tiff")
#: The input word that stands for :func:`skimage_photos`.
PHOTOS = "photos"
#: scikit-image samples used by :func:`skimage_photos`: photographs and micrographs stored inside
#: the package, so they load offline. Left out: binary or synthetic drawings (horse, logo,
#: colorwheel, checkerboard, binary_blobs), ``cat`` (the same picture as ``chelsea``), tiny ones
#: (lfw_subset faces of 25 pixels), stereo pairs, and every sample that is downloaded on first
#: use (the 3D ones among them).
SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins",
                  "grass", "gravel", "hubble_deep_field", "immunohistochemistry",
                  "microaneurysms", "moon", "page", "retina", "rocket", "text")
#: Percentiles (low, high) that map float images and projections to [0, 1].
PERCENTILES = (1.0, 99.9)
# Exceptions imageio and Pillow raise on files they cannot decode.
_IMAGEIO_ERRORS = (OSError, ValueError, SyntaxError, RuntimeError)

Progress = Callable[[int, int], None]
#: One thing to read: its name (for errors) and a reader giving a (C, H, W) image or a stack.
Source = tuple[str | Path, Callable[[], "np.ndarray | Volume"]]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one 2D image file as a float32 (1, H, W) (grey) or (3, H, W) (colour) array in [0, 1].

    PNG, JPEG and BMP are read with imageio (Pillow), TIFF with tifffile. Grey, grey + alpha,
    RGB and RGBA are accepted; alpha is dropped and grey stays one plane (see the module). Unsigned
    integers are divided by their dtype's maximum (255, 65535, ...), so the file's own
    brightness is kept; floats and signed integers have no fixed range and are clipped to their
    :data:`PERCENTILES` and scaled to [0, 1].

    Parameters
    ----------
    path : str or os.PathLike
        The image file.

    Returns
    -------
    numpy.ndarray
        float32, shape (1, H, W) for grey or grey + alpha, (3, H, W) for RGB or RGBA, values in
        [0, 1].

    Raises
    ------
    InputError
        The file does not exist or cannot be decoded, is a 3D stack, has an unusable number of
        channels, holds NaN or infinite values, or is smaller than :data:`MIN_SIDE` pixels.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "grey.png"
    >>> iio.imwrite(path, np.full((40, 50), 255, np.uint8))
    >>> image = read_image(path)
    >>> image.shape, image.dtype, float(image.max())
    ((1, 40, 50), dtype('float32'), 1.0)
    """
    path = Path(path)
    loaded = _load(path)
    if isinstance(loaded, Volume):
        raise InputError(f"is a 3D stack of shape {loaded.array.shape} (z, y, x), not a 2D "
                         "image; pass --from-stacks to train on its projections.", path)
    return loaded


def stack_projections(volume: np.ndarray, spacing: Sequence[float], rng: np.random.Generator,
                      n_slabs: int = 4) -> list[np.ndarray]:
    """2D views of a 3D stack: maximum-intensity projections along z, y and x, and z slabs.

    Light-microscopy neurons are thin and sparse, so a single slice shows little of them; a
    maximum-intensity projection (MIP) shows the whole arbor the way people look at stacks. The
    y and x MIPs are (z, x) and (z, y) images whose z axis is resampled (linear interpolation)
    to the in-plane pixel size, so a neuron imaged with coarse z steps is not squashed. The
    ``n_slabs`` thick-slab MIPs along z show fewer overlapping branches: each spans a random
    number of slices, uniform in [:data:`MIN_SLAB`, max(:data:`MIN_SLAB`, z // 2)] (the whole
    stack when it is thinner), from a random first slice.

    Each projection is normalised alone to its :data:`PERCENTILES` and kept as one grey plane.
    Projections with a side shorter than :data:`MIN_SIDE` pixels (e.g. the side views of a
    stack of a few slices) are left out, so the list may be shorter or empty.

    Parameters
    ----------
    volume : numpy.ndarray
        The (z, y, x) stack, any real dtype.
    spacing : sequence of 3 float
        Voxel size along (z, y, x), in any unit common to the three.
    rng : numpy.random.Generator
        Draws the slab thicknesses and positions.
    n_slabs : int
        Number of thick-slab projections along z.

    Returns
    -------
    list of numpy.ndarray
        float32 (1, H, W) images in [0, 1]: the z, y and x MIPs, then the slabs, each when
        large enough.

    Examples
    --------
    >>> volume = np.random.default_rng(0).random((40, 64, 48))
    >>> views = stack_projections(volume, (2.0, 1.0, 1.0), np.random.default_rng(0), n_slabs=1)
    >>> [view.shape for view in views]
    [(1, 64, 48), (1, 80, 48), (1, 80, 64), (1, 64, 48)]
    """
    volume = np.asarray(volume)
    if volume.ndim != 3 or volume.size == 0:
        raise InputError(f"volume should be a non-empty (z, y, x) array, got shape "
                         f"{volume.shape}.")
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"spacing should be 3 positive (z, y, x) sizes, got {spacing}.")
    if n_slabs < 0:
        raise InputError(f"n_slabs should be >= 0, got {n_slabs}.")
    sz, sy, sx = (float(s) for s in spacing)
    views = [_isotropic(volume.max(axis=0), (sy, sx)),
             _isotropic(volume.max(axis=1), (sz, sx)),
             _isotropic(volume.max(axis=2), (sz, sy))]
    depth = volume.shape[0]
    for _ in range(n_slabs):
        thickness = min(depth, int(rng.integers(MIN_SLAB, max(MIN_SLAB, depth // 2) + 1)))
        start = int(rng.integers(0, depth - thickness + 1))
        views.append(_isotropic(volume[start:start + thickness].max(axis=0), (sy, sx)))
    return [_as_planes(_normalized(view)) for view in views if min(view.shape) >= MIN_SIDE]


def skimage_photos() -> list[tuple[str, np.ndarray]]:
    """The photographs of :data:`SKIMAGE_PHOTOS` as float32 (C, H, W) arrays in [0, 1].

    A teacher needs generic natural-image statistics (edges, textures, objects) besides
    microscopy; these ship inside scikit-image, so they need no download.

    Returns
    -------
    list of (str, numpy.ndarray)
        The sample's name and its image, (1, H, W) for grey samples and (3, H, W) for colour
        ones, in the order of :data:`SKIMAGE_PHOTOS`.
    """
    return [(name, _photo(name)) for name in SKIMAGE_PHOTOS]


def collect_images(inputs: Sequence[str | os.PathLike], from_stacks: bool = False, seed: int = 0,
                   n_slabs: int = 4, short_side: int | None = None,
                   progress: Progress | None = None) -> list[np.ndarray]:
    """Gather the training images of ``dineuro pretrain2d`` from files, folders and stacks.

    Each input is one of:

    - ``photos`` (this exact word, even when a file of that name exists): the scikit-image
      photographs of :func:`skimage_photos`;
    - a dataset folder (one with ``images/`` and ``split.json``, as ``dineuro synth`` writes):
      the stacks of its *train* split only, through :func:`stack_projections`; needs
      ``from_stacks``;
    - any other folder: its image and stack files (by suffix, not recursive, natural order of
      names); other files are ignored;
    - an image file (:func:`read_image`), or a 3D stack file (any format
      :func:`~dineuro.io.volume.read_volume` reads) when ``from_stacks`` is set.

    Parameters
    ----------
    inputs : sequence of str or os.PathLike
        What to read, in order; the result keeps that order.
    from_stacks : bool
        Use 3D stacks through their projections; without it a stack is an error.
    seed : int
        Seed of the slab projections: the same inputs and seed give the same images.
    n_slabs : int
        Thick-slab projections per stack, besides its three MIPs.
    short_side : int, optional
        Shrink each image as soon as it is read so its shorter side is at most this
        (:func:`shrink`; ``pretrain2d`` passes its config's ``short_side``), so the set in memory
        is the size training uses, not that of the files; None keeps full size.
    progress : callable, optional
        Called as ``progress(done, total)`` after each file or photograph is read.

    Returns
    -------
    list of numpy.ndarray
        float32 images in [0, 1] of varying H and W: (1, H, W) for grey files, grey photographs
        and projections, (3, H, W) for colour ones.

    Raises
    ------
    InputError
        A missing input, an unreadable or too small image, a stack without ``from_stacks``, a
        dataset with no train stacks, or no images at all.
    """
    sources = [source for item in inputs for source in _sources(item, from_stacks)]
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    for done, (path, read) in enumerate(sources, start=1):
        loaded, first = read(), len(images)
        if isinstance(loaded, Volume):
            if not from_stacks:
                raise InputError(f"is a 3D stack of shape {loaded.array.shape} (z, y, x); pass "
                                 "--from-stacks to train on its projections.", path)
            _check_finite(loaded.array, path)
            views = stack_projections(loaded.array, loaded.spacing, rng, n_slabs)
            if not views:
                raise InputError(f"is too small to project: its shape is {loaded.array.shape} "
                                 f"(z, y, x) and projections need {MIN_SIDE} pixels a side.",
                                 path)
            images += views
        else:
            images.append(loaded)
        if short_side is not None:
            images[first:] = [shrink(image, short_side) for image in images[first:]]
        if progress is not None:
            progress(done, len(sources))
    if not images:
        raise InputError("no training images: give image files, folders, stacks or "
                         f"'{PHOTOS}'.")
    return images


def _sources(item: str | os.PathLike, from_stacks: bool) -> list[Source]:
    """What one input of :func:`collect_images` stands for: (name, reader) per image or stack."""
    if str(item) == PHOTOS:
        return [(name, lambda name=name: _photo(name)) for name in SKIMAGE_PHOTOS]
    path = Path(item)
    if not path.exists():
        raise InputError("does not exist.", path)
    if path.is_dir() and (path / IMAGES).is_dir() and (path / SPLIT_FILE).is_file():
        return _dataset_sources(path, from_stacks)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                        and _is_image_or_stack(p)), key=_natural_key)
        if not files:
            raise InputError(f"holds no image files ({', '.join(IMAGE_SUFFIXES)}) and no "
                             "stacks.", path)
        return [(p, lambda p=p: _load(p)) for p in files]
    return [(path, lambda: _load(path))]


def _dataset_sources(root: Path, from_stacks: bool) -> list[Source]:
    """The train stacks of a dataset folder; its val and test stacks are never read."""
    if not from_stacks:
        raise InputError("is a dataset of 3D stacks; pass --from-stacks to train on their "
                         "projections.", root)
    dataset = open_dataset(root)
    train = dataset.split()["train"]
    if not train:
        raise InputError(f"lists no train stacks in {SPLIT_FILE}.", root)
    return [(dataset.images[name], lambda name=name: dataset.image(name)) for name in train]


def _photo(name: str) -> np.ndarray:
    """The scikit-image sample ``name`` as a (C, H, W) image."""
    return _to_planes(getattr(skimage.data, name)(), f"scikit-image sample {name}")


def _is_image_or_stack(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(IMAGE_SUFFIXES) or name.endswith(SUPPORTED_EXTENSIONS)


def _load(path: Path) -> np.ndarray | Volume:
    """A 2D image file as a (C, H, W) image, or a 3D stack file as a :class:`Volume`."""
    if not path.is_file():
        raise InputError("does not exist." if not path.exists() else "is not a file.", path)
    name = path.name.lower()
    if name.endswith(_TIFF_SUFFIXES):
        array, axes, _ = _tiff.read(path)
        if set(axes) - set("YXC"):
            return read_volume(path)
        return _to_planes(np.moveaxis(array, axes.index("C"), -1) if "C" in axes else array, path)
    if name.endswith(SUPPORTED_EXTENSIONS):
        return read_volume(path)
    if not name.endswith(IMAGE_SUFFIXES):
        raise InputError(f"has an unsupported file type; images should be "
                         f"{', '.join(IMAGE_SUFFIXES)}.", path)
    try:
        array = iio.imread(path, plugin="pillow")
    except _IMAGEIO_ERRORS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot be read as an image ({reason}).", path) from exc
    return _to_planes(array, path)


def _to_planes(array: np.ndarray, path: Path | str) -> np.ndarray:
    """A (H, W) or (H, W, C) image as float32 (1 or 3, H, W) in [0, 1]; see :func:`read_image`."""
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"has shape {array.shape}; a 2D grey, grey + alpha, RGB or RGBA image "
                         "is expected.", path)
    # Grey + alpha keeps its grey plane, RGB(A) its three colours.
    colours = RGB_CHANNELS if array.shape[-1] >= RGB_CHANNELS else 1
    planes = np.moveaxis(array[..., :colours], -1, 0)
    if min(planes.shape[1:]) < MIN_SIDE:
        raise InputError(f"is {planes.shape[1]} x {planes.shape[2]} pixels; images need at "
                         f"least {MIN_SIDE} pixels a side.", path)
    if planes.dtype == bool or np.issubdtype(planes.dtype, np.unsignedinteger):
        scale = 1 if planes.dtype == bool else np.iinfo(planes.dtype).max
        scaled = planes.astype(np.float32) / np.float32(scale)
    elif np.issubdtype(planes.dtype, np.integer) or np.issubdtype(planes.dtype, np.floating):
        _check_finite(planes, path)
        scaled = _normalized(planes)
    else:
        raise InputError(f"has pixel type {planes.dtype}; a real-valued image is expected.",
                         path)
    return _as_planes(scaled)


def _check_finite(array: np.ndarray, path: Path | str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError("holds NaN or infinite values.", path)


def _normalized(image: np.ndarray) -> np.ndarray:
    """A (H, W) or (C, H, W) image (channels scaled jointly) clipped to its percentiles, [0, 1].

    Channels first, so that the subsampling of large images in
    :func:`~dineuro.data.normalize.percentiles_of` strides rows and columns, never colours.
    """
    planar = image[np.newaxis] if image.ndim == 2 else image
    return percentile_normalize(planar, *PERCENTILES).reshape(image.shape)


def _as_planes(image: np.ndarray) -> np.ndarray:
    """A (H, W) or (C, H, W) image as a C-contiguous float32 (C, H, W) array, C = 1 for (H, W)."""
    return np.ascontiguousarray(image.reshape(-1, *image.shape[-2:]), dtype=np.float32)


def _isotropic(image: np.ndarray, pixel_size: tuple[float, float]) -> np.ndarray:
    """Resample a 2D image (linear interpolation) so both axes have the finer pixel size."""
    finest = min(pixel_size)
    factors = tuple(size / finest for size in pixel_size)
    if all(abs(f - 1.0) < 1e-6 for f in factors):
        return image
    return ndi.zoom(image.astype(np.float32, copy=False), factors, order=1)


def shrink(image: np.ndarray, short_side: int) -> np.ndarray:
    """``image`` (C, H, W) with its shorter side reduced to ``short_side`` (never enlarged).

    Each channel is resized alone, so a grey (1, H, W) image stays one plane (a third of the
    memory of its RGB copy) and shrinks to the values each channel of that copy would get.
    """
    scale = short_side / min(image.shape[1:])
    if scale >= 1:
        return image
    size = [max(1, round(side * scale)) for side in image.shape[1:]]
    resized = torch.nn.functional.interpolate(torch.from_numpy(image)[None], size=size,
                                              mode="bilinear", antialias=True,
                                              align_corners=False)
    return resized[0].clamp_(0, 1).numpy()
