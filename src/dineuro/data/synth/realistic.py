"""Domain randomisation: every stack of the ``realistic`` preset draws its own microscope.

A network trained on one fixed image model learns that model; real stacks differ from stack to
stack and lab to lab. So each stack draws, from its own seed, what real single-neuron confocal
and two-photon stacks vary in: z anisotropy (1-5), 8-, 12- or 16-bit cameras and saturation at
the top of the range, signal-to-noise down to shot noise as bright as dim fibres, a background
from near zero to hazy and uneven, detector spikes and hot pixels, beaded (varicose) neurites,
radii from sub-voxel twigs to thick trunks, several neurons per stack, and projection fibres
that enter and leave the stack without a soma. Each stack draws its difficulty within
``DIFFICULTY_SPREAD`` of the set's; it moves the signal-to-noise ratio, the speckles, the gaps
and the clutter, not the haze: noisy real stacks have a background near zero with bright
isolated speckles, so the background level is drawn independently of it. What was drawn is a
:class:`StackRecipe`, recorded per stack in ``meta.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dineuro.data.synth.imaging import ImagingConfig
from dineuro.data.synth.morphology import GrowthConfig

#: Range of the z spacing over the x/y spacing (log-uniform).
Z_RATIO = (1.0, 5.0)
#: Cameras: (dtype, bits or None for the dtype's default) and how often each is drawn.
CAMERAS = ((("uint8", None), 0.5), (("uint16", None), 0.3), (("uint16", 16), 0.2))
#: Thickest trunk radius a grown neuron or fibre may start with, in x/y voxels.
MAX_TRUNK_RADIUS = 8.0
#: Share of stacks whose neurites carry no beads.
UNBEADED_SHARE = 0.4
#: Share of stacks without hot camera pixels.
NO_HOT_PIXEL_SHARE = 0.6
#: A stack's difficulty is drawn uniformly within this of the set's (clipped to [0, 1]).
DIFFICULTY_SPREAD = 0.3


@dataclass(frozen=True)
class StackRecipe:
    """What one stack of the ``realistic`` preset drew.

    Attributes
    ----------
    spacing : tuple of 3 float
        (z, y, x) voxel size.
    imaging : ImagingConfig
        The image model of this stack.
    growth : GrowthConfig
        How its grown neurons and fibres grow.
    navis : bool
        Whether one of the neurons is a real fly neuron from navis.
    neurons : int
        Number of grown neurons with a soma.
    fibres : int
        Number of projection fibres (no soma, entering through the border).
    target : float
        Foreground fraction aimed at, shared by the labelled neurons and fibres.
    difficulty : float
        This stack's difficulty.
    """

    spacing: tuple[float, float, float]
    imaging: ImagingConfig
    growth: GrowthConfig
    navis: bool
    neurons: int
    fibres: int
    target: float
    difficulty: float

    def to_dict(self) -> dict:
        return asdict(self)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def draw_recipe(rng: np.random.Generator, xy_spacing: float, difficulty: float,
                foreground: tuple[float, float], navis_fraction: float) -> StackRecipe:
    """Draw one stack's microscope, neurons and image model (see the module docstring).

    Parameters
    ----------
    rng : numpy.random.Generator
        The stack's generator.
    xy_spacing : float
        x/y voxel size; z is this times a drawn anisotropy.
    difficulty : float
        The set's difficulty, 0 (bright, clean) to 1 (dim, gappy, speckled, cluttered); the stack's
        own is drawn around it.
    foreground : tuple of 2 float
        Range of the target foreground fraction (log-uniform).
    navis_fraction : float
        Probability that a real navis neuron is among the neurons.
    """

    difficulty = rng.uniform(max(0.0, difficulty - DIFFICULTY_SPREAD),
                             min(1.0, difficulty + DIFFICULTY_SPREAD))

    def lerp(easy: float, hard: float) -> float:
        return easy + (hard - easy) * difficulty

    z_ratio = _log_uniform(rng, *Z_RATIO)
    dtype, bits = CAMERAS[rng.choice(len(CAMERAS), p=[share for _, share in CAMERAS])][0]
    full = ImagingConfig(dtype=dtype, bits=bits).full_scale
    psf_xy = rng.uniform(0.6, 1.4)
    beaded = rng.random() >= UNBEADED_SHARE
    imaging = ImagingConfig(
        signal_photons=_log_uniform(rng, lerp(25.0, 4.0), lerp(250.0, 40.0)),
        brightness_spread=rng.uniform(0.25, 0.7),
        along_variation=rng.uniform(0.15, 0.5),
        gap_rate=lerp(0.1, 1.5) * rng.uniform(0.5, 1.5),
        soma_brightness=rng.uniform(1.2, 3.0),
        psf_sigma_xy=psf_xy,
        psf_sigma_z=max(0.4, psf_xy * rng.uniform(1.5, 3.0) / z_ratio),
        depth_attenuation=rng.uniform(0.0, 0.6),
        background_photons=_log_uniform(rng, 0.03, 3.0),
        background_variation=rng.uniform(0.2, 1.2),
        blob_count=int(rng.poisson(lerp(2.0, 14.0))),
        fragment_count=int(rng.poisson(lerp(0.5, 4.0))),
        read_noise=rng.uniform(0.3, 2.5),
        dtype=dtype,
        bits=bits,
        median_level=rng.uniform(0.15, 0.8),
        offset=rng.uniform(0.0, 0.03) * full,
        bead_fraction=rng.uniform(0.5, 1.0) if beaded else 0.0,
        bead_period=(3.0, 10.0),
        bead_width=rng.uniform(0.6, 1.4),
        bead_floor=rng.uniform(0.05, 0.5),
        salt_rate=_log_uniform(rng, 1e-6, lerp(5e-5, 5e-4)),
        hot_pixel_rate=(0.0 if rng.random() < NO_HOT_PIXEL_SHARE
                        else _log_uniform(rng, 1e-5, 1e-3)),
    )
    trunk = _log_uniform(rng, 0.6, 2.5)
    soma = rng.uniform(2.5, 6.0)
    growth = GrowthConfig(
        tortuosity=rng.uniform(0.05, 0.18),
        branch_prob=rng.uniform(0.005, 0.03),
        taper=rng.uniform(0.99, 0.999),
        child_radius_ratio=rng.uniform(0.5, 0.9),
        root_radius=(min(1.2 * trunk, MAX_TRUNK_RADIUS), min(2.2 * trunk, MAX_TRUNK_RADIUS)),
        soma_radius=(soma, soma + 2.0),
        min_radius=0.5,
    )
    navis = bool(rng.random() < navis_fraction)
    neurons, fibres = int(rng.integers(0, 3)), int(rng.integers(0, 4))
    if not (navis or neurons or fibres):
        neurons = 1
    return StackRecipe(spacing=(xy_spacing * z_ratio, xy_spacing, xy_spacing), imaging=imaging,
                       growth=growth, navis=navis, neurons=neurons, fibres=fibres,
                       target=_log_uniform(rng, *foreground), difficulty=difficulty)
