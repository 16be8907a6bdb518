"""Neuron morphologies for synthetic stacks: procedurally grown trees and real fly neurons.

Everything here returns an :class:`~dineuro.io.swc.SwcTree` in voxel coordinates (x, y, z) of
the target stack, radii in x/y voxels. Growth happens in an isotropic space measured in x/y
voxels (z scaled by the z/xy spacing ratio) so that tortuosity and branch angles look the same
in every direction, and is converted to voxel indices at the end.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import cKDTree

from dineuro.io.swc import WRITE_DECIMALS, SwcTree

SOMA, NEURITE = 1, 3


@dataclass(frozen=True)
class GrowthConfig:
    """How procedural neurons grow. Lengths and radii are in x/y voxels.

    Parameters
    ----------
    n_primary : tuple of 2 int, optional
        Range of primary neurites leaving the soma.
    step : float, optional
        Distance between consecutive nodes.
    tortuosity : float, optional
        Standard deviation of the random change of the unit direction per step (0 = straight lines).
    branch_prob : float, optional
        Probability that a tip branches at a step.
    stop_prob : float, optional
        Probability that a tip stops at a step (besides the length budget); the last growing
        tip of a projection fibre never does.
    branch_angle : tuple of 2 float, optional
        Range of angles (radians) between a daughter and its parent branch.
    soma_radius : tuple of 2 float, optional
        Range of soma radii.
    root_radius : tuple of 2 float, optional
        Range of radii where primary neurites leave the soma.
    taper : float, optional
        Radius factor per step along a branch.
    child_radius_ratio : float, optional
        Radius factor from parent to daughter branch.
    min_radius : float, optional
        No neurite gets thinner than this.
    z_flatten : float, optional
        Shrink of the z component of new directions; single neurons in a stack spread mostly in the
        imaging plane.
    bounce_prob : float, optional
        Probability that a tip hitting the stack border turns back instead of stopping there.
    """

    n_primary: tuple[int, int] = (3, 6)
    step: float = 1.5
    tortuosity: float = 0.12
    branch_prob: float = 0.015
    stop_prob: float = 0.003
    branch_angle: tuple[float, float] = (0.4, 1.2)
    soma_radius: tuple[float, float] = (2.5, 4.5)
    root_radius: tuple[float, float] = (1.2, 2.2)
    taper: float = 0.996
    child_radius_ratio: float = 0.8
    min_radius: float = 0.5
    z_flatten: float = 0.5
    bounce_prob: float = 0.3


def _as_stored(tree: SwcTree) -> SwcTree:
    """Round coordinates and radii to what an SWC file keeps, so that a mask rendered from the
    tree in memory equals the one rendered from its file."""
    return replace(tree, xyz=np.round(tree.xyz, WRITE_DECIMALS),
                   radius=np.round(tree.radius, WRITE_DECIMALS))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _random_direction(rng: np.random.Generator, z_flatten: float) -> np.ndarray:
    d = rng.normal(size=3)
    d[2] *= z_flatten
    return _unit(d)


def _deflect(rng: np.random.Generator, direction: np.ndarray, angle: float) -> np.ndarray:
    """Rotate ``direction`` by ``angle`` about a random axis perpendicular to it."""
    axis = _unit(np.cross(direction, rng.normal(size=3)))
    return _unit(np.cos(angle) * direction + np.sin(angle) * axis)


def _extent(shape: tuple[int, int, int], z_ratio: float) -> np.ndarray:
    """(x, y, z) size of the stack in isotropic x/y-voxel units."""
    return np.array([shape[2], shape[1], shape[0] * z_ratio], dtype=float)


def _to_voxels(points: np.ndarray, z_ratio: float) -> np.ndarray:
    """Isotropic (x, y, z) coordinates in x/y voxels -> voxel indices (x, y, z), centre-based."""
    out = points - 0.5
    out[:, 2] = points[:, 2] / z_ratio - 0.5
    return out


def grow_neuron(rng: np.random.Generator, shape: tuple[int, int, int], z_ratio: float,
                total_length: float, config: GrowthConfig = GrowthConfig(),
                soma: bool = True, entry: tuple[np.ndarray, np.ndarray] | None = None
                ) -> SwcTree:
    """Grow one neuron inside a stack until its cable reaches ``total_length`` x/y voxels.

    Tips grow round-robin, one step each, so all branches get their share of the budget; a
    tip that reaches the border bounces back or stops there, so the tree stays in the stack.

    Parameters
    ----------
    rng : numpy.random.Generator
        The random generator (all randomness comes from it).
    shape : tuple of 3 int
        (z, y, x) stack shape in voxels.
    z_ratio : float
        z spacing divided by x/y spacing.
    total_length : float
        Cable length budget, in x/y voxels.
    config : GrowthConfig, optional
        Growth parameters.
    soma : bool, optional
        Start with a soma node (type 1); fragments of other neurons have none.
    entry : tuple of 2 numpy.ndarray, optional
        (start, direction) of a projection fibre, in isotropic (x, y, z) x/y-voxel units: one
        neurite grows from ``start`` along ``direction`` (no soma), e.g. from the stack border
        inwards (see :func:`projection_fibre`).

    Returns
    -------
    SwcTree
        The tree in voxel coordinates; node 1 is the root.
    """
    c = config
    extent = _extent(shape, z_ratio)
    margin = 2.0
    tips: deque = deque()
    if entry is None:
        start = extent * rng.uniform(0.3, 0.7, size=3)
        points, radii, parents, types = [start], [0.0], [-1], [SOMA if soma else NEURITE]
        radii[0] = rng.uniform(*c.soma_radius) if soma else rng.uniform(*c.root_radius)
        for _ in range(rng.integers(c.n_primary[0], c.n_primary[1] + 1) if soma else 2):
            tips.append((0, start, _random_direction(rng, c.z_flatten),
                         rng.uniform(*c.root_radius)))
    else:
        start, direction = entry
        points, radii, parents, types = [start], [rng.uniform(*c.root_radius)], [-1], [NEURITE]
        tips.append((0, start, _unit(np.asarray(direction, dtype=float)), radii[0]))
    grown = 0.0
    while tips and grown < total_length:
        parent, pos, direction, radius = tips.popleft()
        noise = rng.normal(scale=c.tortuosity, size=3)
        noise[2] *= c.z_flatten
        direction = _unit(direction + noise)
        new = pos + c.step * direction
        outside = (new < margin) | (new > extent - margin)
        if outside.any():
            if rng.random() > c.bounce_prob:
                continue
            direction = direction.copy()
            direction[outside] *= -1
            new = np.clip(pos + c.step * direction, margin, extent - margin)
        points.append(new)
        radii.append(radius)
        parents.append(parent)
        types.append(NEURITE)
        grown += float(np.linalg.norm(new - pos))
        index = len(points) - 1
        radius = max(c.min_radius, radius * c.taper)
        if rng.random() < c.branch_prob:
            angle = rng.uniform(*c.branch_angle)
            child_radius = max(c.min_radius, radius * c.child_radius_ratio)
            tips.append((index, new, _deflect(rng, direction, angle), child_radius))
            direction = _deflect(rng, direction, -0.3 * angle)
        # A fibre's last growing tip is not stopped by chance (the draw is still made, so
        # every other neuron grows as before): the fibre crosses the stack until the border
        # or the budget ends it, instead of showing a stub of a few voxels.
        if rng.random() >= c.stop_prob or (entry is not None and not tips):
            tips.append((index, new, direction, radius))
    xyz = _to_voxels(np.array(points), z_ratio)
    ids = np.arange(1, len(points) + 1)
    return _as_stored(SwcTree(
        ids=ids, types=np.array(types), xyz=xyz, radius=np.array(radii),
        parents=np.where(np.array(parents) >= 0, np.array(parents) + 1, -1)))


def projection_fibre(rng: np.random.Generator, shape: tuple[int, int, int], z_ratio: float,
                     total_length: float, config: GrowthConfig = GrowthConfig()) -> SwcTree:
    """A neurite that enters the stack through a side face and grows inwards, without a soma.

    Real stacks of projection neurons often show only such fibres: they come from a soma
    outside the field of view, branch and leave again through the border (growth stops at the
    border unless ``config.bounce_prob`` turns it back).
    """
    extent = _extent(shape, z_ratio)
    margin = 2.0
    axis = int(rng.integers(2))  # enter through an x or a y face (z faces are the slices)
    side = int(rng.integers(2))
    start = extent * rng.uniform(0.15, 0.85, size=3)
    start[axis] = margin if side == 0 else extent[axis] - margin
    direction = _random_direction(rng, config.z_flatten)
    direction[axis] = abs(direction[axis]) + 0.5  # clearly inwards
    direction[axis] *= 1 if side == 0 else -1
    return grow_neuron(rng, shape, z_ratio, total_length, config, soma=False,
                       entry=(start, direction))


@functools.lru_cache(maxsize=1)
def _navis_neurons() -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], ...]:
    """The real Drosophila DA1 projection neurons shipped with navis (loaded once, offline).

    Returns per neuron: node ids, parent ids, (x, y, z) in 8 nm units, radii, soma node id
    (-1 when the neuron has none).
    """
    import navis  # heavy import (pandas, numba): only when real morphologies are asked for

    out = []
    for neuron in navis.example_neurons(5, kind="skeleton"):
        nodes = neuron.nodes
        soma = neuron.soma
        soma_id = int(np.atleast_1d(soma)[0]) if soma is not None else -1
        out.append((nodes.node_id.to_numpy(np.int64), nodes.parent_id.to_numpy(np.int64),
                    nodes[["x", "y", "z"]].to_numpy(float), nodes.radius.to_numpy(float),
                    soma_id))
    return tuple(out)


NAVIS_NEURON_COUNT = 5


def _principal_axes_rotation(points: np.ndarray) -> np.ndarray:
    """Rotation whose last row is the direction of least spread (that axis becomes z)."""
    _, _, vt = np.linalg.svd(points - points.mean(axis=0), full_matrices=False)
    if np.linalg.det(vt) < 0:
        vt[2] *= -1
    return vt


#: navis example neurons are in units of 8 nm.
NAVIS_UNIT_UM = 0.008


#: Radius (micrometres) of the neighbourhood whose node count measures a node's density.
DENSITY_RADIUS_UM = 10.0


@functools.lru_cache(maxsize=NAVIS_NEURON_COUNT)
def _dense_nodes(index: int) -> np.ndarray:
    """Rows of the navis neuron's nodes in the densest third (most neighbours nearby)."""
    points = _navis_neurons()[index][2]
    counts = cKDTree(points).query_ball_point(points, DENSITY_RADIUS_UM / NAVIS_UNIT_UM,
                                              return_length=True)
    return np.flatnonzero(counts >= np.quantile(counts, 2 / 3))


def navis_neuron(rng: np.random.Generator, shape: tuple[int, int, int],
                 spacing: tuple[float, float, float], index: int, zoom: float = 1.0,
                 radius_range: tuple[float, float] = (0.5, 3.0),
                 soma_radius_range: tuple[float, float] = (2.5, 6.0)) -> SwcTree:
    """One of navis' real fly neurons, posed, scaled and cropped to the stack.

    The neuron is laid flat (its direction of least spread along z, as a mounted specimen),
    turned by a random angle about z, mirrored at random and scaled to ``zoom`` times its
    physical size in the stack's voxels. The stack looks at the neighbourhood of a random node
    among the densest third (so at arbors, not along a lone fibre), a field of view that need
    not hold the whole cell. Nodes outside the stack are dropped; their children become roots.
    Radii are scaled too, then clipped to what gold SWCs of confocal stacks show. The pose
    comes from ``rng`` alone, so the same generator state with another ``zoom`` gives the same
    view, larger.

    Parameters
    ----------
    rng : numpy.random.Generator
        The random generator.
    shape : tuple of 3 int
        (z, y, x) stack shape.
    spacing : tuple of 3 float
        (z, y, x) voxel size in micrometres.
    index : int
        Which of the navis neurons (taken modulo their number, 5).
    zoom : float, optional
        Scale relative to the physical size.
    radius_range : tuple of 2 float, optional
        Neurite radii are clipped to this, in x/y voxels.
    soma_radius_range : tuple of 2 float, optional
        The soma radius is clipped to this.
    """
    z_ratio = spacing[0] / spacing[2]
    index %= NAVIS_NEURON_COUNT
    ids, parent_ids, points, radii, soma_id = _navis_neurons()[index]
    rotated = (points - points.mean(axis=0)) @ _principal_axes_rotation(points).T
    theta = rng.uniform(0, 2 * np.pi)
    turn = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0],
                     [0, 0, 1]])
    rotated = rotated @ turn.T * rng.choice([-1.0, 1.0], size=3)
    centre = rotated[rng.choice(_dense_nodes(index))]
    scale = zoom * NAVIS_UNIT_UM / spacing[2]
    placed = (rotated - centre) * scale + _extent(shape, z_ratio) / 2
    xyz = _to_voxels(placed, z_ratio)
    is_soma = ids == soma_id
    radius = np.where(is_soma, np.clip(radii * scale, *soma_radius_range),
                      np.clip(radii * scale, *radius_range))
    tree = SwcTree(ids=ids, types=np.where(is_soma, SOMA, NEURITE), xyz=xyz, radius=radius,
                   parents=parent_ids)
    return _as_stored(tree.crop(shape).renumbered())
