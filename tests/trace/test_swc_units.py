"""SWC outputs in physical units and with the neurite type the user names.

The case is a straight tube along z through an anisotropic stack (z steps 4 times the x/y
pixel): its physical length is known from the construction, and a morphometry tool reading the
micrometre SWC (navis, as a lab would) must measure that length, where the voxel SWC reads 4
times too short along z.
"""

from __future__ import annotations

import numpy as np
import pytest

from dineuro.errors import InputError
from dineuro.io import read_swc, write_volume
from dineuro.io.swc_units import swc_metadata, to_voxels
from dineuro.trace import trace, trace_file

SPACING = (2.0, 0.5, 0.5)
SLICES = 40


@pytest.fixture(scope="module")
def tube() -> np.ndarray:
    """A tube of radius 3 x/y voxels along z, through every slice of a 40 x 24 x 24 stack."""
    z, y, x = np.mgrid[:SLICES, :24, :24]
    return ((y - 12.0) ** 2 + (x - 11.5) ** 2 <= 9).astype(np.float32)


def test_micrometres_are_voxels_times_the_spacing(tube):
    voxels = trace(tube, SPACING)
    microns = trace(tube, SPACING, units="um")
    z, y, x = SPACING
    np.testing.assert_allclose(microns.xyz, voxels.xyz * [x, y, z])
    np.testing.assert_allclose(microns.radius, voxels.radius * x)
    assert swc_metadata(microns) == {"units": "um", "spacing_zyx": list(SPACING)}
    assert swc_metadata(voxels) == {"units": "voxel", "spacing_zyx": list(SPACING)}
    back = to_voxels(microns)
    np.testing.assert_allclose(back.xyz, voxels.xyz)
    assert swc_metadata(back)["units"] == "voxel"


def test_navis_measures_the_physical_length_of_a_micrometre_swc(tube, tmp_path):
    navis = pytest.importorskip("navis")
    path = tmp_path / "tube_prob.tif"
    write_volume(path, tube, SPACING)
    trace_file(path, tmp_path / "um.swc", units="um")
    trace_file(path, tmp_path / "voxel.swc")
    physical = (SLICES - 1) * SPACING[0]  # centre of the first slice to that of the last
    measured = float(navis.read_swc(str(tmp_path / "um.swc")).cable_length)
    in_voxels = float(navis.read_swc(str(tmp_path / "voxel.swc")).cable_length)
    assert measured == pytest.approx(physical, rel=0.1)
    assert in_voxels < 0.6 * physical  # what labs saw: morphometry on voxel SWCs falls short


@pytest.mark.parametrize(("name", "code"), [("axon", 2), ("dendrite", 3), ("apical", 4),
                                            ("neurite", 0)])
def test_the_neurite_type_is_the_type_column(tube, name, code):
    tree = trace(tube, SPACING, neurite_type=name)
    assert set(tree.types[1:].tolist()) == {code}
    assert tree.types[0] in (1, code)  # a soma root is 1 whatever the neurites are


def test_unknown_units_and_types_are_refused(tube):
    with pytest.raises(InputError, match="units"):
        trace(tube, SPACING, units="mm")
    with pytest.raises(InputError, match="neurite_type"):
        trace(tube, SPACING, neurite_type="spine")


def test_the_command_line_writes_micrometres_and_the_type(tube, tmp_path):
    from helpers import invoke

    path = tmp_path / "tube_prob.tif"
    write_volume(path, tube, SPACING)
    result = invoke("trace", path, "-o", tmp_path / "t.swc", "--units", "um", "--type", "axon")
    assert result.code == 0, result.err
    tree = read_swc(tmp_path / "t.swc")
    assert swc_metadata(tree)["units"] == "um"
    assert tree.xyz[:, 2].max() > SLICES  # z in micrometres: beyond the slice count
    assert 2 in tree.types


def test_evaluate_scores_a_micrometre_trace_as_its_voxel_twin(tube, tmp_path):
    """Scores compare with gold SWCs in voxels: a trace written in micrometres is read back
    into voxels first, so it scores exactly as the same trace written in voxels."""
    from dineuro.evaluate.traces import score_trace

    path = tmp_path / "tube_prob.tif"
    write_volume(path, tube, SPACING)
    trace_file(path, tmp_path / "voxel.swc")
    trace_file(path, tmp_path / "um.swc", units="um")
    gold = tmp_path / "gold.swc"
    gold.write_text("".join(f"{i + 1} 3 11.5 12 {z} 3 {i if i else -1}\n"
                            for i, z in enumerate(range(SLICES))))
    voxel, micrometre = (score_trace(tmp_path / name, gold) for name in ("voxel.swc", "um.swc"))
    assert voxel.f1 > 0.9
    assert micrometre.f1 == pytest.approx(voxel.f1) and micrometre.esa == pytest.approx(voxel.esa)
