"""The image model: what a confocal microscope makes of a labelled neuron.

Fluorophore sits in the neuron's tubes with a brightness that varies between branches (log-normal)
and smoothly along each branch, with dimmed stretches (gaps); the soma is brighter. Clutter that
is not labelled is added: fragments of other neurons and bright out-of-focus blobs. The
microscope blurs with an anisotropic Gaussian point-spread function (worse in z), signal fades
with depth, a smooth autofluorescence background lies under everything, and the camera adds
Poisson shot noise and Gaussian read noise before quantising to 8 or 16 bits. Real stacks add
what this model can switch on (all off by default, so the fixed presets are unchanged): beaded
(varicose) neurites, bright in swellings every few micrometres and dim between them; isolated
salt voxels (detector spikes) and hot camera pixels (a bright column through every slice); and a
camera range other than the dtype's default (e.g. 16-bit). Every random draw comes from the
generator passed in, so a seed fixes the stack.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from dineuro.data.render import render_mask
from dineuro.errors import InputError
from dineuro.io.swc import SwcTree

#: Full scale of the camera per output type: 8-bit, and a 12-bit camera in a 16-bit container.
FULL_SCALE = {"uint8": 255, "uint16": 4095}
#: Edges are sampled this often (x/y voxels) to carry brightness into the voxels around them.
BRIGHTNESS_SAMPLE_STEP = 0.5
#: Grey value of a salt voxel or hot pixel, as a range of fractions of the full scale.
SPIKE_LEVEL = (0.25, 1.0)


@dataclass(frozen=True)
class ImagingConfig:
    """Parameters of the image model. Photons are per voxel; lengths in x/y voxels.

    Parameters
    ----------
    signal_photons : float, optional
        Fluorophore density of a neurite of median brightness (before blur).
    brightness_spread : float, optional
        Log-normal sigma of brightness between branches.
    along_variation : float, optional
        Log amplitude of the smooth brightness variation along a branch.
    along_wavelength : float, optional
        Typical period of that variation.
    gap_rate : float, optional
        Dimmed stretches per 100 voxels of cable.
    gap_length : tuple of 2 float, optional
        Range of a gap's length.
    gap_dimming : tuple of 2 float, optional
        Range of the brightness left inside a gap (0 = dark).
    soma_brightness : float, optional
        Soma brightness relative to the median neurite.
    psf_sigma_xy : float, optional
        Gaussian PSF sigma in y and x, in voxels.
    psf_sigma_z : float, optional
        Gaussian PSF sigma in z, in z voxels.
    depth_attenuation : float, optional
        Fraction of the signal lost from the first to the last slice.
    background_photons : float, optional
        Median autofluorescence level.
    background_variation : float, optional
        Log amplitude of the smooth background field.
    background_cells : tuple of 3 int, optional
        Number of cells per axis of the coarse grid the background is interpolated from (z, y, x);
        fewer cells = smoother.
    blob_count : int, optional
        Bright out-of-focus blobs (unlabelled clutter).
    blob_sigma : tuple of 2 float, optional
        Range of a blob's Gaussian sigma, in x/y voxels.
    blob_brightness : tuple of 2 float, optional
        Range of blob peak photons relative to ``signal_photons``.
    fragment_count : int, optional
        Fragments of other neurons (unlabelled clutter).
    fragment_length : tuple of 2 float, optional
        Range of a fragment's cable length.
    fragment_brightness : tuple of 2 float, optional
        Range of fragment brightness relative to ``signal_photons``.
    read_noise : float, optional
        Camera read noise in photo-electrons (rms).
    dtype : str, optional
        ``"uint8"`` or ``"uint16"``.
    median_level : float, optional
        Grey value of a median-bright neurite voxel before blur, as a fraction of the full scale
        (brighter ones saturate, as in real stacks).
    offset : float, optional
        Camera offset in grey values.
    bits : int, optional
        Camera range in bits (full scale 2**bits - 1); None = the dtype's default (8-bit for uint8,
        a 12-bit camera for uint16).
    bead_fraction : float, optional
        Share of branches that are beaded (varicose).
    bead_period : tuple of 2 float, optional
        Range of the distance between swellings, in x/y voxels (per stack).
    bead_width : float, optional
        Gaussian sigma of a swelling's brightness along the branch, in x/y voxels.
    bead_floor : float, optional
        Brightness left between swellings, relative to a swelling.
    salt_rate : float, optional
        Fraction of voxels that are detector spikes (isolated bright voxels).
    hot_pixel_rate : float, optional
        Fraction of (y, x) camera pixels that are hot (bright in every slice).
    """

    signal_photons: float = 60.0
    brightness_spread: float = 0.45
    along_variation: float = 0.35
    along_wavelength: float = 30.0
    gap_rate: float = 0.6
    gap_length: tuple[float, float] = (3.0, 10.0)
    gap_dimming: tuple[float, float] = (0.0, 0.3)
    soma_brightness: float = 1.5
    psf_sigma_xy: float = 0.9
    psf_sigma_z: float = 1.5
    depth_attenuation: float = 0.4
    background_photons: float = 3.0
    background_variation: float = 0.6
    background_cells: tuple[int, int, int] = (3, 6, 6)
    blob_count: int = 8
    blob_sigma: tuple[float, float] = (1.5, 5.0)
    blob_brightness: tuple[float, float] = (0.3, 2.0)
    fragment_count: int = 2
    fragment_length: tuple[float, float] = (40.0, 200.0)
    fragment_brightness: tuple[float, float] = (0.3, 1.0)
    read_noise: float = 1.5
    dtype: str = "uint8"
    median_level: float = 0.5
    offset: float = 2.0
    bits: int | None = None
    bead_fraction: float = 0.0
    bead_period: tuple[float, float] = (4.0, 8.0)
    bead_width: float = 1.0
    bead_floor: float = 0.3
    salt_rate: float = 0.0
    hot_pixel_rate: float = 0.0

    def __post_init__(self):
        if self.dtype not in FULL_SCALE:
            raise InputError(f"dtype should be one of {sorted(FULL_SCALE)}, not {self.dtype!r}.")
        if self.bits is not None and not 1 <= self.bits <= np.iinfo(self.dtype).bits:
            raise InputError(f"bits should be between 1 and {np.iinfo(self.dtype).bits} for "
                             f"{self.dtype}, not {self.bits}.")

    @property
    def full_scale(self) -> int:
        """Largest grey value the camera gives."""
        return FULL_SCALE[self.dtype] if self.bits is None else 2 ** self.bits - 1


def imaging_for_difficulty(difficulty: float, **overrides) -> ImagingConfig:
    """The image model at a difficulty from 0 (clean, bright) to 1 (dim, gappy, cluttered).

    Difficulty moves the signal-to-noise ratio, the gaps and the clutter together; the default
    0.5 is a typical good confocal stack. Keyword overrides win over the difficulty.
    """
    if not 0.0 <= difficulty <= 1.0:
        raise InputError("difficulty should be between 0 and 1.")

    def lerp(easy: float, hard: float) -> float:
        return easy + (hard - easy) * difficulty

    config = ImagingConfig(
        signal_photons=lerp(150.0, 12.0),
        brightness_spread=lerp(0.3, 0.6),
        gap_rate=lerp(0.1, 1.5),
        background_photons=lerp(1.5, 6.0),
        blob_count=round(lerp(2, 20)),
        fragment_count=round(lerp(0, 5)),
    )
    return replace(config, **overrides)


def _branch_ids(tree: SwcTree) -> np.ndarray:
    """Label each node with the unbranched section it belongs to (a new one after each fork)."""
    parent = tree.parent_index
    n_children = np.bincount(parent[parent >= 0], minlength=len(tree))
    ids = np.empty(len(tree), dtype=np.int64)
    next_id = 0
    for i in range(len(tree)):  # parents come before children (renumbered trees)
        p = parent[i]
        if p < 0 or n_children[p] > 1:
            ids[i] = next_id
            next_id += 1
        else:
            ids[i] = ids[p]
    return ids


def _arc_length(tree: SwcTree, z_ratio: float) -> np.ndarray:
    """Cable distance from the root to every node, in x/y voxels."""
    parent = tree.parent_index
    iso = tree.xyz * np.array([1.0, 1.0, z_ratio])
    out = np.zeros(len(tree))
    for i in range(len(tree)):
        if parent[i] >= 0:
            out[i] = out[parent[i]] + np.linalg.norm(iso[i] - iso[parent[i]])
    return out


def node_brightness(tree: SwcTree, z_ratio: float, config: ImagingConfig,
                    rng: np.random.Generator) -> tuple[SwcTree, np.ndarray]:
    """Relative brightness (median neurite = 1) from branch level, smooth drift and gaps.

    Returns
    -------
    tuple of (SwcTree, numpy.ndarray)
        The tree in parents-first order, and the brightness of each of its nodes.
    """
    tree = tree.renumbered()
    branch = _branch_ids(tree)
    s = _arc_length(tree, z_ratio)
    n_branches = branch.max() + 1
    level = rng.lognormal(0.0, config.brightness_spread, size=n_branches)[branch]
    # A smooth random function of arc length per branch: three sinusoids with random phases.
    periods = config.along_wavelength * rng.uniform(0.5, 2.0, size=(n_branches, 3))
    phases = rng.uniform(0, 2 * np.pi, size=(n_branches, 3))
    drift = np.sin(2 * np.pi * s[:, None] / periods[branch] + phases[branch]).sum(axis=1)
    brightness = level * np.exp(config.along_variation * drift / np.sqrt(3))
    for b in range(n_branches):
        nodes = np.flatnonzero(branch == b)
        start, stop = s[nodes].min(), s[nodes].max()
        for _ in range(rng.poisson(config.gap_rate * (stop - start) / 100.0)):
            centre = rng.uniform(start, stop)
            half = rng.uniform(*config.gap_length) / 2
            inside = nodes[np.abs(s[nodes] - centre) <= half]
            brightness[inside] *= rng.uniform(*config.gap_dimming)
    if config.bead_fraction > 0:
        brightness *= bead_profile(s, branch, config, rng)
    brightness[tree.types == 1] = config.soma_brightness
    return tree, brightness


def bead_profile(arc: np.ndarray, branch: np.ndarray, config: ImagingConfig,
                 rng: np.random.Generator) -> np.ndarray:
    """Brightness factor of beaded (varicose) neurites at cable distance ``arc`` from the root.

    Swellings sit every ``period`` x/y voxels along a branch (one period per stack, a random
    phase per branch); the factor is 1 at a swelling's centre, falls as a Gaussian of
    ``bead_width`` and levels off at ``bead_floor`` between swellings. Branches that are not
    beaded (``1 - bead_fraction`` of them) keep factor 1. Nodes must be closer than the
    swelling width for the beads to show (see :func:`densified`).
    """
    n_branches = branch.max() + 1
    period = rng.uniform(*config.bead_period)
    phase = rng.uniform(0.0, period, size=n_branches)
    beaded = rng.random(n_branches) < config.bead_fraction
    offset = np.mod(arc + phase[branch], period)
    distance = np.minimum(offset, period - offset)
    bead = config.bead_floor + (1 - config.bead_floor) * np.exp(
        -0.5 * (distance / config.bead_width) ** 2)
    return np.where(beaded[branch], bead, 1.0)


def densified(tree: SwcTree, z_ratio: float, step: float) -> SwcTree:
    """The tree with nodes inserted so that no edge is longer than ``step`` x/y voxels.

    Inserted nodes interpolate position and radius and keep the child's type; the result is
    parents-first (renumbered). Used for the image only: the gold SWC keeps its nodes.
    """
    tree = tree.renumbered()
    child, parent = tree.edges()
    iso = tree.xyz * np.array([1.0, 1.0, z_ratio])
    pieces = np.maximum(np.ceil(np.linalg.norm(iso[child] - iso[parent], axis=1) / step), 1)
    pieces = pieces.astype(np.int64)
    extra = pieces - 1
    n = len(tree)
    if not extra.sum():
        return tree
    # New nodes of edge e are numbered after the original ones; each hangs from the previous.
    edge = np.repeat(np.arange(len(child)), extra)
    k = np.arange(extra.sum()) - np.repeat(np.cumsum(extra) - extra, extra) + 1  # 1..extra
    t = (k / pieces[edge])[:, None]  # from the parent end towards the child
    rows = n + np.arange(extra.sum())
    xyz = tree.xyz[parent[edge]] + t * (tree.xyz[child[edge]] - tree.xyz[parent[edge]])
    radius = tree.radius[parent[edge]] + t[:, 0] * (tree.radius[child[edge]]
                                                    - tree.radius[parent[edge]])
    ids = np.concatenate([tree.ids, rows + 1])
    new_parent = np.where(k == 1, tree.ids[parent[edge]], rows)  # row r has id r + 1
    parents = tree.parents.copy()
    last = np.cumsum(extra) - 1  # the row (among new ones) of each edge's last new node
    has_extra = extra > 0
    parents[child[has_extra]] = n + last[has_extra] + 1
    return SwcTree(ids, np.concatenate([tree.types, tree.types[child[edge]]]),
                   np.concatenate([tree.xyz, xyz]), np.concatenate([tree.radius, radius]),
                   np.concatenate([parents, new_parent]), list(tree.comments)).renumbered()


def _edge_samples(tree: SwcTree, values: np.ndarray, z_ratio: float):
    """Points every ``BRIGHTNESS_SAMPLE_STEP`` along every edge (isotropic x/y-voxel units, in
    (z, y, x) order) with ``values`` linearly interpolated between the edge's nodes."""
    child, parent = tree.edges()
    iso = tree.zyx * np.array([z_ratio, 1.0, 1.0])
    points, vals = [iso], [values]
    if len(child):
        length = np.linalg.norm(iso[child] - iso[parent], axis=1)
        counts = np.ceil(length / BRIGHTNESS_SAMPLE_STEP).astype(np.int64)
        edge = np.repeat(np.arange(len(child)), counts)
        t = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 0.5)
        t = t / counts[edge]
        points.append(iso[child[edge]] + t[:, None] * (iso[parent[edge]] - iso[child[edge]]))
        vals.append(values[child[edge]] + t * (values[parent[edge]] - values[child[edge]]))
    return np.concatenate(points), np.concatenate(vals)


def fluorophore(tree: SwcTree, label: np.ndarray, brightness: np.ndarray,
                spacing: tuple[float, float, float]) -> np.ndarray:
    """Fluorophore density (relative units) in the labelled voxels: each voxel takes the
    brightness of the nearest point of the neuron's centreline."""
    z_ratio = spacing[0] / spacing[2]
    points, values = _edge_samples(tree, brightness, z_ratio)
    voxels = np.argwhere(label).astype(float) * np.array([z_ratio, 1.0, 1.0])
    out = np.zeros(label.shape, dtype=np.float32)
    if len(voxels):
        _, nearest = cKDTree(points).query(voxels)
        out[label] = values[nearest]
    return out


def _smooth_field(shape: tuple[int, int, int], cells: tuple[int, int, int],
                  rng: np.random.Generator) -> np.ndarray:
    """A smooth zero-mean, unit-variance random field, interpolated from a coarse random grid."""
    coarse = rng.normal(size=tuple(c + 1 for c in cells))
    field = ndimage.zoom(coarse, [s / c for s, c in zip(shape, coarse.shape, strict=True)], order=3,
                         grid_mode=True, mode="reflect")[: shape[0], : shape[1], : shape[2]]
    return ((field - field.mean()) / (field.std() + 1e-12)).astype(np.float32)


def _add_blobs(photons: np.ndarray, spacing, config: ImagingConfig,
               rng: np.random.Generator) -> None:
    """Add out-of-focus bright blobs (anisotropic Gaussians) in place."""
    z_ratio = spacing[0] / spacing[2]
    for _ in range(config.blob_count):
        sigma = rng.uniform(*config.blob_sigma)
        sig = np.array([sigma / z_ratio, sigma, sigma])
        centre = rng.uniform(0, 1, 3) * np.array(photons.shape)
        lo = np.maximum(np.floor(centre - 3 * sig).astype(int), 0)
        hi = np.minimum(np.ceil(centre + 3 * sig).astype(int) + 1, photons.shape)
        if np.any(hi <= lo):
            continue
        grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij")
        d2 = sum(((g - c) / s) ** 2 for g, c, s in zip(grids, centre, sig, strict=True))
        peak = rng.uniform(*config.blob_brightness) * config.signal_photons
        photons[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += peak * np.exp(-0.5 * d2)


def expected_photons(fluor: np.ndarray, spacing: tuple[float, float, float],
                     config: ImagingConfig, rng: np.random.Generator) -> np.ndarray:
    """Mean photons per voxel from a fluorophore density (relative units, 1 = median neurite):
    PSF blur, out-of-focus blobs, depth attenuation and the autofluorescence background."""
    photons = ndimage.gaussian_filter(
        fluor * np.float32(config.signal_photons),
        sigma=(config.psf_sigma_z, config.psf_sigma_xy, config.psf_sigma_xy))
    _add_blobs(photons, spacing, config, rng)
    depth = np.linspace(0.0, 1.0, fluor.shape[0], dtype=np.float32)[:, None, None]
    photons *= 1.0 - config.depth_attenuation * depth
    if config.background_photons > 0:
        field = _smooth_field(fluor.shape, config.background_cells, rng)
        photons += config.background_photons * np.exp(config.background_variation * field)
    return photons


def camera(photons: np.ndarray, config: ImagingConfig, rng: np.random.Generator) -> np.ndarray:
    """Detect: Poisson shot noise, Gaussian read noise, gain, offset, clipping to the dtype.

    The gain maps ``median_level * full scale`` grey values to ``signal_photons`` photons.
    """
    electrons = rng.poisson(photons).astype(np.float32)
    electrons += rng.normal(0.0, config.read_noise, size=photons.shape).astype(np.float32)
    full = config.full_scale
    gain = config.median_level * full / config.signal_photons
    grey = electrons * gain + config.offset
    if config.salt_rate > 0:
        flat = grey.reshape(-1)
        where = rng.integers(flat.size, size=rng.poisson(config.salt_rate * flat.size))
        flat[where] = np.maximum(flat[where], rng.uniform(*SPIKE_LEVEL, len(where)) * full)
    if config.hot_pixel_rate > 0:
        pixels = grey.shape[1] * grey.shape[2]
        where = rng.integers(pixels, size=rng.poisson(config.hot_pixel_rate * pixels))
        y, x = np.unravel_index(where, grey.shape[1:])
        level = rng.uniform(*SPIKE_LEVEL, len(where)) * full
        grey[:, y, x] = np.maximum(grey[:, y, x], level)
    return np.clip(np.rint(grey), 0, full).astype(config.dtype)


def render_image(tree: SwcTree, label: np.ndarray, spacing: tuple[float, float, float],
                 config: ImagingConfig, rng: np.random.Generator,
                 clutter: list[SwcTree] = ()) -> np.ndarray:
    """The microscope image of a labelled neuron plus unlabelled clutter neurons.

    Parameters
    ----------
    tree : SwcTree
        The neuron, in voxel coordinates (x, y, z).
    label : numpy.ndarray
        Its rendered mask, (z, y, x) bool; fluorophore fills it.
    spacing : tuple of 3 float
        (z, y, x) voxel size.
    config : ImagingConfig
        The image model.
    rng : numpy.random.Generator
        The random generator.
    clutter : list of SwcTree, optional
        Fragments of other neurons, rendered with a single brightness each.

    Returns
    -------
    numpy.ndarray
        The stack, (z, y, x), of ``config.dtype``.
    """
    z_ratio = spacing[0] / spacing[2]
    if config.bead_fraction > 0:
        tree = densified(tree, z_ratio, config.bead_width / 2)
    ordered, brightness = node_brightness(tree, z_ratio, config, rng)
    fluor = fluorophore(ordered, label, brightness, spacing)
    for fragment in clutter:
        mask = render_mask(fragment, label.shape, spacing)
        fluor[mask] += np.float32(rng.uniform(*config.fragment_brightness))
    return camera(expected_photons(fluor, spacing, config, rng), config, rng)
