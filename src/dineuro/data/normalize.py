"""Intensity normalisation: any raw stack to [0, 1] float32, the same in training and predict.

Light-microscopy stacks come as uint8 or uint16 (or float) with wildly different ranges: one
camera fills 0-4095 of a uint16, another 0-60000, a third is uint8; gains differ between stacks of
the same neuron. A few saturated out-of-focus blobs or hot pixels sit far above the neurites, so
scaling by the min and max would squash the neurites into the bottom of the range. We therefore
clip to the ``low``/``high`` percentiles of the stack (default 1 and 99.9: the neuron is 0.02-2 %
of the voxels, so 99.9 lies at the bright end of neurites rather than at the blobs) and scale that
range linearly to [0, 1].

Percentiles are taken on a deterministic strided subsample when a stack has more than
:data:`MAX_PERCENTILE_SAMPLES` voxels: every slice, every ``s``-th row and column, with the
smallest ``s`` that fits (see :func:`subsample_strides`). The same voxels are read from a numpy
array and, slab by slab, from a zarr array, so block-wise prediction of a stack that does not fit
in memory uses exactly the whole-stack limits that in-memory prediction uses. Above
:data:`TILE_SAMPLING_VOXELS` (a whole brain) whole tiles drawn with a fixed seed are read
instead, so that the limits cost a bounded read rather than a pass over the volume.

With ``background`` (a Gaussian sigma in voxels), the normalised stack less its own blur at
that scale, clipped at 0, is what the network sees (:func:`subtract_background`): haze,
out-of-focus glow and uneven illumination vary slowly and go; neurites, a few voxels wide, stay.
The limits still come from the raw stack, so the subtraction is local and a block of a stack
read with :meth:`NormalizationConfig.halo` voxels around it gets exactly the whole stack's
voxels. Checkpoints made before the option existed normalise without it (``background`` 0).

A checkpoint stores its :class:`NormalizationConfig` as a dict (:meth:`NormalizationConfig.to_dict`)
so that predict rebuilds it (:meth:`NormalizationConfig.from_dict`) and normalises as training did.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from dineuro.errors import InputError

#: Percentiles come from at most this many voxels (about 64 MB as float32); larger stacks are
#: subsampled with a fixed stride, so the result is deterministic.
MAX_PERCENTILE_SAMPLES = 2**24
#: Voxels gathered per read when subsampling an array slab by slab (bounds memory for zarr).
SLAB_SAMPLES = 2**22
#: A stack with more voxels than this (a whole brain, 1 G voxels and up) is sampled in whole
#: tiles of :data:`LIMIT_TILE` voxels, :data:`LIMIT_TILES` of them drawn with a fixed seed,
#: instead of in rows and columns of every slice: those cross every chunk of a zarr volume, so
#: the client would decode all of it, once, alone, before any worker starts (about an hour for
#: a terabyte). Every stack up to this size is sampled as before.
TILE_SAMPLING_VOXELS = 2**30
LIMIT_TILE = (32, 256, 256)
LIMIT_TILES = 256
DEFAULT_LOW, DEFAULT_HIGH = 1.0, 99.9
PERCENTILE = "percentile"
#: Normalisation methods a checkpoint may name.
METHODS = (PERCENTILE,)
#: How far (in sigmas) the Gaussian of :func:`subtract_background` reaches: scipy's default,
#: and so the halo a block needs (:meth:`NormalizationConfig.halo`).
BACKGROUND_TRUNCATE = 4.0
#: Median absolute deviation to standard deviation, for normal noise (:func:`robust_level`).
MAD_TO_SIGMA = 1.4826


class NonFiniteError(ValueError):
    """A stack holds NaN or infinite voxels, which no normalisation can map to [0, 1]."""

    def __init__(self):
        super().__init__("the stack holds NaN or infinite values; they cannot be normalised.")


def subsample_strides(shape: tuple[int, ...], max_samples: int | None = None
                      ) -> tuple[int, int, int]:
    """Strides (z, y, x) of the subsample on which percentiles are computed.

    (1, 1, 1) when the stack has at most ``max_samples`` voxels; otherwise every slice is kept
    (stacks have few slices and their brightness changes with depth) and rows and columns are
    taken every ``s``-th with the smallest ``s`` that fits. Only a stack with more slices than
    ``max_samples`` is strided in z too.

    Parameters
    ----------
    shape : tuple of 3 int
        The (z, y, x) shape of the stack.
    max_samples : int, optional
        Budget of voxels; default :data:`MAX_PERCENTILE_SAMPLES`.

    Examples
    --------
    >>> subsample_strides((64, 256, 256)), subsample_strides((128, 1024, 1024))
    ((1, 1, 1), (1, 3, 3))
    """
    max_samples = MAX_PERCENTILE_SAMPLES if max_samples is None else int(max_samples)
    if max_samples < 1:
        raise InputError(f"max_samples should be a positive int, got {max_samples}.")
    if len(shape) != 3:
        raise InputError(f"volume should be a 3D (z, y, x) stack, got shape {tuple(shape)}.")
    z, y, x = shape
    if z * y * x <= max_samples:
        return 1, 1, 1
    if z > max_samples:
        return math.ceil(z / max_samples), max(y, x), max(y, x)
    stride = 2
    while z * math.ceil(y / stride) * math.ceil(x / stride) > max_samples:
        stride += 1
    return 1, stride, stride


def percentiles_of(volume, low: float = DEFAULT_LOW, high: float = DEFAULT_HIGH,
                   max_samples: int | None = None) -> tuple[float, float]:
    """Intensity limits of a stack: its ``low`` and ``high`` percentiles.

    Works on anything with a ``shape`` that numpy-style strided slicing reads: a numpy array,
    a zarr array (read in slabs of z, never whole), a dask array. Larger stacks are subsampled
    (:func:`subsample_strides`; above :data:`TILE_SAMPLING_VOXELS`, in seeded whole tiles); the
    same voxels are used whatever the array type.

    When both percentiles coincide (e.g. more than 99.9 % of a uint8 stack is exactly 0) but the
    stack is not constant, the upper limit becomes the subsample's maximum, so a sparse neuron on
    a zero background does not vanish. A constant stack returns equal limits, which
    :func:`rescale` maps to zeros.

    Parameters
    ----------
    volume : array-like
        The raw (z, y, x) stack, any real dtype.
    low, high : float
        Percentiles in [0, 100], ``low < high``.
    max_samples : int, optional
        Subsample budget; default :data:`MAX_PERCENTILE_SAMPLES`.

    Returns
    -------
    (float, float)
        The lower and upper limit, in the stack's intensity units.

    Raises
    ------
    InputError
        Bad percentiles, or a stack that is not 3D.
    NonFiniteError
        NaN/infinite values among the samples (a ``ValueError``; readers name the file).

    Examples
    --------
    >>> percentiles_of(np.arange(101, dtype=np.uint8).reshape(1, 1, 101), 1, 99)
    (1.0, 99.0)
    """
    _check_percentiles(low, high)
    shape = tuple(volume.shape)
    sample = (_tile_sample(volume, max_samples) if len(shape) == 3 and math.prod(shape)
              > TILE_SAMPLING_VOXELS else _subsample(volume, subsample_strides(shape,
                                                                               max_samples)))
    if sample.size == 0:
        raise InputError(f"volume should not be empty, got shape {tuple(volume.shape)}.")
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise NonFiniteError
    if hi <= lo:
        hi = float(sample.max())
    return lo, hi


def rescale(volume, lo: float, hi: float) -> np.ndarray:
    """Clip ``volume`` to [lo, hi] and map that range linearly to [0, 1], as a new float32 array.

    This is the one place where voxels are transformed, so in-memory and block-wise prediction
    compute every voxel identically. Equal limits (a constant stack) give zeros rather than a
    division by zero. NaN or infinite voxels (also float64 values beyond float32) are refused.

    Examples
    --------
    >>> rescale(np.array([0, 5, 10, 20], np.uint16), 5, 15)
    array([0. , 0. , 0.5, 1. ], dtype=float32)
    """
    out = np.array(volume, dtype=np.float32, copy=True)
    # Only floats hold NaN or inf (clipping would hide inf, and NaN survives it).
    if np.dtype(volume.dtype).kind == "f" and not np.isfinite(out).all():
        raise NonFiniteError
    if hi <= lo:
        out[...] = 0.0
        return out
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def subtract_background(image: np.ndarray, sigma: float) -> np.ndarray:
    """``image`` less its Gaussian blur of ``sigma`` voxels on every axis, clipped at 0, in place.

    A fibre a few voxels wide stands out of its blur by most of its height, while haze, the
    glow of out-of-focus structures and uneven illumination are their own blur and go, so a dim
    fibre on a bright patch looks as it does on a dark one. Thick structures keep their rims
    and lose some of their middle (a trunk of radius 2 sigma keeps about a seventh of it). The
    blur reflects at the stack's faces (scipy's default), which a block read with
    :meth:`NormalizationConfig.halo` voxels around it sees alike.

    Examples
    --------
    >>> image = np.full((1, 1, 9), 0.5, np.float32); image[0, 0, 4] = 1.0
    >>> out = subtract_background(image, 1.0)
    >>> bool(out[0, 0, 4] > 0.3), float(out[0, 0, 0])
    (True, 0.0)
    """
    from scipy import ndimage

    blur = ndimage.gaussian_filter(image, sigma, truncate=BACKGROUND_TRUNCATE)
    image -= blur
    np.clip(image, 0.0, None, out=image)
    return image


def robust_level(values: np.ndarray) -> tuple[float, float]:
    """The median of ``values`` and their robust spread (:data:`MAD_TO_SIGMA` x the median
    absolute deviation from it): a background and its noise that the few bright voxels of
    neurites among them hardly move.

    Examples
    --------
    >>> robust_level(np.array([8.0, 10.0, 12.0, 10.0, 100.0]))
    (10.0, 2.9652)
    """
    level = float(np.median(values))
    return level, MAD_TO_SIGMA * float(np.median(np.abs(values - level)))


def percentile_normalize(volume, low: float = DEFAULT_LOW, high: float = DEFAULT_HIGH
                         ) -> np.ndarray:
    """Clip a stack to its ``low``/``high`` percentiles and scale to [0, 1] float32.

    See the module docstring for why; percentiles come from :func:`percentiles_of`, the scaling
    from :func:`rescale`.

    Parameters
    ----------
    volume : numpy.ndarray
        A (z, y, x) stack of any real dtype (uint8, uint16, float, ...).
    low, high : float
        Percentiles in [0, 100], ``low < high``.

    Returns
    -------
    numpy.ndarray
        float32, same shape, values in [0, 1]; all zeros for a constant stack.

    Examples
    --------
    >>> stack = np.zeros((2, 3, 4), np.uint16); stack[0, 0, :2] = 1000
    >>> float(percentile_normalize(stack, 0, 100).max())
    1.0
    """
    return rescale(volume, *percentiles_of(volume, low, high))


@dataclass(frozen=True)
class NormalizationConfig:
    """How a stack is normalised; stored in a checkpoint so predict does what training did.

    Attributes
    ----------
    method : str
        Normalisation method; only "percentile" (:func:`percentile_normalize`) so far.
    low : float
        Lower percentile in [0, 100].
    high : float
        Upper percentile in [0, 100], above ``low``.
    background : float
        Sigma (voxels, every axis) of the smooth background taken off the normalised stack
        (:func:`subtract_background`); 0: none. In voxels, as the network sees the stack.

    Examples
    --------
    >>> config = NormalizationConfig(low=0.5, high=99.5)
    >>> config.to_dict()
    {'method': 'percentile', 'low': 0.5, 'high': 99.5, 'background': 0.0}
    >>> NormalizationConfig.from_dict(config.to_dict()) == config
    True
    """

    method: str = PERCENTILE
    low: float = DEFAULT_LOW
    high: float = DEFAULT_HIGH
    background: float = 0.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"normalisation method should be one of {list(METHODS)}, got "
                             f"{self.method!r}.")
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))
        _check_percentiles(self.low, self.high)
        try:
            background = float(self.background)
        except (TypeError, ValueError):
            background = math.nan
        if not (math.isfinite(background) and background >= 0):
            raise InputError(f"normalisation background should be a sigma >= 0 in voxels (0: "
                             f"none), got {self.background!r}.")
        object.__setattr__(self, "background", background)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (str, float) for a checkpoint or a JSON/YAML file."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NormalizationConfig:
        """Rebuild the config that :meth:`to_dict` stored.

        Every field must be present: a missing one would silently normalise differently from
        training. The exception is ``background``, which checkpoints made before it lack and
        which they were trained without (0).

        Raises
        ------
        InputError
            Missing or unknown keys, an unknown method or invalid percentiles.
        """
        names = [field.name for field in fields(cls)]
        if not isinstance(data, Mapping):
            raise InputError(f"normalisation settings should be a mapping with keys {names}, "
                             f"got {type(data).__name__}.")
        data = {"background": 0.0, **data}
        missing, unknown = sorted(set(names) - set(data)), sorted(set(data) - set(names))
        if missing or unknown:
            raise InputError(f"normalisation settings should have exactly the keys {names}; "
                             f"missing {missing}, unknown {unknown}.")
        try:
            return cls(**{name: data[name] for name in names})
        except (TypeError, ValueError) as exc:
            raise InputError(f"invalid normalisation settings {dict(data)}: {exc}") from exc

    def limits(self, volume) -> tuple[float, float]:
        """Whole-stack intensity limits (:func:`percentiles_of`); works on zarr arrays too."""
        return percentiles_of(volume, self.low, self.high)

    def normalize(self, volume, limits: tuple[float, float] | None = None) -> np.ndarray:
        """Normalise ``volume`` (a whole stack, or a block of one with the stack's ``limits``
        and :meth:`halo` voxels of the stack around what is kept of it)."""
        out = rescale(volume, *(self.limits(volume) if limits is None else limits))
        return subtract_background(out, self.background) if self.background else out

    def normalize_region(self, volume, region: tuple[slice, ...],
                         limits: tuple[float, float]) -> np.ndarray:
        """``volume[region]`` normalised as part of the whole stack (``limits`` its limits):
        read with :meth:`halo` voxels of the stack around it, which the background needs.
        ``region`` is a (z, y, x) tuple of slices with starts and stops inside the stack."""
        halo = self.halo()
        grown = tuple(slice(max(s.start - halo, 0), min(s.stop + halo, n))
                      for s, n in zip(region, volume.shape, strict=True))
        out = self.normalize(np.asarray(volume[grown]), limits)
        return out[tuple(slice(s.start - g.start, s.stop - g.start)
                         for s, g in zip(region, grown, strict=True))]

    def halo(self) -> int:
        """Voxels of context a block needs on each side for :meth:`normalize` to give it the
        whole stack's voxels: the reach of the background's Gaussian (0 without one)."""
        return int(BACKGROUND_TRUNCATE * self.background + 0.5) if self.background else 0


def _check_percentiles(low: float, high: float) -> None:
    if not (0.0 <= low < high <= 100.0):
        raise InputError(f"percentiles should satisfy 0 <= low < high <= 100, got low={low}, "
                         f"high={high}.")


def _tile_sample(volume, max_samples: int | None) -> np.ndarray:
    """Voxels of :data:`LIMIT_TILES` whole tiles drawn over a huge stack with a fixed seed,
    strided in y and x to at most ``max_samples`` in all (see :data:`TILE_SAMPLING_VOXELS`)."""
    budget = MAX_PERCENTILE_SAMPLES if max_samples is None else int(max_samples)
    corners = list(itertools.product(*(range(0, n, t) for n, t in zip(volume.shape, LIMIT_TILE,
                                                                       strict=True))))
    chosen = np.sort(np.random.default_rng(0).permutation(len(corners))[:LIMIT_TILES])
    per_tile = max(1, budget // len(chosen))
    z, y, x = LIMIT_TILE
    stride = max(1, math.ceil(math.sqrt(z * y * x / per_tile)))
    return np.concatenate([np.asarray(volume[tuple(slice(c, c + t) for c, t in zip(
        corners[k], LIMIT_TILE, strict=True))])[:, ::stride, ::stride].ravel() for k in chosen])


def _subsample(volume, strides: tuple[int, int, int]) -> np.ndarray:
    """``volume[::sz, ::sy, ::sx]`` as numpy, read in z slabs so a zarr stack is never loaded."""
    sz, sy, sx = strides
    if isinstance(volume, np.ndarray):
        return volume[::sz, ::sy, ::sx]
    z, y, x = volume.shape
    per_slice = math.ceil(y / sy) * math.ceil(x / sx)
    slab = sz * max(1, SLAB_SAMPLES // per_slice)  # a multiple of sz keeps the z phase
    return np.concatenate([np.asarray(volume[start:start + slab:sz, ::sy, ::sx])
                           for start in range(0, z, slab)])
