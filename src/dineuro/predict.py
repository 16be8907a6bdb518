"""Neurite probability maps from a trained network: sliding window in memory or block by block.

The network sees windows of its training crop; their softmax class-1 probabilities are blended
with MONAI's Gaussian weights (``sliding_window_inference``, ``mode="gaussian"``, sigma = 0.125 of
the crop), which favour each window's centre, where the network has the most context.

Window placement is a fixed grid, the same for a whole stack in memory and for any block of it.
MONAI's own placement depends on the extent of the array it is given: it shifts the last window
back to end at the array's edge and pads arrays smaller than the crop symmetrically. A block of a
large stack would then get windows at other places than the whole stack, and block-wise output
would differ from in-memory output near every block edge. We therefore pad the stack (with
zeros, see below) to the smallest size MONAI tiles without shifting, ``crop + k * step`` per axis
with ``step = int(crop * (1 - overlap))`` (MONAI's step), split as MONAI splits its padding
(half before, the rest after). The grid is then ``start_k = -pad_before + k * step`` in stack
coordinates (:class:`WindowGrid`); a block is predicted from the region covered by exactly the
grid windows that touch it, so every voxel gets the same windows, weights and summation order in
both modes, and MONAI never moves a window. A stack whose extent is already ``crop + k * step``
gets MONAI's own placement; one smaller than the crop is padded as MONAI pads it.

Padding is zeros, not reflection: after percentile normalisation the background of a
light-microscopy stack is at or near 0, so zeros look like more background, whereas a reflection
would mirror neurites into a continuation that is not there. Zeros need no data from beyond a
block either, which keeps block-wise padding trivially identical to in-memory padding.

Test-time flips (``flips=True``) average the probabilities of all 8 combinations of flipping z,
y and x, each flipped back, inside every window: 8 times the compute for a smoother, orientation-
independent map.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from dineuro.data.normalize import NormalizationConfig
from dineuro.errors import InputError
from dineuro.io._atomic import atomic_dir, refuse_existing
from dineuro.io._slices import slice_paths
from dineuro.io.volume import SUPPORTED_EXTENSIONS, read_volume, write_volume
from dineuro.models.vit3d import Triple, as_triple

DEFAULT_OVERLAP = 0.5
#: Windows per forward pass. Not 1: for a single window with few channels PyTorch's CPU
#: convolution heuristic takes its slow im2col path instead of oneDNN (measured 7x slower per
#: window for the tiny preset at batch 1 than at batch 4).
DEFAULT_BATCH_SIZE = 4
#: Block of a zarr stack predicted at a time (z, y, x); memory scales with (block + 2 crop).
DEFAULT_BLOCK = (128, 256, 256)
#: MONAI's Gaussian blending: sigma = this fraction of the crop, per axis.
SIGMA_SCALE = 0.125
#: How a probability in [0, 1] may be stored. TIFF (ImageJ) cannot hold float16, zarr can.
PROB_DTYPES = ("float32", "float16", "uint8")
TIFF_PROB_DTYPES = ("float32", "uint8")
DEFAULT_PROB_DTYPE = "float32"
#: uint8 probabilities are round(p * UINT8_SCALE).
UINT8_SCALE = 255
DEFAULT_THRESHOLD = 0.5
#: Every combination of flipping the (z, y, x) axes of a (B, C, z, y, x) batch; () is none.
FLIP_AXES = tuple(axes for n in range(4) for axes in itertools.combinations((2, 3, 4), n))
CLASSES = 2
NEURITE = 1

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class WindowGrid:
    """The fixed grid of windows over a stack, shared by in-memory and block-wise prediction.

    Window ``k`` along an axis covers ``[start(axis, k), start(axis, k) + crop)`` in stack
    coordinates; starts below 0 or ends beyond the stack read zeros.

    Attributes:
        shape: stack shape (z, y, x).
        crop: window shape (z, y, x).
        step: distance between window starts, ``max(int(crop * (1 - overlap)), 1)`` per axis.
        counts: windows per axis.
        pad_before: zeros before the stack per axis (the padding after it is the rest).

    Examples::

        >>> grid = WindowGrid.of((37, 50, 23), crop=(16, 32, 32), overlap=0.5)
        >>> grid.counts, grid.padded_shape, grid.pad_before
        ((4, 3, 1), (40, 64, 32), (1, 7, 4))
    """

    shape: Triple
    crop: Triple
    step: Triple
    counts: Triple
    pad_before: Triple

    @classmethod
    def of(cls, shape: Sequence[int], crop: int | Sequence[int], overlap: float) -> WindowGrid:
        """The grid for a stack of ``shape`` and windows of ``crop`` overlapping by ``overlap``.

        Raises:
            ValueError: a bad shape, crop or overlap.
        """
        shape, crop = tuple(int(n) for n in shape), as_triple(crop, "crop")
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"volume should be a non-empty 3D (z, y, x) stack, got shape "
                             f"{shape}.")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap should be in [0, 1), got {overlap}.")
        # MONAI's expression for its scan interval, so that its tiling of a padded region is ours.
        step = tuple(max(int(c * (1 - overlap)), 1) for c in crop)
        counts = tuple(math.ceil(max(n - c, 0) / s) + 1
                       for n, c, s in zip(shape, crop, step, strict=True))
        padded = (c + (k - 1) * s for c, k, s in zip(crop, counts, step, strict=True))
        pad_before = tuple((p - n) // 2 for p, n in zip(padded, shape, strict=True))
        return cls(shape, crop, step, counts, pad_before)

    @property
    def padded_shape(self) -> Triple:
        """Extent covered by all windows: ``crop + (counts - 1) * step`` per axis."""
        return tuple(c + (k - 1) * s
                     for c, k, s in zip(self.crop, self.counts, self.step, strict=True))

    @property
    def n_windows(self) -> int:
        return math.prod(self.counts)

    def start(self, axis: int, k: int) -> int:
        """First voxel (stack coordinates, may be negative) of window ``k`` along ``axis``."""
        return k * self.step[axis] - self.pad_before[axis]

    def touching(self, axis: int, begin: int, end: int) -> tuple[int, int]:
        """First and last index of the windows that overlap ``[begin, end)`` along ``axis``."""
        step, crop, pad = self.step[axis], self.crop[axis], self.pad_before[axis]
        first = max(0, (begin + pad - crop) // step + 1)
        last = min(self.counts[axis] - 1, (end + pad - 1) // step)
        return first, last


def sliding_window_predict(model: nn.Module, volume: np.ndarray, crop: int | Sequence[int],
                           overlap: float = DEFAULT_OVERLAP, batch_size: int = DEFAULT_BATCH_SIZE,
                           flips: bool = False, device: str | torch.device = "cpu",
                           progress: Progress | None = None, amp: bool = False) -> np.ndarray:
    """Probability of neurite for every voxel of a normalised stack held in memory.

    Windows lie on the fixed :class:`WindowGrid` (zero padding, see the module docstring) and are
    blended with MONAI's Gaussian weights; any stack size works, the output has the input's
    shape exactly.

    Args:
        model: maps (B, 1, *crop) float32 to (B, 2, *crop) logits (background, neurite). It is
            moved to ``device`` (in place, as ``Module.to`` does) and run in eval mode under
            ``torch.inference_mode``; its train/eval mode is restored afterwards.
        volume: normalised (z, y, x) float stack (see :mod:`dineuro.data.normalize`).
        crop: window (z, y, x) the model takes, or one int for a cube.
        overlap: fraction of a window shared with its neighbour along each axis, in [0, 1).
        batch_size: windows per forward pass.
        flips: average over all 8 axis-flip combinations (8x the compute).
        device: where the model runs; the stack and the blended output stay in CPU memory.
        progress: called as ``progress(done, total)`` after every batch of windows.
        amp: run the model under bfloat16 autocast on ``device`` (meant for CUDA; on CPU it runs
            but is rarely faster). Blending stays float32.

    Returns:
        float32 array of ``volume``'s shape, values in [0, 1].

    Raises:
        ValueError: a volume that is not a non-empty 3D float array, bad options, or a model
            whose output is not (B, 2, *crop).

    Examples::

        >>> conv = nn.Conv3d(1, 2, 1)
        >>> prob = sliding_window_predict(conv, np.zeros((5, 40, 9), np.float32), crop=16)
        >>> prob.shape, prob.dtype
        ((5, 40, 9), dtype('float32'))
    """
    volume = _checked_volume(volume)
    grid = WindowGrid.of(volume.shape, crop, overlap)
    predictor = _WindowPredictor(model, grid.crop, flips, device, amp,
                                 total=_batches(grid.n_windows, batch_size), progress=progress)
    inner = tuple(slice(p, p + n) for p, n in zip(grid.pad_before, grid.shape, strict=True))
    if grid.padded_shape == grid.shape:
        padded = torch.from_numpy(volume)
    else:
        padded = torch.zeros(grid.padded_shape)
        padded[inner] = torch.from_numpy(volume)
    with _inference(model, predictor.device):
        prob = _blend(padded, grid.crop, overlap, batch_size, predictor)
    return np.ascontiguousarray(prob[inner].numpy())


def predict_blocks(model: nn.Module, src, dst, crop: int | Sequence[int],
                   norm: NormalizationConfig, *, block: int | Sequence[int] = DEFAULT_BLOCK,
                   overlap: float = DEFAULT_OVERLAP, batch_size: int = DEFAULT_BATCH_SIZE,
                   flips: bool = False, device: str | torch.device = "cpu", amp: bool = False,
                   prob_dtype: str = DEFAULT_PROB_DTYPE, progress: Progress | None = None):
    """Predict a raw stack that does not fit in memory, block by block, from zarr to zarr.

    The output equals :func:`sliding_window_predict` on the whole normalised stack (up to float
    rounding of the model on different batches): intensity limits come from the whole stack
    (:meth:`NormalizationConfig.limits`, a strided subsample read slab by slab), and each block
    is predicted from the region of exactly the :class:`WindowGrid` windows that touch it. That
    region is the halo: it reaches up to ``crop - 1`` voxels beyond the block on each side, set
    by the grid rather than chosen. Memory is bounded by that region (a few float32 copies of
    ``block + 2 * crop`` voxels) whatever the stack size. Windows that touch two blocks are
    computed for each, so the extra compute is about ``(block + crop - step) / block`` per axis:
    larger blocks waste less.

    Args:
        model: as for :func:`sliding_window_predict`.
        src: the raw (z, y, x) stack: a zarr array, a path to one (or to an OME-Zarr group, whose
            full-resolution array "0" is used), or any array with numpy slicing.
        dst: a path where a new zarr array is written (it must not exist; written to a
            temporary folder and renamed when complete), or an existing zarr array of the stack's
            shape to fill.
        crop: window (z, y, x) of the model.
        norm: the normalisation the model was trained with.
        block: output block (z, y, x) computed at a time; also the chunk shape of a new array.
        overlap, batch_size, flips, device, amp: as for :func:`sliding_window_predict`.
        prob_dtype: "float32", "float16" or "uint8" (round(p * 255)) for a new array.
        progress: ``progress(done, total)`` after every batch of windows, over all blocks.

    Returns:
        The probability array (a ``zarr.Array``); for a path, reopened read-only.

    Raises:
        InputError: ``src`` cannot be opened as a 3D array, ``dst`` exists or does not fit.
        ValueError: bad options (see :func:`sliding_window_predict`).
    """
    import zarr

    _check_choice(prob_dtype, PROB_DTYPES, "prob_dtype")
    if not isinstance(dst, zarr.Array):
        refuse_existing(dst)  # before the whole-stack percentiles, which take a while
    source = _open_source(src)
    grid = WindowGrid.of(source.shape, crop, overlap)
    block = as_triple(block, "block")
    limits = norm.limits(source)
    blocks = list(itertools.product(*(range(0, n, b)
                                      for n, b in zip(grid.shape, block, strict=True))))
    regions = [[grid.touching(axis, begin, min(begin + block[axis], grid.shape[axis]))
                for axis, begin in enumerate(corner)] for corner in blocks]
    total = sum(_batches(math.prod(last - first + 1 for first, last in region), batch_size)
                for region in regions)
    predictor = _WindowPredictor(model, grid.crop, flips, device, amp, total, progress)
    attrs = {"dineuro": {"content": "probability of neurite (class 1)",
                         "encoding": _encoding_note(prob_dtype), "normalization": norm.to_dict(),
                         "limits": list(limits), "crop": list(grid.crop), "overlap": overlap,
                         "flips": flips}}
    with _destination(dst, grid.shape, block, prob_dtype, attrs) as out, \
            _inference(model, predictor.device):
        for corner, region in zip(blocks, regions, strict=True):
            end = tuple(min(c + b, n) for c, b, n in zip(corner, block, grid.shape, strict=True))
            first = tuple(grid.start(axis, k) for axis, (k, _) in enumerate(region))
            stop = tuple(grid.start(axis, k) + grid.crop[axis]
                         for axis, (_, k) in enumerate(region))
            data = _read_padded(source, first, stop, norm, limits)
            prob = _blend(torch.from_numpy(data), grid.crop, overlap, batch_size, predictor)
            keep = tuple(slice(c - f, e - f) for c, e, f in zip(corner, end, first, strict=True))
            out[tuple(slice(c, e) for c, e in zip(corner, end, strict=True))] = encode_probability(
                prob[keep].numpy(), np.dtype(out.dtype).name)
    return dst if isinstance(dst, zarr.Array) else zarr.open_array(str(dst), mode="r")


def predict_stack(model: nn.Module, path: str | os.PathLike, out_dir: str | os.PathLike,
                  crop: int | Sequence[int], norm: NormalizationConfig, *,
                  threshold: float = DEFAULT_THRESHOLD, prob_dtype: str = DEFAULT_PROB_DTYPE,
                  overlap: float = DEFAULT_OVERLAP, batch_size: int = DEFAULT_BATCH_SIZE,
                  flips: bool = False, device: str | torch.device = "cpu", amp: bool = False,
                  channel: int | None = None, progress: Progress | None = None
                  ) -> tuple[Path, Path]:
    """Predict one stack file and write its probability map and binary mask next to each other.

    Reads any stack :func:`~dineuro.io.volume.read_volume` reads, normalises it with ``norm``,
    runs :func:`sliding_window_predict` and writes, with the stack's voxel spacing, each through
    a temporary file renamed when complete:

    - ``out_dir/NAME_prob.tif``: probability of neurite, float32, or uint8 = round(p * 255);
    - ``out_dir/NAME_mask.tif``: uint8, 1 where the (float) probability exceeds ``threshold``.

    ``NAME`` is the input's name without its extension (see :func:`output_paths`). Both outputs
    are checked not to exist before anything is computed.

    Args:
        model, crop, overlap, batch_size, flips, device, amp, progress: see
            :func:`sliding_window_predict`.
        path: input stack (file or folder of TIFF slices).
        out_dir: output folder, created if missing.
        norm: the normalisation the model was trained with.
        threshold: mask = probability > threshold, in [0, 1].
        prob_dtype: "float32" or "uint8" (ImageJ TIFF cannot hold float16).
        channel: channel of a multi-channel input.

    Returns:
        The paths of the probability map and of the mask.

    Raises:
        InputError: unreadable input, an output that already exists, or a bad option.
    """
    _check_choice(prob_dtype, TIFF_PROB_DTYPES, "prob_dtype")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold should be in [0, 1], got {threshold}.")
    prob_path, mask_path = output_paths(path, out_dir)
    refuse_existing(prob_path)
    refuse_existing(mask_path)
    raw, spacing = read_volume(path, channel)
    normalised = norm.normalize(raw)
    del raw  # only the float32 copy is needed from here on
    prob = sliding_window_predict(model, normalised, crop, overlap=overlap,
                                  batch_size=batch_size, flips=flips, device=device,
                                  progress=progress, amp=amp)
    write_volume(prob_path, encode_probability(prob, prob_dtype), spacing)
    write_volume(mask_path, (prob > threshold).astype(np.uint8), spacing)
    return prob_path, mask_path


def find_stacks(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand the inputs of ``predict`` into stacks, each to be predicted once.

    A stack file is taken as it is; a folder of 2D TIFF slices is one stack; any other folder
    is a folder of stacks, expanded into its supported files in natural order. Two stacks with
    the same name would write the same outputs, so that is an error.

    Raises:
        InputError: an input that does not exist, a folder with no stacks, or a name clash.
    """
    stacks: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise InputError("does not exist.", item)
        if item.is_dir() and not _is_slice_folder(item):
            found = [p for p in slice_paths(item) + sorted(item.iterdir())
                     if p.is_file() and not p.name.startswith(".") and _is_stack_file(p)]
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


def _is_stack_file(path: Path) -> bool:
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


def output_paths(path: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(out_dir/NAME_prob.tif, out_dir/NAME_mask.tif)`` for the stack at ``path``.

    Examples::

        >>> [p.name for p in output_paths("data/neuron_03.nii.gz", "out")]
        ['neuron_03_prob.tif', 'neuron_03_mask.tif']
    """
    path, name = Path(path), Path(path).name
    for extension in sorted(SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(extension):
            name = name[:-len(extension)]
            break
    out_dir = Path(out_dir)
    return out_dir / f"{name}_prob.tif", out_dir / f"{name}_mask.tif"


def encode_probability(prob: np.ndarray, dtype: str) -> np.ndarray:
    """Store probabilities as ``dtype``: float32, float16, or uint8 = round(p * 255).

    Examples::

        >>> encode_probability(np.array([0.0, 0.5, 1.0]), "uint8")
        array([  0, 128, 255], dtype=uint8)
    """
    _check_choice(dtype, PROB_DTYPES, "prob_dtype")
    if dtype == "uint8":
        return np.rint(np.asarray(prob, np.float32) * UINT8_SCALE).astype(np.uint8)
    return np.asarray(prob, dtype=dtype)


class _WindowPredictor:
    """The callable MONAI runs on each batch of windows: class-1 softmax, flips, progress."""

    def __init__(self, model: nn.Module, crop: Triple, flips: bool, device, amp: bool,
                 total: int, progress: Progress | None):
        self.model, self.crop, self.amp = model, crop, bool(amp)
        self.device = torch.device(device)
        self.flips = FLIP_AXES if flips else ((),)
        self.total, self.progress, self.done = total, progress, 0

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        prob = sum(self._prob(windows.flip(axes)).flip(axes) if axes else self._prob(windows)
                   for axes in self.flips)
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)
        return prob / len(self.flips) if len(self.flips) > 1 else prob

    def _prob(self, windows: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(windows)
        expected = (windows.shape[0], CLASSES, *self.crop)
        if tuple(logits.shape) != expected:
            raise ValueError(f"the model should map windows {tuple(windows.shape)} to logits "
                             f"{expected} (background, neurite), got {tuple(logits.shape)}.")
        return torch.softmax(logits.float(), dim=1)[:, NEURITE:NEURITE + 1]


def _blend(padded: torch.Tensor, crop: Triple, overlap: float, batch_size: int,
           predictor: _WindowPredictor) -> torch.Tensor:
    """Gaussian-blended probability over a (z, y, x) region that MONAI tiles without shifting.

    ``padded`` must measure ``crop + k * step`` per axis; the windows are then exactly the
    region's :class:`WindowGrid` windows, which the count of predictor calls double-checks.
    """
    region = WindowGrid.of(padded.shape, crop, overlap)
    if region.padded_shape != tuple(padded.shape):
        raise AssertionError(f"region {tuple(padded.shape)} is not on the window grid.")
    before = predictor.done
    out = sliding_window_inference(
        padded[None, None], roi_size=crop, sw_batch_size=batch_size, predictor=predictor,
        overlap=overlap, mode="gaussian", sigma_scale=SIGMA_SCALE,
        sw_device=predictor.device, device="cpu")
    if predictor.done - before != _batches(region.n_windows, batch_size):
        raise RuntimeError("MONAI placed the sliding windows differently from dineuro's grid; "
                           "this MONAI version is not supported.")
    return out[0, 0]


@contextlib.contextmanager
def _inference(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode and inference mode on ``device``; the model's train/eval mode is restored."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model should be a torch.nn.Module, got {type(model).__name__}.")
    training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(training)


def _checked_volume(volume) -> np.ndarray:
    volume = np.asarray(volume)
    if not np.issubdtype(volume.dtype, np.floating):
        raise ValueError(f"volume should be a normalised float stack, got {volume.dtype}; "
                         "normalise raw stacks first (NormalizationConfig.normalize).")
    if volume.ndim != 3 or volume.size == 0:
        raise ValueError(f"volume should be a non-empty 3D (z, y, x) stack, got shape "
                         f"{volume.shape}.")
    return np.ascontiguousarray(volume, dtype=np.float32)


def _batches(n_windows: int, batch_size: int) -> int:
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size should be a positive int, got {batch_size!r}.")
    return math.ceil(n_windows / batch_size)


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise InputError(f"{name} should be one of {list(choices)}, got {value!r}.")


def _encoding_note(prob_dtype: str) -> str:
    return f"p * {UINT8_SCALE}, rounded" if prob_dtype == "uint8" else "p"


def _open_source(src):
    """``src`` as a 3D array with numpy slicing: zarr paths are opened read-only."""
    if isinstance(src, (str, os.PathLike)):
        import zarr

        path = Path(src)
        if not path.exists():
            raise InputError("does not exist.", path)
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as exc:  # zarr raises several types for a folder that is not zarr
            raise InputError(f"cannot be opened as a zarr array ({exc}).", path) from exc
        if not hasattr(node, "shape"):
            if "0" not in node:
                raise InputError("is a zarr group without an array '0'; give the path of the "
                                 "array to predict.", path)
            node = node["0"]
        src = node
    if len(getattr(src, "shape", ())) != 3 or min(src.shape) < 1:
        raise InputError(f"the stack should be a non-empty 3D (z, y, x) array, got shape "
                         f"{getattr(src, 'shape', None)}.")
    return src


@contextlib.contextmanager
def _destination(dst, shape: Triple, block: Triple, prob_dtype: str, attrs: dict):
    """The output array: an existing zarr array to fill, or a new one written atomically."""
    import zarr

    if isinstance(dst, zarr.Array):
        if tuple(dst.shape) != shape:
            raise InputError(f"the output array has shape {tuple(dst.shape)}, the stack "
                             f"{shape}.")
        if dst.dtype.name not in PROB_DTYPES:
            raise InputError(f"the output array has dtype {dst.dtype}; probabilities are "
                             f"stored as {', '.join(PROB_DTYPES)}.")
        yield dst
        return
    with atomic_dir(dst) as tmp:
        out = zarr.create_array(store=str(tmp), shape=shape, dtype=prob_dtype, fill_value=0,
                                chunks=tuple(min(b, n) for b, n in zip(block, shape, strict=True)))
        out.attrs.update(attrs)
        yield out


def _read_padded(source, first: Triple, stop: Triple, norm: NormalizationConfig,
                 limits: tuple[float, float]) -> np.ndarray:
    """``source[first:stop]`` normalised, with zeros where the range leaves the stack."""
    region = np.zeros(tuple(b - a for a, b in zip(first, stop, strict=True)), np.float32)
    inside = tuple(slice(max(a, 0), min(b, n))
                   for a, b, n in zip(first, stop, source.shape, strict=True))
    local = tuple(slice(s.start - a, s.stop - a) for s, a in zip(inside, first, strict=True))
    region[local] = norm.normalize(np.asarray(source[inside]), limits)
    return region
