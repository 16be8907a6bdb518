"""Tracing maps into SWC trees: geometry against rendered gold trees, corner cases, the CLI.

Inputs are masks rendered from hand-made SWC trees (:func:`render_mask`), so every expected
value (length, axis, branch point, radius, soma) comes from the tree that drew the mask, not from
the tracer.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from test_cli import invoke

from dineuro.checkpoint import save_checkpoint
from dineuro.data.render import render_mask
from dineuro.errors import InputError
from dineuro.io import SwcTree, read_swc, read_volume, write_volume
from dineuro.models.build import build_model
from dineuro.trace import (
    DEFAULT_MAX_GAP,
    DEFAULT_PRUNE_LENGTH,
    EmptyTraceWarning,
    as_probability,
    trace,
    trace_file,
)

TUBE_SHAPE = (30, 40, 90)  # (z, y, x)
AXIS_Y, AXIS_Z = 20.0, 15.0  # a tube along x at this (y, z)


def tree_of(xyz, radius, parents) -> SwcTree:
    n = len(xyz)
    return SwcTree(np.arange(1, n + 1), [3] * n, xyz, radius, parents)


def tube(x0=10.0, x1=80.0, r=2.0) -> SwcTree:
    return tree_of([[x0, AXIS_Y, AXIS_Z], [x1, AXIS_Y, AXIS_Z]], [r, r], [-1, 1])


def cable(tree: SwcTree, spacing=(1.0, 1.0, 1.0)) -> float:
    """Total edge length in x voxels."""
    child, parent = tree.edges()
    scale = np.asarray(spacing)[::-1] / spacing[2]  # (x, y, z)
    return float(np.linalg.norm((tree.xyz[child] - tree.xyz[parent]) * scale, axis=1).sum())


def children_count(tree: SwcTree) -> np.ndarray:
    parent = tree.parent_index
    return np.bincount(parent[parent >= 0], minlength=len(tree))


def distance_to_segment(points, a, b, scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Physical distance of (x, y, z) points to the segment a-b (x, y, z)."""
    scale = np.asarray(scale)
    p, a, b = np.asarray(points) * scale, np.asarray(a) * scale, np.asarray(b) * scale
    t = np.clip((p - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1)


@pytest.mark.parametrize("end", [(80.0, AXIS_Y, AXIS_Z), (75.0, 35.0, 25.0)])
def test_a_tube_traces_to_its_axis_with_its_length(end):
    start = (10.0, 5.0 if end[1] != AXIS_Y else AXIS_Y, AXIS_Z if end[1] == AXIS_Y else 5.0)
    gold = tree_of([start, end], [2.0, 2.0], [-1, 1])
    traced = trace(render_mask(gold, TUBE_SHAPE))
    true_length = float(np.linalg.norm(np.subtract(end, start)))
    assert cable(traced) == pytest.approx(true_length, rel=0.04)
    assert distance_to_segment(traced.xyz, start, end).max() <= 1.0
    assert children_count(traced).max() == 1  # one unbranched path
    steps = np.linalg.norm(np.diff(traced.xyz, axis=0), axis=1)
    assert steps.min() >= 1.0 and steps.max() <= 3.0  # resampled about every 2 voxels


def test_a_y_has_one_branch_point_near_the_fork_and_three_branches():
    fork = np.array([40.0, 30.0, 15.0])
    gold = tree_of([[10, 30, 15], fork, [70, 8, 15], [70, 52, 15]], [2.0] * 4, [-1, 1, 2, 2])
    traced = trace(render_mask(gold, (30, 60, 80)))
    children = children_count(traced)
    branch_points = np.flatnonzero(children >= 2)
    assert len(branch_points) == 1
    assert np.linalg.norm(traced.xyz[branch_points[0]] - fork) <= 3.0
    # Branches run between the root, branch points and leaves: three for a Y.
    key = (children != 1) | (traced.parents == -1)
    assert key.sum() - 1 == 3
    ends = traced.xyz[(children == 0) | (traced.parents == -1)]
    for tip in ([10, 30, 15], [70, 8, 15], [70, 52, 15]):
        assert np.linalg.norm(ends - tip, axis=1).min() <= 2.0


def gapped(gap: float, evidence: float) -> tuple[np.ndarray, float]:
    """A tube from x=10 to 80 cut at x=45 by ``gap`` voxels holding probability ``evidence``."""
    prob = render_mask(tube(), TUBE_SHAPE).astype(np.float32) * 0.9
    x = np.arange(TUBE_SHAPE[2])
    in_gap = (x >= 45) & (x < 45 + gap)
    prob[:, :, in_gap] = np.where(prob[:, :, in_gap] > 0, evidence, 0.0)
    return prob, 45 + gap


@pytest.mark.parametrize(("gap", "evidence", "bridged"), [
    (3, 0.2, True),                   # below the low threshold, above the gap floor
    (3, 0.0, False),                  # no evidence
    (DEFAULT_MAX_GAP + 4, 0.2, False),  # too long, whatever the evidence
])
def test_gaps_are_bridged_only_when_short_and_supported(gap, evidence, bridged):
    prob, _ = gapped(gap, evidence)
    traced = trace(prob)
    x = traced.xyz[:, 0]
    reaches_both = x.min() < 20 and x.max() > 70
    assert reaches_both == bridged
    assert len(traced.roots) == 1


def test_a_binary_mask_is_bridged_by_image_evidence():
    prob, _ = gapped(3, 0.0)
    mask = prob > 0
    image = render_mask(tube(), TUBE_SHAPE).astype(np.uint8) * 200
    traced = trace(mask, image=image)
    assert traced.xyz[:, 0].min() < 20 and traced.xyz[:, 0].max() > 70
    dark = image.copy()
    dark[:, :, 45:48] = 0
    traced = trace(mask, image=dark)
    assert not (traced.xyz[:, 0].min() < 20 and traced.xyz[:, 0].max() > 70)


def test_unbridged_pieces_are_dropped_or_kept_as_extra_trees():
    prob, _ = gapped(DEFAULT_MAX_GAP + 4, 0.0)
    assert len(trace(prob).roots) == 1
    both = trace(prob, keep_fragments=True)
    assert len(both.roots) == 2
    assert sorted(both.types[both.roots].tolist()) == [1, 3]  # one soma, one fragment
    assert both.xyz[:, 0].min() < 20 and both.xyz[:, 0].max() > 70


def test_a_short_spur_is_pruned_and_a_real_branch_kept():
    r = 2.0
    spur_tip = 2.0 + DEFAULT_PRUNE_LENGTH / 2  # sticks out of the trunk by half the limit
    branch_tip = 20.0
    gold = tree_of([[10, 20, 15], [30, 20, 15], [80, 20, 15], [30, 20 + r + branch_tip, 15],
                    [60, 20, 15], [60, 20 - r - spur_tip, 15]],
                   [r, r, r, 1.5, r, 1.5], [-1, 1, 2, 2, 3, 5])
    traced = trace(render_mask(gold, (30, 50, 90)))
    children = children_count(traced)
    assert (children >= 2).sum() == 1
    assert traced.xyz[:, 1].max() >= 20 + r + branch_tip - 2  # the branch reaches its tip
    assert traced.xyz[:, 1].min() >= 20 - 1.5  # no spur below the trunk
    unpruned = trace(render_mask(gold, (30, 50, 90)), prune_length=0)
    assert unpruned.xyz[:, 1].min() < 20 - r  # the spur is in the skeleton


@pytest.mark.parametrize("r", [2.0, 3.0, 4.0])
def test_radii_match_the_tube_radius(r):
    traced = trace(render_mask(tube(r=r), TUBE_SHAPE))
    middle = (traced.xyz[:, 0] > 20) & (traced.xyz[:, 0] < 70)
    assert np.median(traced.radius[middle]) == pytest.approx(r, abs=0.3)


def test_the_root_is_the_soma_of_a_ball_on_a_tube():
    soma = np.array([55.0, AXIS_Y, AXIS_Z])
    gold = tree_of([soma, [10, AXIS_Y, AXIS_Z], [85, AXIS_Y, AXIS_Z]], [7.0, 2.0, 2.0],
                   [-1, 1, 1])
    traced = trace(render_mask(gold, TUBE_SHAPE))
    root = traced.roots[0]
    assert root == 0 and traced.types[0] == 1 and (traced.types[1:] == 3).all()
    assert np.linalg.norm(traced.xyz[root] - soma) <= 1.5
    assert traced.radius[root] == pytest.approx(7.0, abs=1.0)


def test_a_given_root_is_used_and_snapped_within_reach():
    mask = render_mask(tube(), TUBE_SHAPE)
    traced = trace(mask, root=(70, AXIS_Y, AXIS_Z))
    assert np.linalg.norm(traced.xyz[0] - (70, AXIS_Y, AXIS_Z)) <= 1.0
    near = trace(mask, root=(70, AXIS_Y + 5, AXIS_Z))  # 3 voxels off the surface
    assert np.linalg.norm(near.xyz[0] - (70, AXIS_Y, AXIS_Z)) <= 1.0
    with pytest.raises(InputError, match="from the nearest traced neurite"):
        trace(mask, root=(70, AXIS_Y + 15, AXIS_Z))
    with pytest.raises(InputError, match="outside the stack"):
        trace(mask, root=(200, AXIS_Y, AXIS_Z))


def test_anisotropic_spacing_along_z():
    spacing = (2.0, 1.0, 1.0)
    start, end = (20.0, 20.0, 5.0), (20.0, 20.0, 35.0)  # 30 z voxels = 60 x voxels
    gold = tree_of([start, end], [3.0, 3.0], [-1, 1])
    traced = trace(render_mask(gold, (41, 40, 40), spacing=spacing), spacing)
    # Thinning stops up to one voxel inside each rounded tip: here a z voxel, 2 x voxels.
    assert 60.0 - 2 * 2.0 <= cable(traced, spacing) <= 61.0
    assert distance_to_segment(traced.xyz, start, end).max() <= 1.0
    middle = (traced.xyz[:, 2] > 10) & (traced.xyz[:, 2] < 30)
    assert np.median(traced.radius[middle]) == pytest.approx(3.0, abs=0.3)
    assert len(traced) == pytest.approx(60 / 2 + 1, abs=3)  # every ~2 x voxels = 1 z voxel


def test_written_swc_is_what_viewers_expect(tmp_path):
    gold = tree_of([[55, AXIS_Y, AXIS_Z], [10, AXIS_Y, AXIS_Z], [85, AXIS_Y, AXIS_Z],
                    [55, 35, AXIS_Z]], [6.0, 2.0, 2.0, 2.0], [-1, 1, 1, 1])
    mask = write_volume(tmp_path / "mask.tif", render_mask(gold, TUBE_SHAPE).astype(np.uint8),
                        spacing=(1.5, 0.5, 0.5))
    written = trace_file(mask, tmp_path / "n.swc")
    tree = read_swc(tmp_path / "n.swc")
    assert np.array_equal(tree.ids, np.arange(1, len(tree) + 1))
    parent = tree.parent_index
    assert (parent < np.arange(len(tree))).all()
    assert tree.parents.tolist().count(-1) == 1 and tree.parents[0] == -1
    assert tree.types[0] == 1 and (tree.types[1:] == 3).all()
    assert any("spacing (z, y, x): (1.5, 0.5, 0.5)" in c for c in tree.comments)
    assert np.allclose(tree.xyz, written.xyz, atol=1e-3)


def test_navis_reads_the_written_swc(tmp_path):
    navis = pytest.importorskip("navis")
    mask = write_volume(tmp_path / "mask.tif", render_mask(tube(), TUBE_SHAPE).astype(np.uint8))
    trace_file(mask, tmp_path / "n.swc")
    neuron = navis.read_swc(tmp_path / "n.swc")
    assert neuron.n_nodes == len(read_swc(tmp_path / "n.swc")) and neuron.n_trees == 1


def test_an_empty_map_gives_an_empty_swc_and_a_warning(tmp_path):
    path = write_volume(tmp_path / "prob.tif", np.zeros((8, 16, 16), np.float32))
    with pytest.warns(EmptyTraceWarning, match="empty"):
        tree = trace_file(path, tmp_path / "empty.swc")
    assert len(tree) == 0
    lines = (tmp_path / "empty.swc").read_text().splitlines()
    assert lines and all(line.startswith("#") for line in lines)


def test_a_mostly_foreground_map_is_refused():
    with pytest.raises(InputError, match="foreground"):
        trace(np.ones((8, 16, 16), np.float32))


def test_probability_encodings():
    assert as_probability(np.array([[[0, 1]]], np.uint8)).tolist() == [[[0.0, 1.0]]]
    assert as_probability(np.array([[[0, 255]]], np.uint8)).tolist() == [[[0.0, 1.0]]]
    assert as_probability(np.array([[[1, 255]]], np.uint8), "probability")[0, 0, 0] == \
        pytest.approx(1 / 255)
    assert as_probability(np.array([[[65535]]], np.uint16))[0, 0, 0] == 1.0
    assert as_probability(np.array([[[0, 7]]], np.uint16), "mask").tolist() == [[[0.0, 1.0]]]
    for bad in (np.array([[[1.5]]]), np.array([[[np.nan]]]), np.array([[[-1]]], np.int16),
                np.zeros((4, 4))):
        with pytest.raises(InputError):
            as_probability(bad)


def test_trace_file_names_the_file_and_writes_nothing(tmp_path):
    with pytest.raises(InputError, match="missing.tif"):
        trace_file(tmp_path / "missing.tif", tmp_path / "a.swc")
    flat = write_volume(tmp_path / "flat.tif", np.ones((8, 16, 16), np.float32))
    with pytest.raises(InputError, match="flat.tif"):
        trace_file(flat, tmp_path / "a.swc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.tif"]


# --- command line -------------------------------------------------------------------------


def test_cli_trace_writes_a_tree_and_refuses_to_overwrite(tmp_path):
    mask = write_volume(tmp_path / "mask.tif", render_mask(tube(), TUBE_SHAPE).astype(np.uint8))
    out = tmp_path / "n.swc"
    result = invoke("trace", mask, "-o", out, "--root", f"70,{AXIS_Y:g},{AXIS_Z:g}")
    assert result.code == 0, result.err
    tree = read_swc(out)
    assert np.linalg.norm(tree.xyz[0] - (70, AXIS_Y, AXIS_Z)) <= 1.0
    before = out.read_bytes()
    again = invoke("trace", mask, "-o", out)
    assert again.code == 2 and "already exists" in again.err and out.read_bytes() == before


@pytest.mark.parametrize("case", ["missing", "2d", "bad root", "far root"])
def test_cli_trace_bad_input_is_one_sentence_and_exit_2(tmp_path, case):
    import tifffile

    mask = write_volume(tmp_path / "mask.tif", render_mask(tube(), TUBE_SHAPE).astype(np.uint8))
    args = {"missing": (tmp_path / "none.tif",),
            "2d": (tmp_path / "flat2d.tif",),
            "bad root": (mask, "--root", "1,2"),
            "far root": (mask, "--root", "70,39,15")}[case]
    if case == "2d":
        tifffile.imwrite(tmp_path / "flat2d.tif", np.zeros((16, 16), np.uint8))
    result = invoke("trace", *args, "-o", tmp_path / "out.swc")
    assert result.code == 2, result.err
    assert len(result.err_lines) == 1 and "Traceback" not in result.err
    assert not (tmp_path / "out.swc").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    if case in ("missing", "2d"):
        assert str(args[0].name) in result.err


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained tiny network whose output layer says "background" everywhere."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("tiny", "scratch", crop=(16, 32, 32), patch=(8, 16, 16))
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([5.0, -5.0]))
    path = save_checkpoint(tmp_path_factory.mktemp("model") / "net.pt", model,
                           normalization={"method": "percentile", "low": 1.0, "high": 99.9})
    yield path
    torch.set_num_threads(threads)


def test_cli_run_predicts_and_traces_every_stack(tiny_checkpoint, tmp_path):
    stacks = tmp_path / "stacks"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_volume(stacks / f"{name}.tif", rng.integers(0, 255, (8, 24, 24), dtype=np.uint8),
                     spacing=(2.0, 0.5, 0.5))
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = invoke("run", tiny_checkpoint, stacks, "-o", out, "--device", "cpu")
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == [
        "a.swc", "a_mask.tif", "a_prob.tif", "b.swc", "b_mask.tif", "b_prob.tif"]
    assert "warning: a.tif: " in result.err and "empty" in result.err  # names the stack
    predicted = invoke("predict", tiny_checkpoint, stacks / "a.tif", "-o", tmp_path / "pred",
                       "--device", "cpu")
    assert predicted.code == 0, predicted.err
    for suffix in ("_prob.tif", "_mask.tif"):
        ran, alone = read_volume(out / f"a{suffix}"), read_volume(tmp_path / "pred" /
                                                                   f"a{suffix}")
        assert np.array_equal(ran.array, alone.array) and ran.spacing == alone.spacing
    assert "spacing (z, y, x): (2.0, 0.5, 0.5)" in (out / "a.swc").read_text()
    (out / "b.swc").unlink()
    again = invoke("run", tiny_checkpoint, stacks, "-o", out, "--device", "cpu")
    assert again.code == 2 and "already exists" in again.err
    assert not (out / "b.swc").exists()
