"""SWC trees in voxels or micrometres, and the header line that says which.

dineuro traces in voxel coordinates (x, y, z), radii in x voxels, as BigNeuron's gold SWCs and
Vaa3D expect. Morphometry tools (NeuroM, navis, MorphIO) read coordinates as physical lengths,
so on an anisotropic stack (z steps twice the x/y pixel, say) their lengths come out short;
written in micrometres, coordinates are scaled by the (z, y, x) spacing and radii by the x
spacing. Either way the header holds one machine-readable line,
``# dineuro {"units": ..., "spacing_zyx": [...]}``, so a reader (ours: :func:`to_voxels`) can
always get back to voxels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from dineuro.defaults import SWC_UNITS
from dineuro.errors import InputError
from dineuro.io.swc import SwcTree

#: The first word of the machine-readable header line.
METADATA_KEY = "dineuro"


def metadata_comment(units: str, spacing: Sequence[float]) -> str:
    """The header line (without ``#``) that records the units and the (z, y, x) spacing.

    Examples
    --------
    >>> metadata_comment("um", (2, 0.5, 0.5))
    'dineuro {"units": "um", "spacing_zyx": [2.0, 0.5, 0.5]}'
    """
    check_units(units)
    return f"{METADATA_KEY} " + json.dumps({"units": units,
                                            "spacing_zyx": [float(s) for s in spacing]})


def swc_metadata(tree: SwcTree) -> dict | None:
    """The units and spacing a tree's header records, or None for an SWC without the line.

    Examples
    --------
    >>> tree = SwcTree([], [], [], [], [], [metadata_comment("voxel", (1, 1, 1))])
    >>> swc_metadata(tree)
    {'units': 'voxel', 'spacing_zyx': [1.0, 1.0, 1.0]}
    """
    for comment in tree.comments:
        key, _, rest = comment.partition(" ")
        if key == METADATA_KEY and rest.startswith("{"):
            try:
                return json.loads(rest)
            except json.JSONDecodeError:
                return None
    return None


def in_micrometres(tree: SwcTree, spacing: Sequence[float]) -> SwcTree:
    """A voxel tree in micrometres: x, y and z times their spacing, radii times the x spacing.

    Examples
    --------
    >>> tree = SwcTree([1], [3], [[2, 2, 2]], [1], [-1])
    >>> scaled = in_micrometres(tree, (2.0, 0.5, 0.25))
    >>> scaled.xyz.tolist(), scaled.radius.tolist(), swc_metadata(scaled)["units"]
    ([[0.5, 1.0, 4.0]], [0.25], 'um')
    >>> to_voxels(scaled).xyz.tolist()
    [[2.0, 2.0, 2.0]]
    """
    z, y, x = (float(s) for s in spacing)
    return SwcTree(tree.ids, tree.types, tree.xyz * [x, y, z], tree.radius * x, tree.parents,
                   _with_metadata(tree.comments, "um", spacing))


def to_voxels(tree: SwcTree) -> SwcTree:
    """A tree in voxel coordinates: as it is, unless its header says micrometres.

    Raises
    ------
    InputError
        A header that says micrometres without a valid spacing.
    """
    metadata = swc_metadata(tree) or {}
    if metadata.get("units") != "um":
        return tree
    spacing = np.asarray(metadata.get("spacing_zyx", ()), float)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise InputError(f"its header says micrometres but gives no valid spacing: {metadata}.")
    z, y, x = spacing
    return SwcTree(tree.ids, tree.types, tree.xyz / [x, y, z], tree.radius / x, tree.parents,
                   _with_metadata(tree.comments, "voxel", spacing))


def _with_metadata(comments: list[str], units: str, spacing: Sequence[float]) -> list[str]:
    """``comments`` with the metadata line saying ``units`` (in place of any old one)."""
    line = metadata_comment(units, spacing)
    kept = [c for c in comments if c.partition(" ")[0] != METADATA_KEY]
    return [line, *kept]


def check_units(units: str) -> None:
    """Refuse units other than :data:`~dineuro.defaults.SWC_UNITS`."""
    if units not in SWC_UNITS:
        raise InputError(f"SWC units should be one of {', '.join(SWC_UNITS)}, not {units!r}.")
