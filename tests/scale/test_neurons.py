"""The stitched forest to one SWC tree per neuron: splitting, cable length, finishing, files.

Cable lengths are checked against sums done by hand; the finished trees of a map traced block
by block against :func:`dineuro.trace.trace` of the same map in memory.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import capsules

from dineuro.data.render import spacing_in_x_voxels
from dineuro.defaults import (
    DEFAULT_FOLLOW_CONTRAST,
    DEFAULT_FOLLOW_GAP,
    DEFAULT_FOLLOW_LINE_GAP,
    DEFAULT_GAP_FLOOR,
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_MAX_GAP,
    DEFAULT_MIN_PIECE_LENGTH,
    DEFAULT_MIN_TREE_LENGTH,
    DEFAULT_NODE_STEP,
    DEFAULT_PRUNE_LENGTH,
    DEFAULT_SMOOTH,
    DEFAULT_SPUR_RADII,
)
from dineuro.evaluate import compare_trees
from dineuro.io import SwcTree, read_swc
from dineuro.io.swc_units import in_micrometres, swc_metadata
from dineuro.scale.fragments import Fragments, Graph, block_fragments, stitch
from dineuro.scale.neurons import NEURON_NAME, cable_length, graph_trees, neurons, write_neurons
from dineuro.scale.plan import BlockPlan, halo_for
from dineuro.trace import trace

FINISH = {"prune_length": DEFAULT_PRUNE_LENGTH, "spur_radii": DEFAULT_SPUR_RADII,
          "min_tree_length": DEFAULT_MIN_TREE_LENGTH, "smooth": DEFAULT_SMOOTH,
          "node_step": DEFAULT_NODE_STEP}


def finish(graph, spacing, shape, *, units="voxel", keep_fragments=False, comments=()):
    return graph_trees(graph, spacing, shape, **FINISH, keep_fragments=keep_fragments,
                       units=units, neurite_type=3, comments=list(comments))


def forest() -> SwcTree:
    """Three trees, ids 1..7, one after another; header lines about all and about each."""
    xyz = np.arange(21, dtype=np.float64).reshape(7, 3)
    return SwcTree([1, 2, 3, 4, 5, 6, 7], [1, 3, 3, 3, 3, 3, 3], xyz,
                   [2, 1, 1, 1.5, 1.5, 1, 1], [-1, 1, 1, -1, 4, -1, 6],
                   ["units line", "root: soma at a, tree 1 of 3", "options line",
                    "root: end at b, tree 2 of 3", "root: end at c, tree 3 of 3"])


def test_neurons_splits_a_forest_into_its_trees_with_their_ids():
    whole = forest()
    parts = neurons(whole)
    assert [list(p.ids) for p in parts] == [[1, 2, 3], [4, 5], [6, 7]]
    assert [list(p.parents) for p in parts] == [[-1, 1, 1], [-1, 4], [-1, 6]]
    assert [p.comments for p in parts] == [
        ["units line", "options line", "root: soma at a, tree 1 of 3"],
        ["units line", "options line", "root: end at b, tree 2 of 3"],
        ["units line", "options line", "root: end at c, tree 3 of 3"]]
    # Together they are the forest again, node for node.
    for name in ("ids", "types", "xyz", "radius", "parents"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]),
                                      getattr(whole, name))
    alone = neurons(SwcTree([1, 2], [3, 3], np.zeros((2, 3)), [1, 1], [-1, 1], ["x"]))
    assert len(alone) == 1 and list(alone[0].ids) == [1, 2] and alone[0].comments == ["x"]


def test_a_tree_without_nodes_is_no_neuron():
    # What graph_trees gives for a volume with nothing traced, which run_volume then splits.
    assert neurons(SwcTree([], [], np.zeros((0, 3)), [], [], ["units line"])) == []


def test_cable_length_by_hand_with_anisotropic_spacing():
    # (x, y, z) voxels; spacing (z, y, x) = (2, 0.5, 0.5): a z voxel is 4 x voxels long.
    # Root 1 with children 2 and 4; 3 under 2; a second tree 5-6.
    tree = SwcTree([1, 2, 3, 4, 5, 6], [3] * 6,
                   [[0, 0, 0], [3, 4, 0], [3, 4, 1], [0, 0, 2], [9, 9, 9], [9, 9, 10]],
                   [1] * 6, [-1, 1, 2, 1, 5, 5])
    spacing = (2.0, 0.5, 0.5)
    # 1-2: (3, 4, 0) -> 5; 2-3: one z step -> 4; 1-4: two z steps -> 8; 5-6: one z step -> 4.
    assert cable_length(tree, spacing, "voxel") == pytest.approx(21.0)
    # In micrometres each x voxel is 0.5 um: the tree written in um gives half as much.
    assert cable_length(in_micrometres(tree, spacing), spacing, "um") == pytest.approx(10.5)
    # A z step of 1.5 um over x voxels of 0.5 um counts 3, whatever the x spacing's size.
    assert cable_length(tree, (3.0, 1.0, 1.0), "voxel") == pytest.approx(5 + 3 + 6 + 3)
    assert cable_length(SwcTree([1], [3], [[4, 4, 4]], [1], [-1]), spacing, "voxel") == 0.0
    assert cable_length(SwcTree([], [], np.zeros((0, 3)), [], []), spacing, "um") == 0.0


def line_fragments(lines, cut: int) -> list[Fragments]:
    """Two blocks split at x = ``cut`` of straight lines along x ((z, y, x0, x1) each), with
    dangling edges both ways across the cut, the lines given in order in each block."""
    blocks = []
    for owns in (lambda x: x < cut, lambda x: x >= cut):
        zyx, edges, dangling, towards = [], [], [], []
        for z, y, x0, x1 in lines:
            xs = [x for x in range(x0, x1 + 1) if owns(x)]
            first = len(zyx)
            zyx += [(z, y, x) for x in xs]
            edges += [(first + k, first + k + 1) for k in range(len(xs) - 1)]
            for k, x in enumerate(xs):
                for other in (x - 1, x + 1):
                    if x0 <= other <= x1 and not owns(other):
                        dangling.append(first + k)
                        towards.append((z, y, other))
        n = len(zyx)
        blocks.append(Fragments(np.array(zyx, np.int64).reshape(-1, 3), np.full(n, 1.5),
                                np.full(n, 0.9), np.array(edges, np.int64).reshape(-1, 2),
                                np.array(dangling, np.int64),
                                np.array(towards, np.int64).reshape(-1, 3)))
    return blocks


# The shorter line comes first in the blocks, so that largest-first is not their order.
SHORT, LONG = (4, 15, 3, 38), (4, 5, 3, 45)
LINES_SHAPE = (9, 20, 50)


def test_graph_trees_of_two_separate_lines_is_two_trees_largest_first():
    graph = stitch(line_fragments([SHORT, LONG], cut=20), np.ones(3), DEFAULT_MIN_PIECE_LENGTH)
    assert graph.joined == 4
    tree = finish(graph, (1.0, 1.0, 1.0), LINES_SHAPE, comments=["a line of ours"])
    parts = neurons(tree)
    assert len(parts) == 2
    lengths = [cable_length(p, (1.0, 1.0, 1.0), "voxel") for p in parts]
    # Straight lines: smoothing and resampling keep their length (the ends stay put).
    assert lengths == pytest.approx([42.0, 35.0], abs=0.5)
    assert set(parts[0].xyz[:, 1].round()) == {5} and set(parts[1].xyz[:, 1].round()) == {15}
    for part, (_, _, x0, x1) in zip(parts, [LONG, SHORT], strict=True):
        assert part.xyz[0, 0] in (x0, x1)  # rooted at an end
    assert tree.comments[:2] == ['dineuro {"units": "voxel", "spacing_zyx": [1.0, 1.0, 1.0]}',
                                 "a line of ours"]
    assert parts[0].comments[-1].endswith("tree 1 of 2")
    assert parts[1].comments[-1].endswith("tree 2 of 2")
    assert list(tree.ids) == list(range(1, len(tree) + 1))


def test_graph_trees_drops_short_separate_trees_unless_fragments_are_kept():
    short = (4, 15, 3, 20)  # 17 voxels of cable, less than min_tree_length 30
    graph = stitch(line_fragments([short, LONG], cut=10), np.ones(3), DEFAULT_MIN_PIECE_LENGTH)
    dropped = finish(graph, (1.0, 1.0, 1.0), LINES_SHAPE)
    assert len(neurons(dropped)) == 1
    assert any(c.startswith("dropped 1 separate tree") for c in dropped.comments)
    kept = finish(graph, (1.0, 1.0, 1.0), LINES_SHAPE, keep_fragments=True)
    assert [cable_length(p, (1.0, 1.0, 1.0), "voxel") for p in neurons(kept)] == pytest.approx(
        [42.0, 17.0], abs=0.5)


def test_graph_trees_in_micrometres_is_the_voxel_tree_scaled():
    spacing = (2.0, 0.5, 0.5)
    graph = stitch(line_fragments([SHORT, LONG], cut=20), spacing_in_x_voxels(spacing),
                   DEFAULT_MIN_PIECE_LENGTH)
    voxel = finish(graph, spacing, LINES_SHAPE)
    um = finish(graph, spacing, LINES_SHAPE, units="um")
    expected = in_micrometres(voxel, spacing)
    np.testing.assert_allclose(um.xyz, expected.xyz)
    np.testing.assert_allclose(um.radius, expected.radius)
    np.testing.assert_array_equal(um.parents, voxel.parents)
    assert swc_metadata(um) == {"units": "um", "spacing_zyx": [2.0, 0.5, 0.5]}
    assert cable_length(um, spacing, "um") == pytest.approx(
        0.5 * cable_length(voxel, spacing, "voxel"))
    assert [len(p) for p in neurons(um)] == [len(p) for p in neurons(voxel)]


def test_graph_trees_of_an_empty_graph_is_a_tree_without_nodes():
    empty = Graph(np.zeros((0, 3)), np.zeros(0), np.zeros(0), np.zeros((0, 2), np.int64))
    tree = finish(empty, (2.0, 1.0, 1.0), (8, 8, 8), comments=["ours"])
    assert len(tree) == 0 and tree.xyz.shape == (0, 3)
    assert swc_metadata(tree) == {"units": "voxel", "spacing_zyx": [2.0, 1.0, 1.0]}
    assert "ours" in tree.comments
    assert len(finish(stitch([], np.ones(3), 10.0), (1.0, 1.0, 1.0), (8, 8, 8))) == 0


def in_blocks(prob, spacing, block, image=None):
    """The finished trees of ``prob`` (and its raw ``image``) traced block by block, as
    run_volume does after prediction."""
    scale = spacing_in_x_voxels(spacing)
    longest = max(DEFAULT_MAX_GAP, DEFAULT_FOLLOW_GAP, DEFAULT_FOLLOW_LINE_GAP)
    plan = BlockPlan(prob.shape, block, halo_for(longest, scale))
    parts = []
    for b in plan.blocks():
        region = b.region
        parts.append(block_fragments(prob[region], b.region_begin, b.begin, b.end, prob.shape,
                                     scale, high=DEFAULT_HIGH, low=DEFAULT_LOW,
                                     min_piece_length=DEFAULT_MIN_PIECE_LENGTH,
                                     max_gap=DEFAULT_MAX_GAP, gap_floor=DEFAULT_GAP_FLOOR,
                                     follow_gap=DEFAULT_FOLLOW_GAP,
                                     follow_contrast=DEFAULT_FOLLOW_CONTRAST,
                                     follow_line_gap=DEFAULT_FOLLOW_LINE_GAP,
                                     image=None if image is None else image[region]))
    return finish(stitch(parts, scale, DEFAULT_MIN_PIECE_LENGTH), spacing, prob.shape)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.5, 0.5)])
def test_block_by_block_trees_match_tracing_the_whole_map(spacing):
    # A branched tree across 2 x 3 x 3 blocks and a separate line: what run_volume does after
    # prediction, against trace() of the same map with the same options.
    shape = (24, 60, 60)
    prob = np.where(capsules(shape, [((3, 4, 4), (20, 50, 52)), ((10.4, 24, 24.7), (5, 55, 20))],
                             2.0) | capsules(shape, [((18, 6, 6), (18, 6, 56))], 1.5),
                    0.9, 0.0).astype(np.float32)
    blocks = in_blocks(prob, spacing, (12, 24, 24))
    whole = trace(prob, spacing=spacing)
    assert len(neurons(blocks)) == len(neurons(whole)) == 2
    scores = compare_trees(blocks, whole)
    assert scores.esa < 0.05
    assert [cable_length(p, spacing, "voxel") for p in neurons(blocks)] == pytest.approx(
        [cable_length(p, spacing, "voxel") for p in neurons(whole)], rel=0.01)
    root_lines = [c for c in whole.comments if c.startswith("root:")]
    assert [c for c in blocks.comments if c.startswith("root:")] == root_lines


def test_write_neurons_writes_the_volume_and_one_file_per_neuron(tmp_path):
    whole = forest()
    swc, folder = tmp_path / "brain.swc", tmp_path / "brain_neurons"
    paths = write_neurons(whole, swc, folder)
    assert [p.name for p in paths] == [NEURON_NAME.format(k) for k in (1, 2, 3)]
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in paths]
    back = read_swc(swc)
    np.testing.assert_array_equal(back.ids, whole.ids)
    alone = [read_swc(p) for p in paths]
    assert [list(t.ids) for t in alone] == [[1, 2, 3], [4, 5], [6, 7]]
    assert [t.comments[-1] for t in alone] == [
        "root: soma at a, tree 1 of 3", "root: end at b, tree 2 of 3",
        "root: end at c, tree 3 of 3"]
    np.testing.assert_allclose(np.concatenate([t.xyz for t in alone]), whole.xyz)
    with pytest.raises(FileExistsError):  # the folder must be new
        write_neurons(whole, tmp_path / "other.swc", folder)


def test_write_neurons_of_an_empty_tree_writes_a_header_and_an_empty_folder(tmp_path):
    empty = SwcTree([], [], np.zeros((0, 3)), [], [], ["nothing traced"])
    assert write_neurons(empty, tmp_path / "v.swc", tmp_path / "v_neurons") == []
    assert len(read_swc(tmp_path / "v.swc", allow_empty=True)) == 0
    assert list((tmp_path / "v_neurons").iterdir()) == []


def test_block_by_block_ends_are_carried_on_as_in_the_whole_map():
    # A thick neurite (radius 3) across 3 blocks: thinning alone stops a voxel short of each
    # gold end (x 8 and 52); both paths carry the ends on to within half a voxel of them.
    shape = (16, 16, 60)
    prob = np.where(capsules(shape, [((8, 8, 8), (8, 8, 52))], 3.0), 0.9, 0.0)
    blocks = in_blocks(prob.astype(np.float32), (1.0, 1.0, 1.0), (16, 16, 20))
    whole = trace(prob.astype(np.float32))
    for tree in (blocks, whole):
        x = tree.xyz[:, 0]
        assert abs(x.min() - 8.0) <= 0.5 and abs(x.max() - 52.0) <= 0.5
    np.testing.assert_allclose(blocks.xyz[[0, -1]], whole.xyz[[0, -1]])


def test_block_by_block_a_fibre_the_map_lost_is_followed_as_in_the_whole_map():
    # Two pieces of a fibre, the map empty for 15 voxels between them across a block border;
    # the raw stack shows the fibre going on there, 3 noise units above its background. Both
    # paths join them into one tree; without the image, the blocks keep one piece.
    shape = (16, 16, 80)
    prob = np.where(capsules(shape, [((8, 8, 6), (8, 8, 30)), ((8, 8, 45), (8, 8, 74))], 1.5),
                    0.9, 0.0).astype(np.float32)
    noise = np.random.default_rng(0).normal(100.0, 10.0, shape)
    image = noise + 30.0 * capsules(shape, [((8, 8, 6), (8, 8, 74))], 1.5)
    blocks = in_blocks(prob, (1.0, 1.0, 1.0), (16, 16, 40), image)
    whole = trace(prob, image=image)
    for tree in (blocks, whole):
        assert len(neurons(tree)) == 1
        assert tree.xyz[:, 0].min() < 10 and tree.xyz[:, 0].max() > 70
    assert cable_length(blocks, (1.0, 1.0, 1.0), "voxel") == pytest.approx(
        cable_length(whole, (1.0, 1.0, 1.0), "voxel"), rel=0.01)
    alone = in_blocks(prob, (1.0, 1.0, 1.0), (16, 16, 40))  # the larger piece, the other debris
    assert alone.xyz[:, 0].min() > 40
