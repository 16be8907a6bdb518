"""Reading and writing stacks and SWC trees.

Volumes are numpy arrays in (z, y, x) order with their voxel spacing; SWC coordinates are
(x, y, z) in voxels. The one conversion between the two orders is :func:`swc_to_zyx` /
:func:`zyx_to_swc`.
"""

from dineuro.io.swc import SwcTree, read_swc, swc_to_zyx, validate_swc, write_swc, zyx_to_swc
from dineuro.io.volume import (
    SUPPORTED_EXTENSIONS,
    WRITABLE_EXTENSIONS,
    StackHeader,
    Volume,
    convert_volume,
    probe_volume,
    read_volume,
    write_volume,
)

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "WRITABLE_EXTENSIONS",
    "StackHeader",
    "SwcTree",
    "Volume",
    "convert_volume",
    "probe_volume",
    "read_swc",
    "read_volume",
    "swc_to_zyx",
    "validate_swc",
    "write_swc",
    "write_volume",
    "zyx_to_swc",
]
