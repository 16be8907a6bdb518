"""SWC trees as the tables notebook users work with: a pandas DataFrame, a navis TreeNeuron.

Both are views for analysis (morphometry, plotting, NBLAST in navis); SWC files stay the
exchange format. navis (and with it pandas) is imported only when asked for: it takes seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dineuro.io.swc_units import swc_metadata

if TYPE_CHECKING:
    import navis
    import pandas as pd

    from dineuro.io.swc import SwcTree

#: The columns, in SWC order, with navis' names.
COLUMNS = ("node_id", "label", "x", "y", "z", "radius", "parent_id")


def to_dataframe(tree: SwcTree) -> pd.DataFrame:
    """One row per node, columns :data:`COLUMNS` (SWC's seven, with navis' names).

    Examples
    --------
    >>> from dineuro.io.swc import SwcTree
    >>> frame = to_dataframe(SwcTree([1, 2], [1, 3], [[0, 0, 0], [3, 4, 0]], [1, 1], [-1, 1]))
    >>> frame.columns.tolist(), frame["parent_id"].tolist()
    (['node_id', 'label', 'x', 'y', 'z', 'radius', 'parent_id'], [-1, 1])
    """
    import pandas as pd

    x, y, z = tree.xyz.T
    return pd.DataFrame(dict(zip(COLUMNS, (tree.ids, tree.types, x, y, z, tree.radius,
                                           tree.parents), strict=True)))


def to_navis(tree: SwcTree, name: str | None = None) -> navis.TreeNeuron:
    """A navis TreeNeuron of the tree, in micrometres when the SWC header says so (else in
    voxels, which navis calls dimensionless)."""
    import navis

    units = "1 micrometer" if (swc_metadata(tree) or {}).get("units") == "um" else None
    return navis.TreeNeuron(to_dataframe(tree), units=units, name=name)
