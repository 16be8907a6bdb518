"""How a volume is cut into blocks: what each block owns, and the halo it reads around that.

Every voxel belongs to exactly one block, the one that writes its probability and keeps the
centre-line nodes on it. A block predicts and skeletonises its own box plus a halo on every
side (clipped at the volume's faces): thinning near a cut face depends on what lies beyond it,
and a gap may be bridged to a neurite across the border, so a block must see that far past
its border for the nodes it keeps to be the ones the whole volume would give. The halo is
what makes the seams invisible; :func:`halo_for` sizes it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from dineuro.errors import InputError
from dineuro.models.vit3d import Triple, as_triple

#: Voxels of halo beyond the longest bridge: thinning near a cut face differs from the whole
#: volume's for about a neurite's thickness, and the radii there need its surroundings.
SEAM_MARGIN = 10


def halo_for(longest_bridge: float, scale: Sequence[float]) -> Triple:
    """The halo (z, y, x) in voxels: the longest bridge (the largest of the tracer's
    ``max_gap``, ``follow_gap`` and ``follow_line_gap``, in x voxels) plus :data:`SEAM_MARGIN`,
    per axis in that axis's voxels.

    Examples
    --------
    >>> halo_for(6.0, (2.0, 1.0, 1.0))
    (13, 16, 16)
    """
    return tuple(math.ceil(longest_bridge / s) + SEAM_MARGIN for s in scale)


@dataclass(frozen=True)
class Block:
    """One task: the box it owns and the region it reads (the box plus its halo).

    Attributes
    ----------
    index : tuple of 3 int
        Position in the block lattice (z, y, x).
    begin, end : tuple of 3 int
        The owned box ``[begin, end)`` in volume voxels.
    region_begin, region_end : tuple of 3 int
        The region predicted and skeletonised: the box grown by the halo, inside the volume.
    """

    index: Triple
    begin: Triple
    end: Triple
    region_begin: Triple
    region_end: Triple

    @property
    def name(self) -> str:
        """A file-name-safe id, e.g. ``z0_y2_x1``."""
        return "_".join(f"{axis}{k}" for axis, k in zip("zyx", self.index, strict=True))

    @property
    def owned(self) -> tuple[slice, ...]:
        """The owned box as slices of the region."""
        return tuple(slice(b - r, e - r) for b, e, r in zip(self.begin, self.end,
                                                            self.region_begin, strict=True))

    @property
    def box(self) -> tuple[slice, ...]:
        """The owned box as slices of the volume."""
        return tuple(slice(b, e) for b, e in zip(self.begin, self.end, strict=True))

    @property
    def region(self) -> tuple[slice, ...]:
        """The region read (box and halo) as slices of the volume."""
        return tuple(slice(b, e) for b, e in zip(self.region_begin, self.region_end,
                                                 strict=True))


@dataclass(frozen=True)
class BlockPlan:
    """The blocks of a volume of ``shape``, each ``block`` voxels (fewer at the far faces),
    read with ``halo`` voxels around.

    Examples
    --------
    >>> plan = BlockPlan((40, 100, 100), block=(32, 64, 64), halo=(4, 8, 8))
    >>> plan.counts, len(list(plan.blocks()))
    ((2, 2, 2), 8)
    >>> last = list(plan.blocks())[-1]
    >>> last.begin, last.end, last.region_begin, last.region_end
    ((32, 64, 64), (40, 100, 100), (28, 56, 56), (40, 100, 100))
    >>> last.region == (slice(28, 40), slice(56, 100), slice(56, 100)), plan.chunks
    (True, (32, 64, 64))
    """

    shape: Triple
    block: Triple
    halo: Triple

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "block", as_triple(self.block, "block"))
        object.__setattr__(self, "halo", tuple(int(h) for h in self.halo))
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise InputError(f"the volume should be a non-empty 3D (z, y, x) array, got shape "
                             f"{self.shape}.")
        if len(self.halo) != 3 or min(self.halo) < 0:
            raise InputError(f"the halo should be three voxel counts >= 0, got {self.halo}.")

    @property
    def chunks(self) -> Triple:
        """A block's size inside the volume: the chunks of the arrays a run writes."""
        return tuple(min(b, n) for b, n in zip(self.block, self.shape, strict=True))

    @property
    def counts(self) -> Triple:
        return tuple(math.ceil(n / b) for n, b in zip(self.shape, self.block, strict=True))

    def __len__(self) -> int:
        return math.prod(self.counts)

    def blocks(self) -> Iterator[Block]:
        """Every block, z slowest."""
        for index in itertools.product(*(range(c) for c in self.counts)):
            begin = tuple(k * b for k, b in zip(index, self.block, strict=True))
            end = tuple(min(a + b, n) for a, b, n in zip(begin, self.block, self.shape,
                                                         strict=True))
            yield Block(index, begin, end,
                        tuple(max(a - h, 0) for a, h in zip(begin, self.halo, strict=True)),
                        tuple(min(e + h, n) for e, h, n in zip(end, self.halo, self.shape,
                                                               strict=True)))
