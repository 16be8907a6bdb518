"""Synthetic benchmark: labelled neuron stacks that look like confocal light microscopy.

A stack is a neuron (a real fly neuron from navis, or a procedurally grown tree) rendered into a
label mask and imaged by the model in :mod:`dineuro.data.synth.imaging`. Stack ``i`` of a seed
is the same whatever the number of stacks, so a benchmark can grow without changing its start.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from dineuro import __version__
from dineuro.data.dataset import (
    DATASET_FORMAT,
    META_FILE,
    SPLIT_FILE,
    SPLITS,
    UNLABELLED,
    write_json,
    write_sample,
)
from dineuro.data.render import render_mask
from dineuro.data.synth.imaging import (
    FULL_SCALE,
    ImagingConfig,
    imaging_for_difficulty,
    render_image,
)
from dineuro.data.synth.morphology import (
    NAVIS_NEURON_COUNT,
    GrowthConfig,
    grow_neuron,
    navis_neuron,
    projection_fibre,
)
from dineuro.data.synth.realistic import StackRecipe, draw_recipe
from dineuro.errors import InputError
from dineuro.io.atomic import atomic_dir
from dineuro.io.swc import SwcTree, write_swc
from dineuro.io.volume import Volume

#: Real single-neuron stacks have 0.02-2% neurite voxels; generated stacks aim inside this.
FOREGROUND_BOUNDS = (0.002, 0.02)
#: Attempts to bring a neuron's foreground fraction within a factor TARGET_TOLERANCE of its
#: target (by cable length for grown neurons, by zoom for navis neurons).
FIT_ATTEMPTS = 4
TARGET_TOLERANCE = 1.25
#: Largest zoom change per attempt for navis neurons, and the zooms allowed.
MAX_ZOOM_STEP = 3.0
ZOOM_RANGE = (0.3, 6.0)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides a synthetic dataset (with the seed, it fixes every voxel).

    Parameters
    ----------
    n_stacks : int, optional
        Number of stacks.
    shape : tuple of 3 int, optional
        (z, y, x) stack shape in voxels.
    spacing : tuple of 3 float, optional
        (z, y, x) voxel size in micrometres (z coarser, as in confocal stacks).
    difficulty : float, optional
        0 (clean) to 1 (dim, gappy, cluttered); sets ``imaging`` unless given.
    navis_fraction : float, optional
        Share of stacks showing a real fly neuron from navis (the rest are grown procedurally).
    foreground : tuple of 2 float, optional
        Range of target foreground fractions for grown neurons (log-uniform).
    split : tuple of 3 float, optional
        train/val/test fractions.
    min_radius : float, optional
        Minimum label radius in voxels (see :func:`dineuro.data.render.render_mask`).
    growth : GrowthConfig, optional
        Procedural growth parameters.
    imaging : ImagingConfig, optional
        Image model; None means ``imaging_for_difficulty(difficulty, dtype=dtype)``.
    dtype : str, optional
        ``"uint8"`` or ``"uint16"`` output.
    seed : int, optional
        Master seed.
    randomize : bool, optional
        Draw every stack's microscope, neurons and image model anew
        (:mod:`dineuro.data.synth.realistic`); ``spacing`` then gives the x/y voxel size,
        ``difficulty`` the noise level, and ``imaging`` and ``dtype`` are not used.
    """

    n_stacks: int = 42
    shape: tuple[int, int, int] = (64, 256, 256)
    spacing: tuple[float, float, float] = (1.0, 0.5, 0.5)
    difficulty: float = 0.5
    navis_fraction: float = 0.3
    foreground: tuple[float, float] = (0.004, 0.012)
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    min_radius: float = 1.0
    growth: GrowthConfig = field(default_factory=GrowthConfig)
    imaging: ImagingConfig | None = None
    dtype: str = "uint8"
    seed: int = 0
    randomize: bool = False

    def __post_init__(self):
        if self.n_stacks < 1:
            raise InputError("n_stacks should be at least 1.")
        if len(self.shape) != 3 or min(self.shape) < 8:
            raise InputError("shape should be three sizes (z, y, x) of at least 8 voxels.")
        if len(self.spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in self.spacing):
            raise InputError("spacing should be three positive sizes (z, y, x).")
        if self.seed < 0:
            raise InputError("seed should be a non-negative integer.")
        if not 0.0 <= self.difficulty <= 1.0:
            raise InputError("difficulty should be between 0 and 1.")
        if self.dtype not in FULL_SCALE:
            raise InputError(f"dtype should be one of {sorted(FULL_SCALE)}, not {self.dtype!r}.")
        if not 0 <= self.navis_fraction <= 1:
            raise InputError("navis_fraction should be between 0 and 1.")
        if len(self.split) != 3 or min(self.split) < 0 or not math.isclose(sum(self.split), 1):
            raise InputError("split should be three non-negative fractions that sum to 1.")

    @property
    def image_model(self) -> ImagingConfig:
        """The imaging configuration in force."""
        if self.imaging is not None:
            return self.imaging
        return imaging_for_difficulty(self.difficulty, dtype=self.dtype)

    def resolved(self) -> dict:
        """Every parameter, with the image model filled in: what ``meta.json`` records (a
        randomised set records each stack's drawn model with the stack instead)."""
        return asdict(self if self.randomize else replace(self, imaging=self.image_model))


#: Named presets: ``small`` for tests and the demo, ``bench`` the size of BigNeuron's Janelia
#: set, ``realistic`` the bench size with every stack's microscope and neurons randomised
#: (sparser neurons too: 0.1-1.2% of the voxels).
PRESETS = {
    "small": SynthConfig(n_stacks=6, shape=(48, 128, 128)),
    "bench": SynthConfig(n_stacks=42, shape=(64, 256, 256)),
    "realistic": SynthConfig(n_stacks=42, shape=(64, 256, 256), foreground=(0.001, 0.012),
                             randomize=True),
}


def preset_config(preset: str, **changes) -> SynthConfig:
    """A named preset with some of its settings changed (``n_stacks``, ``seed``, ...).

    Raises
    ------
    InputError
        An unknown preset, or a changed setting out of its range.

    Examples
    --------
    >>> preset_config("small", n_stacks=2).shape
    (48, 128, 128)
    """
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    return replace(PRESETS[preset], **changes)


@dataclass(frozen=True)
class SyntheticStack:
    """One generated stack: the image, its label mask, its gold SWC and where it came from.

    ``unlabelled`` holds the fragments of other neurons drawn into the image but left out of
    the label and the gold (None when the stack has none): a tracer that follows them is not
    wrong about the image, only about which neuron was asked for.
    """

    name: str
    image: np.ndarray
    label: np.ndarray
    tree: SwcTree
    source: str
    spacing: tuple[float, float, float]
    recipe: StackRecipe | None = None
    unlabelled: SwcTree | None = None

    @property
    def foreground_fraction(self) -> float:
        return float(self.label.mean())


def stack_name(index: int) -> str:
    return f"synth_{index:03d}"


def _uses_navis(index: int, fraction: float) -> tuple[bool, int]:
    """Spread navis stacks evenly (stack 0 is one when fraction > 0); also which neuron."""
    used_before = math.ceil(index * fraction - 1e-9)
    return math.ceil((index + 1) * fraction - 1e-9) > used_before, used_before


def _target_fraction(config: SynthConfig, rng: np.random.Generator) -> float:
    low, high = np.log(config.foreground)
    return float(np.exp(rng.uniform(low, high)))


def _close_enough(fraction: float, target: float) -> bool:
    return abs(np.log(max(fraction, 1e-9) / target)) < np.log(TARGET_TOLERANCE)


def _grown(config: SynthConfig, rng: np.random.Generator, z_ratio: float, target: float):
    """A grown neuron and its mask, its cable budget corrected towards a target fraction."""
    n_voxels = math.prod(config.shape)
    voxels_per_length = 2 * np.pi  # first guess: a tube of radius ~1.4 voxels
    for _ in range(FIT_ATTEMPTS):
        length = target * n_voxels / voxels_per_length
        tree = grow_neuron(rng, config.shape, z_ratio, length, config.growth)
        label = render_mask(tree, config.shape, config.spacing, config.min_radius)
        if _close_enough(label.mean(), target):
            break
        voxels_per_length = label.sum() / max(_cable_length(tree, z_ratio), 1.0)
    return tree, label


def _navis(config: SynthConfig, rng: np.random.Generator, which: int, target: float):
    """A navis neuron and its mask, zoomed from its physical size towards a target fraction.

    At physical size a fly neuron in a large stack can cover less than the benchmark's lowest
    foreground fraction; zooming in (same pose, same centre) brings more cable into view.
    """
    pose_seed = int(rng.integers(2**32))
    zoom = 1.0
    for _ in range(FIT_ATTEMPTS):
        tree = navis_neuron(np.random.default_rng(pose_seed), config.shape, config.spacing,
                            which, zoom=zoom)
        label = render_mask(tree, config.shape, config.spacing, config.min_radius)
        if _close_enough(label.mean(), target):
            break
        step = np.clip(target / max(label.mean(), 1e-6), 1 / MAX_ZOOM_STEP, MAX_ZOOM_STEP)
        zoom = float(np.clip(zoom * step, *ZOOM_RANGE))
    return tree, label, zoom


def _cable_length(tree: SwcTree, z_ratio: float) -> float:
    child, parent = tree.edges()
    delta = (tree.xyz[child] - tree.xyz[parent]) * np.array([1.0, 1.0, z_ratio])
    return float(np.linalg.norm(delta, axis=1).sum())


def synthesize_stack(config: SynthConfig, index: int) -> SyntheticStack:
    """Generate stack ``index`` of the dataset that ``config`` describes."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(index,)))
    if config.randomize:
        return _randomized_stack(config, index, rng)
    z_ratio = config.spacing[0] / config.spacing[2]
    navis, which = _uses_navis(index, config.navis_fraction)
    if navis:
        tree, label, zoom = _navis(config, rng, which, _target_fraction(config, rng))
        source = f"navis example neuron {which % NAVIS_NEURON_COUNT} at zoom {zoom:.2f}"
    else:
        tree, label = _grown(config, rng, z_ratio, _target_fraction(config, rng))
        source = "grown"
    imaging = config.image_model
    clutter = _clutter(config, imaging, rng)
    image = render_image(tree, label, config.spacing, imaging, rng, clutter)
    return _finished(config, index, image, label, tree, source, clutter=clutter)


def _clutter(config: SynthConfig, imaging: ImagingConfig, rng: np.random.Generator
             ) -> list[SwcTree]:
    """Unlabelled fragments of other neurons."""
    z_ratio = config.spacing[0] / config.spacing[2]
    return [grow_neuron(rng, config.shape, z_ratio, rng.uniform(*imaging.fragment_length),
                        config.growth, soma=False) for _ in range(imaging.fragment_count)]


def _finished(config: SynthConfig, index: int, image: np.ndarray, label: np.ndarray,
              tree: SwcTree, source: str, recipe: StackRecipe | None = None,
              clutter: list[SwcTree] = ()) -> SyntheticStack:
    """The stack with its gold SWC (and its unlabelled fragments) renumbered and headed by
    where it came from."""
    comments = [f" {stack_name(index)}: {source}; dineuro {__version__} synth, seed {config.seed}",
                f" spacing (z, y, x) um: {config.spacing}; coordinates in voxels (x, y, z)"]
    tree = replace(tree.renumbered(), comments=comments)
    unlabelled = None
    if clutter:
        unlabelled = replace(merge_trees(clutter), comments=[
            f" {stack_name(index)}: {len(clutter)} unlabelled fragment(s) of other neurons, "
            "drawn in the image, not in the label or the gold", *comments[1:]])
    return SyntheticStack(stack_name(index), image, label, tree, source, config.spacing, recipe,
                          unlabelled)


def _randomized_stack(config: SynthConfig, index: int, rng: np.random.Generator
                      ) -> SyntheticStack:
    """A stack of a randomised set: its own microscope, several neurons and fibres, all
    labelled; the target foreground is shared equally between them."""
    recipe = draw_recipe(rng, config.spacing[2], config.difficulty, config.foreground,
                         config.navis_fraction)
    config = replace(config, spacing=recipe.spacing, growth=recipe.growth)
    z_ratio = recipe.spacing[0] / recipe.spacing[2]
    share = recipe.target / (recipe.navis + recipe.neurons + recipe.fibres)
    trees, labels, sources = [], [], []
    if recipe.navis:
        which = int(rng.integers(NAVIS_NEURON_COUNT))
        tree, label, zoom = _navis(config, rng, which, share)
        trees.append(tree)
        labels.append(label)
        sources.append(f"navis example neuron {which} at zoom {zoom:.2f}")
    for _ in range(recipe.neurons):
        tree, label = _grown(config, rng, z_ratio, share)
        trees.append(tree)
        labels.append(label)
    for _ in range(recipe.fibres):  # cable that fills its share as a tube of trunk radius
        length = share * math.prod(config.shape) / (np.pi * np.mean(recipe.growth.root_radius)**2)
        tree = projection_fibre(rng, config.shape, z_ratio, length, recipe.growth)
        trees.append(tree)
        labels.append(render_mask(tree, config.shape, config.spacing, config.min_radius))
    sources += [f"{recipe.neurons} grown neuron(s)", f"{recipe.fibres} projection fibre(s)"]
    tree, label = merge_trees(trees), np.logical_or.reduce(labels)
    clutter = _clutter(config, recipe.imaging, rng)
    image = render_image(tree, label, config.spacing, recipe.imaging, rng, clutter)
    return _finished(config, index, image, label, tree, ", ".join(sources), recipe,
                     clutter=clutter)


def merge_trees(trees: list[SwcTree]) -> SwcTree:
    """One forest of several trees (ids shifted so they stay unique; each keeps its roots)."""
    parts, start = [], 0
    for tree in trees:
        tree = tree.renumbered()
        parts.append((tree.ids + start, tree.types, tree.xyz, tree.radius,
                      np.where(tree.parents > 0, tree.parents + start, -1)))
        start += len(tree)
    return SwcTree(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def split_names(names: list[str], fractions: tuple[float, float, float],
                seed: int) -> dict[str, list[str]]:
    """Shuffle ``names`` with ``seed`` and cut them into train/val/test by ``fractions``.

    Val and test get ``round(n * fraction)`` stacks each (at least one when n >= 3 and the
    fraction is positive); train keeps the rest.
    """
    order = list(np.random.default_rng(seed).permutation(len(names)))
    n = len(names)
    counts = [max(1 if n >= 3 and f > 0 else 0, round(n * f)) for f in fractions[1:]]
    val, test = counts
    picked = [names[i] for i in order]
    return {"train": sorted(picked[val + test:]), "val": sorted(picked[:val]),
            "test": sorted(picked[val:val + test])}


def iter_stacks(config: SynthConfig) -> Iterator[SyntheticStack]:
    """Generate the stacks one by one (the caller can show progress)."""
    for index in range(config.n_stacks):
        yield synthesize_stack(config, index)


def write_synthetic_dataset(out: str | os.PathLike, config: SynthConfig,
                            on_stack: Callable[[SyntheticStack], None] | None = None) -> Path:
    """Generate the dataset and write it in the dataset-folder layout.

    The folder appears only when complete (written under a temporary name, then renamed);
    ``out`` must not exist.

    Parameters
    ----------
    out : str or os.PathLike
        The dataset folder to create.
    config : SynthConfig
        What to generate.
    on_stack : callable, optional
        Called after each stack is written (for progress display).

    Returns
    -------
    Path
        ``out`` as a Path.
    """
    out = Path(out)
    stacks = {}
    with atomic_dir(out) as tmp:
        for stack in iter_stacks(config):
            write_sample(tmp, stack.name, Volume(stack.image, stack.spacing), stack.label,
                         stack.tree)
            if stack.unlabelled is not None:
                write_swc(tmp / UNLABELLED / f"{stack.name}.swc", stack.unlabelled)
            stacks[stack.name] = {"source": stack.source,
                                  "foreground_fraction": round(stack.foreground_fraction, 6)}
            if stack.recipe is not None:
                stacks[stack.name]["recipe"] = stack.recipe.to_dict()
            if on_stack is not None:
                on_stack(stack)
        split = split_names(list(stacks), config.split, config.seed)
        write_json(tmp / SPLIT_FILE, split)
        write_json(tmp / META_FILE, {
            "format": DATASET_FORMAT, "dineuro_version": __version__,
            "spacing": list(config.spacing), "seed": config.seed,
            "generator": config.resolved(), "stacks": stacks,
            "splits": {k: len(split[k]) for k in SPLITS}})
    return out
