"""SWC trees as a DataFrame and a navis neuron: the same nodes, the same cable."""

from __future__ import annotations

import numpy as np
import pytest

from dineuro.io import SwcTree
from dineuro.io.swc_units import in_micrometres

#: An L-shaped tree: 3 along x, then 4 along y (cable 7), and a 1-long branch at the corner.
TREE = SwcTree([1, 2, 3, 4], [1, 3, 3, 3], [[0, 0, 0], [3, 0, 0], [3, 4, 0], [3, 0, 1]],
               [1.0, 0.5, 0.5, 0.5], [-1, 1, 2, 2])


def test_the_dataframe_holds_every_column_of_every_node():
    frame = TREE.to_dataframe()
    assert frame["node_id"].tolist() == TREE.ids.tolist()
    assert frame["label"].tolist() == TREE.types.tolist()
    np.testing.assert_array_equal(frame[["x", "y", "z"]].to_numpy(), TREE.xyz)
    assert frame["radius"].tolist() == TREE.radius.tolist()
    assert frame["parent_id"].tolist() == TREE.parents.tolist()


def test_navis_sees_the_cable_and_units_of_the_tree():
    pytest.importorskip("navis")
    neuron = TREE.to_navis(name="L")
    assert neuron.n_nodes == 4 and neuron.name == "L"
    assert float(neuron.cable_length) == pytest.approx(3 + 4 + 1)
    physical = in_micrometres(TREE, (2.0, 0.5, 0.5)).to_navis()
    assert float(physical.cable_length) == pytest.approx(1.5 + 2 + 2)
    assert str(physical.units) == "1 micrometer"
